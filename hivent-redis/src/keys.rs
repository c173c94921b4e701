//! Every Redis key and channel name this crate reads or writes, in one place.
//!
//! The first four forms are shared with the Ruby gem and must keep their names and
//! types. The coordination keys are hivent-rs's own; they live under
//! `<service>:hivent:` rather than directly under `<service>:` so that they cannot
//! collide with an event named like `<service>:members` (event names are keys too).
//!
//! Lua scripts that must compute a name at run time (the partitions of a receiving
//! service found in an event's set) get the fixed parts from here as arguments, so no
//! name is spelled twice.

/// The set of services that receive `event` (the key is the event name itself).
///
/// ```
/// assert_eq!(hivent_redis::keys::event_receivers("user:created"), "user:created");
/// ```
pub fn event_receivers(event: &str) -> String {
    event.to_owned()
}

/// The set of services that receive every event.
pub const WILDCARD_RECEIVERS: &str = "*";

/// What follows a service name to form its partition count key.
pub const PARTITION_COUNT_SUFFIX: &str = ":partition_count";

/// `<service>:partition_count`: the service's partition count, a decimal string.
///
/// ```
/// assert_eq!(hivent_redis::keys::partition_count("billing"), "billing:partition_count");
/// ```
pub fn partition_count(service: &str) -> String {
    format!("{service}{PARTITION_COUNT_SUFFIX}")
}

/// What separates a service name from a partition number in a partition's name.
pub const PARTITION_SEPARATOR: &str = ":";

/// `<service>:`: what precedes a partition number in a partition's name.
///
/// ```
/// assert_eq!(hivent_redis::keys::partition_prefix("billing"), "billing:");
/// ```
pub fn partition_prefix(service: &str) -> String {
    format!("{service}{PARTITION_SEPARATOR}")
}

/// `<service>:<n>`: partition `n`, a list; producers push on the left, the oldest
/// item is at the right end.
///
/// ```
/// assert_eq!(hivent_redis::keys::partition("billing", 3), "billing:3");
/// ```
pub fn partition(service: &str, n: u32) -> String {
    hivent_core::partition_name(service, n)
}

/// `<service>:<n>:dead_letter`: the failed events of partition `n`, newest on the left.
///
/// ```
/// assert_eq!(hivent_redis::keys::dead_letter("billing", 3), "billing:3:dead_letter");
/// ```
pub fn dead_letter(service: &str, n: u32) -> String {
    hivent_core::dead_letter_queue_name(service, n)
}

fn own(service: &str, name: &str) -> String {
    format!("{service}:hivent:{name}")
}

/// `<service>:hivent:events`: the set of events the service registered last time, so
/// that a new registration can leave the events it no longer receives.
///
/// ```
/// assert_eq!(hivent_redis::keys::registered_events("billing"), "billing:hivent:events");
/// ```
pub fn registered_events(service: &str) -> String {
    own(service, "events")
}

/// `<service>:hivent:members`: the live consumers, a sorted set scored by the Redis
/// time (ms) at which each membership expires.
///
/// ```
/// assert_eq!(hivent_redis::keys::members("billing"), "billing:hivent:members");
/// ```
pub fn members(service: &str) -> String {
    own(service, "members")
}

/// `<service>:hivent:owners`: a hash from partition number to the member owning it.
///
/// ```
/// assert_eq!(hivent_redis::keys::owners("billing"), "billing:hivent:owners");
/// ```
pub fn owners(service: &str) -> String {
    own(service, "owners")
}

/// `<service>:hivent:tokens`: a hash from partition number to the fencing token of
/// its current claim.
///
/// ```
/// assert_eq!(hivent_redis::keys::tokens("billing"), "billing:hivent:tokens");
/// ```
pub fn tokens(service: &str) -> String {
    own(service, "tokens")
}

