//! A consumer's membership in its service's group: heartbeats, fenced fetch, ack,
//! dead-letter and leave.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hivent_core::{Batch, ConsumerSession};
use parking_lot::Mutex;
use redis::RedisResult;

use crate::connection::{Endpoint, Slot};
use crate::script::{
    AckScript, Claim, DeadLetterReply, DeadLetterScript, HeartbeatReply, HeartbeatScript,
    LeaveScript,
};
use crate::wake::WakeListener;
use crate::{keys, Error};

/// One member of a service's consumer group on Redis; see the crate docs for the
/// protocol. Made by [`hivent_core::Backend::join`] on a [`crate::RedisBackend`].
///
/// The heartbeat thread and the consumer thread each use their own connection, and
/// the wake-up subscription a third, so a slow fetch never delays a heartbeat.
/// Dropping a session does not leave the group (the core's `Consumer` does that);
/// its membership then expires after [`crate::RedisOptions::member_ttl`].
///
/// ```no_run
/// use std::time::Duration;
/// use hivent_core::ConsumerSession;
/// let backend = hivent_redis::RedisBackend::connect("redis://127.0.0.1:6379/0")?;
/// let session = backend.join_session("billing")?;
/// let owned = session.heartbeat()?;
/// for batch in session.fetch(100, Duration::from_millis(500))? {
///     // ... process batch.items, oldest first ...
///     session.ack(batch.partition, batch.items.len())?;
/// }
/// session.leave()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RedisSession {
    endpoint: Arc<Endpoint>,
    service: String,
    member: String,
    heartbeat_connection: Slot,
    work_connection: Slot,
    wake: WakeListener,
    state: Mutex<State>,
}

struct InHand {
    left: usize,
    token: u64,
    /// The bytes as stored of items that are not UTF-8 (rare: written by some other
    /// tool), keyed by the lossy text handed to the consumer, so that dead-lettering
    /// names the exact item Redis holds.
    not_utf8: HashMap<String, Vec<u8>>,
}

#[derive(Default)]
struct State {
    /// Owned partitions and their fencing tokens, as of the last heartbeat.
    owned: BTreeMap<u32, u64>,
    /// Partitions whose fetched batch is not fully acknowledged yet: how many of its
    /// items are left, and the token the partition was read under. The heartbeat
    /// never releases these, and writes for the batch present the read's token, so a
    /// claim voided and renewed meanwhile (a replay) still fences the batch.
    in_hand: BTreeMap<u32, InHand>,
    /// When the last successful heartbeat was sent.
    last_heartbeat: Option<Instant>,
}

impl RedisSession {
    pub(crate) fn join(endpoint: Arc<Endpoint>, service: &str) -> Result<RedisSession, Error> {
        let work = endpoint.open().map_err(|source| Error::Unreachable {
            endpoint: endpoint.redacted().to_owned(),
            source,
        })?;
        let wake =
            WakeListener::start(Arc::clone(&endpoint), service, keys::wake_channel(service))?;
        let member = member_id();
        let mut work = work;
        remove_ghosts(&mut work, service, &member);
        tracing::debug!(service, member, "joined the consumer group");
        Ok(RedisSession {
            endpoint,
            service: service.to_owned(),
            member,
            heartbeat_connection: Slot::new(None),
            work_connection: Slot::new(Some(work)),
            wake,
            state: Mutex::new(State::default()),
        })
    }

    /// The service whose group this session is a member of.
    pub fn service(&self) -> &str {
        &self.service
    }

    fn fenced(&self, partition: u32) -> Error {
        Error::Fenced {
            service: self.service.clone(),
            partition,
        }
    }

    fn run<T>(
        &self,
        operation: &'static str,
        work: impl FnOnce(&mut redis::Connection) -> RedisResult<T>,
    ) -> Result<T, Error> {
        self.work_connection
            .run(&self.endpoint, work)
            .map_err(|e| self.endpoint.error(operation, e))
    }

