//! The write-ahead log of the embedded store.
//!
//! redb makes a commit durable with an fsync, which costs milliseconds on most disks; doing that
//! before every answer would cap throughput at (connections / fsync time). Instead each group
//! commit is applied to redb without fsync (visible to readers at once) and its physical changes
//! (puts and deletes) are appended to this log with one `write` before any caller is answered.
//! A write that reached the kernel survives the process being killed; the fsync policy decides
//! when it also survives a power loss (`always`: before answering; an interval: at most that
//! long after). A checkpoint (a durable redb commit) empties the log.
//!
//! Record: `len u32 | crc32 u32 | epoch u64 | payload`, little-endian. The epoch is stored in
//! the database by every checkpoint; replay stops at the first record that is torn, fails its
//! checksum or belongs to another epoch (leftovers from before a truncation a power loss undid).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

/// The log file.
pub struct Wal {
    file: File,
    len: u64,
}

const HEADER: usize = 16;

impl Wal {
    /// Opens (or creates) the log and returns the payloads of `epoch` that it holds, in order.
    pub fn open(path: &Path, epoch: u64) -> std::io::Result<(Wal, Vec<Vec<u8>>)> {
        let mut file =
            OpenOptions::new().read(true).append(false).write(true).create(true).truncate(false).open(path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let mut records = Vec::new();
        let mut at = 0usize;
        while bytes.len() - at >= HEADER {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or_default()) as usize;
            let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap_or_default());
            let record_epoch = u64::from_le_bytes(bytes[at + 8..at + 16].try_into().unwrap_or_default());
            let end = at + HEADER + len;
            if end > bytes.len() || record_epoch != epoch {
                break;
            }
            let payload = &bytes[at + HEADER..end];
            if crc32fast::hash(payload) != crc {
                break;
            }
            records.push(payload.to_vec());
            at = end;
        }
        file.seek(SeekFrom::Start(at as u64))?;
        Ok((Wal { file, len: at as u64 }, records))
    }

    /// Appends one record with a single write.
    pub fn append(&mut self, epoch: u64, payload: &[u8]) -> std::io::Result<()> {
        let mut record = Vec::with_capacity(HEADER + payload.len());
        record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        record.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        record.extend_from_slice(&epoch.to_le_bytes());
        record.extend_from_slice(payload);
        self.file.write_all(&record)?;
        self.len += record.len() as u64;
        Ok(())
    }

    /// Forces appended records to stable storage.
    pub fn sync(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }

    /// A second handle for a background syncer.
    pub fn sync_handle(&self) -> std::io::Result<File> {
        self.file.try_clone()
    }

    /// Empties the log after a checkpoint made its records redundant.
    pub fn reset(&mut self) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.file.seek(SeekFrom::Start(0))?;
        self.len = 0;
        Ok(())
    }

    /// Bytes in the log.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// The log holds no record.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Physical changes of one group commit, encoded as they are made.
#[derive(Default)]
pub struct ChangeLog {
    buf: Vec<u8>,
}

/// One physical change.
#[derive(Debug, PartialEq)]
pub enum Mutation<'a> {
    Put(u8, Key<'a>, &'a [u8]),
    Delete(u8, Key<'a>),
}

