//! Capture sessions: throwaway URLs that record every request sent to them, for people who build
//! agents and need to see exactly what a service sends. Anyone may create one (a few per client
//! address per hour); it records up to a request limit until it expires, answers with a
//! response its owner chooses, and can be read page by page with filters, exported, followed
//! live, or claimed by an app, which keeps it for good.
//!
//! This module holds the rules (limits, expiry, access, filters, paging); the backend's
//! [`CaptureStore`] holds the data.

pub mod events;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;

use crate::auth::Caller;
use crate::clock::now_ms;
use crate::delivery::{signing, Deliveries, Outgoing};
use crate::store::capture::{
    expired_grace_ms, is_session_id, new_session_id, CaptureResponse, CaptureSession, CaptureStore, CaptureUpdate,
    CapturedEvent, CapturedRequest, Recording, Updated,
};
use crate::store::deliveries::DeliveryKind;
use crate::store::limits::{window_start, Hit, RateCounter};
use crate::store::StoreError;

pub use events::{EventFilter, EventPage};

/// Limits of capture sessions.
#[derive(Debug, Clone)]
pub struct CaptureOptions {
    /// How long a session records.
    pub ttl: Duration,
    /// Most requests one session records (0: no limit).
    pub request_limit: u64,
    /// Sessions one client address may create per hour (0: no limit).
    pub sessions_per_ip_per_hour: u64,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        CaptureOptions { ttl: Duration::from_secs(14 * 86_400), request_limit: 2000, sessions_per_ip_per_hour: 10 }
    }
}

/// Largest custom response body.
pub const MAX_RESPONSE_BODY: usize = 4096;

/// A change to what a session answers; fields left out keep their value.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponsePatch {
    pub status_code: Option<u16>,
    pub content_type: Option<String>,
    pub body: Option<String>,
}

impl ResponsePatch {
    fn check(&self) -> Result<(), CaptureError> {
        let bad = |m: String| Err(CaptureError::Invalid(m));
        if let Some(code) = self.status_code.filter(|c| !(200..=599).contains(c)) {
            return bad(format!("status_code: must be between 200 and 599, got {code}"));
        }
        if let Some(ct) = &self.content_type {
            if ct.trim().is_empty() || ct.len() > 255 || axum::http::HeaderValue::from_str(ct).is_err() {
                return bad(format!("content_type: not a valid header value: {ct:?}"));
            }
        }
        if let Some(text) = self.body.as_ref().filter(|b| b.len() > MAX_RESPONSE_BODY) {
            return bad(format!("body: at most {MAX_RESPONSE_BODY} bytes, got {}", text.len()));
        }
        Ok(())
    }
}

/// Why a capture operation did not happen; each maps to one HTTP status.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CaptureError {
    #[error("capture session {0} not found")]
    NotFound(String),
    #[error("capture session {id} expired at {}", crate::clock::ms_to_rfc3339(*.expired_ms))]
    Expired { id: String, expired_ms: u64 },
    #[error("capture session {id} reached its limit of {limit} requests")]
    Full { id: String, limit: u64 },
    #[error("at most {limit} capture sessions per client address per hour; try again in {retry_after_s} s")]
    TooManySessions { limit: u64, retry_after_s: u64 },
    #[error("{0}")]
    Invalid(String),
    /// No credentials, where an app's token is needed.
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
}

impl From<StoreError> for CaptureError {
    fn from(e: StoreError) -> Self {
        CaptureError::Unavailable(e.to_string())
    }
}

/// The capture service.
#[derive(Clone)]
pub struct Capture {
    store: Arc<dyn CaptureStore>,
    limits: Arc<dyn RateCounter>,
    deliveries: Deliveries,
    options: Arc<CaptureOptions>,
}

const HOUR_MS: u64 = 3_600_000;

impl Capture {
    pub fn new(
        store: Arc<dyn CaptureStore>,
        limits: Arc<dyn RateCounter>,
        deliveries: Deliveries,
        options: CaptureOptions,
    ) -> Self {
        Capture { store, limits, deliveries, options: Arc::new(options) }
    }

    fn ttl_ms(&self) -> u64 {
        self.options.ttl.as_millis() as u64
    }

