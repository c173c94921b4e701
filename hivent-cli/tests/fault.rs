//! Fault tests on real processes and a real `redis-server`: kill storms, stalls, SIGTERM
//! under load and a join under a backlog, checked for losses, order and overlaps.
//!
//! This binary is its own worker and handler. With `HIVENT_FAULT_ROLE=worker` it is an
//! application worker binary built on `hivent_cli::Worker`; with
//! `HIVENT_FAULT_ROLE=handler` it is the command of a `hivent start -r` receiver. Each
//! handling appends an entry line and an exit line (`E|X <worker pid> <key> <seq>
//! <unix ns>`) to a shared log, from which the test derives what happened: every event
//! completed at least once, per key the first completion of each event before the first
//! entry of the next, and no two live workers inside handlers of one partition at once
//! except the handler that was running when a stall began.
//!
//! The short form runs in `cargo test`; `HIVENT_FAULT_LONG=1 cargo test -p hivent-cli
//! --test fault` runs the long form (20,000 events per kill storm, 6 stall trials).
//! Assertions are facts, never durations; the measured times are printed in the report.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hivent::{BackendKind, Config, EmitOptions};
use hivent_redis::test_server::{server_for_tests, RedisServer};

const BIN: &str = env!("CARGO_BIN_EXE_hivent");
const SIGNAL: &str = "fault:event";
const ROLE: &str = "HIVENT_FAULT_ROLE";
const LOG: &str = "HIVENT_FAULT_LOG";
const DELAY: &str = "HIVENT_FAULT_DELAY_MS";
const HEARTBEAT_MS: u64 = 200;
const TTL_MS: u64 = 2_000;

fn main() -> ExitCode {
    match std::env::var(ROLE).as_deref() {
        Ok("worker") => worker(),
        Ok("handler") => handler(),
        _ => run_all(),
    }
}

// ---------------------------------------------------------------------------------
// The worker and handler processes

/// An application worker binary: one receiver that logs entry and exit around a pause.
fn worker() -> ExitCode {
    let log = PathBuf::from(std::env::var(LOG).unwrap());
    let delay = delay();
    hivent_cli::Worker::new(move |hivent| {
        hivent.signal(SIGNAL)?.receive(move |event| {
            let (key, seq) = key_and_seq(&event.payload);
            record(&log, 'E', std::process::id(), &key, seq);
            std::thread::sleep(delay);
            record(&log, 'X', std::process::id(), &key, seq);
            Ok(())
        });
        Ok(())
    })
    .main()
}

/// The command of a `hivent start -r` receiver: the event on stdin, the worker as parent.
fn handler() -> ExitCode {
    let log = PathBuf::from(std::env::var(LOG).unwrap());
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).unwrap();
    let event: serde_json::Value = serde_json::from_str(&input).unwrap();
    let (key, seq) = key_and_seq(&event["payload"]);
    let worker = u32::try_from(nix::unistd::getppid().as_raw()).unwrap();
    record(&log, 'E', worker, &key, seq);
    std::thread::sleep(delay());
    record(&log, 'X', worker, &key, seq);
    ExitCode::SUCCESS
}

fn delay() -> Duration {
    Duration::from_millis(std::env::var(DELAY).unwrap().parse().unwrap())
}

