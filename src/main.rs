//! The `switchyard` binary: `serve`, `validate`, `version`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// mimalloc: glibc malloc spent ~30% of CPU under load in profiles (arena contention).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand, ValueEnum};
use switchyard::auth::external::ExternalIssuer;
use switchyard::auth::AuthOptions;
use switchyard::capture::CaptureOptions;
use switchyard::config::{parse_duration, Config};
use switchyard::delivery::breaker::BreakerPolicy;
use switchyard::delivery::DeliveryOptions;
use switchyard::http::limits::RateLimit;
use switchyard::http::HttpOptions;
use switchyard::server::{serve, ServeOptions};
use switchyard::store::embedded::{EmbeddedOptions, FsyncPolicy};
use switchyard::store::redis::RedisOptions;

#[derive(Parser)]
#[command(name = "switchyard", version, about = "An A2A (Agent-to-Agent protocol) server")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default when no command is given).
    Serve(Box<ServeArgs>),
    /// Check a configuration file and print precise errors.
    Validate {
        #[arg(long, env = "SWITCHYARD_CONFIG", default_value = "config.yaml")]
        config: PathBuf,
    },
    /// Print the version.
    Version,
}

#[derive(clap::Args, Clone)]
struct ServeArgs {
    /// Agents configuration file.
    #[arg(long, env = "SWITCHYARD_CONFIG", default_value = "config.yaml")]
    config: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "SWITCHYARD_HOST", default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0 picks a free one; the chosen address is printed).
    #[arg(long, env = "SWITCHYARD_PORT", default_value_t = 8080)]
    port: u16,
    /// Directory of the embedded store, or `:memory:` for a throwaway in-memory store.
    #[arg(long, env = "SWITCHYARD_DATA_DIR", default_value = "./data")]
    data_dir: String,
    /// Worker pool size: how many turns run at once (default: CPU count × 4 on the embedded
    /// store, × 16 on Redis, where each turn also waits on the network for its writes).
    #[arg(long, env = "SWITCHYARD_WORKERS")]
    workers: Option<usize>,
    /// Attempts per turn before it is dead-lettered.
    #[arg(long, env = "SWITCHYARD_MAX_ATTEMPTS", default_value_t = 3)]
    max_attempts: u32,
    /// How long terminal tasks are kept (e.g. 7d, 12h, 30m).
    #[arg(long, env = "SWITCHYARD_TASK_TTL", default_value = "7d", value_parser = parse_duration)]
    task_ttl: Duration,
    /// Public base URL used in agent cards (default: from the request's Host headers).
    #[arg(long, env = "SWITCHYARD_PUBLIC_URL")]
    public_url: Option<String>,
    /// Largest accepted request body in bytes.
    #[arg(long, env = "SWITCHYARD_MAX_BODY_BYTES", default_value_t = 10 * 1024 * 1024)]
    max_body_bytes: usize,
    /// Origins allowed by CORS, comma-separated (`*` for any).
    #[arg(long, env = "SWITCHYARD_CORS_ORIGINS", default_value = "*", value_delimiter = ',')]
    cors_origins: Vec<String>,
    /// When the embedded store's log is fsynced: `always` (before answering; survives power
    /// loss) or an interval such as `100ms` (a power loss loses at most that much).
    #[arg(long, env = "SWITCHYARD_FSYNC", default_value = "100ms")]
    fsync: FsyncPolicy,
    /// Use Redis instead of the embedded store (`redis://host:port/db`): instances on the same
    /// Redis and prefix share tasks, queue and streams. A comma-separated list
    /// (`redis://a:7000,b:7001,c:7002`) names the seed nodes of a Redis Cluster.
    #[arg(long, env = "SWITCHYARD_REDIS_URL")]
    redis_url: Option<String>,
    /// With Redis: queued turns an instance may take ahead of its workers when it creates a task
    /// (default: 4 × --workers). 0 takes turns only for idle workers, leaving the rest to
    /// whichever instance frees a worker first: best for agents whose turns take seconds.
    #[arg(long, env = "SWITCHYARD_REDIS_PREFETCH")]
    redis_prefetch: Option<usize>,
    /// Use the Redis Cluster client even when --redis-url names a single seed node.
    #[arg(long, env = "SWITCHYARD_REDIS_CLUSTER")]
    redis_cluster: bool,
    /// Prefix (and hash tag) of every Redis key; one deployment per prefix.
    #[arg(long, env = "SWITCHYARD_REDIS_PREFIX", default_value = "switchyard")]
    redis_prefix: String,
    /// With Redis: a job whose worker has been silent this long is taken over by another instance.
    #[arg(long, env = "SWITCHYARD_VISIBILITY_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    visibility_timeout: Duration,
    /// Bearer secret of the admin API (/admin/*); turns authentication on (app tokens,
    /// visibility). Without it /admin/* answers 404.
    #[arg(long, env = "SWITCHYARD_AUTH_SECRET", hide_env_values = true)]
    auth_secret: Option<String>,
    /// `iss` of app tokens (default: the public URL, else `switchyard`).
    #[arg(long, env = "SWITCHYARD_ISSUER")]
    issuer: Option<String>,
    /// Lifetime of app tokens.
    #[arg(long, env = "SWITCHYARD_TOKEN_TTL", default_value = "30d", value_parser = parse_duration)]
    token_ttl: Duration,
    /// P-256 signing key for app tokens (PKCS#8 PEM); default: generated on first start and
    /// kept in the store.
    #[arg(long, env = "SWITCHYARD_SIGNING_KEY")]
    signing_key: Option<PathBuf>,
    /// JWKS URL of an external OIDC issuer whose tokens are accepted beside the server's own
    /// (needs --auth-issuer; turns authentication on).
    #[arg(long, env = "SWITCHYARD_AUTH_JWKS_URL", requires = "auth_issuer")]
    auth_jwks_url: Option<String>,
    /// `iss` the external issuer's tokens must carry.
    #[arg(long, env = "SWITCHYARD_AUTH_ISSUER")]
    auth_issuer: Option<String>,
    /// `aud` the external issuer's tokens must carry.
    #[arg(long, env = "SWITCHYARD_AUTH_AUDIENCE", default_value = "switchyard")]
    auth_audience: String,
    /// A request rate limit, `SCOPE=N/WINDOW` with scope app, user (token subject), session
    /// (X-Session-ID) or ip; repeat the flag or separate with commas (e.g. ip=100/1m,app=1000/1m).
    #[arg(long, env = "SWITCHYARD_RATE_LIMIT", value_delimiter = ',')]
    rate_limit: Vec<RateLimit>,
    /// Serve Prometheus metrics at /metrics.
    #[arg(long, env = "SWITCHYARD_METRICS")]
    metrics: bool,
    /// Log format.
    #[arg(long, env = "SWITCHYARD_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    /// Let outgoing deliveries (push notifications, callbacks, forwarding) reach private,
    /// loopback and link-local addresses (refused by default: SSRF guard).
    #[arg(long, env = "SWITCHYARD_ALLOW_PRIVATE_TARGETS")]
    allow_private_targets: bool,
    /// Delays between delivery attempts, comma-separated (one attempt more than delays).
    #[arg(long, env = "SWITCHYARD_DELIVERY_SCHEDULE", default_value = switchyard::delivery::DEFAULT_SCHEDULE, value_parser = parse_schedule)]
    delivery_schedule: Schedule,
    /// Longest wait for a delivery target's answer.
    #[arg(long, env = "SWITCHYARD_DELIVERY_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    delivery_timeout: Duration,
    /// Consecutive failed attempts after which a delivery target is rested (0: never).
    #[arg(long, env = "SWITCHYARD_DELIVERY_BREAKER_FAILURES", default_value_t = 5)]
    delivery_breaker_failures: u32,
    /// How long a failing delivery target first rests (doubled after each failed trial, up to 10 min).
    #[arg(long, env = "SWITCHYARD_DELIVERY_BREAKER_REST", default_value = "30s", value_parser = parse_duration)]
    delivery_breaker_rest: Duration,
    /// How long a capture session records (e.g. 14d, 1h).
    #[arg(long, env = "SWITCHYARD_CAPTURE_TTL", default_value = "14d", value_parser = parse_duration)]
    capture_ttl: Duration,
    /// Most requests one capture session records (0: no limit).
    #[arg(long, env = "SWITCHYARD_CAPTURE_REQUEST_LIMIT", default_value_t = 2000)]
    capture_request_limit: u64,
    /// Capture sessions one client address may create per hour (0: no limit).
    #[arg(long, env = "SWITCHYARD_CAPTURE_SESSIONS_PER_HOUR", default_value_t = 10)]
    capture_sessions_per_hour: u64,
    /// How long a shutdown waits for running turns.
    #[arg(long, env = "SWITCHYARD_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    shutdown_grace: Duration,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// A retry schedule flag (a newtype: clap reads a `Vec` as a repeated flag).
