//! Test harness: runs the real `switchyard` binary on an ephemeral port and talks HTTP to it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub mod redis;

/// The config most tests use: `echo` (input-required), `slow` (chunks every 50 ms), `done`
/// (completes), `hidden` (private). The conformance suite uses the same file.
pub const CONFIG: &str = include_str!("../agents.yaml");

/// The admin secret of test servers started with `--auth-secret`.
pub const ADMIN_SECRET: &str = "test-admin-secret";

/// 30 words: a turn of the `slow` agent (50 ms per chunk) takes about 1.5 s.
pub const LONG_TEXT: &str = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen \
                         sixteen seventeen eighteen nineteen twenty twentyone twentytwo twentythree twentyfour \
                         twentyfive twentysix twentyseven twentyeight twentynine thirty";

/// A running server process.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub data_dir: String,
    pub config_path: PathBuf,
    pub client: reqwest::Client,
    /// Flags that select the backend; kept across restarts.
    backend_args: Vec<String>,
    /// Environment variables of the server process; kept across restarts.
    envs: Vec<(String, String)>,
    /// The private Redis of a Redis-backed server.
    pub redis: Option<std::sync::Arc<redis::RedisServer>>,
    _tmp: Option<tempfile::TempDir>,
}

/// Which backend servers under test use: `SWITCHYARD_TEST_BACKEND=redis` runs every HTTP test
/// against a private Redis, `redis-cluster` against a private Redis Cluster (the suites run
/// once per backend in `make test`).
pub fn test_backend_is_redis() -> bool {
    std::env::var("SWITCHYARD_TEST_BACKEND").is_ok_and(|b| b == "redis" || b == "redis-cluster")
}

impl Server {
    /// Starts a server with [`CONFIG`] on a throwaway in-memory store.
    pub async fn start() -> Server {
        Server::start_with(CONFIG, ":memory:", &[]).await
    }

    /// Starts a server with a config text, a data dir and extra flags, on the backend the test
    /// run selects ([`test_backend_is_redis`]).
    pub async fn start_with(config: &str, data_dir: &str, args: &[&str]) -> Server {
        Server::start_with_env(config, data_dir, args, &[]).await
    }

    /// [`Server::start_with`] with environment variables for the server process (set on the
    /// child only: changing the test process's own environment would race other threads).
    pub async fn start_with_env(config: &str, data_dir: &str, args: &[&str], envs: &[(&str, &str)]) -> Server {
        let envs: Vec<(String, String)> = envs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        if test_backend_is_redis() {
            let redis = std::sync::Arc::new(redis::RedisServer::start());
            return Server::start_on_redis_env(config, &redis, &format!("test-{}", uuid()), args, envs).await;
        }
        Server::start_configured(config, data_dir, args, Vec::new(), None, envs)
    }

    /// Starts an instance of a deployment on `redis` (instances with the same prefix share
    /// tasks and queue). Jobs of a silent instance are taken over after 1 s.
    pub async fn start_on_redis(
        config: &str,
        redis: &std::sync::Arc<redis::RedisServer>,
        prefix: &str,
        args: &[&str],
    ) -> Server {
        Server::start_on_redis_env(config, redis, prefix, args, Vec::new()).await
    }

    async fn start_on_redis_env(
        config: &str,
        redis: &std::sync::Arc<redis::RedisServer>,
        prefix: &str,
        args: &[&str],
        envs: Vec<(String, String)>,
    ) -> Server {
        let mut backend_args = ["--redis-url", &redis.url, "--redis-prefix", prefix].map(str::to_string).to_vec();
        if !args.contains(&"--visibility-timeout") {
            backend_args.extend(["--visibility-timeout".to_string(), "1s".to_string()]);
        }
        Server::start_configured(config, ":memory:", args, backend_args, Some(redis.clone()), envs)
    }