fn key_and_seq(payload: &serde_json::Value) -> (String, u64) {
    (
        payload["key"].as_str().unwrap().to_owned(),
        payload["seq"].as_u64().unwrap(),
    )
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// One line, one `write` on an `O_APPEND` file: lines of several processes never mix.
fn record(log: &Path, mark: char, worker: u32, key: &str, seq: u64) {
    let line = format!("{mark} {worker} {key} {seq} {}\n", now_ns());
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(log)
        .unwrap();
    file.write_all(line.as_bytes()).unwrap();
}

// ---------------------------------------------------------------------------------
// The runner

struct Scale {
    long: bool,
}

type Case = fn(&RedisServer, &Scale) -> String;

fn run_all() -> ExitCode {
    let scale = Scale {
        long: std::env::var("HIVENT_FAULT_LONG").is_ok_and(|v| v == "1"),
    };
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let cases: [(&str, Case); 6] = [
        ("kill_storm_application_worker", |s, sc| {
            kill_storm(s, sc, Kind::Application)
        }),
        ("kill_storm_command_worker", |s, sc| {
            kill_storm(s, sc, Kind::Command)
        }),
        ("stall_past_the_lifetime", stall),
        ("sigterm_with_a_slow_handler_application_worker", |s, _| {
            sigterm(s, Kind::Application)
        }),
        ("sigterm_with_a_slow_handler_command_worker", |s, _| {
            sigterm(s, Kind::Command)
        }),
        ("join_under_backlog", join_under_backlog),
    ];
    let started = Instant::now();
    let form = if scale.long { "long" } else { "short" };
    let selected: Vec<_> = cases
        .iter()
        .filter(|(name, _)| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str())))
        .collect();
    println!("\nrunning {} fault tests ({form} form)", selected.len());
    let (mut passed, mut failed, mut ignored) = (0, 0, 0);
    let mut reports = Vec::new();
    for (name, case) in &selected {
        let Some(server) = server_for_tests() else {
            println!("test {name} ... ignored, redis-server not found (install it; CI sets HIVENT_REQUIRE_REDIS=1)");
            ignored += 1;
            continue;
        };
        match std::panic::catch_unwind(AssertUnwindSafe(|| case(&server, &scale))) {
            Ok(report) => {
                println!("test {name} ... ok");
                reports.push(format!("{name}: {report}"));
                passed += 1;
            }
            Err(_) => {
                println!("test {name} ... FAILED");
                failed += 1;
            }
        }
    }
    if !reports.is_empty() {
        println!(
            "\nfault report ({form} form, heartbeat {HEARTBEAT_MS} ms, member TTL {TTL_MS} ms):"
        );
        for report in &reports {
            println!("  {report}");
        }
    }
    println!(
        "\ntest result: {}. {passed} passed; {failed} failed; {ignored} ignored; 0 measured; {} filtered out; finished in {:.2}s\n",
        if failed == 0 { "ok" } else { "FAILED" },
        cases.len() - selected.len(),
        started.elapsed().as_secs_f64()
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

// ---------------------------------------------------------------------------------
// Worker processes of one service

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// This binary as an application worker (`hivent_cli::Worker`).
    Application,
    /// `hivent start -r` with this binary as the receiver's command.
    Command,
}

/// One service's worker processes, its handling log and its Redis.
struct Service<'a> {
    server: &'a RedisServer,
    name: String,
    partitions: u32,
    kind: Kind,
    delay_ms: u64,
    dir: tempfile::TempDir,
    workers: Vec<Child>,
}

