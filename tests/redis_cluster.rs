//! switchyard on a Redis Cluster (three masters, see `common::redis`): one seed node plus
//! `--redis-cluster` finds the master that owns the deployment's slot, events travel as
//! sharded pub/sub on that shard, and instances share tasks and streams as on one Redis; a
//! failover of that master to its replica (a cluster of its own with replicas) loses nothing.
//! (`make test-redis-cluster` also runs the whole Redis suite on a cluster.)

mod common;

use std::sync::Arc;

use common::redis::{redis_cli_at, HaCluster, RedisServer};
use common::*;
use serde_json::json;

/// A deployment prefix whose slot a master other than `seed` owns, with that master's address:
/// a command to the seed for one of its keys is answered `MOVED <slot> <owner>`.
fn prefix_owned_elsewhere(seed: &str) -> (String, String) {
    for _ in 0..200 {
        let prefix = format!("cluster-{}", uuid());
        let reply = redis_cli_at(seed, &["exists", &format!("{{{prefix}}}:probe")]);
        if let Some(owner) = reply.trim().strip_prefix("MOVED ").and_then(|r| r.split_whitespace().nth(1)) {
            return (prefix, owner.to_string());
        }
    }
    panic!("no prefix hashed to another master than {seed}: is this a cluster of several masters?");
}

/// A stream (its first event already read) goes on to the turn's final event, in order.
async fn assert_turn_seen_to_end(first: SseEvent, mut rest: SseReader) {
    let mut events = vec![first];
    events.extend(rest.collect().await);
    let last = result_of(events.last().unwrap());
    assert_eq!((last["final"].as_bool(), last["status"]["state"].as_str()), (Some(true), Some("input-required")));
    let ids: Vec<u64> = events.iter().map(|e| e.id.as_deref().unwrap().parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids strictly increase: {ids:?}");
}

#[tokio::test]
async fn one_seed_node_and_the_flag_serve_a_deployment_from_another_master() {
    let cluster = RedisServer::cluster();
    let seed_url = cluster.url.split(',').next().unwrap().to_string();
    let seed = seed_url.trim_start_matches("redis://").to_string();
    let (prefix, owner) = prefix_owned_elsewhere(&seed);
    let seed_only = Arc::new(RedisServer::borrowed(seed_url));
    let a = Server::start_on_redis(CONFIG, &seed_only, &prefix, &["--redis-cluster"]).await;
    let b = Server::start_on_redis(CONFIG, &seed_only, &prefix, &["--redis-cluster"]).await;
    for server in [&a, &b] {
        let (status, health) = server.get_json("/health").await;
        assert_eq!((status, health["store"].as_str()), (200, Some("redis-cluster")), "{health}");
    }

    // Stream on A, follow on B: B's subscription is a sharded one, on the owner of the slot.
    let mut streamed = a.open_stream("slow", "message/stream", json!({"message": user_message(LONG_TEXT)}), None).await;
    let first = streamed.next().await.expect("Task event");
    let task_id = result_of(&first)["id"].as_str().unwrap().to_string();
    let mut followed = b.open_stream("slow", "tasks/resubscribe", json!({"id": task_id}), None).await;
    let snapshot = followed.next().await.expect("snapshot");
    assert_eq!(result_of(&snapshot)["kind"], "task");
    let channel = format!("{{{prefix}}}:ev:{task_id}");
    let sharded = redis_cli_at(&owner, &["pubsub", "shardnumsub", &channel]);
    let classic = redis_cli_at(&owner, &["pubsub", "numsub", &channel]);
    let count = |reply: &str| reply.lines().nth(1).and_then(|n| n.trim().parse::<u64>().ok());
    assert!(count(&sharded).is_some_and(|n| n >= 1), "a sharded subscriber of {channel}: {sharded:?}");
    assert_eq!(count(&classic), Some(0), "no classic subscriber of {channel}: {classic:?}");

    // Both see the turn to its end, in order; the task lives on the owner.
    assert_turn_seen_to_end(first, streamed).await;
    assert_turn_seen_to_end(snapshot, followed).await;
    let task = b.result("slow", "tasks/get", json!({"id": task_id})).await;
    assert_eq!(artifact_text(&task), LONG_TEXT);
    let key = format!("{{{prefix}}}:task:{task_id}");
    assert_eq!(redis_cli_at(&owner, &["exists", &key]).trim(), "1", "{key} is on {owner}");
}

#[tokio::test]
async fn a_cluster_node_named_without_the_flag_is_refused_with_a_hint() {
    let cluster = RedisServer::cluster();
    let seed_url = cluster.url.split(',').next().unwrap().to_string();
    let (prefix, _) = prefix_owned_elsewhere(seed_url.trim_start_matches("redis://"));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, CONFIG).unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .args(["--port", "0", "--data-dir", ":memory:", "--redis-url", &seed_url, "--redis-prefix", &prefix])
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(20), output).await.expect("exits").unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is a node of a Redis Cluster") && stderr.contains("--redis-cluster"), "{stderr}");
}

