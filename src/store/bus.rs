//! In-process fan-out of task events: one broadcast channel per followed task. The embedded
//! backend publishes into it directly; the Redis backend feeds it from pub/sub.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use foldhash::{HashMap, HashMapExt};
use serde_json::value::RawValue;
use tokio::sync::{broadcast, oneshot};

use super::{EventBus, LoggedEvent, StoreError, StoredTask, TurnEndSubscription};
use crate::protocol::StreamEvent;

/// Events a slow subscriber may fall behind before it re-reads the log.
const BUS_CAPACITY: usize = 32;

/// Canceled task ids a slow listener may fall behind.
const CANCEL_CAPACITY: usize = 1024;

/// Per-task broadcast channels plus the cancellation channel.
pub struct LocalBus {
    channels: Mutex<HashMap<String, Channel>>,
    subscribes: AtomicU64,
    cancellations: broadcast::Sender<String>,
}

impl Default for LocalBus {
    fn default() -> Self {
        LocalBus {
            channels: Mutex::new(HashMap::new()),
            subscribes: AtomicU64::new(0),
            cancellations: broadcast::channel(CANCEL_CAPACITY).0,
        }
    }
}

/// One followed task: its subscribers, and those waiting only for the event that ends the
/// turn (woken once, not for every event before it).
struct Channel {
    sender: broadcast::Sender<Arc<LoggedEvent>>,
    turn_end: Vec<oneshot::Sender<Arc<LoggedEvent>>>,
}

impl Channel {
    fn new() -> (Channel, broadcast::Receiver<Arc<LoggedEvent>>) {
        let (sender, receiver) = broadcast::channel(BUS_CAPACITY);
        (Channel { sender, turn_end: Vec::new() }, receiver)
    }

    fn followed(&self) -> bool {
        self.sender.receiver_count() > 0
    }
}

impl LocalBus {
    fn channels(&self) -> std::sync::MutexGuard<'_, HashMap<String, Channel>> {
        self.channels.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends an event to the task's subscribers. A final event carries the task as it ended the
    /// turn (so a waiting `message/send` need not read it back), with its JSON when `json` has it.
    pub fn publish(
        &self,
        task_id: &str,
        seq: u64,
        event: &StreamEvent,
        task: &Arc<StoredTask>,
        json: Option<Arc<RawValue>>,
    ) {
        self.send(task_id, event.is_final(), || Arc::new(LoggedEvent::on_bus(seq, event.clone(), task, json, 0)));
    }

    /// Sends a logged event to the task's subscribers; returns whether anyone still follows the
    /// task. A final event closes the channel: its subscribers still receive it, and the next
    /// turn's subscribers get a fresh one.
    pub fn deliver(&self, task_id: &str, event: Arc<LoggedEvent>) -> bool {
        self.send(task_id, event.event.is_final(), || event)
    }

    /// Sends the event `make` builds (only when the task has subscribers) under one lookup.
    fn send(&self, task_id: &str, is_final: bool, make: impl FnOnce() -> Arc<LoggedEvent>) -> bool {
        let mut channels = self.channels();
        let Some(channel) = channels.get_mut(task_id) else { return false };
        if channel.followed() {
            let event = make();
            if is_final {
                for waiter in channel.turn_end.drain(..) {
                    let _ = waiter.send(event.clone());
                }
            }
            let _ = channel.sender.send(event);
        }
        if !channel.followed() || is_final {
            channels.remove(task_id);
            return false;
        }
        true
    }

    /// Opens a subscription; true when it is the task's first (a remote subscription is needed).
    pub fn subscribe_local(&self, task_id: &str) -> (broadcast::Receiver<Arc<LoggedEvent>>, bool) {
        self.subscribe_with(task_id, |_| ())
    }

    /// A subscription (see [`EventBus::subscribe_to_turn_end_here`]) plus the turn's end alone.
    pub fn subscribe_local_to_turn_end(&self, task_id: &str) -> TurnEndSubscription {
        let (end_tx, turn_end) = oneshot::channel();
        let (events, _) = self.subscribe_with(task_id, |channel| channel.turn_end.push(end_tx));
        TurnEndSubscription { events, turn_end }
    }

