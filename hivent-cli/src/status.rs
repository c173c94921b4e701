//! `hivent status`: services, members and their health, partition owners, lag, rates and dead letters.

use std::fmt::Write as _;

use chrono::Utc;
use clap::Args;
use hivent::{MemberHealth, MemberStatus, Operations, ServiceStatus};

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
    /// Refresh every SECS seconds (default 2) until interrupted: the table in place,
    /// or one JSON document per line with --json
    #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "2")]
    pub watch: Option<f64>,
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
    let Some(every) = args.watch else {
        let statuses = collect(ops, args.service.as_deref())?;
        if args.json {
            println!("{}", encode(&statuses, true)?);
        } else {
            print!("{}", render(&statuses));
        }
        return Ok(());
    };
    let every = std::time::Duration::try_from_secs_f64(every)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            Failure::Usage(format!(
                "--watch takes a positive number of seconds, not {every}"
            ))
        })?;
    loop {
        let statuses = collect(ops, args.service.as_deref())?;
        if args.json {
            println!("{}", encode(&statuses, false)?);
        } else {
            // Home and clear: the table refreshes in place.
            print!(
                "\x1b[H\x1b[2J{}  (every {:.1}s; Ctrl-C stops)\n{}",
                Utc::now().format("%H:%M:%S"),
                every.as_secs_f64(),
                render(&statuses)
            );
        }
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        std::thread::sleep(every);
    }
}

fn encode(statuses: &[ServiceStatus], pretty: bool) -> Result<String, Failure> {
    let json = match pretty {
        true => serde_json::to_string_pretty(statuses),
        false => serde_json::to_string(statuses),
    };
    json.map_err(|e| Failure::Usage(format!("could not encode the status: {e}")))
}

/// A member's health as the table says it.
fn health(member: &MemberStatus, now: chrono::DateTime<Utc>) -> String {
    let since = member.last_heartbeat_at.map(|at| seconds(now - at));
    match member.health {
        MemberHealth::Healthy => "healthy".to_owned(),
        MemberHealth::NotHeartbeating => format!(
            "NOT HEARTBEATING: last {} ago, every {}",
            since.unwrap_or_else(|| "-".to_owned()),
            member
                .heartbeat_interval_ms
                .map_or("-".to_owned(), |ms| format!("{:.1}s", ms as f64 / 1000.0))
        ),
        MemberHealth::Expired => format!(
            "EXPIRED {} ago: its partitions go to the others",
            seconds(now - member.expires_at)
        ),
        _ => format!("{:?}", member.health),
    }
}

fn seconds(span: chrono::Duration) -> String {
    format!("{:.1}s", span.num_milliseconds().max(0) as f64 / 1000.0)
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
        let id_width = s
            .members
            .iter()
            .map(|m| m.id.len())
            .max()
            .unwrap_or(0)
            .max("member".len());
        if !s.members.is_empty() {
            let _ = writeln!(
                out,
                "  {:<id_width$}  {:<12}  {:>7}  {:>9}  {:<12}  health",
                "member", "host", "pid", "heartbeat", "partitions"
            );
        }
        for m in &s.members {
            let partitions: Vec<String> = m.partitions.iter().map(u32::to_string).collect();
            let _ = writeln!(
                out,
                "  {:<id_width$}  {:<12}  {:>7}  {:>9}  {:<12}  {}",
                m.id,
                m.host.as_deref().unwrap_or("-"),
                m.pid.map_or("-".to_owned(), |pid| pid.to_string()),
                m.last_heartbeat_at
                    .map_or("-".to_owned(), |at| format!("{} ago", seconds(now - at))),
                if partitions.is_empty() {
                    "-".to_owned()
                } else {
                    partitions.join(",")
                },
                health(m, now)
            );
        }
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
            "  {:<9}  {:<width$}  {:>7}  {:>10}  {:>4}  {:>8}",
            "partition", "owner", "waiting", "oldest", "dead", "rate/s"
        );
        for (p, owner) in s.partitions.iter().zip(&owners) {
            let age = p.oldest_created_at.map_or("-".to_owned(), |at| {
                let ms = (now - at).num_milliseconds().max(0);
                format!("{:.1}s", ms as f64 / 1000.0)
            });
            let _ = writeln!(
                out,
                "  {:<9}  {:<width$}  {:>7}  {:>10}  {:>4}  {:>8.1}",
                p.partition, owner, p.waiting, age, p.dead_letters, p.rate
            );
        }
    }
    out
}
