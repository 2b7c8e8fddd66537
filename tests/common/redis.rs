//! A Redis for tests: a `redis-server` child on an ephemeral port when the binary is on PATH
//! (so a test can stop and restart it), else the server at `REDIS_URL`. Without either, Redis
//! tests fail and say how to provide one.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A Redis server the test owns (or borrows through `REDIS_URL`).
pub struct RedisServer {
    pub url: String,
    port: u16,
    child: std::sync::Mutex<Option<Child>>,
    dir: Option<tempfile::TempDir>,
}

impl RedisServer {
    /// Starts a private `redis-server` with an append-only file, or uses `REDIS_URL`.
    pub fn start() -> RedisServer {
        if which("redis-server") {
            let dir = tempfile::tempdir().expect("tempdir");
            let port = free_port();
            let server = RedisServer {
                url: format!("redis://127.0.0.1:{port}"),
                port,
                child: Default::default(),
                dir: Some(dir),
            };
            server.spawn();
            return server;
        }
        match std::env::var("REDIS_URL") {
            Ok(url) if !url.is_empty() => RedisServer { url, port: 0, child: Default::default(), dir: None },
            _ => panic!(
                "Redis tests need Redis: install the `redis-server` binary (Debian: apt-get install redis-server) \
                 or set REDIS_URL=redis://host:port to a server the tests may write to"
            ),
        }
    }

    /// Whether this server can be stopped and restarted by the test.
    pub fn is_private(&self) -> bool {
        self.dir.is_some()
    }

    fn spawn(&self) {
        let dir = self.dir.as_ref().expect("a private server").path().to_path_buf();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "everysec", "--daemonize", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        *self.child.lock().unwrap() = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.ping() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not answer PING within 10 s", self.port);
    }

    fn ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        if stream.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
    }

    /// Stops the server cleanly (SIGTERM: the append-only file is flushed) and waits for it.
    pub fn stop(&self) {
        assert!(self.is_private(), "stopping Redis needs the redis-server binary on PATH (not REDIS_URL)");
        if let Some(mut child) = self.child.lock().unwrap().take() {
            send_signal(child.id(), "TERM");
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and data.
    pub fn restart(&self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn which(binary: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|p| p.join(binary).is_file()))
        .unwrap_or(false)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn send_signal(pid: u32, signal: &str) {
    let _ = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status();
}
