//! The emit by cached routes: one `MULTI`/`EXEC` transaction of plain pushes, guarded by
//! a `WATCH` of the registry version (see `route_cache.rs`).
//!
//! One round trip carries `MULTI`, a marker (the connection's for a whole call, the
//! chunk's own for a part of a large one: with [`InDoubt`], what keeps a retry through
//! the script after a lost reply from storing twice), one variadic `LPUSH` per partition
//! list in emit order, one `PUBLISH` per receiving service naming the partitions
//! written, `EXEC`, then `WATCH` and `MGET` of the version for the next call. Measured
//! with `hivent bench`: about 5 µs of Redis time (4.5–5.1) for a single emit where the script
//! took over 20, because a script call alone costs about 3 µs and its registry reads as
//! much again.
//!
//! The version is read with `MGET`, which neither the scripts nor the transaction use,
//! so that `INFO commandstats` keeps this read apart from the commands counted inside
//! `EXEC` and `EVALSHA` (what `hivent bench` sums up as Redis time).

use hivent_core::ErrorChain;
use parking_lot::Mutex;
use redis::{Connection, RedisResult, Value};

use hivent_core::Envelope;

use crate::connection::Pooled;
use crate::error::{certainly_not_run, keeps_connection};
use crate::keys;
use crate::route_cache::{Receiver, RegistryVersion, Route, RouteCache};
use crate::script::RoutesScript;

/// What a routed emit did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Routed {
    /// Stored: per event, how many services received it.
    Stored(Vec<usize>),
    /// Nothing was written: the cache cannot route the call (a name it could not read)
    /// or the registry changed under it; `publish.lua` decides the call.
    Unrouted,
    /// A partition list is a `found`, not a list (another tool's key collides with it):
    /// the events were stored in every other list of the call and not in `key`.
    Collision {
        key: String,
        found: String,
        /// Whether other lists got the call's events (otherwise nothing was stored).
        partly: bool,
    },
}

/// The lists one call pushes to, each with its events' JSON in emit order, and the
/// partitions written per receiving service.
struct Plan<'a> {
    lists: Vec<(String, Vec<&'a str>)>,
    wake_ups: Vec<(&'a str, String)>,
    counts: Vec<usize>,
}

impl<'a> Plan<'a> {
    fn new(envelopes: &'a [Envelope], names: &[&str], routes: &'a [Route]) -> Plan<'a> {
        let mut lists: Vec<(String, Vec<&str>)> = Vec::new();
        // Per receiving service in the order first written: partition → its list.
        let mut by_service: Vec<(&Receiver, Vec<(u32, usize)>)> = Vec::new();
        let mut counts = Vec::with_capacity(envelopes.len());
        for envelope in envelopes {
            let at = names.iter().position(|n| *n == envelope.name).unwrap_or(0);
            let route = &routes[at];
            counts.push(route.len());
            for receiver in route.iter() {
                let partition = envelope.partition_hash % receiver.partition_count;
                let service = match by_service
                    .iter()
                    .position(|(r, _)| r.service == receiver.service)
                {
                    Some(i) => i,
                    None => {
                        by_service.push((receiver, Vec::new()));
                        by_service.len() - 1
                    }
                };
                let partitions = &mut by_service[service].1;
                let list = match partitions.iter().find(|(p, _)| *p == partition) {
                    Some((_, list)) => *list,
                    None => {
                        lists.push((keys::partition(&receiver.service, partition), Vec::new()));
                        partitions.push((partition, lists.len() - 1));
                        lists.len() - 1
                    }
                };
                lists[list].1.push(&envelope.json);
            }
        }
        let wake_ups = by_service
            .into_iter()
            .map(|(receiver, partitions)| {
                let named: Vec<String> = partitions.iter().map(|(p, _)| p.to_string()).collect();
                (receiver.wake_channel.as_str(), named.join(","))
            })
            .collect();
        Plan {
            lists,
            wake_ups,
            counts,
        }
    }
}

