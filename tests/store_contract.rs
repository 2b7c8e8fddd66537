//! The store/queue contract: every backend must pass these unchanged. Each test is written once
//! against `Backend` and instantiated per backend by the `contract_tests!` macro at the bottom.

use std::time::Duration;

use switchyard::protocol::{
    Artifact, Message, MessageKind, Part, PushNotificationConfig, Role, StreamEvent, Task, TaskKind, TaskState,
    TaskStatus,
};
use switchyard::store::{Backend, Change, Job, StoreError, Turn};

mod common;

fn message(text: &str, task_id: &str) -> Message {
    Message {
        kind: MessageKind,
        message_id: format!("m-{text}"),
        role: Role::User,
        parts: vec![Part::text(text)],
        task_id: Some(task_id.to_string()),
        context_id: Some("ctx".into()),
        reference_task_ids: None,
        extensions: None,
        metadata: None,
    }
}

fn job(id: &str, task_id: &str) -> Job {
    Job {
        id: id.into(),
        task_id: task_id.into(),
        app: "default".into(),
        agent: "echo".into(),
        attempt: 1,
        artifacts_base: 0,
        base_seq: 0,
        enqueued_ms: switchyard::clock::now_ms(),
        last_error: None,
    }
}

fn create(task_id: &str, job_id: &str) -> Change {
    Change::Create {
        task: Task {
            kind: TaskKind,
            id: task_id.into(),
            context_id: "ctx".into(),
            status: TaskStatus::now(TaskState::Submitted, None),
            history: Some(vec![message("hello", task_id)]),
            artifacts: None,
            metadata: None,
        },
        agent: "echo".into(),
        user: "default".into(),
        job: job(job_id, task_id),
        push_config: None,
        new_context: false,
        callback: None,
        answered_at_turn_end: false,
    }
}

/// A creation whose creator is answered only when the turn ends (a blocking `message/send`).
fn create_answered_at_turn_end(task_id: &str, job_id: &str) -> Change {
    let mut change = create(task_id, job_id);
    if let Change::Create { answered_at_turn_end, .. } = &mut change {
        *answered_at_turn_end = true;
    }
    change
}

/// A creation in `app` and `context` by `user`.
fn create_in(task_id: &str, app: &str, context: &str, user: &str) -> Change {
    let mut change = create(task_id, &format!("job-{task_id}"));
    if let Change::Create { task, job, user: creator, .. } = &mut change {
        task.context_id = context.to_string();
        job.app = app.to_string();
        *creator = user.to_string();
    }
    change
}

/// `change` (a creation) with its context id generated for it, answered at once or at its
/// turn's end.
fn with_generated_context(change: Change, at_turn_end: bool) -> Change {
    match change {
        Change::Create { task, agent, user, job, push_config, callback, .. } => Change::Create {
            task,
            agent,
            user,
            job,
            push_config,
            new_context: true,
            callback,
            answered_at_turn_end: at_turn_end,
        },
        other => other,
    }
}

fn chunk(task_id: &str, text: &str, append: bool) -> Change {
    Change::Artifact {
        task_id: task_id.into(),
        artifact: Artifact {
            artifact_id: "a1".into(),
            parts: vec![Part::text(text)],
            name: None,
            description: None,
            extensions: None,
            metadata: None,
        },
        append,
        last_chunk: false,
        turn: None,
    }
}

/// A worker's chunk for `job`'s current attempt.
fn chunk_of(job: &Job, text: &str) -> Change {
    match chunk(&job.task_id, text, true) {
        Change::Artifact { task_id, artifact, append, last_chunk, .. } => {
            Change::Artifact { task_id, artifact, append, last_chunk, turn: Some(Turn::of(job)) }
        }
        _ => unreachable!(),
    }
}

fn finish(task_id: &str, job_id: &str, state: TaskState) -> Change {
    Change::Status {
        task_id: task_id.into(),
        status: TaskStatus::now(state, None),
        is_final: true,
        ack_job: Some(job_id.into()),
        turn: None,
    }
}

async fn next_job(backend: &Backend) -> Job {
    tokio::time::timeout(Duration::from_secs(5), backend.queue.next())
        .await
        .expect("a job within 5 s")
        .expect("queue open")
}

async fn create_task_logs_it_and_queues_its_job(b: Backend) {
    let applied = b.store.apply(create("t1", "j1")).await.unwrap();
    assert_eq!(applied.seq, 1);
    assert!(matches!(applied.event(), StreamEvent::Task(_)));
    let stored = b.store.get_task("t1").await.unwrap().expect("stored");
    assert_eq!(stored.task.status.state, TaskState::Submitted);
    assert_eq!(stored.job_id.as_deref(), Some("j1"));
    let job = next_job(&b).await;
    assert_eq!((job.id.as_str(), job.task_id.as_str(), job.base_seq), ("j1", "t1", 1));
    assert!(matches!(b.store.apply(create("t1", "j2")).await, Err(StoreError::TaskExists(_))));
}

async fn changes_append_events_in_order(b: Backend) {
    b.store.apply(create("t1", "j1")).await.unwrap();
    let job = next_job(&b).await;
    assert_eq!(b.store.apply(Change::StartTurn { job }).await.unwrap().seq, 2);
    b.store.apply(chunk("t1", "hel", false)).await.unwrap();
    b.store.apply(chunk("t1", "lo", true)).await.unwrap();
    let done = b.store.apply(finish("t1", "j1", TaskState::Completed)).await.unwrap();
    assert_eq!(done.seq, 5);
    let events = b.store.events_after("t1", 0).await.unwrap();
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
    assert_eq!(b.store.events_after("t1", 3).await.unwrap().len(), 2);
    let stored = b.store.get_task("t1").await.unwrap().unwrap();
    let artifacts = stored.task.artifacts.unwrap();
    assert_eq!(switchyard::protocol::parts_text(&artifacts[0].parts), "hello");
    assert_eq!(stored.job_id, None);
    // The acknowledging write ends the lease: nothing pending, nothing running.
    let stats = b.queue.stats().await.unwrap();
    assert_eq!((stats.pending, stats.running), (0, 0));
}

