//! Exit codes: 2 for usage and configuration errors, 1 for runtime failures.

use std::fmt::Write as _;
use std::process::ExitCode;

/// A failure of a command, with the exit code it maps to.
#[derive(Debug)]
pub enum Failure {
    /// Bad flags, a bad configuration file, a bad value: exit 2 with one line.
    Usage(String),
    /// Something failed while running: exit 1 with the error chain.
    Runtime(hivent::Error),
}

impl Failure {
    /// Prints the failure to stderr and returns the exit code.
    pub fn report(&self) -> ExitCode {
        match self {
            Failure::Usage(message) => {
                eprintln!("hivent: {message}");
                ExitCode::from(2)
            }
            Failure::Runtime(error) => {
                eprintln!("hivent: {}", chain(error));
                ExitCode::from(1)
            }
        }
    }
}

impl From<hivent::Error> for Failure {
    fn from(error: hivent::Error) -> Failure {
        match error {
            hivent::Error::InvalidConfig { .. }
            | hivent::Error::ConfigFileInvalid { .. }
            | hivent::Error::ConfigFileUnreadable { .. }
            | hivent::Error::InvalidSignalName { .. }
            | hivent::Error::EventTooLarge { .. }
            | hivent::Error::PayloadNotEncodable { .. }
            | hivent::Error::NoReceivers { .. } => {
                Failure::Usage(hivent::ErrorChain(&error).to_string())
            }
            other => Failure::Runtime(other),
        }
    }
}

/// Reports a command-line parse result that is not a parsed command: help and version
/// go to stdout with status 0; a usage error becomes one line on stderr with status 2.
pub fn parse_failure(error: &clap::Error) -> ExitCode {
    if !error.use_stderr() {
        let _ = error.print();
        return ExitCode::SUCCESS;
    }
    if error.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        // No command at all: the help is the most useful answer.
        let _ = error.print();
        return ExitCode::from(2);
    }
    // The first paragraph holds the message (and, e.g., the missing arguments).
    let rendered = error.to_string();
    let paragraph: Vec<&str> = rendered
        .lines()
        .take_while(|line| !line.trim().is_empty())
        .map(str::trim)
        .collect();
    let text = paragraph.join(" ");
    let message = text.strip_prefix("error: ").unwrap_or(&text);
    Failure::Usage(format!("{message} (see --help)")).report()
}

/// The error and its sources, each cause on a line of its own ("  caused by: …").
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = write!(text, "\n  caused by: {cause}");
        source = cause.source();
    }
    text
}
