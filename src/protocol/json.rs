//! JSON encoding of the types every turn writes to the store (tasks and stream events), by
//! hand: the same bytes `serde_json` writes for them (the tests compare the two), in about a
//! third of the instructions (for a blocking `message/send`, 14k instead of 39k, counted by
//! bench/instructions.sh). `serde_json` writes each key and string in several small writes
//! and escapes every key; here a field's key and punctuation are one constant, and a string
//! is checked eight bytes at a time and copied at once when it needs no escape. Parts other
//! than text and free-form values (metadata, data) go through `serde_json`: they are rare on
//! the hot path.
//!
//! The types' derived `Serialize` stays the definition of their JSON; a field added to a type
//! must be added here too, which the test of a fully populated value catches.

use serde::Serialize;
use serde_json::{Map, Value};

use super::{
    Artifact, Message, Part, Role, StreamEvent, Task, TaskArtifactUpdateEvent, TaskStatus, TaskStatusUpdateEvent,
};

/// A type with a hand-written JSON encoding.
pub trait WriteJson {
    /// Appends the value's compact JSON to `out`.
    fn write_json(&self, out: &mut Vec<u8>);

    /// The value's compact JSON.
    fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        self.write_json(&mut out);
        out
    }
}

/// Whether any of the eight bytes in `word` must be escaped: a control character (below
/// 0x20), `"` or `\\`. Exact for presence, with no false positives (the classic "has a byte
/// less than n" and "has a zero byte" bit tricks).
fn needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_in = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
    (control | zero_in(word ^ (ONES * b'"' as u64)) | zero_in(word ^ (ONES * b'\\' as u64))) != 0
}

/// A JSON string literal, escaped exactly as `serde_json` escapes it.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    // Eight bytes at a time while none needs an escape: most strings are ids and plain text.
    let mut clean = 0;
    for chunk in bytes.chunks_exact(8) {
        if needs_escape(u64::from_le_bytes([
            chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7],
        ])) {
            break;
        }
        clean += 8;
    }
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    if bytes[clean..].iter().all(|&b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate().skip(clean) {
        if b >= 0x20 && b != b'"' && b != b'\\' {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 0xf) as usize]]);
            }
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// `key` (its punctuation included, as in `,"name":`) followed by the string.
pub fn write_field(out: &mut Vec<u8>, key: &[u8], value: &str) {
    out.extend_from_slice(key);
    write_str(out, value);
}

/// The opening of a task or task event: `head` (up to the id's key), the id, the context id.
fn ids(out: &mut Vec<u8>, head: &[u8], id: &str, context_id: &str) {
    write_field(out, head, id);
    write_field(out, b",\"contextId\":", context_id);
}

/// A value through `serde_json` (free-form JSON and rare shapes).
fn serde<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    // Writing to a Vec cannot fail, and these types serialize without errors.
    let _ = serde_json::to_writer(&mut *out, value);
}

/// `,"key":` followed by the string, when present.
fn opt_string(out: &mut Vec<u8>, key: &[u8], value: &Option<String>) {
    if let Some(value) = value {
        write_field(out, key, value);
    }
}

fn opt_strings(out: &mut Vec<u8>, key: &[u8], value: &Option<Vec<String>>) {
    if let Some(value) = value {
        out.extend_from_slice(key);
        serde(out, value);
    }
}

fn opt_bool(out: &mut Vec<u8>, key: &[u8], value: Option<bool>) {
    if let Some(value) = value {
        out.extend_from_slice(key);
        out.extend_from_slice(if value { b"true" } else { b"false" });
    }
}

fn metadata(out: &mut Vec<u8>, value: &Option<Map<String, Value>>) {
    if let Some(value) = value {
        out.extend_from_slice(b",\"metadata\":");
        serde(out, value);
    }
}

fn list<T: WriteJson>(out: &mut Vec<u8>, items: &[T]) {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        item.write_json(out);
    }
    out.push(b']');
}

impl WriteJson for Part {
    fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Part::Text { text, metadata: meta } => {
                out.extend_from_slice(b"{\"kind\":\"text\",\"text\":");
                write_str(out, text);
                metadata(out, meta);
                out.push(b'}');
            }
            other => serde(out, other),
        }
    }
}

