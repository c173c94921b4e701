//! `hivent status`: services, consumers, partition owners, lag and dead letters.

use std::fmt::Write as _;

use chrono::Utc;
use clap::Args;
use hivent::{Operations, ServiceStatus};

use crate::exit::Failure;
use crate::options::ConnectionArgs;

/// The options of `status`.
#[derive(Args, Clone, Debug)]
pub struct StatusArgs {
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
    /// Only this service
    #[arg(long)]
    pub service: Option<String>,
    /// Connection options.
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// Prints the status of every service (or one).
pub fn run(args: &StatusArgs) -> Result<(), Failure> {
    let config = args.connection.config_for_tool()?;
    crate::options::require_shared_backend(&config, "status")?;
    let backend = hivent::open_backend(&config)?;
    eprintln!(
        "hivent: status of {}",
        crate::options::describe_backend(&config)
    );
    let ops = crate::dlq::operations(backend.as_ref())?;
    let statuses = collect(ops, args.service.as_deref())?;
    if args.json {
        let json = serde_json::to_string_pretty(&statuses)
            .map_err(|e| Failure::Usage(format!("could not encode the status: {e}")))?;
        println!("{json}");
    } else {
        print!("{}", render(&statuses));
    }
    Ok(())
}

fn collect(ops: &dyn Operations, only: Option<&str>) -> hivent::Result<Vec<ServiceStatus>> {
    let names = match only {
        Some(service) => vec![service.to_owned()],
        None => ops.services()?,
    };
    names.iter().map(|s| ops.service_status(s)).collect()
}

/// The status as a readable table.
pub fn render(statuses: &[ServiceStatus]) -> String {
    let mut out = String::new();
    if statuses.is_empty() {
        out.push_str("no services registered\n");
    }
    let now = Utc::now();
    for s in statuses {
        let waiting: u64 = s.partitions.iter().map(|p| p.waiting).sum();
        let dead: u64 = s.partitions.iter().map(|p| p.dead_letters).sum();
        let gem = if s.gem_consumers.is_empty() {
            String::new()
        } else {
            format!(" (+{} Ruby gem)", s.gem_consumers.len())
        };
        let _ = writeln!(
            out,
            "service {}: {} partitions, {} consumers{gem}, {} waiting, {} dead letters",
            s.service,
            s.partition_count,
            s.consumers.len(),
            waiting,
            dead
        );
        let _ = writeln!(out, "  receives: {}", s.events.join(", "));
        for consumer in &s.gem_consumers {
            let partitions: Vec<String> = consumer.partitions.iter().map(u32::to_string).collect();
            let _ = writeln!(
                out,
                "  Ruby gem consumer {}: partitions {}",
                consumer.name,
                partitions.join(", ")
            );
        }
        // A partition no hivent-rs member owns may be the gem's.
        let owners: Vec<String> = s
            .partitions
            .iter()
            .map(|p| match &p.owner {
                Some(owner) => owner.clone(),
                None => s
                    .gem_consumers
                    .iter()
                    .find(|c| c.partitions.contains(&p.partition))
                    .map_or_else(|| "-".to_owned(), |c| format!("{} (gem)", c.name)),
            })
            .collect();
        // Member ids are long (host, pid, start time, pid namespace, boot, random).
        let width = owners
            .iter()
            .map(String::len)
            .max()
            .unwrap_or(0)
            .max("owner".len());
        let _ = writeln!(
            out,
            "  {:<9}  {:<width$}  {:>7}  {:>10}  {:>4}",
            "partition", "owner", "waiting", "oldest", "dead"
        );
        for (p, owner) in s.partitions.iter().zip(&owners) {
            let age = p.oldest_created_at.map_or("-".to_owned(), |at| {
                let ms = (now - at).num_milliseconds().max(0);
                format!("{:.1}s", ms as f64 / 1000.0)
            });
            let _ = writeln!(
                out,
                "  {:<9}  {:<width$}  {:>7}  {:>10}  {:>4}",
                p.partition, owner, p.waiting, age, p.dead_letters
            );
        }
    }
    out
}
