//! How this instance talks to Redis: one server, or a Redis Cluster reached through seed nodes.
//!
//! Everything above this module holds a [`RedisConn`] (multiplexed, reconnecting, bounded by the
//! command timeout) and never asks which kind it is. The differences live here:
//!
//! - Blocking reads (XREADGROUP … BLOCK) get a connection of their own without the command
//!   timeout, so they never stall the shared one.
//! - Pub/sub: on one server, classic SUBSCRIBE/PUBLISH; on a cluster, sharded pub/sub
//!   (SSUBSCRIBE/SPUBLISH). Every channel carries the deployment's hash tag, so all of them live
//!   in the slot of its keys, and an event reaches only the shard that owns that slot instead of
//!   being broadcast over the whole cluster bus.
//! - Commands without a key (SCAN) are sent to the node that owns the deployment's slot.

use std::future::Future;
use std::time::Duration;

use redis::aio::{AsyncPushSender, ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, Pipeline, ProtocolVersion, RedisFuture, RedisResult, Value};

use super::RedisOptions;
use crate::store::StoreError;

/// Where the deployment's Redis is.
#[derive(Debug, Clone)]
pub(super) struct Deployment {
    /// Seed node URLs (one for a single server).
    nodes: Vec<String>,
    cluster: bool,
    timeout: Duration,
}

impl Deployment {
    /// Reads `--redis-url` (a comma-separated list names several cluster nodes) and
    /// `--redis-cluster`. Nothing is connected yet.
    pub(super) fn new(options: &RedisOptions) -> Result<Deployment, StoreError> {
        let nodes = seed_nodes(&options.url)?;
        for node in &nodes {
            redis::Client::open(node.as_str())
                .map_err(|e| StoreError::Unavailable(format!("invalid Redis URL {node}: {e}")))?;
        }
        Ok(Deployment { cluster: options.cluster || nodes.len() > 1, nodes, timeout: options.command_timeout })
    }

    pub(super) fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// What logs and errors call this deployment.
    pub(super) fn describe(&self) -> String {
        match self.cluster {
            true => format!("Redis Cluster at {}", self.nodes.join(",")),
            false => format!("Redis at {}", self.nodes[0]),
        }
    }

    /// The shared connection for every non-blocking command: each command is bounded by the
    /// command timeout, and the connection reconnects by itself.
    pub(super) async fn connect(&self) -> Result<RedisConn, StoreError> {
        let connecting = async {
            if self.cluster {
                let client = self.cluster_client(|b| b.response_timeout(self.timeout))?;
                client.get_async_connection().await.map(RedisConn::Cluster)
            } else {
                self.client(ProtocolVersion::RESP2)?
                    .get_connection_manager_with_config(self.manager_config())
                    .await
                    .map(RedisConn::Single)
            }
        };
        self.bounded(connecting).await
    }

    /// A connection of its own for blocking reads that wait up to `block`.
    pub(super) async fn connect_blocking(&self, block: Duration) -> RedisResult<RedisConn> {
        if self.cluster {
            let client = self.cluster_client(|b| b.response_timeout(block + self.timeout))?;
            return client.get_async_connection().await.map(RedisConn::Cluster);
        }
        let config =
            redis::AsyncConnectionConfig::new().set_connection_timeout(Some(self.timeout)).set_response_timeout(None);
        let conn = self.client(ProtocolVersion::RESP2)?.get_multiplexed_async_connection_with_config(&config).await?;
        Ok(RedisConn::Blocking(conn))
    }

    /// The pub/sub connection: RESP3, every message handed to `pushes`, subscriptions restored
    /// after a reconnection.
    pub(super) async fn subscriber(&self, pushes: impl AsyncPushSender) -> Result<Subscriber, StoreError> {
        let connecting = async {
            if self.cluster {
                let client = self.cluster_client(|b| {
                    b.response_timeout(self.timeout).use_protocol(ProtocolVersion::RESP3).push_sender(pushes)
                })?;
                client.get_async_connection().await.map(Subscriber::Cluster)
            } else {
                let config = self.manager_config().set_push_sender(pushes).set_automatic_resubscription();
                self.client(ProtocolVersion::RESP3)?
                    .get_connection_manager_with_config(config)
                    .await
                    .map(Subscriber::Single)
            }
        };
        self.bounded(connecting).await
    }

    /// A reconnecting single-server connection bounded by the command timeout.
    fn manager_config(&self) -> ConnectionManagerConfig {
        ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1))
    }

    fn client(&self, protocol: ProtocolVersion) -> RedisResult<redis::Client> {
        let info = redis::IntoConnectionInfo::into_connection_info(self.nodes[0].as_str())?;
        let settings = info.redis_settings().clone().set_protocol(protocol);
        redis::Client::open(info.set_redis_settings(settings))
    }

    fn cluster_client(
        &self,
        configure: impl FnOnce(ClusterClientBuilder) -> ClusterClientBuilder,
    ) -> RedisResult<ClusterClient> {
        let builder = ClusterClientBuilder::new(self.nodes.iter().map(String::as_str))
            .connection_timeout(self.timeout)
            .retries(2)
            .max_retry_wait(1000);
        configure(builder).build()
    }

    async fn bounded<T>(&self, connecting: impl Future<Output = RedisResult<T>>) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout * 2, connecting).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(StoreError::Unavailable(format!("cannot connect to {}: {e}", self.describe()))),
            Err(_) => Err(StoreError::Unavailable(format!("{} did not answer", self.describe()))),
        }
    }
}