impl WriteJson for Message {
    fn write_json(&self, out: &mut Vec<u8>) {
        write_field(out, b"{\"kind\":\"message\",\"messageId\":", &self.message_id);
        out.extend_from_slice(match self.role {
            Role::User => b",\"role\":\"user\",\"parts\":",
            Role::Agent => b",\"role\":\"agent\",\"parts\":",
        });
        list(out, &self.parts);
        opt_string(out, b",\"taskId\":", &self.task_id);
        opt_string(out, b",\"contextId\":", &self.context_id);
        opt_strings(out, b",\"referenceTaskIds\":", &self.reference_task_ids);
        opt_strings(out, b",\"extensions\":", &self.extensions);
        metadata(out, &self.metadata);
        out.push(b'}');
    }
}

impl WriteJson for TaskStatus {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"state\":\"");
        out.extend_from_slice(self.state.as_str().as_bytes());
        out.push(b'"');
        if let Some(message) = &self.message {
            out.extend_from_slice(b",\"message\":");
            message.write_json(out);
        }
        opt_string(out, b",\"timestamp\":", &self.timestamp);
        out.push(b'}');
    }
}

impl WriteJson for Artifact {
    fn write_json(&self, out: &mut Vec<u8>) {
        write_field(out, b"{\"artifactId\":", &self.artifact_id);
        out.extend_from_slice(b",\"parts\":");
        list(out, &self.parts);
        opt_string(out, b",\"name\":", &self.name);
        opt_string(out, b",\"description\":", &self.description);
        opt_strings(out, b",\"extensions\":", &self.extensions);
        metadata(out, &self.metadata);
        out.push(b'}');
    }
}

impl WriteJson for Task {
    fn write_json(&self, out: &mut Vec<u8>) {
        ids(out, b"{\"kind\":\"task\",\"id\":", &self.id, &self.context_id);
        out.extend_from_slice(b",\"status\":");
        self.status.write_json(out);
        if let Some(history) = &self.history {
            out.extend_from_slice(b",\"history\":");
            list(out, history);
        }
        if let Some(artifacts) = &self.artifacts {
            out.extend_from_slice(b",\"artifacts\":");
            list(out, artifacts);
        }
        metadata(out, &self.metadata);
        out.push(b'}');
    }
}

impl WriteJson for TaskStatusUpdateEvent {
    fn write_json(&self, out: &mut Vec<u8>) {
        ids(out, b"{\"kind\":\"status-update\",\"taskId\":", &self.task_id, &self.context_id);
        out.extend_from_slice(b",\"status\":");
        self.status.write_json(out);
        out.extend_from_slice(if self.is_final { b",\"final\":true" } else { b",\"final\":false" });
        metadata(out, &self.metadata);
        out.push(b'}');
    }
}

impl WriteJson for TaskArtifactUpdateEvent {
    fn write_json(&self, out: &mut Vec<u8>) {
        ids(out, b"{\"kind\":\"artifact-update\",\"taskId\":", &self.task_id, &self.context_id);
        out.extend_from_slice(b",\"artifact\":");
        self.artifact.write_json(out);
        opt_bool(out, b",\"append\":", self.append);
        opt_bool(out, b",\"lastChunk\":", self.last_chunk);
        metadata(out, &self.metadata);
        out.push(b'}');
    }
}

impl WriteJson for StreamEvent {
    fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            StreamEvent::Task(task) => task.write_json(out),
            StreamEvent::Message(message) => message.write_json(out),
            StreamEvent::Status(status) => status.write_json(out),
            StreamEvent::Artifact(artifact) => artifact.write_json(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ArtifactUpdateKind, FileContent, MessageKind, StatusUpdateKind, TaskKind, TaskState};

    /// Strings with everything an escape can meet: quotes, backslashes, every control
    /// character, DEL, multi-byte UTF-8 and an emoji.
    fn tricky(seed: u32) -> String {
        let mut s = format!("t{seed} \"quoted\" back\\slash /slash \u{7f} é 日本 🦀 ");
        for c in 0u8..0x20 {
            s.push(c as char);
        }
        s
    }

    fn meta(seed: u32) -> Option<Map<String, Value>> {
        let value = serde_json::json!({"n": seed, "s": tricky(seed), "nested": {"a": [1, 2.5, null, true]}});
        value.as_object().cloned()
    }

