//! Cross-instance fan-out over Redis pub/sub. Each instance subscribes (on one RESP3 connection
//! of its own) to the channels of the tasks its clients follow, and to the cancellation channel;
//! incoming events feed the same in-process fan-out the embedded backend uses.
//!
//! Subscribing waits for Redis to confirm, so an event published after `subscribe` returns
//! cannot be missed. Subscribe and unsubscribe commands go through one ordered queue (batched
//! into one round trip), so an unsubscribe for a finished turn can never overtake the subscribe
//! of the task's next follower. When the connection drops, every local follower is closed and
//! re-reads the log after subscribing again.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::{PushInfo, PushKind, Value};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::connection::{Deployment, Subscriber};
use super::keys::Keys;
use crate::protocol::StreamEvent;
use crate::store::bus::LocalBus;
use crate::store::capture::{CapturedEvent, LiveCaptures};
use crate::store::{EventBus, LoggedEvent, Snapshot, StoreError, StoredTask, TurnEndSubscription};

enum Command {
    Subscribe(String, oneshot::Sender<Result<(), String>>),
    /// Unsubscribe from a channel unless someone here follows it again.
    Unsubscribe(Followed),
}

/// What a channel carries.
enum Followed {
    /// A task's events.
    Task(String),
    /// A capture session's recorded requests.
    Capture(String),
}

/// The Redis event bus of one instance.
pub struct RedisBus {
    local: Arc<LocalBus>,
    /// Followers of capture sessions on this instance.
    captures: Arc<LiveCaptures>,
    /// Marks this instance's publications, which its own followers already got directly.
    source: String,
    keys: Keys,
    commands: mpsc::UnboundedSender<Command>,
    timeout: Duration,
    /// Notices from the tenancy channel (and after a reconnection, when some may be lost).
    tenancy: broadcast::Sender<()>,
}

/// An event as published by the apply script (`src`, the writing instance, is not needed here).
#[derive(serde::Deserialize)]
struct Published {
    seq: u64,
    event: StreamEvent,
    #[serde(default)]
    task: Option<StoredTask>,
}

impl RedisBus {
    /// Opens the pub/sub connection and subscribes to the cancellation channel.
    pub(super) async fn connect(
        deployment: &Deployment,
        keys: Keys,
        timeout: Duration,
    ) -> Result<Arc<RedisBus>, StoreError> {
        let local = Arc::new(LocalBus::default());
        let captures = Arc::new(LiveCaptures::default());
        let source = uuid::Uuid::new_v4().simple().to_string();
        let (commands, queue) = mpsc::unbounded_channel();
        let tenancy = broadcast::channel(16).0;
        let dispatch = {
            let local = local.clone();
            let captures = captures.clone();
            let keys = keys.clone();
            let commands = commands.clone();
            let tenancy = tenancy.clone();
            let own = format!("{{\"src\":\"{source}\"").into_bytes();
            move |info: PushInfo| -> Result<(), std::convert::Infallible> {
                on_push(&local, &captures, &keys, &commands, &tenancy, &own, info);
                Ok(())
            }
        };
        let mut conn = deployment.subscriber(dispatch).await?;
        conn.subscribe(&[keys.cancel_channel().to_string(), keys.tenancy_channel().to_string()])
            .await
            .map_err(|e| StoreError::Unavailable(format!("Redis pub/sub: {e}")))?;
        let bus = Arc::new(RedisBus {
            local: local.clone(),
            captures: captures.clone(),
            source,
            keys: keys.clone(),
            commands,
            timeout,
            tenancy,
        });
        tokio::spawn(run_commands(conn, queue, local, captures, keys));
        Ok(bus)
    }

    /// This instance's mark on what it publishes.
    pub(super) fn source(&self) -> &str {
        &self.source
    }

    /// Notices that apps or signing keys changed on some instance.
    pub(super) fn tenancy_changes(&self) -> &broadcast::Sender<()> {
        &self.tenancy
    }

    /// The in-process fan-out (for events this instance wrote).
    pub(super) fn local(&self) -> &LocalBus {
        &self.local
    }

    /// Follows the requests a capture session records, on every instance.
    pub(super) async fn follow_capture(&self, id: &str) -> Result<broadcast::Receiver<Arc<CapturedEvent>>, StoreError> {
        let receiver = self.captures.subscribe(id);
        self.subscribe(self.keys.capture_channel(id)).await?;
        Ok(receiver)
    }

    /// Subscribes this instance to a channel and waits until Redis confirms.
    async fn subscribe(&self, channel: String) -> Result<(), StoreError> {
        let (reply, confirmed) = oneshot::channel();
        self.commands
            .send(Command::Subscribe(channel, reply))
            .map_err(|_| StoreError::Unavailable("Redis pub/sub is shut down".into()))?;
        match tokio::time::timeout(self.timeout * 2, confirmed).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(StoreError::Unavailable(format!("Redis: cannot subscribe: {e}"))),
            _ => Err(StoreError::Unavailable("Redis: subscribing timed out".into())),
        }
    }
}