    fn start_configured(
        config: &str,
        data_dir: &str,
        args: &[&str],
        backend_args: Vec<String>,
        redis: Option<std::sync::Arc<redis::RedisServer>>,
        envs: Vec<(String, String)>,
    ) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let config_path = tmp.path().join("config.yaml");
        std::fs::write(&config_path, config).expect("write config");
        let mut server = Server::spawn_on(&config_path, data_dir, args, backend_args, envs);
        server.redis = redis;
        server._tmp = Some(tmp);
        server
    }

    /// Spawns the binary on the embedded backend and waits for its "listening on" line.
    pub fn spawn(config_path: &Path, data_dir: &str, args: &[&str]) -> Server {
        Server::spawn_on(config_path, data_dir, args, Vec::new(), Vec::new())
    }

    fn spawn_on(
        config_path: &Path,
        data_dir: &str,
        args: &[&str],
        backend_args: Vec<String>,
        envs: Vec<(String, String)>,
    ) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .arg("serve")
            .arg("--config")
            .arg(config_path)
            .args(["--host", "127.0.0.1", "--port", "0", "--data-dir", data_dir])
            .args(args)
            .args(&backend_args)
            .env("SWITCHYARD_LOG", "warn")
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn switchyard");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            while let Some(Ok(line)) = lines.next() {
                if let Some(addr) = line.strip_prefix("switchyard listening on ") {
                    let _ = tx.send(addr.to_string());
                }
            }
        });
        let base = rx.recv_timeout(Duration::from_secs(30)).expect("server did not report its address within 30 s");
        Server {
            child,
            base,
            data_dir: data_dir.to_string(),
            config_path: config_path.to_path_buf(),
            client: reqwest::Client::new(),
            backend_args,
            envs,
            redis: None,
            _tmp: None,
        }
    }

    /// The JSON-RPC endpoint of an agent.
    pub fn agent_url(&self, agent: &str) -> String {
        format!("{}/agents/{agent}", self.base)
    }

    /// POSTs a raw body to an agent and returns (status, JSON body).
    pub async fn post_raw(&self, agent: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let response = self
            .client
            .post(self.agent_url(agent))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("POST");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}")))
    }

    /// Calls a JSON-RPC method and returns the whole response object (asserting HTTP 200).
    pub async fn call(&self, agent: &str, method: &str, params: Value) -> Value {
        let (status, body) = self
            .post_raw(agent, json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string())
            .await;
        assert_eq!(status, 200, "{method} answered HTTP {status}: {body}");
        body
    }

    /// Calls a method and returns its `result`, panicking with the error otherwise.
    pub async fn result(&self, agent: &str, method: &str, params: Value) -> Value {
        let body = self.call(agent, method, params).await;
        match body.get("result") {
            Some(r) => r.clone(),
            None => panic!("{method} failed: {body}"),
        }
    }

    /// Calls a method that must fail and returns its `error`.
    pub async fn error(&self, agent: &str, method: &str, params: Value) -> Value {
        let body = self.call(agent, method, params).await;
        match body.get("error") {
            Some(e) => e.clone(),
            None => panic!("{method} should have failed: {body}"),
        }
    }

    /// Sends a user message and returns the resulting task (blocking).
    pub async fn send_text(&self, agent: &str, text: &str) -> Value {
        self.result(agent, "message/send", json!({"message": user_message(text)})).await
    }

    /// Sends a user message with `blocking: false` and returns the task as first answered.
    pub async fn send_non_blocking(&self, agent: &str, text: &str) -> Value {
        self.result(agent, "message/send", json!({"message": user_message(text), "configuration": {"blocking": false}}))
            .await
    }

    /// Opens an SSE request and returns the reader.
    pub async fn open_stream(&self, agent: &str, method: &str, params: Value, last_event_id: Option<u64>) -> SseReader {
        SseReader::new(self.stream_request(agent, method, params, last_event_id).await)
    }

    /// POSTs a streaming request (id "s1", `Accept: text/event-stream`) and returns the raw response.
    pub async fn stream_request(
        &self,
        agent: &str,
        method: &str,
        params: Value,
        last_event_id: Option<u64>,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .post(self.agent_url(agent))
            .header("content-type", "application/json")
            .header("accept", "text/event-stream")
            .body(json!({"jsonrpc": "2.0", "id": "s1", "method": method, "params": params}).to_string());
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        request.send().await.expect("stream request")
    }

    /// An absolute URL on the server for `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GETs `path` and returns (status, JSON body), panicking when the body is not JSON.
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let response = self.client.get(self.url(path)).send().await.expect("GET");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {text}")))
    }

    /// Sends `method path` with an optional bearer token and JSON body; returns (status, JSON
    /// body, `WWW-Authenticate`). An empty body reads as `null`.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value, Option<String>) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = bearer {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let challenge = response.headers().get("www-authenticate").map(|v| v.to_str().unwrap_or_default().to_string());
        let text = response.text().await.expect("body");
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}"))
        };
        (status, json, challenge)
    }

    /// An admin API call with the admin secret; returns (status, JSON body).
    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let (status, json, _) = self.request(method, path, Some(ADMIN_SECRET), body.as_ref()).await;
        (status, json)
    }

    /// A JSON-RPC call with an optional bearer token; returns (status, JSON body).
    pub async fn call_as(&self, bearer: Option<&str>, agent: &str, method: &str, params: Value) -> (u16, Value) {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let (status, json, _) = self.request("POST", &format!("/agents/{agent}"), bearer, Some(&body)).await;
        (status, json)
    }

    /// POSTs a JSON-RPC request object (or batch) to an agent; returns (status, JSON body).
    pub async fn post_json(&self, agent: &str, body: &Value) -> (u16, Value) {
        self.post_raw(agent, body.to_string()).await
    }

    /// Kills the process with SIGKILL (no chance to flush or clean up).
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the process to exit (up to 30 s); returns its exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(Instant::now() < deadline, "server did not exit within 30 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts a new process on the same config and data dir.
    pub fn restart(&self, args: &[&str]) -> Server {
        let mut server =
            Server::spawn_on(&self.config_path, &self.data_dir, args, self.backend_args.clone(), self.envs.clone());
        server.redis = self.redis.clone();
        server
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A user message with one text part.
pub fn user_message(text: &str) -> Value {
    json!({"kind": "message", "messageId": uuid(), "role": "user", "parts": [{"kind": "text", "text": text}]})
}

/// A fresh random id.
pub fn uuid() -> String {
    format!("{:032x}", rand_u128())
}

fn rand_u128() -> u128 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let a = RandomState::new().build_hasher().finish() as u128;
    let mut h = RandomState::new().build_hasher();
    h.write_u128(a ^ Instant::now().elapsed().as_nanos());
    (a << 64) | h.finish() as u128
}

/// One parsed SSE event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: Option<String>,
    pub data: Value,
    /// The raw text of the event block, for framing checks.
    pub raw: String,
}

