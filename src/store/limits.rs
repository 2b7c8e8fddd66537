//! Request counters for rate limits: fixed windows, counted in the backend so that instances
//! sharing Redis share the limits (one script per request for every limit it falls under), and
//! in process on the embedded backend.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::StoreError;

/// One counter to bump: `key` names the limit and the caller (scope and id); the window is the
/// fixed interval of `window_ms` that contains now.
#[derive(Debug, Clone)]
pub struct Hit {
    pub key: String,
    pub window_ms: u64,
}

/// Counts requests per key and window.
#[async_trait]
pub trait RateCounter: Send + Sync + 'static {
    /// Counts one request against each hit's current window (starting at `now_ms - now_ms %
    /// window_ms`); returns the count of each window including this request, in order.
    async fn hit(&self, hits: &[Hit], now_ms: u64) -> Result<Vec<u64>, StoreError>;
}

/// The start of the fixed window containing `now_ms`.
pub fn window_start(now_ms: u64, window_ms: u64) -> u64 {
    now_ms - now_ms % window_ms.max(1)
}

/// In-process counters (one instance).
#[derive(Default)]
pub struct LocalCounter {
    /// (key, window start) → (count, window end).
    windows: Mutex<HashMap<(String, u64), (u64, u64)>>,
}

/// Windows kept before expired ones are swept.
const SWEEP_ABOVE: usize = 10_000;

#[async_trait]
impl RateCounter for LocalCounter {
    async fn hit(&self, hits: &[Hit], now_ms: u64) -> Result<Vec<u64>, StoreError> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() > SWEEP_ABOVE {
            windows.retain(|_, (_, end)| *end > now_ms);
        }
        Ok(hits
            .iter()
            .map(|hit| {
                let start = window_start(now_ms, hit.window_ms);
                let entry = windows.entry((hit.key.clone(), start)).or_insert((0, start + hit.window_ms));
                entry.0 += 1;
                entry.0
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_per_key_and_window() {
        let counter = LocalCounter::default();
        let hits = [Hit { key: "ip:a".into(), window_ms: 1000 }, Hit { key: "app:x".into(), window_ms: 60_000 }];
        assert_eq!(counter.hit(&hits, 5_000).await.unwrap(), [1, 1]);
        assert_eq!(counter.hit(&hits, 5_999).await.unwrap(), [2, 2]);
        assert_eq!(counter.hit(&hits, 6_000).await.unwrap(), [1, 3], "a new 1 s window, the same minute");
        assert_eq!(counter.hit(&hits[..1], 6_001).await.unwrap(), [2]);
    }
}