    /// A new session for a client at `ip`, unless that address created its quota this hour.
    pub async fn create(&self, ip: IpAddr) -> Result<CaptureSession, CaptureError> {
        let now = now_ms();
        let quota = self.options.sessions_per_ip_per_hour;
        if quota > 0 {
            let hit = Hit { key: format!("capture-sessions:{ip}"), window_ms: HOUR_MS };
            let counts = self.limits.hit(std::slice::from_ref(&hit), now).await?;
            if counts.first().is_some_and(|count| *count > quota) {
                let window_end = window_start(now, HOUR_MS) + HOUR_MS;
                return Err(CaptureError::TooManySessions {
                    limit: quota,
                    retry_after_s: (window_end - now).div_ceil(1000).max(1),
                });
            }
        }
        let session = CaptureSession {
            id: new_session_id(),
            created_ms: now,
            expires_ms: Some(now + self.ttl_ms()),
            request_limit: Some(self.options.request_limit).filter(|n| *n > 0),
            request_count: 0,
            response: CaptureResponse::default(),
            forward_url: None,
            forward_secret: None,
            app: None,
        };
        self.store.create(&session, expired_grace_ms(self.ttl_ms())).await?;
        Ok(session)
    }

    /// Records a request sent to a session; returns the event and the session as it answers.
    pub async fn ingest(
        &self,
        id: &str,
        request: CapturedRequest,
    ) -> Result<(Arc<CapturedEvent>, CaptureSession), CaptureError> {
        if !is_session_id(id) {
            return Err(CaptureError::NotFound(id.to_string()));
        }
        let received_ms = request.received_ms;
        match self.store.record(id, request, received_ms).await? {
            Recording::Recorded { event, session } => {
                if let Some(url) = &session.forward_url {
                    self.deliveries.submit_later(relay(&session, url, &event));
                }
                Ok((event, session))
            }
            Recording::Missing => Err(CaptureError::NotFound(id.to_string())),
            Recording::Expired(expired_ms) => Err(CaptureError::Expired { id: id.to_string(), expired_ms }),
            Recording::Full(limit) => Err(CaptureError::Full { id: id.to_string(), limit }),
        }
    }

    /// A live session `caller` may manage: anyone with the id, unless an app claimed it; then
    /// only that app's tokens and the admin secret.
    pub async fn session(&self, id: &str, caller: &Caller) -> Result<CaptureSession, CaptureError> {
        if !is_session_id(id) {
            return Err(CaptureError::NotFound(id.to_string()));
        }
        let session = self.store.session(id).await?.ok_or_else(|| CaptureError::NotFound(id.to_string()))?;
        if let Some(expired_ms) = session.expires_ms.filter(|_| session.expired(now_ms())) {
            return Err(CaptureError::Expired { id: id.to_string(), expired_ms });
        }
        check_owner(&session, caller)?;
        Ok(session)
    }