/// Reads SSE events from a response, block by block.
pub struct SseReader {
    pub status: u16,
    pub content_type: String,
    response: reqwest::Response,
    buffer: String,
    /// Comments (keep-alives) seen so far.
    pub comments: Vec<String>,
}

impl SseReader {
    fn new(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let content_type =
            response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        SseReader { status, content_type, response, buffer: String::new(), comments: Vec::new() }
    }

    /// Wraps any streaming response (for example a browser-style `GET .../events`).
    pub fn from_response(response: reqwest::Response) -> Self {
        SseReader::new(response)
    }

    /// The next event, or None when the stream ended. Panics after 20 s without one.
    pub async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut id = None;
                let mut data = None;
                for line in block.lines() {
                    if let Some(rest) = line.strip_prefix("data: ") {
                        assert!(data.is_none(), "more than one data line in one event: {block:?}");
                        data = Some(rest.to_string());
                    } else if let Some(rest) = line.strip_prefix("id: ") {
                        id = Some(rest.to_string());
                    } else if let Some(rest) = line.strip_prefix(':') {
                        self.comments.push(rest.trim().to_string());
                    } else if !line.is_empty() {
                        panic!("unexpected SSE line {line:?} in {block:?}");
                    }
                }
                match data {
                    Some(d) => {
                        let data =
                            serde_json::from_str(&d).unwrap_or_else(|e| panic!("event data is not JSON ({e}): {d}"));
                        return Some(SseEvent { id, data, raw: block });
                    }
                    None => continue,
                }
            }
            let chunk = tokio::time::timeout(Duration::from_secs(20), self.response.chunk())
                .await
                .expect("no SSE data within 20 s")
                .expect("stream read");
            match chunk {
                Some(bytes) => self.buffer.push_str(std::str::from_utf8(&bytes).expect("utf-8")),
                None => return None,
            }
        }
    }

    /// Every remaining event until the server closes the stream.
    pub async fn collect(&mut self) -> Vec<SseEvent> {
        let mut out = Vec::new();
        while let Some(e) = self.next().await {
            out.push(e);
        }
        out
    }
}

