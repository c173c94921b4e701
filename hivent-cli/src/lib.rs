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

pub mod bench;
mod bench_hivent;
mod bench_raw;
pub mod bench_report;
mod bench_scaling;
mod bench_server_time;
mod bench_streams;
pub mod command_receiver;
pub mod dlq;
pub mod emit;
pub mod exit;
pub mod logging;
pub mod options;
pub mod shutdown;
pub mod status;
mod worker;

pub use worker::{start, Worker};