/// The backend may keep such a creation back until the turn ends: the turn runs, is logged and
/// indexed exactly like any other.
async fn a_creation_answered_at_the_turns_end_runs_like_any_other(b: Backend) {
    let applied = b.store.apply(create_answered_at_turn_end("t1", "j1")).await.unwrap();
    assert!(applied.turn_here || b.store.kind().starts_with("redis"), "a single process runs every turn");
    let stored = b.store.get_task("t1").await.unwrap().expect("visible to its own instance");
    assert_eq!(stored.task.status.state, TaskState::Submitted);
    let job = next_job(&b).await;
    assert_eq!((job.id.as_str(), job.attempt), ("j1", 1));
    b.store.apply(Change::StartTurn { job: job.clone() }).await.unwrap();
    b.store.apply(chunk_of(&job, "hello")).await.unwrap();
    let done = b.store.apply(finish("t1", "j1", TaskState::Completed)).await.unwrap();
    assert_eq!(done.seq, 4);
    let events = b.store.events_after("t1", 0).await.unwrap();
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    assert!(matches!(events[0].event, StreamEvent::Task(_)));
    let stored = b.store.get_task("t1").await.unwrap().unwrap();
    assert_eq!(stored.task.status.state, TaskState::Completed);
    assert_eq!(switchyard::protocol::parts_text(&stored.task.artifacts.unwrap()[0].parts), "hello");
    let stats = b.queue.stats().await.unwrap();
    assert_eq!((stats.pending, stats.running, stats.completed), (0, 0, 1));
    let indexed = b.sessions.session_tasks("default", "ctx").await.unwrap();
    assert_eq!(indexed.iter().map(|t| t.task.task.id.as_str()).collect::<Vec<_>>(), vec!["t1"]);
}

/// A context id generated for its task begins a session (indexed without a look-up), whether
/// the creation is written at once or with its turn's end.
async fn a_generated_context_begins_its_session(b: Backend) {
    b.store.apply(with_generated_context(create_in("g1", "default", "gen-1", "alice"), false)).await.unwrap();
    b.store.apply(with_generated_context(create_in("g2", "default", "gen-2", "bob"), true)).await.unwrap();
    for _ in 0..2 {
        let job = next_job(&b).await;
        b.store.apply(Change::StartTurn { job: job.clone() }).await.unwrap();
        b.store.apply(finish(&job.task_id, &job.id, TaskState::Completed)).await.unwrap();
    }
    let s = &b.sessions;
    let all = s.sessions("default", None, 0, 10).await.unwrap();
    assert_eq!(all.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["gen-1", "gen-2"]);
    assert_eq!((all[0].user_id.as_str(), all[1].user_id.as_str()), ("alice", "bob"));
    assert!(all[0].position < all[1].position && all[0].created_ms > 0, "{all:?}");
    let bobs: Vec<String> =
        s.sessions("default", Some("bob"), 0, 10).await.unwrap().into_iter().map(|e| e.id).collect();
    assert_eq!(bobs, ["gen-2"]);
    for (context, task) in [("gen-1", "g1"), ("gen-2", "g2")] {
        let tasks = s.session_tasks("default", context).await.unwrap();
        assert_eq!(tasks.iter().map(|t| t.task.task.id.as_str()).collect::<Vec<_>>(), [task]);
        assert_eq!(tasks[0].task.task.status.state, TaskState::Completed);
    }
}

/// A kept-back creation whose turn fails is written with its retry, which runs like any other.
async fn a_creation_answered_at_the_turns_end_is_retried(b: Backend) {
    b.store.apply(create_answered_at_turn_end("t1", "j1")).await.unwrap();
    let job = next_job(&b).await;
    b.store.apply(Change::StartTurn { job: job.clone() }).await.unwrap();
    b.store.apply(chunk_of(&job, "partial")).await.unwrap();
    b.queue.retry(job, "boom".into(), 0).await.unwrap();
    let retried = next_job(&b).await;
    assert_eq!((retried.task_id.as_str(), retried.attempt, retried.last_error.as_deref()), ("t1", 2, Some("boom")));
    let applied = b.store.apply(Change::StartTurn { job: retried.clone() }).await.unwrap();
    assert!(applied.task.task.artifacts.as_ref().is_none_or(|a| a.is_empty()));
    let done = b.store.apply(finish("t1", &retried.id, TaskState::Completed)).await.unwrap();
    let seqs: Vec<u64> = b.store.events_after("t1", 0).await.unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![1, applied.seq, done.seq], "the failed attempt's events are gone");
    let stats = b.queue.stats().await.unwrap();
    assert_eq!((stats.pending, stats.running, stats.completed), (0, 0, 1));
}

async fn terminal_tasks_reject_changes(b: Backend) {
    b.store.apply(create("t1", "j1")).await.unwrap();
    b.store.apply(finish("t1", "j1", TaskState::Completed)).await.unwrap();
    let err = b.store.apply(chunk("t1", "x", false)).await.unwrap_err();
    assert!(matches!(err, StoreError::TaskTerminal { state: "completed", .. }), "{err:?}");
    let err = b.store.apply(Change::Cancel { task_id: "t1".into() }).await.unwrap_err();
    assert!(matches!(err, StoreError::TaskTerminal { .. }), "{err:?}");
    let err = b.store.apply(chunk("missing", "x", false)).await.unwrap_err();
    assert!(matches!(err, StoreError::TaskNotFound(_)), "{err:?}");
}

