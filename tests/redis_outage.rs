//! Redis going away under load: new work is refused with a clear 503 within a bounded time,
//! `/health` says so, nothing panics, and once Redis is back everything recovers by itself with
//! no acknowledged task lost.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::*;
use serde_json::{json, Value};

/// What a client was told about one request.
#[derive(Debug)]
enum Answer {
    /// A task id the server acknowledged (completed for blocking sends, submitted otherwise).
    Acknowledged(String),
    /// HTTP 503 with a JSON-RPC error.
    Unavailable(String),
    Other(String),
}

async fn send(server_url: &str, client: &reqwest::Client, blocking: bool, i: usize) -> Answer {
    let body = json!({
        "jsonrpc": "2.0", "id": i, "method": "message/send",
        "params": {"message": user_message(&format!("load {i}")), "configuration": {"blocking": blocking}},
    });
    let response = match client.post(format!("{server_url}/agents/done")).json(&body).send().await {
        Ok(r) => r,
        Err(e) => return Answer::Other(format!("transport: {e}")),
    };
    let status = response.status().as_u16();
    let value: Value = match response.json().await {
        Ok(v) => v,
        Err(e) => return Answer::Other(format!("HTTP {status}, body not JSON: {e}")),
    };
    match (status, value["result"]["id"].as_str(), value["error"]["message"].as_str()) {
        (200, Some(id), _) => Answer::Acknowledged(id.to_string()),
        (503, _, Some(message)) => Answer::Unavailable(message.to_string()),
        _ => Answer::Other(format!("HTTP {status}: {value}")),
    }
}

#[tokio::test]
async fn redis_outage_under_load_refuses_new_work_then_recovers_without_loss() {
    let redis = Arc::new(RedisServer::start());
    let mut server = Server::start_on_redis(CONFIG, &redis, &format!("outage-{}", uuid()), &[]).await;
    let base = server.base.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let answers = Arc::new(Mutex::new(Vec::new()));
    let mut load = Vec::new();
    for worker in 0..4 {
        let (base, stop, answers) = (base.clone(), stop.clone(), answers.clone());
        load.push(tokio::spawn(async move {
            let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
            let mut i = worker * 1_000_000;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let started = Instant::now();
                let answer = send(&base, &client, worker % 2 == 0, i).await;
                answers.lock().unwrap().push((answer, started.elapsed()));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;

    redis.stop();
    // New work is refused quickly and clearly while Redis is away.
    let client = reqwest::Client::new();
    let started = Instant::now();
    let refused = send(&base, &client, true, 1).await;
    assert!(started.elapsed() < Duration::from_secs(10), "refusal took {:?}", started.elapsed());
    match refused {
        Answer::Unavailable(message) => assert!(message.contains("Redis"), "the error names the cause: {message}"),
        other => panic!("expected a 503 JSON-RPC error during the outage, got {other:?}"),
    }
    let (status, health) = server.get_json("/health").await;
    assert_eq!(status, 503, "{health}");
    tokio::time::sleep(Duration::from_secs(2)).await;

    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.get_json("/health").await.0 != 200 {
        assert!(Instant::now() < deadline, "the server did not recover within 20 s of Redis returning");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Work flows again.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match send(&base, &client, true, 2).await {
            Answer::Acknowledged(_) => break,
            other => assert!(Instant::now() < deadline, "new work still fails after recovery: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    assert!(server.child.try_wait().unwrap().is_none(), "the server must survive the outage");

    let answers = std::mem::take(&mut *answers.lock().unwrap());
    let acknowledged: Vec<&String> =
        answers.iter().filter_map(|(a, _)| if let Answer::Acknowledged(id) = a { Some(id) } else { None }).collect();
    let unavailable = answers.iter().filter(|(a, _)| matches!(a, Answer::Unavailable(_))).count();
    let other: Vec<&String> =
        answers.iter().filter_map(|(a, _)| if let Answer::Other(m) = a { Some(m) } else { None }).collect();
    assert!(acknowledged.len() > 20, "load ran before and after the outage: {} acknowledged", acknowledged.len());
    assert!(unavailable > 0, "some load requests met the outage");
    assert!(other.is_empty(), "every failure is a clear 503: {other:?}");
    let slowest = answers.iter().map(|(_, d)| *d).max().unwrap();
    assert!(slowest < Duration::from_secs(15), "no request hung: slowest took {slowest:?}");
    // Every acknowledged task is there and finishes.
    for id in acknowledged {
        wait_for_state(&server, "done", id, "completed").await;
    }
    server.terminate();
}

/// A blocking send's new task is kept back by the instance that runs its turn until the turn
/// ends; when Redis is away by then, the task cannot be written and its caller is told so
/// clearly, within a bounded time, instead of waiting for ever.
#[tokio::test]
async fn a_blocking_send_whose_turn_outlives_redis_gets_a_clear_503() {
    let redis = Arc::new(RedisServer::start());
    let server = Server::start_on_redis(CONFIG, &redis, &format!("outage-{}", uuid()), &[]).await;
    let body = json!({
        "jsonrpc": "2.0", "id": 7, "method": "message/send",
        "params": {"message": user_message(LONG_TEXT)},
    });
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let url = format!("{}/agents/slow", server.base);
    let started = Instant::now();
    let request = tokio::spawn(async move { client.post(url).json(&body).send().await });
    tokio::time::sleep(Duration::from_millis(400)).await;
    redis.stop();
    let response = request.await.unwrap().expect("an answer, not a dropped connection");
    assert!(started.elapsed() < Duration::from_secs(15), "the answer took {:?}", started.elapsed());
    assert_eq!(response.status().as_u16(), 503);
    let value: Value = response.json().await.unwrap();
    assert_eq!(value["id"], 7, "{value}");
    let message = value["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("Redis"), "the error names the cause: {value}");
    redis.restart();
}
