//! Every Redis Cluster key and channel name of hivent-redis's cluster mode, in one place.
//!
//! Each script of cluster mode touches the keys of one hash slot, so the names carry a
//! hash tag (the part in braces, which alone decides the slot): `{<service>:<n>}` for
//! everything of one partition, so a service's partitions spread over the masters;
//! `{<service>}` for its group; `{hivent}` for the registry. The gem's keyspace is not
//! used (the gem does not run on a cluster). Names that share a tag with a partition
//! reuse the standalone scripts, which keep a partition's claim and attempts in a hash
//! field named by the partition number: in cluster mode each such hash has one field.

/// The hash tag of the registry: who receives what, partition counts, the version.
pub const REGISTRY_TAG: &str = "{hivent}";

/// `{hivent}:registry`: the registry version, moved on by every registration that
/// changes who receives what or a partition count.
pub const REGISTRY_VERSION: &str = "{hivent}:registry";

/// `{hivent}:services`: the set of registered services (for `status` and `dlq`).
pub const SERVICES: &str = "{hivent}:services";

/// `{hivent}:registry:changes`: the pub/sub channel registrations announce changes
/// on, so producers drop their cached routes. A channel, not a key.
pub const REGISTRY_CHANNEL: &str = "{hivent}:registry:changes";

/// What precedes an event name in the key of its set of receiving services.
pub const RECEIVERS_PREFIX: &str = "{hivent}:receivers:";

/// What precedes a service in the key of its partition count.
pub const PARTITION_COUNT_PREFIX: &str = "{hivent}:partition_count:";

/// `{hivent}:receivers:<event>`: the services that receive `event` (`*`: every event).
///
/// ```
/// assert_eq!(hivent_redis::cluster_keys::receivers("user:created"), "{hivent}:receivers:user:created");
/// ```
pub fn receivers(event: &str) -> String {
    format!("{RECEIVERS_PREFIX}{event}")
}

/// `{hivent}:partition_count:<service>`: the service's partition count.
///
/// ```
/// assert_eq!(hivent_redis::cluster_keys::partition_count("billing"), "{hivent}:partition_count:billing");
/// ```
pub fn partition_count(service: &str) -> String {
    format!("{PARTITION_COUNT_PREFIX}{service}")
}

/// `{hivent}:events:<service>`: the events the service registered last.
///
/// ```
/// assert_eq!(hivent_redis::cluster_keys::registered_events("billing"), "{hivent}:events:billing");
/// ```
pub fn registered_events(service: &str) -> String {
    format!("{REGISTRY_TAG}:events:{service}")
}

/// `{<service>}:hivent:members`: the live consumers, scored by expiry (Redis time, ms).
///
/// ```
/// assert_eq!(hivent_redis::cluster_keys::members("billing"), "{billing}:hivent:members");
/// ```
pub fn members(service: &str) -> String {
    format!("{{{service}}}:hivent:members")
}

/// `{<service>}:hivent:heartbeats`: member → `<ms> <interval ms>`, for `status`.
///
/// ```
/// assert_eq!(hivent_redis::cluster_keys::heartbeats("billing"), "{billing}:hivent:heartbeats");
/// ```
pub fn heartbeats(service: &str) -> String {
    format!("{{{service}}}:hivent:heartbeats")
}

/// `{<service>:<n>}`: partition `n`, a list; producers push on the left.
///
/// ```
/// assert_eq!(hivent_redis::cluster_keys::partition("billing", 3), "{billing:3}");
/// ```
pub fn partition(service: &str, n: u32) -> String {
    format!("{{{service}:{n}}}")
}

fn of_partition(service: &str, n: u32, name: &str) -> String {
    format!("{{{service}:{n}}}:{name}")
}

/// `{<service>:<n>}:dead_letter`: the failed events of partition `n`, newest on the left.
///
/// ```
/// assert_eq!(hivent_redis::cluster_keys::dead_letter("billing", 3), "{billing:3}:dead_letter");
/// ```
pub fn dead_letter(service: &str, n: u32) -> String {
    of_partition(service, n, "dead_letter")
}

/// `{<service>:<n>}:hivent:failures`: SHA-1 of a dead letter → its failure record.
///
/// ```
/// assert_eq!(hivent_redis::cluster_keys::failure_records("billing", 3), "{billing:3}:hivent:failures");
/// ```
pub fn failure_records(service: &str, n: u32) -> String {
    of_partition(service, n, "hivent:failures")
}

/// `{<service>:<n>}:hivent:owner`: a hash with one field, `n` → the owning member.
///
/// ```
/// assert_eq!(hivent_redis::cluster_keys::owner("billing", 3), "{billing:3}:hivent:owner");
/// ```
pub fn owner(service: &str, n: u32) -> String {
    of_partition(service, n, "hivent:owner")
}

/// `{<service>:<n>}:hivent:token`: a hash with one field, `n` → the claim's fencing token.
///
/// ```
/// assert_eq!(hivent_redis::cluster_keys::token("billing", 3), "{billing:3}:hivent:token");
/// ```
pub fn token(service: &str, n: u32) -> String {
    of_partition(service, n, "hivent:token")
}

