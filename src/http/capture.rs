//! Capture sessions over HTTP: the management API (mounted twice, at `/v1/agent/sessions` and
//! `/v1/test/sessions`), the ingest URL `ANY /v1/ingest/{id}[/...]`, and the live views (SSE
//! and WebSocket).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, patch, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use futures::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};

use super::cards::base_url;
use super::{query_count, read_body, AppState, HttpError};
use crate::auth::Caller;
use crate::capture::events::{decode_cursor, encode_cursor};
use crate::capture::{CaptureError, EventFilter};
use crate::clock::{ms_to_rfc3339, now_ms};
use crate::store::capture::{CaptureSession, CapturedEvent, CapturedRequest};

/// Default and largest page of events.
const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 100;
/// Largest total size of the headers of a recorded request.
const MAX_HEADER_BYTES: usize = 64 * 1024;
/// How often an idle live stream sends a keep-alive.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The management API and the live views.
pub fn router() -> Router<AppState> {
    let sessions = Router::new()
        .route("/", post(create))
        .route("/{id}", get(show).delete(delete))
        .route("/{id}/response", patch(set_response))
        .route("/{id}/forwarding", patch(set_forwarding))
        .route("/{id}/export", get(export))
        .route("/{id}/claim", post(claim))
        .route("/{id}/events/stream", get(stream));
    Router::new()
        .nest("/v1/agent/sessions", sessions.clone())
        .nest("/v1/test/sessions", sessions)
        .route("/v1/ws/sessions/{id}", get(websocket))
}

/// The ingest URL of every session.
pub fn ingest_router() -> Router<AppState> {
    Router::new().route("/v1/ingest/{id}", any(ingest)).route("/v1/ingest/{id}/{*rest}", any(ingest))
}

