//! The worker process: `start` for applications' own binaries and for `hivent start -r`.

use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use hivent::{Hivent, LifeCycleEventHandler, NoopLifeCycleEventHandler, Shutdown};

use crate::exit::Failure;
use crate::logging;
use crate::options::StartArgs;

type Setup = Box<dyn FnOnce(&Hivent) -> hivent::Result<()>>;

/// An application's worker binary: register receivers in `setup`, then call
/// [`Worker::main`], which gives the binary `start`, `--help` and `start --help`.
///
/// ```no_run
/// use hivent_cli::Worker;
///
/// fn main() -> std::process::ExitCode {
///     Worker::new(|hivent| {
///         hivent.signal("user:created")?.receive(|event| {
///             println!("welcome {}", event.payload["email"]);
///             Ok(())
///         });
///         Ok(())
///     })
///     .main()
/// }
/// ```
pub struct Worker {
    setup: Setup,
    handler: Arc<dyn LifeCycleEventHandler>,
}

#[derive(Parser, Debug)]
#[command(about = "A hivent worker: consumes this service's events", version)]
struct WorkerCli {
    #[command(subcommand)]
    command: WorkerCommand,
}

#[derive(Subcommand, Debug)]
enum WorkerCommand {
    /// Start consuming: join the service's consumer group and process events until SIGINT/SIGTERM
    Start(StartArgs),
}

impl Worker {
    /// A worker whose receivers `setup` registers on the service's handle.
    pub fn new(setup: impl FnOnce(&Hivent) -> hivent::Result<()> + 'static) -> Worker {
        Worker {
            setup: Box::new(setup),
            handler: Arc::new(NoopLifeCycleEventHandler),
        }
    }

    /// Sets the application's life-cycle handler.
    pub fn life_cycle_event_handler(mut self, handler: Arc<dyn LifeCycleEventHandler>) -> Self {
        self.handler = handler;
        self
    }

    /// Parses the process arguments and runs; stops on SIGINT/SIGTERM.
    pub fn main(self) -> ExitCode {
        self.main_from(std::env::args_os())
    }

    /// Parses `args` (the first is the program name) and runs.
    pub fn main_from<I, T>(self, args: I) -> ExitCode
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let cli = match WorkerCli::try_parse_from(args) {
            Ok(cli) => cli,
            Err(e) => return crate::exit::parse_failure(&e),
        };
        let WorkerCommand::Start(args) = cli.command;
        let shutdown = match crate::shutdown::on_signals() {
            Ok(shutdown) => shutdown,
            Err(e) => {
                eprintln!("hivent: could not listen for signals: {e}");
                return ExitCode::from(1);
            }
        };
        match start(&args, self.handler, self.setup, &shutdown) {
            Ok(()) => ExitCode::SUCCESS,
            Err(failure) => failure.report(),
        }
    }
}

/// Runs `start` with `args`: connect, let `setup` register receivers, run
/// `--concurrency` consumers until `shutdown` is triggered, leave, return.
pub fn start(
    args: &StartArgs,
    handler: Arc<dyn LifeCycleEventHandler>,
    setup: impl FnOnce(&Hivent) -> hivent::Result<()>,
    shutdown: &Shutdown,
) -> Result<(), Failure> {
    logging::init(&args.log_level).map_err(Failure::Usage)?;
    let config = args.builder()?.life_cycle_event_handler(handler).build()?;
    let hivent = hivent::connect(config)?;
    setup(&hivent)?;
    let config = hivent.config();
    let concurrency = config.concurrency().unwrap_or(1);
    tracing::info!(
        client_id = config.client_id(),
        backend = %config.backend(),
        endpoint = %config.endpoint_redacted(),
        partition_count = config.partition_count(),
        concurrency,
        "starting"
    );
    let sampler = match config.metrics_addr() {
        Some(addr) => {
            crate::metrics_endpoint::serve(addr)?;
            // Registered first, so the lag of its partitions can be read at once.
            hivent.register()?;
            let stop = Shutdown::new();
            let thread = crate::metrics_endpoint::sample_lag(&hivent, &stop).map_err(|e| {
                Failure::Usage(format!("could not start the lag sampler thread: {e}"))
            })?;
            Some((stop, thread))
        }
        None => None,
    };
    let outcome = hivent.run(concurrency, config.consumer_options(), shutdown);
    if let Some((stop, thread)) = sampler {
        stop.trigger();
        if thread.join().is_err() {
            tracing::error!("the lag sampler thread panicked");
        }
    }
    outcome?;
    tracing::info!(
        client_id = config.client_id(),
        "stopped: handled events acknowledged, partitions released"
    );
    Ok(())
}