#[derive(Debug, Clone)]
struct Schedule(Vec<Duration>);

fn parse_schedule(text: &str) -> Result<Schedule, String> {
    switchyard::delivery::parse_schedule(text).map(Schedule)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Version) => {
            println!("switchyard {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some(Command::Validate { config }) => match Config::load(&config) {
            Ok(c) => {
                println!("{}: ok ({} agents, default {})", config.display(), c.agents.0.len(), c.default_agent_name());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", config.display());
                ExitCode::FAILURE
            }
        },
        Some(Command::Serve(args)) => run(*args),
        None => run(cli.serve),
    }
}

fn run(args: ServeArgs) -> ExitCode {
    init_logging(args.log_format);
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: {e}", args.config.display());
            return ExitCode::FAILURE;
        }
    };
    let workers = args.workers.unwrap_or_else(|| {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        // A turn on Redis holds its worker through a round trip per write: with CPU count × 4
        // workers the CPU idles while they wait (message/send on 2 cores: +6-25% with × 16).
        cpus * if args.redis_url.is_some() { 16 } else { 4 }
    });
    let options = ServeOptions {
        config,
        host: args.host,
        port: args.port,
        data_dir: args.data_dir,
        workers,
        max_attempts: args.max_attempts.max(1),
        store: EmbeddedOptions { task_ttl: args.task_ttl, fsync: args.fsync },
        redis: args.redis_url.map(|url| RedisOptions {
            cluster: args.redis_cluster,
            prefetch: args.redis_prefetch.unwrap_or(workers * 4),
            prefix: args.redis_prefix,
            task_ttl: args.task_ttl,
            visibility_timeout: args.visibility_timeout,
            max_attempts: args.max_attempts.max(1),
            ..RedisOptions::new(&url)
        }),
        http: HttpOptions {
            public_url: args.public_url,
            max_body_bytes: args.max_body_bytes,
            cors_origins: args.cors_origins,
            rate_limits: args.rate_limit,
            metrics: args.metrics,
        },
        auth: AuthOptions {
            admin_secret: args.auth_secret.filter(|s| !s.is_empty()),
            issuer: args.issuer,
            token_ttl: args.token_ttl,
            signing_key: args.signing_key,
            external: match (args.auth_jwks_url, args.auth_issuer) {
                (Some(jwks_url), Some(issuer)) => {
                    Some(ExternalIssuer { jwks_url, issuer, audience: args.auth_audience })
                }
                _ => None,
            },
        },
        delivery: DeliveryOptions {
            schedule: args.delivery_schedule.0,
            allow_private_targets: args.allow_private_targets,
            timeout: args.delivery_timeout,
            breaker: BreakerPolicy {
                failures: args.delivery_breaker_failures,
                rest: args.delivery_breaker_rest,
                ..BreakerPolicy::default()
            },
            ..DeliveryOptions::default()
        },
        capture: CaptureOptions {
            ttl: args.capture_ttl,
            request_limit: args.capture_request_limit,
            sessions_per_ip_per_hour: args.capture_sessions_per_hour,
        },
        shutdown_grace: args.shutdown_grace,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchyard: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SWITCHYARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
