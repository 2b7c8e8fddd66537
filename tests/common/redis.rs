//! A Redis for tests: a `redis-server` child on an ephemeral port when the binary is on PATH
//! (so a test can stop and restart it), else the server at `REDIS_URL`. Without either, Redis
//! tests fail and say how to provide one.
//!
//! With `SWITCHYARD_TEST_BACKEND=redis-cluster` it is a Redis Cluster instead: three masters
//! sharing the slots, started once per test process and shared by its tests (each test uses a
//! prefix of its own, so its keys land in a slot of some master), else the cluster whose seed
//! nodes `REDIS_CLUSTER_URL` names. Its `url` lists every node, which selects switchyard's
//! cluster client. A cluster cannot be stopped by a test.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A Redis server the test owns, or borrows (`REDIS_URL`, or a cluster).
pub struct RedisServer {
    pub url: String,
    port: u16,
    child: std::sync::Mutex<Option<Child>>,
    dir: Option<tempfile::TempDir>,
}

/// Whether the tests run on a Redis Cluster (`SWITCHYARD_TEST_BACKEND=redis-cluster`).
pub fn on_cluster() -> bool {
    std::env::var("SWITCHYARD_TEST_BACKEND").is_ok_and(|b| b == "redis-cluster")
}

impl RedisServer {
    /// Starts a private `redis-server` with an append-only file (or, [`on_cluster`], joins the
    /// test process's cluster), else uses `REDIS_URL` (`REDIS_CLUSTER_URL`).
    pub fn start() -> RedisServer {
        let cluster = on_cluster();
        if which("redis-server") {
            if cluster {
                return RedisServer::cluster();
            }
            let port = free_port();
            let server = RedisServer {
                url: format!("redis://127.0.0.1:{port}"),
                port,
                child: Default::default(),
                dir: Some(tempfile::tempdir().expect("tempdir")),
            };
            server.spawn();
            return server;
        }
        let (variable, what) = if cluster {
            ("REDIS_CLUSTER_URL", "redis://host:port,host:port,... to the nodes of a cluster")
        } else {
            ("REDIS_URL", "redis://host:port to a server")
        };
        match std::env::var(variable) {
            Ok(url) if !url.is_empty() => RedisServer::borrowed(url),
            _ => panic!(
                "Redis tests need Redis: install the `redis-server` binary (Debian: apt-get install redis-server) \
                 or set {variable}={what} the tests may write to"
            ),
        }
    }

    /// This test process's Redis Cluster (see the module comment), whatever the backend.
    pub fn cluster() -> RedisServer {
        match std::env::var("REDIS_CLUSTER_URL") {
            Ok(url) if !url.is_empty() && !which("redis-server") => RedisServer::borrowed(url),
            _ => RedisServer::borrowed(shared_cluster().to_string()),
        }
    }

    /// What `redis-cli ARGS...` prints, run against the first node of `url` and following
    /// cluster redirections (for tests that look at or shape what is stored).
    pub fn cli(&self, args: &[&str]) -> String {
        let first = self.url.split(',').next().unwrap_or_default();
        let node = first.trim_start_matches("redis://").trim_end_matches('/');
        let args: Vec<&str> = ["-c"].into_iter().chain(args.iter().copied()).collect();
        redis_cli_at(node, &args)
    }

    /// A Redis someone else runs, at `url`.
    pub fn borrowed(url: String) -> RedisServer {
        RedisServer { url, port: 0, child: Default::default(), dir: None }
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
            if ping(self.port) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not answer PING within 10 s", self.port);
    }

    /// Stops the server cleanly (SIGTERM: the append-only file is flushed) and waits for it.
    pub fn stop(&self) {
        assert!(
            self.is_private(),
            "stopping Redis needs a private redis-server (the binary on PATH, not REDIS_URL or a cluster)"
        );
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

/// The seed URLs of this test process's cluster, started on first use: three masters with the
/// slots split evenly. Tests never drop a static, so the nodes are not children this process
/// reaps: each runs under a watchdog shell that stops it, and removes its files, once this
/// process is gone.
fn shared_cluster() -> &'static str {
    static CLUSTER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CLUSTER.get_or_init(|| {
        let ports: Vec<u16> = (0..3).map(|_| free_cluster_port()).collect();
        for port in &ports {
            let dir = tempfile::tempdir().expect("tempdir").keep();
            // Never waited for: the watchdog outlives this process by design.
            #[allow(clippy::zombie_processes)]
            Command::new("sh")
                .arg("-c")
                .arg(
                    r#"redis-server --port "$1" --bind 127.0.0.1 --save "" --appendonly no \
                         --cluster-enabled yes --cluster-node-timeout 5000 --dir "$2" >/dev/null 2>&1 &
                       node=$!
                       while kill -0 "$3" 2>/dev/null && kill -0 "$node" 2>/dev/null; do sleep 0.2; done
                       kill "$node" 2>/dev/null; wait "$node"; rm -rf "$2""#,
                )
                .args(["watchdog", &port.to_string()])
                .arg(&dir)
                .arg(std::process::id().to_string())
                .stdin(Stdio::null())
                .spawn()
                .expect("spawn a cluster node");
        }
        join_cluster(&ports, &[]);
        seeds(&ports)
    })
}

/// A Redis Cluster one test owns: three masters, a replica of each, stopped when dropped.
pub struct HaCluster {
    pub masters: Vec<u16>,
    pub replicas: Vec<u16>,
    children: Vec<Child>,
    _dirs: Vec<tempfile::TempDir>,
}

impl HaCluster {
    pub fn start() -> HaCluster {
        let ports: Vec<u16> = (0..6).map(|_| free_cluster_port()).collect();
        let mut cluster = HaCluster {
            masters: ports[..3].to_vec(),
            replicas: ports[3..].to_vec(),
            children: Vec::new(),
            _dirs: Vec::new(),
        };
        for port in &ports {
            let dir = tempfile::tempdir().expect("tempdir");
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
                .args(["--appendonly", "yes", "--cluster-enabled", "yes", "--cluster-node-timeout", "5000"])
                .arg("--dir")
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn redis-server");
            cluster.children.push(child);
            cluster._dirs.push(dir);
        }
        join_cluster(&cluster.masters, &cluster.replicas);
        cluster
    }

