//! Durability of the embedded store across process deaths: what a client was told survives
//! `kill -9`, interrupted turns are re-run (without duplicated chunks) and dead-lettered after
//! the last attempt, and SIGTERM finishes running work.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

/// A `:memory:` store lives in a directory named after its process (on tmpfs when there is
/// one); a killed process cannot delete it, so the next `:memory:` server removes it.
#[tokio::test]
async fn a_killed_memory_stores_directory_is_removed_by_the_next_one() {
    let base = if std::path::Path::new("/dev/shm").is_dir() { "/dev/shm".into() } else { std::env::temp_dir() };
    // A store's directory and, next to it, the lock its server holds.
    let stores_of = |pid: u32| -> Vec<std::path::PathBuf> {
        let prefix = format!("switchyard-{pid}-");
        let mut found: Vec<_> = std::fs::read_dir(&base)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with(&prefix)))
            .map(|e| e.path())
            .collect();
        found.sort();
        found
    };
    let is_store_and_lock = |found: &[std::path::PathBuf]| {
        found.len() == 2 && found[0].is_dir() && found[1].to_string_lossy().ends_with(".lock")
    };
    // On the embedded store whatever the suite's backend: that is where `:memory:` lives.
    let config = tempfile::tempdir().unwrap();
    let config_path = config.path().join("config.yaml");
    std::fs::write(&config_path, CONFIG).unwrap();
    let mut first = Server::spawn(&config_path, ":memory:", &[]);
    assert_eq!(first.send_text("done", "hello").await["status"]["state"], "completed");
    let pid = first.child.id();
    assert!(is_store_and_lock(&stores_of(pid)), "named after its process: {:?}", stores_of(pid));
    first.kill9();
    assert!(is_store_and_lock(&stores_of(pid)), "a killed process leaves its store behind");

    let mut second = Server::spawn(&config_path, ":memory:", &[]);
    assert_eq!(stores_of(pid), Vec::<std::path::PathBuf>::new(), "the next :memory: server removes it");
    assert!(is_store_and_lock(&stores_of(second.child.id())), "and keeps its own");
    // A server that stops removes its own.
    let second_pid = second.child.id();
    second.terminate();
    assert_eq!(stores_of(second_pid), Vec::<std::path::PathBuf>::new(), "a stopped server leaves nothing");
}

#[tokio::test]
async fn acknowledged_tasks_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_with(CONFIG, dir.path().to_str().unwrap(), &[]).await;
    let mut ids = Vec::new();
    for i in 0..20 {
        let task = server.send_text("done", &format!("message {i}")).await;
        assert_eq!(task["status"]["state"], "completed");
        ids.push(task["id"].as_str().unwrap().to_string());
    }
    let pending = server.send_non_blocking("slow", LONG_TEXT).await;
    server.kill9();

    let server = server.restart(&[]);
    for (i, id) in ids.iter().enumerate() {
        let task = server.result("done", "tasks/get", json!({"id": id})).await;
        assert_eq!(task["status"]["state"], "completed");
        assert_eq!(artifact_text(&task), format!("message {i}"));
    }
    // The non-blocking task was acknowledged as submitted: it runs to its end after the restart.
    let task = wait_for_state(&server, "slow", pending["id"].as_str().unwrap(), "input-required").await;
    assert_eq!(artifact_text(&task), LONG_TEXT, "re-run turn must not duplicate chunks");
}

/// A blocking send's answer is the last thing the process does before it is killed: the
/// store may have left the turn's end in the journal's buffer for the answer to flush, and
/// nothing written after it flushes it instead.
#[tokio::test]
async fn the_last_blocking_answer_before_kill_9_survives() {
    let dir = tempfile::tempdir().unwrap();
    // Both fsync policies: under `always` the answer also waits for the group fsync.
    for (round, args) in [&[][..], &["--fsync", "always"], &[]].into_iter().enumerate() {
        let mut server = Server::start_with(CONFIG, dir.path().to_str().unwrap(), args).await;
        let task = server.send_text("done", &format!("round {round}")).await;
        assert_eq!(task["status"]["state"], "completed");
        server.kill9();
        let server = server.restart(args);
        let id = task["id"].as_str().unwrap();
        let stored = server.result("done", "tasks/get", json!({"id": id})).await;
        assert_eq!(stored["status"]["state"], "completed", "round {round}: {stored}");
        assert_eq!(artifact_text(&stored), format!("round {round}"));
        drop(server);
    }
}

#[tokio::test]
async fn turn_interrupted_by_kill_9_is_rerun_without_duplicate_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_with(CONFIG, dir.path().to_str().unwrap(), &[]).await;
    let mut stream =
        server.open_stream("slow", "message/stream", json!({"message": user_message(LONG_TEXT)}), None).await;
    let first = stream.next().await.expect("Task event");
    let task_id = result_of(&first)["id"].as_str().unwrap().to_string();
    // Let a few chunks go out, then kill the process mid-turn.
    for _ in 0..5 {
        stream.next().await.expect("event");
    }
    server.kill9();

    let server = server.restart(&[]);
    let task = wait_for_state(&server, "slow", &task_id, "input-required").await;
    assert_eq!(artifact_text(&task), LONG_TEXT);
    // The log replayed from the start holds each chunk once.
    assert_eq!(replayed_chunks(&server, "slow", &task_id).await, LONG_TEXT);
}

#[tokio::test]
async fn turn_that_keeps_dying_is_failed_after_max_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_with(CONFIG, dir.path().to_str().unwrap(), &["--max-attempts", "2"]).await;
    let task = server.send_non_blocking("slow", LONG_TEXT).await;
    let task_id = task["id"].as_str().unwrap().to_string();
    let first = wait_for_state(&server, "slow", &task_id, "working").await;
    server.kill9();
    // Attempt 2 starts after this restart; kill it mid-turn too.
    let mut server = server.restart(&["--max-attempts", "2"]);
    wait_for_new_attempt(&server, "slow", &task_id, &first["status"]["timestamp"]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.kill9();

    let server = server.restart(&["--max-attempts", "2"]);
    let task = wait_for_state(&server, "slow", &task_id, "failed").await;
    let reason = task["status"]["message"]["parts"][0]["text"].as_str().unwrap_or_default();
    assert!(reason.contains("after 2 attempts"), "failure says why: {reason}");
}

#[tokio::test]
async fn sigterm_finishes_running_turns_before_exiting() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_with(CONFIG, dir.path().to_str().unwrap(), &[]).await;
    let task = server.send_non_blocking("slow", LONG_TEXT).await;
    let task_id = task["id"].as_str().unwrap().to_string();
    wait_for_state(&server, "slow", &task_id, "working").await;
    let status = server.terminate();
    assert!(status.success(), "graceful exit: {status:?}");

    let server = server.restart(&[]);
    let task = server.result("slow", "tasks/get", json!({"id": task_id})).await;
    assert_eq!(task["status"]["state"], "input-required", "the turn finished before the process exited");
    assert_eq!(artifact_text(&task), LONG_TEXT);
}