/// `{<service>:<n>}:hivent:lease`: present (holding the owner) while the claim's lease
/// runs; it expires by itself (`PX`) when the owner stops renewing it.
///
/// ```
/// assert_eq!(hivent_redis::cluster_keys::lease("billing", 3), "{billing:3}:hivent:lease");
/// ```
pub fn lease(service: &str, n: u32) -> String {
    of_partition(service, n, "hivent:lease")
}

/// `{<service>:<n>}:hivent:fence`: the counter the partition's tokens come from.
///
/// ```
/// assert_eq!(hivent_redis::cluster_keys::fence_counter("billing", 3), "{billing:3}:hivent:fence");
/// ```
pub fn fence_counter(service: &str, n: u32) -> String {
    of_partition(service, n, "hivent:fence")
}

/// `{<service>:<n>}:hivent:attempts`: a hash with one field, `n` → the failed attempts
/// at the oldest item.
///
/// ```
/// assert_eq!(hivent_redis::cluster_keys::attempts("billing", 3), "{billing:3}:hivent:attempts");
/// ```
pub fn attempts(service: &str, n: u32) -> String {
    of_partition(service, n, "hivent:attempts")
}

/// `{<service>:<n>}:hivent:rate`: a hash with one field, `n` → `<events/s> <ms>`.
///
/// ```
/// assert_eq!(hivent_redis::cluster_keys::rate("billing", 3), "{billing:3}:hivent:rate");
/// ```
pub fn rate(service: &str, n: u32) -> String {
    of_partition(service, n, "hivent:rate")
}

/// `{<service>:<n>}:hivent:partition_count`: the partition count a registration that
/// changed it stamped on the partition, so that a producer whose cached routes predate
/// the change writes nothing there and reads them again (no event is left in a
/// partition the new count does not have).
///
/// ```
/// assert_eq!(hivent_redis::cluster_keys::stamped_count("billing", 3), "{billing:3}:hivent:partition_count");
/// ```
pub fn stamped_count(service: &str, n: u32) -> String {
    of_partition(service, n, "hivent:partition_count")
}

/// `{<service>:<n>}:hivent:acked`: a hash with one field, `n` → `<token> <count>`: how
/// many items were acknowledged under the claim's token, so an ack sent twice takes
/// nothing more.
///
/// ```
/// assert_eq!(hivent_redis::cluster_keys::acked("billing", 3), "{billing:3}:hivent:acked");
/// ```
pub fn acked(service: &str, n: u32) -> String {
    of_partition(service, n, "hivent:acked")
}

/// `{<service>:<n>}:hivent:emitted:<call id>`: marks that a publish call stored its
/// events in partition `n`, so a retried call writes no second copy there.
///
/// ```
/// assert_eq!(hivent_redis::cluster_keys::emitted_marker("billing", 3, "4f1c"), "{billing:3}:hivent:emitted:4f1c");
/// ```
pub fn emitted_marker(service: &str, n: u32, call_id: &str) -> String {
    of_partition(service, n, &format!("hivent:emitted:{call_id}"))
}

/// `<service>:hivent:wake` and `<service>:hivent:group`, the channels of standalone
/// mode: classic pub/sub reaches every node of a cluster, so they keep their names.
pub use crate::keys::{group_channel, wake_channel};

/// Whether `service` can name cluster keys: a brace would change the hash tag.
pub(crate) fn is_taggable(service: &str) -> bool {
    !service.contains(['{', '}'])
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    /// What decides a key's slot in Redis Cluster: the text between its first `{` and
    /// the first `}` after it, when that is not empty.
    fn slot(key: &str) -> &str {
        let open = key.find('{').expect("a tag");
        let close = key[open..].find('}').expect("a closed tag") + open;
        assert!(close > open + 1, "{key}: an empty tag hashes the whole key");
        &key[open + 1..close]
    }

    /// Everything of one partition shares its slot; partitions of one service spread.
    #[test]
    fn a_partitions_keys_share_one_slot() {
        let list = partition("billing", 3);
        let p = slot(&list);
        for key in [
            dead_letter("billing", 3),
            failure_records("billing", 3),
            owner("billing", 3),
            token("billing", 3),
            lease("billing", 3),
            fence_counter("billing", 3),
            attempts("billing", 3),
            rate("billing", 3),
            acked("billing", 3),
            stamped_count("billing", 3),
            emitted_marker("billing", 3, "abc"),
        ] {
            assert_eq!(slot(&key), p, "{key}");
        }
        let keys: Vec<String> = (0..16).map(|n| partition("billing", n)).collect();
        let slots: std::collections::BTreeSet<&str> = keys.iter().map(|key| slot(key)).collect();
        assert_eq!(slots.len(), 16);
        assert_eq!(slot(&members("billing")), slot(&heartbeats("billing")));
        let (receivers, count, events) =
            (receivers("a"), partition_count("b"), registered_events("c"));
        for key in [REGISTRY_VERSION, SERVICES, &receivers, &count, &events] {
            assert_eq!(slot(key), "hivent", "{key}");
        }
    }
}