async fn continue_needs_an_interrupted_task(b: Backend) {
    b.store.apply(create("t1", "j1")).await.unwrap();
    let cont = |job_id: &str| Change::Continue {
        task_id: "t1".into(),
        message: message("again", "t1"),
        job: job(job_id, "t1"),
        push_config: None,
    };
    assert!(matches!(b.store.apply(cont("j2")).await, Err(StoreError::Conflict(_))));
    b.store.apply(finish("t1", "j1", TaskState::InputRequired)).await.unwrap();
    let applied = b.store.apply(cont("j2")).await.unwrap();
    assert_eq!(applied.task.task.history.as_ref().unwrap().len(), 2);
    assert_eq!(applied.task.task.status.state, TaskState::Submitted);
}

async fn cancel_removes_the_queued_job(b: Backend) {
    b.store.apply(create("t1", "j1")).await.unwrap();
    let applied = b.store.apply(Change::Cancel { task_id: "t1".into() }).await.unwrap();
    assert_eq!(applied.task.task.status.state, TaskState::Canceled);
    assert_eq!(applied.task.job_id, None);
    // The worker that picks the job up cannot start it any more.
    let job = next_job(&b).await;
    assert!(b.store.apply(Change::StartTurn { job: job.clone() }).await.is_err());
    b.queue.discard(&job).await;
    let stats = b.queue.stats().await.unwrap();
    assert_eq!((stats.pending, stats.running), (0, 0));
}

async fn push_configs_are_kept_per_task(b: Backend) {
    let config = |id: &str| PushNotificationConfig {
        id: Some(id.into()),
        url: format!("http://127.0.0.1:9/{id}"),
        token: None,
        authentication: None,
    };
    assert!(matches!(b.store.set_push_config("t1", config("a")).await, Err(StoreError::TaskNotFound(_))));
    b.store.apply(create("t1", "j1")).await.unwrap();
    b.store.set_push_config("t1", config("a")).await.unwrap();
    b.store.set_push_config("t1", config("b")).await.unwrap();
    b.store.set_push_config("t1", config("b")).await.unwrap();
    assert_eq!(b.store.push_configs("t1").await.unwrap().len(), 2);
    // Status changes carry the configs, read in the same write: from the turn's first on, even
    // for configs set after the task was created.
    let job = next_job(&b).await;
    let working = b.store.apply(Change::StartTurn { job }).await.unwrap();
    assert_eq!(working.push_configs.len(), 2, "the turn's `working` is pushed");
    let applied = b.store.apply(finish("t1", "j1", TaskState::InputRequired)).await.unwrap();
    assert_eq!(applied.push_configs.len(), 2);
    assert!(b.store.delete_push_config("t1", "a").await.unwrap());
    assert!(!b.store.delete_push_config("t1", "a").await.unwrap());
    assert_eq!(b.store.push_configs("t1").await.unwrap().len(), 1);
}

async fn retry_drops_the_failed_attempts_output(b: Backend) {
    b.store.apply(create("t1", "j1")).await.unwrap();
    let job = next_job(&b).await;
    b.store.apply(Change::StartTurn { job: job.clone() }).await.unwrap();
    b.store.apply(chunk("t1", "partial", false)).await.unwrap();
    b.queue.retry(job, "boom".into(), 0).await.unwrap();
    let retried = next_job(&b).await;
    assert_eq!((retried.attempt, retried.last_error.as_deref()), (2, Some("boom")));
    let applied = b.store.apply(Change::StartTurn { job: retried }).await.unwrap();
    assert!(applied.task.task.artifacts.as_ref().is_none_or(|a| a.is_empty()));
    let seqs: Vec<u64> = b.store.events_after("t1", 0).await.unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![1, applied.seq], "the failed attempt's events are gone");
}

/// A turn's log far longer than one write's batch: read back whole and from the middle, and
/// dropped whole when the turn is retried.
async fn a_long_turns_log_reads_and_drops_whole(b: Backend) {
    b.store.apply(create("t1", "j1")).await.unwrap();
    let job = next_job(&b).await;
    b.store.apply(Change::StartTurn { job: job.clone() }).await.unwrap();
    for i in 0..1200 {
        b.store.apply(chunk("t1", &format!("w{i} "), i > 0)).await.unwrap();
    }
    let seqs: Vec<u64> = b.store.events_after("t1", 0).await.unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=1202).collect::<Vec<u64>>(), "the creation, working and every chunk, in order");
    let tail: Vec<u64> = b.store.events_after("t1", 700).await.unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(tail, (701..=1202).collect::<Vec<u64>>());
    b.queue.retry(job, "boom".into(), 0).await.unwrap();
    let retried = next_job(&b).await;
    let applied = b.store.apply(Change::StartTurn { job: retried }).await.unwrap();
    let seqs: Vec<u64> = b.store.events_after("t1", 0).await.unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![1, applied.seq], "the failed attempt's 1201 events are gone");
}

