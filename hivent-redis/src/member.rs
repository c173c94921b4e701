//! Member ids that say which process a member is, and the removal of this host's ghosts.
//!
//! A member id is `<host>-<pid>-<start>-<pidns>-<boot>-<random>`: the host name, the
//! process id, the process's start time (clock ticks since boot, from
//! `/proc/<pid>/stat`), its pid namespace (the inode of `/proc/self/ns/pid`), the first
//! eight hex digits of the boot id, and a random part. A part that cannot be read is
//! `0`. At join, a worker makes leave only the members that are certainly gone
//! processes of its own host: same host name, same boot, same pid namespace, all parts
//! known, and the pid either no longer runs or runs with another start time (the pid
//! was reused). A member in another container with the same host name has another pid
//! namespace and is never touched; whatever cannot be told apart is left to expire.

use crate::group_store::GroupStore;
use hivent_core::ErrorChain;

/// What identifies a process across restarts, pid namespaces and reboots.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Identity {
    host: String,
    pid: u32,
    start: u64,
    pid_namespace: u64,
    boot: String,
}

impl Identity {
    /// This process, as far as `/proc` tells.
    fn own() -> Identity {
        let pid = std::process::id();
        Identity {
            host: host_name(),
            pid,
            start: start_time(pid).unwrap_or(0),
            pid_namespace: pid_namespace().unwrap_or(0),
            boot: boot_id().unwrap_or_else(|| "0".to_owned()),
        }
    }

    /// Parses the identity part of a member id; `None` for ids of another shape (older
    /// versions), which are never taken for ghosts.
    fn parse(member: &str) -> Option<Identity> {
        let mut parts = member.rsplitn(6, '-');
        let _random = parts.next()?;
        let boot = parts.next()?.to_owned();
        let pid_namespace = parts.next()?.parse().ok()?;
        let start = parts.next()?.parse().ok()?;
        let pid = parts.next()?.parse().ok()?;
        let host = parts.next()?;
        Some(Identity {
            host: host.to_owned(),
            pid,
            start,
            pid_namespace,
            boot,
        })
    }

    fn is_complete(&self) -> bool {
        self.start != 0 && self.pid_namespace != 0 && self.boot != "0"
    }

    /// Whether `self`, another member, is a gone process of the host and pid namespace
    /// `me` runs in; `start_of(pid)` reads a running pid's start time.
    fn is_ghost_of(&self, me: &Identity, start_of: impl Fn(u32) -> Option<u64>) -> bool {
        self.is_complete()
            && me.is_complete()
            && self.host == me.host
            && self.boot == me.boot
            && self.pid_namespace == me.pid_namespace
            && self.pid != me.pid
            && start_of(self.pid) != Some(self.start)
    }
}

/// The host and process id a member id names, for `status`; `None` for ids of
/// another shape.
pub(crate) fn process_of(member: &str) -> Option<(String, u32)> {
    Identity::parse(member).map(|identity| (identity.host, identity.pid))
}

/// A member id unique across hosts, processes and sessions (see the module docs).
pub(crate) fn member_id() -> String {
    let me = Identity::own();
    let random = hivent_core::new_id();
    let suffix = random.get(..12).unwrap_or(&random);
    format!(
        "{}-{}-{}-{}-{}-{suffix}",
        me.host, me.pid, me.start, me.pid_namespace, me.boot
    )
}

/// The host's name as the OS reports it (every platform, not only Linux's `/proc`),
/// reduced to characters that keep a member id one token.
fn host_name() -> String {
    Some(gethostname::gethostname().to_string_lossy().into_owned())
        .filter(|h| !h.trim().is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| {
            h.trim()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
                .collect::<String>()
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_owned())
}

/// The start time of `pid` in clock ticks since boot: field 22 of `/proc/<pid>/stat`,
/// counted after the command name, which may itself hold spaces and parentheses.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, after_name) = stat.rsplit_once(')')?;
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// The inode of this process's pid namespace, e.g. 4026531836 from `pid:[4026531836]`.
fn pid_namespace() -> Option<u64> {
    let link = std::fs::read_link("/proc/self/ns/pid").ok()?;
    let text = link.to_str()?;
    text.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
}

fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let hex: String = id.chars().filter(char::is_ascii_hexdigit).take(8).collect();
    (hex.len() == 8).then_some(hex)
}