/// Handles one push from Redis: an event for local followers, a cancellation, or the news
/// that the connection dropped.
fn on_push(
    local: &LocalBus,
    captures: &LiveCaptures,
    keys: &Keys,
    commands: &mpsc::UnboundedSender<Command>,
    tenancy: &broadcast::Sender<()>,
    own: &[u8],
    info: PushInfo,
) {
    match info.kind {
        // SMessage: sharded pub/sub, on a cluster.
        PushKind::Message | PushKind::SMessage => {
            let [channel, payload] = info.data.as_slice() else { return };
            let (Some(channel), Some(payload)) = (bytes(channel), bytes(payload)) else { return };
            let channel = String::from_utf8_lossy(channel);
            if channel == keys.cancel_channel() {
                let task_id = String::from_utf8_lossy(payload);
                local.announce_cancel(&task_id);
                // Followers here may follow only this instance's writes (the turn ran here):
                // make them read the cancel from the log.
                local.close(&task_id);
                return;
            }
            if channel == keys.tenancy_channel() {
                let _ = tenancy.send(());
                return;
            }
            if let Some(id) = keys.channel_capture(&channel) {
                on_capture(captures, commands, id, payload);
                return;
            }
            let Some(task_id) = keys.channel_task(&channel) else { return };
            if payload.starts_with(own) {
                // Written here: local followers already have it.
                if !local.is_followed(task_id) {
                    let _ = commands.send(Command::Unsubscribe(Followed::Task(task_id.to_string())));
                }
                return;
            }
            let published: Published = match serde_json::from_slice(payload) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(channel = %channel, error = %e, "ignoring an unreadable event");
                    return;
                }
            };
            let event = LoggedEvent {
                seq: published.seq,
                event: published.event,
                snapshot: published.task.map(|task| Snapshot { task: Arc::new(task), json: None, unflushed: 0 }),
            };
            if !local.deliver(task_id, Arc::new(event)) {
                let _ = commands.send(Command::Unsubscribe(Followed::Task(task_id.to_string())));
            }
        }
        // On a cluster, a node that stops owning the deployment's slot (a failover, a slot
        // moved) drops its sharded subscribers with a SUNSUBSCRIBE of its own. Followers of the
        // channel then subscribe again and read the log, as after a disconnection, and this
        // instance's own channels are subscribed again. Confirmations of our own SUNSUBSCRIBEs
        // look the same; they name channels nobody here follows, so closing changes nothing.
        PushKind::SUnsubscribe => {
            let Some(channel) = info.data.first().and_then(bytes) else { return };
            let channel = String::from_utf8_lossy(channel);
            if channel == keys.cancel_channel() || channel == keys.tenancy_channel() {
                tracing::warn!(channel = %channel, "Redis dropped a sharded subscription; subscribing again");
                let (confirmed, _) = oneshot::channel();
                let _ = commands.send(Command::Subscribe(channel.into_owned(), confirmed));
                let _ = tenancy.send(());
            } else if let Some(id) = keys.channel_capture(&channel) {
                captures.close(id);
            } else if let Some(task_id) = keys.channel_task(&channel) {
                local.close(task_id);
            }
        }
        PushKind::Disconnection => {
            tracing::warn!("Redis pub/sub connection lost; followers re-read the task logs");
            local.close_all();
            captures.close_all();
            // Changes to apps or keys announced meanwhile are lost: reload.
            let _ = tenancy.send(());
        }
        _ => {}
    }
}

/// A capture session's recorded request for its followers here (an empty payload: the session
/// was deleted, and its followers end).
fn on_capture(captures: &LiveCaptures, commands: &mpsc::UnboundedSender<Command>, id: &str, payload: &[u8]) {
    if payload.is_empty() {
        captures.close(id);
        return;
    }
    let event: CapturedEvent = match serde_json::from_slice(payload) {
        Ok(event) => event,
        Err(e) => {
            tracing::warn!(session = id, error = %e, "ignoring an unreadable capture event");
            return;
        }
    };
    if !captures.publish(id, Arc::new(event)) {
        let _ = commands.send(Command::Unsubscribe(Followed::Capture(id.to_string())));
    }
}

fn bytes(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// Runs subscribe/unsubscribe commands in order, batching what queued up meanwhile.
async fn run_commands(
    mut conn: Subscriber,
    mut queue: mpsc::UnboundedReceiver<Command>,
    local: Arc<LocalBus>,
    captures: Arc<LiveCaptures>,
    keys: Keys,
) {
    let mut batch = Vec::new();
    while queue.recv_many(&mut batch, 512).await > 0 {
        let mut subscribe = Vec::new();
        let mut replies = Vec::new();
        let mut unsubscribe = Vec::new();
        for command in batch.drain(..) {
            match command {
                Command::Subscribe(channel, reply) => {
                    subscribe.push(channel);
                    replies.push(reply);
                }
                Command::Unsubscribe(Followed::Task(task_id)) => {
                    if !local.is_followed(&task_id) {
                        unsubscribe.push(keys.channel(&task_id));
                    }
                }
                Command::Unsubscribe(Followed::Capture(id)) => {
                    if !captures.is_followed(&id) {
                        unsubscribe.push(keys.capture_channel(&id));
                    }
                }
            }
        }
        unsubscribe.retain(|c| !subscribe.contains(c));
        if !unsubscribe.is_empty() {
            if let Err(e) = conn.unsubscribe(&unsubscribe).await {
                tracing::debug!(error = %e, "unsubscribe failed");
            }
        }
        if !subscribe.is_empty() {
            let outcome = conn.subscribe(&subscribe).await.map_err(|e| e.to_string());
            for reply in replies {
                let _ = reply.send(outcome.clone());
            }
        }
    }
}

#[async_trait]
impl EventBus for RedisBus {
    fn subscribe_here(&self, task_id: &str) -> broadcast::Receiver<Arc<LoggedEvent>> {
        self.local.subscribe_local(task_id).0
    }

    fn subscribe_to_turn_end_here(&self, task_id: &str) -> TurnEndSubscription {
        self.local.subscribe_local_to_turn_end(task_id)
    }

    async fn extend_to_remote(&self, task_id: &str) -> Result<(), StoreError> {
        self.subscribe(self.keys.channel(task_id)).await
    }

    fn subscriptions(&self) -> usize {
        self.local.subscriptions()
    }

    fn cancellations(&self) -> broadcast::Receiver<String> {
        self.local.cancellations()
    }
}