async fn a_superseded_attempt_cannot_write(b: Backend) {
    b.store.apply(create("t1", "j1")).await.unwrap();
    let first = next_job(&b).await;
    b.store.apply(Change::StartTurn { job: first.clone() }).await.unwrap();
    b.store.apply(chunk_of(&first, "stale ")).await.unwrap();
    // Another instance takes the job over (its worker went silent) and starts attempt 2.
    let second = Job { attempt: first.attempt + 1, ..first.clone() };
    b.store.apply(Change::StartTurn { job: second.clone() }).await.unwrap();
    b.store.apply(chunk_of(&second, "fresh")).await.unwrap();
    let refused = b.store.apply(chunk_of(&first, "late ")).await;
    assert!(matches!(refused, Err(StoreError::Superseded(_))), "{refused:?}");
    let stale_final = Change::Status {
        task_id: "t1".into(),
        status: TaskStatus::now(TaskState::Completed, None),
        is_final: true,
        ack_job: Some(first.id.clone()),
        turn: Some(Turn::of(&first)),
    };
    assert!(matches!(b.store.apply(stale_final).await, Err(StoreError::Superseded(_))));
    let task = b.store.get_task("t1").await.unwrap().unwrap();
    assert_eq!(task.task.status.state, TaskState::Working, "the stale attempt changed nothing");
    let fresh_final = Change::Status {
        task_id: "t1".into(),
        status: TaskStatus::now(TaskState::Completed, None),
        is_final: true,
        ack_job: Some(second.id.clone()),
        turn: Some(Turn::of(&second)),
    };
    let done = b.store.apply(fresh_final).await.unwrap();
    let text: String = done
        .task
        .task
        .artifacts
        .iter()
        .flatten()
        .flat_map(|a| &a.parts)
        .map(|p| match p {
            Part::Text { text, .. } => text.clone(),
            _ => String::new(),
        })
        .collect();
    assert_eq!(text, "fresh", "only the current attempt's output");
}

async fn dead_letter_fails_the_task(b: Backend) {
    b.store.apply(create("t1", "j1")).await.unwrap();
    let job = next_job(&b).await;
    let applied = b.queue.dead_letter(job, "always fails".into()).await.unwrap();
    assert_eq!(applied.task.task.status.state, TaskState::Failed);
    let text = applied.task.task.status.message.as_ref().map(|m| m.text()).unwrap_or_default();
    assert!(text.contains("always fails"), "{text}");
    let stats = b.queue.stats().await.unwrap();
    assert_eq!((stats.pending, stats.running, stats.dead_letter), (0, 0, 1));
}

async fn expired_terminal_tasks_are_swept(b: Backend) {
    b.store.apply(create("t1", "j1")).await.unwrap();
    b.store.apply(finish("t1", "j1", TaskState::Completed)).await.unwrap();
    b.store.apply(create("t2", "j2")).await.unwrap();
    assert_eq!(b.store.sweep_expired(0).await.unwrap(), 0);
    let far_future = switchyard::clock::now_ms() + 10 * 86_400_000;
    assert_eq!(b.store.sweep_expired(far_future).await.unwrap(), 1);
    assert!(b.store.get_task("t1").await.unwrap().is_none());
    assert!(b.store.events_after("t1", 0).await.unwrap().is_empty());
    assert!(b.store.get_task("t2").await.unwrap().is_some(), "live tasks never expire");
}

async fn subscribers_see_events_after_they_are_readable(b: Backend) {
    let mut rx = b.bus.subscribe("t1").await.unwrap();
    b.store.apply(create("t1", "j1")).await.unwrap();
    let event = rx.recv().await.unwrap();
    assert_eq!(event.seq, 1);
    // Published only after the write: a reader finds the task by the time the event arrives.
    assert!(b.store.get_task("t1").await.unwrap().is_some());
}

