//! Outgoing deliveries in the backend: each delivery (one HTTP request that must arrive) is
//! stored with its attempts and its next due time, so retries hours apart survive restarts and
//! any instance may make the next attempt.
//!
//! Taking due deliveries leases them: their due time moves a lease ahead in the same atomic
//! step, so exactly one dispatcher (on any instance) gets each, and one that died mid-attempt
//! hands its deliveries on when the lease runs out (at-least-once).

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::StoreError;

/// What a delivery carries out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryKind {
    /// An A2A push notification (a task's status).
    Push,
    /// A webhook trigger's callback with the finished task.
    Callback,
    /// A request a capture session relays.
    Forward,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for its next attempt.
    Pending,
    Delivered,
    /// Every attempt failed, or the target can never accept it.
    Failed,
}

/// One attempt to deliver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub at_ms: u64,
    /// The HTTP status the target answered, if it answered.
    pub status: Option<u16>,
    pub latency_ms: u64,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

/// An HTTP request to deliver, with its history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Time-ordered (UUID v7), so listings by id are listings by creation.
    pub id: String,
    pub kind: DeliveryKind,
    /// What it belongs to: a task id, or a capture session id.
    pub source: String,
    pub url: String,
    pub method: String,
    pub headers: Vec<(String, String)>,
    #[serde(with = "base64_bytes")]
    pub body: Vec<u8>,
    /// Standard Webhooks signing secret (`whsec_...`); unsigned when absent.
    #[serde(default)]
    pub secret: Option<String>,
    pub state: DeliveryState,
    pub created_ms: u64,
    /// When the next attempt is due (while pending).
    pub next_ms: u64,
    #[serde(default)]
    pub attempts: Vec<Attempt>,
}

mod base64_bytes {
    use super::*;

    pub fn serialize<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

/// Durable deliveries.
#[async_trait]
pub trait DeliveryStore: Send + Sync + 'static {
    /// Stores a new pending delivery, due at its `next_ms`.
    async fn enqueue(&self, delivery: &Delivery) -> Result<(), StoreError>;
    /// Up to `limit` pending deliveries due by `now_ms`, each leased until `now_ms + lease_ms`.
    async fn take_due(&self, now_ms: u64, lease_ms: u64, limit: usize) -> Result<Vec<Delivery>, StoreError>;
    /// Writes a delivery after an attempt: pending ones are due again at their `next_ms`.
    async fn save(&self, delivery: &Delivery) -> Result<(), StoreError>;
    /// One delivery.
    async fn delivery(&self, id: &str) -> Result<Option<Delivery>, StoreError>;
    /// Up to `limit` deliveries created before the one with id `before`, newest first.
    async fn deliveries(&self, before: Option<&str>, limit: usize) -> Result<Vec<Delivery>, StoreError>;
    /// Forgets finished deliveries created before `cutoff_ms`; returns how many.
    /// Delivery ids are UUID v7, so [`id_floor`] of the cutoff bounds them.
    async fn sweep(&self, cutoff_ms: u64) -> Result<usize, StoreError>;
}

/// The smallest UUID v7 string of a millisecond: ids below it were created earlier.
pub fn id_floor(ms: u64) -> String {
    let hex = format!("{:012x}", ms & 0xffff_ffff_ffff);
    format!("{}-{}", &hex[..8], &hex[8..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_floor_orders_like_uuid_v7_ids() {
        let now = crate::clock::now_ms();
        let id = uuid::Uuid::now_v7().to_string();
        assert!(id_floor(now.saturating_sub(1000)).as_str() < id.as_str(), "{id}");
        assert!(id_floor(now + 1000).as_str() > id.as_str(), "{id}");
    }
}
