//! Server-Sent Events: message/stream framing and ordering, tasks/resubscribe (live, replay with
//! Last-Event-ID), and the browser stream `GET /agents/{name}/tasks/{id}/events`.

mod common;

use common::*;
use serde_json::{json, Value};

/// Thirty words, so that the `slow` agent (50 ms per chunk) streams for about 1.5 s.
const THIRTY_WORDS: &str = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen \
                            fifteen sixteen seventeen eighteen nineteen twenty twenty-one twenty-two twenty-three \
                            twenty-four twenty-five twenty-six twenty-seven twenty-eight twenty-nine thirty";

/// The concatenated text of a `parts` array.
fn parts_text(parts: &Value) -> String {
    parts.as_array().map(|p| p.iter().filter_map(|p| p["text"].as_str()).collect()).unwrap_or_default()
}

/// The concatenated text of every artifact of a task.
fn artifacts_text(task: &Value) -> String {
    task["artifacts"].as_array().map(|a| a.iter().map(|a| parts_text(&a["parts"])).collect()).unwrap_or_default()
}

/// The SSE `id:` of an event as a number.
fn seq(event: &SseEvent) -> u64 {
    event.id.as_deref().unwrap_or_else(|| panic!("event without id: {}", event.raw)).parse().expect("numeric id")
}

/// The `kind` of an event's result.
fn kind(event: &SseEvent) -> &str {
    result_of(event)["kind"].as_str().unwrap_or("?")
}

/// The text chunk an artifact-update event carries (None for other events).
fn chunk(event: &SseEvent) -> Option<String> {
    let result = result_of(event);
    (result["kind"] == "artifact-update").then(|| parts_text(&result["artifact"]["parts"]))
}

/// All chunks of a list of events, in order.
fn chunks(events: &[SseEvent]) -> Vec<String> {
    events.iter().filter_map(chunk).collect()
}

/// `(id, result)` of each event, for comparing streams.
fn keyed(events: &[SseEvent]) -> Vec<(u64, Value)> {
    events.iter().map(|e| (seq(e), result_of(e).clone())).collect()
}

/// True when `json` has no whitespace outside string literals.
fn is_compact(json: &str) -> bool {
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        } else if c.is_whitespace() {
            return false;
        }
    }
    true
}

/// Asserts ids strictly increase along `events`.
fn assert_increasing(events: &[SseEvent]) {
    for pair in events.windows(2) {
        assert!(seq(&pair[1]) > seq(&pair[0]), "ids must increase: {} then {}", pair[0].raw, pair[1].raw);
    }
}

/// Asserts the event is the final status-update in `state`.
fn assert_final(event: &SseEvent, state: &str) {
    let result = result_of(event);
    assert_eq!(result["kind"], "status-update", "{}", event.raw);
    assert_eq!(result["final"], true, "{}", event.raw);
    assert_eq!(result["status"]["state"], state, "{}", event.raw);
}

/// Reads events until `n` artifact chunks were seen; returns them all.
async fn read_until_chunks(stream: &mut SseReader, n: usize) -> Vec<SseEvent> {
    let mut events = Vec::new();
    while chunks(&events).len() < n {
        let e = stream.next().await.expect("stream ended before enough chunks");
        events.push(e);
    }
    events
}

/// A `message/stream` on `agent` read to its end.
async fn stream_all(s: &Server, agent: &str, text: &str) -> Vec<SseEvent> {
    let mut stream = s.open_stream(agent, "message/stream", json!({"message": user_message(text)}), None).await;
    assert_eq!(stream.status, 200);
    stream.collect().await
}

