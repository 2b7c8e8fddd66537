//! Several instances on one Redis: a task is visible, followed and canceled from any instance,
//! work survives the death of the instance running it, and clients never see a chunk twice;
//! a capture session is shared by every instance.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::redis::RedisServer;
use common::*;
use serde_json::json;

async fn deployment(redis: &Arc<RedisServer>, instances: usize, args: &[&str]) -> (String, Vec<Server>) {
    let prefix = format!("scale-{}", uuid());
    let mut servers = Vec::new();
    for _ in 0..instances {
        servers.push(Server::start_on_redis(CONFIG, redis, &prefix, args).await);
    }
    (prefix, servers)
}

/// Event ids strictly increase: nothing is seen twice or out of order.
fn assert_increasing_ids(events: &[SseEvent]) {
    let ids: Vec<u64> = events.iter().filter_map(|e| e.id.as_deref().and_then(|id| id.parse().ok())).collect();
    assert_eq!(ids.len(), events.len(), "every event carries an id");
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids must strictly increase: {ids:?}");
}

#[tokio::test]
async fn stream_on_one_resubscribe_on_another_cancel_from_a_third() {
    let redis = Arc::new(RedisServer::start());
    let (_, servers) = deployment(&redis, 3, &[]).await;
    let (a, b, c) = (&servers[0], &servers[1], &servers[2]);

    let mut streamed = a.open_stream("slow", "message/stream", json!({"message": user_message(LONG_TEXT)}), None).await;
    let first = streamed.next().await.expect("Task event");
    let task_id = result_of(&first)["id"].as_str().unwrap().to_string();
    let mut seen_on_a = vec![first];
    for _ in 0..3 {
        seen_on_a.push(streamed.next().await.expect("event"));
    }

    // Another instance follows the same task from its current state.
    let mut followed = b.open_stream("slow", "tasks/resubscribe", json!({"id": task_id}), None).await;
    let snapshot = followed.next().await.expect("snapshot");
    assert_eq!(result_of(&snapshot)["kind"], "task");
    assert_eq!(result_of(&snapshot)["status"]["state"], "working");

    // A third instance cancels it; the instance running the turn stops it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let canceled = c.result("slow", "tasks/cancel", json!({"id": task_id})).await;
    assert_eq!(canceled["status"]["state"], "canceled");

    seen_on_a.extend(streamed.collect().await);
    let mut seen_on_b = vec![snapshot];
    seen_on_b.extend(followed.collect().await);
    for events in [&seen_on_a, &seen_on_b] {
        assert_increasing_ids(events);
        let last = result_of(events.last().unwrap());
        assert_eq!((last["kind"].as_str(), last["final"].as_bool()), (Some("status-update"), Some(true)));
        assert_eq!(last["status"]["state"], "canceled");
    }
    // B saw, after its snapshot, exactly the events A saw after the same point.
    let snapshot_seq: u64 = seen_on_b[0].id.as_deref().unwrap().parse().unwrap();
    let tail_of = |events: &[SseEvent]| -> Vec<String> {
        events
            .iter()
            .filter(|e| e.id.as_deref().unwrap().parse::<u64>().unwrap() > snapshot_seq)
            .map(|e| e.data.to_string())
            .collect()
    };
    assert_eq!(tail_of(&seen_on_a), tail_of(&seen_on_b[1..]));

    // The turn really stopped: no chunk is added after the cancel.
    let before = b.result("slow", "tasks/get", json!({"id": task_id})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = a.result("slow", "tasks/get", json!({"id": task_id})).await;
    assert_eq!(after["status"]["state"], "canceled");
    assert_eq!(artifact_text(&before), artifact_text(&after));
    assert!(artifact_text(&after).len() < LONG_TEXT.len(), "the turn was canceled mid-way");
}

#[tokio::test]
async fn tasks_submitted_anywhere_complete_and_are_visible_everywhere() {
    let redis = Arc::new(RedisServer::start());
    let (_, servers) = deployment(&redis, 2, &[]).await;
    let mut ids = Vec::new();
    for i in 0..40 {
        let task = servers[i % 2].send_non_blocking("done", &format!("task {i}")).await;
        ids.push(task["id"].as_str().unwrap().to_string());
    }
    for (i, id) in ids.iter().enumerate() {
        let task = wait_for_state(&servers[(i + 1) % 2], "done", id, "completed").await;
        assert_eq!(artifact_text(&task), format!("task {i}"));
    }
    // A blocking send answers with the finished task whichever instance ran it.
    for server in &servers {
        let task = server.send_text("done", "blocking").await;
        assert_eq!(task["status"]["state"], "completed");
    }
}

#[tokio::test]
async fn a_turn_of_a_killed_instance_finishes_on_another_without_duplicate_chunks() {
    let redis = Arc::new(RedisServer::start());
    let prefix = format!("scale-{}", uuid());
    // Only the first instance runs at first, so the turn is surely on it.
    let mut doomed = Server::start_on_redis(CONFIG, &redis, &prefix, &[]).await;
    let task = doomed.send_non_blocking("slow", LONG_TEXT).await;
    let task_id = task["id"].as_str().unwrap().to_string();
    let working = wait_for_state(&doomed, "slow", &task_id, "working").await;
    let survivor = Server::start_on_redis(CONFIG, &redis, &prefix, &[]).await;
    // A client follows on the survivor while the doomed instance runs the turn.
    let mut followed = survivor.open_stream("slow", "tasks/resubscribe", json!({"id": task_id}), None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    doomed.kill9();

    let done = wait_for_state(&survivor, "slow", &task_id, "input-required").await;
    assert_eq!(artifact_text(&done), LONG_TEXT, "the re-run turn must not duplicate chunks");
    assert_ne!(done["status"]["timestamp"], working["status"]["timestamp"]);
    let events = followed.collect().await;
    assert_increasing_ids(&events);
    assert_eq!(result_of(events.last().unwrap())["status"]["state"], "input-required");
    // The log replayed from the start holds each chunk once.
    assert_eq!(replayed_chunks(&survivor, "slow", &task_id).await, LONG_TEXT);
}

#[tokio::test]
async fn an_instance_takes_at_most_its_prefetch_ahead_of_its_workers() {
    let redis = Arc::new(RedisServer::start());
    let prefix = format!("scale-{}", uuid());
    // A long visibility timeout: what the killed instance holds stays held for the test.
    let held = ["--visibility-timeout", "60s"];
    let mut a = Server::start_on_redis(
        CONFIG,
        &redis,
        &prefix,
        &[&held[..], &["--workers", "1", "--redis-prefetch", "2"]].concat(),
    )
    .await;
    // A turn of about 3 s keeps A's only worker busy.
    let long = format!("{LONG_TEXT} {LONG_TEXT}");
    let first = a.send_non_blocking("slow", &long).await["id"].as_str().unwrap().to_string();
    wait_for_state(&a, "slow", &first, "working").await;
    // A blocking read A's queue reader issued while its worker was idle lasts up to 1 s and
    // may take one more entry; past it, A takes turns only through its prefetch.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // Its only worker is busy: two more turns wait on A, the last one stays in the stream.
    let mut queued = Vec::new();
    for i in 0..3 {
        queued.push(a.send_non_blocking("slow", &format!("queued {i}")).await["id"].as_str().unwrap().to_string());
    }
    a.kill9();
    let b = Server::start_on_redis(CONFIG, &redis, &prefix, &held).await;
    let left = wait_for_state(&b, "slow", &queued[2], "input-required").await;
    assert_eq!(artifact_text(&left), "queued 2");
    for id in &queued[..2] {
        let task = b.result("slow", "tasks/get", json!({"id": id})).await;
        assert_eq!(task["status"]["state"], "submitted", "taken by the dead instance until its lease expires");
    }
    let task = b.result("slow", "tasks/get", json!({"id": first})).await;
    assert_eq!(task["status"]["state"], "working");
}

#[tokio::test]
async fn a_turn_that_kills_every_instance_is_dead_lettered() {
    let redis = Arc::new(RedisServer::start());
    let prefix = format!("scale-{}", uuid());
    let args = ["--max-attempts", "2"];
    let mut first = Server::start_on_redis(CONFIG, &redis, &prefix, &args).await;
    let task = first.send_non_blocking("slow", LONG_TEXT).await;
    let task_id = task["id"].as_str().unwrap().to_string();
    let attempt_1 = wait_for_state(&first, "slow", &task_id, "working").await;
    let mut second = Server::start_on_redis(CONFIG, &redis, &prefix, &args).await;
    first.kill9();
    // Attempt 2 runs on the second instance; it dies too.
    wait_for_new_attempt(&second, "slow", &task_id, &attempt_1["status"]["timestamp"]).await;
    let third = Server::start_on_redis(CONFIG, &redis, &prefix, &args).await;
    second.kill9();

    let task = wait_for_state(&third, "slow", &task_id, "failed").await;
    let reason = task["status"]["message"]["parts"][0]["text"].as_str().unwrap_or_default();
    assert!(reason.contains("after 2 attempts"), "failure says why: {reason}");
}

#[tokio::test]
async fn a_stopping_instance_hands_its_running_turn_to_another_at_once() {
    let redis = Arc::new(RedisServer::start());
    let prefix = format!("scale-{}", uuid());
    // A visibility timeout far beyond the test: only the hand-back can move the job in time.
    let args = ["--visibility-timeout", "60s", "--shutdown-grace", "0s"];
    let mut stopping = Server::start_on_redis(CONFIG, &redis, &prefix, &args).await;
    let task = stopping.send_non_blocking("slow", LONG_TEXT).await;
    let task_id = task["id"].as_str().unwrap().to_string();
    let attempt_1 = wait_for_state(&stopping, "slow", &task_id, "working").await;
    let staying = Server::start_on_redis(CONFIG, &redis, &prefix, &args).await;
    assert!(stopping.terminate().success());

    wait_for_new_attempt(&staying, "slow", &task_id, &attempt_1["status"]["timestamp"]).await;
    let done = wait_for_state(&staying, "slow", &task_id, "input-required").await;
    assert_eq!(artifact_text(&done), LONG_TEXT);
}

#[tokio::test]
async fn a_capture_session_recorded_on_one_instance_is_seen_live_on_another() {
    let redis = Arc::new(RedisServer::start());
    let prefix = format!("capture-{}", uuid());
    let a = Server::start_on_redis(CONFIG, &redis, &prefix, &[]).await;
    let b = Server::start_on_redis(CONFIG, &redis, &prefix, &[]).await;
    let (status, created, _) = a.request("POST", "/v1/agent/sessions", None, None).await;
    assert_eq!(status, 201, "{created}");
    let id = created["session_id"].as_str().unwrap().to_string();
    let response = b.client.get(b.url(&format!("/v1/agent/sessions/{id}/events/stream"))).send().await.unwrap();
    let mut live_on_b = SseReader::from_response(response);
    let url_on_a = a.url(&format!("/v1/ingest/{id}"));
    let mut sent = std::collections::HashSet::new();
    for i in 0..20 {
        let response = a.client.post(&url_on_a).body(json!({ "i": i }).to_string()).send().await.unwrap();
        assert_eq!(response.status(), 200);
        sent.insert(json!({ "i": i }).to_string());
    }
    for seq in 1..=20u64 {
        let event = live_on_b.next().await.expect("event on the other instance");
        assert_eq!(event.data["seq"], seq, "in order, once each");
        assert!(sent.contains(event.data["body"].as_str().unwrap()));
    }
    let (status, page) = b.get_json(&format!("/v1/agent/sessions/{id}?limit=100")).await;
    assert_eq!(status, 200, "{page}");
    let seqs: Vec<u64> = page["events"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=20).rev().collect::<Vec<_>>());
    assert_eq!(b.request("DELETE", &format!("/v1/agent/sessions/{id}"), None, None).await.0, 204);
    assert!(live_on_b.next().await.is_none(), "deletion on one instance ends live views on all");
    assert_eq!(a.client.post(&url_on_a).body("{}").send().await.unwrap().status(), 404);
}

/// Sends a signal to a server process (`STOP` freezes it, `CONT` wakes it up).
fn signal(server: &Server, name: &str) {
    let status = std::process::Command::new("kill").arg(format!("-{name}")).arg(server.child.id().to_string()).status();
    assert!(status.is_ok_and(|s| s.success()), "kill -{name}");
}

#[tokio::test]
async fn an_instance_that_stalls_past_the_visibility_timeout_cannot_write_into_the_rerun() {
    let redis = Arc::new(RedisServer::start());
    let prefix = format!("scale-{}", uuid());
    // Only the first instance runs at first, so the turn is surely on it.
    let stalling = Server::start_on_redis(CONFIG, &redis, &prefix, &[]).await;
    let task = stalling.send_non_blocking("slow", LONG_TEXT).await;
    let task_id = task["id"].as_str().unwrap().to_string();
    let first = wait_for_state(&stalling, "slow", &task_id, "working").await;
    let survivor = Server::start_on_redis(CONFIG, &redis, &prefix, &[]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Frozen mid-turn: past the 1 s visibility timeout the survivor takes the job over and runs
    // the turn again from the start.
    signal(&stalling, "STOP");
    let guard = scopeguard(&stalling);
    wait_for_new_attempt(&survivor, "slow", &task_id, &first["status"]["timestamp"]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The stalled instance wakes up while the re-run is half-way and goes on with its turn:
    // every write of its old attempt must be refused.
    drop(guard);
    let done = wait_for_state(&survivor, "slow", &task_id, "input-required").await;
    assert_eq!(artifact_text(&done), LONG_TEXT, "the old attempt's chunks did not mix into the re-run");
    // Time for the woken instance to try everything it had left.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after = survivor.result("slow", "tasks/get", json!({"id": task_id})).await;
    assert_eq!(after["status"], done["status"], "nothing changed the finished turn");
    assert_eq!(artifact_text(&after), LONG_TEXT);
    assert_eq!(replayed_chunks(&survivor, "slow", &task_id).await, LONG_TEXT, "the log holds each chunk once");
    // And the woken instance's own view agrees.
    let seen_there = stalling.result("slow", "tasks/get", json!({"id": task_id})).await;
    assert_eq!(artifact_text(&seen_there), LONG_TEXT);
}

/// Wakes a frozen server up when dropped (also when the test fails while it is frozen).
fn scopeguard(server: &Server) -> impl Drop + '_ {
    struct Wake<'a>(&'a Server);
    impl Drop for Wake<'_> {
        fn drop(&mut self) {
            signal(self.0, "CONT");
        }
    }
    Wake(server)
}