/// The seed nodes of `url`: `redis://a:6379` is one; `redis://a:7000,b:7001,redis://c:7002`
/// names three. Items without a scheme take the first URL's scheme and credentials.
fn seed_nodes(url: &str) -> Result<Vec<String>, StoreError> {
    let items: Vec<&str> = url.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    let Some(first) = items.first() else {
        return Err(StoreError::Unavailable("the Redis URL is empty".into()));
    };
    let Some((scheme, rest)) = first.split_once("://") else {
        return Err(StoreError::Unavailable(format!("invalid Redis URL {first}: expected redis://host:port")));
    };
    let credentials = rest.split('/').next().unwrap_or("").rsplit_once('@').map_or("", |(c, _)| c);
    let credentials = if credentials.is_empty() { String::new() } else { format!("{credentials}@") };
    Ok(items
        .iter()
        .map(|item| if item.contains("://") { item.to_string() } else { format!("{scheme}://{credentials}{item}") })
        .collect())
}

/// A multiplexed connection to the deployment; cheap to clone.
#[derive(Clone)]
pub(crate) enum RedisConn {
    Single(ConnectionManager),
    /// A plain multiplexed connection for blocking reads (no response timeout).
    Blocking(redis::aio::MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl RedisConn {
    pub(super) fn is_cluster(&self) -> bool {
        matches!(self, RedisConn::Cluster(_))
    }

    /// The command that publishes on the deployment's channels.
    pub(super) fn publish_command(&self) -> &'static str {
        if self.is_cluster() {
            "SPUBLISH"
        } else {
            "PUBLISH"
        }
    }

    /// One SCAN step over the keys matching `pattern`, on the node that holds `key`'s slot
    /// (all of a deployment's keys share one slot).
    pub(super) async fn scan_near(&mut self, key: &str, cursor: u64, pattern: &str) -> RedisResult<(u64, Vec<String>)> {
        let mut scan = redis::cmd("SCAN");
        scan.arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(1000);
        match self {
            RedisConn::Cluster(conn) => {
                let node = SingleNodeRoutingInfo::SpecificNode(Route::with_key(key, SlotAddr::Master));
                let reply = conn.route_command(scan, RoutingInfo::SingleNode(node)).await?;
                redis::from_redis_value(reply).map_err(Into::into)
            }
            _ => scan.query_async(self).await,
        }
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Single(c) => c.req_packed_command(cmd),
            RedisConn::Blocking(c) => c.req_packed_command(cmd),
            RedisConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConn::Blocking(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(c) => c.get_db(),
            RedisConn::Blocking(c) => c.get_db(),
            RedisConn::Cluster(c) => c.get_db(),
        }
    }
}

/// The pub/sub connection of one instance.
pub(super) enum Subscriber {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Subscriber {
    /// Subscribes to `channels` and waits until Redis confirms.
    pub(super) async fn subscribe(&mut self, channels: &[String]) -> RedisResult<()> {
        match self {
            Subscriber::Single(c) => c.subscribe(channels).await,
            Subscriber::Cluster(c) => c.ssubscribe(channels).await,
        }
    }

    pub(super) async fn unsubscribe(&mut self, channels: &[String]) -> RedisResult<()> {
        match self {
            Subscriber::Single(c) => c.unsubscribe(channels).await,
            Subscriber::Cluster(c) => c.sunsubscribe(channels).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_of_urls_names_the_seed_nodes() {
        assert_eq!(seed_nodes("redis://a:6379").unwrap(), ["redis://a:6379"]);
        assert_eq!(
            seed_nodes("redis://:pw@a:7000, b:7001,rediss://c:7002").unwrap(),
            ["redis://:pw@a:7000", "redis://:pw@b:7001", "rediss://c:7002"]
        );
        assert_eq!(seed_nodes("redis://u:p@a:7000/0,b:7001").unwrap(), ["redis://u:p@a:7000/0", "redis://u:p@b:7001"]);
        assert!(seed_nodes("a:7000,b:7001").is_err());
        assert!(seed_nodes(" , ").is_err());
    }

    #[test]
    fn several_nodes_or_the_flag_select_the_cluster_client() {
        let mut options = RedisOptions::new("redis://a:7000,b:7001");
        assert!(Deployment::new(&options).unwrap().is_cluster());
        options.url = "redis://a:7000".into();
        assert!(!Deployment::new(&options).unwrap().is_cluster());
        options.cluster = true;
        assert!(Deployment::new(&options).unwrap().is_cluster());
        options.url = "redis://a:notaport".into();
        assert!(Deployment::new(&options).is_err());
    }
}