/// Emits `envelopes` by the cached routes on `pooled`, reading them first when the
/// cache lacks them or the connection watches another version; `sent` says whether the
/// transaction was sent (before that, a failure stored nothing).
pub(crate) fn publish_routed(
    pooled: &mut Pooled,
    cache: &RouteCache,
    doubts: &InDoubt,
    call: RoutedCall<'_>,
    sent: &mut bool,
) -> RedisResult<Routed> {
    let RoutedCall {
        envelopes,
        call_id,
        marker_ttl_ms,
        whole,
    } = call;
    let mut names: Vec<&str> = Vec::new();
    for envelope in envelopes {
        if !names.contains(&envelope.name.as_str()) {
            names.push(&envelope.name);
        }
    }
    let routes = match cache.routes(&names, pooled.watching.as_ref()) {
        Some(routes) => routes,
        None if !cache.worth_reading(&names) => return Ok(Routed::Unrouted),
        None => {
            // WATCH first: a change after the read then aborts the transaction.
            pooled.watching = None;
            redis::cmd("WATCH")
                .arg(keys::REGISTRY_VERSION)
                .query::<()>(&mut pooled.connection)?;
            let read = RoutesScript::invoke(&mut pooled.connection, &names)?;
            pooled.watching = Some(RegistryVersion(read.version.clone()));
            cache.store(&names, read);
            match cache.routes(&names, pooled.watching.as_ref()) {
                Some(routes) => routes,
                None => return Ok(Routed::Unrouted),
            }
        }
    };
    let plan = Plan::new(envelopes, &names, &routes);
    if pooled.identity.is_none() {
        pooled.identity = ConnectionIdentity::ask(&mut pooled.connection)?;
    }
    let Some(client) = &pooled.identity else {
        cache.disable();
        return Ok(Routed::Unrouted);
    };
    // A whole call marks itself on the connection's marker, which exists already and so
    // costs Redis less than a key of its own (measured: 0.75 µs against 2.4); a chunk of
    // a larger call needs a marker of its own, since the whole call may be tried again.
    let call_marker = keys::emitted_marker(call_id);
    let mut pipe = redis::pipe();
    pipe.cmd("MULTI");
    // Nobody receives them: nothing to store, so nothing to guard against a retry; the
    // empty transaction still says whether the routes were current (its WATCH).
    let marked = !plan.lists.is_empty();
    // The connection's marker gets its lifetime every quarter of it and keeps it in
    // between (`KEEPTTL`: measured 0.75 µs of Redis time against 1.4 for `PX`). A key
    // that vanished meanwhile (FLUSHALL) comes back without one until the next renewal.
    let renew = pooled
        .marker_renewed_at
        .is_none_or(|at| at.elapsed().as_millis() >= u128::from(marker_ttl_ms / 4));
    if marked {
        pipe.cmd("SET");
        match (whole, renew) {
            (true, false) => pipe.arg(&client.marker).arg(call_id).arg("KEEPTTL"),
            (true, true) => pipe
                .arg(&client.marker)
                .arg(call_id)
                .arg("PX")
                .arg(marker_ttl_ms),
            (false, _) => pipe.arg(&call_marker).arg("1").arg("PX").arg(marker_ttl_ms),
        };
    }
    for (list, items) in &plan.lists {
        pipe.cmd("LPUSH").arg(list).arg(items.as_slice());
    }
    for (channel, partitions) in &plan.wake_ups {
        pipe.cmd("PUBLISH").arg(*channel).arg(partitions);
    }
    pipe.cmd("EXEC")
        .cmd("WATCH")
        .arg(keys::REGISTRY_VERSION)
        .cmd("MGET")
        .arg(keys::REGISTRY_VERSION);
    // MULTI, the queued commands, EXEC, WATCH, MGET.
    let queued = usize::from(marked) + plan.lists.len() + plan.wake_ups.len();
    // Until the reply says otherwise the connection watches nothing known.
    pooled.watching = None;
    let in_doubt = |error: redis::RedisError| {
        doubts.add(client, whole.then_some(call_id));
        error
    };
    // Every failure before this point happened in reads: nothing was stored.
    *sent = true;
    let replies = match send_and_read(&mut pooled.connection, &pipe, queued + 4) {
        Ok(replies) => replies,
        Err(error) if certainly_not_run(&error) => return Err(error),
        Err(error) => return Err(in_doubt(error)),
    };
    let [multi, rest @ ..] = replies.as_slice() else {
        return Err(in_doubt(out_of_step("no reply to MULTI")));
    };
    if *multi != Value::Okay {
        // Without MULTI the writes ran one by one, or were refused one by one: which is
        // unknown, and this connection (or user) is not one to emit on by transaction.
        cache.disable();
        return Err(in_doubt(out_of_step(&format!("MULTI answered {multi:?}"))));
    }
    let (exec, watch, version) = match &rest[queued..] {
        [exec, watch, version] => (exec, watch, version),
        _ => return Err(in_doubt(out_of_step("too few replies"))),
    };
    // A version that cannot be read, or a refused WATCH, leaves the connection watching
    // nothing known, which only costs a read next time.
    let version = match (watch, version) {
        (Value::Okay, Value::Array(values)) => match values.as_slice() {
            [Value::Nil] => Some(RegistryVersion(None)),
            [value] => redis::from_redis_value::<String>(value.clone())
                .ok()
                .map(|v| RegistryVersion(Some(v))),
            _ => None,
        },
        _ => None,
    };
    if let Some(version) = &version {
        cache.observed(version);
    }
    pooled.watching = version;
    let results = match exec {
        Value::Array(results) => {
            if marked && whole && renew {
                pooled.marker_renewed_at = Some(std::time::Instant::now());
            }
            results
        }
        // The registry changed since the WATCH: the transaction wrote nothing.
        Value::Nil => return Ok(Routed::Unrouted),
        // A command was refused when queued (out of memory, say): nothing ran.
        Value::ServerError(error) if error.code() == "EXECABORT" => return Ok(Routed::Unrouted),
        other => {
            // Not a reply a transaction gives: whether it ran is unknown.
            return Err(in_doubt(out_of_step(&format!("EXEC answered {other:?}"))));
        }
    };
    let failed = results
        .iter()
        .skip(1)
        .take(plan.lists.len())
        .position(|reply| matches!(reply, Value::ServerError(_)));
    let Some(failed) = failed else {
        return Ok(Routed::Stored(plan.counts));
    };
    let key = plan.lists[failed].0.clone();
    let connection: &mut Connection = &mut pooled.connection;
    let mut partly = plan.lists.len() > 1;
    if !partly && !whole {
        // The marker is all the call wrote: a retry must not take it for a stored call.
        // If it cannot be taken back, a retry would take it so: report it as partly
        // stored (not retried) rather than let a retry answer "already stored".
        partly = redis::cmd("DEL")
            .arg(&call_marker)
            .query::<()>(connection)
            .is_err();
    }
    // The call is decided whatever follows: errors from here on only blur the report.
    let found = redis::cmd("TYPE")
        .arg(&key)
        .query::<String>(connection)
        .unwrap_or_else(|_| "key of another type".to_owned());
    Ok(Routed::Collision { key, found, partly })
}

