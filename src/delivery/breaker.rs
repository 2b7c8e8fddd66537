//! A circuit breaker per target (scheme, host and port): after a run of failed attempts the
//! target gets a rest, during which its deliveries wait without spending attempts; then one
//! trial attempt decides whether it is back (each failed trial doubles the rest, up to a
//! limit). Kept per instance: each instance learns a target's health from its own attempts.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Breaker settings.
#[derive(Debug, Clone, Copy)]
pub struct BreakerPolicy {
    /// Consecutive failures that open the breaker (0: it never opens).
    pub failures: u32,
    /// First rest; doubled after each failed trial.
    pub rest: Duration,
    pub max_rest: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        BreakerPolicy { failures: 5, rest: Duration::from_secs(30), max_rest: Duration::from_secs(600) }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Health {
    failures: u32,
    /// Open until then (ms); 0 when closed.
    open_until_ms: u64,
    rest_ms: u64,
    /// A trial attempt is out.
    trial: bool,
}

/// The breakers of every target this instance delivers to.
#[derive(Default)]
pub struct Breakers {
    policy: BreakerPolicy,
    targets: Mutex<HashMap<String, Health>>,
}

/// What the breaker says about an attempt now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    Go,
    /// Wait until then (ms) without attempting.
    WaitUntil(u64),
}

/// The breaker key of a URL: scheme, host and port.
pub fn target_of(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!("{}://{}:{}", u.scheme(), u.host_str().unwrap_or(""), u.port_or_known_default().unwrap_or(0)),
        Err(_) => url.to_string(),
    }
}

impl Breakers {
    pub fn new(policy: BreakerPolicy) -> Self {
        Breakers { policy, targets: Mutex::new(HashMap::new()) }
    }

    fn targets(&self) -> std::sync::MutexGuard<'_, HashMap<String, Health>> {
        self.targets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// May an attempt go to `target` now?
    pub fn permit(&self, target: &str, now_ms: u64) -> Permit {
        let mut targets = self.targets();
        let Some(health) = targets.get_mut(target) else { return Permit::Go };
        if health.open_until_ms == 0 {
            return Permit::Go;
        }
        if now_ms < health.open_until_ms || health.trial {
            // Resting, or a trial is out: others wait for its outcome.
            return Permit::WaitUntil(health.open_until_ms.max(now_ms + 1000));
        }
        health.trial = true;
        Permit::Go
    }

    /// Records an attempt's outcome.
    pub fn record(&self, target: &str, success: bool, now_ms: u64) {
        let mut targets = self.targets();
        if success {
            targets.remove(target);
            return;
        }
        let policy = self.policy;
        let health = targets.entry(target.to_string()).or_default();
        health.failures += 1;
        let tripped =
            health.trial || (policy.failures > 0 && health.open_until_ms == 0 && health.failures >= policy.failures);
        if tripped {
            health.rest_ms = match health.rest_ms {
                0 => policy.rest.as_millis() as u64,
                rest => (rest * 2).min(policy.max_rest.as_millis() as u64),
            };
            health.open_until_ms = now_ms + health.rest_ms;
            health.trial = false;
            tracing::warn!(target, rest_ms = health.rest_ms, "delivery target failing; resting it");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_failures_then_tries_once_and_closes_on_success() {
        let b = Breakers::new(BreakerPolicy {
            failures: 3,
            rest: Duration::from_secs(10),
            max_rest: Duration::from_secs(40),
        });
        let t = "http://x:80";
        for _ in 0..2 {
            b.record(t, false, 0);
            assert_eq!(b.permit(t, 0), Permit::Go);
        }
        b.record(t, false, 0);
        assert_eq!(b.permit(t, 5_000), Permit::WaitUntil(10_000));
        assert_eq!(b.permit(t, 10_000), Permit::Go, "the trial");
        assert!(matches!(b.permit(t, 10_001), Permit::WaitUntil(_)), "one trial at a time");
        b.record(t, false, 10_100);
        assert_eq!(b.permit(t, 20_000), Permit::WaitUntil(30_100), "a failed trial doubles the rest");
        assert_eq!(b.permit(t, 30_100), Permit::Go);
        b.record(t, true, 30_200);
        assert_eq!(b.permit(t, 30_201), Permit::Go, "closed again");
        assert_eq!(target_of("https://Example.com/a?b"), "https://example.com:443");
    }
}
