//! The figures `hivent bench` measured, their ratios to raw Redis, printed as a table or JSON.

use std::fmt::Write as _;

use serde::Serialize;

/// Everything one run measured, with what it ran on.
#[derive(Serialize, Debug, Clone)]
pub struct Report {
    /// The machine and Redis the figures come from.
    pub machine: Machine,
    /// The options of the run.
    pub settings: Settings,
    /// Throughput figures, raw Redis first.
    pub throughput: Vec<Throughput>,
    /// End-to-end latency figures.
    pub latency: Vec<Latency>,
}

/// The machine and Redis the figures come from.
#[derive(Serialize, Debug, Clone, Default)]
pub struct Machine {
    /// Logical CPUs available to the process.
    pub cores: usize,
    /// The CPU model, from /proc/cpuinfo.
    pub cpu: String,
    /// The kernel, from /proc/sys/kernel/osrelease.
    pub kernel: String,
    /// `redis_version` from `INFO server`.
    pub redis_version: String,
    /// `throwaway` (started by the bench) or `given` (`--endpoint`).
    pub redis: &'static str,
}

/// The options of the run.
#[derive(Serialize, Debug, Clone, Default)]
pub struct Settings {
    /// Events per throughput figure.
    pub events: u64,
    /// Payload size in bytes (JSON text).
    pub payload_bytes: usize,
    /// Size of one event's wire JSON; raw Redis pushes values of this size.
    pub event_bytes: usize,
    /// Partitions of the receiving service.
    pub partitions: u32,
    /// Workers of the second drain figure.
    pub workers: usize,
    /// Events per `EmitBatch`.
    pub emit_batch: usize,
    /// Consumer fetch batch size.
    pub fetch_batch: usize,
    /// Seconds each latency rate runs.
    pub latency_secs: f64,
}

/// One throughput figure.
#[derive(Serialize, Debug, Clone)]
pub struct Throughput {
    /// A stable key for scripts, e.g. `single_emit`.
    pub key: &'static str,
    /// What was measured, for people.
    pub name: String,
    /// Operations (or events) per second.
    pub per_second: f64,
    /// How many operations were timed.
    pub count: u64,
    /// How long they took.
    pub seconds: f64,
    /// The key of the raw Redis figure this one is compared with.
    pub reference: Option<&'static str>,
    /// `per_second / reference.per_second`.
    pub ratio: Option<f64>,
    /// The ratio (or, without a reference, the rate) the issue targets.
    pub target: Option<f64>,
    /// Whether the target is reached in this run (informational; nothing asserts it).
    pub met: Option<bool>,
    /// Microseconds of Redis's own time per operation (`INFO commandstats`); `None`
    /// for figures that do not use Redis.
    pub redis_us_per_event: Option<f64>,
}

impl Throughput {
    /// A figure of `count` operations in `seconds`.
    pub fn new(key: &'static str, name: impl Into<String>, count: u64, seconds: f64) -> Self {
        Throughput {
            key,
            name: name.into(),
            per_second: count as f64 / seconds.max(1e-9),
            count,
            seconds,
            reference: None,
            ratio: None,
            target: None,
            met: None,
            redis_us_per_event: None,
        }
    }

    /// Compares with the raw figure `reference`, aiming at `target` × its rate.
    pub fn against(mut self, reference: &'static str, target: Option<f64>) -> Self {
        self.reference = Some(reference);
        self.target = target;
        self
    }

    /// Aims at an absolute rate.
    pub fn aiming_at(mut self, per_second: f64) -> Self {
        self.target = Some(per_second);
        self
    }
}

/// One end-to-end latency figure: emit start → handler entry.
#[derive(Serialize, Debug, Clone)]
pub struct Latency {
    /// A stable key, e.g. `latency_50`.
    pub key: &'static str,
    /// The emit rate aimed at.
    pub rate: f64,
    /// The emit rate reached.
    pub achieved_rate: f64,
    /// How many events were timed.
    pub samples: usize,
    /// Median, ms.
    pub p50_ms: f64,
    /// 90th percentile, ms.
    pub p90_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Largest, ms.
    pub max_ms: f64,
    /// The targets (p50, p99 in ms), if any.
    pub target_ms: Option<(f64, f64)>,
    /// Whether both targets are reached in this run (informational).
    pub met: Option<bool>,
    /// The key of the latency figure this one is compared with.
    pub reference: Option<&'static str>,
    /// The most this figure's p50 and p99 may be, as multiples of the reference's.
    pub target_ratio: Option<(f64, f64)>,
    /// This figure's p50 and p99 ÷ the reference's.
    pub ratio: Option<(f64, f64)>,
    /// Microseconds of Redis's own time per event.
    pub redis_us_per_event: Option<f64>,
}

