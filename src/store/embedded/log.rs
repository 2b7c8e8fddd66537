//! How a task's event log is laid out in the `events` keyspace. Each write stores the events
//! it carries under one key, `task_id \0 seq` of the newest of them (see [`keys::event`]), so a
//! turn that ends in one write (a blocking `message/send`: creation, `working`, chunks, final
//! state) costs one key instead of one per event. At most [`GROUP_MAX`] events share a key.
//!
//! A value holding one event is that event's JSON, as every value was before events were
//! grouped, so older stores read unchanged. A value holding several starts with a NUL byte
//! (JSON never does), then per event its sequence number (8 bytes, big-endian), its length
//! (4 bytes, big-endian) and its JSON.
//!
//! Since a key names the newest event of its value, the keys from `task_id \0 n` on hold every
//! event newer than `n - 1` (and maybe some older ones, which readers skip), and the last key
//! of a task names its newest event.

use super::keys;

/// Most events stored under one key: a long turn's log still reads back in bounded pieces.
pub const GROUP_MAX: usize = 64;

/// Marks a value holding several events.
const GROUP: u8 = 0;

/// The writes of `events` (oldest first, as `(seq, json)`): one `(key, value)` per group.
pub fn values(task_id: &str, events: Vec<(u64, Vec<u8>)>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::with_capacity(events.len().div_ceil(GROUP_MAX));
    let mut events = events.into_iter().peekable();
    while events.peek().is_some() {
        let group: Vec<(u64, Vec<u8>)> = events.by_ref().take(GROUP_MAX).collect();
        out.push(value(task_id, group));
    }
    out
}

/// One group's key and value.
fn value(task_id: &str, mut group: Vec<(u64, Vec<u8>)>) -> (Vec<u8>, Vec<u8>) {
    let newest = group.last().map_or(0, |(seq, _)| *seq);
    let key = keys::event(task_id, newest);
    if group.len() == 1 {
        return (key, group.pop().map(|(_, json)| json).unwrap_or_default());
    }
    let mut value = Vec::with_capacity(1 + group.iter().map(|(_, json)| 12 + json.len()).sum::<usize>());
    value.push(GROUP);
    for (seq, json) in &group {
        value.extend_from_slice(&seq.to_be_bytes());
        value.extend_from_slice(&(json.len() as u32).to_be_bytes());
        value.extend_from_slice(json);
    }
    (key, value)
}

/// The events a stored value holds, oldest first, as `(seq, json)`; `key` is the value's key.
/// A value cut short (it cannot be, short of a corrupt store) yields the events before the cut.
pub fn entries<'a>(key: &[u8], value: &'a [u8]) -> Entries<'a> {
    match value.first() {
        Some(&GROUP) => Entries::Group(&value[1..]),
        _ => Entries::One(Some((keys::event_seq(key), value))),
    }
}

/// Iterator of [`entries`].
pub enum Entries<'a> {
    One(Option<(u64, &'a [u8])>),
    Group(&'a [u8]),
}

impl<'a> Iterator for Entries<'a> {
    type Item = (u64, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Entries::One(one) => one.take(),
            Entries::Group(rest) => {
                let seq = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
                let len = u32::from_be_bytes(rest.get(8..12)?.try_into().ok()?) as usize;
                let json = rest.get(12..12 + len)?;
                *rest = &rest[12 + len..];
                Some((seq, json))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(seqs: std::ops::RangeInclusive<u64>) -> Vec<(u64, Vec<u8>)> {
        seqs.map(|seq| (seq, format!("{{\"n\":{seq}}}").into_bytes())).collect()
    }

    fn read(writes: &[(Vec<u8>, Vec<u8>)]) -> Vec<(u64, Vec<u8>)> {
        writes.iter().flat_map(|(key, value)| entries(key, value).map(|(seq, json)| (seq, json.to_vec()))).collect()
    }

    #[test]
    fn one_event_is_stored_as_its_own_json() {
        let writes = values("t1", events(7..=7));
        assert_eq!(writes, vec![(keys::event("t1", 7), b"{\"n\":7}".to_vec())]);
        assert_eq!(read(&writes), events(7..=7));
    }

    #[test]
    fn several_events_share_the_key_of_the_newest_and_read_back_in_order() {
        let writes = values("t1", events(3..=6));
        assert_eq!(writes.len(), 1);
        assert_eq!(writes[0].0, keys::event("t1", 6));
        assert_eq!(writes[0].1[0], GROUP);
        assert_eq!(read(&writes), events(3..=6));
    }

    #[test]
    fn a_long_run_is_split_into_groups_of_at_most_group_max() {
        let n = (2 * GROUP_MAX + 5) as u64;
        let writes = values("t1", events(1..=n));
        assert_eq!(writes.len(), 3);
        let keys: Vec<u64> = writes.iter().map(|(key, _)| keys::event_seq(key)).collect();
        assert_eq!(keys, [GROUP_MAX as u64, 2 * GROUP_MAX as u64, n]);
        assert_eq!(read(&writes), events(1..=n));
        assert!(values("t1", Vec::new()).is_empty());
    }

    #[test]
    fn a_value_cut_short_yields_the_events_before_the_cut() {
        let (key, value) = values("t1", events(1..=3)).remove(0);
        let cut = &value[..value.len() - 2];
        let read: Vec<u64> = entries(&key, cut).map(|(seq, _)| seq).collect();
        assert_eq!(read, [1, 2]);
    }
}