impl<'a> Service<'a> {
    fn new(
        server: &'a RedisServer,
        name: &str,
        partitions: u32,
        kind: Kind,
        delay_ms: u64,
    ) -> Service<'a> {
        let dir = tempfile::tempdir().unwrap();
        let receivers = dir.path().join("receivers.toml");
        let exe = std::env::current_exe().unwrap();
        std::fs::write(
            &receivers,
            format!(
                "[[receiver]]\nsignal = {SIGNAL:?}\ncommand = [{:?}]\ntimeout_secs = 60\n",
                exe.display().to_string()
            ),
        )
        .unwrap();
        Service {
            server,
            name: name.to_owned(),
            partitions,
            kind,
            delay_ms,
            dir,
            workers: Vec::new(),
        }
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("handlings.log")
    }

    /// Starts one more worker process; returns its pid.
    fn spawn(&mut self) -> u32 {
        let mut command = match self.kind {
            Kind::Application => {
                let mut c = Command::new(std::env::current_exe().unwrap());
                c.env(ROLE, "worker").arg("start");
                c
            }
            Kind::Command => {
                let mut c = Command::new(BIN);
                // Inherited by the handler commands.
                c.env(ROLE, "handler")
                    .args(["start", "-r"])
                    .arg(self.dir.path().join("receivers.toml"));
                c
            }
        };
        let stderr = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.dir.path().join("workers.stderr"))
            .unwrap();
        command
            .args(["--backend", "redis", "--endpoint", &self.server.url()])
            .args(["--client-id", &self.name])
            .args(["--partition-count", &self.partitions.to_string()])
            .args(["--heartbeat-interval-ms", &HEARTBEAT_MS.to_string()])
            .args(["--member-ttl-ms", &TTL_MS.to_string()])
            .args(["--log-level", "warn"])
            .env(LOG, self.log())
            .env(DELAY, self.delay_ms.to_string())
            .env_remove("HIVENT_ENDPOINT")
            .env_remove("REDIS_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let child = command.spawn().unwrap();
        let pid = child.id();
        self.workers.push(child);
        pid
    }

    fn redis(&self) -> redis::Connection {
        redis::Client::open(self.server.url())
            .unwrap()
            .get_connection()
            .unwrap()
    }

    fn members(&self) -> usize {
        redis::cmd("ZCARD")
            .arg(format!("{}:hivent:members", self.name))
            .query(&mut self.redis())
            .unwrap()
    }

    /// Partition → owning member.
    fn owners(&self) -> BTreeMap<u32, String> {
        redis::cmd("HGETALL")
            .arg(format!("{}:hivent:owners", self.name))
            .query(&mut self.redis())
            .unwrap()
    }

    fn waiting(&self) -> u64 {
        let mut pipe = redis::pipe();
        for p in 0..self.partitions {
            pipe.cmd("LLEN").arg(format!("{}:{p}", self.name));
        }
        let lens: Vec<u64> = pipe.query(&mut self.redis()).unwrap();
        lens.iter().sum()
    }

    fn wait_for_members(&self, n: usize) {
        wait_for(&format!("{n} members"), Duration::from_secs(60), || {
            self.members() == n
        });
    }

    /// Emits `count` events over `keys` keys, `seq` counting per key from `first_seq`,
    /// in batches of `batch`, pausing `pause` between batches. Returns (key, seq) in
    /// emit order.
    fn emit(&self, count: usize, keys: usize, batch: usize, pause: Duration) -> Vec<(String, u64)> {
        emit_events(&self.server.url(), count, keys, batch, pause)
    }

    fn index_of(&self, pid: u32) -> usize {
        self.workers.iter().position(|c| c.id() == pid).unwrap()
    }

    /// SIGKILLs a worker and reaps it; returns when it was killed.
    fn kill(&mut self, pid: u32) -> u128 {
        let mut child = self.workers.remove(self.index_of(pid));
        child.kill().unwrap();
        let at = now_ns();
        child.wait().unwrap();
        at
    }

    fn signal(&self, pid: u32, signal: nix::sys::signal::Signal) -> u128 {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
            signal,
        )
        .unwrap();
        now_ns()
    }

    /// SIGTERMs a worker and waits for it; returns its exit code and when it exited.
    fn terminate(&mut self, pid: u32) -> (Option<i32>, u128) {
        let mut child = self.workers.remove(self.index_of(pid));
        self.signal(pid, nix::sys::signal::Signal::SIGTERM);
        let status = child.wait().unwrap();
        (status.code(), now_ns())
    }

    fn terminate_all(&mut self) {
        for pid in self.workers.iter().map(Child::id).collect::<Vec<_>>() {
            let (code, _) = self.terminate(pid);
            assert_eq!(
                code,
                Some(0),
                "a worker did not stop cleanly: {}",
                self.stderr()
            );
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("workers.stderr")).unwrap_or_default()
    }

    fn handlings(&self) -> Vec<Handling> {
        handlings(&self.log())
    }

    /// Waits until every emitted event completed at least once.
    fn wait_until_done(&self, emitted: &[(String, u64)], limit: Duration) {
        let wanted: BTreeSet<&(String, u64)> = emitted.iter().collect();
        wait_for("every event to complete", limit, || {
            let done: BTreeSet<(String, u64)> = self
                .handlings()
                .into_iter()
                .filter(|h| h.end.is_some())
                .map(|h| (h.key, h.seq))
                .collect();
            wanted.iter().all(|e| done.contains(*e))
        });
    }

    /// Waits until `worker` handled an event and is inside the handler of the next.
    fn wait_until_inside_a_handler(&self, worker: u32) {
        wait_for(
            "the worker inside a handler",
            Duration::from_secs(60),
            || {
                let all = self.handlings();
                let mine = || all.iter().filter(|h| h.worker == worker);
                mine().any(|h| h.end.is_some())
                    && mine().next_back().is_some_and(|h| h.end.is_none())
            },
        );
    }

    /// Waits until two members own half of the partitions each.
    fn wait_for_even_split(&self) {
        wait_for("an even split", Duration::from_secs(60), || {
            let mut per_owner: BTreeMap<String, u32> = BTreeMap::new();
            for owner in self.owners().into_values() {
                *per_owner.entry(owner).or_default() += 1;
            }
            per_owner.values().copied().collect::<Vec<_>>() == [self.partitions / 2; 2]
        });
    }

    fn partition_of(&self, key: &str) -> u32 {
        hivent::partition_for(
            hivent::partition_hash(Some(key), &serde_json::Value::Null),
            self.partitions,
        )
    }
}

