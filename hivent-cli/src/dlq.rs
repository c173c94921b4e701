//! `hivent dlq`: list, show, replay and purge dead letters, with their failure records.

use std::fmt::Write as _;

use clap::{Args, Subcommand};
use hivent::{
    backend::Backend, DeadLetterEntry, DeadLetterFilter, DeadLetterQueue, DeadLetterReport,
    Operations,
};

use crate::exit::Failure;
use crate::options::ConnectionArgs;

/// The `dlq` subcommands.
#[derive(Subcommand, Clone, Debug)]
pub enum DlqCommand {
    /// One line per dead letter: where, what, how many attempts, when and why it failed
    List(ListArgs),
    /// Each dead letter whole: its failure record (error, attempts, times, worker,
    /// command status and stderr) and its raw JSON
    Show(ListArgs),
    /// Put dead letters back at the head of their partition, in their original order
    /// (all selected ones by default); says how many are left
    Replay(ReplayArgs),
    /// Delete dead letters and their records (needs --yes)
    Purge(PurgeArgs),
}

/// Which dead letters: the same selection means the same dead letters for every
/// subcommand.
#[derive(Args, Clone, Debug)]
pub struct Selection {
    /// The service
    #[arg(long)]
    pub service: String,
    /// Only this partition (default: all)
    #[arg(long)]
    pub partition: Option<u32>,
    /// Only the event with this uuid
    #[arg(long, value_name = "UUID")]
    pub event_uuid: Option<String>,
    /// Only events of this signal
    #[arg(long, value_name = "NAME")]
    pub signal: Option<String>,
    /// At most this many in all, oldest first in each partition, partitions in order
    /// (default: all)
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Connection options.
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

impl Selection {
    fn filter(&self) -> DeadLetterFilter {
        let mut filter = DeadLetterFilter::all();
        filter.partition = self.partition;
        filter.event_uuid = self.event_uuid.clone();
        filter.signal = self.signal.clone();
        filter.limit = self.limit;
        filter
    }
}

/// The options of `dlq list` and `dlq show`.
#[derive(Args, Clone, Debug)]
pub struct ListArgs {
    /// Which dead letters.
    #[command(flatten)]
    pub selection: Selection,
    /// Print JSON (every field of each dead letter and its record) instead of text
    #[arg(long)]
    pub json: bool,
}

/// The options of `dlq replay`.
#[derive(Args, Clone, Debug)]
pub struct ReplayArgs {
    /// Which dead letters.
    #[command(flatten)]
    pub selection: Selection,
    /// Only say what would be replayed
    #[arg(long)]
    pub dry_run: bool,
}

/// The options of `dlq purge`.
#[derive(Args, Clone, Debug)]
pub struct PurgeArgs {
    /// Which dead letters.
    #[command(flatten)]
    pub selection: Selection,
    /// Only say what would be deleted
    #[arg(long)]
    pub dry_run: bool,
    /// Confirm the purge
    #[arg(long)]
    pub yes: bool,
}

/// The operations of a backend, or a runtime failure when it has none.
pub fn operations(backend: &dyn Backend) -> Result<&dyn Operations, Failure> {
    backend.operations().ok_or_else(|| {
        Failure::Usage(format!(
            "the {} backend has no status or dead-letter operations",
            backend.name()
        ))
    })
}

/// Runs a `dlq` subcommand.
pub fn run(command: &DlqCommand) -> Result<(), Failure> {
    let selection = match command {
        DlqCommand::List(a) | DlqCommand::Show(a) => &a.selection,
        DlqCommand::Replay(a) => &a.selection,
        DlqCommand::Purge(a) => &a.selection,
    };
    if let DlqCommand::Purge(a) = command {
        if !a.yes && !a.dry_run {
            return Err(Failure::Usage(format!(
                "purge deletes the dead letters of service {:?} for good; add --yes to confirm (or --dry-run to see what it would delete)",
                selection.service
            )));
        }
    }
    let config = selection.connection.config_for_tool()?;
    crate::options::require_shared_backend(&config, "dlq")?;
    let backend = hivent::open_backend(&config)?;
    eprintln!(
        "hivent: dead letters of {} on {}",
        selection.service,
        crate::options::describe_backend(&config)
    );
    let dlq = DeadLetterQueue::new(operations(backend.as_ref())?, &selection.service);
    let filter = selection.filter();
    match command {
        DlqCommand::List(args) | DlqCommand::Show(args) => {
            let entries = dlq.list(&filter)?;
            if args.json {
                let json = serde_json::to_string_pretty(&entries).map_err(|e| {
                    Failure::Usage(format!("could not encode the dead letters: {e}"))
                })?;
                println!("{json}");
            } else if matches!(command, DlqCommand::List(_)) {
                print!("{}", render_table(&entries));
            } else {
                print!("{}", render_whole(&entries));
            }
        }
        DlqCommand::Replay(args) => {
            let report = dlq.replay(&filter, args.dry_run)?;
            print!("{}", render_report(&report, "replay", &selection.service));
        }
        DlqCommand::Purge(args) => {
            let report = dlq.purge(&filter, args.dry_run)?;
            print!("{}", render_report(&report, "purge", &selection.service));
        }
    }
    Ok(())
}

/// The first line of `text`, at most `max` characters, marked when cut.
fn clip(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or_default();
    if line.chars().count() <= max && line.len() == text.trim_end().len() {
        return line.to_owned();
    }
    let mut clipped: String = line.chars().take(max.saturating_sub(1)).collect();
    clipped.push('…');
    clipped
}

fn time(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Where a dead letter is and what it is, on one line.
fn describe(entry: &DeadLetterEntry) -> String {
    let place = format!("partition {} #{}", entry.partition, entry.position);
    match &entry.event {
        Some(meta) => format!(
            "{place}: {} {} {} created {}",
            meta.name,
            meta.version
                .map_or_else(|| "(no version)".to_owned(), |v| format!("v{v}")),
            meta.event_uuid,
            time(meta.created_at)
        ),
        None => format!("{place}: not an event: {}", clip(&entry.raw, 60)),
    }
}

/// `dlq list`: one line per dead letter, with its failure record's summary.
pub fn render_table(entries: &[DeadLetterEntry]) -> String {
    if entries.is_empty() {
        return "no dead letters selected\n".to_owned();
    }
    let mut out = String::new();
    for entry in entries {
        let failure = match &entry.record {
            Some(record) => format!(
                "{} attempt(s){}, last failed {}: {}",
                record.attempts,
                if record.permanent { " (permanent)" } else { "" },
                time(record.last_failed_at),
                clip(&record.error, 100)
            ),
            None => "no failure record (moved by the Ruby gem or another tool)".to_owned(),
        };
        let _ = writeln!(out, "{}; {failure}", describe(entry));
    }
    out
}

/// `dlq show`: each dead letter with its whole record and raw item.
pub fn render_whole(entries: &[DeadLetterEntry]) -> String {
    if entries.is_empty() {
        return "no dead letters selected\n".to_owned();
    }
    let mut out = String::new();
    for entry in entries {
        let _ = writeln!(out, "{}", describe(entry));
        match &entry.record {
            Some(record) => {
                let receiver = record.receiver.as_ref().map_or_else(
                    || "none (the item was not an event)".to_owned(),
                    |r| match r.version {
                        Some(v) => format!("{} version {v}", r.name),
                        None => format!("{} (every version)", r.name),
                    },
                );
                let _ = writeln!(
                    out,
                    "  attempts:  {}{}",
                    record.attempts,
                    if record.permanent {
                        " (a failure retrying cannot fix)"
                    } else {
                        ""
                    }
                );
                let _ = writeln!(out, "  first failed: {}", time(record.first_failed_at));
                let _ = writeln!(out, "  last failed:  {}", time(record.last_failed_at));
                let _ = writeln!(out, "  worker:    {}", record.worker);
                let _ = writeln!(out, "  receiver:  {receiver}");
                let _ = writeln!(out, "  error:     {}", record.error);
                if let Some(command) = &record.command {
                    let _ = writeln!(
                        out,
                        "  command:   `{}` {}",
                        command.program, command.exit_status
                    );
                    let _ = writeln!(out, "  stderr (end):");
                    for line in command.stderr_tail.lines() {
                        let _ = writeln!(out, "    {line}");
                    }
                }
            }
            None => {
                let _ = writeln!(
                    out,
                    "  no failure record (moved by the Ruby gem or another tool)"
                );
            }
        }
        let _ = writeln!(out, "  raw: {}", entry.raw);
    }
    out
}

/// What a replay or purge did (or would do), and what is left.
pub fn render_report(report: &DeadLetterReport, verb: &str, service: &str) -> String {
    let mut out = String::new();
    let (did, left) = match (report.dry_run, verb) {
        (true, _) => (format!("would {verb}"), "would be left"),
        (false, "replay") => ("replayed".to_owned(), "left"),
        (false, _) => ("purged".to_owned(), "left"),
    };
    for (partition, n) in &report.taken {
        let _ = writeln!(out, "partition {partition}: {did} {n} event(s)");
    }
    let _ = write!(
        out,
        "{did} {} event(s) of service {service}; {} dead letter(s) {left} in the partitions looked at",
        report.total, report.left
    );
    if report.left_selected != report.left {
        let _ = write!(out, ", {} of them selected", report.left_selected);
    }
    out.push('\n');
    if report.dry_run {
        out.push_str("dry run: nothing was changed\n");
    }
    out
}
