//! JSON-RPC methods of the A2A endpoint: message/send, tasks/get, tasks/cancel, push notification
//! configs and their delivery, the JSON-RPC envelope, batches and agent routing.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// Thirty words, so that the `slow` agent (50 ms per chunk) streams for about 1.5 s.
const THIRTY_WORDS: &str = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen \
                            fifteen sixteen seventeen eighteen nineteen twenty twenty-one twenty-two twenty-three \
                            twenty-four twenty-five twenty-six twenty-seven twenty-eight twenty-nine thirty";

/// The concatenated text of a `parts` array.
fn parts_text(parts: &Value) -> String {
    parts
        .as_array()
        .unwrap_or_else(|| panic!("parts is not an array: {parts}"))
        .iter()
        .filter_map(|p| p["text"].as_str())
        .collect()
}

/// The concatenated text of every artifact of a task.
fn artifacts_text(task: &Value) -> String {
    task["artifacts"].as_array().map(|a| a.iter().map(|a| parts_text(&a["parts"])).collect()).unwrap_or_default()
}

/// A JSON-RPC request object.
fn request(id: Value, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// Asserts a whole response is a valid JSON-RPC error with `code` and returns its error object.
fn expect_error(body: &Value, code: i64) -> Value {
    assert_valid("JSONRPCErrorResponse", body);
    assert!(body.get("result").is_none(), "an error response must not carry a result: {body}");
    assert_eq!(body["error"]["code"], code, "wrong error code: {body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "error without a message: {body}");
    body["error"].clone()
}

/// POSTs a raw body and asserts HTTP 200 (every JSON-RPC answer travels with 200).
async fn post_200(s: &Server, agent: &str, body: &str) -> Value {
    let (status, value) = s.post_raw(agent, body.to_string()).await;
    assert_eq!(status, 200, "HTTP {status} for {body}: {value}");
    value
}

/// Calls `message/send` with `params` and returns the whole response (HTTP 200 asserted).
async fn send(s: &Server, agent: &str, params: Value) -> Value {
    s.call(agent, "message/send", params).await
}

/// A user message continuing `task`.
fn continuation(task: &Value, text: &str) -> Value {
    let mut m = user_message(text);
    m["taskId"] = task["id"].clone();
    m["contextId"] = task["contextId"].clone();
    m
}

/// A task of `echo` after two turns (4 messages in its history).
async fn two_turn_task(s: &Server) -> Value {
    let first = s.send_text("echo", "first turn").await;
    s.result("echo", "message/send", json!({"message": continuation(&first, "second turn")})).await
}

// ---------------------------------------------------------------------------------------------
// message/send
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn message_send_blocks_by_default_until_input_required() {
    let s = Server::start().await;
    let text = "hello brave new world";
    let body = send(&s, "echo", json!({"message": user_message(text)})).await;
    assert_valid("SendMessageSuccessResponse", &body);
    assert_eq!(body["id"], 1);
    let task = &body["result"];
    assert_valid("Task", task);
    assert_eq!(task["kind"], "task");
    assert_eq!(task["status"]["state"], "input-required");
    assert_eq!(artifacts_text(task), text, "artifact chunks must concatenate to the input: {task}");
    let reply = &task["status"]["message"];
    assert_eq!(reply["role"], "agent");
    assert_eq!(reply["kind"], "message");
    assert_eq!(parts_text(&reply["parts"]), text);
    let history = task["history"].as_array().expect("history");
    let roles: Vec<&str> = history.iter().map(|m| m["role"].as_str().unwrap_or("?")).collect();
    assert_eq!(roles, ["user", "agent"], "{task}");
    assert_eq!(parts_text(&history[0]["parts"]), text);
    assert_eq!(history[1]["messageId"], reply["messageId"]);
    for m in history {
        assert_eq!(m["taskId"], task["id"]);
        assert_eq!(m["contextId"], task["contextId"]);
    }
}

#[tokio::test]
async fn message_send_non_blocking_returns_at_once_and_finishes_later() {
    let s = Server::start().await;
    let body =
        send(&s, "slow", json!({"message": user_message(THIRTY_WORDS), "configuration": {"blocking": false}})).await;
    assert_valid("SendMessageSuccessResponse", &body);
    let task = &body["result"];
    assert_valid("Task", task);
    let state = task["status"]["state"].as_str().unwrap_or_default();
    assert!(["submitted", "working"].contains(&state), "a non-blocking send must not wait for the turn: {task}");
    assert_ne!(artifacts_text(task), THIRTY_WORDS, "the whole answer cannot be there yet: {task}");
    let id = task["id"].as_str().unwrap();
    let done = wait_for_state(&s, "slow", id, "input-required").await;
    assert_eq!(artifacts_text(&done), THIRTY_WORDS);
    assert_eq!(done["history"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn message_send_with_task_id_appends_to_history() {
    let s = Server::start().await;
    let first = s.send_text("echo", "first turn").await;
    let second = s.result("echo", "message/send", json!({"message": continuation(&first, "second turn")})).await;
    assert_valid("Task", &second);
    assert_eq!(second["id"], first["id"]);
    assert_eq!(second["contextId"], first["contextId"]);
    assert_eq!(second["status"]["state"], "input-required");
    assert_eq!(parts_text(&second["status"]["message"]["parts"]), "second turn");
    let history = second["history"].as_array().expect("history");
    let texts: Vec<String> = history.iter().map(|m| parts_text(&m["parts"])).collect();
    let roles: Vec<&str> = history.iter().map(|m| m["role"].as_str().unwrap_or("?")).collect();
    assert_eq!(roles, ["user", "agent", "user", "agent"]);
    assert_eq!(texts, ["first turn", "first turn", "second turn", "second turn"]);
    let got = s.result("echo", "tasks/get", json!({"id": first["id"]})).await;
    assert_eq!(got["history"].as_array().map(Vec::len), Some(4), "{got}");
}

#[tokio::test]
async fn message_send_with_mismatched_context_id_is_invalid_params() {
    let s = Server::start().await;
    let first = s.send_text("echo", "first").await;
    let mut m = continuation(&first, "second");
    m["contextId"] = json!("some-other-context");
    let body = send(&s, "echo", json!({"message": m})).await;
    expect_error(&body, -32602);
    let got = s.result("echo", "tasks/get", json!({"id": first["id"]})).await;
    assert_eq!(got["history"].as_array().map(Vec::len), Some(2), "a rejected message must not be recorded: {got}");
}

#[tokio::test]
async fn context_id_is_generated_when_absent() {
    let s = Server::start().await;
    let a = s.send_text("echo", "a").await;
    let b = s.send_text("echo", "b").await;
    let ctx_a = a["contextId"].as_str().unwrap_or_default();
    assert!(!ctx_a.is_empty(), "{a}");
    assert_ne!(a["contextId"], b["contextId"], "independent tasks get distinct contexts");
    assert_eq!(a["history"][0]["contextId"], a["contextId"]);
}

#[tokio::test]
async fn context_id_given_by_the_client_groups_tasks() {
    let s = Server::start().await;
    let ctx = format!("ctx-{}", uuid());
    let mut tasks = Vec::new();
    for text in ["one", "two"] {
        let mut m = user_message(text);
        m["contextId"] = json!(ctx);
        tasks.push(s.result("echo", "message/send", json!({"message": m})).await);
    }
    assert_ne!(tasks[0]["id"], tasks[1]["id"], "two messages without taskId are two tasks");
    for t in &tasks {
        assert_eq!(t["contextId"], ctx.as_str(), "{t}");
        assert_eq!(t["history"][0]["contextId"], ctx.as_str());
        assert_eq!(t["status"]["message"]["contextId"], ctx.as_str());
    }
}

#[tokio::test]
async fn reference_task_ids_are_kept_in_history() {
    let s = Server::start().await;
    let earlier = s.send_text("echo", "earlier").await;
    let mut m = user_message("refers back");
    m["referenceTaskIds"] = json!([earlier["id"]]);
    let task = s.result("echo", "message/send", json!({"message": m})).await;
    assert_valid("Task", &task);
    assert_eq!(task["history"][0]["referenceTaskIds"], json!([earlier["id"]]), "{task}");
    let got = s.result("echo", "tasks/get", json!({"id": task["id"]})).await;
    assert_eq!(got["history"][0]["referenceTaskIds"], json!([earlier["id"]]), "{got}");
}

#[tokio::test]
async fn message_send_to_completed_task_is_invalid_params_naming_the_task() {
    let s = Server::start().await;
    let task = s.send_text("done", "finish me").await;
    assert_eq!(task["status"]["state"], "completed");
    let body = send(&s, "done", json!({"message": continuation(&task, "more")})).await;
    let error = expect_error(&body, -32602);
    let id = task["id"].as_str().unwrap();
    assert!(error["message"].as_str().unwrap().contains(id), "the message should name the task: {error}");
}

#[tokio::test]
async fn message_send_with_unknown_task_id_is_task_not_found() {
    let s = Server::start().await;
    let mut m = user_message("hello");
    m["taskId"] = json!("no-such-task");
    let body = send(&s, "echo", json!({"message": m})).await;
    let error = expect_error(&body, -32001);
    assert!(error["message"].as_str().unwrap().contains("not found"), "{error}");
}

#[tokio::test]
async fn message_send_history_length_limits_the_returned_history() {
    let s = Server::start().await;
    let body = send(&s, "echo", json!({"message": user_message("hi"), "configuration": {"historyLength": 1}})).await;
    let task = &body["result"];
    let history = task["history"].as_array().unwrap_or_else(|| panic!("history must be present: {task}"));
    assert_eq!(history.len(), 1, "{task}");
    assert_eq!(history[0]["role"], "agent", "the most recent message is kept: {task}");
}

// ---------------------------------------------------------------------------------------------
// tasks/get
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn tasks_get_unknown_task_is_task_not_found() {
    let s = Server::start().await;
    let body = s.call("echo", "tasks/get", json!({"id": "no-such-task"})).await;
    let error = expect_error(&body, -32001);
    assert!(error["message"].as_str().unwrap().contains("not found"), "{error}");
}

#[tokio::test]
async fn tasks_get_returns_the_task_with_its_history_by_default() {
    let s = Server::start().await;
    let task = s.send_text("echo", "hello").await;
    let body = s.call("echo", "tasks/get", json!({"id": task["id"]})).await;
    assert_valid("GetTaskSuccessResponse", &body);
    let got = &body["result"];
    assert_eq!(got["id"], task["id"]);
    assert_eq!(got["status"]["state"], "input-required");
    assert_eq!(got["history"].as_array().map(Vec::len), Some(2), "{got}");
    assert_eq!(got["artifacts"], task["artifacts"]);
}

#[tokio::test]
async fn tasks_get_history_length_one_returns_the_most_recent_message() {
    let s = Server::start().await;
    let task = two_turn_task(&s).await;
    let full = task["history"].as_array().unwrap().clone();
    assert_eq!(full.len(), 4);
    let got = s.result("echo", "tasks/get", json!({"id": task["id"], "historyLength": 1})).await;
    assert_valid("Task", &got);
    let history = got["history"].as_array().unwrap_or_else(|| panic!("history must be present: {got}"));
    assert_eq!(history.len(), 1, "{got}");
    assert_eq!(history[0], full[3], "the kept message must be the most recent one");
    let got = s.result("echo", "tasks/get", json!({"id": task["id"], "historyLength": 3})).await;
    assert_eq!(got["history"].as_array().unwrap().as_slice(), &full[1..], "{got}");
}

#[tokio::test]
async fn tasks_get_history_length_zero_returns_the_whole_history() {
    let s = Server::start().await;
    let task = two_turn_task(&s).await;
    let got = s.result("echo", "tasks/get", json!({"id": task["id"], "historyLength": 0})).await;
    assert_eq!(got["history"], task["history"], "{got}");
    let got = s.result("echo", "tasks/get", json!({"id": task["id"], "historyLength": 100})).await;
    assert_eq!(got["history"], task["history"], "{got}");
}

#[tokio::test]
async fn tasks_get_negative_history_length_is_invalid_params() {
    let s = Server::start().await;
    let task = s.send_text("echo", "hello").await;
    let body = s.call("echo", "tasks/get", json!({"id": task["id"], "historyLength": -1})).await;
    let error = expect_error(&body, -32602);
    assert!(error["message"].as_str().unwrap().contains("historyLength"), "{error}");
}

#[tokio::test]
async fn tasks_get_history_is_present_whenever_history_length_is_given() {
    let s = Server::start().await;
    let task = s.send_text("echo", "hello").await;
    for n in [0, 1, 2, 50] {
        let got = s.result("echo", "tasks/get", json!({"id": task["id"], "historyLength": n})).await;
        assert!(got["history"].is_array(), "historyLength {n}: history missing: {got}");
    }
    let got = s.result("echo", "tasks/get", json!({"id": task["id"], "historyLength": null})).await;
    assert!(got["history"].is_array(), "historyLength null: history missing: {got}");
}

// ---------------------------------------------------------------------------------------------
// tasks/cancel
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn cancel_on_input_required_task_returns_it_canceled() {
    let s = Server::start().await;
    let task = s.send_text("echo", "hello").await;
    let body = s.call("echo", "tasks/cancel", json!({"id": task["id"]})).await;
    assert_valid("CancelTaskSuccessResponse", &body);
    let canceled = &body["result"];
    assert_valid("Task", canceled);
    assert_eq!(canceled["id"], task["id"]);
    assert_eq!(canceled["status"]["state"], "canceled");
    let got = s.result("echo", "tasks/get", json!({"id": task["id"]})).await;
    assert_eq!(got["status"]["state"], "canceled");
}

#[tokio::test]
async fn cancel_on_canceled_task_is_not_cancelable() {
    let s = Server::start().await;
    let task = s.send_text("echo", "hello").await;
    s.result("echo", "tasks/cancel", json!({"id": task["id"]})).await;
    let body = s.call("echo", "tasks/cancel", json!({"id": task["id"]})).await;
    expect_error(&body, -32002);
}

#[tokio::test]
async fn cancel_on_completed_task_is_not_cancelable() {
    let s = Server::start().await;
    let task = s.send_text("done", "hello").await;
    assert_eq!(task["status"]["state"], "completed");
    let body = s.call("done", "tasks/cancel", json!({"id": task["id"]})).await;
    expect_error(&body, -32002);
    let got = s.result("done", "tasks/get", json!({"id": task["id"]})).await;
    assert_eq!(got["status"]["state"], "completed");
}

#[tokio::test]
async fn cancel_on_unknown_task_is_task_not_found() {
    let s = Server::start().await;
    let body = s.call("echo", "tasks/cancel", json!({"id": "no-such-task"})).await;
    let error = expect_error(&body, -32001);
    assert!(error["message"].as_str().unwrap().contains("not found"), "{error}");
}

#[tokio::test]
async fn cancel_stops_a_running_turn_for_good() {
    let s = Server::start().await;
    let task = s.send_non_blocking("slow", THIRTY_WORDS).await;
    let id = task["id"].as_str().unwrap().to_string();
    // Wait for the turn to be mid-stream: at least one chunk out.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = s.result("slow", "tasks/get", json!({"id": id})).await;
        if !artifacts_text(&got).is_empty() {
            assert_eq!(got["status"]["state"], "working", "{got}");
            break;
        }
        assert!(Instant::now() < deadline, "no chunk within 10 s: {got}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let canceled = s.result("slow", "tasks/cancel", json!({"id": id})).await;
    assert_valid("Task", &canceled);
    assert_eq!(canceled["status"]["state"], "canceled");
    let right_after = s.result("slow", "tasks/get", json!({"id": id})).await;
    assert_eq!(right_after["status"]["state"], "canceled");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let later = s.result("slow", "tasks/get", json!({"id": id})).await;
    assert_eq!(later["status"]["state"], "canceled", "{later}");
    assert_eq!(later["artifacts"], right_after["artifacts"], "artifacts kept growing after the cancel");
    assert_ne!(artifacts_text(&later), THIRTY_WORDS, "the turn ran to the end despite the cancel");
    assert_eq!(later["history"].as_array().map(Vec::len), Some(1), "no agent reply after a cancel: {later}");
}

// ---------------------------------------------------------------------------------------------
// Push notification configs
// ---------------------------------------------------------------------------------------------

const HOOK: &str = "http://127.0.0.1:9/hook";

#[tokio::test]
async fn push_config_set_defaults_its_id_to_the_task_id() {
    let s = Server::start().await;
    let task = s.send_text("echo", "hello").await;
    let body = s
        .call(
            "echo",
            "tasks/pushNotificationConfig/set",
            json!({"taskId": task["id"], "pushNotificationConfig": {"url": HOOK, "token": "t"}}),
        )
        .await;
    assert_valid("SetTaskPushNotificationConfigSuccessResponse", &body);
    let result = &body["result"];
    assert_eq!(result["taskId"], task["id"]);
    assert_eq!(result["pushNotificationConfig"]["id"], task["id"], "{result}");
    assert_eq!(result["pushNotificationConfig"]["url"], HOOK);
    assert_eq!(result["pushNotificationConfig"]["token"], "t");
}

#[tokio::test]
async fn push_config_list_returns_every_config_of_the_task() {
    let s = Server::start().await;
    let task = s.send_text("echo", "hello").await;
    for (id, path) in [("cfg-a", "a"), ("cfg-b", "b")] {
        let body = s
            .call(
                "echo",
                "tasks/pushNotificationConfig/set",
                json!({"taskId": task["id"], "pushNotificationConfig": {"id": id, "url": format!("{HOOK}/{path}")}}),
            )
            .await;
        assert_valid("SetTaskPushNotificationConfigSuccessResponse", &body);
        assert_eq!(body["result"]["pushNotificationConfig"]["id"], id);
    }
    let body = s.call("echo", "tasks/pushNotificationConfig/list", json!({"id": task["id"]})).await;
    assert_valid("ListTaskPushNotificationConfigSuccessResponse", &body);
    let list = body["result"].as_array().expect("list result is an array");
    let ids: BTreeSet<&str> = list.iter().filter_map(|c| c["pushNotificationConfig"]["id"].as_str()).collect();
    assert_eq!(ids, BTreeSet::from(["cfg-a", "cfg-b"]), "{body}");
    assert!(list.iter().all(|c| c["taskId"] == task["id"]));
}

#[tokio::test]
async fn push_config_get_by_id_returns_that_config() {
    let s = Server::start().await;
    let task = s.send_text("echo", "hello").await;
    for id in ["cfg-a", "cfg-b"] {
        s.result(
            "echo",
            "tasks/pushNotificationConfig/set",
            json!({"taskId": task["id"], "pushNotificationConfig": {"id": id, "url": format!("{HOOK}/{id}")}}),
        )
        .await;
    }
    let body = s
        .call(
            "echo",
            "tasks/pushNotificationConfig/get",
            json!({"id": task["id"], "pushNotificationConfigId": "cfg-b"}),
        )
        .await;
    assert_valid("GetTaskPushNotificationConfigSuccessResponse", &body);
    assert_eq!(body["result"]["taskId"], task["id"]);
    assert_eq!(body["result"]["pushNotificationConfig"]["id"], "cfg-b");
    assert_eq!(body["result"]["pushNotificationConfig"]["url"], format!("{HOOK}/cfg-b"));
}

#[tokio::test]
async fn push_config_get_unknown_config_id_is_an_error() {
    let s = Server::start().await;
    let task = s.send_text("echo", "hello").await;
    s.result(
        "echo",
        "tasks/pushNotificationConfig/set",
        json!({"taskId": task["id"], "pushNotificationConfig": {"url": HOOK}}),
    )
    .await;
    let body = s
        .call("echo", "tasks/pushNotificationConfig/get", json!({"id": task["id"], "pushNotificationConfigId": "nope"}))
        .await;
    assert_valid("JSONRPCErrorResponse", &body);
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("nope"), "{body}");
}

#[tokio::test]
async fn push_config_delete_returns_an_explicit_null_result() {
    let s = Server::start().await;
    let task = s.send_text("echo", "hello").await;
    for id in ["cfg-a", "cfg-b"] {
        s.result(
            "echo",
            "tasks/pushNotificationConfig/set",
            json!({"taskId": task["id"], "pushNotificationConfig": {"id": id, "url": HOOK}}),
        )
        .await;
    }
    let response = s
        .client
        .post(s.agent_url("echo"))
        .header("content-type", "application/json")
        .body(
            request(
                json!(5),
                "tasks/pushNotificationConfig/delete",
                json!({"id": task["id"], "pushNotificationConfigId": "cfg-a"}),
            )
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    let object = body.as_object().unwrap();
    assert!(object.contains_key("result"), "the result key must be present: {text}");
    assert!(object["result"].is_null(), "{text}");
    assert!(!object.contains_key("error"), "{text}");
    assert_valid("DeleteTaskPushNotificationConfigSuccessResponse", &body);
    let list = s.result("echo", "tasks/pushNotificationConfig/list", json!({"id": task["id"]})).await;
    let ids: Vec<&str> =
        list.as_array().unwrap().iter().filter_map(|c| c["pushNotificationConfig"]["id"].as_str()).collect();
    assert_eq!(ids, ["cfg-b"], "{list}");
}

#[tokio::test]
async fn push_config_delete_twice_is_an_error() {
    let s = Server::start().await;
    let task = s.send_text("echo", "hello").await;
    s.result(
        "echo",
        "tasks/pushNotificationConfig/set",
        json!({"taskId": task["id"], "pushNotificationConfig": {"url": HOOK}}),
    )
    .await;
    let params = json!({"id": task["id"], "pushNotificationConfigId": task["id"]});
    let first = s.call("echo", "tasks/pushNotificationConfig/delete", params.clone()).await;
    assert_valid("DeleteTaskPushNotificationConfigSuccessResponse", &first);
    let second = s.call("echo", "tasks/pushNotificationConfig/delete", params).await;
    assert_valid("JSONRPCErrorResponse", &second);
}

#[tokio::test]
async fn push_config_methods_on_unknown_task_are_task_not_found() {
    let s = Server::start().await;
    let calls = [
        (
            "tasks/pushNotificationConfig/set",
            json!({"taskId": "no-such-task", "pushNotificationConfig": {"url": HOOK}}),
        ),
        ("tasks/pushNotificationConfig/get", json!({"id": "no-such-task"})),
        ("tasks/pushNotificationConfig/list", json!({"id": "no-such-task"})),
        ("tasks/pushNotificationConfig/delete", json!({"id": "no-such-task", "pushNotificationConfigId": "x"})),
    ];
    for (method, params) in calls {
        let body = s.call("echo", method, params).await;
        let error = expect_error(&body, -32001);
        assert!(error["message"].as_str().unwrap().contains("not found"), "{method}: {error}");
    }
}

#[tokio::test]
async fn push_config_with_invalid_url_is_invalid_params() {
    let s = Server::start().await;
    let task = s.send_text("echo", "hello").await;
    let body = s
        .call(
            "echo",
            "tasks/pushNotificationConfig/set",
            json!({"taskId": task["id"], "pushNotificationConfig": {"url": "not a url"}}),
        )
        .await;
    let error = expect_error(&body, -32602);
    assert!(error["message"].as_str().unwrap().contains("url"), "{error}");
    let body = send(
        &s,
        "echo",
        json!({"message": user_message("x"), "configuration": {"pushNotificationConfig": {"url": "not a url"}}}),
    )
    .await;
    expect_error(&body, -32602);
}

#[tokio::test]
async fn push_config_legacy_method_aliases_work() {
    let s = Server::start().await;
    let task = s.send_text("echo", "hello").await;
    let body = s
        .call(
            "echo",
            "tasks/pushNotification/set",
            json!({"taskId": task["id"], "pushNotificationConfig": {"id": "legacy", "url": HOOK}}),
        )
        .await;
    assert_valid("SetTaskPushNotificationConfigSuccessResponse", &body);
    let body = s
        .call("echo", "tasks/pushNotification/get", json!({"id": task["id"], "pushNotificationConfigId": "legacy"}))
        .await;
    assert_valid("GetTaskPushNotificationConfigSuccessResponse", &body);
    assert_eq!(body["result"]["pushNotificationConfig"]["id"], "legacy");
    assert_eq!(body["result"]["pushNotificationConfig"]["url"], HOOK);
}

// ---------------------------------------------------------------------------------------------
// Push notification delivery
// ---------------------------------------------------------------------------------------------

/// One request a push receiver got.
#[derive(Debug)]
struct Received {
    headers: axum::http::HeaderMap,
    body: String,
}

#[derive(Clone)]
struct Hook {
    tx: tokio::sync::mpsc::UnboundedSender<Received>,
    /// How many times each distinct body is refused with 500 before it is accepted.
    refusals_per_body: usize,
    seen: Arc<Mutex<HashMap<String, usize>>>,
}

async fn hook(
    axum::extract::State(hook): axum::extract::State<Hook>,
    headers: axum::http::HeaderMap,
    body: String,
) -> axum::http::StatusCode {
    let count = {
        let mut seen = hook.seen.lock().unwrap();
        let count = seen.entry(body.clone()).or_insert(0);
        *count += 1;
        *count
    };
    let _ = hook.tx.send(Received { headers, body });
    if count <= hook.refusals_per_body {
        axum::http::StatusCode::INTERNAL_SERVER_ERROR
    } else {
        axum::http::StatusCode::OK
    }
}

/// A server that may deliver to this machine's receivers (loopback is refused by default) and
/// retries quickly, without resting a receiver that refuses on purpose.
async fn push_server() -> Server {
    let args =
        ["--allow-private-targets", "--delivery-schedule", "100ms,200ms,400ms", "--delivery-breaker-failures", "0"];
    Server::start_with(CONFIG, ":memory:", &args).await
}

/// Starts a push receiver on 127.0.0.1:0; returns its URL and the requests it gets.
async fn push_receiver(refusals_per_body: usize) -> (String, tokio::sync::mpsc::UnboundedReceiver<Received>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind receiver");
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route("/hook", axum::routing::post(hook)).with_state(Hook {
        tx,
        refusals_per_body,
        seen: Arc::new(Mutex::new(HashMap::new())),
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hook"), rx)
}

/// The next request within `deadline`, panicking otherwise.
async fn next_push(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Received>, deadline: Instant, what: &str) -> Received {
    let left = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(left, rx.recv()).await {
        Ok(Some(r)) => r,
        _ => panic!("push receiver: {what} did not arrive in time"),
    }
}

fn header<'a>(r: &'a Received, name: &str) -> &'a str {
    r.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

#[tokio::test]
async fn push_notifications_post_the_task_with_token_and_authorization() {
    let s = push_server().await;
    let (url, mut rx) = push_receiver(0).await;
    let text = "push me through please";
    let task = s
        .result(
            "slow",
            "message/send",
            json!({
                "message": user_message(text),
                "configuration": {
                    "blocking": false,
                    "pushNotificationConfig": {
                        "url": url,
                        "token": "tok-1",
                        "authentication": {"schemes": ["Bearer"], "credentials": "secret"}
                    }
                }
            }),
        )
        .await;
    let id = task["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut states = BTreeSet::new();
    let mut last_body = Value::Null;
    while !states.contains("input-required") {
        let r = next_push(&mut rx, deadline, "the input-required notification").await;
        assert_eq!(header(&r, "x-a2a-notification-token"), "tok-1", "{r:?}");
        assert_eq!(header(&r, "authorization"), "Bearer secret", "{r:?}");
        assert!(header(&r, "content-type").starts_with("application/json"), "{r:?}");
        let body: Value =
            serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("push body not JSON ({e}): {}", r.body));
        assert_valid("Task", &body);
        assert_eq!(body["kind"], "task");
        assert_eq!(body["id"], id.as_str());
        states.insert(body["status"]["state"].as_str().unwrap_or_default().to_string());
        if body["status"]["state"] == "input-required" {
            last_body = body;
        }
    }
    assert_eq!(artifacts_text(&last_body), text, "{last_body}");
    assert_eq!(parts_text(&last_body["status"]["message"]["parts"]), text);
    // Every status change is notified: submitted, working and input-required. Deliveries run
    // concurrently, so wait for the ones still in flight.
    while !(states.contains("submitted") && states.contains("working")) {
        let r = next_push(&mut rx, deadline, "a notification for every status change").await;
        let body: Value = serde_json::from_str(&r.body).unwrap();
        states.insert(body["status"]["state"].as_str().unwrap_or_default().to_string());
    }
}

#[tokio::test]
async fn push_notification_refused_with_500_is_retried() {
    let s = push_server().await;
    let (url, mut rx) = push_receiver(2).await;
    let task = s
        .result(
            "echo",
            "message/send",
            json!({
                "message": user_message("retry me"),
                "configuration": {"pushNotificationConfig": {"url": url, "token": "tok-r"}}
            }),
        )
        .await;
    assert_eq!(task["status"]["state"], "input-required");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut counts: HashMap<String, usize> = HashMap::new();
    loop {
        let r = next_push(&mut rx, deadline, "the third attempt of the input-required notification").await;
        assert_eq!(header(&r, "x-a2a-notification-token"), "tok-r", "retries keep their headers");
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["id"], task["id"]);
        if body["status"]["state"] == "input-required" {
            let n = counts.entry(r.body.clone()).or_insert(0);
            *n += 1;
            if *n >= 3 {
                break;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// JSON-RPC envelope
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn parse_error_answers_32700_with_null_id() {
    let s = Server::start().await;
    let body = post_200(&s, "echo", r#"{"jsonrpc": "2.0", "id": 1, "method": "tasks/get", "params": "#).await;
    expect_error(&body, -32700);
    assert!(body["id"].is_null(), "{body}");
    // A lone request is read once, straight into its envelope: malformed JSON anywhere in it,
    // even after a valid id and method, is still a parse error, and well-formed JSON that is not
    // one request object is an invalid request.
    for malformed in [
        r#"{"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": {"message": {"parts": [}}}"#,
        r#"{"jsonrpc": "2.0", "id": 1, "method": "tasks/get", "params": {"id": "x"}} trailing"#,
        r#"{"jsonrpc": "2.0", "id": 1, "method": "tasks/get", "params": {"id": "x"},}"#,
        r#"{"jsonrpc": "2.0", "id": 1, "method": "tasks/get", "params": {"id": "\u12"}}"#,
        "5 x",
        "",
    ] {
        let body = post_200(&s, "echo", malformed).await;
        expect_error(&body, -32700);
        assert!(body["id"].is_null(), "{malformed}: {body}");
    }
    for not_a_request in ["5", r#""text""#, "null", r#"{"jsonrpc": "2.0", "id": 1, "id": 2, "method": "tasks/get"}"#] {
        let body = post_200(&s, "echo", not_a_request).await;
        expect_error(&body, -32600);
        assert!(body["id"].is_null(), "{not_a_request}: {body}");
    }
}

#[tokio::test]
async fn jsonrpc_version_other_than_2_0_is_invalid_request_with_id_echoed() {
    let s = Server::start().await;
    let body =
        post_200(&s, "echo", r#"{"jsonrpc": "1.0", "id": 7, "method": "tasks/get", "params": {"id": "x"}}"#).await;
    expect_error(&body, -32600);
    assert_eq!(body["id"], 7, "{body}");
    let body = post_200(&s, "echo", r#"{"id": "no-version", "method": "tasks/get", "params": {"id": "x"}}"#).await;
    expect_error(&body, -32600);
    assert_eq!(body["id"], "no-version", "{body}");
}

#[tokio::test]
async fn missing_method_is_invalid_request() {
    let s = Server::start().await;
    let body = post_200(&s, "echo", r#"{"jsonrpc": "2.0", "id": "m1", "params": {}}"#).await;
    let error = expect_error(&body, -32600);
    assert_eq!(body["id"], "m1");
    assert!(error["message"].as_str().unwrap().contains("method"), "{error}");
}

#[tokio::test]
async fn object_id_is_invalid_request_with_null_id() {
    let s = Server::start().await;
    let body =
        post_200(&s, "echo", r#"{"jsonrpc": "2.0", "id": {"a": 1}, "method": "tasks/get", "params": {"id": "x"}}"#)
            .await;
    expect_error(&body, -32600);
    assert!(body["id"].is_null(), "{body}");
}

#[tokio::test]
async fn unknown_method_is_method_not_found() {
    let s = Server::start().await;
    let body = post_200(&s, "echo", r#"{"jsonrpc": "2.0", "id": 3, "method": "tasks/frobnicate", "params": {}}"#).await;
    let error = expect_error(&body, -32601);
    assert_eq!(body["id"], 3);
    assert!(error["message"].as_str().unwrap().contains("tasks/frobnicate"), "{error}");
}

#[tokio::test]
async fn unknown_method_without_id_is_method_not_found_with_null_id() {
    let s = Server::start().await;
    let body = post_200(&s, "echo", r#"{"jsonrpc": "2.0", "method": "tasks/frobnicate", "params": {}}"#).await;
    expect_error(&body, -32601);
    assert!(body.as_object().unwrap().contains_key("id"), "the id key must be present: {body}");
    assert!(body["id"].is_null(), "{body}");
}

#[tokio::test]
async fn params_as_array_is_invalid_params() {
    let s = Server::start().await;
    let body = post_200(&s, "echo", r#"{"jsonrpc": "2.0", "id": 4, "method": "tasks/get", "params": ["x"]}"#).await;
    expect_error(&body, -32602);
    assert_eq!(body["id"], 4);
}

#[tokio::test]
async fn message_send_without_params_is_invalid_params() {
    let s = Server::start().await;
    let body = post_200(&s, "echo", r#"{"jsonrpc": "2.0", "id": 5, "method": "message/send"}"#).await;
    expect_error(&body, -32602);
    assert_eq!(body["id"], 5);
}

#[tokio::test]
async fn null_message_is_invalid_params() {
    let s = Server::start().await;
    let body = send(&s, "echo", json!({"message": null})).await;
    let error = expect_error(&body, -32602);
    assert!(error["message"].as_str().unwrap().contains("params.message must be an object"), "{error}");
}

#[tokio::test]
async fn empty_parts_is_invalid_params() {
    let s = Server::start().await;
    let mut m = user_message("x");
    m["parts"] = json!([]);
    let body = send(&s, "echo", json!({"message": m})).await;
    let error = expect_error(&body, -32602);
    assert_eq!(error["message"], "params.message.parts must not be empty");
}

#[tokio::test]
async fn unknown_part_kind_is_invalid_params() {
    let s = Server::start().await;
    let mut m = user_message("x");
    m["parts"] = json!([{"kind": "video", "url": "http://example.com/v.mp4"}]);
    let body = send(&s, "echo", json!({"message": m})).await;
    let error = expect_error(&body, -32602);
    assert!(error["message"].as_str().unwrap().contains("video"), "{error}");
}

#[tokio::test]
async fn part_without_kind_is_accepted_and_kind_is_emitted() {
    let s = Server::start().await;
    let message = json!({"messageId": uuid(), "role": "user", "parts": [{"text": "no kinds here"}]});
    let task = s.result("echo", "message/send", json!({"message": message})).await;
    assert_valid("Task", &task);
    assert_eq!(task["status"]["state"], "input-required");
    assert_eq!(task["history"][0]["kind"], "message", "{task}");
    assert_eq!(task["history"][0]["parts"][0]["kind"], "text", "{task}");
    assert_eq!(artifacts_text(&task), "no kinds here");
}

#[tokio::test]
async fn message_without_role_is_invalid_params() {
    let s = Server::start().await;
    let mut m = user_message("x");
    m.as_object_mut().unwrap().remove("role");
    let body = send(&s, "echo", json!({"message": m})).await;
    let error = expect_error(&body, -32602);
    assert!(error["message"].as_str().unwrap().contains("role"), "{error}");
}

#[tokio::test]
async fn message_without_message_id_is_invalid_params() {
    let s = Server::start().await;
    let mut m = user_message("x");
    m.as_object_mut().unwrap().remove("messageId");
    let body = send(&s, "echo", json!({"message": m})).await;
    let error = expect_error(&body, -32602);
    assert!(error["message"].as_str().unwrap().contains("messageId"), "{error}");
}

// ---------------------------------------------------------------------------------------------
// Batches
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn batch_of_unary_calls_answers_each_in_order() {
    let s = Server::start().await;
    let task = s.send_text("echo", "hello").await;
    let batch = json!([
        request(json!("a"), "tasks/get", json!({"id": task["id"]})),
        request(json!(2), "tasks/get", json!({"id": "no-such-task"})),
        request(json!("c"), "message/send", json!({"message": user_message("batched")})),
    ]);
    let (status, body) = s.post_json("echo", &batch).await;
    assert_eq!(status, 200);
    let responses = body.as_array().unwrap_or_else(|| panic!("a batch answers with an array: {body}"));
    assert_eq!(responses.len(), 3, "{body}");
    let ids: Vec<&Value> = responses.iter().map(|r| &r["id"]).collect();
    assert_eq!(ids, [&json!("a"), &json!(2), &json!("c")]);
    assert_valid("GetTaskSuccessResponse", &responses[0]);
    assert_eq!(responses[0]["result"]["id"], task["id"]);
    expect_error(&responses[1], -32001);
    assert_valid("SendMessageSuccessResponse", &responses[2]);
    assert_eq!(responses[2]["result"]["status"]["state"], "input-required");
    assert_eq!(artifacts_text(&responses[2]["result"]), "batched");
}

#[tokio::test]
async fn empty_batch_is_invalid_request() {
    let s = Server::start().await;
    let body = post_200(&s, "echo", "[]").await;
    expect_error(&body, -32600);
    assert!(body["id"].is_null(), "{body}");
}

#[tokio::test]
async fn streaming_method_in_batch_is_invalid_request_for_that_element() {
    let s = Server::start().await;
    let task = s.send_text("echo", "hello").await;
    let batch = json!([
        request(json!(1), "tasks/get", json!({"id": task["id"]})),
        request(json!(2), "message/stream", json!({"message": user_message("streamed")})),
    ]);
    let (status, body) = s.post_json("echo", &batch).await;
    assert_eq!(status, 200);
    let responses = body.as_array().unwrap_or_else(|| panic!("a batch answers with an array: {body}"));
    assert_eq!(responses.len(), 2, "{body}");
    assert_eq!(responses[0]["id"], 1);
    assert_eq!(responses[0]["result"]["id"], task["id"]);
    assert_eq!(responses[1]["id"], 2);
    expect_error(&responses[1], -32600);
}

// ---------------------------------------------------------------------------------------------
// Extended card, agents and routing
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn authenticated_extended_card_without_params_is_not_configured() {
    let s = Server::start().await;
    let body =
        post_200(&s, "echo", r#"{"jsonrpc": "2.0", "id": 9, "method": "agent/getAuthenticatedExtendedCard"}"#).await;
    expect_error(&body, -32007);
    assert_eq!(body["id"], 9);
}

#[tokio::test]
async fn authenticated_extended_card_with_empty_params_is_not_configured() {
    let s = Server::start().await;
    let body = s.call("echo", "agent/getAuthenticatedExtendedCard", json!({})).await;
    expect_error(&body, -32007);
}

#[tokio::test]
async fn post_to_unknown_agent_is_404_json_error() {
    let s = Server::start().await;
    let (status, body) = s.post_json("nobody", &request(json!(1), "tasks/get", json!({"id": "x"}))).await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].is_string(), "{body}");
}

#[tokio::test]
async fn private_agent_is_404_for_post_and_card() {
    let s = Server::start().await;
    let (status, body) =
        s.post_json("hidden", &request(json!(1), "message/send", json!({"message": user_message("x")}))).await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].is_string(), "{body}");
    for path in ["/agents/hidden", "/agents/hidden/.well-known/agent-card.json"] {
        let (status, body) = s.get_json(path).await;
        assert_eq!(status, 404, "GET {path}: {body}");
        assert!(body["error"].is_string(), "GET {path}: {body}");
    }
}

#[tokio::test]
async fn task_of_another_agent_is_task_not_found() {
    let s = Server::start().await;
    let task = s.send_text("echo", "mine").await;
    let body = s.call("done", "tasks/get", json!({"id": task["id"]})).await;
    expect_error(&body, -32001);
    let body = s.call("done", "tasks/cancel", json!({"id": task["id"]})).await;
    expect_error(&body, -32001);
    let body = send(&s, "done", json!({"message": continuation(&task, "hijack")})).await;
    expect_error(&body, -32001);
    let got = s.result("echo", "tasks/get", json!({"id": task["id"]})).await;
    assert_eq!(got["status"]["state"], "input-required");
    assert_eq!(got["history"].as_array().map(Vec::len), Some(2));
}

// ---------------------------------------------------------------------------------------------
// More envelope and params edge cases
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn request_that_is_not_an_object_is_invalid_request_with_null_id() {
    let s = Server::start().await;
    for body in [r#""hello""#, "42", "null", "true"] {
        let response = post_200(&s, "echo", body).await;
        expect_error(&response, -32600);
        assert!(response["id"].is_null(), "{body}: {response}");
    }
}

#[tokio::test]
async fn boolean_or_array_id_is_invalid_request_with_null_id() {
    let s = Server::start().await;
    for id in ["true", "[1]"] {
        let body = format!(r#"{{"jsonrpc": "2.0", "id": {id}, "method": "tasks/get", "params": {{"id": "x"}}}}"#);
        let response = post_200(&s, "echo", &body).await;
        expect_error(&response, -32600);
        assert!(response["id"].is_null(), "{body}: {response}");
    }
}

#[tokio::test]
async fn batch_with_non_object_element_answers_invalid_request_for_it() {
    let s = Server::start().await;
    let task = s.send_text("echo", "hello").await;
    let batch = json!([1, request(json!("b"), "tasks/get", json!({"id": task["id"]}))]);
    let (status, body) = s.post_json("echo", &batch).await;
    assert_eq!(status, 200);
    let responses = body.as_array().unwrap_or_else(|| panic!("a batch answers with an array: {body}"));
    assert_eq!(responses.len(), 2, "{body}");
    expect_error(&responses[0], -32600);
    assert!(responses[0]["id"].is_null());
    assert_eq!(responses[1]["id"], "b");
    assert_eq!(responses[1]["result"]["id"], task["id"]);
}

#[tokio::test]
async fn null_params_is_invalid_params() {
    let s = Server::start().await;
    for method in ["tasks/get", "tasks/cancel", "message/send", "tasks/pushNotificationConfig/list"] {
        let body = post_200(&s, "echo", &request(json!(1), method, Value::Null).to_string()).await;
        expect_error(&body, -32602);
    }
}

#[tokio::test]
async fn null_optional_message_fields_are_treated_as_absent() {
    let s = Server::start().await;
    let mut m = user_message("nulls everywhere");
    m["taskId"] = Value::Null;
    m["contextId"] = Value::Null;
    m["metadata"] = Value::Null;
    m["referenceTaskIds"] = Value::Null;
    let task = s.result("echo", "message/send", json!({"message": m, "configuration": null, "metadata": null})).await;
    assert_valid("Task", &task);
    assert_eq!(task["status"]["state"], "input-required");
    assert!(task["contextId"].as_str().is_some_and(|c| !c.is_empty()), "{task}");
    assert_eq!(artifacts_text(&task), "nulls everywhere");
}

#[tokio::test]
async fn message_send_negative_history_length_is_invalid_params() {
    let s = Server::start().await;
    let body = send(&s, "echo", json!({"message": user_message("x"), "configuration": {"historyLength": -1}})).await;
    let error = expect_error(&body, -32602);
    assert!(error["message"].as_str().unwrap().contains("historyLength"), "{error}");
}

#[tokio::test]
async fn malformed_parts_are_invalid_params() {
    let s = Server::start().await;
    let bad_parts = [
        json!([null]),
        json!([{}]),
        json!([{"kind": "text"}]),
        json!([{"kind": "text", "text": 5}]),
        json!([{"kind": "file", "file": null}]),
        json!([{"kind": "data", "data": null}]),
        json!("not an array"),
    ];
    for parts in bad_parts {
        let mut m = user_message("x");
        m["parts"] = parts.clone();
        let body = send(&s, "echo", json!({"message": m})).await;
        let error = expect_error(&body, -32602);
        assert!(error["message"].as_str().unwrap().contains("parts"), "parts {parts}: {error}");
    }
}

#[tokio::test]
async fn message_with_unknown_role_or_kind_is_invalid_params() {
    let s = Server::start().await;
    let mut m = user_message("x");
    m["role"] = json!("system");
    expect_error(&send(&s, "echo", json!({"message": m})).await, -32602);
    let mut m = user_message("x");
    m["kind"] = json!("task");
    expect_error(&send(&s, "echo", json!({"message": m})).await, -32602);
    let mut m = user_message("x");
    m["messageId"] = json!("");
    expect_error(&send(&s, "echo", json!({"message": m})).await, -32602);
}

#[tokio::test]
async fn file_and_data_parts_are_kept_in_history() {
    let s = Server::start().await;
    let parts = json!([
        {"kind": "text", "text": "see attached"},
        {"kind": "file", "file": {"uri": "https://example.com/a.pdf", "mimeType": "application/pdf"}},
        {"kind": "file", "file": {"bytes": "aGVsbG8=", "name": "hello.txt"}},
        {"data": {"answer": 42}}
    ]);
    let message = json!({"messageId": uuid(), "role": "user", "parts": parts});
    let task = s.result("echo", "message/send", json!({"message": message})).await;
    assert_valid("Task", &task);
    let kept = &task["history"][0]["parts"];
    assert_eq!(kept[0], json!({"kind": "text", "text": "see attached"}));
    assert_eq!(
        kept[1],
        json!({"kind": "file", "file": {"uri": "https://example.com/a.pdf", "mimeType": "application/pdf"}})
    );
    assert_eq!(kept[2], json!({"kind": "file", "file": {"bytes": "aGVsbG8=", "name": "hello.txt"}}));
    assert_eq!(kept[3], json!({"kind": "data", "data": {"answer": 42}}));
    assert_eq!(artifacts_text(&task), "see attached");
}

#[tokio::test]
async fn message_metadata_is_kept_in_history() {
    let s = Server::start().await;
    let mut m = user_message("with metadata");
    m["metadata"] = json!({"trace": "abc", "n": 1});
    let task = s.result("echo", "message/send", json!({"message": m})).await;
    assert_eq!(task["history"][0]["metadata"], json!({"trace": "abc", "n": 1}), "{task}");
}

// ---------------------------------------------------------------------------------------------
// More push notification behaviour
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn push_config_set_with_an_existing_id_replaces_it() {
    let s = Server::start().await;
    let task = s.send_text("echo", "hello").await;
    for url in [format!("{HOOK}/old"), format!("{HOOK}/new")] {
        s.result(
            "echo",
            "tasks/pushNotificationConfig/set",
            json!({"taskId": task["id"], "pushNotificationConfig": {"id": "same", "url": url}}),
        )
        .await;
    }
    let list = s.result("echo", "tasks/pushNotificationConfig/list", json!({"id": task["id"]})).await;
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["pushNotificationConfig"]["url"], format!("{HOOK}/new"));
}

#[tokio::test]
async fn push_config_given_with_message_send_is_listed_with_the_task_id() {
    let s = push_server().await;
    let (url, _requests) = push_receiver(0).await;
    let task = s
        .result(
            "echo",
            "message/send",
            json!({
                "message": user_message("hi"),
                "configuration": {"pushNotificationConfig": {"url": url, "token": "t"}}
            }),
        )
        .await;
    let body = s.call("echo", "tasks/pushNotificationConfig/list", json!({"id": task["id"]})).await;
    assert_valid("ListTaskPushNotificationConfigSuccessResponse", &body);
    let list = body["result"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{body}");
    assert_eq!(list[0]["pushNotificationConfig"]["id"], task["id"]);
    assert_eq!(list[0]["pushNotificationConfig"]["token"], "t");
}

/// Waits until the receiver got a notification whose task is in `state`; returns its body.
async fn wait_for_push_state(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Received>,
    state: &str,
) -> (Received, Value) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = next_push(rx, deadline, &format!("a notification with state {state}")).await;
        let body: Value = serde_json::from_str(&r.body).unwrap();
        if body["status"]["state"] == state {
            return (r, body);
        }
    }
}

#[tokio::test]
async fn push_notifications_go_to_every_config_of_the_task() {
    let s = push_server().await;
    let task = s.send_text("echo", "first").await;
    let (url_a, mut rx_a) = push_receiver(0).await;
    let (url_b, mut rx_b) = push_receiver(0).await;
    for (id, url) in [("a", &url_a), ("b", &url_b)] {
        s.result(
            "echo",
            "tasks/pushNotificationConfig/set",
            json!({
                "taskId": task["id"],
                "pushNotificationConfig": {"id": id, "url": url, "token": format!("tok-{id}")}
            }),
        )
        .await;
    }
    let second = s.result("echo", "message/send", json!({"message": continuation(&task, "second")})).await;
    assert_eq!(second["status"]["state"], "input-required");
    for (rx, token) in [(&mut rx_a, "tok-a"), (&mut rx_b, "tok-b")] {
        let (r, body) = wait_for_push_state(rx, "input-required").await;
        assert_eq!(header(&r, "x-a2a-notification-token"), token);
        assert_eq!(body["id"], task["id"]);
        assert_eq!(body["history"].as_array().map(Vec::len), Some(4), "{body}");
    }
}

#[tokio::test]
async fn push_notification_is_sent_when_a_task_is_canceled() {
    let s = push_server().await;
    let task = s.send_text("echo", "hello").await;
    let (url, mut rx) = push_receiver(0).await;
    s.result(
        "echo",
        "tasks/pushNotificationConfig/set",
        json!({"taskId": task["id"], "pushNotificationConfig": {"url": url}}),
    )
    .await;
    s.result("echo", "tasks/cancel", json!({"id": task["id"]})).await;
    let (_, body) = wait_for_push_state(&mut rx, "canceled").await;
    assert_valid("Task", &body);
    assert_eq!(body["id"], task["id"]);
}

#[tokio::test]
async fn push_authentication_uses_the_first_scheme() {
    let s = push_server().await;
    let (url, mut rx) = push_receiver(0).await;
    s.result(
        "echo",
        "message/send",
        json!({
            "message": user_message("basic auth"),
            "configuration": {"pushNotificationConfig": {
                "url": url, "authentication": {"schemes": ["Basic"], "credentials": "dXNlcjpwdw=="}
            }}
        }),
    )
    .await;
    let (r, _) = wait_for_push_state(&mut rx, "input-required").await;
    assert_eq!(header(&r, "authorization"), "Basic dXNlcjpwdw==");
    assert!(r.headers.get("x-a2a-notification-token").is_none(), "no token was configured: {r:?}");
}

#[tokio::test]
async fn blocking_send_of_a_long_text_returns_the_whole_answer() {
    let s = Server::start().await;
    let text: String = (0..2000).map(|i| format!("w{i} ")).collect();
    let task = s.send_text("echo", &text).await;
    assert_eq!(task["status"]["state"], "input-required");
    assert_eq!(artifacts_text(&task), text);
}

#[tokio::test]
async fn non_ascii_text_is_echoed_exactly() {
    let s = Server::start().await;
    let text = "héllo wörld — 你好 世界 🌍🚀 naïve\ttabs\nand lines";
    let task = s.send_text("echo", text).await;
    assert_eq!(artifacts_text(&task), text);
    assert_eq!(parts_text(&task["status"]["message"]["parts"]), text);
    assert_eq!(parts_text(&task["history"][0]["parts"]), text);
}

#[tokio::test]
async fn large_integer_id_is_echoed_verbatim() {
    let s = Server::start().await;
    // JSON-RPC: the response id MUST be the same value as the request's. An integer beyond 64 bits
    // is still a valid JSON number and a valid A2A id ("integer").
    let id = "123456789012345678901234567890";
    let body =
        format!(r#"{{"jsonrpc": "2.0", "id": {id}, "method": "tasks/get", "params": {{"id": "no-such-task"}}}}"#);
    let response =
        s.client.post(s.agent_url("echo")).header("content-type", "application/json").body(body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(text.contains(&format!(r#""id":{id}"#)), "the id was not echoed verbatim: {text}");
}

#[tokio::test]
async fn blocking_send_returns_when_its_task_is_canceled() {
    let s = Server::start().await;
    // A first short turn gives us the task id; the second, long turn is sent blocking.
    let task = s.send_text("slow", "hi").await;
    let id = task["id"].as_str().unwrap().to_string();
    let blocking = s.result("slow", "message/send", json!({"message": continuation(&task, THIRTY_WORDS)}));
    let canceler = async {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = s.result("slow", "tasks/get", json!({"id": id})).await;
            if got["status"]["state"] == "working" && artifacts_text(&got).len() > "hi".len() {
                break;
            }
            assert!(Instant::now() < deadline, "the second turn never started: {got}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        s.result("slow", "tasks/cancel", json!({"id": id})).await
    };
    let (returned, canceled) = tokio::join!(blocking, canceler);
    assert_eq!(canceled["status"]["state"], "canceled");
    assert_eq!(returned["id"], id.as_str());
    assert_eq!(returned["status"]["state"], "canceled", "the blocking send must return the canceled task");
}

#[tokio::test]
async fn pretty_printed_requests_with_surrounding_whitespace_are_accepted() {
    let s = Server::start().await;
    let task = s.send_text("echo", "hello").await;
    let single = serde_json::to_string_pretty(&request(json!("p1"), "tasks/get", json!({"id": task["id"]}))).unwrap();
    let body = post_200(&s, "echo", &format!("\n  {single}\n\n")).await;
    assert_eq!(body["id"], "p1", "{body}");
    assert_eq!(body["result"]["id"], task["id"], "{body}");
    let batch =
        serde_json::to_string_pretty(&json!([request(json!(1), "tasks/get", json!({"id": task["id"]}))])).unwrap();
    let body = post_200(&s, "echo", &format!(" \r\n\t{batch} \n")).await;
    let responses = body.as_array().unwrap_or_else(|| panic!("a batch answers with an array: {body}"));
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0]["result"]["id"], task["id"], "{body}");
}

#[tokio::test]
async fn method_of_wrong_type_is_invalid_request_with_id_echoed() {
    let s = Server::start().await;
    let body = post_200(&s, "echo", r#"{"jsonrpc": "2.0", "id": 11, "method": 42, "params": {}}"#).await;
    expect_error(&body, -32600);
    assert_eq!(body["id"], 11, "{body}");
    let body =
        post_200(&s, "echo", r#"{"jsonrpc": 2.0, "id": "v", "method": "tasks/get", "params": {"id": "x"}}"#).await;
    expect_error(&body, -32600);
    assert_eq!(body["id"], "v", "{body}");
}

#[tokio::test]
async fn push_config_with_empty_id_given_with_message_send_gets_the_task_id() {
    let s = push_server().await;
    let (url, _requests) = push_receiver(0).await;
    let task = s
        .result(
            "echo",
            "message/send",
            json!({
                "message": user_message("hi"),
                "configuration": {"pushNotificationConfig": {"id": "", "url": url}}
            }),
        )
        .await;
    // `set` treats an empty id as absent; the same config given with the message must too,
    // otherwise it is stored under "" and can never be fetched or deleted by id.
    let list = s.result("echo", "tasks/pushNotificationConfig/list", json!({"id": task["id"]})).await;
    let ids: Vec<&Value> = list.as_array().unwrap().iter().map(|c| &c["pushNotificationConfig"]["id"]).collect();
    assert_eq!(ids, [&task["id"]], "{list}");
    let body = s
        .call(
            "echo",
            "tasks/pushNotificationConfig/delete",
            json!({"id": task["id"], "pushNotificationConfigId": task["id"]}),
        )
        .await;
    assert_valid("DeleteTaskPushNotificationConfigSuccessResponse", &body);
}