impl Drop for Service<'_> {
    fn drop(&mut self) {
        for child in &mut self.workers {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn emit_events(
    url: &str,
    count: usize,
    keys: usize,
    batch: usize,
    pause: Duration,
) -> Vec<(String, u64)> {
    let producer = hivent::connect(
        Config::builder()
            .backend(BackendKind::Redis)
            .endpoint(url)
            .client_id("fault-producer")
            .build()
            .unwrap(),
    )
    .unwrap();
    let signal = producer.signal(SIGNAL).unwrap();
    let mut next_seq = vec![0_u64; keys];
    let mut emitted = Vec::with_capacity(count);
    let mut i = 0;
    while i < count {
        let mut calls = producer.batch();
        for _ in 0..batch.min(count - i) {
            let k = i % keys;
            let key = format!("key-{k}");
            let seq = next_seq[k];
            next_seq[k] += 1;
            calls
                .push(
                    &signal,
                    &serde_json::json!({"key": key, "seq": seq}),
                    EmitOptions::version(1).key(key.clone()),
                )
                .unwrap();
            emitted.push((key, seq));
            i += 1;
        }
        calls.emit().unwrap();
        std::thread::sleep(pause);
    }
    emitted
}

/// Whether `pid` is stopped (state `T` in `/proc/<pid>/stat`).
fn is_stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('T'))
        })
        .unwrap_or(false)
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------------
// What the log says

#[derive(Clone, Debug)]
struct Handling {
    worker: u32,
    key: String,
    seq: u64,
    start: u128,
    /// `None` when the handler never exited (its worker was killed meanwhile).
    end: Option<u128>,
}

fn handlings(log: &Path) -> Vec<Handling> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut all: Vec<Handling> = Vec::new();
    // A worker runs one handler at a time (concurrency 1): its open handling.
    let mut open: BTreeMap<u32, usize> = BTreeMap::new();
    // A last line without its newline is still being written: read it next time.
    for line in text
        .split_inclusive('\n')
        .filter_map(|l| l.strip_suffix('\n'))
    {
        let parts: Vec<&str> = line.split(' ').collect();
        let [mark, worker, key, seq, at] = parts[..] else {
            panic!("malformed log line {line:?}");
        };
        let (worker, seq, at): (u32, u64, u128) = (
            worker.parse().unwrap(),
            seq.parse().unwrap(),
            at.parse().unwrap(),
        );
        match mark {
            "E" => {
                open.insert(worker, all.len());
                all.push(Handling {
                    worker,
                    key: key.to_owned(),
                    seq,
                    start: at,
                    end: None,
                });
            }
            "X" => {
                let index = open.remove(&worker).expect("an exit without an entry");
                assert_eq!((all[index].key.as_str(), all[index].seq), (key, seq));
                all[index].end = Some(at);
            }
            other => panic!("unknown mark {other:?}"),
        }
    }
    all
}

/// What a run did, derived from the log and the faults injected.
#[derive(Debug, Default)]
struct Findings {
    handlings: usize,
    lost: usize,
    duplicates: usize,
    order_violations: usize,
    overlaps: usize,
    allowed_overlaps: usize,
    /// A few of the forbidden overlaps, for the failure message.
    examples: Vec<String>,
}

