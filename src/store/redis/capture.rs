//! Capture sessions on Redis: per session a hash of settings and counter and a sorted set of
//! its events scored by number (see [`Keys::capture`]). Recording is one script; it publishes
//! the event on the session's channel, so followers on every instance see it. Redis expires
//! the keys itself: the events when the session expires, the hash after the grace in which it
//! still answers `410`.

use std::collections::HashMap;
use std::sync::Arc;

use super::connection::RedisConn;
use async_trait::async_trait;
use tokio::sync::broadcast;

use super::bus::RedisBus;
use super::keys::Keys;
use super::{decode, scripts, unavailable};
use crate::store::capture::{
    CaptureResponse, CaptureSession, CaptureStore, CaptureUpdate, CapturedEvent, CapturedRequest, Recording, Updated,
};
use crate::store::StoreError;

/// The Redis capture store.
pub struct RedisCapture {
    pub(super) conn: RedisConn,
    pub(super) keys: Keys,
    pub(super) bus: Arc<RedisBus>,
}

/// A session from its hash fields; `None` when the hash is empty (no such session).
fn session_of(id: &str, fields: &HashMap<String, String>) -> Option<CaptureSession> {
    let number = |name: &str| fields.get(name).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let text = |name: &str| fields.get(name).filter(|v| !v.is_empty()).cloned();
    fields.get("created")?;
    Some(CaptureSession {
        id: id.to_string(),
        created_ms: number("created"),
        expires_ms: Some(number("expires")).filter(|ms| *ms > 0),
        request_limit: Some(number("limit")).filter(|n| *n > 0),
        request_count: number("count"),
        response: CaptureResponse {
            status_code: number("status").clamp(100, 999) as u16,
            content_type: text("ctype").unwrap_or_default(),
            body: fields.get("body").cloned().unwrap_or_default(),
        },
        forward_url: text("forward"),
        forward_secret: text("fsecret"),
        app: text("app"),
    })
}

fn response_fields(response: &CaptureResponse) -> [(&'static str, String); 3] {
    [
        ("status", response.status_code.to_string()),
        ("ctype", response.content_type.clone()),
        ("body", response.body.clone()),
    ]
}

impl RedisCapture {
    async fn read_events(&self, cmd: &mut redis::Cmd) -> Result<Vec<CapturedEvent>, StoreError> {
        let raw: Vec<Vec<u8>> = cmd.query_async(&mut self.conn.clone()).await.map_err(unavailable)?;
        raw.iter().map(|event| decode(event)).collect()
    }
}

#[async_trait]
impl CaptureStore for RedisCapture {
    async fn create(&self, session: &CaptureSession, grace_ms: u64) -> Result<(), StoreError> {
        let key = self.keys.capture(&session.id);
        let mut fields = vec![
            ("created", session.created_ms.to_string()),
            ("expires", session.expires_ms.unwrap_or(0).to_string()),
            ("limit", session.request_limit.unwrap_or(0).to_string()),
            ("count", "0".to_string()),
            ("forward", session.forward_url.clone().unwrap_or_default()),
            ("fsecret", session.forward_secret.clone().unwrap_or_default()),
            ("app", session.app.clone().unwrap_or_default()),
        ];
        fields.extend(response_fields(&session.response));
        let mut pipe = redis::pipe();
        pipe.atomic().hset_multiple(&key, &fields).ignore();
        if let Some(expires) = session.expires_ms {
            pipe.cmd("PEXPIREAT").arg(&key).arg(expires + grace_ms).ignore();
        }
        pipe.query_async::<()>(&mut self.conn.clone()).await.map_err(unavailable)
    }

    async fn session(&self, id: &str) -> Result<Option<CaptureSession>, StoreError> {
        let fields: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.keys.capture(id))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(session_of(id, &fields))
    }

    async fn record(&self, id: &str, request: CapturedRequest, now_ms: u64) -> Result<Recording, StoreError> {
        let json = serde_json::to_string(&request).map_err(unavailable)?;
        let reply: Vec<String> = scripts::CAPTURE_RECORD
            .on(&self.conn)
            .key(self.keys.capture(id))
            .key(self.keys.capture_events(id))
            .arg(now_ms)
            .arg(&json[1..])
            .arg(self.keys.capture_channel(id))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        let number = |i: usize| reply.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        match reply.first().map(String::as_str) {
            Some("ok") => {
                let event: CapturedEvent = decode(reply[1].as_bytes())?;
                let fields: HashMap<String, String> =
                    reply[2..].chunks_exact(2).map(|pair| (pair[0].clone(), pair[1].clone())).collect();
                let session = session_of(id, &fields).ok_or_else(|| unavailable("capture session vanished"))?;
                Ok(Recording::Recorded { event: Arc::new(event), session })
            }
            Some("expired") => Ok(Recording::Expired(number(1))),
            Some("full") => Ok(Recording::Full(number(1))),
            _ => Ok(Recording::Missing),
        }
    }

    async fn events_before(&self, id: &str, before: u64, limit: usize) -> Result<Vec<CapturedEvent>, StoreError> {
        let mut cmd = redis::cmd("ZREVRANGEBYSCORE");
        cmd.arg(self.keys.capture_events(id)).arg(format!("({before}")).arg("-inf").arg("LIMIT").arg(0).arg(limit);
        self.read_events(&mut cmd).await
    }

    async fn events_after(&self, id: &str, after: u64, limit: usize) -> Result<Vec<CapturedEvent>, StoreError> {
        let mut cmd = redis::cmd("ZRANGEBYSCORE");
        cmd.arg(self.keys.capture_events(id)).arg(format!("({after}")).arg("+inf").arg("LIMIT").arg(0).arg(limit);
        self.read_events(&mut cmd).await
    }

    async fn update(&self, id: &str, update: CaptureUpdate, now_ms: u64) -> Result<Updated, StoreError> {
        let (claim, fields): (String, Vec<(&str, String)>) = match update {
            CaptureUpdate::Response(response) => (String::new(), response_fields(&response).to_vec()),
            CaptureUpdate::Forwarding { url, secret } => {
                (String::new(), vec![("forward", url.unwrap_or_default()), ("fsecret", secret)])
            }
            CaptureUpdate::Claim(app) => (app, Vec::new()),
        };
        let mut invocation = scripts::CAPTURE_UPDATE.key(self.keys.capture(id));
        invocation.key(self.keys.capture_events(id)).arg(now_ms).arg(claim);
        for (field, value) in fields {
            invocation.arg(field).arg(value);
        }
        let reply: String = invocation.invoke_async(&mut self.conn.clone()).await.map_err(unavailable)?;
        match reply.split_once(':') {
            None if reply == "ok" => match self.session(id).await? {
                Some(session) => Ok(Updated::Done(session)),
                None => Ok(Updated::Missing),
            },
            Some(("expired", ms)) => Ok(Updated::Expired(ms.parse().unwrap_or(0))),
            Some(("taken", app)) => Ok(Updated::ClaimedByOther(app.to_string())),
            _ => Ok(Updated::Missing),
        }
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let (removed, _, _): (u64, u64, u64) = redis::pipe()
            .atomic()
            .del(self.keys.capture(id))
            .del(self.keys.capture_events(id))
            .cmd(conn.publish_command())
            .arg(self.keys.capture_channel(id))
            .arg("")
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(removed > 0)
    }

    async fn sweep(&self, _now_ms: u64) -> Result<usize, StoreError> {
        Ok(0)
    }

    async fn follow(&self, id: &str) -> Result<broadcast::Receiver<Arc<CapturedEvent>>, StoreError> {
        self.bus.follow_capture(id).await
    }
}