/// One emit of a [`publish_routed`] call.
pub(crate) struct RoutedCall<'a> {
    pub(crate) envelopes: &'a [Envelope],
    pub(crate) call_id: &'a str,
    pub(crate) marker_ttl_ms: u64,
    /// Whether this is the whole of a user's call (not one chunk of a larger one).
    pub(crate) whole: bool,
}

/// A pooled connection as the server knows it, and its marker.
#[derive(Clone, Debug)]
pub(crate) struct ConnectionIdentity {
    /// `CLIENT ID`.
    pub(crate) id: i64,
    /// The connection's address as the server sees it (`ip:port`): ids start again
    /// from 1 when Redis restarts, so a kill names both, never another connection.
    pub(crate) addr: String,
    /// `hivent:emitted:connection:<random id>`: the id of the last whole call this
    /// connection's transactions stored.
    pub(crate) marker: String,
}

impl ConnectionIdentity {
    /// The connection as the server knows it, or `None` when this Redis cannot say
    /// (before 6.2) or this user may not `CLIENT KILL`: then a retry could not be made
    /// safe, and emits keep to the script.
    fn ask(connection: &mut Connection) -> RedisResult<Option<ConnectionIdentity>> {
        let mut pipe = redis::pipe();
        pipe.cmd("CLIENT")
            .arg("INFO")
            .cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(i64::MAX);
        let (info, probe): (RedisResult<String>, RedisResult<i64>) =
            pipe.ignore_errors().query(connection)?;
        let info = match info {
            Ok(info) => info,
            Err(error) if keeps_connection(&error) => {
                tracing::info!(error = %ErrorChain(&error), "this Redis cannot describe a connection (CLIENT INFO, Redis 6.2), so emits run the publish script (slower) rather than cached routes");
                return Ok(None);
            }
            Err(error) => return Err(error),
        };
        let field = |name: &str| {
            info.split_ascii_whitespace()
                .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        };
        let (Some(id), Some(addr)) = (field("id").and_then(|id| id.parse().ok()), field("addr"))
        else {
            return Err(out_of_step(&format!("CLIENT INFO answered {info:?}")));
        };
        match probe {
            Err(error) if keeps_connection(&error) => {
                tracing::info!(error = %ErrorChain(&error), "this Redis user may not CLIENT KILL, so emits run the publish script (slower) rather than cached routes");
                Ok(None)
            }
            Err(error) => Err(error),
            Ok(_) => Ok(Some(ConnectionIdentity {
                id,
                addr: addr.to_owned(),
                marker: keys::connection_marker(&hivent_core::new_id()),
            })),
        }
    }
}

