//! Capture sessions in the backend: a session's settings, its request counter and its recorded
//! requests, numbered 1, 2, 3... in the order they were recorded. Recording is one atomic step
//! (check the session is live and not full, count, store, announce), so a full or expired
//! session records nothing and the numbers have no gaps.
//!
//! Both backends announce each recorded request to live followers on every instance
//! ([`LiveCaptures`] on this one).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::StoreError;

/// What a capture session answers to the requests it records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureResponse {
    pub status_code: u16,
    pub content_type: String,
    pub body: String,
}

impl Default for CaptureResponse {
    fn default() -> Self {
        CaptureResponse { status_code: 200, content_type: "application/json".into(), body: r#"{"ok":true}"#.into() }
    }
}

/// A capture session's settings and counter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureSession {
    pub id: String,
    pub created_ms: u64,
    /// When it stops recording; `None` once claimed by an app.
    pub expires_ms: Option<u64>,
    /// Most requests it records; `None` once claimed by an app.
    pub request_limit: Option<u64>,
    /// Requests recorded so far (the number of the newest).
    #[serde(default)]
    pub request_count: u64,
    #[serde(default)]
    pub response: CaptureResponse,
    /// Where each recorded request is relayed.
    #[serde(default)]
    pub forward_url: Option<String>,
    /// The Standard Webhooks secret relayed requests are signed with (kept when forwarding is
    /// turned off, so turning it on again keeps the receiver's secret).
    #[serde(default)]
    pub forward_secret: Option<String>,
    /// The app that claimed it.
    #[serde(default)]
    pub app: Option<String>,
}

impl CaptureSession {
    /// Expired at `now_ms` (a claimed session never expires).
    pub fn expired(&self, now_ms: u64) -> bool {
        self.expires_ms.is_some_and(|at| at <= now_ms)
    }

    /// Has recorded as many requests as it may.
    pub fn full(&self) -> bool {
        self.request_limit.is_some_and(|limit| self.request_count >= limit)
    }
}

/// One request as it arrived, before the session numbers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapturedRequest {
    pub id: String,
    pub method: String,
    pub path: String,
    pub query: String,
    /// Header names in lower case; repeated headers joined with `, `.
    pub headers: BTreeMap<String, String>,
    /// The body as text when it is UTF-8, else base64 (see `body_encoding`).
    pub body: String,
    /// `utf8` or `base64`.
    pub body_encoding: String,
    /// Body size in bytes.
    pub size: u64,
    pub source_ip: String,
    pub received_ms: u64,
    /// Time taken to receive the body, in microseconds.
    pub duration_us: u64,
}

/// A recorded request: its number in the session and the status the session answered.
/// `seq` and `status` come first in the encoding (the Redis backend writes them in front of the
/// encoded request).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapturedEvent {
    pub seq: u64,
    pub status: u16,
    #[serde(flatten)]
    pub request: CapturedRequest,
}

/// The outcome of recording a request.
#[derive(Debug, Clone)]
pub enum Recording {
    /// Recorded as `event`; the session as it answered (its counter includes this request).
    Recorded {
        event: Arc<CapturedEvent>,
        session: CaptureSession,
    },
    Missing,
    /// The session expired (at this ms) and records nothing.
    Expired(u64),
    /// The session reached its request limit.
    Full(u64),
}

/// A change to a session's settings.
#[derive(Debug, Clone)]
pub enum CaptureUpdate {
    Response(CaptureResponse),
    /// Relay to `url` (or stop), signing with `secret`.
    Forwarding {
        url: Option<String>,
        secret: String,
    },
    /// Attach to an app: no expiry and no request limit any more.
    Claim(String),
}

/// The outcome of an update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Updated {
    Done(CaptureSession),
    Missing,
    Expired(u64),
    /// A claim of a session another app claimed first.
    ClaimedByOther(String),
}

/// How long an expired session still answers `410 Gone` before it is forgotten (`404`): its
/// requests are purged when it expires, its record after this grace.
pub fn expired_grace_ms(ttl_ms: u64) -> u64 {
    ttl_ms.clamp(1_000, 86_400_000)
}

