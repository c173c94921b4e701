//! The even split of a service's partitions over the live members of its consumer group.

/// The partitions `member` should own when `members` are alive: partition `p` goes to
/// the member at index `p % members.len()` of the sorted member list. Every member
/// computes the same split from the same list, without talking to the others; the
/// counts differ by at most one. Empty when `member` is not in the list.
///
/// ```
/// use hivent_core::desired_partitions;
/// let members = ["a".to_string(), "b".to_string()];
/// assert_eq!(desired_partitions(&members, "b", 4), vec![1, 3]);
/// ```
pub fn desired_partitions(members: &[String], member: &str, partition_count: u32) -> Vec<u32> {
    let mut sorted: Vec<&str> = members.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let Some(index) = sorted.iter().position(|m| *m == member) else {
        return Vec::new();
    };
    let n = sorted.len() as u32;
    (0..partition_count)
        .filter(|p| p % n == index as u32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("m{i}")).collect()
    }

    /// One member owns everything.
    #[test]
    fn single_member_owns_all() {
        assert_eq!(desired_partitions(&names(1), "m0", 4), vec![0, 1, 2, 3]);
    }

    /// Every partition has exactly one owner and the counts differ by at most one.
    #[test]
    fn splits_evenly_and_completely() {
        for members in 1..6 {
            for count in 1..10u32 {
                let list = names(members);
                let mut seen = vec![0; count as usize];
                let mut sizes = Vec::new();
                for m in &list {
                    let own = desired_partitions(&list, m, count);
                    sizes.push(own.len());
                    for p in own {
                        seen[p as usize] += 1;
                    }
                }
                assert!(seen.iter().all(|&c| c == 1), "{members} {count} {seen:?}");
                let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                assert!(max - min <= 1, "{sizes:?}");
            }
        }
    }

    /// The order members are listed in does not matter; strangers get nothing.
    #[test]
    fn order_independent_and_strangers_get_nothing() {
        let a = vec!["b".to_string(), "a".to_string(), "c".to_string()];
        assert_eq!(desired_partitions(&a, "a", 4), vec![0, 3]);
        assert_eq!(desired_partitions(&a, "c", 4), vec![2]);
        assert!(desired_partitions(&a, "zz", 4).is_empty());
    }
}