    /// One page of a session's events, newest first.
    pub async fn events(
        &self,
        session: &CaptureSession,
        filter: &EventFilter,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<EventPage, CaptureError> {
        Ok(events::page(self.store.as_ref(), &session.id, filter, cursor, limit).await?)
    }

    /// Changes what the session answers: the fields the patch sets.
    pub async fn set_response(
        &self,
        id: &str,
        caller: &Caller,
        patch: ResponsePatch,
    ) -> Result<CaptureSession, CaptureError> {
        patch.check()?;
        let current = self.session(id, caller).await?.response;
        let response = CaptureResponse {
            status_code: patch.status_code.unwrap_or(current.status_code),
            content_type: patch.content_type.unwrap_or(current.content_type),
            body: patch.body.unwrap_or(current.body),
        };
        self.update(id, CaptureUpdate::Response(response)).await
    }

    /// Relays every request recorded from now on to `url` (signed with the session's secret),
    /// or stops relaying (`None`).
    pub async fn set_forwarding(
        &self,
        id: &str,
        caller: &Caller,
        url: Option<String>,
    ) -> Result<CaptureSession, CaptureError> {
        let session = self.session(id, caller).await?;
        if let Some(url) = &url {
            self.deliveries.check_target(url).await.map_err(|e| CaptureError::Invalid(format!("url: {e}")))?;
        }
        let secret = session.forward_secret.unwrap_or_else(signing::new_secret);
        self.update(id, CaptureUpdate::Forwarding { url, secret }).await
    }

    /// Attaches the session to the caller's app for good.
    pub async fn claim(&self, id: &str, caller: &Caller) -> Result<CaptureSession, CaptureError> {
        let Caller::App { app, .. } = caller else {
            return Err(CaptureError::Unauthenticated("claiming a capture session needs an app token".into()));
        };
        self.session(id, caller).await?;
        self.update(id, CaptureUpdate::Claim(app.clone())).await
    }

    async fn update(&self, id: &str, update: CaptureUpdate) -> Result<CaptureSession, CaptureError> {
        match self.store.update(id, update, now_ms()).await? {
            Updated::Done(session) => Ok(session),
            Updated::Missing => Err(CaptureError::NotFound(id.to_string())),
            Updated::Expired(expired_ms) => Err(CaptureError::Expired { id: id.to_string(), expired_ms }),
            Updated::ClaimedByOther(_) => {
                Err(CaptureError::Conflict(format!("capture session {id} was claimed by another app")))
            }
        }
    }

    /// Removes a session and its events. Idempotent: a session that is already gone (or never
    /// was) is not an error; one claimed by another app is.
    pub async fn delete(&self, id: &str, caller: &Caller) -> Result<(), CaptureError> {
        if !is_session_id(id) {
            return Ok(());
        }
        if let Some(session) = self.store.session(id).await? {
            check_owner(&session, caller)?;
            self.store.delete(id).await?;
        }
        Ok(())
    }

    /// Every event of a session recorded before the export began, oldest first, in pages.
    pub fn export(&self, session: &CaptureSession) -> impl Stream<Item = Result<Vec<CapturedEvent>, CaptureError>> {
        events::export(self.store.clone(), session.id.clone(), session.request_count)
    }

    /// The session's events as they are recorded, after `after` (a `Last-Event-ID`), in order.
    pub async fn live(
        &self,
        session: &CaptureSession,
        after: Option<u64>,
    ) -> Result<impl Stream<Item = Result<Arc<CapturedEvent>, CaptureError>>, CaptureError> {
        events::live(self.store.clone(), session.id.clone(), after.unwrap_or(session.request_count)).await
    }

    /// Purges expired sessions in the background, at an interval fitting the TTL (a quarter of
    /// it, between 1 s and 1 min).
    pub fn spawn_sweeper(&self) {
        let store = self.store.clone();
        let every = (self.options.ttl / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                match store.sweep(now_ms()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(purged = n, "purged expired capture sessions"),
                    Err(e) => tracing::warn!(error = %e, "capture sweep failed"),
                }
            }
        });
    }
}

/// Headers not relayed: the connection's own, and signature headers the relay replaces.
const NOT_RELAYED: [&str; 12] = [
    "host",
    "content-length",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

/// The delivery that relays a recorded request: same method, headers and body, signed with
/// the session's secret, naming the session and event.
fn relay(session: &CaptureSession, url: &str, event: &CapturedEvent) -> Outgoing {
    use base64::Engine as _;
    let request = &event.request;
    let mut headers: Vec<(String, String)> = request
        .headers
        .iter()
        .filter(|(name, _)| !NOT_RELAYED.contains(&name.as_str()))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    headers.push(("x-capture-session".into(), session.id.clone()));
    headers.push(("x-capture-event".into(), request.id.clone()));
    let body = match request.body_encoding.as_str() {
        "base64" => base64::engine::general_purpose::STANDARD.decode(&request.body).unwrap_or_default(),
        _ => request.body.clone().into_bytes(),
    };
    Outgoing {
        kind: DeliveryKind::Forward,
        source: session.id.clone(),
        url: url.to_string(),
        method: request.method.clone(),
        headers,
        body,
        secret: session.forward_secret.clone(),
    }
}

/// A claimed session belongs to its app.
fn check_owner(session: &CaptureSession, caller: &Caller) -> Result<(), CaptureError> {
    let Some(owner) = &session.app else { return Ok(()) };
    match caller {
        Caller::Admin => Ok(()),
        Caller::App { app, .. } if app == owner => Ok(()),
        Caller::App { .. } => {
            Err(CaptureError::Forbidden(format!("capture session {} belongs to another app", session.id)))
        }
        Caller::Anonymous => Err(CaptureError::Unauthenticated(format!(
            "capture session {} was claimed by an app; send that app's token",
            session.id
        ))),
    }
}