impl Latency {
    /// Summarises latencies in nanoseconds.
    pub fn from_samples(
        key: &'static str,
        rate: f64,
        achieved_rate: f64,
        mut nanos: Vec<u64>,
        target_ms: Option<(f64, f64)>,
    ) -> Self {
        nanos.sort_unstable();
        let ms = |q: f64| percentile(&nanos, q) as f64 / 1e6;
        let (p50_ms, p90_ms, p99_ms, max_ms) = (ms(0.50), ms(0.90), ms(0.99), ms(1.0));
        Latency {
            key,
            rate,
            achieved_rate,
            samples: nanos.len(),
            p50_ms,
            p90_ms,
            p99_ms,
            max_ms,
            target_ms,
            met: target_ms.map(|(p50, p99)| p50_ms <= p50 && p99_ms <= p99),
            reference: None,
            target_ratio: None,
            ratio: None,
            redis_us_per_event: None,
        }
    }

    /// Compares with the latency figure `reference`: p50 and p99 at most `target` × its.
    pub fn against(mut self, reference: &'static str, target: (f64, f64)) -> Self {
        self.reference = Some(reference);
        self.target_ratio = Some(target);
        self
    }
}

/// A figure that carries the Redis time it cost, per event.
pub trait RedisTimed {
    /// Records that Redis spent `micros` of its own time on this figure.
    fn with_redis_time(self, micros: f64) -> Self;
}

impl RedisTimed for Throughput {
    fn with_redis_time(mut self, micros: f64) -> Self {
        self.redis_us_per_event = Some(micros / self.count.max(1) as f64);
        self
    }
}

impl RedisTimed for Latency {
    fn with_redis_time(mut self, micros: f64) -> Self {
        self.redis_us_per_event = Some(micros / self.samples.max(1) as f64);
        self
    }
}

