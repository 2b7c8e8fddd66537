//! Outgoing HTTP that must arrive: push notifications, webhook callbacks and capture-session
//! forwarding all go through one component. A delivery is stored first (so retries hours apart
//! survive restarts and any instance may make them), then attempted by a dispatcher:
//!
//! * signed with Standard Webhooks when its target has a secret ([`signing`]);
//! * sent only to public addresses unless private ones are allowed ([`ssrf`]);
//! * retried on a schedule with jitter (default 5 s, 5 min, 30 min, 2 h, 5 h), or when the
//!   target says (`Retry-After`); a 2xx ends it, a `410 Gone` fails it at once;
//! * held back while its target's circuit breaker rests it ([`breaker`]);
//! * with every attempt recorded (status, latency, error) for admins to list.

pub mod breaker;
pub mod signing;
pub mod ssrf;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore};

use crate::clock::now_ms;
use crate::protocol::{PushNotificationConfig, Task};
use crate::store::deliveries::{Attempt, Delivery, DeliveryKind, DeliveryState, DeliveryStore};
use crate::store::{CallbackTarget, StoreError};
use breaker::{target_of, BreakerPolicy, Breakers, Permit};

/// Settings of the delivery component.
#[derive(Debug, Clone)]
pub struct DeliveryOptions {
    /// Delays before the second, third... attempt; a delivery has one attempt more than this.
    pub schedule: Vec<Duration>,
    /// Deliver to private, loopback and link-local addresses too.
    pub allow_private_targets: bool,
    /// Longest wait for a target's answer.
    pub timeout: Duration,
    /// How long finished deliveries are kept for listing.
    pub retention: Duration,
    pub breaker: BreakerPolicy,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        DeliveryOptions {
            schedule: parse_schedule(DEFAULT_SCHEDULE).unwrap_or_default(),
            allow_private_targets: false,
            timeout: Duration::from_secs(10),
            retention: Duration::from_secs(7 * 86_400),
            breaker: BreakerPolicy::default(),
        }
    }
}

/// The default retry schedule.
pub const DEFAULT_SCHEDULE: &str = "5s,5m,30m,2h,5h";

/// A schedule from comma-separated durations (`5s,5m,30m`); empty means a single attempt.
pub fn parse_schedule(text: &str) -> Result<Vec<Duration>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| crate::config::parse_duration(d).map_err(|e| format!("retry schedule: {e}")))
        .collect()
}

/// A request to deliver.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub kind: DeliveryKind,
    /// What it belongs to (a task id, a capture session id).
    pub source: String,
    pub url: String,
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Standard Webhooks secret; the delivery is signed when present.
    pub secret: Option<String>,
}

/// Deliveries due at once taken per dispatcher round.
const TAKE_BATCH: usize = 64;
/// Attempts in flight at once on this instance.
const MAX_IN_FLIGHT: usize = 64;
/// How often the dispatcher looks for due deliveries when nothing wakes it.
const POLL_EVERY: Duration = Duration::from_millis(250);
/// Longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(86_400);
/// Largest part of a target's answer kept in an attempt's error.
const ERROR_BODY_CHARS: usize = 200;

struct Inner {
    store: Arc<dyn DeliveryStore>,
    client: reqwest::Client,
    options: DeliveryOptions,
    breakers: Breakers,
    wake: Notify,
    in_flight: Arc<Semaphore>,
}

/// The delivery component (cheap to clone).
#[derive(Clone)]
pub struct Deliveries(Arc<Inner>);

