//! Following a task: replayed or snapshot events first, then live events from the bus, each
//! exactly once and in order, until the event that ends the turn.
//!
//! The subscription is opened *before* the snapshot or replay is read, and the store publishes
//! only after a write is visible, so every event is either in what was read or still to come on
//! the bus; events the reader already has are skipped by sequence number. A subscriber that
//! falls behind the bus (or sees a gap) reads the missing events from the task's log.

use std::sync::Arc;

use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::oneshot;

use super::{Engine, EngineError};
use crate::protocol::StreamEvent;
use crate::store::{LoggedEvent, StoredTask};

/// How long a follower waits on a silent feed before it checks the task's log.
const RESYNC_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// The events of one follow: `initial` in order, then (unless `live` is false) live events with
/// a sequence above the last one sent, until a final event.
pub fn follow(
    engine: Engine,
    task_id: String,
    mut live_events: broadcast::Receiver<Arc<LoggedEvent>>,
    initial: Vec<LoggedEvent>,
    after: u64,
    live: bool,
) -> BoxStream<'static, Result<LoggedEvent, EngineError>> {
    Box::pin(async_stream::stream! {
        let mut last = after;
        for event in initial {
            last = last.max(event.seq);
            let is_final = event.event.is_final();
            yield Ok(event);
            if is_final {
                return;
            }
        }
        if !live {
            return;
        }
        loop {
            // A silent feed is checked against the log now and then: a write this instance was
            // not subscribed to (another instance took the turn over) must not leave it waiting.
            let received = match tokio::time::timeout(RESYNC_AFTER, live_events.recv()).await {
                Ok(received) => received,
                Err(_) => Err(RecvError::Lagged(0)),
            };
            let missed_from = match received {
                Ok(event) if event.seq <= last => continue,
                Ok(event) if event.seq == last + 1 => {
                    last = event.seq;
                    let event = LoggedEvent::clone(&event);
                    let is_final = event.event.is_final();
                    yield Ok(event);
                    if is_final {
                        return;
                    }
                    continue;
                }
                // A gap or a lag: the log has what the bus could not deliver.
                Ok(_) | Err(RecvError::Lagged(_)) => last,
                // The feed was interrupted (a Redis connection dropped): follow again, then read
                // from the log whatever happened meanwhile.
                Err(RecvError::Closed) => match engine.subscribe(&task_id).await {
                    Ok(events) => {
                        live_events = events;
                        last
                    }
                    Err(e) => {
                        yield Err(e);
                        return;
                    }
                },
            };
            let missed = match engine.events_after(&task_id, missed_from).await {
                // Nothing new: the task must still be there to be worth waiting for (it may
                // have been removed, or dropped before it was ever written).
                Ok(missed) if missed.is_empty() => match engine.task(&task_id).await {
                    Ok(_) => missed,
                    Err(e) => {
                        yield Err(e);
                        return;
                    }
                },
                Ok(missed) => missed,
                Err(e) => {
                    // The stream has started: the error goes out as its last event.
                    yield Err(e);
                    return;
                }
            };
            for event in missed {
                last = event.seq;
                let is_final = event.event.is_final();
                yield Ok(event);
                if is_final {
                    return;
                }
            }
        }
    })
}

/// The event that ends the turn a caller started (a blocking `message/send`, a webhook that
/// waits): the first final event after `after`, in `missed` or then on the bus: from
/// `ending`, the bus's turn-end notice, when the caller has one (it wakes the caller once
/// instead of for every event), else counted through the events before it. Whatever the bus
/// leaves in doubt (a lag, a gap, an interrupted feed, a silent spell) is settled by
/// [`follow`] from the task's log. None when the follow ended without one.
pub async fn turn_end(
    engine: Engine,
    task_id: String,
    mut live_events: broadcast::Receiver<Arc<LoggedEvent>>,
    ending: Option<oneshot::Receiver<Arc<LoggedEvent>>>,
    missed: Vec<LoggedEvent>,
    after: u64,
) -> Result<Option<LoggedEvent>, EngineError> {
    let mut last = after;
    for event in missed {
        last = last.max(event.seq);
        if event.event.is_final() {
            return Ok(Some(event));
        }
    }
    if let Some(ending) = ending {
        match tokio::time::timeout(RESYNC_AFTER, ending).await {
            Ok(Ok(event)) if event.seq > last => return Ok(Some(LoggedEvent::clone(&event))),
            // A silent spell or an interrupted feed: the events the subscription kept, then
            // the log, tell what happened.
            _ => {}
        }
    }
    loop {
        match tokio::time::timeout(RESYNC_AFTER, live_events.recv()).await {
            Ok(Ok(event)) if event.seq <= last => {}
            Ok(Ok(event)) if event.seq == last + 1 => {
                if event.event.is_final() {
                    return Ok(Some(LoggedEvent::clone(&event)));
                }
                last = event.seq;
            }
            _ => break,
        }
    }
    let missed = engine.events_after(&task_id, last).await?;
    let mut events = follow(engine, task_id, live_events, missed, last, true);
    while let Some(event) = events.next().await {
        let event = event?;
        if event.event.is_final() {
            return Ok(Some(event));
        }
    }
    Ok(None)
}

/// Resumes following a task from another connection (`tasks/resubscribe`, browser streams).
/// Without `last_event_id` the current Task comes first; with it, the log is replayed after that
/// id. A task with no turn running gets its snapshot (or the replay) and the stream ends.
pub async fn resume(
    engine: &Engine,
    task_id: &str,
    last_event_id: Option<u64>,
) -> Result<(StoredTask, BoxStream<'static, Result<LoggedEvent, EngineError>>), EngineError> {
    let (stored, live_events) = engine.follow(task_id).await?;
    let running = stored.job_id.is_some() && !stored.task.status.state.is_terminal();
    let snapshot = LoggedEvent { seq: stored.seq, event: StreamEvent::Task(stored.task.clone()), snapshot: None };
    let (initial, after) = match last_event_id {
        Some(after) => {
            let mut replay = engine.events_after(task_id, after).await?;
            if replay.is_empty() && !running {
                replay.push(snapshot);
            }
            (replay, after)
        }
        None => (vec![snapshot], stored.seq),
    };
    let events = follow(engine.clone(), task_id.to_string(), live_events, initial, after, running);
    Ok((stored, events))
}
