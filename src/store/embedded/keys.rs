//! Key layouts of the embedded keyspaces. Composite keys put a NUL after the task id (ids
//! never contain one) so a task's entries form one contiguous prefix range, and sequence
//! numbers and times are big-endian so byte order is numeric order.

/// `task_id \0`: the prefix of a task's entries.
pub fn prefix(task_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(task_id.len() + 1);
    key.extend_from_slice(task_id.as_bytes());
    key.push(0);
    key
}

/// `task_id \0 seq`.
pub fn event(task_id: &str, seq: u64) -> Vec<u8> {
    let mut key = prefix(task_id);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// The sequence number of an event key.
pub fn event_seq(key: &[u8]) -> u64 {
    let tail = &key[key.len().saturating_sub(8)..];
    u64::from_be_bytes(tail.try_into().unwrap_or([0; 8]))
}

/// `task_id \0 second`.
pub fn pair(task_id: &str, second: &str) -> Vec<u8> {
    let mut key = prefix(task_id);
    key.extend_from_slice(second.as_bytes());
    key
}

/// `at_ms task_id`: expiry index ordered by time.
pub fn expiry(at_ms: u64, task_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + task_id.len());
    key.extend_from_slice(&at_ms.to_be_bytes());
    key.extend_from_slice(task_id.as_bytes());
    key
}

/// The task id of an expiry key.
pub fn expiry_task(key: &[u8]) -> String {
    String::from_utf8_lossy(key.get(8..).unwrap_or_default()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_keys_sort_by_sequence_within_a_task() {
        assert!(event("t", 2) < event("t", 10));
        assert!(event("t", u64::MAX) < prefix("t0"));
        assert_eq!(event_seq(&event("t", 42)), 42);
        assert_eq!(expiry_task(&expiry(5, "abc")), "abc");
    }
}
