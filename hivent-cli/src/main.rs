//! The `hivent` binary: worker, producer and operations CLI.

use std::process::ExitCode;

fn main() -> ExitCode {
    hivent_cli::run_cli()
}