/// `kills`: (worker, when); a handling of a killed worker without an exit ends then.
/// `stalls`: (worker, when it was stopped); that worker's handler running then may
/// overlap the new owner's.
fn findings(
    service: &Service,
    emitted: &[(String, u64)],
    kills: &[(u32, u128)],
    stalls: &[(u32, u128)],
) -> Findings {
    let logged = service.handlings();
    let mut all = logged.clone();
    for h in &mut all {
        if h.end.is_none() {
            if let Some((_, at)) = kills
                .iter()
                .find(|(w, at)| *w == h.worker && *at >= h.start)
            {
                h.end = Some(*at);
            }
        }
    }
    let completed: Vec<&Handling> = all.iter().filter(|h| h.end.is_some()).collect();
    let exits: Vec<&Handling> = logged.iter().filter(|h| h.end.is_some()).collect();
    let distinct: BTreeSet<(String, u64)> = exits.iter().map(|h| (h.key.clone(), h.seq)).collect();
    let lost = emitted.iter().filter(|e| !distinct.contains(*e)).count();

    // Per key: the first completion of each event comes before the first entry of the next.
    let mut first_entry: BTreeMap<(String, u64), u128> = BTreeMap::new();
    for h in &all {
        let t = first_entry.entry((h.key.clone(), h.seq)).or_insert(h.start);
        *t = (*t).min(h.start);
    }
    let mut first_exit: BTreeMap<(String, u64), u128> = BTreeMap::new();
    for h in &exits {
        let end = h.end.unwrap_or_default();
        let t = first_exit.entry((h.key.clone(), h.seq)).or_insert(end);
        *t = (*t).min(end);
    }
    let order_violations = emitted
        .iter()
        .filter(|(key, seq)| {
            let done = first_exit.get(&(key.clone(), *seq));
            let next_started = first_entry.get(&(key.clone(), seq + 1));
            matches!((done, next_started), (Some(done), Some(started)) if done > started)
        })
        .count();

    // Per partition: no two workers inside handlers at once, except a stalled worker's
    // handler that was running when its stall began.
    let mut by_partition: BTreeMap<u32, Vec<&Handling>> = BTreeMap::new();
    for h in &completed {
        by_partition
            .entry(service.partition_of(&h.key))
            .or_default()
            .push(h);
    }
    // The handler in progress when a stall began: the one logged across the stop, or,
    // when the stop came between the worker's ownership check and the handler's first
    // log line, the worker's first handling logged after the stop. Any further handling
    // of the stalled worker overlapping another's is a violation.
    let in_progress: Vec<(u32, u128)> = stalls
        .iter()
        .filter_map(|&(worker, at)| {
            let mine = || all.iter().filter(move |h| h.worker == worker);
            mine()
                .find(|h| h.start < at && h.end.is_some_and(|e| e > at))
                .or_else(|| mine().filter(|h| h.start >= at).min_by_key(|h| h.start))
                .map(|h| (worker, h.start))
        })
        .collect();
    let running_at_stall = |h: &Handling| in_progress.contains(&(h.worker, h.start));
    let (mut overlaps, mut allowed_overlaps) = (0, 0);
    let mut examples = Vec::new();
    for list in by_partition.values_mut() {
        list.sort_by_key(|h| h.start);
        for (i, a) in list.iter().enumerate() {
            let a_end = a.end.unwrap_or(u128::MAX);
            for b in &list[i + 1..] {
                if b.start >= a_end {
                    break;
                }
                if a.worker != b.worker {
                    if running_at_stall(a) || running_at_stall(b) {
                        allowed_overlaps += 1;
                    } else {
                        overlaps += 1;
                        if examples.len() < 4 {
                            examples.push(format!("{a:?} and {b:?}"));
                        }
                    }
                }
            }
        }
    }
    Findings {
        handlings: all.len(),
        lost,
        duplicates: exits.len() - distinct.len(),
        order_violations,
        overlaps,
        allowed_overlaps,
        examples,
    }
}

fn assert_sound(service: &Service, findings: &Findings) {
    assert_eq!(
        findings.lost,
        0,
        "lost events: {findings:?}\n{}",
        service.stderr()
    );
    assert_eq!(
        findings.order_violations, 0,
        "per-key order broken: {findings:?}"
    );
    assert_eq!(
        findings.overlaps,
        0,
        "two live workers in one partition: {findings:?}\n{}",
        findings.examples.join("\n")
    );
}

fn ms(from: u128, to: u128) -> f64 {
    (to.saturating_sub(from)) as f64 / 1e6
}