impl From<CaptureError> for HttpError {
    fn from(e: CaptureError) -> Self {
        let status = match &e {
            CaptureError::NotFound(_) => StatusCode::NOT_FOUND,
            CaptureError::Expired { .. } => StatusCode::GONE,
            CaptureError::Full { .. } | CaptureError::TooManySessions { .. } => StatusCode::TOO_MANY_REQUESTS,
            CaptureError::Invalid(_) => StatusCode::BAD_REQUEST,
            CaptureError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            CaptureError::Forbidden(_) => StatusCode::FORBIDDEN,
            CaptureError::Conflict(_) => StatusCode::CONFLICT,
            CaptureError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        HttpError(status, e.to_string())
    }
}

/// An error response; a refused session creation says when to try again.
fn failure(e: CaptureError) -> Response {
    let retry_after = match &e {
        CaptureError::TooManySessions { retry_after_s, .. } => Some(*retry_after_s),
        _ => None,
    };
    let mut response = HttpError::from(e).into_response();
    if let Some(seconds) = retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

fn ingest_url(state: &AppState, headers: &HeaderMap, id: &str) -> String {
    format!("{}/v1/ingest/{id}", base_url(state, headers))
}

/// A session as the API shows it.
fn session_view(state: &AppState, headers: &HeaderMap, session: &CaptureSession) -> Value {
    json!({
        "id": session.id,
        "url": ingest_url(state, headers, &session.id),
        "created_at": ms_to_rfc3339(session.created_ms),
        "expires_at": session.expires_ms.map(ms_to_rfc3339),
        "request_limit": session.request_limit,
        "request_count": session.request_count,
        "response": session.response,
        "forwarding": session.forward_url.as_ref().map(|url| json!({ "url": url, "secret": session.forward_secret })),
        "claimed_by": session.app,
    })
}

/// A recorded request as the API shows it.
pub fn event_view(event: &CapturedEvent) -> Value {
    let r = &event.request;
    json!({
        "id": r.id,
        "seq": event.seq,
        "method": r.method,
        "path": r.path,
        "query": r.query,
        "headers": r.headers,
        "body": r.body,
        "body_encoding": r.body_encoding,
        "size": r.size,
        "source_ip": r.source_ip,
        "status": event.status,
        "received_at": ms_to_rfc3339(r.received_ms),
        "duration_ms": r.duration_us as f64 / 1000.0,
    })
}

async fn create(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    match state.capture.create(peer.ip()).await {
        Ok(session) => (
            StatusCode::CREATED,
            Json(json!({
                "session_id": session.id,
                "url": ingest_url(&state, &headers, &session.id),
                "expires_at": session.expires_ms.map(ms_to_rfc3339),
                "request_limit": session.request_limit,
                "request_count": session.request_count,
            })),
        )
            .into_response(),
        Err(e) => failure(e),
    }
}

#[derive(Deserialize)]
struct ListQuery {
    method: Option<String>,
    status: Option<String>,
    q: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<ListQuery>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let filter = EventFilter::parse(query.method.as_deref(), query.status.as_deref(), query.q.as_deref())?;
    let limit = query_count(query.limit.as_deref(), "limit", DEFAULT_PAGE, MAX_PAGE)?;
    let cursor = query.cursor.as_deref().filter(|c| !c.is_empty()).map(decode_cursor).transpose()?;
    let session = state.capture.session(&id, &caller).await?;
    let page = state.capture.events(&session, &filter, cursor, limit).await?;
    let events: Vec<Value> = page.events.iter().map(event_view).collect();
    Ok(Json(json!({
        "session": session_view(&state, &headers, &session),
        "events": events,
        "pagination": {
            "has_more": page.next_cursor.is_some(),
            "next_cursor": page.next_cursor.map(encode_cursor),
        },
    }))
    .into_response())
}

async fn delete(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Response, HttpError> {
    state.capture.delete(&id, &caller).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, HttpError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let place = if path == "." { String::new() } else { format!("{path}: ") };
        HttpError(StatusCode::BAD_REQUEST, format!("invalid request body: {place}{}", e.into_inner()))
    })
}

async fn set_response(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HttpError> {
    let session = state.capture.set_response(&id, &caller, parse_json(&body)?).await?;
    Ok(Json(session_view(&state, &headers, &session)).into_response())
}

/// The body of `PATCH .../forwarding`: `{"url": "https://..."}`, or `{"url": null}` to stop.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ForwardingBody {
    /// `None` when left out (an error), `Some(None)` for `null`.
    #[serde(default, deserialize_with = "present")]
    url: Option<Option<String>>,
}

/// A field that is present, even as `null`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

async fn set_forwarding(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HttpError> {
    let forwarding: ForwardingBody = parse_json(&body)?;
    let Some(url) = forwarding.url else {
        return Err(HttpError(StatusCode::BAD_REQUEST, "url: required (a URL, or null to stop forwarding)".into()));
    };
    let session = state.capture.set_forwarding(&id, &caller, url).await?;
    Ok(Json(session_view(&state, &headers, &session)).into_response())
}

async fn claim(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let session = state.capture.claim(&id, &caller).await?;
    Ok(Json(session_view(&state, &headers, &session)).into_response())
}

#[derive(Deserialize)]
struct ExportQuery {
    format: Option<String>,
}

/// CSV columns of an export.
const CSV_COLUMNS: [&str; 13] = [
    "id",
    "seq",
    "received_at",
    "method",
    "path",
    "query",
    "status",
    "source_ip",
    "size",
    "duration_ms",
    "headers",
    "body_encoding",
    "body",
];

fn csv_rows(events: &[CapturedEvent], with_header: bool) -> Result<Bytes, std::io::Error> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    if with_header {
        writer.write_record(CSV_COLUMNS)?;
    }
    for event in events {
        let r = &event.request;
        writer.write_record([
            r.id.clone(),
            event.seq.to_string(),
            ms_to_rfc3339(r.received_ms),
            r.method.clone(),
            r.path.clone(),
            r.query.clone(),
            event.status.to_string(),
            r.source_ip.clone(),
            r.size.to_string(),
            (r.duration_us as f64 / 1000.0).to_string(),
            serde_json::to_string(&r.headers).unwrap_or_default(),
            r.body_encoding.clone(),
            r.body.clone(),
        ])?;
    }
    writer.into_inner().map(Bytes::from).map_err(|e| e.into_error())
}

fn ndjson_rows(events: &[CapturedEvent]) -> Bytes {
    let mut out = Vec::new();
    for event in events {
        let _ = serde_json::to_writer(&mut out, &event_view(event));
        out.push(b'\n');
    }
    Bytes::from(out)
}

async fn export(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<ExportQuery>,
) -> Result<Response, HttpError> {
    let csv = match query.format.as_deref().map(str::trim) {
        None | Some("") | Some("ndjson") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(HttpError(StatusCode::BAD_REQUEST, format!("format: expected ndjson or csv, got {other:?}")))
        }
    };
    let session = state.capture.session(&id, &caller).await?;
    let pages = state.capture.export(&session).map(move |page| {
        let page = page.map_err(|e| std::io::Error::other(e.to_string()))?;
        if csv {
            csv_rows(&page, false)
        } else {
            Ok(ndjson_rows(&page))
        }
    });
    // A CSV starts with its header row, even for a session with no events.
    let header = futures::stream::iter(csv.then(|| csv_rows(&[], true)));
    let body = header.chain(pages);
    let (content_type, extension) =
        if csv { ("text/csv; charset=utf-8", "csv") } else { ("application/x-ndjson", "ndjson") };
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"capture-{id}.{extension}\"")),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