async fn stats_count_outcomes_and_waiting_jobs(b: Backend) {
    b.store.apply(create("t1", "j1")).await.unwrap();
    let job = next_job(&b).await;
    b.store.apply(Change::StartTurn { job }).await.unwrap();
    let running = b.queue.stats().await.unwrap();
    assert_eq!((running.pending, running.running), (0, 1), "{running:?}");
    tokio::time::sleep(Duration::from_millis(20)).await;
    b.store.apply(finish("t1", "j1", TaskState::Completed)).await.unwrap();
    b.store.apply(create("t2", "j2")).await.unwrap();
    b.store.apply(Change::Cancel { task_id: "t2".into() }).await.unwrap();
    // Nobody takes t3's job: it waits.
    b.store.apply(create("t3", "j3")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let stats = b.queue.stats().await.unwrap();
    assert_eq!((stats.completed, stats.failed, stats.canceled, stats.dead_letter), (1, 0, 1, 0), "{stats:?}");
    assert_eq!((stats.pending, stats.running), (1, 0), "{stats:?}");
    assert!(stats.avg_processing_ms >= 20, "{stats:?}");
    assert!(stats.oldest_pending_age_ms >= 25, "{stats:?}");
}

async fn dead_letters_are_listed_and_requeued(b: Backend) {
    b.store.apply(create("t1", "j1")).await.unwrap();
    let job = next_job(&b).await;
    b.store.apply(Change::StartTurn { job: job.clone() }).await.unwrap();
    b.store.apply(chunk("t1", "partial", false)).await.unwrap();
    b.queue.dead_letter(job, "boom".into()).await.unwrap();
    let (letters, total) = b.queue.dead_letters(50).await.unwrap();
    assert_eq!(total, 1);
    assert_eq!((letters[0].job.id.as_str(), letters[0].job.task_id.as_str()), ("j1", "t1"));
    assert_eq!(letters[0].error, "boom");

    assert!(!b.queue.requeue_dead_letter("missing").await.unwrap());
    assert!(b.queue.requeue_dead_letter("j1").await.unwrap());
    let task = b.store.get_task("t1").await.unwrap().unwrap();
    assert_eq!(task.task.status.state, TaskState::Submitted);
    assert!(task.task.artifacts.as_ref().is_none_or(|a| a.is_empty()), "the failed run's output is gone");
    assert_eq!(b.queue.dead_letters(50).await.unwrap().1, 0);
    assert!(!b.queue.requeue_dead_letter("j1").await.unwrap(), "a dead letter is requeued once");

    // The task runs again with a fresh set of attempts, and no longer expires as a failed task.
    let job = next_job(&b).await;
    assert_eq!((job.task_id.as_str(), job.attempt), ("t1", 1));
    assert_ne!(job.id, "j1");
    let far_future = switchyard::clock::now_ms() + 10 * 86_400_000;
    assert_eq!(b.store.sweep_expired(far_future).await.unwrap(), 0);
    b.store.apply(Change::StartTurn { job: job.clone() }).await.unwrap();
    b.store.apply(finish("t1", &job.id, TaskState::Completed)).await.unwrap();
    let stats = b.queue.stats().await.unwrap();
    assert_eq!((stats.completed, stats.failed, stats.dead_letter), (1, 1, 0), "{stats:?}");
}

async fn an_apps_tasks_are_found_and_removed(b: Backend) {
    b.store.apply(create_in("a1", "team-a", "ctx", "default")).await.unwrap();
    b.store.apply(create_in("a2", "team-a", "ctx", "default")).await.unwrap();
    b.store.apply(create("d1", "j3")).await.unwrap();
    assert_eq!(b.store.get_task("a1").await.unwrap().unwrap().app, "team-a");
    let mut ids = b.store.task_ids_of_app("team-a").await.unwrap();
    ids.sort();
    assert_eq!(ids, ["a1", "a2"]);
    assert_eq!(b.store.task_ids_of_app("default").await.unwrap(), ["d1"]);
    assert!(b.store.task_ids_of_app("nobody").await.unwrap().is_empty());

    assert!(matches!(b.store.remove_task("a1").await, Err(StoreError::Conflict(_))), "a live task stays");
    b.store.apply(Change::Cancel { task_id: "a1".into() }).await.unwrap();
    b.store.apply(chunk("a2", "x", false)).await.ok();
    b.store.apply(finish("a2", "job-a2", TaskState::Completed)).await.unwrap();
    for id in ["a1", "a2"] {
        assert!(b.store.remove_task(id).await.unwrap(), "{id}");
        assert!(b.store.get_task(id).await.unwrap().is_none(), "{id}");
        assert!(b.store.events_after(id, 0).await.unwrap().is_empty(), "{id}: its log goes too");
        assert!(!b.store.remove_task(id).await.unwrap(), "{id}: removed once");
    }
    assert!(b.store.task_ids_of_app("team-a").await.unwrap().is_empty());
    assert!(b.store.get_task("d1").await.unwrap().is_some(), "other apps' tasks stay");
}

async fn sessions_are_indexed_in_the_order_they_begin(b: Backend) {
    let s = &b.sessions;
    // A context id may hold anything a client sends.
    let odd = "odd:ctx\u{0}with/parts";
    b.store.apply(create_in("t1", "default", "ctx-a", "alice")).await.unwrap();
    b.store.apply(create_in("t2", "default", "ctx-a", "bob")).await.unwrap();
    b.store.apply(create_in("t3", "default", "ctx-b", "bob")).await.unwrap();
    b.store.apply(create_in("t4", "team-a", "ctx-a", "carol")).await.unwrap();
    b.store.apply(create_in("t5", "default", odd, "bob")).await.unwrap();

    let all = s.sessions("default", None, 0, 10).await.unwrap();
    let ids: Vec<&str> = all.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["ctx-a", "ctx-b", odd]);
    assert!(all.windows(2).all(|w| w[0].position < w[1].position), "{all:?}");
    assert_eq!(all[0].user_id, "alice", "the session belongs to whoever began it");
    assert_eq!(all[0].app, "default");

    let page: Vec<String> =
        s.sessions("default", None, all[0].position, 1).await.unwrap().into_iter().map(|e| e.id).collect();
    assert_eq!(page, ["ctx-b"], "paging continues after a position");
    let bobs: Vec<String> =
        s.sessions("default", Some("bob"), 0, 10).await.unwrap().into_iter().map(|e| e.id).collect();
    assert_eq!(bobs, ["ctx-b", odd], "a user's sessions are those they began");
    let team: Vec<String> = s.sessions("team-a", None, 0, 10).await.unwrap().into_iter().map(|e| e.id).collect();
    assert_eq!(team, ["ctx-a"], "apps keep their sessions apart even with the same context id");

    let tasks = s.session_tasks("default", "ctx-a").await.unwrap();
    let task_ids: Vec<&str> = tasks.iter().map(|t| t.task.task.id.as_str()).collect();
    assert_eq!(task_ids, ["t1", "t2"]);
    assert!(tasks.iter().all(|t| t.event_count == 1), "one creation event each");
    assert_eq!(s.session("default", odd).await.unwrap().unwrap().user_id, "bob");
    assert!(s.session("default", "ctx-c").await.unwrap().is_none());

    // A session with tasks is kept when only an empty one may go; once its tasks are gone it goes.
    let ctx_a = s.session("default", "ctx-a").await.unwrap().unwrap();
    assert_eq!(ctx_a, all[0], "looked up by id as listed");
    assert!(!s.forget_session(&ctx_a, true).await.unwrap());
    for id in ["t1", "t2"] {
        b.store.apply(Change::Cancel { task_id: id.into() }).await.unwrap();
        assert!(b.store.remove_task(id).await.unwrap());
    }
    assert!(s.session_tasks("default", "ctx-a").await.unwrap().is_empty(), "removed tasks leave the index");
    assert!(s.forget_session(&ctx_a, true).await.unwrap());
    assert!(s.session("default", "ctx-a").await.unwrap().is_none());
    assert!(!s.forget_session(&ctx_a, false).await.unwrap(), "forgotten once");
    let ids: Vec<String> = s.sessions("default", None, 0, 10).await.unwrap().into_iter().map(|e| e.id).collect();
    assert_eq!(ids, ["ctx-b", odd]);
    assert!(s.session("team-a", "ctx-a").await.unwrap().is_some(), "the other app's session stays");

    // A context whose session was forgotten begins a new one, listed once, at the end.
    b.store.apply(create_in("t6", "default", "ctx-a", "erin")).await.unwrap();
    let ids: Vec<String> = s.sessions("default", None, 0, 10).await.unwrap().into_iter().map(|e| e.id).collect();
    assert_eq!(ids, ["ctx-b", odd, "ctx-a"]);
    assert_eq!(s.session("default", "ctx-a").await.unwrap().unwrap().user_id, "erin");

    // Tasks list in the order they were created, whatever their ids and however close in time.
    for id in ["z5", "z4", "z3", "z2", "z1"] {
        b.store.apply(create_in(id, "default", "ordered", "erin")).await.unwrap();
    }
    let ordered: Vec<String> =
        s.session_tasks("default", "ordered").await.unwrap().into_iter().map(|t| t.task.task.id).collect();
    assert_eq!(ordered, ["z5", "z4", "z3", "z2", "z1"]);

    // A context begun by many tasks at once is one session, numbered after every earlier one.
    let creations = (0..16).map(|i| b.store.apply(create_in(&format!("c{i}"), "default", "busy", "dave")));
    for applied in futures::future::join_all(creations).await {
        applied.unwrap();
    }
    let all = s.sessions("default", None, 0, 100).await.unwrap();
    assert_eq!(all.iter().filter(|e| e.id == "busy").count(), 1, "{all:?}");
    assert_eq!(all.last().unwrap().id, "busy");
    assert_eq!(s.session_tasks("default", "busy").await.unwrap().len(), 16);
}

