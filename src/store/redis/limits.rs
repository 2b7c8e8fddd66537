//! Rate-limit counters on Redis, shared by every instance: one key per limit, caller and
//! window, bumped by one script per request.

use super::connection::RedisConn;
use async_trait::async_trait;

use super::keys::Keys;
use super::{scripts, unavailable};
use crate::store::limits::{window_start, Hit, RateCounter};
use crate::store::StoreError;

/// The Redis rate counter.
pub struct RedisCounter {
    pub(super) conn: RedisConn,
    pub(super) keys: Keys,
}

#[async_trait]
impl RateCounter for RedisCounter {
    async fn hit(&self, hits: &[Hit], now_ms: u64) -> Result<Vec<u64>, StoreError> {
        let mut invocation = scripts::RATE_HIT.prepare_invoke();
        for hit in hits {
            invocation.key(self.keys.rate(&hit.key, window_start(now_ms, hit.window_ms)));
            invocation.arg(hit.window_ms);
        }
        invocation.invoke_async(&mut self.conn.clone()).await.map_err(unavailable)
    }
}