fn last_event_id(headers: &HeaderMap) -> Option<u64> {
    headers.get("last-event-id")?.to_str().ok()?.trim().parse().ok()
}

async fn stream(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let session = state.capture.session(&id, &caller).await?;
    let live = state.capture.live(&session, last_event_id(&headers)).await?;
    let events = live.map(|event| -> Result<Event, Infallible> {
        Ok(match event {
            Ok(event) => Event::default().id(event.seq.to_string()).data(event_view(&event).to_string()),
            Err(e) => Event::default().event("error").data(json!({ "error": e.to_string() }).to_string()),
        })
    });
    Ok((
        [(header::CACHE_CONTROL, "no-cache"), (header::HeaderName::from_static("x-accel-buffering"), "no")],
        Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive")),
    )
        .into_response())
}

async fn websocket(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, HttpError> {
    let session = state.capture.session(&id, &caller).await?;
    let live = state.capture.live(&session, None).await?;
    Ok(upgrade.on_upgrade(move |socket| relay(socket, live)))
}

/// Sends each event as a text frame until the session ends or the client leaves.
async fn relay(
    mut socket: WebSocket,
    live: impl Stream<Item = Result<std::sync::Arc<CapturedEvent>, CaptureError>> + Send,
) {
    let mut live = std::pin::pin!(live);
    loop {
        tokio::select! {
            event = live.next() => {
                let text = match event {
                    Some(Ok(event)) => event_view(&event).to_string(),
                    Some(Err(e)) => json!({ "error": e.to_string() }).to_string(),
                    None => break,
                };
                if socket.send(WsMessage::Text(text.into())).await.is_err() {
                    return;
                }
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = socket.send(WsMessage::Close(None)).await;
}

/// `ANY /v1/ingest/{id}[/...]`: records the request and answers with the session's response.
async fn ingest(
    State(state): State<AppState>,
    Path(params): Path<Vec<(String, String)>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let received_ms = now_ms();
    let id = params.into_iter().find(|(name, _)| name == "id").map(|(_, v)| v).unwrap_or_default();
    let header_bytes: usize = headers.iter().map(|(name, value)| name.as_str().len() + value.len()).sum();
    if header_bytes > MAX_HEADER_BYTES {
        let message = format!("request headers total {header_bytes} bytes; at most {MAX_HEADER_BYTES} are recorded");
        return HttpError(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, message).into_response();
    }
    let limit = state.options.max_body_bytes;
    let body = match read_body(body, limit).await {
        Ok(body) => body,
        Err(e) => return e.into_response(),
    };
    let request = captured(method, &uri, &headers, &body, peer, received_ms, started.elapsed());
    match state.capture.ingest(&id, request).await {
        Ok((_, session)) => {
            let response = session.response;
            let status = StatusCode::from_u16(response.status_code).unwrap_or(StatusCode::OK);
            let content_type = HeaderValue::from_str(&response.content_type)
                .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
            (status, [(header::CONTENT_TYPE, content_type)], response.body).into_response()
        }
        Err(e) => failure(e),
    }
}

/// The request as a capture session records it.
fn captured(
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
    peer: SocketAddr,
    received_ms: u64,
    took: Duration,
) -> CapturedRequest {
    let (body_text, encoding) = match std::str::from_utf8(body) {
        Ok(text) => (text.to_string(), "utf8"),
        Err(_) => (STANDARD.encode(body), "base64"),
    };
    CapturedRequest {
        id: format!("evt_{}", uuid::Uuid::new_v4().simple()),
        method: method.as_str().to_string(),
        path: uri.path().to_string(),
        query: uri.query().unwrap_or("").to_string(),
        headers: crate::headers::joined(headers),
        body: body_text,
        body_encoding: encoding.to_string(),
        size: body.len() as u64,
        source_ip: peer.ip().to_string(),
        received_ms,
        duration_us: took.as_micros() as u64,
    }
}