/// GETs the browser event stream of a task with an Origin header and an optional Last-Event-ID;
/// returns the response headers and the reader.
async fn browser_stream(
    s: &Server,
    agent: &str,
    task_id: &str,
    last_event_id: Option<u64>,
) -> (reqwest::header::HeaderMap, SseReader) {
    let mut request = s
        .client
        .get(s.url(&format!("/agents/{agent}/tasks/{task_id}/events")))
        .header("origin", "https://app.example")
        .header("accept", "text/event-stream");
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id.to_string());
    }
    let response = request.send().await.expect("GET events");
    let headers = response.headers().clone();
    (headers, SseReader::from_response(response))
}

// ---------------------------------------------------------------------------------------------
// message/stream
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn message_stream_frames_each_event_as_one_data_line_with_an_id() {
    let s = Server::start().await;
    let text = "alpha beta gamma delta";
    let mut stream = s.open_stream("echo", "message/stream", json!({"message": user_message(text)}), None).await;
    assert_eq!(stream.status, 200);
    assert!(stream.content_type.starts_with("text/event-stream"), "content-type {}", stream.content_type);
    let events = stream.collect().await;
    assert!(stream.comments.is_empty() || stream.comments.iter().all(|c| !c.contains('{')), "{:?}", stream.comments);

    for event in &events {
        let raw = &event.raw;
        assert!(raw.ends_with("\n\n") && !raw.ends_with("\n\n\n"), "block must end with one blank line: {raw:?}");
        assert!(!raw.contains('\r'), "{raw:?}");
        let lines: Vec<&str> = raw[..raw.len() - 2].split('\n').collect();
        assert_eq!(lines.len(), 2, "exactly a data line and an id line: {raw:?}");
        let data: Vec<&&str> = lines.iter().filter(|l| l.starts_with("data: ")).collect();
        let ids: Vec<&&str> = lines.iter().filter(|l| l.starts_with("id: ")).collect();
        assert_eq!((data.len(), ids.len()), (1, 1), "{raw:?}");
        let json_text = &data[0]["data: ".len()..];
        assert!(is_compact(json_text), "data must be compact JSON: {json_text}");
        assert!(ids[0]["id: ".len()..].parse::<u64>().is_ok(), "{raw:?}");
        assert_eq!(event.data["jsonrpc"], "2.0");
        assert_eq!(event.data["id"], "s1", "every event carries the request id: {raw:?}");
        assert_valid("SendStreamingMessageSuccessResponse", &event.data);
    }
    for pair in events.windows(2) {
        assert_eq!(seq(&pair[1]), seq(&pair[0]) + 1, "a fresh stream has consecutive ids: {events:#?}");
    }

    let kinds: Vec<&str> = events.iter().map(kind).collect();
    let n = events.len();
    assert!(n >= 4, "{kinds:?}");
    let first = result_of(&events[0]);
    assert_eq!(first["kind"], "task");
    assert_eq!(first["status"]["state"], "submitted");
    let task_id = first["id"].clone();
    let second = result_of(&events[1]);
    assert_eq!(second["kind"], "status-update");
    assert_eq!(second["status"]["state"], "working");
    assert_eq!(second["final"], false);
    let artifact_events = &events[2..n - 1];
    assert!(artifact_events.iter().all(|e| kind(e) == "artifact-update"), "{kinds:?}");
    assert_eq!(artifact_events.len(), 4, "one chunk per word: {kinds:?}");
    for (i, e) in artifact_events.iter().enumerate() {
        let r = result_of(e);
        assert_eq!(r["append"], i > 0, "append flag of chunk {i}: {}", e.raw);
        assert_eq!(r["lastChunk"], i + 1 == artifact_events.len(), "lastChunk flag of chunk {i}: {}", e.raw);
    }
    assert_eq!(chunks(&events).concat(), text);
    assert_final(&events[n - 1], "input-required");
    for e in &events {
        let r = result_of(e);
        let id = if r["kind"] == "task" { &r["id"] } else { &r["taskId"] };
        assert_eq!(id, &task_id, "{}", e.raw);
    }
    assert!(stream.next().await.is_none(), "the stream must stay closed after the final event");
}