/// Capture sessions and their recorded requests.
#[async_trait]
pub trait CaptureStore: Send + Sync + 'static {
    /// Stores a new session (its id is fresh and random).
    async fn create(&self, session: &CaptureSession, grace_ms: u64) -> Result<(), StoreError>;
    /// A session with its current counter.
    async fn session(&self, id: &str) -> Result<Option<CaptureSession>, StoreError>;
    /// Records a request atomically, unless the session is missing, expired or full; the event
    /// carries the status the session answers with.
    async fn record(&self, id: &str, request: CapturedRequest, now_ms: u64) -> Result<Recording, StoreError>;
    /// Up to `limit` events numbered below `before`, newest first.
    async fn events_before(&self, id: &str, before: u64, limit: usize) -> Result<Vec<CapturedEvent>, StoreError>;
    /// Up to `limit` events numbered above `after`, oldest first.
    async fn events_after(&self, id: &str, after: u64, limit: usize) -> Result<Vec<CapturedEvent>, StoreError>;
    /// Changes a session's settings (an expired session cannot change).
    async fn update(&self, id: &str, update: CaptureUpdate, now_ms: u64) -> Result<Updated, StoreError>;
    /// Removes a session and its events; false when there was none.
    async fn delete(&self, id: &str) -> Result<bool, StoreError>;
    /// Purges the events of expired sessions and forgets sessions whose grace ended; returns how
    /// many sessions it purged (Redis expires its keys by itself and returns 0).
    async fn sweep(&self, now_ms: u64) -> Result<usize, StoreError>;
    /// Follows the requests a session records from now on, on any instance.
    async fn follow(&self, id: &str) -> Result<broadcast::Receiver<Arc<CapturedEvent>>, StoreError>;
}

/// Events a slow live follower may fall behind before it re-reads the store.
const LIVE_CAPACITY: usize = 256;

/// In-process fan-out of recorded requests, one channel per followed session.
#[derive(Default)]
pub struct LiveCaptures {
    channels: Mutex<HashMap<String, broadcast::Sender<Arc<CapturedEvent>>>>,
}

impl LiveCaptures {
    fn channels(&self) -> std::sync::MutexGuard<'_, HashMap<String, broadcast::Sender<Arc<CapturedEvent>>>> {
        self.channels.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn subscribe(&self, id: &str) -> broadcast::Receiver<Arc<CapturedEvent>> {
        self.channels().entry(id.to_string()).or_insert_with(|| broadcast::channel(LIVE_CAPACITY).0).subscribe()
    }

    /// Sends an event to the session's followers; returns whether anyone follows it. A channel
    /// whose followers all left is dropped.
    pub fn publish(&self, id: &str, event: Arc<CapturedEvent>) -> bool {
        let mut channels = self.channels();
        let Some(sender) = channels.get(id) else { return false };
        if sender.receiver_count() == 0 {
            channels.remove(id);
            return false;
        }
        let _ = sender.send(event);
        true
    }

    pub fn is_followed(&self, id: &str) -> bool {
        self.channels().get(id).is_some_and(|s| s.receiver_count() > 0)
    }

    /// Ends every follower of a session (it was deleted).
    pub fn close(&self, id: &str) {
        self.channels().remove(id);
    }

    /// Ends every follower (the feed was interrupted; they re-read the store).
    pub fn close_all(&self) {
        self.channels().clear();
    }
}

/// Capture session ids are 128-bit random, as 32 lower-case hex digits.
pub fn new_session_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Whether `id` has the shape of a session id (anything else cannot name one).
pub fn is_session_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_recognised_by_shape() {
        let id = new_session_id();
        assert!(is_session_id(&id), "{id}");
        assert_ne!(id, new_session_id());
        for bad in ["", "abc", &id.to_uppercase(), &format!("{id}0"), "g0000000000000000000000000000000"] {
            assert!(!is_session_id(bad), "{bad}");
        }
    }

    #[test]
    fn event_encoding_starts_with_seq_and_status() {
        let event = CapturedEvent {
            seq: 7,
            status: 201,
            request: CapturedRequest {
                id: "evt_1".into(),
                method: "POST".into(),
                path: "/v1/ingest/x".into(),
                query: String::new(),
                headers: BTreeMap::new(),
                body: "{}".into(),
                body_encoding: "utf8".into(),
                size: 2,
                source_ip: "127.0.0.1".into(),
                received_ms: 1,
                duration_us: 3,
            },
        };
        let json = serde_json::to_string(&event).unwrap();
        assert!(json.starts_with(r#"{"seq":7,"status":201,"id":"evt_1""#), "{json}");
        assert_eq!(serde_json::from_str::<CapturedEvent>(&json).unwrap(), event);
    }
}