    fn claim(&self, partition: u32) -> Result<Claim<'_>, Error> {
        // Only a batch in hand may be written for, under the claim it was read with:
        // a write for a batch given up after fencing must not borrow a newer claim.
        let token = self
            .state
            .lock()
            .in_hand
            .get(&partition)
            .map(|batch| batch.token);
        match token {
            Some(token) => Ok(Claim {
                service: &self.service,
                member: &self.member,
                partition,
                token,
            }),
            None => Err(self.fenced(partition)),
        }
    }

    /// Forgets `partition` after a fencing rejection: the new owner has it.
    fn lose(&self, partition: u32) {
        let mut state = self.state.lock();
        state.owned.remove(&partition);
        state.in_hand.remove(&partition);
    }

    /// Counts `count` items of `partition` as done.
    fn settle(&self, partition: u32, count: usize) {
        let mut state = self.state.lock();
        if let Some(batch) = state.in_hand.get_mut(&partition) {
            batch.left = batch.left.saturating_sub(count);
            if batch.left == 0 {
                state.in_hand.remove(&partition);
            }
        }
    }

    fn heartbeat_inner(&self) -> Result<Vec<u32>, Error> {
        // Held across the script so that a fetch cannot mark a partition in hand after
        // the script was told it is not, and then read it while it is being released.
        let mut state = self.state.lock();
        let sent = Instant::now();
        let in_hand: Vec<u32> = state.in_hand.keys().copied().collect();
        let ttl = self.endpoint.options().member_ttl;
        let reply = self
            .heartbeat_connection
            .run(&self.endpoint, |connection| {
                HeartbeatScript::invoke(connection, &self.service, &self.member, ttl, &in_hand)
            })
            .map_err(|e| self.endpoint.error("heartbeat", e))?;
        match reply {
            HeartbeatReply::Owned(owned) => {
                state.owned = owned.into_iter().collect();
                state.last_heartbeat = Some(sent);
                Ok(state.owned.keys().copied().collect())
            }
            HeartbeatReply::Unregistered { found } => Err(Error::NotRegistered {
                service: self.service.clone(),
                found,
            }),
        }
    }

    fn fetch_inner(&self, max: usize, wait: Duration) -> Result<Vec<Batch>, Error> {
        let partitions: Vec<(u32, u64)> = {
            let mut state = self.state.lock();
            // Whatever was in hand is done or given up: the loop fetches only then.
            state.in_hand.clear();
            let fresh = state
                .last_heartbeat
                .is_some_and(|at| at.elapsed() < self.endpoint.options().self_fence_after());
            if fresh {
                let owned: Vec<(u32, u64)> = state.owned.iter().map(|(&p, &t)| (p, t)).collect();
                state.in_hand = owned
                    .iter()
                    .map(|&(p, token)| {
                        let batch = InHand {
                            left: 0,
                            token,
                            not_utf8: HashMap::new(),
                        };
                        (p, batch)
                    })
                    .collect();
                owned
            } else {
                Vec::new()
            }
        };
        if partitions.is_empty() {
            self.wake.wait(wait);
            return Ok(Vec::new());
        }
        self.wake.clear();
        let max = i64::try_from(max.max(1)).unwrap_or(i64::MAX);
        let read = self.run("fetch events", |connection| {
            let mut pipe = redis::pipe();
            for &(partition, _) in &partitions {
                pipe.cmd("LRANGE")
                    .arg(keys::partition(&self.service, partition))
                    .arg(-max)
                    .arg(-1);
            }
            pipe.query::<Vec<Vec<Vec<u8>>>>(connection)
        });
        let lists = match read {
            Ok(lists) => lists,
            Err(error) => {
                self.state.lock().in_hand.clear();
                return Err(error);
            }
        };
        let mut batches = Vec::new();
        let mut in_hand = BTreeMap::new();
        for ((partition, token), items) in partitions.into_iter().zip(lists) {
            if items.is_empty() {
                continue;
            }
            let left = items.len();
            let mut not_utf8 = HashMap::new();
            // LRANGE lists newest first; the oldest item is at the right end.
            let items = items
                .into_iter()
                .rev()
                .map(|item| match String::from_utf8(item) {
                    Ok(text) => text,
                    Err(error) => {
                        let bytes = error.into_bytes();
                        let text = String::from_utf8_lossy(&bytes).into_owned();
                        not_utf8.insert(text.clone(), bytes);
                        text
                    }
                })
                .collect();
            in_hand.insert(
                partition,
                InHand {
                    left,
                    token,
                    not_utf8,
                },
            );
            batches.push(Batch { partition, items });
        }
        self.state.lock().in_hand = in_hand;
        if batches.is_empty() {
            self.wake.wait(wait);
        }
        Ok(batches)
    }

    fn ack_inner(&self, partition: u32, count: usize) -> Result<(), Error> {
        if count == 0 {
            return Ok(());
        }
        let claim = self.claim(partition)?;
        let removed = self.run("acknowledge events", |connection| {
            AckScript::invoke(connection, &claim, count)
        })?;
        if removed {
            self.settle(partition, count);
            Ok(())
        } else {
            self.lose(partition);
            Err(self.fenced(partition))
        }
    }

    fn dead_letter_inner(&self, partition: u32, raw: &str) -> Result<(), Error> {
        let claim = self.claim(partition)?;
        let stored: Vec<u8> = self
            .state
            .lock()
            .in_hand
            .get(&partition)
            .and_then(|batch| batch.not_utf8.get(raw).cloned())
            .unwrap_or_else(|| raw.as_bytes().to_vec());
        let reply = self.run("dead-letter an event", |connection| {
            DeadLetterScript::invoke(connection, &claim, &stored)
        })?;
        match reply {
            DeadLetterReply::Moved => {
                self.settle(partition, 1);
                Ok(())
            }
            DeadLetterReply::Fenced => {
                self.lose(partition);
                Err(self.fenced(partition))
            }
            DeadLetterReply::Mismatch => Err(Error::DeadLetterMismatch {
                service: self.service.clone(),
                partition,
            }),
        }
    }

    fn leave_inner(&self) -> Result<(), Error> {
        {
            let mut state = self.state.lock();
            state.owned.clear();
            state.in_hand.clear();
            state.last_heartbeat = None;
        }
        let released = self.run("leave the consumer group", |connection| {
            LeaveScript::invoke(connection, &self.service, &self.member)
        })?;
        tracing::debug!(service = %self.service, member = %self.member, released, "left the consumer group");
        Ok(())
    }
}

