//! Graceful shutdown on SIGINT/SIGTERM: the first signal stops the workers, a second exits at once.

use hivent::Shutdown;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Starts listening for SIGINT and SIGTERM. The returned signal is triggered by the
/// first one (a broadcast to every worker thread); a second signal kills the
/// handler commands still running and exits the process with status 130.
pub fn on_signals() -> std::io::Result<Shutdown> {
    let shutdown = Shutdown::new();
    let stop = shutdown.clone();
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("hivent-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if !stop.is_triggered() {
                    stop.trigger();
                    tracing::info!(
                        signal,
                        "stopping: finishing the handler that is running (signal again to exit at once)"
                    );
                } else {
                    tracing::warn!(signal, "second signal: exiting at once");
                    crate::command_receiver::kill_running_commands();
                    std::process::exit(130);
                }
            }
        })?;
    Ok(shutdown)
}
