//! One handle over the two deployments: a standalone server through a
//! reconnecting multiplexed connection, or a Cluster through the cluster client.
//!
//! Both multiplex: every concurrent decision of an instance shares one socket
//! per node and their commands are pipelined, so a busy instance does not open
//! a connection per request. Public so that other Redis users of a deployment
//! (the server's relay outbox) connect the same way.

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::io::tcp::TcpSettings;
use redis::{Cmd, IntoConnectionInfo, Pipeline, RedisFuture, Value};

use std::time::Duration;

use super::config::RedisTarget;

/// A cheap-to-clone connection to wherever the buckets live.
#[derive(Clone)]
pub enum Connection {
    /// Reconnects by itself (with backoff) after the server drops it.
    Standalone(ConnectionManager),
    /// Follows MOVED/ASK and refreshes the slot map by itself.
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Connection::Standalone(_) => "Connection::Standalone",
            Connection::Cluster(_) => "Connection::Cluster",
        })
    }
}

/// `TCP_NODELAY` on: a decision is a small request waiting for its answer, and
/// with Nagle's algorithm a request written while the previous one is
/// unacknowledged would wait for that acknowledgement (Redis sets it on its side
/// for the same reason).
fn tcp_settings() -> TcpSettings {
    TcpSettings::default().set_nodelay(true)
}

impl Connection {
    /// Connects to `target`, each connection attempt and response bounded by
    /// `timeout`. The caller bounds the whole wait.
    pub async fn open(target: &RedisTarget, timeout: Duration) -> redis::RedisResult<Connection> {
        match target {
            RedisTarget::Standalone(url) => {
                let info = url
                    .as_str()
                    .into_connection_info()?
                    .set_tcp_settings(tcp_settings());
                let client = redis::Client::open(info)?;
                let manager_config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    // No retries inside a connection attempt: redis-rs would
                    // sleep 100 ms or more between them, past the caller's
                    // deadline, so a refused connection or a wrong password
                    // surfaced as a bare timeout. The next call makes the next
                    // attempt (one at a time: concurrent calls share it), and
                    // fails fast with the cause.
                    .set_number_of_retries(0);
                let manager = ConnectionManager::new_with_config(client, manager_config).await?;
                Ok(Connection::Standalone(manager))
            }
            RedisTarget::Cluster(urls) => {
                let max_wait = u64::try_from(timeout.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(20);
                let client = ClusterClientBuilder::new(urls.iter().map(String::as_str))
                    .tcp_settings(tcp_settings())
                    // redis-rs waits at least 1.28 s before retrying a request
                    // after a connection error: a node back from a restart would
                    // stay unused for seconds. Every call is bounded by `timeout`
                    // anyway, so retry soon (10, 20, 40 ms) and at most 3 times.
                    .retries(3)
                    .min_retry_wait(10)
                    .max_retry_wait(max_wait)
                    .retry_wait_formula(10, 2)
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    .build()?;
                Ok(Connection::Cluster(client.get_async_connection().await?))
            }
        }
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Standalone(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Standalone(c) => c.req_packed_commands(cmd, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Standalone(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}
