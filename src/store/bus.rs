//! In-process fan-out of task events: one broadcast channel per followed task. The embedded
//! backend publishes into it directly; the Redis backend feeds it from pub/sub.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use foldhash::{HashMap, HashMapExt};
use serde_json::value::RawValue;
use tokio::sync::broadcast;

use super::{EventBus, LoggedEvent, StoreError, StoredTask};
use crate::protocol::StreamEvent;

/// Events a slow subscriber may fall behind before it re-reads the log.
const BUS_CAPACITY: usize = 32;

/// Canceled task ids a slow listener may fall behind.
const CANCEL_CAPACITY: usize = 1024;

/// Per-task broadcast channels plus the cancellation channel.
pub struct LocalBus {
    channels: Mutex<HashMap<String, broadcast::Sender<Arc<LoggedEvent>>>>,
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

impl LocalBus {
    fn channels(&self) -> std::sync::MutexGuard<'_, HashMap<String, broadcast::Sender<Arc<LoggedEvent>>>> {
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
        let Some(sender) = channels.get(task_id) else { return false };
        if sender.receiver_count() > 0 {
            let _ = sender.send(make());
        }
        if sender.receiver_count() == 0 || is_final {
            channels.remove(task_id);
            return false;
        }
        true
    }

    /// Opens a subscription; true when it is the task's first (a remote subscription is needed).
    pub fn subscribe_local(&self, task_id: &str) -> (broadcast::Receiver<Arc<LoggedEvent>>, bool) {
        let mut channels = self.channels();
        // Followers of tasks that never publish again leave idle channels; sweep them now and then.
        if self.subscribes.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            channels.retain(|_, s| s.receiver_count() > 0);
        }
        match channels.get(task_id) {
            Some(sender) => (sender.subscribe(), false),
            None => {
                let (sender, receiver) = broadcast::channel(BUS_CAPACITY);
                channels.insert(task_id.to_string(), sender);
                (receiver, true)
            }
        }
    }

    /// Whether anyone on this instance follows the task.
    pub fn is_followed(&self, task_id: &str) -> bool {
        self.channels().get(task_id).is_some_and(|s| s.receiver_count() > 0)
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

    async fn extend_to_remote(&self, _task_id: &str) -> Result<(), StoreError> {
        Ok(())
    }

    fn subscriptions(&self) -> usize {
        self.channels().values().map(|s| s.receiver_count()).sum()
    }

    fn cancellations(&self) -> broadcast::Receiver<String> {
        self.cancellations.subscribe()
    }
}