    fn message(role: Role, full: bool) -> Message {
        Message {
            kind: MessageKind,
            message_id: tricky(1),
            role,
            parts: vec![
                Part::Text { text: tricky(2), metadata: full.then(|| meta(3)).flatten() },
                Part::text(""),
                Part::File {
                    file: FileContent::Uri { uri: "https://e.com/f".into(), mime_type: Some("a/b".into()), name: None },
                    metadata: None,
                },
                Part::File {
                    file: FileContent::Bytes { bytes: "AAE=".into(), mime_type: None, name: Some(tricky(4)) },
                    metadata: meta(5),
                },
                Part::Data { data: meta(6).unwrap(), metadata: None },
            ],
            task_id: full.then(|| tricky(7)),
            context_id: full.then(|| "ctx".into()),
            reference_task_ids: full.then(|| vec![tricky(8), "b".into()]),
            extensions: full.then(|| vec!["https://ext".into()]),
            metadata: full.then(|| meta(9)).flatten(),
        }
    }

    fn artifact(full: bool) -> Artifact {
        Artifact {
            artifact_id: tricky(10),
            parts: vec![Part::text(tricky(11))],
            name: full.then(|| tricky(12)),
            description: full.then(|| "d".into()),
            extensions: full.then(Vec::new),
            metadata: full.then(|| meta(13)).flatten(),
        }
    }

    fn task(full: bool, state: TaskState) -> Task {
        Task {
            kind: TaskKind,
            id: tricky(14),
            context_id: tricky(15),
            status: TaskStatus {
                state,
                message: full.then(|| message(Role::Agent, full)),
                timestamp: full.then(|| "2026-11-27T10:00:00.000Z".into()),
            },
            history: full.then(|| vec![message(Role::User, true), message(Role::Agent, false)]),
            artifacts: full.then(|| vec![artifact(true), artifact(false)]),
            metadata: full.then(|| meta(16)).flatten(),
        }
    }

    fn same<T: WriteJson + Serialize>(value: &T) {
        let ours = value.to_json();
        let theirs = serde_json::to_vec(value).unwrap();
        assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&theirs));
    }

    #[test]
    fn writes_what_serde_json_writes() {
        for full in [true, false] {
            for state in [TaskState::Submitted, TaskState::InputRequired, TaskState::AuthRequired, TaskState::Completed]
            {
                same(&task(full, state));
                same(&StreamEvent::Task(task(full, state)));
            }
            for role in [Role::User, Role::Agent] {
                same(&message(role, full));
                same(&StreamEvent::Message(message(role, full)));
            }
            same(&artifact(full));
            for is_final in [true, false] {
                same(&StreamEvent::Status(TaskStatusUpdateEvent {
                    kind: StatusUpdateKind,
                    task_id: tricky(17),
                    context_id: "c".into(),
                    status: task(full, TaskState::Working).status,
                    is_final,
                    metadata: full.then(|| meta(18)).flatten(),
                }));
            }
            for flag in [None, Some(true), Some(false)] {
                same(&StreamEvent::Artifact(TaskArtifactUpdateEvent {
                    kind: ArtifactUpdateKind,
                    task_id: "t".into(),
                    context_id: tricky(19),
                    artifact: artifact(full),
                    append: flag,
                    last_chunk: flag.map(|f| !f),
                    metadata: full.then(|| meta(20)).flatten(),
                }));
            }
        }
    }

    #[test]
    fn finds_every_byte_that_needs_an_escape_in_a_word() {
        let naive = |word: u64| word.to_le_bytes().iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\');
        for b in 0..=255u8 {
            for position in 0..8 {
                for fill in [b'a', 0x7f, 0x80, 0xff, b' '] {
                    let mut bytes = [fill; 8];
                    bytes[position] = b;
                    let word = u64::from_le_bytes(bytes);
                    assert_eq!(needs_escape(word), naive(word), "{bytes:?}");
                }
            }
        }
        for _ in 0..100_000 {
            let word: u64 = rand::random();
            assert_eq!(needs_escape(word), naive(word), "{word:#x}");
        }
    }

    #[test]
    fn escapes_every_byte_as_serde_json_does() {
        // Every character up to U+00FF at every position of a string longer than two words.
        for c in (0u32..0x100).filter_map(char::from_u32) {
            for position in 0..20 {
                let mut s: String = "abcdefghijklmnopqrst".into();
                s.insert(position, c);
                let mut ours = Vec::new();
                write_str(&mut ours, &s);
                assert_eq!(ours, serde_json::to_vec(&s).unwrap(), "{s:?}");
            }
        }
        // Every single character from U+0000 to U+00FF, alone and between others.
        for c in (0u32..0x100).filter_map(char::from_u32) {
            for s in [c.to_string(), format!("a{c}b{c}")] {
                let mut ours = Vec::new();
                write_str(&mut ours, &s);
                assert_eq!(ours, serde_json::to_vec(&s).unwrap(), "{s:?}");
            }
        }
    }
}