/// `<service>:hivent:fence`: the counter fencing tokens are drawn from; it only grows.
///
/// ```
/// assert_eq!(hivent_redis::keys::fence_counter("billing"), "billing:hivent:fence");
/// ```
pub fn fence_counter(service: &str) -> String {
    own(service, "fence")
}

/// `<service>:hivent:attempts`: a hash from partition number to the failed attempts at
/// its oldest item, `<sha1 of the item> <attempts> <first failure, ms>`, so that a
/// crash between attempts does not reset the count; dropped when the item is
/// acknowledged or dead-lettered.
///
/// ```
/// assert_eq!(hivent_redis::keys::attempts("billing"), "billing:hivent:attempts");
/// ```
pub fn attempts(service: &str) -> String {
    own(service, "attempts")
}

/// `<service>:hivent:failures:<n>`: a hash from the SHA-1 of a dead letter of partition
/// `n` to its failure record (JSON, [`hivent_core::FailureRecord`]), written in the
/// same step as the move; entries go with their items (replay, purge).
///
/// ```
/// assert_eq!(hivent_redis::keys::failure_records("billing", 3), "billing:hivent:failures:3");
/// ```
pub fn failure_records(service: &str, n: u32) -> String {
    own(service, &format!("failures:{n}"))
}

/// `<service>:hivent:heartbeats`: a hash from member id to `<ms> <interval ms>`: when
/// the member last heartbeat (Redis time) and how often it means to, so that `status`
/// can tell a member that stopped heartbeating; dropped when it leaves or expires.
///
/// ```
/// assert_eq!(hivent_redis::keys::heartbeats("billing"), "billing:hivent:heartbeats");
/// ```
pub fn heartbeats(service: &str) -> String {
    format!("{service}:hivent:heartbeats")
}

/// `<service>:hivent:rates`: a hash from partition number to `<rate> <ms>`: its
/// processing rate in events per second, decaying with a 10 s time constant, as of the
/// acknowledgement at that Redis time.
///
/// ```
/// assert_eq!(hivent_redis::keys::rates("billing"), "billing:hivent:rates");
/// ```
pub fn rates(service: &str) -> String {
    format!("{service}:hivent:rates")
}

/// `<service>:hivent:wake`: the pub/sub channel producers notify after pushing to
/// one of the service's partitions. A channel, not a key.
///
/// ```
/// assert_eq!(hivent_redis::keys::wake_channel("billing"), "billing:hivent:wake");
/// ```
pub fn wake_channel(service: &str) -> String {
    own(service, "wake")
}

/// `<service>:hivent:group`: the pub/sub channel on which members announce that the
/// group changed (a member joined, left, expired or released a partition), so the
/// others heartbeat at once. A channel, not a key.
///
/// ```
/// assert_eq!(hivent_redis::keys::group_channel("billing"), "billing:hivent:group");
/// ```
pub fn group_channel(service: &str) -> String {
    own(service, "group")
}

/// What a service name is followed by to form its wake channel; the publish script
/// appends it to each receiving service.
pub const WAKE_CHANNEL_SUFFIX: &str = ":hivent:wake";

/// What precedes a publish call's id in the key that marks the call as stored
/// (`hivent:emitted:<call id>`), so a retried call is not stored twice.
pub const EMITTED_MARKER_PREFIX: &str = "hivent:emitted:";

/// `hivent:emitted:<call id>`: set by a publish call that stored its events.
///
/// ```
/// assert_eq!(hivent_redis::keys::emitted_marker("4f1c"), "hivent:emitted:4f1c");
/// ```
pub fn emitted_marker(call_id: &str) -> String {
    format!("{EMITTED_MARKER_PREFIX}{call_id}")
}

/// `hivent:registry`: the registry version, a number that hivent's registration
/// moves on whenever it changes who receives what or a partition count; producers
/// emit by cached routes only while it holds (see the crate docs, "Producing").
pub const REGISTRY_VERSION: &str = "hivent:registry";