#[tokio::test]
async fn message_stream_on_completing_agent_ends_with_completed_final() {
    let s = Server::start().await;
    let events = stream_all(&s, "done", "all done now").await;
    assert_eq!(kind(&events[0]), "task");
    assert_eq!(chunks(&events).concat(), "all done now");
    assert_final(events.last().unwrap(), "completed");
    assert_eq!(events.iter().filter(|e| result_of(e)["final"] == true).count(), 1);
    let task = s.result("done", "tasks/get", json!({"id": result_of(&events[0])["id"]})).await;
    assert_eq!(task["status"]["state"], "completed");
}

#[tokio::test]
async fn message_stream_validation_error_is_a_plain_json_response() {
    let s = Server::start().await;
    let mut message = user_message("x");
    message["parts"] = json!([]);
    let response = s.stream_request("echo", "message/stream", json!({"message": message}), None).await;
    assert_eq!(response.status(), 200);
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    assert!(content_type.starts_with("application/json"), "content-type {content_type}");
    let body: Value = response.json().await.unwrap();
    assert_valid("JSONRPCErrorResponse", &body);
    assert_eq!(body["error"]["code"], -32602);
    assert_eq!(body["id"], "s1");
}

#[tokio::test]
async fn message_stream_continuing_a_task_starts_with_the_grown_task() {
    let s = Server::start().await;
    let first = s.send_text("echo", "first turn").await;
    let before = s.open_stream("echo", "tasks/resubscribe", json!({"id": first["id"]}), Some(0)).await.collect().await;
    let last_seq = seq(before.last().expect("logged events of the first turn"));

    let mut message = user_message("second turn here");
    message["taskId"] = first["id"].clone();
    message["contextId"] = first["contextId"].clone();
    let events = s.open_stream("echo", "message/stream", json!({"message": message}), None).await.collect().await;
    let head = result_of(&events[0]);
    assert_eq!(head["kind"], "task", "{}", events[0].raw);
    assert_eq!(head["id"], first["id"]);
    assert_eq!(head["status"]["state"], "submitted");
    let history = head["history"].as_array().expect("history");
    assert_eq!(history.len(), 3, "{head}");
    assert_eq!(parts_text(&history[2]["parts"]), "second turn here");
    assert!(seq(&events[0]) > last_seq, "ids continue the task's log: {} after {last_seq}", seq(&events[0]));
    assert_increasing(&events);
    assert_eq!(result_of(&events[1])["status"]["state"], "working");
    assert_eq!(chunks(&events).concat(), "second turn here");
    assert_final(events.last().unwrap(), "input-required");
    for e in &events {
        assert_valid("SendStreamingMessageSuccessResponse", &e.data);
    }
    let task = s.result("echo", "tasks/get", json!({"id": first["id"]})).await;
    assert_eq!(task["history"].as_array().map(Vec::len), Some(4));
}

