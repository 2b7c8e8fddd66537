//! `switchyard serve`: wires configuration, backend, engine and HTTP, and shuts down gracefully.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::auth::{Auth, AuthOptions};
use crate::config::Config;
use crate::delivery::{Deliveries, DeliveryOptions};
use crate::engine::{Engine, EngineOptions};
use crate::http::{self, AppState, HttpOptions};
use crate::store;

/// Everything `serve` needs, from flags and environment.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub config: Config,
    pub host: String,
    pub port: u16,
    pub data_dir: String,
    pub workers: usize,
    pub max_attempts: u32,
    /// Embedded store settings (retention, fsync policy).
    pub store: store::embedded::EmbeddedOptions,
    /// Redis settings; when present Redis replaces the embedded store.
    pub redis: Option<store::redis::RedisOptions>,
    pub http: HttpOptions,
    pub auth: AuthOptions,
    /// Outgoing deliveries: retry schedule, SSRF guard.
    pub delivery: DeliveryOptions,
    /// Limits of capture sessions.
    pub capture: crate::capture::CaptureOptions,
    /// How long a shutdown waits for running turns before leaving them to the next start.
    pub shutdown_grace: Duration,
}

/// Runs the server until SIGTERM or Ctrl-C.
pub async fn serve(options: ServeOptions) -> anyhow_like::Result<()> {
    let backend = match &options.redis {
        Some(redis) => store::redis::open(redis).await.map_err(|e| anyhow_like::Error(e.to_string()))?,
        None => store::embedded::open(&options.data_dir, &options.store)
            .map_err(|e| anyhow_like::Error(format!("cannot open store in {}: {e}", options.data_dir)))?,
    };
    let tenants = crate::tenants::Tenants::open(backend.tenants.clone(), options.config.clone())
        .await
        .map_err(|e| anyhow_like::Error(format!("cannot load apps: {e}")))?;
    tenants.watch();
    let deliveries = Deliveries::new(backend.deliveries.clone(), options.delivery.clone());
    deliveries.start();
    let engine = Engine::new(
        backend.clone(),
        tenants.clone(),
        deliveries.clone(),
        EngineOptions {
            workers: options.workers,
            max_attempts: options.max_attempts,
            retry_base: Duration::from_millis(500),
        },
    );
    let workers = engine.start().await.map_err(|e| anyhow_like::Error(format!("cannot recover jobs: {e}")))?;
    spawn_sweeper(backend.store.clone());

    let addr: SocketAddr = format!("{}:{}", options.host, options.port)
        .parse()
        .map_err(|e| anyhow_like::Error(format!("invalid listen address {}:{}: {e}", options.host, options.port)))?;
    let listener =
        TcpListener::bind(addr).await.map_err(|e| anyhow_like::Error(format!("cannot listen on {addr}: {e}")))?;
    let local = listener.local_addr().map_err(|e| anyhow_like::Error(e.to_string()))?;
    // Every instance of a deployment must agree on the issuer: the public URL when there is one,
    // else a fixed name (the listen address differs between instances and restarts).
    let issuer = options.http.public_url.as_deref().map_or("switchyard", |u| u.trim_end_matches('/')).to_string();
    let auth = Auth::open(&options.auth, issuer, backend.tenants.clone(), tenants).await.map_err(anyhow_like::Error)?;
    let metrics = match options.http.metrics {
        true => Some(crate::observability::install().map_err(anyhow_like::Error)?),
        false => None,
    };
    let capture = crate::capture::Capture::new(
        backend.capture.clone(),
        backend.limits.clone(),
        deliveries.clone(),
        options.capture.clone(),
    );
    capture.spawn_sweeper();
    let webhooks = crate::webhooks::Webhooks::new(engine.clone(), deliveries.clone(), backend.limits.clone());
    let app = http::router(AppState::new(http::Shared {
        engine: engine.clone(),
        auth,
        options: Arc::new(options.http.clone()),
        metrics,
        capture,
        deliveries,
        webhooks,
    }));
    tracing::info!(%local, store = backend.store.kind(), workers = options.workers, "switchyard started");
    // Tests and scripts read this line to learn the port when started with --port 0.
    // Handlers first: a SIGTERM sent as soon as the address is printed must shut down gracefully,
    // not kill the process with the signal's default action.
    let signal = shutdown_signal();
    println!("switchyard listening on http://{local}");

    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await
        })
    };
    signal.await;
    tracing::info!("shutting down: finishing running turns");
    shutdown.cancel();
    engine.backend().queue.close();
    let grace = options.shutdown_grace;
    let mut workers = futures::future::join_all(workers);
    if tokio::time::timeout(grace, &mut workers).await.is_err() {
        tracing::warn!("turns still running after {grace:?}; stopping them (their jobs run again)");
    }
    engine.shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(2), workers).await;
    engine.backend().queue.hand_back().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    Ok(())
}

fn spawn_sweeper(store: Arc<dyn store::TaskStore>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            match store.sweep_expired(crate::clock::now_ms()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(expired = n, "removed expired tasks"),
                Err(e) => tracing::warn!(error = %e, "expiry sweep failed"),
            }
        }
    });
}

/// Resolves on SIGTERM or Ctrl-C. The handlers are registered when this is called, not when
/// the future is first polled.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let streams = signal(SignalKind::terminate()).and_then(|t| Ok((t, signal(SignalKind::interrupt())?)));
        async move {
            match streams {
                Ok((mut term, mut interrupt)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = interrupt.recv() => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM; stopping on Ctrl-C only");
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// A string error for the binary's top level.
pub mod anyhow_like {
    /// A message for the operator.
    #[derive(Debug)]
    pub struct Error(pub String);
    impl std::fmt::Display for Error {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }
    /// Result with a message error.
    pub type Result<T> = std::result::Result<T, Error>;
}
