//! `hivent dlq`: list, show, replay and purge dead letter queues.

use clap::{Args, Subcommand};
use hivent::{Backend, Event, Operations};

use crate::exit::Failure;
use crate::options::ConnectionArgs;

/// The `dlq` subcommands.
#[derive(Subcommand, Clone, Debug)]
pub enum DlqCommand {
    /// One line per dead letter: partition, event name, version, uuid, time
    List(DlqArgs),
    /// The dead letters' raw JSON, one per line
    Show(DlqArgs),
    /// Put dead letters back at the head of their partition, in their original order
    Replay(DlqArgs),
    /// Delete dead letters (needs --yes)
    Purge(DlqArgs),
}

/// Which dead letters.
#[derive(Args, Clone, Debug)]
pub struct DlqArgs {
    /// The service
    #[arg(long)]
    pub service: String,
    /// Only this partition (default: all)
    #[arg(long)]
    pub partition: Option<u32>,
    /// At most this many per partition, oldest first (default: all)
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Confirm a purge
    #[arg(long)]
    pub yes: bool,
    /// Connection options.
    #[command(flatten)]
    pub connection: ConnectionArgs,
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
    let args = match command {
        DlqCommand::List(a)
        | DlqCommand::Show(a)
        | DlqCommand::Replay(a)
        | DlqCommand::Purge(a) => a,
    };
    if let DlqCommand::Purge(a) = command {
        if !a.yes {
            return Err(Failure::Usage(format!(
                "purge deletes the dead letters of service {:?} for good; add --yes to confirm",
                a.service
            )));
        }
    }
    let config = args.connection.config_for_tool()?;
    crate::options::require_shared_backend(&config, "dlq")?;
    let backend = hivent::open_backend(&config)?;
    eprintln!(
        "hivent: dead letters of {} on {}",
        args.service,
        crate::options::describe_backend(&config)
    );
    let ops = operations(backend.as_ref())?;
    let partitions = match args.partition {
        Some(p) => vec![p],
        None => (0..ops.service_status(&args.service)?.partition_count).collect(),
    };
    let limit = args.limit.unwrap_or(usize::MAX);
    let mut total = 0;
    for &p in &partitions {
        match command {
            DlqCommand::List(_) => {
                for (i, raw) in ops
                    .dead_letters(&args.service, p, limit)?
                    .iter()
                    .enumerate()
                {
                    println!("{}", describe(p, i, raw));
                }
            }
            DlqCommand::Show(_) => {
                for raw in ops.dead_letters(&args.service, p, limit)? {
                    println!("{raw}");
                }
            }
            DlqCommand::Replay(_) | DlqCommand::Purge(_) => {
                let (verb, n) = match command {
                    DlqCommand::Replay(_) => ("replayed", replay(ops, &args.service, p, limit)?),
                    _ => ("purged", ops.purge_dead_letters(&args.service, p)?),
                };
                if n > 0 {
                    println!("partition {p}: {verb} {n} event(s)");
                }
                total += n;
            }
        }
    }
    match command {
        DlqCommand::Replay(_) => {
            let status = ops.service_status(&args.service)?;
            let left: u64 = status
                .partitions
                .iter()
                .filter(|s| partitions.contains(&s.partition))
                .map(|s| s.dead_letters)
                .sum();
            println!(
                "replayed {total} event(s) of service {}; {left} dead letter(s) left",
                args.service
            );
        }
        DlqCommand::Purge(_) => println!("purged {total} event(s) of service {}", args.service),
        DlqCommand::List(_) | DlqCommand::Show(_) => {}
    }
    Ok(())
}

/// The most dead letters one replay call moves: a call is one atomic script, and a
/// bounded one never blocks Redis for long.
const REPLAY_CHUNK: usize = 1000;

/// Replays up to `limit` dead letters of one partition, oldest first, in calls of at
/// most [`REPLAY_CHUNK`]; returns how many moved.
fn replay(
    ops: &dyn Operations,
    service: &str,
    partition: u32,
    limit: usize,
) -> hivent::Result<usize> {
    let mut moved = 0;
    while moved < limit {
        let chunk = (limit - moved).min(REPLAY_CHUNK);
        let n = ops.replay_dead_letters(service, partition, chunk)?;
        moved += n;
        if n < chunk {
            break;
        }
    }
    Ok(moved)
}

/// One line for a dead letter: where it is and what it is.
fn describe(partition: u32, index: usize, raw: &str) -> String {
    match Event::from_json(raw) {
        Ok(e) => format!(
            "partition {partition} #{index}: {} {} {} {}",
            e.meta.name,
            e.meta
                .version
                .map_or_else(|| "(no version)".to_owned(), |v| format!("v{v}")),
            e.meta.event_uuid,
            e.meta
                .created_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        ),
        Err(_) => {
            let head: String = raw.chars().take(60).collect();
            format!("partition {partition} #{index}: not an event: {head}")
        }
    }
}