// ---------------------------------------------------------------------------------------------
// tasks/resubscribe
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn resubscribe_on_live_task_sends_snapshot_then_every_remaining_event() {
    let s = Server::start().await;
    let mut original =
        s.open_stream("slow", "message/stream", json!({"message": user_message(THIRTY_WORDS)}), None).await;
    let mut seen = read_until_chunks(&mut original, 3).await;
    let task_id = result_of(&seen[0])["id"].as_str().unwrap().to_string();

    let mut resub = s.open_stream("slow", "tasks/resubscribe", json!({"id": task_id}), None).await;
    assert_eq!(resub.status, 200);
    assert!(resub.content_type.starts_with("text/event-stream"), "{}", resub.content_type);
    let resub_events = resub.collect().await;
    seen.extend(original.collect().await);

    // The original stream is whole.
    assert_eq!(chunks(&seen).concat(), THIRTY_WORDS);
    assert_final(seen.last().unwrap(), "input-required");

    // The resubscriber: the Task first, taken while the turn was running ...
    let snapshot = &resub_events[0];
    let snapshot_task = result_of(snapshot);
    assert_eq!(snapshot_task["kind"], "task", "{}", snapshot.raw);
    assert_eq!(snapshot_task["id"], task_id.as_str());
    assert_eq!(snapshot_task["status"]["state"], "working", "the snapshot must be of the live task");
    assert_valid("SendStreamingMessageSuccessResponse", &snapshot.data);
    assert_eq!(snapshot.data["id"], "s1");
    // ... then exactly the events logged after it: none lost, none repeated.
    let after = &resub_events[1..];
    assert!(!after.is_empty());
    assert_increasing(&resub_events);
    assert!(seq(&after[0]) > seq(snapshot), "live events must come after the snapshot's id");
    let expected: Vec<(u64, Value)> = keyed(&seen).into_iter().filter(|(id, _)| *id > seq(snapshot)).collect();
    assert_eq!(keyed(after), expected, "the resubscriber must see the original's events after the snapshot");
    let resub_chunks = chunks(after);
    let original_chunks = chunks(&seen);
    assert!(original_chunks.ends_with(&resub_chunks), "resubscriber's chunks must be a suffix of the original's");
    assert_eq!(format!("{}{}", artifacts_text(snapshot_task), resub_chunks.concat()), THIRTY_WORDS);
    assert_final(after.last().unwrap(), "input-required");
    for e in &resub_events {
        assert_eq!(e.data["id"], "s1");
        assert_valid("SendStreamingMessageSuccessResponse", &e.data);
    }
}

#[tokio::test]
async fn resubscribe_with_last_event_id_replays_the_logged_events_after_it() {
    let s = Server::start().await;
    let original = stream_all(&s, "echo", "alpha beta gamma delta epsilon").await;
    let task_id = result_of(&original[0])["id"].clone();
    let n = seq(&original[2]);
    let mut replay = s.open_stream("echo", "tasks/resubscribe", json!({"id": task_id}), Some(n)).await;
    assert!(replay.content_type.starts_with("text/event-stream"), "{}", replay.content_type);
    let replayed = replay.collect().await;
    let expected: Vec<(u64, Value)> = keyed(&original).into_iter().filter(|(id, _)| *id > n).collect();
    assert_eq!(keyed(&replayed), expected);
    assert_final(replayed.last().unwrap(), "input-required");
    for e in &replayed {
        assert_eq!(e.data["id"], "s1");
        assert_valid("SendStreamingMessageSuccessResponse", &e.data);
    }
}

#[tokio::test]
async fn resubscribe_with_last_event_id_on_live_task_replays_then_follows() {
    let s = Server::start().await;
    let mut original =
        s.open_stream("slow", "message/stream", json!({"message": user_message(THIRTY_WORDS)}), None).await;
    let mut seen = read_until_chunks(&mut original, 4).await;
    let task_id = result_of(&seen[0])["id"].as_str().unwrap().to_string();
    let n = seq(&seen[3]);
    let resumed = s.open_stream("slow", "tasks/resubscribe", json!({"id": task_id}), Some(n)).await.collect().await;
    seen.extend(original.collect().await);
    let expected: Vec<(u64, Value)> = keyed(&seen).into_iter().filter(|(id, _)| *id > n).collect();
    assert_eq!(keyed(&resumed), expected, "a resumed stream must continue exactly after Last-Event-ID");
    assert_final(resumed.last().unwrap(), "input-required");
}

