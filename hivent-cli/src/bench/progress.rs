//! The progress line `hivent bench` keeps on stderr.

use std::io::{IsTerminal, Write as _};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use parking_lot::Mutex;

/// The progress line on stderr: the phase and, on a terminal, a live count.
pub struct Progress {
    state: Arc<ProgressState>,
    phases: usize,
}

struct ProgressState {
    label: Mutex<(usize, String, u64)>,
    done: AtomicU64,
    finished: AtomicBool,
    terminal: bool,
}

/// Counts the events of the current phase.
#[derive(Clone)]
pub struct Tick {
    state: Arc<ProgressState>,
}

impl Tick {
    /// One more event done.
    pub fn tick(&self) {
        self.state.done.fetch_add(1, Ordering::Relaxed);
    }

    /// `n` more events done.
    pub fn add(&self, n: u64) {
        self.state.done.fetch_add(n, Ordering::Relaxed);
    }
}

impl Progress {
    /// Starts the progress line for a run of `phases` phases.
    pub fn start(phases: usize) -> Progress {
        let state = Arc::new(ProgressState {
            label: Mutex::new((0, String::new(), 0)),
            done: AtomicU64::new(0),
            finished: AtomicBool::new(false),
            terminal: std::io::stderr().is_terminal(),
        });
        if state.terminal {
            let ticker = Arc::clone(&state);
            let _ = thread::Builder::new()
                .name("bench-progress".into())
                .spawn(move || {
                    while !ticker.finished.load(Ordering::Relaxed) {
                        ticker.draw(phases);
                        thread::sleep(Duration::from_millis(250));
                    }
                });
        }
        Progress { state, phases }
    }

    /// Begins a phase of `total` events; the returned counter advances the line.
    pub fn phase(&self, label: &str, total: u64) -> Tick {
        {
            let mut current = self.state.label.lock();
            current.0 += 1;
            current.1 = label.to_owned();
            current.2 = total;
            self.state.done.store(0, Ordering::Relaxed);
            if !self.state.terminal {
                eprintln!(
                    "hivent bench [{}/{}] {label} ({total} events)",
                    current.0, self.phases
                );
            }
        }
        Tick {
            state: Arc::clone(&self.state),
        }
    }

    /// Clears the line.
    pub fn finish(&self) {
        self.state.finished.store(true, Ordering::Relaxed);
        if self.state.terminal {
            eprint!("\r\x1b[K");
            let _ = std::io::stderr().flush();
        }
    }
}

impl ProgressState {
    fn draw(&self, phases: usize) {
        let (index, label, total) = self.label.lock().clone();
        if index == 0 {
            return;
        }
        let done = self.done.load(Ordering::Relaxed).min(total);
        eprint!("\r\x1b[Khivent bench [{index}/{phases}] {label}: {done}/{total}");
        let _ = std::io::stderr().flush();
    }
}