/// The `result` of an event, panicking on an error event.
pub fn result_of(event: &SseEvent) -> &Value {
    event.data.get("result").unwrap_or_else(|| panic!("event is not a result: {}", event.data))
}

/// The text of all of a task's artifact parts, in order.
pub fn artifact_text(task: &Value) -> String {
    task["artifacts"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|a| a["parts"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["text"].as_str().map(str::to_string))
        .collect()
}

/// The artifact chunks of a task's whole log, replayed from the start (`Last-Event-ID: 0`).
pub async fn replayed_chunks(server: &Server, agent: &str, task_id: &str) -> String {
    let mut replay = server.open_stream(agent, "tasks/resubscribe", json!({"id": task_id}), Some(0)).await;
    replay
        .collect()
        .await
        .iter()
        .filter(|e| result_of(e)["kind"] == "artifact-update")
        .map(|e| result_of(e)["artifact"]["parts"][0]["text"].as_str().unwrap().to_string())
        .collect()
}

/// Polls `tasks/get` until a new attempt of the task's turn is running: state `working` with a
/// status timestamp other than `previous` (10 s at most).
pub async fn wait_for_new_attempt(server: &Server, agent: &str, task_id: &str, previous: &Value) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let task = server.result(agent, "tasks/get", json!({"id": task_id})).await;
        if task["status"]["state"] == "working" && &task["status"]["timestamp"] != previous {
            return task;
        }
        assert!(Instant::now() < deadline, "task {task_id} was never run again: {task}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `tasks/get` until the task reaches `state` (10 s at most).
pub async fn wait_for_state(server: &Server, agent: &str, task_id: &str, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let task = server.result(agent, "tasks/get", json!({"id": task_id})).await;
        if task["status"]["state"] == state {
            return task;
        }
        assert!(Instant::now() < deadline, "task {task_id} never reached {state}: {task}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The A2A v0.3.0 schema, compiled for one definition.
pub fn a2a_validator(definition: &str) -> jsonschema::Validator {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/proto-schemas/a2a-v0.3.0.schema.json"))
        .expect("proto-schemas/a2a-v0.3.0.schema.json");
    let mut schema: Value = serde_json::from_str(&text).expect("schema JSON");
    schema["$ref"] = json!(format!("#/definitions/{definition}"));
    jsonschema::validator_for(&schema).expect("compile schema")
}

/// Asserts `value` validates against an A2A definition.
pub fn assert_valid(definition: &str, value: &Value) {
    let validator = a2a_validator(definition);
    let errors: Vec<String> = validator.iter_errors(value).map(|e| format!("{} at {}", e, e.instance_path)).collect();
    assert!(errors.is_empty(), "{definition} does not validate: {errors:?}\n{value}");
}
