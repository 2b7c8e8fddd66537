//! Outgoing HTTP that must arrive: push notifications. Each delivery runs in the background
//! (a task never waits for it) and is retried with exponential backoff and full jitter up to a
//! bounded number of attempts; a 2xx answer ends it.

use std::time::Duration;

use crate::protocol::{PushNotificationConfig, Task};

/// Retry policy of push deliveries.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { max_attempts: 5, base: Duration::from_millis(500), max_delay: Duration::from_secs(30) }
    }
}

impl RetryPolicy {
    /// Delay before attempt `attempt + 1`: a random point in `[0, min(max, base * 2^(attempt-1))]`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self.base.saturating_mul(1u32 << (attempt.saturating_sub(1)).min(16));
        let cap = exp.min(self.max_delay);
        cap.mul_f64(rand::random::<f64>())
    }
}

/// Delivers task snapshots to push notification receivers.
#[derive(Clone)]
pub struct PushDelivery {
    client: reqwest::Client,
    policy: RetryPolicy,
}

impl PushDelivery {
    /// A delivery component with its own HTTP client.
    pub fn new(policy: RetryPolicy) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("switchyard/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        PushDelivery { client, policy }
    }

    /// POSTs `task` to every config in the background.
    pub fn deliver(&self, task: &Task, configs: &[PushNotificationConfig]) {
        let body = match serde_json::to_vec(task) {
            Ok(b) => bytes::Bytes::from(b),
            Err(_) => return,
        };
        for config in configs {
            let this = self.clone();
            let config = config.clone();
            let body = body.clone();
            let task_id = task.id.clone();
            tokio::spawn(async move { this.deliver_one(&task_id, &config, body).await });
        }
    }

    async fn deliver_one(&self, task_id: &str, config: &PushNotificationConfig, body: bytes::Bytes) {
        for attempt in 1..=self.policy.max_attempts {
            let mut request = self
                .client
                .post(&config.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
            if let Some(token) = &config.token {
                request = request.header("X-A2A-Notification-Token", token);
            }
            if let Some(auth) = &config.authentication {
                if let Some(credentials) = &auth.credentials {
                    // The first scheme the receiver asked for, e.g. "Bearer" or "Basic".
                    let scheme = auth.schemes.first().map(String::as_str).unwrap_or("Bearer");
                    request = request.header(reqwest::header::AUTHORIZATION, format!("{scheme} {credentials}"));
                }
            }
            match request.send().await {
                Ok(response) if response.status().is_success() => {
                    crate::observability::push_delivery(true, attempt);
                    return;
                }
                Ok(response) => {
                    tracing::warn!(
                        task_id,
                        url = config.url,
                        status = response.status().as_u16(),
                        attempt,
                        "push notification refused"
                    )
                }
                Err(e) => tracing::warn!(task_id, url = config.url, error = %e, attempt, "push notification failed"),
            }
            if attempt < self.policy.max_attempts {
                tokio::time::sleep(self.policy.delay(attempt)).await;
            }
        }
        crate::observability::push_delivery(false, self.policy.max_attempts);
        tracing::error!(task_id, url = config.url, attempts = self.policy.max_attempts, "push notification given up");
    }
}
