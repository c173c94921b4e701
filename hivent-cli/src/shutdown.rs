//! Graceful shutdown on SIGINT/SIGTERM: the first signal stops the workers, a second exits at once.

use crossbeam_channel::{Receiver, Sender};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Starts listening for SIGINT and SIGTERM. The returned receiver disconnects on the
/// first signal (a broadcast to every worker thread); a second signal kills the
/// handler commands still running and exits the process with status 130.
pub fn on_signals() -> std::io::Result<Receiver<()>> {
    let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("hivent-signals".into())
        .spawn(move || {
            let mut stop: Option<Sender<()>> = Some(stop);
            for signal in signals.forever() {
                if stop.take().is_some() {
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
    Ok(stopped)
}