/// The contract suite for one backend, as a module of tests. `takes_turns_ahead` leaves out
/// `stats_count_outcomes_and_waiting_jobs`, whose counts assume an instance takes no turn
/// ahead of its workers (a turn taken ahead counts as running, by design).
macro_rules! contract_tests {
    ($backend:ident, $open:expr) => {
        contract_tests!(@module $backend, $open; stats_count_outcomes_and_waiting_jobs);
    };
    ($backend:ident, $open:expr, takes_turns_ahead) => {
        contract_tests!(@module $backend, $open;);
    };
    (@module $backend:ident, $open:expr; $($extra:ident),*) => {
        contract_tests!(@tests $backend, $open;
            create_task_logs_it_and_queues_its_job,
            changes_append_events_in_order,
            a_creation_answered_at_the_turns_end_runs_like_any_other,
            a_creation_answered_at_the_turns_end_is_retried,
            terminal_tasks_reject_changes,
            continue_needs_an_interrupted_task,
            cancel_removes_the_queued_job,
            push_configs_are_kept_per_task,
            retry_drops_the_failed_attempts_output,
            a_long_turns_log_reads_and_drops_whole,
            a_superseded_attempt_cannot_write,
            dead_letter_fails_the_task,
            expired_terminal_tasks_are_swept,
            subscribers_see_events_after_they_are_readable,
            dead_letters_are_listed_and_requeued,
            an_apps_tasks_are_found_and_removed,
            sessions_are_indexed_in_the_order_they_begin,
            a_generated_context_begins_its_session
            $(, $extra)*
        );
    };
    (@tests $backend:ident, $open:expr; $($name:ident),*) => {
        mod $backend {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let (backend, _guard) = $open;
                    super::$name(backend).await;
                }
            )*
        }
    };
}

fn options() -> switchyard::store::embedded::EmbeddedOptions {
    switchyard::store::embedded::EmbeddedOptions::default()
}

contract_tests!(embedded_memory, (switchyard::store::embedded::open(":memory:", &options()).unwrap(), ()));
contract_tests!(embedded_file, {
    let dir = tempfile::tempdir().unwrap();
    let backend = switchyard::store::embedded::open(dir.path().to_str().unwrap(), &options()).unwrap();
    (backend, dir)
});

/// A Redis backend in a namespace of its own, on a private server (or `REDIS_URL`).
async fn open_redis(
    configure: impl FnOnce(&mut switchyard::store::redis::RedisOptions),
) -> (Backend, common::redis::RedisServer) {
    let redis = common::redis::RedisServer::start();
    let mut options = redis_options(&redis);
    configure(&mut options);
    (switchyard::store::redis::open(&options).await.expect("open the Redis backend"), redis)
}

fn redis_options(redis: &common::redis::RedisServer) -> switchyard::store::redis::RedisOptions {
    let mut options = switchyard::store::redis::RedisOptions::new(&redis.url);
    options.prefix = format!("test-{}", uuid_like());
    options
}

fn uuid_like() -> String {
    format!(
        "{:x}{:x}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
    )
}

contract_tests!(redis, open_redis(|_| {}).await);
// As `serve` runs it: an instance takes turns ahead of its workers and keeps back creations
// answered at the turn's end.
contract_tests!(redis_prefetching, open_redis(|o| o.prefetch = 4).await, takes_turns_ahead);

#[tokio::test]
async fn redis_writes_a_kept_back_creation_with_its_turns_end_or_at_shutdown() {
    let redis = common::redis::RedisServer::start();
    let mut options = redis_options(&redis);
    options.prefetch = 4;
    let first = switchyard::store::redis::open(&options).await.unwrap();
    let second = switchyard::store::redis::open(&options).await.unwrap();
    assert!(first.store.apply(create_answered_at_turn_end("t1", "j1")).await.unwrap().turn_here);
    assert!(second.store.get_task("t1").await.unwrap().is_none(), "kept back until the turn ends");
    let job = next_job(&first).await;
    first.store.apply(Change::StartTurn { job: job.clone() }).await.unwrap();
    first.store.apply(chunk_of(&job, "hello")).await.unwrap();
    first.store.apply(finish("t1", "j1", TaskState::Completed)).await.unwrap();
    let seen = second.store.get_task("t1").await.unwrap().expect("written with the turn's end");
    assert_eq!(seen.task.status.state, TaskState::Completed);
    assert_eq!(second.store.events_after("t1", 0).await.unwrap().len(), 4);
    assert_eq!(second.sessions.session_tasks("default", "ctx").await.unwrap().len(), 1);

    // A shutdown queues the turns it kept back, for any instance to run.
    first.store.apply(create_answered_at_turn_end("t2", "j2")).await.unwrap();
    first.queue.close();
    first.queue.hand_back().await;
    let job = next_job(&second).await;
    assert_eq!((job.task_id.as_str(), job.attempt), ("t2", 2));
    assert_eq!(second.store.get_task("t2").await.unwrap().unwrap().task.status.state, TaskState::Submitted);
}

