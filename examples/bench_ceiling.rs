//! The ceiling of the `make bench` harness: the smallest axum server that answers the
//! benchmark's `message/send` with a completed task, storing nothing and running no agent.
//! It parses each JSON-RPC request and serializes a task of the shape switchyard returns
//! (history with the user's and the agent's message, one artifact), on the same runtime,
//! allocator and HTTP stack, so its req/s is what HTTP, JSON and the load generator cost on
//! this machine: an A2A server that does real work cannot exceed it here. `bench/run.sh`
//! runs it as the `ceiling` row.
//!
//!     cargo run --release --example bench_ceiling -- PORT

use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

async fn send(Json(request): Json<Value>) -> Json<Value> {
    let message = &request["params"]["message"];
    let text = message["parts"][0]["text"].as_str().unwrap_or_default();
    let (task_id, context_id) = (uuid::Uuid::new_v4().to_string(), uuid::Uuid::new_v4().to_string());
    let agent = json!({
        "kind": "message", "messageId": uuid::Uuid::new_v4().to_string(), "role": "agent",
        "parts": [{"kind": "text", "text": text}], "taskId": task_id, "contextId": context_id,
    });
    Json(json!({
        "jsonrpc": "2.0",
        "id": request["id"],
        "result": {
            "kind": "task", "id": task_id, "contextId": context_id,
            "status": {"state": "completed", "message": agent, "timestamp": "2026-01-01T00:00:00.000Z"},
            "history": [message, agent],
            "artifacts": [{"artifactId": uuid::Uuid::new_v4().to_string(), "parts": [{"kind": "text", "text": text}]}],
        },
    }))
}

#[tokio::main]
async fn main() {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
    println!("bench ceiling listening on http://{}", listener.local_addr().expect("address"));
    axum::serve(listener, Router::new().route("/agents/{name}", post(send))).await.expect("serve");
}