// ---------------------------------------------------------------------------------
// The cases

/// (a) 3 workers of one service, 8 partitions, keyed events over 200 keys emitted while
/// one random worker is SIGKILLed and restarted again and again.
fn kill_storm(server: &RedisServer, scale: &Scale, kind: Kind) -> String {
    let (events, every, min_kills) = if scale.long {
        (20_000, Duration::from_secs(1), 15)
    } else {
        (2_000, Duration::from_millis(700), 4)
    };
    let name = format!("fault-storm-{kind:?}").to_lowercase();
    let mut service = Service::new(server, &name, 8, kind, 1);
    for _ in 0..3 {
        service.spawn();
    }
    service.wait_for_members(3);
    let emitting = Arc::new(AtomicBool::new(true));
    let url = server.url();
    let flag = emitting.clone();
    let emitter = std::thread::spawn(move || {
        // About 1,000 events a second, so that kills land while events still come.
        let emitted = emit_events(&url, events, 200, 50, Duration::from_millis(50));
        flag.store(false, Ordering::SeqCst);
        emitted
    });
    let mut kills = Vec::new();
    let mut seed = now_ns() as u64;
    while emitting.load(Ordering::SeqCst) || kills.len() < min_kills {
        std::thread::sleep(every);
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let pick = usize::try_from(seed >> 33).unwrap() % service.workers.len();
        let pid = service.workers[pick].id();
        kills.push((pid, service.kill(pid)));
        service.spawn();
    }
    let emitted = emitter.join().unwrap();
    service.wait_until_done(
        &emitted,
        Duration::from_secs(if scale.long { 600 } else { 180 }),
    );
    service.terminate_all();
    let found = findings(&service, &emitted, &kills, &[]);
    assert_sound(&service, &found);
    format!(
        "{} events, {} kills, {} handlings, {} duplicates, {} lost, {} order violations, {} overlaps",
        emitted.len(),
        kills.len(),
        found.handlings,
        found.duplicates,
        found.lost,
        found.order_violations,
        found.overlaps
    )
}

/// (b) 2 workers, 4 partitions, a backlog; one worker SIGSTOPped past its lifetime, then
/// SIGCONT: it finishes the handler it was in and starts no other on a partition it lost.
fn stall(server: &RedisServer, scale: &Scale) -> String {
    let (trials, backlog) = if scale.long { (6, 10_000) } else { (2, 3_000) };
    let mut lines = Vec::new();
    for trial in 0..trials {
        let mut service = Service::new(
            server,
            &format!("fault-stall-{trial}"),
            4,
            Kind::Application,
            2,
        );
        let a = service.spawn();
        let b = service.spawn();
        service.wait_for_members(2);
        service.wait_for_even_split();
        let emitted = service.emit(backlog, 200, 500, Duration::ZERO);
        wait_for("both workers handling", Duration::from_secs(60), || {
            let workers: BTreeSet<u32> = service
                .handlings()
                .iter()
                .filter(|h| h.end.is_some())
                .map(|h| h.worker)
                .collect();
            workers.contains(&a) && workers.contains(&b)
        });
        service.signal(a, nix::sys::signal::Signal::SIGSTOP);
        // The signal is delivered asynchronously: the stall begins when the process is
        // seen stopped, and only a handler logged as entered by then was in progress.
        wait_for("the worker to be stopped", Duration::from_secs(20), || {
            is_stopped(a)
        });
        let stopped = now_ns();
        std::thread::sleep(Duration::from_millis(TTL_MS * 8 / 5));
        let resumed = service.signal(a, nix::sys::signal::Signal::SIGCONT);
        service.wait_until_done(&emitted, Duration::from_secs(300));
        service.terminate_all();
        let found = findings(&service, &emitted, &[], &[(a, stopped)]);
        assert_sound(&service, &found);
        // A read interrupted by the stop (EINTR) is no lost connection.
        assert!(
            !service.stderr().contains("subscription lost"),
            "{}",
            service.stderr()
        );
        let all = service.handlings();
        let a_partitions: BTreeSet<u32> = all
            .iter()
            .filter(|h| h.worker == a && h.start < stopped)
            .map(|h| service.partition_of(&h.key))
            .collect();
        let taken_over = all
            .iter()
            .filter(|h| {
                h.worker == b
                    && h.start > stopped
                    && a_partitions.contains(&service.partition_of(&h.key))
            })
            .map(|h| h.start)
            .min();
        let a_after: usize = all
            .iter()
            .filter(|h| h.worker == a && h.start > resumed)
            .count();
        lines.push(format!(
            "trial {trial}: stall {:.0} ms, taken over after {:.0} ms, {} duplicates, {} allowed overlaps, {} handlings by the stalled worker after it resumed",
            ms(stopped, resumed),
            taken_over.map_or(f64::NAN, |t| ms(stopped, t)),
            found.duplicates,
            found.allowed_overlaps,
            a_after
        ));
    }
    format!(
        "{} trials of {backlog} events; {}",
        trials,
        lines.join("; ")
    )
}