/// A key of any embedded table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Key<'a> {
    Str(&'a str),
    StrU64(&'a str, u64),
    StrStr(&'a str, &'a str),
    U64Str(u64, &'a str),
}

impl ChangeLog {
    /// Records a put of `value` at `key` in `table`.
    pub fn put(&mut self, table: u8, key: Key<'_>, value: &[u8]) {
        self.buf.push(1);
        self.buf.push(table);
        self.key(key);
        self.bytes(value);
    }

    /// Records a delete of `key` in `table`.
    pub fn delete(&mut self, table: u8, key: Key<'_>) {
        self.buf.push(2);
        self.buf.push(table);
        self.key(key);
    }

    fn key(&mut self, key: Key<'_>) {
        match key {
            Key::Str(a) => {
                self.buf.push(0);
                self.bytes(a.as_bytes());
            }
            Key::StrU64(a, b) => {
                self.buf.push(1);
                self.bytes(a.as_bytes());
                self.buf.extend_from_slice(&b.to_le_bytes());
            }
            Key::StrStr(a, b) => {
                self.buf.push(2);
                self.bytes(a.as_bytes());
                self.bytes(b.as_bytes());
            }
            Key::U64Str(a, b) => {
                self.buf.push(3);
                self.buf.extend_from_slice(&a.to_le_bytes());
                self.bytes(b.as_bytes());
            }
        }
    }

    fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(&(b.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(b);
    }

    /// The encoded changes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// No change was recorded.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// Decodes a record's changes; `None` when it is malformed.
pub fn decode(mut payload: &[u8]) -> Option<Vec<Mutation<'_>>> {
    fn take<'a>(p: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if p.len() < n {
            return None;
        }
        let (head, rest) = p.split_at(n);
        *p = rest;
        Some(head)
    }
    fn u64_(p: &mut &[u8]) -> Option<u64> {
        Some(u64::from_le_bytes(take(p, 8)?.try_into().ok()?))
    }
    fn bytes<'a>(p: &mut &'a [u8]) -> Option<&'a [u8]> {
        let len = u32::from_le_bytes(take(p, 4)?.try_into().ok()?) as usize;
        take(p, len)
    }
    fn str_<'a>(p: &mut &'a [u8]) -> Option<&'a str> {
        std::str::from_utf8(bytes(p)?).ok()
    }
    let mut out = Vec::new();
    while !payload.is_empty() {
        let op = take(&mut payload, 1)?[0];
        let table = take(&mut payload, 1)?[0];
        let key = match take(&mut payload, 1)?[0] {
            0 => Key::Str(str_(&mut payload)?),
            1 => Key::StrU64(str_(&mut payload)?, u64_(&mut payload)?),
            2 => Key::StrStr(str_(&mut payload)?, str_(&mut payload)?),
            3 => Key::U64Str(u64_(&mut payload)?, str_(&mut payload)?),
            _ => return None,
        };
        out.push(match op {
            1 => Mutation::Put(table, key, bytes(&mut payload)?),
            2 => Mutation::Delete(table, key),
            _ => return None,
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_round_trip() {
        let mut log = ChangeLog::default();
        log.put(0, Key::Str("t1"), b"{}");
        log.delete(1, Key::StrU64("t1", 7));
        log.put(2, Key::StrStr("t1", "c"), b"x");
        log.delete(5, Key::U64Str(9, "t1"));
        let decoded = decode(log.as_bytes()).unwrap();
        assert_eq!(
            decoded,
            vec![
                Mutation::Put(0, Key::Str("t1"), b"{}"),
                Mutation::Delete(1, Key::StrU64("t1", 7)),
                Mutation::Put(2, Key::StrStr("t1", "c"), b"x"),
                Mutation::Delete(5, Key::U64Str(9, "t1")),
            ]
        );
    }

    #[test]
    fn replay_stops_at_a_torn_record_or_another_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal");
        {
            let (mut wal, records) = Wal::open(&path, 3).unwrap();
            assert!(records.is_empty());
            wal.append(3, b"one").unwrap();
            wal.append(3, b"two").unwrap();
            wal.append(2, b"stale").unwrap();
        }
        let (_, records) = Wal::open(&path, 3).unwrap();
        assert_eq!(records, vec![b"one".to_vec(), b"two".to_vec()]);
        // Tear the last record of epoch 3.
        let len = std::fs::metadata(&path).unwrap().len();
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(len - 16 - 5 - 1).unwrap();
        let (wal, records) = Wal::open(&path, 3).unwrap();
        assert_eq!(records, vec![b"one".to_vec()]);
        assert_eq!(wal.len(), 16 + 3);
    }
}