    /// The masters as seed nodes.
    pub fn url(&self) -> String {
        seeds(&self.masters)
    }

    /// Which master (index) owns the slot of `key`.
    pub fn owner_of(&self, key: &str) -> usize {
        let slot: usize = redis_cli(self.masters[0], &["cluster", "keyslot", key]).trim().parse().expect("a slot");
        (slot / (16384 / 3)).min(2)
    }

    /// Promotes master `i`'s replica with a manual failover (the master first hands over every
    /// write it acknowledged) and waits until the cluster agrees.
    pub fn fail_over(&self, i: usize) {
        let replica = self.replicas[i];
        let reply = redis_cli(replica, &["cluster", "failover"]);
        assert!(reply.contains("OK"), "CLUSTER FAILOVER on port {replica}: {reply}");
        let deadline = Instant::now() + Duration::from_secs(20);
        let all: Vec<u16> = self.masters.iter().chain(&self.replicas).copied().collect();
        while !(redis_cli(replica, &["role"]).starts_with("master")
            && all.iter().all(|&p| redis_cli(p, &["cluster", "info"]).contains("cluster_state:ok")))
        {
            assert!(Instant::now() < deadline, "the failover to port {replica} did not complete within 20 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for HaCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn seeds(ports: &[u16]) -> String {
    ports.iter().map(|p| format!("redis://127.0.0.1:{p}")).collect::<Vec<_>>().join(",")
}

/// Makes the nodes on `masters` share the 16384 slots evenly, each node on `replicas` the
/// replica of the master at the same index, and waits until every node reports
/// `cluster_state:ok` (and every replica's link to its master is up).
fn join_cluster(masters: &[u16], replicas: &[u16]) {
    let all: Vec<u16> = masters.iter().chain(replicas).copied().collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    let wait = |what: &str, ready: &dyn Fn(u16) -> bool, ports: &[u16]| {
        while !ports.iter().all(|&p| ready(p)) {
            assert!(Instant::now() < deadline, "the test cluster on ports {ports:?} {what} within 20 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait("did not answer PING", &ping, &all);
    let share = 16384 / masters.len();
    for (i, port) in masters.iter().enumerate() {
        let last = if i + 1 == masters.len() { 16383 } else { (i + 1) * share - 1 };
        let reply = redis_cli(*port, &["cluster", "addslotsrange", &(i * share).to_string(), &last.to_string()]);
        assert!(reply.contains("OK"), "CLUSTER ADDSLOTSRANGE on port {port}: {reply}");
    }
    for port in &all[1..] {
        let reply = redis_cli(all[0], &["cluster", "meet", "127.0.0.1", &port.to_string()]);
        assert!(reply.contains("OK"), "CLUSTER MEET 127.0.0.1 {port}: {reply}");
    }
    wait("did not reach cluster_state:ok", &|p| redis_cli(p, &["cluster", "info"]).contains("cluster_state:ok"), &all);
    for (master, replica) in masters.iter().zip(replicas) {
        let id = redis_cli(*master, &["cluster", "myid"]).trim().to_string();
        // The replica must know the master's id first (gossip), so retry until it does.
        wait(
            &format!("could not make {replica} a replica of {master}"),
            &|p| redis_cli(p, &["cluster", "replicate", &id]).contains("OK"),
            &[*replica],
        );
    }
    wait(
        "had replicas without a link to their master",
        &|p| redis_cli(p, &["info", "replication"]).contains("master_link_status:up"),
        replicas,
    );
}

/// What `redis-cli -h HOST -p PORT ARGS...` prints for the node at `node` (`host:port`).
pub fn redis_cli_at(node: &str, args: &[&str]) -> String {
    let (host, port) = node.rsplit_once(':').expect("host:port");
    Command::new("redis-cli")
        .args(["-h", host, "-p", port])
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    redis_cli_at(&format!("127.0.0.1:{port}"), args)
}

fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

fn which(binary: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|p| p.join(binary).is_file()))
        .unwrap_or(false)
}

/// A free port for a cluster node: its cluster bus listens 10000 above it, so the port must be
/// at most 55535 and that one free too.
fn free_cluster_port() -> u16 {
    loop {
        let port = free_port();
        if port <= 55535 && std::net::TcpListener::bind(("127.0.0.1", port + 10000)).is_ok() {
            return port;
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn send_signal(pid: u32, signal: &str) {
    let _ = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status();
}