/// `hivent:emitted:connection:<random id>`: the id of the last whole call that one
/// producer connection's emit transactions stored, so a retry after a lost reply can
/// tell whether it ran (see `routed_emit.rs`).
///
/// ```
/// assert_eq!(hivent_redis::keys::connection_marker("9e2a"), "hivent:emitted:connection:9e2a");
/// ```
pub fn connection_marker(token: &str) -> String {
    format!("{EMITTED_MARKER_PREFIX}connection:{token}")
}

/// `<service>:consumers`: the Ruby gem's set of its consumers of the service (read by
/// `status` only; hivent-rs's own group lives under `<service>:hivent:`).
///
/// ```
/// assert_eq!(hivent_redis::keys::gem_consumers("billing"), "billing:consumers");
/// ```
pub fn gem_consumers(service: &str) -> String {
    format!("{service}:consumers")
}

/// `<service>:<consumer>:alive`: present while the gem's consumer is alive.
///
/// ```
/// assert_eq!(hivent_redis::keys::gem_alive("billing", "worker-1"), "billing:worker-1:alive");
/// ```
pub fn gem_alive(service: &str, consumer: &str) -> String {
    format!("{service}:{consumer}:alive")
}

/// `<service>:<consumer>:assigned`: the partitions (`<service>:<n>`) the gem assigned
/// to its consumer.
///
/// ```
/// assert_eq!(hivent_redis::keys::gem_assigned("billing", "worker-1"), "billing:worker-1:assigned");
/// ```
pub fn gem_assigned(service: &str, consumer: &str) -> String {
    format!("{service}:{consumer}:assigned")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys shared with the Ruby gem keep its exact names.
    #[test]
    fn ruby_gem_keys() {
        assert_eq!(event_receivers("user:created"), "user:created");
        assert_eq!(WILDCARD_RECEIVERS, "*");
        assert_eq!(partition_count("svc"), "svc:partition_count");
        assert_eq!(partition("svc", 3), "svc:3");
        assert_eq!(dead_letter("svc", 3), "svc:3:dead_letter");
    }

    /// Names the Lua scripts assemble from parts equal the ones built here.
    #[test]
    fn parts_assemble_to_the_same_names() {
        assert_eq!(
            format!("{}{}", partition_prefix("svc"), 7),
            partition("svc", 7)
        );
        assert_eq!(
            format!("svc{PARTITION_COUNT_SUFFIX}"),
            partition_count("svc")
        );
        assert_eq!(format!("svc{WAKE_CHANNEL_SUFFIX}"), wake_channel("svc"));
    }

    /// Coordination keys live under `<service>:hivent:`.
    #[test]
    fn coordination_keys() {
        assert_eq!(registered_events("svc"), "svc:hivent:events");
        assert_eq!(members("svc"), "svc:hivent:members");
        assert_eq!(owners("svc"), "svc:hivent:owners");
        assert_eq!(tokens("svc"), "svc:hivent:tokens");
        assert_eq!(fence_counter("svc"), "svc:hivent:fence");
        assert_eq!(wake_channel("svc"), "svc:hivent:wake");
        assert_eq!(group_channel("svc"), "svc:hivent:group");
        assert_eq!(attempts("svc"), "svc:hivent:attempts");
        assert_eq!(failure_records("svc", 3), "svc:hivent:failures:3");
    }

    /// The gem's group keys keep its names.
    #[test]
    fn gem_group_keys() {
        assert_eq!(gem_consumers("svc"), "svc:consumers");
        assert_eq!(gem_alive("svc", "w1"), "svc:w1:alive");
        assert_eq!(gem_assigned("svc", "w1"), "svc:w1:assigned");
    }

    /// A publish call's marker is named by its call id.
    #[test]
    fn emitted_marker_names_the_call() {
        assert_eq!(emitted_marker("abc123"), "hivent:emitted:abc123");
    }
}