#[tokio::test]
async fn resubscribe_on_unknown_task_is_task_not_found() {
    let s = Server::start().await;
    let response = s
        .client
        .post(s.agent_url("echo"))
        .header("content-type", "application/json")
        .header("accept", "text/event-stream")
        .body(
            json!({"jsonrpc": "2.0", "id": "s1", "method": "tasks/resubscribe", "params": {"id": "no-such-task"}})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let body = if content_type.starts_with("text/event-stream") {
        let mut reader = SseReader::from_response(response);
        let event = reader.next().await.expect("one error event");
        assert!(reader.next().await.is_none(), "the stream must end after the error");
        event.data
    } else {
        response.json::<Value>().await.unwrap()
    };
    assert_valid("JSONRPCErrorResponse", &body);
    assert_eq!(body["error"]["code"], -32001);
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("not found"), "{body}");
    assert_eq!(body["id"], "s1");
}

#[tokio::test]
async fn resubscribe_on_idle_task_sends_the_task_then_closes() {
    let s = Server::start().await;
    let task = s.send_text("echo", "idle now").await;
    let mut stream = s.open_stream("echo", "tasks/resubscribe", json!({"id": task["id"]}), None).await;
    assert!(stream.content_type.starts_with("text/event-stream"), "{}", stream.content_type);
    let events = stream.collect().await;
    assert_eq!(events.len(), 1, "{events:#?}");
    let snapshot = result_of(&events[0]);
    assert_eq!(snapshot["kind"], "task");
    assert_eq!(snapshot["id"], task["id"]);
    assert_eq!(snapshot["status"]["state"], "input-required");
    assert_eq!(snapshot["history"], task["history"]);
    assert_eq!(snapshot["artifacts"], task["artifacts"]);
    assert!(events[0].id.is_some(), "the snapshot carries its sequence number");
    assert_valid("SendStreamingMessageSuccessResponse", &events[0].data);
}

// ---------------------------------------------------------------------------------------------
// GET /agents/{name}/tasks/{id}/events
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn browser_stream_honours_last_event_id_and_sends_cors_headers() {
    let s = Server::start().await;
    let original = stream_all(&s, "echo", "one small step").await;
    let task_id = result_of(&original[0])["id"].as_str().unwrap().to_string();
    let n = seq(&original[1]);
    let (headers, mut stream) = browser_stream(&s, "echo", &task_id, Some(n)).await;
    assert_eq!(stream.status, 200);
    assert!(stream.content_type.starts_with("text/event-stream"), "{}", stream.content_type);
    let allow_origin = headers.get("access-control-allow-origin").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(
        allow_origin == "*" || allow_origin == "https://app.example",
        "Access-Control-Allow-Origin: {allow_origin:?}"
    );
    let events = stream.collect().await;
    let expected: Vec<(u64, Value)> = keyed(&original).into_iter().filter(|(id, _)| *id > n).collect();
    assert_eq!(keyed(&events), expected, "the browser stream must replay the same events after Last-Event-ID");
    assert_final(events.last().unwrap(), "input-required");
    for e in &events {
        assert!(e.data["id"].is_null(), "{}", e.raw);
        assert!(e.data.as_object().unwrap().contains_key("id"), "{}", e.raw);
    }
}

#[tokio::test]
async fn browser_stream_of_idle_task_sends_the_task_then_closes() {
    let s = Server::start().await;
    let task = s.send_text("echo", "idle").await;
    let (headers, mut stream) = browser_stream(&s, "echo", task["id"].as_str().unwrap(), None).await;
    assert!(headers.contains_key("access-control-allow-origin"), "{headers:?}");
    let events = stream.collect().await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(result_of(&events[0])["kind"], "task");
    assert_eq!(result_of(&events[0])["status"]["state"], "input-required");
}