/// A transaction that was sent but not answered, so that it may still run: Redis could
/// hold it unread (a stalled server) and run it after a retry stored the call.
#[derive(Clone)]
struct Doubt {
    client: ConnectionIdentity,
    /// The call, when it marked itself on the connection's marker.
    call_id: Option<String>,
}

/// The transactions in doubt. Before any retry, each one's connection is closed on the
/// server (`CLIENT KILL ID`), so its transaction either ran already or never will; one
/// that marked itself on its connection's marker and ran gets its call's own marker
/// (`hivent:emitted:<call id>`), which the publish script honours.
#[derive(Default)]
pub(crate) struct InDoubt {
    doubts: Mutex<Vec<Doubt>>,
}

/// The most transactions remembered; more would mean thousands of failed emits, whose
/// connections are long closed on the server.
const MAX_IN_DOUBT: usize = 1024;

impl InDoubt {
    fn add(&self, client: &ConnectionIdentity, call_id: Option<&str>) {
        let mut doubts = self.doubts.lock();
        if doubts.len() == MAX_IN_DOUBT {
            let dropped = doubts.remove(0);
            tracing::warn!(call_id = dropped.call_id.as_deref().unwrap_or(""), "too many emits with lost replies to remember them all; a retry of the oldest may store a second copy");
        }
        doubts.push(Doubt {
            client: client.clone(),
            call_id: call_id.map(str::to_owned),
        });
    }

    /// Whether no transaction is in doubt.
    #[cfg(feature = "tokio")]
    pub(crate) fn is_empty(&self) -> bool {
        self.doubts.lock().is_empty()
    }

