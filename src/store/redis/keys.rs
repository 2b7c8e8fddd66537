//! Key and channel names. Every key of a deployment carries the prefix as a hash tag
//! (`{switchyard}:task:ID`), so each Lua script's keys live in one slot and run unchanged on
//! Redis Cluster; the cluster then gives one deployment high availability, not sharding.

use std::sync::Arc;

/// Names of a deployment's keys and channels.
#[derive(Debug, Clone)]
pub struct Keys {
    base: String,
    /// The names that do not depend on an id, formatted once (every task write names several).
    fixed: Arc<Fixed>,
}

#[derive(Debug)]
struct Fixed {
    queue: String,
    jobs: String,
    job_entries: String,
    delayed: String,
    dead_letters: String,
    dead_letter_index: String,
    expiry: String,
    stats: String,
    cancel_channel: String,
    apps: String,
    app_names: String,
    signing_keys: String,
    tenancy_channel: String,
    session_position: String,
    deliveries: String,
    delivery_due: String,
    delivery_log: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        let base = format!("{{{prefix}}}");
        let fixed = Arc::new(Fixed {
            queue: format!("{base}:queue"),
            jobs: format!("{base}:jobs"),
            job_entries: format!("{base}:job-entries"),
            delayed: format!("{base}:delayed"),
            dead_letters: format!("{base}:dlq"),
            dead_letter_index: format!("{base}:dlq-index"),
            expiry: format!("{base}:expiry"),
            stats: format!("{base}:stats"),
            cancel_channel: format!("{base}:cancel"),
            apps: format!("{base}:apps"),
            app_names: format!("{base}:app-names"),
            signing_keys: format!("{base}:signing-keys"),
            tenancy_channel: format!("{base}:tenancy"),
            session_position: format!("{base}:session-position"),
            deliveries: format!("{base}:deliveries"),
            delivery_due: format!("{base}:delivery-due"),
            delivery_log: format!("{base}:delivery-log"),
        });
        Keys { base, fixed }
    }

    /// Hash: `seq` (last event), `data` (the StoredTask JSON), and the task's event log:
    /// `e:<seq>` the event JSON, `events` how many there are.
    pub fn task(&self, task_id: &str) -> String {
        format!("{}:task:{task_id}", self.base)
    }

    /// Hash: push config id → PushNotificationConfig JSON.
    pub fn push(&self, task_id: &str) -> String {
        format!("{}:push:{task_id}", self.base)
    }

    /// Stream: queued turns, field `job` the Job JSON; read by the consumer group.
    pub fn queue(&self) -> &str {
        &self.fixed.queue
    }

    /// Hash: job id → Job JSON, for every job queued, running or waiting for a retry.
    pub fn jobs(&self) -> &str {
        &self.fixed.jobs
    }

    /// Hash: job id → its entry id in the queue stream.
    pub fn job_entries(&self) -> &str {
        &self.fixed.job_entries
    }

    /// Sorted set: job ids waiting for a retry, scored by when they are due (ms).
    pub fn delayed(&self) -> &str {
        &self.fixed.delayed
    }

    /// Stream: dead-lettered jobs, fields `id` (job id) and `letter` (DeadLetter JSON).
    pub fn dead_letters(&self) -> &str {
        &self.fixed.dead_letters
    }

    /// Hash: job id → its entry id in the dead-letter stream.
    pub fn dead_letter_index(&self) -> &str {
        &self.fixed.dead_letter_index
    }

    /// Sorted set: terminal task ids scored by when they expire (ms).
    pub fn expiry(&self) -> &str {
        &self.fixed.expiry
    }

    /// Hash: counters (`completed`, `failed`, `canceled`, `processed`, `processing_ms`).
    pub fn stats(&self) -> &str {
        &self.fixed.stats
    }

    /// Pub/sub channel of one task's events.
    pub fn channel(&self, task_id: &str) -> String {
        format!("{}:ev:{task_id}", self.base)
    }

    /// The task id of an event channel.
    pub fn channel_task<'a>(&self, channel: &'a str) -> Option<&'a str> {
        channel.strip_prefix(self.base.as_str())?.strip_prefix(":ev:")
    }

    /// Pub/sub channel of canceled task ids.
    pub fn cancel_channel(&self) -> &str {
        &self.fixed.cancel_channel
    }

    /// Hash: app id → AppRecord JSON.
    pub fn apps(&self) -> &str {
        &self.fixed.apps
    }

    /// Hash: app name → app id (names are unique).
    pub fn app_names(&self) -> &str {
        &self.fixed.app_names
    }

    /// Hash: key id → KeyRecord JSON (token signing keys).
    pub fn signing_keys(&self) -> &str {
        &self.fixed.signing_keys
    }

    /// Pub/sub channel announcing that apps or signing keys changed.
    pub fn tenancy_channel(&self) -> &str {
        &self.fixed.tenancy_channel
    }

    /// String: requests counted for one rate limit, caller and window (expires with the window).
    pub fn rate(&self, limit_key: &str, window_start: u64) -> String {
        format!("{}:rate:{limit_key}:{window_start}", self.base)
    }

    /// Hash: a session's `user`, `created` (ms) and `position`, and its tasks: `t:<task id>`
    /// the task's position (from the same counter, so they sort in creation order). App ids
    /// never contain `:`, so the context id (anything a client sent) is the whole rest of the
    /// name.
    pub fn session(&self, app: &str, id: &str) -> String {
        format!("{}:session:{app}:{id}", self.base)
    }

    /// Sorted set: an app's session ids scored by position.
    pub fn sessions(&self, app: &str) -> String {
        format!("{}:sessions:{app}", self.base)
    }

    /// The prefix of [`Keys::user_sessions`] for an app (the script that forgets a session
    /// completes it with the user it reads).
    pub fn user_sessions_prefix(&self, app: &str) -> String {
        format!("{}:user-sessions:{app}:", self.base)
    }

    /// Sorted set: one user's session ids of an app scored by position.
    pub fn user_sessions(&self, app: &str, user: &str) -> String {
        format!("{}{user}", self.user_sessions_prefix(app))
    }

    /// Sorted set: a session's task ids scored in creation order (by the session counter), as
    /// indexed by versions before a session's tasks moved into its hash ([`Keys::session`]);
    /// still read and emptied, never written.
    pub fn legacy_session_tasks(&self, app: &str, id: &str) -> String {
        format!("{}:session-tasks:{app}:{id}", self.base)
    }

    /// String: the counter that numbers sessions and their tasks in creation order.
    pub fn session_position(&self) -> &str {
        &self.fixed.session_position
    }

    /// Hash: a capture session's `created`, `expires` and `limit` (ms and count, 0 = none),
    /// `count`, the response (`status`, `ctype`, `body`), `forward` and `fsecret` (forwarding URL
    /// and signing secret) and `app` ("" = none).
    pub fn capture(&self, id: &str) -> String {
        format!("{}:capture:{id}", self.base)
    }

    /// Sorted set: a capture session's events (CapturedEvent JSON) scored by number.
    pub fn capture_events(&self, id: &str) -> String {
        format!("{}:capture-events:{id}", self.base)
    }

    /// Pub/sub channel of a capture session's recorded requests (an empty message: deleted).
    pub fn capture_channel(&self, id: &str) -> String {
        format!("{}:capture-live:{id}", self.base)
    }

    /// The session id of a capture channel.
    pub fn channel_capture<'a>(&self, channel: &'a str) -> Option<&'a str> {
        channel.strip_prefix(self.base.as_str())?.strip_prefix(":capture-live:")
    }

    /// Hash: delivery id → Delivery JSON.
    pub fn deliveries(&self) -> &str {
        &self.fixed.deliveries
    }

    /// Sorted set: pending delivery ids scored by when they are due (ms).
    pub fn delivery_due(&self) -> &str {
        &self.fixed.delivery_due
    }

    /// Sorted set: every delivery id with score 0, in lexical (= creation) order.
    pub fn delivery_log(&self) -> &str {
        &self.fixed.delivery_log
    }

    /// The consumer group of the queue.
    pub fn group(&self) -> &'static str {
        "workers"
    }
}
