//! hivent-cli: the worker process for applications' own binaries, and the `hivent` operations tool.
//!
//! An application registers its receivers and hands over to [`Worker`], which gives its
//! binary `start` (with `--backend`, `--endpoint`, `--client-id`, `--partition-count`,
//! `--config FILE`, `--concurrency N`, `--log-level`, each also from `HIVENT_*`
//! variables and `REDIS_URL`), `--help` and `start --help`. The standalone `hivent`
//! binary adds `start -r FILE` (receivers that run commands), `emit`, `status`, `dlq`
//! and `bench`.
//!
//! Exit codes: 0 after a clean stop (SIGINT/SIGTERM: finish the handler that is running,
//! start no other, acknowledge what was handled, leave the group), 2 for usage and configuration
//! errors (one line), 1 for runtime failures (the error chain), 130 on a second signal.

mod bench;
mod cli;
mod command_receiver;
mod dlq;
mod emit;
mod exit;
mod logging;
mod metrics_endpoint;
mod options;
mod shutdown;
mod status;
mod worker;

pub use cli::run_cli;
pub use exit::Failure;
pub use options::{ConnectionArgs, StartArgs};
pub use worker::{start, Worker};
