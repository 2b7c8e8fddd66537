//! Key and channel names. Every key of a deployment carries the prefix as a hash tag
//! (`{switchyard}:task:ID`), so each Lua script's keys live in one slot and run unchanged on
//! Redis Cluster; the cluster then gives one deployment high availability, not sharding.

/// Names of a deployment's keys and channels.
#[derive(Debug, Clone)]
pub struct Keys {
    base: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys { base: format!("{{{prefix}}}") }
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
    pub fn queue(&self) -> String {
        format!("{}:queue", self.base)
    }

    /// Hash: job id → Job JSON, for every job queued, running or waiting for a retry.
    pub fn jobs(&self) -> String {
        format!("{}:jobs", self.base)
    }

    /// Hash: job id → its entry id in the queue stream.
    pub fn job_entries(&self) -> String {
        format!("{}:job-entries", self.base)
    }

    /// Sorted set: job ids waiting for a retry, scored by when they are due (ms).
    pub fn delayed(&self) -> String {
        format!("{}:delayed", self.base)
    }

    /// Stream: dead-lettered jobs, fields `id` (job id) and `letter` (DeadLetter JSON).
    pub fn dead_letters(&self) -> String {
        format!("{}:dlq", self.base)
    }

    /// Hash: job id → its entry id in the dead-letter stream.
    pub fn dead_letter_index(&self) -> String {
        format!("{}:dlq-index", self.base)
    }

    /// Sorted set: terminal task ids scored by when they expire (ms).
    pub fn expiry(&self) -> String {
        format!("{}:expiry", self.base)
    }

    /// Hash: counters (`completed`, `failed`, `canceled`, `processed`, `processing_ms`).
    pub fn stats(&self) -> String {
        format!("{}:stats", self.base)
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
    pub fn cancel_channel(&self) -> String {
        format!("{}:cancel", self.base)
    }

    /// Hash: app id → AppRecord JSON.
    pub fn apps(&self) -> String {
        format!("{}:apps", self.base)
    }

    /// Hash: app name → app id (names are unique).
    pub fn app_names(&self) -> String {
        format!("{}:app-names", self.base)
    }

    /// Hash: key id → KeyRecord JSON (token signing keys).
    pub fn signing_keys(&self) -> String {
        format!("{}:signing-keys", self.base)
    }

    /// Pub/sub channel announcing that apps or signing keys changed.
    pub fn tenancy_channel(&self) -> String {
        format!("{}:tenancy", self.base)
    }

    /// String: requests counted for one rate limit, caller and window (expires with the window).
    pub fn rate(&self, limit_key: &str, window_start: u64) -> String {
        format!("{}:rate:{limit_key}:{window_start}", self.base)
    }

    /// Hash: a session's `user`, `created` (ms) and `position`. App ids never contain `:`, so
    /// the context id (anything a client sent) is the whole rest of the name.
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

    /// Sorted set: a session's task ids scored in creation order (by the session counter).
    pub fn session_tasks(&self, app: &str, id: &str) -> String {
        format!("{}:session-tasks:{app}:{id}", self.base)
    }

    /// String: the counter that numbers sessions and their tasks in creation order.
    pub fn session_position(&self) -> String {
        format!("{}:session-position", self.base)
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
    pub fn deliveries(&self) -> String {
        format!("{}:deliveries", self.base)
    }

    /// Sorted set: pending delivery ids scored by when they are due (ms).
    pub fn delivery_due(&self) -> String {
        format!("{}:delivery-due", self.base)
    }

    /// Sorted set: every delivery id with score 0, in lexical (= creation) order.
    pub fn delivery_log(&self) -> String {
        format!("{}:delivery-log", self.base)
    }

    /// The consumer group of the queue.
    pub fn group(&self) -> &'static str {
        "workers"
    }
}
