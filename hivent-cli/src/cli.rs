//! The `hivent` command line: parsing and running its commands.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use crate::bench::BenchArgs;
use crate::command_receiver::ReceiversFile;
use crate::dlq::DlqCommand;
use crate::emit::EmitArgs;
use crate::exit::Failure;
use crate::options::StartArgs;
use crate::status::StatusArgs;
use clap::{Parser, Subcommand};
use hivent::NoopLifeCycleEventHandler;

#[derive(Parser, Debug)]
#[command(
    name = "hivent",
    version,
    about = "Event streams between services: run workers, emit events, inspect and repair queues"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the receivers listed in FILE; each handler is a command given the event JSON on stdin
    Start {
        /// TOML file of `[[receiver]]` tables: signal, version (optional), command, timeout_secs (optional)
        #[arg(short = 'r', long = "receivers", value_name = "FILE")]
        receivers: PathBuf,
        #[command(flatten)]
        args: StartArgs,
    },
    /// Emit one event and print it
    Emit(EmitArgs),
    /// Show services, consumers, partition owners, lag and dead letters
    Status(StatusArgs),
    /// List, show, replay or purge dead letter queues
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Measure hivent against raw Redis (a throwaway redis-server unless --endpoint) and print figures and ratios
    Bench(BenchArgs),
}

/// Runs the `hivent` command with the process's arguments and returns its exit code:
/// what the `hivent` binary does.
pub fn run_cli() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return crate::exit::parse_failure(&e),
    };
    let outcome = match &cli.command {
        Command::Start { receivers, args } => start(receivers, args),
        Command::Emit(args) => crate::emit::run(args),
        Command::Status(args) => crate::status::run(args),
        Command::Dlq(command) => crate::dlq::run(command),
        Command::Bench(args) => crate::bench::run(args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}

fn start(receivers: &std::path::Path, args: &StartArgs) -> Result<(), Failure> {
    let file = ReceiversFile::load(receivers).map_err(Failure::Usage)?;
    crate::options::require_shared_backend(&args.builder()?.build()?, "start")?;
    let shutdown = crate::shutdown::on_signals()
        .map_err(|e| Failure::Usage(format!("could not listen for signals: {e}")))?;
    crate::start(
        args,
        Arc::new(NoopLifeCycleEventHandler),
        |hivent| file.register(hivent),
        &shutdown,
    )
}