/// The nearest-rank percentile `q` (0..=1) of sorted values; 0 for none.
pub fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Report {
    /// Fills in ratios and whether targets are met, from the raw figures.
    pub fn compute_ratios(&mut self) {
        let raw: Vec<(&'static str, f64)> = self
            .throughput
            .iter()
            .map(|t| (t.key, t.per_second))
            .collect();
        for figure in &mut self.throughput {
            match figure.reference {
                Some(reference) => {
                    let base = raw.iter().find(|(k, _)| *k == reference).map(|(_, v)| *v);
                    figure.ratio = base.filter(|b| *b > 0.0).map(|b| figure.per_second / b);
                    figure.met = figure.target.zip(figure.ratio).map(|(t, r)| r >= t);
                }
                None => figure.met = figure.target.map(|t| figure.per_second >= t),
            }
        }
        let latencies: Vec<(&'static str, f64, f64)> = self
            .latency
            .iter()
            .map(|l| (l.key, l.p50_ms, l.p99_ms))
            .collect();
        for figure in &mut self.latency {
            let Some(reference) = figure.reference else {
                continue;
            };
            let Some(&(_, p50, p99)) = latencies.iter().find(|(k, _, _)| *k == reference) else {
                continue;
            };
            if p50 > 0.0 && p99 > 0.0 {
                let ratio = (figure.p50_ms / p50, figure.p99_ms / p99);
                figure.ratio = Some(ratio);
                figure.met = figure
                    .target_ratio
                    .map(|(t50, t99)| ratio.0 <= t50 && ratio.1 <= t99);
            }
        }
    }

    /// The report as a text table.
    pub fn table(&self) -> String {
        let s = &self.settings;
        let m = &self.machine;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "hivent bench: {} events, payload {} B (event JSON {} B), {} partitions, emit batch {}, fetch batch {}",
            group(s.events as f64),
            s.payload_bytes,
            s.event_bytes,
            s.partitions,
            s.emit_batch,
            s.fetch_batch
        );
        let _ = writeln!(
            out,
            "machine: {} cores, {}, Linux {}, Redis {} ({})",
            m.cores, m.cpu, m.kernel, m.redis_version, m.redis
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<44} {:>12} {:>9}  {:>6}  {:<30} {:<14}",
            "throughput", "per second", "Redis µs", "ratio", "reference", "target"
        );
        for t in &self.throughput {
            let ratio = t.ratio.map_or(String::new(), |r| format!("{r:.2}"));
            let target = match (t.target, t.reference) {
                (Some(target), Some(_)) => format!("≥ {target:.2}×"),
                (Some(target), None) => format!("≥ {}/s", group(target)),
                _ => String::new(),
            };
            let met = match t.met {
                Some(true) => " met",
                Some(false) => " MISSED",
                None => "",
            };
            let redis = t
                .redis_us_per_event
                .map_or(String::new(), |us| format!("{us:.2}"));
            let _ = writeln!(
                out,
                "{:<44} {:>12} {:>9}  {:>6}  {:<30} {}{}",
                t.name,
                group(t.per_second),
                redis,
                ratio,
                t.reference.map(|key| self.name_of(key)).unwrap_or_default(),
                target,
                met
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<44} {:>7} {:>7} {:>7} {:>8} {:>7} {:>9}  {:<13} target",
            "latency, send → receipt (ms)",
            "p50",
            "p90",
            "p99",
            "max",
            "samples",
            "Redis µs",
            "p50/p99 ratio"
        );
        for l in &self.latency {
            let verdict = if l.met == Some(true) {
                " met"
            } else {
                " MISSED"
            };
            let target = match (l.target_ms, l.target_ratio) {
                (Some((p50, p99)), _) => format!("p50 ≤ {p50} ms, p99 ≤ {p99} ms{verdict}"),
                (None, Some((p50, p99))) => {
                    let bounds: Vec<String> = [("p50", p50), ("p99", p99)]
                        .iter()
                        .filter(|(_, bound)| bound.is_finite())
                        .map(|(name, bound)| format!("{name} ≤ {bound}×"))
                        .collect();
                    format!("{}{verdict}", bounds.join(", "))
                }
                (None, None) => String::new(),
            };
            let ratio = l
                .ratio
                .map_or(String::new(), |(p50, p99)| format!("{p50:.2} / {p99:.2}"));
            let redis = l
                .redis_us_per_event
                .map_or(String::new(), |us| format!("{us:.2}"));
            let _ = writeln!(
                out,
                "{:<44} {:>7.3} {:>7.3} {:>7.3} {:>8.3} {:>7} {:>9}  {:<13} {}",
                format!(
                    "{} at {}/s (reached {})",
                    l.system(),
                    group(l.rate),
                    group(l.achieved_rate)
                ),
                l.p50_ms,
                l.p90_ms,
                l.p99_ms,
                l.max_ms,
                l.samples,
                redis,
                ratio,
                target
            );
        }
        out
    }

    /// The name of the throughput figure `key`, for the reference column.
    fn name_of(&self, key: &str) -> String {
        self.throughput
            .iter()
            .find(|t| t.key == key)
            .map_or_else(|| key.to_owned(), |t| t.name.clone())
    }
}

impl Latency {
    /// Whose latency this is, from its key.
    fn system(&self) -> &'static str {
        if self.key.starts_with("streams_") {
            "Streams BLOCK"
        } else {
            "hivent"
        }
    }
}

/// A number rounded to an integer with thousands separators: `1,234,567`.
pub fn group(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nearest-rank percentiles and grouping of digits.
    #[test]
    fn percentiles_and_grouping() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), 50);
        assert_eq!(percentile(&v, 0.99), 99);
        assert_eq!(percentile(&v, 1.0), 100);
        assert_eq!(percentile(&[], 0.5), 0);
        assert_eq!(group(1234567.4), "1,234,567");
        assert_eq!(group(12.0), "12");
    }
}