impl Deliveries {
    pub fn new(store: Arc<dyn DeliveryStore>, options: DeliveryOptions) -> Self {
        let client = reqwest::Client::builder()
            .timeout(options.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(ssrf::GuardedResolver { allow_private: options.allow_private_targets }))
            .user_agent(concat!("switchyard/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Deliveries(Arc::new(Inner {
            store,
            client,
            breakers: Breakers::new(options.breaker),
            options,
            wake: Notify::new(),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        }))
    }

    /// Checks that a URL may be a target (scheme, host, SSRF guard); the message says why not.
    pub async fn check_target(&self, url: &str) -> Result<(), String> {
        ssrf::check_target(url, self.0.options.allow_private_targets).await.map(drop)
    }

    /// Stores a delivery and has it attempted at once.
    pub async fn submit(&self, outgoing: Outgoing) -> Result<Delivery, StoreError> {
        let now = now_ms();
        let delivery = Delivery {
            id: uuid::Uuid::now_v7().to_string(),
            kind: outgoing.kind,
            source: outgoing.source,
            url: outgoing.url,
            method: outgoing.method,
            headers: outgoing.headers,
            body: outgoing.body,
            secret: outgoing.secret,
            state: DeliveryState::Pending,
            created_ms: now,
            next_ms: now,
            attempts: Vec::new(),
        };
        self.0.store.enqueue(&delivery).await?;
        self.0.wake.notify_one();
        Ok(delivery)
    }

    /// Submits in the background (the caller never waits); a failure to store is logged.
    pub fn submit_later(&self, outgoing: Outgoing) {
        let this = self.clone();
        tokio::spawn(async move {
            let (kind, url) = (outgoing.kind, outgoing.url.clone());
            if let Err(e) = this.submit(outgoing).await {
                tracing::error!(?kind, url, error = %e, "cannot store a delivery");
            }
        });
    }

    /// POSTs a task to each push config, with the config's token and authentication.
    pub fn push(&self, task: &Task, configs: &[PushNotificationConfig]) {
        let Ok(body) = serde_json::to_vec(task) else { return };
        for config in configs {
            let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
            if let Some(token) = &config.token {
                headers.push(("x-a2a-notification-token".into(), token.clone()));
            }
            if let Some(credentials) = config.authentication.as_ref().and_then(|a| a.credentials.as_ref()) {
                // The first scheme the receiver asked for, e.g. "Bearer" or "Basic".
                let auth = config.authentication.as_ref();
                let scheme = auth.and_then(|a| a.schemes.first()).map_or("Bearer", String::as_str);
                headers.push(("authorization".into(), format!("{scheme} {credentials}")));
            }
            self.submit_later(Outgoing {
                kind: DeliveryKind::Push,
                source: task.id.clone(),
                url: config.url.clone(),
                method: "POST".into(),
                headers,
                body: body.clone(),
                secret: None,
            });
        }
    }

    /// POSTs a task whose turn ended to a webhook trigger's callback, signed when it has a
    /// secret.
    pub fn callback(&self, task: &Task, target: &CallbackTarget) {
        let Ok(body) = serde_json::to_vec(task) else { return };
        self.submit_later(Outgoing {
            kind: DeliveryKind::Callback,
            source: task.id.clone(),
            url: target.url.clone(),
            method: "POST".into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body,
            secret: target.secret.clone(),
        });
    }

    /// One delivery with its attempts.
    pub async fn delivery(&self, id: &str) -> Result<Option<Delivery>, StoreError> {
        self.0.store.delivery(id).await
    }

    /// Up to `limit` deliveries matching `keep`, newest first, created before `before`; and
    /// the id to continue from when there may be more.
    pub async fn deliveries(
        &self,
        keep: impl Fn(&Delivery) -> bool,
        before: Option<String>,
        limit: usize,
    ) -> Result<(Vec<Delivery>, Option<String>), StoreError> {
        const CHUNK: usize = 200;
        const SCAN_BUDGET: usize = 10_000;
        let mut out = Vec::with_capacity(limit);
        let mut before = before;
        let mut scanned = 0;
        loop {
            let chunk = self.0.store.deliveries(before.as_deref(), CHUNK).await?;
            let exhausted = chunk.len() < CHUNK;
            for delivery in chunk {
                before = Some(delivery.id.clone());
                scanned += 1;
                if !keep(&delivery) {
                    continue;
                }
                if out.len() == limit {
                    let next = out.last().map(|d: &Delivery| d.id.clone());
                    return Ok((out, next));
                }
                out.push(delivery);
            }
            if exhausted {
                return Ok((out, None));
            }
            if scanned >= SCAN_BUDGET {
                return Ok((out, before));
            }
        }
    }

    /// Starts the dispatcher and the sweeper of old records.
    pub fn start(&self) {
        let this = self.clone();
        tokio::spawn(async move { this.dispatch().await });
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(3600));
            loop {
                tick.tick().await;
                let cutoff = now_ms().saturating_sub(this.0.options.retention.as_millis() as u64);
                match this.0.store.sweep(cutoff).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(forgotten = n, "forgot old deliveries"),
                    Err(e) => tracing::warn!(error = %e, "delivery sweep failed"),
                }
            }
        });
    }

    /// Takes due deliveries and attempts each on its own task, a bounded number at once.
    async fn dispatch(&self) {
        let lease_ms = (self.0.options.timeout.as_millis() as u64) * 3 + 5_000;
        loop {
            let permits = self.0.in_flight.available_permits().min(TAKE_BATCH);
            let taken = match permits {
                0 => Vec::new(),
                n => match self.0.store.take_due(now_ms(), lease_ms, n).await {
                    Ok(taken) => taken,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read due deliveries");
                        Vec::new()
                    }
                },
            };
            let full_batch = taken.len() == permits && permits > 0;
            for delivery in taken {
                let Ok(permit) = self.0.in_flight.clone().acquire_owned().await else { return };
                let this = self.clone();
                tokio::spawn(async move {
                    this.attempt(delivery).await;
                    drop(permit);
                });
            }
            if !full_batch {
                let _ = tokio::time::timeout(POLL_EVERY, self.0.wake.notified()).await;
            }
        }
    }

    /// One attempt, recorded; the delivery ends, or is due again later.
    async fn attempt(&self, mut delivery: Delivery) {
        let target = target_of(&delivery.url);
        let started_ms = now_ms();
        if let Permit::WaitUntil(at) = self.0.breakers.permit(&target, started_ms) {
            delivery.next_ms = at;
            self.save(&delivery).await;
            return;
        }
        let started = Instant::now();
        let outcome = self.send(&delivery).await;
        let latency_ms = started.elapsed().as_millis() as u64;
        let (status, error, retry_after, permanent) = match outcome {
            Ok((status, _, _)) if (200..300).contains(&status) => (Some(status), None, None, false),
            Ok((status, retry_after, excerpt)) => {
                (Some(status), Some(format!("answered {status}: {excerpt}")), retry_after, status == 410)
            }
            Err(SendError { message, permanent }) => (None, Some(message), None, permanent),
        };
        let delivered = error.is_none();
        // A refused target (SSRF guard, bad URL) says nothing about the target's health.
        if !permanent || status.is_some() {
            self.0.breakers.record(&target, delivered, now_ms());
        }
        delivery.attempts.push(Attempt { at_ms: started_ms, status, latency_ms, error: error.clone() });
        let attempts = delivery.attempts.len();
        let schedule = &self.0.options.schedule;
        delivery.state = if delivered {
            DeliveryState::Delivered
        } else if permanent || attempts > schedule.len() {
            DeliveryState::Failed
        } else {
            let planned = jitter(schedule[attempts - 1]);
            let delay = retry_after.map_or(planned, |wait| wait.min(MAX_RETRY_AFTER));
            delivery.next_ms = now_ms() + delay.as_millis() as u64;
            DeliveryState::Pending
        };
        match delivery.state {
            DeliveryState::Pending => tracing::info!(
                id = delivery.id,
                url = delivery.url,
                attempt = attempts,
                error = error.as_deref().unwrap_or(""),
                "delivery attempt failed; retrying"
            ),
            DeliveryState::Failed => tracing::warn!(
                id = delivery.id,
                url = delivery.url,
                attempts,
                error = error.as_deref().unwrap_or(""),
                "delivery given up"
            ),
            DeliveryState::Delivered => {}
        }
        if delivery.state != DeliveryState::Pending {
            crate::observability::delivery_finished(delivery.kind, delivered, attempts);
        }
        self.save(&delivery).await;
    }

    async fn save(&self, delivery: &Delivery) {
        if let Err(e) = self.0.store.save(delivery).await {
            // The lease runs out and the delivery is attempted again.
            tracing::warn!(id = delivery.id, error = %e, "cannot record a delivery attempt");
        }
    }

    /// Sends the request; returns the status, a `Retry-After` and the start of the answer.
    async fn send(&self, delivery: &Delivery) -> Result<(u16, Option<Duration>, String), SendError> {
        // No DNS here: names are checked by the client's resolver, on the address it connects to.
        let url = ssrf::check_url(&delivery.url, self.0.options.allow_private_targets)
            .map_err(|message| SendError { message, permanent: true })?;
        let method = reqwest::Method::from_bytes(delivery.method.as_bytes())
            .map_err(|_| SendError { message: format!("invalid method {}", delivery.method), permanent: true })?;
        let mut request = self.0.client.request(method, url).body(delivery.body.clone());
        for (name, value) in &delivery.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        if let Some(secret) = &delivery.secret {
            let timestamp = now_ms() / 1000;
            for (name, value) in signing::headers(secret, &format!("msg_{}", delivery.id), timestamp, &delivery.body) {
                request = request.header(name, value);
            }
        }
        let response = request.send().await.map_err(|e| match refused_by_guard(&e) {
            Some(refused) => SendError { message: refused.0.clone(), permanent: true },
            None => SendError { message: describe(&e), permanent: false },
        })?;
        let status = response.status().as_u16();
        let retry_after = match status {
            429 | 503 => {
                response.headers().get(reqwest::header::RETRY_AFTER).and_then(|v| parse_retry_after(v.to_str().ok()?))
            }
            _ => None,
        };
        let excerpt = match (200..300).contains(&status) {
            true => String::new(),
            false => response.text().await.unwrap_or_default().chars().take(ERROR_BODY_CHARS).collect(),
        };
        Ok((status, retry_after, excerpt))
    }
}