#[tokio::test]
async fn browser_stream_follows_a_live_task_like_resubscribe() {
    let s = Server::start().await;
    let task = s.send_non_blocking("slow", THIRTY_WORDS).await;
    let task_id = task["id"].as_str().unwrap().to_string();
    let (headers, mut stream) = browser_stream(&s, "slow", &task_id, None).await;
    assert!(headers.contains_key("access-control-allow-origin"), "{headers:?}");
    let events = stream.collect().await;
    let snapshot = result_of(&events[0]);
    assert_eq!(snapshot["kind"], "task");
    assert_ne!(snapshot["status"]["state"], "input-required", "the snapshot must be of the live task");
    assert_increasing(&events);
    assert_final(events.last().unwrap(), "input-required");
    assert_eq!(format!("{}{}", artifacts_text(snapshot), chunks(&events[1..]).concat()), THIRTY_WORDS);
    // The same events as the log holds.
    let logged =
        s.open_stream("slow", "tasks/resubscribe", json!({"id": task_id}), Some(seq(&events[0]))).await.collect().await;
    assert_eq!(keyed(&events[1..]), keyed(&logged));
}

#[tokio::test]
async fn browser_stream_of_unknown_task_is_404() {
    let s = Server::start().await;
    let (_, stream) = browser_stream(&s, "echo", "no-such-task", None).await;
    assert_eq!(stream.status, 404);
    let task = s.send_text("echo", "mine").await;
    let (_, stream) = browser_stream(&s, "done", task["id"].as_str().unwrap(), None).await;
    assert_eq!(stream.status, 404, "another agent's task is not found");
}

// ---------------------------------------------------------------------------------------------
// More streaming behaviour
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn message_stream_to_completed_task_is_invalid_params() {
    let s = Server::start().await;
    let task = s.send_text("done", "over").await;
    let mut message = user_message("more");
    message["taskId"] = task["id"].clone();
    let response = s.stream_request("done", "message/stream", json!({"message": message}), None).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_valid("JSONRPCErrorResponse", &body);
    assert_eq!(body["error"]["code"], -32602);
    assert_eq!(body["id"], "s1");
}

#[tokio::test]
async fn message_stream_ends_with_canceled_when_the_task_is_canceled() {
    let s = Server::start().await;
    let mut stream =
        s.open_stream("slow", "message/stream", json!({"message": user_message(THIRTY_WORDS)}), None).await;
    let mut events = read_until_chunks(&mut stream, 2).await;
    let task_id = result_of(&events[0])["id"].clone();
    let canceled = s.result("slow", "tasks/cancel", json!({"id": task_id})).await;
    assert_eq!(canceled["status"]["state"], "canceled");
    events.extend(stream.collect().await);
    assert_final(events.last().unwrap(), "canceled");
    assert_increasing(&events);
    assert_ne!(chunks(&events).concat(), THIRTY_WORDS, "the turn must stop at the cancel");
}

#[tokio::test]
async fn message_stream_of_a_long_text_loses_and_repeats_nothing() {
    let s = Server::start().await;
    let text: String = (0..2000).map(|i| format!("w{i} ")).collect();
    let mut stream = s.open_stream("echo", "message/stream", json!({"message": user_message(&text)}), None).await;
    let mut events = read_until_chunks(&mut stream, 1).await;
    // Let the turn run ahead of this reader so the live fan-out overflows.
    let task_id = result_of(&events[0])["id"].clone();
    wait_for_state(&s, "echo", task_id.as_str().unwrap(), "input-required").await;
    events.extend(stream.collect().await);
    for pair in events.windows(2) {
        assert_eq!(seq(&pair[1]), seq(&pair[0]) + 1, "ids must be consecutive");
    }
    assert_eq!(chunks(&events).concat(), text);
    assert_final(events.last().unwrap(), "input-required");
}

#[tokio::test]
async fn resubscribe_on_canceled_task_sends_the_task_then_closes() {
    let s = Server::start().await;
    let task = s.send_text("echo", "soon canceled").await;
    s.result("echo", "tasks/cancel", json!({"id": task["id"]})).await;
    let events = s.open_stream("echo", "tasks/resubscribe", json!({"id": task["id"]}), None).await.collect().await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(result_of(&events[0])["kind"], "task");
    assert_eq!(result_of(&events[0])["status"]["state"], "canceled");
}