impl ConsumerSession for RedisSession {
    fn member_id(&self) -> &str {
        &self.member
    }

    fn heartbeat_interval(&self) -> Duration {
        self.endpoint.options().heartbeat_interval
    }

    fn heartbeat(&self) -> hivent_core::Result<Vec<u32>> {
        Ok(self.heartbeat_inner()?)
    }

    fn fetch(&self, max: usize, wait: Duration) -> hivent_core::Result<Vec<Batch>> {
        Ok(self.fetch_inner(max, wait)?)
    }

    fn ack(&self, partition: u32, count: usize) -> hivent_core::Result<()> {
        Ok(self.ack_inner(partition, count)?)
    }

    fn dead_letter(&self, partition: u32, raw: &str) -> hivent_core::Result<()> {
        Ok(self.dead_letter_inner(partition, raw)?)
    }

    fn leave(&self) -> hivent_core::Result<()> {
        Ok(self.leave_inner()?)
    }
}

/// A member id unique across hosts, processes and sessions: `<host>-<pid>-<random>`.
/// The host and pid let a restarted worker recognise its own ghosts (see
/// [`remove_ghosts`]).
fn member_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| {
            h.trim()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
                .collect::<String>()
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_owned());
    let random = hivent_core::new_id();
    let suffix = random.get(..12).unwrap_or(&random);
    format!("{host}-{}-{suffix}", std::process::id())
}

/// Makes the members of this host whose process is gone (a worker that crashed or was
/// killed here) leave the group, so that a restarted worker takes their partitions at
/// once instead of after their lifetime. Best effort: what cannot be checked is left to
/// expire. Evicting a member wrongly (another pid namespace with the same host name)
/// is safe: its writes are fenced and its next heartbeat rejoins.
fn remove_ghosts(connection: &mut redis::Connection, service: &str, me: &str) {
    let members: Vec<String> = match redis::cmd("ZRANGE")
        .arg(keys::members(service))
        .arg(0)
        .arg(-1)
        .query(connection)
    {
        Ok(members) => members,
        Err(error) => {
            tracing::debug!(%error, service, "could not look for ghosts of this host");
            return;
        }
    };
    for ghost in ghosts_of_this_host(&members, me, |pid| {
        Path::new(&format!("/proc/{pid}")).exists()
    }) {
        match LeaveScript::invoke(connection, service, &ghost) {
            Ok(released) => {
                tracing::info!(
                    service,
                    ghost,
                    released,
                    "removed a gone worker of this host from the group"
                )
            }
            Err(error) => tracing::debug!(%error, service, ghost, "could not remove a ghost"),
        }
    }
}

/// The members that ran on this host (`me`'s host) under another pid that
/// `is_running` says is gone. Empty where `/proc` cannot tell (not Linux, or not
/// mounted), since then every pid would look gone.
fn ghosts_of_this_host(
    members: &[String],
    me: &str,
    is_running: impl Fn(u32) -> bool,
) -> Vec<String> {
    if !Path::new("/proc/self").exists() {
        return Vec::new();
    }
    let Some((host, my_pid)) = host_and_pid(me) else {
        return Vec::new();
    };
    members
        .iter()
        .filter(|m| {
            host_and_pid(m).is_some_and(|(h, pid)| h == host && pid != my_pid && !is_running(pid))
        })
        .cloned()
        .collect()
}

/// The host and pid of a `<host>-<pid>-<random>` member id.
fn host_and_pid(member: &str) -> Option<(&str, u32)> {
    let mut parts = member.rsplitn(3, '-');
    let _random = parts.next()?;
    let pid = parts.next()?.parse().ok()?;
    Some((parts.next()?, pid))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// Ghosts are members of this host under another pid that is gone; other hosts,
    /// live pids, this process and ids of another shape are never ghosts.
    #[test]
    fn finds_ghosts_of_this_host_only() {
        let me = format!("web-1-{}-aaaa", std::process::id());
        let members: Vec<String> = [
            "web-1-111-bbbb", // this host, gone
            "web-1-222-cccc", // this host, running
            "web-2-111-dddd", // another host
            me.as_str(),      // this process
            "something-else", // not a member id of ours
        ]
        .map(String::from)
        .to_vec();
        let ghosts = ghosts_of_this_host(&members, &me, |pid| pid == 222);
        assert_eq!(ghosts, ["web-1-111-bbbb"]);
        assert_eq!(host_and_pid("a-b-c-42-ff"), Some(("a-b-c", 42)));
        assert_eq!(host_and_pid("nohyphen"), None);
    }

    /// Member ids name the process and differ between sessions.
    #[test]
    fn member_ids_are_unique() {
        let (a, b) = (member_id(), member_id());
        assert_ne!(a, b);
        assert!(a.contains(&format!("-{}-", std::process::id())), "{a}");
    }
}
