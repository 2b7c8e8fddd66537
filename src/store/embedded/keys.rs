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
    trailing_number(key)
}

/// The big-endian number that ends a key (an event's sequence, a session's position) or that
/// a value holds.
pub fn trailing_number(bytes: &[u8]) -> u64 {
    let tail = &bytes[bytes.len().saturating_sub(8)..];
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

/// Session keys are made of length-prefixed parts, so ids that contain any byte (context ids
/// come from clients) can neither collide nor leak into another session's prefix range.
/// A length is one byte below 255, else 255 and four bytes (short keys compare faster).
fn parts(tag: u8, parts: &[&str]) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + parts.iter().map(|p| p.len() + 1).sum::<usize>());
    key.push(tag);
    for part in parts {
        match u8::try_from(part.len()) {
            Ok(short) if short < u8::MAX => key.push(short),
            _ => {
                key.push(u8::MAX);
                key.extend_from_slice(&(part.len() as u32).to_be_bytes());
            }
        }
        key.extend_from_slice(part.as_bytes());
    }
    key
}

/// `o app`: the prefix of an app's sessions in the order they began.
pub fn sessions_of_app(app: &str) -> Vec<u8> {
    parts(b'o', &[app])
}

/// An order prefix followed by a position → the session id.
pub fn at_position(prefix: &[u8], position: u64) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(&position.to_be_bytes());
    key
}

/// `t app id`: the prefix of a session's tasks.
pub fn tasks_of_session(app: &str, id: &str) -> Vec<u8> {
    parts(b't', &[app, id])
}

/// A session's task: its prefix, the task's number in creation order, the task id.
pub fn session_task(app: &str, id: &str, number: u64, task_id: &str) -> Vec<u8> {
    let mut key = at_position(&tasks_of_session(app, id), number);
    key.extend_from_slice(task_id.as_bytes());
    key
}

/// The task id of a session-task key under `prefix`.
pub fn session_task_id(prefix: &[u8], key: &[u8]) -> String {
    String::from_utf8_lossy(key.get(prefix.len() + 8..).unwrap_or_default()).into_owned()
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

    #[test]
    fn session_keys_keep_ids_apart_and_order_by_position() {
        // A context id that extends another one never falls in its prefix range.
        assert!(!session_task("app", "ab", 1, "t").starts_with(&tasks_of_session("app", "a")));
        assert_ne!(tasks_of_session("a", "bc"), tasks_of_session("ab", "c"));
        let long = "x".repeat(300);
        assert!(!session_task("app", &long, 1, "t").starts_with(&tasks_of_session("app", &long[..299])));
        let prefix = sessions_of_app("app");
        assert!(at_position(&prefix, 2) < at_position(&prefix, 10));
        let tasks = tasks_of_session("app", &long);
        assert_eq!(session_task_id(&tasks, &session_task("app", &long, 7, "task-1")), "task-1");
        assert!(session_task("app", "c", 2, "zz") < session_task("app", "c", 10, "aa"), "creation order");
    }
}