    fn subscribe_with(
        &self,
        task_id: &str,
        also: impl FnOnce(&mut Channel),
    ) -> (broadcast::Receiver<Arc<LoggedEvent>>, bool) {
        let mut channels = self.channels();
        // Followers of tasks that never publish again leave idle channels; sweep them now and then.
        if self.subscribes.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            channels.retain(|_, c| c.followed());
        }
        match channels.get_mut(task_id) {
            Some(channel) => {
                also(channel);
                (channel.sender.subscribe(), false)
            }
            None => {
                let (mut channel, receiver) = Channel::new();
                also(&mut channel);
                channels.insert(task_id.to_string(), channel);
                (receiver, true)
            }
        }
    }

    /// Whether anyone on this instance follows the task.
    pub fn is_followed(&self, task_id: &str) -> bool {
        self.channels().get(task_id).is_some_and(Channel::followed)
    }

    /// Closes one task's channel: its followers see the end of their receiver, subscribe again
    /// and read what they missed from the log (used when another instance wrote to a task whose
    /// turn runs here, such as a cancel).
    pub fn close(&self, task_id: &str) {
        self.channels().remove(task_id);
    }

    /// Closes every channel: followers see the end of their receiver and re-read the log (used
    /// when a remote feed was interrupted and events may have been missed).
    pub fn close_all(&self) {
        self.channels().clear();
    }

    /// Tells listeners on this instance that a task was canceled.
    pub fn announce_cancel(&self, task_id: &str) {
        let _ = self.cancellations.send(task_id.to_string());
    }
}

#[async_trait]
impl EventBus for LocalBus {
    fn subscribe_here(&self, task_id: &str) -> broadcast::Receiver<Arc<LoggedEvent>> {
        self.subscribe_local(task_id).0
    }

    fn subscribe_to_turn_end_here(&self, task_id: &str) -> TurnEndSubscription {
        self.subscribe_local_to_turn_end(task_id)
    }

    async fn extend_to_remote(&self, _task_id: &str) -> Result<(), StoreError> {
        Ok(())
    }

    fn subscriptions(&self) -> usize {
        self.channels().values().map(|c| c.sender.receiver_count()).sum()
    }

    fn cancellations(&self) -> broadcast::Receiver<String> {
        self.cancellations.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{StatusUpdateKind, TaskState, TaskStatus, TaskStatusUpdateEvent};

    fn status(seq: u64, is_final: bool) -> Arc<LoggedEvent> {
        let state = if is_final { TaskState::Completed } else { TaskState::Working };
        let event = StreamEvent::Status(TaskStatusUpdateEvent {
            kind: StatusUpdateKind,
            task_id: "t1".into(),
            context_id: "c1".into(),
            status: TaskStatus::now(state, None),
            is_final,
            metadata: None,
        });
        Arc::new(LoggedEvent { seq, event, snapshot: None })
    }

    /// A turn-end follower gets the final event alone, while its subscription still holds
    /// every event; other followers of the task are unaffected.
    #[tokio::test]
    async fn a_turn_end_follower_gets_the_final_event_alone() {
        let bus = LocalBus::default();
        let TurnEndSubscription { mut events, mut turn_end } = bus.subscribe_local_to_turn_end("t1");
        let mut other = bus.subscribe_here("t1");
        assert!(bus.deliver("t1", status(2, false)));
        assert!(turn_end.try_recv().is_err(), "woken before the turn ended");
        assert!(!bus.deliver("t1", status(3, true)), "a final event closes the channel");
        assert_eq!(turn_end.await.unwrap().seq, 3);
        for receiver in [&mut events, &mut other] {
            assert_eq!(receiver.recv().await.unwrap().seq, 2);
            assert_eq!(receiver.recv().await.unwrap().seq, 3);
        }
    }

    /// A closed channel (an interrupted feed) fails the wait, so the follower reads the log.
    #[tokio::test]
    async fn closing_the_channel_fails_the_turn_end_wait() {
        let bus = LocalBus::default();
        let subscription = bus.subscribe_local_to_turn_end("t1");
        bus.close("t1");
        assert!(subscription.turn_end.await.is_err());
        assert!(!bus.is_followed("t1"));
    }
}