/// A session indexed by an earlier version keeps its tasks in a sorted set of its own: they are
/// still listed (merged in creation order with tasks indexed since), dropped once gone, and
/// keep the session from being forgotten as empty.
#[tokio::test]
async fn redis_reads_a_session_index_of_an_earlier_version() {
    let redis = common::redis::RedisServer::start();
    let options = redis_options(&redis);
    let b = switchyard::store::redis::open(&options).await.unwrap();
    b.store.apply(create_in("t1", "default", "old", "alice")).await.unwrap();
    b.store.apply(create_in("t2", "default", "old", "alice")).await.unwrap();
    // Index t1 as an earlier version did.
    let session = format!("{{{}}}:session:default:old", options.prefix);
    let legacy = format!("{{{}}}:session-tasks:default:old", options.prefix);
    let position = redis.cli(&["HGET", &session, "t:t1"]).trim().to_string();
    assert!(position.parse::<u64>().is_ok(), "t1's position in its session hash: {position:?}");
    assert_eq!(redis.cli(&["HDEL", &session, "t:t1"]).trim(), "1");
    assert_eq!(redis.cli(&["ZADD", &legacy, &position, "t1"]).trim(), "1");

    let s = &b.sessions;
    let ids = |tasks: Vec<switchyard::store::sessions::SessionTask>| -> Vec<String> {
        tasks.into_iter().map(|t| t.task.task.id).collect()
    };
    assert_eq!(ids(s.session_tasks("default", "old").await.unwrap()), ["t1", "t2"]);
    let entry = s.session("default", "old").await.unwrap().expect("the session");
    b.store.apply(Change::Cancel { task_id: "t2".into() }).await.unwrap();
    assert!(b.store.remove_task("t2").await.unwrap());
    assert_eq!(ids(s.session_tasks("default", "old").await.unwrap()), ["t1"]);
    assert!(!s.forget_session(&entry, true).await.unwrap(), "a task in the old index keeps the session");
    b.store.apply(Change::Cancel { task_id: "t1".into() }).await.unwrap();
    assert!(b.store.remove_task("t1").await.unwrap());
    assert!(s.session_tasks("default", "old").await.unwrap().is_empty());
    assert_eq!(redis.cli(&["EXISTS", &legacy]).trim(), "0", "the old index is emptied as its tasks go");
    assert!(s.forget_session(&entry, true).await.unwrap());
    assert_eq!(redis.cli(&["EXISTS", &session]).trim(), "0");
}

