//! HTTP transport: one router per area, composed here with the cross-cutting layers
//! (request ids, body limit, CORS, tracing). Handlers parse and delegate; no business logic.

pub mod a2a;
pub mod admin;
pub mod apps;
pub mod auth;
pub mod capture;
pub mod cards;
pub mod deliveries;
pub mod limits;
pub mod sessions;
pub mod system;
pub mod webhooks;

use std::sync::Arc;

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

use crate::engine::Engine;

/// Server settings the HTTP layer needs.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Base URL for agent cards; derived from each request's Host when absent.
    pub public_url: Option<String>,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Origins allowed by CORS (`*` for any).
    pub cors_origins: Vec<String>,
    /// Request rate limits (none: unlimited).
    pub rate_limits: Vec<limits::RateLimit>,
    /// Serve Prometheus metrics at `/metrics`.
    pub metrics: bool,
}

/// State shared by all handlers: one shared allocation, so the clone every extractor and
/// middleware takes per request is a reference count, not a copy of each part.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] holds.
pub struct Shared {
    pub engine: Engine,
    pub auth: Arc<crate::auth::Auth>,
    pub options: Arc<HttpOptions>,
    /// Renders `/metrics` (with `--metrics`).
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    pub capture: crate::capture::Capture,
    pub deliveries: crate::delivery::Deliveries,
    pub webhooks: crate::webhooks::Webhooks,
}

/// A JSON error body `{"error": "..."}` with a status.
pub struct HttpError(pub StatusCode, pub String);

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

/// A backend error as an HTTP error: 503 while the backend is unreachable, 409 when the
/// request conflicts with what is stored (a name taken, a task gone or in the wrong state).
pub fn store_error(e: crate::store::StoreError) -> HttpError {
    match e {
        crate::store::StoreError::Unavailable(m) => HttpError(StatusCode::SERVICE_UNAVAILABLE, m),
        crate::store::StoreError::Conflict(m) => HttpError(StatusCode::CONFLICT, m),
        other => HttpError(StatusCode::CONFLICT, other.to_string()),
    }
}

impl From<crate::engine::EngineError> for HttpError {
    fn from(e: crate::engine::EngineError) -> Self {
        use crate::engine::EngineError;
        match e {
            EngineError::Unavailable(m) => HttpError(StatusCode::SERVICE_UNAVAILABLE, m),
            EngineError::TaskNotFound(_) => HttpError(StatusCode::NOT_FOUND, e.to_string()),
            other => HttpError(StatusCode::CONFLICT, other.to_string()),
        }
    }
}

/// A count parameter: absent or 0 means `default`, above `max` means `max`, anything else that
/// is not a whole number is an error.
pub fn query_count(raw: Option<&str>, name: &str, default: usize, max: usize) -> Result<usize, HttpError> {
    match raw.map(str::trim) {
        None | Some("") => Ok(default),
        Some(raw) => match raw.parse::<usize>() {
            Ok(0) => Ok(default),
            Ok(n) => Ok(n.min(max)),
            Err(_) => Err(HttpError(
                StatusCode::BAD_REQUEST,
                format!("{name} must be a whole number (at most {max} are returned), got {raw:?}"),
            )),
        },
    }
}

/// Reads a request body of at most `limit` bytes; more is 413 with the limit named.
pub async fn read_body(body: axum::body::Body, limit: usize) -> Result<bytes::Bytes, HttpError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        // axum reports the limit only in the error's text.
        if e.to_string().contains("length limit") {
            HttpError(StatusCode::PAYLOAD_TOO_LARGE, format!("request body is larger than {limit} bytes"))
        } else {
            HttpError(StatusCode::BAD_REQUEST, format!("cannot read the request body: {e}"))
        }
    })
}

/// The whole application router.
pub fn router(state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let cors = cors_layer(&state.options.cors_origins);
    // Everything but the system endpoints counts toward the rate limits. Without limits the
    // layer is left out: each layer wraps every route and clones its service on every request.
    let limited_by = |router: Router<AppState>| match state.options.rate_limits.is_empty() {
        true => router,
        false => router.layer(axum::middleware::from_fn_with_state(state.clone(), limits::rate_limit)),
    };
    let limited = limited_by(
        Router::new()
            .merge(cards::router())
            .merge(a2a::router())
            .merge(apps::public_router())
            .merge(capture::router())
            .merge(webhooks::router())
            .merge(if state.auth.admin_enabled() { admin_router(&state) } else { Router::new() }),
    );
    let observed = state.metrics.is_some();
    let identified = Router::new()
        .merge(system::router(observed))
        .merge(limited)
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid));
    // Capture ingest records requests exactly as they were sent: no request id is added.
    let ingest = limited_by(capture::ingest_router());
    Router::new()
        .merge(identified)
        .merge(ingest)
        .fallback(|| async { HttpError(StatusCode::NOT_FOUND, "no such endpoint".into()) })
        .method_not_allowed_fallback(|| async {
            HttpError(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this endpoint".into())
        })
        .with_state(state)
        .layer(tower::util::option_layer(observed.then(|| axum::middleware::from_fn(crate::observability::track_http))))
        .layer(cors)
}

/// `/admin/*`: only with an admin secret configured, and only for requests that carry it
/// (`/admin/jwks` is public key material and needs none).
fn admin_router(state: &AppState) -> Router<AppState> {
    Router::new()
        .merge(admin::router())
        .merge(apps::router())
        .merge(sessions::router())
        .merge(deliveries::router())
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_admin))
        .merge(apps::jwks_router())
}

fn cors_layer(origins: &[String]) -> CorsLayer {
    let layer = CorsLayer::new()
        .allow_methods(Any)
        .allow_headers(Any)
        .expose_headers([HeaderName::from_static("x-request-id")]);
    if origins.is_empty() || origins.iter().any(|o| o == "*") {
        layer.allow_origin(Any)
    } else {
        let list: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
        layer.allow_origin(AllowOrigin::list(list))
    }
}