/// (c) SIGTERM with a 100 ms handler: the worker finishes the handler it is in, starts
/// no other, exits 0, and the other worker handles the rest of its batch, once.
fn sigterm(server: &RedisServer, kind: Kind) -> String {
    let name = format!("fault-sigterm-{kind:?}").to_lowercase();
    let mut service = Service::new(server, &name, 4, kind, 100);
    let a = service.spawn();
    service.spawn();
    service.wait_for_members(2);
    service.wait_for_even_split();
    let emitted = service.emit(120, 40, 120, Duration::ZERO);
    // SIGTERM while a handler of the worker runs: it must finish that one only.
    service.wait_until_inside_a_handler(a);
    let termed = now_ns();
    let (code, exited) = service.terminate(a);
    assert_eq!(code, Some(0), "{}", service.stderr());
    wait_for(
        "the other worker to claim every partition",
        Duration::from_secs(60),
        || {
            let owners = service.owners();
            owners.len() == 4 && owners.values().collect::<BTreeSet<_>>().len() == 1
        },
    );
    let claimed = now_ns();
    let all = service.handlings();
    let started_after = all
        .iter()
        .filter(|h| h.worker == a && h.start > termed)
        .count();
    // The handler observed running may have ended just before the signal, the next one
    // starting as it came; the worker logs an entry a moment after it decided to start.
    let running_at_signal = all
        .iter()
        .filter(|h| h.worker == a && h.start < termed)
        .any(|h| h.end.is_none_or(|end| end > termed));
    let may_start = usize::from(!running_at_signal);
    assert!(
        started_after <= may_start,
        "{started_after} handlers started after SIGTERM"
    );
    service.wait_until_done(&emitted, Duration::from_secs(120));
    service.terminate_all();
    let found = findings(&service, &emitted, &[], &[]);
    assert_sound(&service, &found);
    assert_eq!(
        found.duplicates, 0,
        "the rest of the batch was handled more than once"
    );
    format!(
        "exited {:.0} ms after SIGTERM; the other worker owned its partitions {:.1} ms after it exited; {} duplicates, {} lost",
        ms(termed, exited),
        ms(exited, claimed),
        found.duplicates,
        found.lost
    )
}

/// (d) A worker joining a group with a backlog owns its share while events still wait.
fn join_under_backlog(server: &RedisServer, scale: &Scale) -> String {
    let backlog = if scale.long { 10_000 } else { 2_000 };
    let mut service = Service::new(server, "fault-join", 4, Kind::Application, 5);
    let a = service.spawn();
    service.wait_for_members(1);
    let emitted = service.emit(backlog, 200, 500, Duration::ZERO);
    service.wait_until_inside_a_handler(a);
    let joined = now_ns();
    service.spawn();
    service.wait_for_even_split();
    let waiting_then = service.waiting();
    let shared = now_ns();
    assert!(
        waiting_then > 0,
        "the backlog was gone before the joiner owned its share"
    );
    service.wait_until_done(&emitted, Duration::from_secs(300));
    service.terminate_all();
    let found = findings(&service, &emitted, &[], &[]);
    assert_sound(&service, &found);
    assert_eq!(found.duplicates, 0, "a hand-over handled an event twice");
    format!(
        "{backlog} events; the joiner owned 2 of 4 partitions {:.0} ms after it started, with {waiting_then} events still waiting; {} duplicates",
        ms(joined, shared),
        found.duplicates
    )
}