/// A kept-back creation that begins a session is written by a plain transaction instead of the
/// APPLY script: the keys and fields it leaves are the script's, for the task (record, log,
/// expiry), its session (hash, app and user lists, numbered by the same counter) and the counters.
#[tokio::test]
async fn redis_writes_a_kept_back_creation_as_the_script_would() {
    let redis = common::redis::RedisServer::start();
    let mut options = redis_options(&redis);
    options.prefetch = 4;
    let b = switchyard::store::redis::open(&options).await.unwrap();
    // Summed over every node (on a cluster only the deployment's slot's master counts any).
    let transactions = || {
        let nodes = redis.url.split(',').map(|n| n.trim().trim_start_matches("redis://").trim_end_matches('/'));
        nodes
            .map(|node| {
                common::redis::redis_cli_at(node, &["INFO", "commandstats"])
                    .lines()
                    .find_map(|l| l.strip_prefix("cmdstat_exec:calls=")?.split(',').next()?.parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .sum::<u64>()
    };
    // By the script: written at once. By the transaction: kept back, written with its turn's end.
    b.store.apply(with_generated_context(create_in("s1", "default", "ctx-s", "alice"), false)).await.unwrap();
    b.store.apply(with_generated_context(create_in("p1", "default", "ctx-p", "alice"), true)).await.unwrap();
    let before = transactions();
    for _ in 0..2 {
        let job = next_job(&b).await;
        b.store.apply(Change::StartTurn { job: job.clone() }).await.unwrap();
        b.store.apply(chunk_of(&job, "hello")).await.unwrap();
        b.store.apply(finish(&job.task_id, &job.id, TaskState::Completed)).await.unwrap();
    }
    assert_eq!(transactions(), before + 1, "one kept-back creation, one transaction");

    let key = |suffix: String| format!("{{{}}}:{suffix}", options.prefix);
    let sorted_fields = |hash: &str| {
        let mut fields: Vec<String> = redis.cli(&["HKEYS", hash]).lines().map(str::to_string).collect();
        fields.sort();
        fields
    };
    let (script_task, plain_task) = (key("task:s1".into()), key("task:p1".into()));
    assert_eq!(sorted_fields(&plain_task), sorted_fields(&script_task));
    assert_eq!(sorted_fields(&plain_task), ["data", "e:1", "e:2", "e:3", "e:4", "events", "seq"]);
    assert_eq!(redis.cli(&["HMGET", &plain_task, "seq", "events"]).trim(), "4\n4");
    let ttl: i64 = redis.cli(&["PTTL", &plain_task]).trim().parse().unwrap();
    assert!(ttl > 0, "a terminal task expires: PTTL {ttl}");
    assert!(redis.cli(&["ZSCORE", &key("expiry".into()), "p1"]).trim().parse::<u64>().is_ok());

    let (script_session, plain_session) = (key("session:default:ctx-s".into()), key("session:default:ctx-p".into()));
    assert_eq!(sorted_fields(&plain_session), ["created", "position", "t:p1", "user"]);
    assert_eq!(
        sorted_fields(&script_session).len(),
        sorted_fields(&plain_session).len(),
        "{:?}",
        sorted_fields(&script_session)
    );
    let position = redis.cli(&["HGET", &plain_session, "position"]).trim().to_string();
    assert_eq!(redis.cli(&["HGET", &plain_session, "t:p1"]).trim(), position);
    assert_eq!(redis.cli(&["HGET", &plain_session, "user"]).trim(), "alice");
    for list in [key("sessions:default".into()), key("user-sessions:default:alice".into())] {
        assert_eq!(redis.cli(&["ZSCORE", &list, "ctx-p"]).trim(), position, "{list}");
    }
    let sessions = b.sessions.sessions("default", Some("alice"), 0, 10).await.unwrap();
    assert_eq!(sessions.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["ctx-s", "ctx-p"]);
    let tasks = b.sessions.session_tasks("default", "ctx-p").await.unwrap();
    assert_eq!(tasks.iter().map(|t| (t.task.task.id.as_str(), t.event_count)).collect::<Vec<_>>(), [("p1", 4)]);
    let stats = b.queue.stats().await.unwrap();
    assert_eq!((stats.pending, stats.running, stats.completed), (0, 0, 2));
    let events = b.store.events_after("p1", 0).await.unwrap();
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
}

#[tokio::test]
async fn redis_reclaims_the_job_of_a_silent_worker() {
    let redis = common::redis::RedisServer::start();
    let mut options = redis_options(&redis);
    options.visibility_timeout = Duration::from_millis(300);
    let first = switchyard::store::redis::open(&options).await.unwrap();
    first.store.apply(create("t1", "j1")).await.unwrap();
    let job = next_job(&first).await;
    assert_eq!(job.attempt, 1);
    // The first instance's worker goes silent: it stops renewing its lease.
    first.queue.close();
    let second = switchyard::store::redis::open(&options).await.unwrap();
    let job = next_job(&second).await;
    assert_eq!((job.task_id.as_str(), job.attempt), ("t1", 2));
    let applied = second.store.apply(Change::StartTurn { job: job.clone() }).await.unwrap();
    assert_eq!(applied.task.task.status.state, TaskState::Working);
    second.store.apply(finish("t1", &job.id, TaskState::Completed)).await.unwrap();
    let stats = second.queue.stats().await.unwrap();
    assert_eq!((stats.pending, stats.running, stats.dead_letter), (0, 0, 0));
}

#[tokio::test]
async fn redis_dead_letters_a_job_reclaimed_past_its_last_attempt() {
    let redis = common::redis::RedisServer::start();
    let mut options = redis_options(&redis);
    options.visibility_timeout = Duration::from_millis(300);
    options.max_attempts = 1;
    let first = switchyard::store::redis::open(&options).await.unwrap();
    first.store.apply(create("t1", "j1")).await.unwrap();
    next_job(&first).await;
    first.queue.close();
    let second = switchyard::store::redis::open(&options).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let task = second.store.get_task("t1").await.unwrap().unwrap();
        if task.task.status.state == TaskState::Failed {
            let text = task.task.status.message.as_ref().map(|m| m.text()).unwrap_or_default();
            assert!(text.contains("stopped responding"), "{text}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the job was not dead-lettered: {:?}", task.task.status.state);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = second.queue.stats().await.unwrap();
    assert_eq!((stats.pending, stats.running, stats.dead_letter), (0, 0, 1));
}

#[tokio::test]
async fn embedded_writes_a_kept_back_creation_at_shutdown_not_before() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap().to_string();
    {
        // A crash: the creation no one was told about is gone, and so is its turn.
        let b = switchyard::store::embedded::open(&path, &options()).unwrap();
        b.store.apply(create_answered_at_turn_end("t1", "j1")).await.unwrap();
        b.queue.close();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    {
        let b = switchyard::store::embedded::open(&path, &options()).unwrap();
        assert!(b.store.get_task("t1").await.unwrap().is_none());
        assert_eq!(b.queue.recover(3).await.unwrap(), (0, 0));
        // A shutdown writes it, queued for the next start.
        b.store.apply(create_answered_at_turn_end("t2", "j2")).await.unwrap();
        b.queue.close();
        b.queue.hand_back().await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let b = switchyard::store::embedded::open(&path, &options()).unwrap();
    assert_eq!(b.queue.recover(3).await.unwrap(), (1, 0));
    let job = next_job(&b).await;
    assert_eq!((job.task_id.as_str(), job.attempt), ("t2", 2));
    assert_eq!(b.sessions.session_tasks("default", "ctx").await.unwrap().len(), 1);
}

#[tokio::test]
async fn embedded_recovery_requeues_interrupted_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap().to_string();
    {
        let b = switchyard::store::embedded::open(&path, &options()).unwrap();
        b.store.apply(create("t1", "j1")).await.unwrap();
        b.store.apply(create("t2", "j2")).await.unwrap();
        b.store.apply(finish("t2", "j2", TaskState::Completed)).await.unwrap();
        b.queue.close();
    }
    // redb allows one open handle per file; the writer thread of the first drops with its channel.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let b = switchyard::store::embedded::open(&path, &options()).unwrap();
    assert_eq!(b.queue.recover(3).await.unwrap(), (1, 0));
    let job = next_job(&b).await;
    assert_eq!((job.task_id.as_str(), job.attempt), ("t1", 2));
}
