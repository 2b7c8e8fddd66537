//! The A2A endpoint: JSON-RPC at `POST /agents/{name}`, the agent's card at `GET /agents/{name}`,
//! and `GET /agents/{name}/tasks/{id}/events` for browsers (EventSource can only GET).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures::{Stream, StreamExt};

use super::auth::{agent_for, unauthorized};
use super::cards::public_card;
use super::{AppState, HttpError};
use crate::auth::Caller;
use crate::engine::follow::resume;
use crate::rpc::{self, Answer, CardRequest, RpcContext, StreamItem};

/// How often an idle stream sends a keep-alive comment.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// A2A routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/agents/{name}", post(json_rpc).get(card))
        .route("/agents/{name}/tasks/{id}/events", get(task_events))
}

async fn card(State(state): State<AppState>, caller: Caller, Path(name): Path<String>, headers: HeaderMap) -> Response {
    match agent_for(&state, &caller, &name) {
        Ok((_, agent)) => axum::Json(public_card(&state, &agent, &headers)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `Last-Event-ID`, when it is a sequence number we issued.
fn last_event_id(headers: &HeaderMap) -> Option<u64> {
    headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok())
}

async fn json_rpc(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    // The whole request, not a copy of its headers: they move into the context.
    let (parts, body) = request.into_parts();
    let body = match super::read_body(body, state.options.max_body_bytes).await {
        Ok(b) => b,
        Err(HttpError(StatusCode::PAYLOAD_TOO_LARGE, _)) => {
            // The rest of the body is never read, so the connection cannot be reused: say so,
            // or keep-alive clients send their next request into a closed socket.
            let error = HttpError(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body exceeds the limit of {} bytes", state.options.max_body_bytes),
            );
            return ([(header::CONNECTION, "close")], error).into_response();
        }
        Err(e) => return e.into_response(),
    };
    let (tenant, agent) = match agent_for(&state, &caller, &name) {
        Ok(found) => found,
        Err(e) => return e.into_response(),
    };
    let ctx = RpcContext {
        engine: state.engine.clone(),
        app: tenant.record.id.clone(),
        agent: name,
        user: caller.user().to_string(),
        last_event_id: last_event_id(&parts.headers),
        card: CardRequest {
            agent,
            public_url: state.options.public_url.clone(),
            headers: parts.headers,
            auth_enabled: state.auth.enabled(),
            authenticated: caller.is_authenticated(),
        },
    };
    match rpc::handle(&ctx, &body).await {
        Answer::Json(bytes) => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Answer::Unavailable(bytes) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "application/json"), (header::RETRY_AFTER, "1")],
            bytes,
        )
            .into_response(),
        Answer::Unauthorized(bytes) => {
            let mut response = unauthorized();
            *response.body_mut() = axum::body::Body::from(bytes);
            response
        }
        Answer::Stream { id, events } => sse(events.map(move |item| to_sse(&id, item))).into_response(),
    }
}

/// One stream item as an SSE event: `id: <seq>` and `data: <compact JSON-RPC response>`.
fn to_sse(id: &serde_json::value::RawValue, item: StreamItem) -> Result<Event, Infallible> {
    let json = rpc::response(id, &item.payload);
    // Compact JSON never contains a raw newline, so it is one `data:` line.
    let data = String::from_utf8(json).unwrap_or_default();
    let event = Event::default().data(data);
    Ok(match item.seq {
        Some(seq) => event.id(seq.to_string()),
        None => event,
    })
}

fn sse<S: Stream<Item = Result<Event, Infallible>> + Send + 'static>(events: S) -> impl IntoResponse {
    let open = crate::observability::OpenStream::open();
    let events = events.map(move |event| {
        let _counted_while_open = &open;
        event
    });
    (
        [(header::CACHE_CONTROL, "no-cache"), (header::HeaderName::from_static("x-accel-buffering"), "no")],
        Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive")),
    )
}

/// The events of a task for browsers: the same JSON-RPC responses as `tasks/resubscribe`
/// (id `null`), honouring `Last-Event-ID`.
async fn task_events(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, task_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let tenant = match agent_for(&state, &caller, &name) {
        Ok((tenant, _)) => tenant,
        Err(e) => return e.into_response(),
    };
    let events = match resume(&state.engine, &task_id, last_event_id(&headers)).await {
        Ok((stored, events)) if stored.agent == name && stored.app == tenant.record.id => events,
        Ok(_) | Err(crate::engine::EngineError::TaskNotFound(_)) => {
            return HttpError(StatusCode::NOT_FOUND, format!("Task {task_id} not found")).into_response()
        }
        Err(e) => return HttpError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    };
    let id = rpc::null_id();
    sse(rpc::methods::stream_items(events).map(move |item| to_sse(&id, item))).into_response()
}
