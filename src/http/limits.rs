//! Rate limits: requests per fixed window, per app, per user (token subject), per session
//! (`X-Session-ID`) or per client IP, counted in the backend (shared by every instance on
//! Redis). Every limited response carries `X-RateLimit-Limit`, `-Remaining` and `-Reset` (epoch
//! seconds) for the tightest limit; over a limit the answer is 429 with `Retry-After` and a body
//! naming the limit. `/health` and `/metrics` are never limited.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::auth::unauthorized;
use super::AppState;
use crate::auth::Caller;
use crate::clock::now_ms;
use crate::store::limits::{window_start, Hit};

/// What a limit is counted per.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    App,
    User,
    Session,
    Ip,
}

impl Scope {
    fn name(self) -> &'static str {
        match self {
            Scope::App => "app",
            Scope::User => "user",
            Scope::Session => "session",
            Scope::Ip => "ip",
        }
    }
}

/// `limit` requests per `window` for each caller of a scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    pub scope: Scope,
    pub limit: u64,
    pub window: Duration,
}

impl std::str::FromStr for RateLimit {
    type Err = String;

    /// `SCOPE=N/WINDOW`, e.g. `ip=100/1m`, `app=1000/m`, `session=10/30s`.
    fn from_str(text: &str) -> Result<RateLimit, String> {
        let usage = || {
            format!("invalid rate limit `{text}`: expected SCOPE=N/WINDOW such as ip=100/1m (scopes: app, user, session, ip)")
        };
        let (scope, rest) = text.split_once('=').ok_or_else(usage)?;
        let scope = match scope.trim() {
            "app" => Scope::App,
            "user" => Scope::User,
            "session" => Scope::Session,
            "ip" => Scope::Ip,
            _ => return Err(usage()),
        };
        let (limit, window) = rest.split_once('/').ok_or_else(usage)?;
        let limit: u64 = limit.trim().parse().map_err(|_| usage())?;
        let window = window.trim();
        let window = if window.chars().all(|c| c.is_ascii_alphabetic()) { format!("1{window}") } else { window.into() };
        let window = crate::config::parse_duration(&window)?;
        if limit == 0 || window.as_millis() == 0 {
            return Err(format!("invalid rate limit `{text}`: the limit and the window must be positive"));
        }
        Ok(RateLimit { scope, limit, window })
    }
}

/// Longest `X-Session-ID` used as a counter key.
const MAX_SESSION_ID: usize = 128;

/// The middleware: authenticates (the caller is kept for the handlers), counts, and refuses
/// requests over a limit.
pub async fn rate_limit(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    let limits = &state.options.rate_limits;
    if limits.is_empty() {
        return next.run(request).await;
    }
    let authorization = request.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes());
    let caller = match state.auth.authenticate(authorization).await {
        Ok(caller) => caller,
        Err(_) => return unauthorized(),
    };
    let mut applied = Vec::with_capacity(limits.len());
    let mut hits = Vec::with_capacity(limits.len());
    for limit in limits {
        let Some(id) = caller_id(limit.scope, &caller, request.headers(), &peer) else { continue };
        let window_ms = limit.window.as_millis() as u64;
        hits.push(Hit { key: format!("{}:{}:{id}", limit.scope.name(), limit.limit), window_ms });
        applied.push(limit);
    }
    request.extensions_mut().insert(caller);
    if hits.is_empty() {
        return next.run(request).await;
    }
    let now = now_ms();
    let counts = match state.engine.backend().limits.hit(&hits, now).await {
        Ok(counts) => counts,
        Err(e) => {
            // Counting failed (the backend is away): serve rather than refuse everyone; the
            // request meets the same outage in the store if it needs it.
            tracing::warn!(error = %e, "rate limits not counted");
            return next.run(request).await;
        }
    };
    // Report the limit closest to (or furthest past) its end.
    let Some((limit, count)) =
        applied.iter().zip(counts).max_by_key(|(limit, count)| (count * 1000) / limit.limit.max(1))
    else {
        return next.run(request).await;
    };
    let window_ms = limit.window.as_millis() as u64;
    let reset_ms = window_start(now, window_ms) + window_ms;
    let headers = [
        ("x-ratelimit-limit", limit.limit.to_string()),
        ("x-ratelimit-remaining", limit.limit.saturating_sub(count).to_string()),
        ("x-ratelimit-reset", reset_ms.div_ceil(1000).to_string()),
    ];
    let mut response = if count > limit.limit {
        let retry_after = (reset_ms - now).div_ceil(1000).max(1);
        let window = crate::clock::format_duration(limit.window);
        let body = json!({
            "error": format!("rate limit exceeded: {} requests per {window} per {}", limit.limit, limit.scope.name()),
            "limit": limit.scope.name(),
            "retry_after": retry_after,
        });
        crate::observability::rate_limited(limit.scope.name());
        let mut response = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        response
    } else {
        next.run(request).await
    };
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(HeaderName::from_static(name), value);
        }
    }
    response
}

/// Who a request counts against for a scope; `None` when the scope does not apply (no token
/// for `user`, no `X-Session-ID` for `session`).
fn caller_id(scope: Scope, caller: &Caller, headers: &HeaderMap, peer: &SocketAddr) -> Option<String> {
    match scope {
        Scope::App => Some(caller.app().to_string()),
        Scope::User => match caller {
            Caller::App { app, subject } => Some(format!("{app}:{subject}")),
            _ => None,
        },
        Scope::Session => {
            let id = headers.get("x-session-id")?.to_str().ok()?.trim();
            (!id.is_empty()).then(|| format!("{}:{}", caller.app(), &id[..id.len().min(MAX_SESSION_ID)]))
        }
        Scope::Ip => Some(peer.ip().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_with_units_and_reject_nonsense() {
        let limit: RateLimit = "ip=100/1m".parse().unwrap();
        assert_eq!(limit, RateLimit { scope: Scope::Ip, limit: 100, window: Duration::from_secs(60) });
        assert_eq!("app=5/s".parse::<RateLimit>().unwrap().window, Duration::from_secs(1));
        assert_eq!("session=10/30s".parse::<RateLimit>().unwrap().limit, 10);
        for bad in ["ip", "ip=100", "host=1/1m", "ip=x/1m", "ip=0/1m", "ip=10/0s", "ip=10/1y"] {
            assert!(bad.parse::<RateLimit>().is_err(), "{bad}");
        }
    }
}