/// Whether this process's `/proc` shows its own pid namespace: otherwise (a pid
/// namespace without its own `/proc` mount) a pid read there names another process.
fn proc_is_ours() -> bool {
    std::fs::read_link("/proc/self")
        .ok()
        .and_then(|link| link.to_str().and_then(|pid| pid.parse::<u32>().ok()))
        == Some(std::process::id())
}

/// Makes the members of this host whose process is gone (a worker that crashed or was
/// killed here) leave the group, so that a restarted worker takes their partitions at
/// once instead of after their lifetime. Best effort: what cannot be told apart is
/// left to expire.
pub(crate) fn remove_ghosts(group: &dyn GroupStore, service: &str, me: &str) {
    if !proc_is_ours() {
        return;
    }
    let Some(me) = Identity::parse(me) else {
        return;
    };
    let members = match group.members(service) {
        Ok(members) => members,
        Err(error) => {
            tracing::debug!(error = %ErrorChain(&error), service, "could not look for ghosts of this host");
            return;
        }
    };
    for ghost in ghosts(&members, &me, start_time) {
        match group.leave(service, &ghost) {
            Ok(released) => tracing::info!(
                service,
                ghost,
                released,
                "removed a gone worker of this host from the group"
            ),
            Err(error) => {
                tracing::debug!(error = %ErrorChain(&error), service, ghost, "could not remove a ghost")
            }
        }
    }
}

/// The members that are gone processes of `me`'s host and pid namespace.
fn ghosts(
    members: &[String],
    me: &Identity,
    start_of: impl Fn(u32) -> Option<u64> + Copy,
) -> Vec<String> {
    members
        .iter()
        .filter(|m| Identity::parse(m).is_some_and(|other| other.is_ghost_of(me, start_of)))
        .cloned()
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// The host part of member ids is the OS's host name (on Linux, the kernel's).
    #[test]
    fn the_host_name_is_the_systems() {
        let name = host_name();
        assert!(!name.is_empty() && name != "host", "{name}");
        if let Ok(kernel) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
            assert_eq!(name, kernel.trim());
        }
    }

    fn me() -> Identity {
        Identity {
            host: "web-1".into(),
            pid: 500,
            start: 9000,
            pid_namespace: 4026531836,
            boot: "5f3a9c2b".into(),
        }
    }

    /// Ghosts are members of this host, boot and pid namespace whose pid is gone or was
    /// reused; live processes, other namespaces, hosts, boots, this process, ids with an
    /// unknown part and ids of another shape are never ghosts.
    #[test]
    fn finds_only_certain_ghosts() {
        let members: Vec<String> = [
            "web-1-111-800-4026531836-5f3a9c2b-aaaa",  // gone
            "web-1-222-700-4026531836-5f3a9c2b-bbbb",  // running, same start: live
            "web-1-333-600-4026531836-5f3a9c2b-cccc",  // pid reused by another process
            "web-1-111-800-4026532000-5f3a9c2b-dddd",  // another pid namespace
            "web-2-111-800-4026531836-5f3a9c2b-eeee",  // another host
            "web-1-111-800-4026531836-00000001-ffff",  // another boot
            "web-1-500-9000-4026531836-5f3a9c2b-1111", // this process
            "web-1-111-0-4026531836-5f3a9c2b-2222",    // start time unknown
            "web-1-111-aaaa",                          // an older id
        ]
        .map(String::from)
        .to_vec();
        let running = |pid| match pid {
            222 => Some(700),
            333 => Some(601),
            500 => Some(9000),
            _ => None,
        };
        assert_eq!(
            ghosts(&members, &me(), running),
            [
                "web-1-111-800-4026531836-5f3a9c2b-aaaa",
                "web-1-333-600-4026531836-5f3a9c2b-cccc"
            ]
        );
    }

    /// An id whose own parts are unknown removes nobody.
    #[test]
    fn unknown_self_removes_nobody() {
        let blind = Identity {
            pid_namespace: 0,
            ..me()
        };
        let members = vec!["web-1-111-800-4026531836-5f3a9c2b-aaaa".to_owned()];
        assert!(ghosts(&members, &blind, |_| None).is_empty());
    }

    /// Member ids name this process and parse back; two sessions differ.
    #[test]
    fn member_ids_parse_back() {
        let (a, b) = (member_id(), member_id());
        assert_ne!(a, b);
        let parsed = Identity::parse(&a).unwrap();
        assert_eq!(parsed, Identity::own());
        assert_eq!(parsed.pid, std::process::id());
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(parsed.is_complete(), "{a}");
            assert_eq!(start_time(std::process::id()), Some(parsed.start));
        }
    }
}