#[tokio::test]
async fn resubscribe_to_another_agents_task_is_task_not_found() {
    let s = Server::start().await;
    let task = s.send_text("echo", "mine").await;
    let response = s
        .client
        .post(s.agent_url("done"))
        .header("content-type", "application/json")
        .header("accept", "text/event-stream")
        .body(
            json!({"jsonrpc": "2.0", "id": "s1", "method": "tasks/resubscribe", "params": {"id": task["id"]}})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let body = if content_type.starts_with("text/event-stream") {
        SseReader::from_response(response).next().await.expect("one error event").data
    } else {
        response.json::<Value>().await.unwrap()
    };
    assert_eq!(body["error"]["code"], -32001, "{body}");
}

/// Fifty words for the race tests (no chunk delay: the turn runs as fast as the store goes).
fn fifty_words() -> String {
    (0..50).map(|i| format!("word{i}")).collect::<Vec<_>>().join(" ")
}

#[tokio::test]
async fn resubscribe_racing_a_running_turn_never_loses_or_repeats_events() {
    let s = Server::start().await;
    let text = fifty_words();
    for round in 0..15 {
        let task = s.send_non_blocking("echo", &text).await;
        let events = s.open_stream("echo", "tasks/resubscribe", json!({"id": task["id"]}), None).await.collect().await;
        let snapshot = result_of(&events[0]);
        assert_eq!(snapshot["kind"], "task", "round {round}");
        assert_increasing(&events);
        let got = format!("{}{}", artifacts_text(snapshot), chunks(&events[1..]).concat());
        assert_eq!(got, text, "round {round}: snapshot + live chunks must be the text exactly once");
        if snapshot["status"]["state"] == "input-required" {
            assert_eq!(events.len(), 1, "round {round}: an idle task gets only its snapshot");
        } else {
            assert_final(events.last().unwrap(), "input-required");
            let logged = s
                .open_stream("echo", "tasks/resubscribe", json!({"id": task["id"]}), Some(seq(&events[0])))
                .await
                .collect()
                .await;
            assert_eq!(keyed(&events[1..]), keyed(&logged), "round {round}: live events differ from the log");
        }
    }
}

#[tokio::test]
async fn resubscribe_with_last_event_id_racing_a_running_turn_matches_the_log() {
    let s = Server::start().await;
    let text = fifty_words();
    for round in 0..15 {
        let task = s.send_non_blocking("echo", &text).await;
        let resumed =
            s.open_stream("echo", "tasks/resubscribe", json!({"id": task["id"]}), Some(1)).await.collect().await;
        wait_for_state(&s, "echo", task["id"].as_str().unwrap(), "input-required").await;
        let logged =
            s.open_stream("echo", "tasks/resubscribe", json!({"id": task["id"]}), Some(1)).await.collect().await;
        assert_eq!(keyed(&resumed), keyed(&logged), "round {round}");
        assert_eq!(chunks(&resumed).concat(), text, "round {round}");
        assert_final(resumed.last().unwrap(), "input-required");
    }
}

#[tokio::test]
async fn concurrent_streams_each_see_their_whole_turn() {
    let s = Server::start().await;
    let texts: Vec<String> = (0..12).map(|i| format!("stream {i} says {}", fifty_words())).collect();
    let streams = texts.iter().map(|t| stream_all(&s, "echo", t));
    let results = futures::future::join_all(streams).await;
    let mut task_ids = std::collections::BTreeSet::new();
    for (events, text) in results.iter().zip(&texts) {
        assert_eq!(chunks(events).concat(), *text);
        assert_final(events.last().unwrap(), "input-required");
        for pair in events.windows(2) {
            assert_eq!(seq(&pair[1]), seq(&pair[0]) + 1);
        }
        task_ids.insert(result_of(&events[0])["id"].as_str().unwrap().to_string());
    }
    assert_eq!(task_ids.len(), texts.len(), "each stream has its own task");
}
