mod common;
use common::*;
use serde_json::json;

#[tokio::test]
async fn send_returns_input_required_task() {
    let s = Server::start().await;
    let task = s.send_text("echo", "hello world").await;
    assert_eq!(task["status"]["state"], "input-required");
    assert_valid("Task", &task);
    let _ = json!({});
}