    /// Settles every transaction in doubt through `connection`, marking the calls that
    /// ran for `marker_ttl`.
    pub(crate) fn settle(
        &self,
        connection: &mut Connection,
        marker_ttl_ms: u64,
    ) -> RedisResult<()> {
        let pending = self.doubts.lock().clone();
        for Doubt { client, call_id } in pending {
            // The new form answers with how many it closed (0 when it is gone).
            let killed = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("ID")
                .arg(client.id)
                .arg("ADDR")
                .arg(&client.addr)
                .query::<i64>(connection);
            match killed {
                Ok(_) => {}
                Err(error) if keeps_connection(&error) => {
                    // Refused (the user lost the right, say): the retry goes on rather
                    // than failing every emit from now on, but says what it risks.
                    tracing::warn!(error = %ErrorChain(&error), call_id = call_id.as_deref().unwrap_or(""), "could not close the connection of an emit whose reply was lost; if its transaction still runs, the retry may store a second copy");
                }
                Err(error) => return Err(error),
            }
            if let Some(call_id) = &call_id {
                let last: Option<String> =
                    redis::cmd("GET").arg(&client.marker).query(connection)?;
                if last.as_deref() == Some(call_id.as_str()) {
                    redis::cmd("SET")
                        .arg(keys::emitted_marker(call_id))
                        .arg("1")
                        .arg("PX")
                        .arg(marker_ttl_ms)
                        .query::<()>(connection)?;
                }
            }
            self.doubts.lock().retain(|d| d.client.id != client.id);
        }
        Ok(())
    }
}

/// Sends `pipe` and reads `count` replies, stopping at the first failure: redis-rs's
/// own pipeline reading goes on after a timeout and waits out the timeout once per
/// reply still expected, so a stalled Redis would hold an emit many times over.
fn send_and_read(
    connection: &mut Connection,
    pipe: &redis::Pipeline,
    count: usize,
) -> RedisResult<Vec<Value>> {
    connection.send_packed_command(&pipe.get_packed_pipeline())?;
    (0..count).map(|_| connection.recv_response()).collect()
}

/// A reply that leaves the connection out of step with the server: an I/O kind of
/// error, so the pool drops the connection, and one that may have run.
fn out_of_step(what: &str) -> redis::RedisError {
    redis::RedisError::from(std::io::Error::other(format!(
        "unexpected reply to an emit transaction: {what}"
    )))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::route_cache::Receiver;

    fn envelope(name: &str, hash: u32, json: &str) -> Envelope {
        Envelope {
            name: name.to_owned(),
            partition_hash: hash,
            json: json.to_owned(),
        }
    }

    fn route(receivers: &[(&str, u32)]) -> Route {
        receivers
            .iter()
            .map(|(s, c)| Receiver {
                service: (*s).to_owned(),
                partition_count: *c,
                wake_channel: keys::wake_channel(s),
            })
            .collect()
    }

    /// One list per (service, partition) in the order first written, events in emit
    /// order, one wake-up per service naming its partitions.
    #[test]
    fn plans_one_push_per_list_and_one_wake_up_per_service() {
        let envelopes = [
            envelope("a", 1, "e1"),
            envelope("b", 2, "e2"),
            envelope("a", 5, "e3"),
            envelope("a", 2, "e4"),
        ];
        let names = ["a", "b"];
        let routes = [route(&[("s", 4), ("t", 2)]), route(&[])];
        let plan = Plan::new(&envelopes, &names, &routes);
        assert_eq!(plan.counts, vec![2, 0, 2, 2]);
        assert_eq!(
            plan.lists,
            vec![
                ("s:1".to_owned(), vec!["e1", "e3"]),
                ("t:1".to_owned(), vec!["e1", "e3"]),
                ("s:2".to_owned(), vec!["e4"]),
                ("t:0".to_owned(), vec!["e4"]),
            ]
        );
        assert_eq!(
            plan.wake_ups,
            vec![
                ("s:hivent:wake", "1,2".to_owned()),
                ("t:hivent:wake", "1,0".to_owned())
            ]
        );
    }
}