#[tokio::test]
async fn a_failover_of_the_deployments_master_loses_nothing_and_streams_go_on() {
    let cluster = HaCluster::start();
    let redis = Arc::new(RedisServer::borrowed(cluster.url()));
    let prefix = format!("failover-{}", uuid());
    let owner = cluster.owner_of(&format!("{{{prefix}}}"));
    let a = Server::start_on_redis(CONFIG, &redis, &prefix, &[]).await;
    let b = Server::start_on_redis(CONFIG, &redis, &prefix, &[]).await;
    let before = a.send_text("done", "before").await;
    assert_eq!(before["status"]["state"], "completed");

    // A turn streams on A and is followed on B while its master hands over to the replica.
    let mut streamed = a.open_stream("slow", "message/stream", json!({"message": user_message(LONG_TEXT)}), None).await;
    let first = streamed.next().await.expect("Task event");
    let task_id = result_of(&first)["id"].as_str().unwrap().to_string();
    let mut followed = b.open_stream("slow", "tasks/resubscribe", json!({"id": task_id}), None).await;
    let snapshot = followed.next().await.expect("snapshot");
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.fail_over(owner);
        cluster
    })
    .await
    .expect("failover");

    assert_turn_seen_to_end(first, streamed).await;
    assert_turn_seen_to_end(snapshot, followed).await;
    let task = b.result("slow", "tasks/get", json!({"id": task_id})).await;
    assert_eq!(artifact_text(&task), LONG_TEXT);
    assert_eq!(replayed_chunks(&a, "slow", &task_id).await, LONG_TEXT);

    // Everything acknowledged before the failover is there, and both instances go on.
    let kept = b.result("done", "tasks/get", json!({"id": before["id"]})).await;
    assert_eq!(artifact_text(&kept), "before");
    for (i, server) in [&a, &b].into_iter().enumerate() {
        let task = server.send_text("done", &format!("after {i}")).await;
        assert_eq!(task["status"]["state"], "completed");
    }
    let promoted = format!("127.0.0.1:{}", cluster.replicas[owner]);
    let key = format!("{{{prefix}}}:task:{task_id}");
    assert_eq!(redis_cli_at(&promoted, &["exists", &key]).trim(), "1");
    // The old master dropped the instances' sharded subscriptions; they subscribed again in
    // the shard (on the new master or on the old one, now its replica: both deliver what the
    // master publishes), so cancellations and app changes keep reaching every instance.
    let demoted = format!("127.0.0.1:{}", cluster.masters[owner]);
    let cancel = format!("{{{prefix}}}:cancel");
    let subscribers = |node: &str| -> u64 {
        let reply = redis_cli_at(node, &["pubsub", "shardnumsub", &cancel]);
        reply.lines().nth(1).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while subscribers(&promoted) + subscribers(&demoted) != 2 {
        assert!(std::time::Instant::now() < deadline, "both instances follow {cancel} in its shard again");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
