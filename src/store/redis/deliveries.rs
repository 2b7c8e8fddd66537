//! Deliveries on Redis: a hash of Delivery JSON by id, a sorted set of the pending ones by due
//! time (leases move them ahead, see [`scripts::TAKE_DUE_DELIVERIES`]), and a lexically
//! ordered log of every id for listings. Every instance's dispatcher takes from the same set.

use super::connection::RedisConn;
use async_trait::async_trait;

use super::keys::Keys;
use super::{decode, encode, scripts, unavailable};
use crate::store::deliveries::{id_floor, Delivery, DeliveryState, DeliveryStore};
use crate::store::StoreError;

/// The Redis delivery store.
pub struct RedisDeliveries {
    pub(super) conn: RedisConn,
    pub(super) keys: Keys,
}

/// Ids read per step of a sweep.
const SWEEP_BATCH: usize = 500;

impl RedisDeliveries {
    async fn records(&self, ids: &[String]) -> Result<Vec<Delivery>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let records: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
            .arg(self.keys.deliveries())
            .arg(ids)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        records.into_iter().flatten().map(|bytes| decode(&bytes)).collect()
    }
}

#[async_trait]
impl DeliveryStore for RedisDeliveries {
    async fn enqueue(&self, delivery: &Delivery) -> Result<(), StoreError> {
        redis::pipe()
            .atomic()
            .hset(self.keys.deliveries(), &delivery.id, encode(delivery))
            .ignore()
            .zadd(self.keys.delivery_due(), &delivery.id, delivery.next_ms)
            .ignore()
            .zadd(self.keys.delivery_log(), &delivery.id, 0)
            .ignore()
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(unavailable)
    }

    async fn take_due(&self, now_ms: u64, lease_ms: u64, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        let records: Vec<Vec<u8>> = scripts::TAKE_DUE_DELIVERIES
            .key(self.keys.delivery_due())
            .key(self.keys.deliveries())
            .arg(now_ms)
            .arg(lease_ms)
            .arg(limit)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        let mut taken: Vec<Delivery> = records.iter().map(|bytes| decode(bytes)).collect::<Result<_, _>>()?;
        taken.retain(|d| d.state == DeliveryState::Pending);
        for delivery in &mut taken {
            delivery.next_ms = now_ms + lease_ms;
        }
        Ok(taken)
    }

    async fn save(&self, delivery: &Delivery) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.atomic().hset(self.keys.deliveries(), &delivery.id, encode(delivery)).ignore();
        if delivery.state == DeliveryState::Pending {
            pipe.zadd(self.keys.delivery_due(), &delivery.id, delivery.next_ms).ignore();
        } else {
            pipe.zrem(self.keys.delivery_due(), &delivery.id).ignore();
        }
        pipe.query_async::<()>(&mut self.conn.clone()).await.map_err(unavailable)
    }

    async fn delivery(&self, id: &str) -> Result<Option<Delivery>, StoreError> {
        let record: Option<Vec<u8>> = redis::cmd("HGET")
            .arg(self.keys.deliveries())
            .arg(id)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        record.map(|bytes| decode(&bytes)).transpose()
    }

    async fn deliveries(&self, before: Option<&str>, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        let ids: Vec<String> = redis::cmd("ZREVRANGEBYLEX")
            .arg(self.keys.delivery_log())
            .arg(before.map_or("+".to_string(), |id| format!("({id}")))
            .arg("-")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        self.records(&ids).await
    }

    async fn sweep(&self, cutoff_ms: u64) -> Result<usize, StoreError> {
        let mut swept = 0;
        let mut after = "-".to_string();
        loop {
            let ids: Vec<String> = redis::cmd("ZRANGEBYLEX")
                .arg(self.keys.delivery_log())
                .arg(&after)
                .arg(format!("({}", id_floor(cutoff_ms)))
                .arg("LIMIT")
                .arg(0)
                .arg(SWEEP_BATCH)
                .query_async(&mut self.conn.clone())
                .await
                .map_err(unavailable)?;
            let Some(last) = ids.last() else { return Ok(swept) };
            after = format!("({last}");
            let records = self.records(&ids).await?;
            let known: std::collections::HashSet<&str> = records.iter().map(|d| d.id.as_str()).collect();
            let finished: Vec<&str> =
                records.iter().filter(|d| d.state != DeliveryState::Pending).map(|d| d.id.as_str()).collect();
            // Ids whose record is gone leave the log too.
            let mut gone: Vec<&str> = ids.iter().map(String::as_str).filter(|id| !known.contains(id)).collect();
            gone.extend(&finished);
            if !gone.is_empty() {
                redis::pipe()
                    .atomic()
                    .hdel(self.keys.deliveries(), &gone)
                    .ignore()
                    .zrem(self.keys.delivery_log(), &gone)
                    .ignore()
                    .query_async::<()>(&mut self.conn.clone())
                    .await
                    .map_err(unavailable)?;
            }
            swept += finished.len();
            if ids.len() < SWEEP_BATCH {
                return Ok(swept);
            }
        }
    }
}
