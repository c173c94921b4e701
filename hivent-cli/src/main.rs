//! The standalone `hivent` binary: start, emit, status, dlq and bench.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use hivent::NoopLifeCycleEventHandler;
use hivent_cli::bench::BenchArgs;
use hivent_cli::command_receiver::ReceiversFile;
use hivent_cli::dlq::DlqCommand;
use hivent_cli::emit::EmitArgs;
use hivent_cli::exit::Failure;
use hivent_cli::options::StartArgs;
use hivent_cli::status::StatusArgs;

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

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return hivent_cli::exit::parse_failure(&e),
    };
    let outcome = match &cli.command {
        Command::Start { receivers, args } => start(receivers, args),
        Command::Emit(args) => hivent_cli::emit::run(args),
        Command::Status(args) => hivent_cli::status::run(args),
        Command::Dlq(command) => hivent_cli::dlq::run(command),
        Command::Bench(args) => hivent_cli::bench::run(args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}

fn start(receivers: &std::path::Path, args: &StartArgs) -> Result<(), Failure> {
    let file = ReceiversFile::load(receivers).map_err(Failure::Usage)?;
    hivent_cli::options::require_shared_backend(&args.builder()?.build()?, "start")?;
    let shutdown = hivent_cli::shutdown::on_signals()
        .map_err(|e| Failure::Usage(format!("could not listen for signals: {e}")))?;
    hivent_cli::start(
        args,
        Arc::new(NoopLifeCycleEventHandler),
        |hivent| file.register(hivent),
        shutdown,
    )
}