struct SendError {
    message: String,
    /// Retrying cannot help (the target is refused or malformed).
    permanent: bool,
}

/// A transport error with its cause (reqwest's top-level message alone is vague).
fn describe(e: &reqwest::Error) -> String {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// The SSRF guard's refusal, if that is why a request could not be sent.
fn refused_by_guard(e: &reqwest::Error) -> Option<&ssrf::Refused> {
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<ssrf::Refused>() {
            return Some(refused);
        }
        source = cause.source();
    }
    None
}

/// ±20% around the planned delay.
fn jitter(delay: Duration) -> Duration {
    delay.mul_f64(0.8 + 0.4 * rand::random::<f64>())
}

/// `Retry-After` in seconds, or as an HTTP date.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822).ok()?;
    let wait = at - time::OffsetDateTime::now_utc();
    Some(Duration::from_secs(wait.whole_seconds().max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_and_retry_after_parse() {
        assert_eq!(
            parse_schedule(DEFAULT_SCHEDULE).unwrap(),
            [5, 300, 1800, 7200, 18000].map(Duration::from_secs).to_vec()
        );
        assert_eq!(parse_schedule("100ms, 1s").unwrap(), [Duration::from_millis(100), Duration::from_secs(1)]);
        assert!(parse_schedule("").unwrap().is_empty());
        assert!(parse_schedule("5s,soon").is_err());
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO), "a past date: now");
        assert_eq!(parse_retry_after("later"), None);
        for _ in 0..100 {
            let d = jitter(Duration::from_secs(10));
            assert!(d >= Duration::from_secs(8) && d <= Duration::from_secs(12), "{d:?}");
        }
    }
}
