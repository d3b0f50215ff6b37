//! The connection to a topology: one server (TCP, TLS or unix socket), a
//! cluster, or the master a set of sentinels names. Every call is bounded
//! by the configured timeouts.
//!
//! A call that fails after it was sent is never sent again: the server may
//! have run it, and a script run twice counts its hits twice. Only replies
//! that say the server did not run the command (a cluster redirection or a
//! cluster not ready, a missing script) lead to sending it again.

use std::sync::Arc;
use std::time::Duration;

use limiter_core::{StorageError, StorageErrorKind};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::SingleNodeRoutingInfo;
use redis::{AsyncConnectionConfig, Cmd, ErrorKind, FromRedisValue, RedisError, RedisResult, ServerErrorKind, Value};

use crate::options::RedisOptions;
use crate::script_call::ScriptCall;
use crate::sentinel::SentinelLink;
use crate::uri::Target;
use crate::{NAME, error};

/// A live connection, cheap to clone.
#[derive(Clone)]
pub(crate) enum Link {
    /// One server: a multiplexed connection that reconnects by itself.
    Single(ConnectionManager),
    /// A cluster: one multiplexed connection per node, routed by slot; and
    /// the bound of one call (twice the response timeout: a redirection or
    /// a script load takes more than one round trip).
    Cluster(ClusterConnection, Duration),
    /// The current master of a sentinel service.
    Sentinel(Arc<SentinelLink>),
}

fn rejected(message: String) -> StorageError {
    StorageError::new(StorageErrorKind::Rejected, NAME, message)
}

/// The error of a call that did not end within `limit`.
fn timed_out(limit: Duration) -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no answer within {} ms", limit.as_millis()),
    ))
}

/// Bounds `call` by `limit`.
pub(crate) async fn bounded<T>(limit: Duration, call: impl Future<Output = RedisResult<T>>) -> RedisResult<T> {
    tokio::time::timeout(limit, call).await.unwrap_or_else(|_| Err(timed_out(limit)))
}

/// The per-connection timeouts of `options`.
pub(crate) fn connection_config(options: &RedisOptions) -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(options.connect_timeout))
        .set_response_timeout(Some(options.response_timeout))
}

/// `rediss://` trust settings from `options`, read from their files now so
/// that a bad path fails at startup.
fn tls_certificates(options: &RedisOptions) -> Result<Option<redis::TlsCertificates>, StorageError> {
    let read = |path: &std::path::Path, what: &str| {
        std::fs::read(path)
            .map_err(|e| rejected(format!("cannot read the TLS {what} {} (Redis option ssl_*): {e}", path.display())))
    };
    let root_cert = options.tls_ca_certs.as_deref().map(|p| read(p, "CA certificates")).transpose()?;
    let client_tls = match (&options.tls_certfile, &options.tls_keyfile) {
        (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
            client_cert: read(cert, "client certificate")?,
            client_key: read(key, "client key")?,
        }),
        (None, None) => None,
        _ => {
            return Err(rejected(
                "ssl_certfile and ssl_keyfile go together: give both for mutual TLS, or neither".to_owned(),
            ));
        }
    };
    Ok((root_cert.is_some() || client_tls.is_some()).then_some(redis::TlsCertificates { client_tls, root_cert }))
}

/// rustls needs one process-wide crypto provider; ring is the one built in.
fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Another thread may have installed one meanwhile: either is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// The cluster client: per-node connect timeout, and no retries. redis-rs
/// retries a command whose answer did not come (a response timeout, a
/// dropped connection) by sending it again, and the node may have run it
/// already: a hit would count twice. So nothing is retried inside redis-rs
/// (which also stops it from following MOVED and ASK, see
/// [`send_to_cluster`]) and no per-node response timeout is set; the one
/// bound on a call is [`bounded`]'s, which gives up without sending again.
fn cluster_client(nodes: Vec<String>, options: &RedisOptions) -> RedisResult<ClusterClient> {
    ClusterClient::builder(nodes).connection_timeout(options.connect_timeout).retries(0).build()
}

/// Whether the server answered `e` without running the command, so that
/// sending it again cannot count anything twice.
fn not_run(e: &RedisError) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Server(
            ServerErrorKind::Moved
                | ServerErrorKind::Ask
                | ServerErrorKind::TryAgain
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::MasterDown
                | ServerErrorKind::BusyLoading
                | ServerErrorKind::ReadOnly
        ) | ErrorKind::ClusterConnectionNotFound
    )
}

/// Sends `cmd` (with `script` to load on NOSCRIPT) to the node of its
/// slot, following redirections itself: with retries off, redis-rs hands
/// back `MOVED` (after starting a refresh of its slot map) and `ASK`. Sent
/// again only after an answer that says the node did not run it
/// ([`not_run`], NOSCRIPT); any other failure, a lost connection included,
/// is the caller's. Loops until the caller's [`bounded`] gives up.
async fn send_to_cluster<T: FromRedisValue>(
    connection: &ClusterConnection,
    cmd: &Cmd,
    script: Option<&redis::Script>,
) -> RedisResult<T> {
    let mut connection = connection.clone();
    // `ASK`: the slot is moving and this key is already at the target,
    // which runs the command only right after ASKING on the same
    // connection: one pipeline.
    let mut asking: Option<(String, u16)> = None;
    let mut pause = Duration::from_millis(2);
    loop {
        let result: RedisResult<Value> = match &asking {
            None => cmd.query_async(&mut connection).await,
            Some((host, port)) => {
                let mut pipeline = redis::pipe();
                pipeline.cmd("ASKING").add_command(cmd.clone());
                let route = SingleNodeRoutingInfo::ByAddress { host: host.clone(), port: *port };
                let values = connection.route_pipeline(pipeline, 1, 1, route).await;
                values.and_then(|values| values.into_iter().next().unwrap_or(Value::Nil).extract_error())
            }
        };
        let e = match result {
            Ok(value) => return Ok(redis::from_redis_value(value)?),
            Err(e) => e,
        };
        match (e.kind(), script) {
            (ErrorKind::Server(ServerErrorKind::NoScript), Some(script)) => {
                script.load_async(&mut connection).await?;
            }
            (ErrorKind::Server(ServerErrorKind::Ask), _) => {
                let Some((node, _slot)) = e.redirect_node() else { return Err(e) };
                let Some((host, port)) = node.rsplit_once(':').and_then(|(h, p)| Some((h, p.parse().ok()?))) else {
                    return Err(e);
                };
                asking = Some((host.trim_start_matches('[').trim_end_matches(']').to_owned(), port));
            }
            _ if not_run(&e) => {
                // MOVED and the like: redis-rs refreshes its slot map;
                // go by slot again once it has had a moment.
                asking = None;
                tokio::time::sleep(pause).await;
                pause = pause.saturating_mul(2).min(Duration::from_millis(50));
            }
            _ => return Err(e),
        }
    }
}

/// Sends `call` as `EVALSHA`; on `NOSCRIPT`, loads the script and sends it
/// once more: what redis-rs' `ScriptInvocation::invoke_async` does, from
/// the call's own command rather than a copy of its keys and arguments.
async fn evalsha<T: FromRedisValue, C: ConnectionLike + Send>(
    connection: &mut C,
    call: &ScriptCall<'_>,
) -> RedisResult<T> {
    let cmd = call.evalsha();
    match cmd.query_async(connection).await {
        Err(e) if matches!(e.kind(), ErrorKind::Server(ServerErrorKind::NoScript)) => {
            call.script().load_async(connection).await?;
            cmd.query_async(connection).await
        }
        result => result,
    }
}

fn client_error(address: &str, e: &RedisError) -> StorageError {
    // The kind and the server's code only: details may echo the URL.
    rejected(format!("invalid Redis URL {address}: {:?}", e.kind()))
}

impl Link {
    /// Connects to `target`.
    pub(crate) async fn connect(target: Target, options: &RedisOptions, address: &str) -> Result<Self, StorageError> {
        match target {
            Target::Single { url, tls } => {
                let client = if tls {
                    install_crypto_provider();
                    match tls_certificates(options)? {
                        Some(certificates) => redis::Client::build_with_tls(url.as_str(), certificates),
                        None => redis::Client::open(url.as_str()),
                    }
                } else {
                    redis::Client::open(url.as_str())
                }
                .map_err(|e| client_error(address, &e))?;
                // Reconnect quickly and give up fast: while the server is away
                // the failure policy answers, and a call must not wait on a
                // long backoff.
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(options.connect_timeout))
                    .set_response_timeout(Some(options.response_timeout))
                    .set_number_of_retries(1)
                    .set_min_delay(Duration::from_millis(10))
                    .set_max_delay(Duration::from_millis(100));
                let connection = ConnectionManager::new_with_config(client, config).await.map_err(|e| error(&e))?;
                Ok(Link::Single(connection))
            }
            Target::Cluster { nodes } => {
                let client = cluster_client(nodes, options).map_err(|e| client_error(address, &e))?;
                let connection = bounded(options.connect_timeout.saturating_mul(2), client.get_async_connection())
                    .await
                    .map_err(|e| error(&e))?;
                Ok(Link::Cluster(connection, options.response_timeout.saturating_mul(2)))
            }
            Target::Sentinel(target) => Ok(Link::Sentinel(SentinelLink::connect(target, options).await?)),
        }
    }

    /// Whether keys of different slots must go to separate calls.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Link::Cluster(..))
    }

    /// Runs a script (EVALSHA, loading it on NOSCRIPT).
    pub(crate) async fn invoke<T: FromRedisValue + Send>(&self, call: &ScriptCall<'_>) -> RedisResult<T> {
        match self {
            Link::Single(connection) => evalsha(&mut connection.clone(), call).await,
            // A NOSCRIPT from any node loads the script on every node
            // (redis-rs routes SCRIPT LOAD to all of them, replicas too),
            // then sends the call again.
            Link::Cluster(connection, limit) => {
                bounded(*limit, send_to_cluster(connection, &call.evalsha(), Some(call.script()))).await
            }
            Link::Sentinel(link) => {
                link.call(|mut connection| async move { evalsha(&mut connection, call).await }).await
            }
        }
    }

    /// Runs a command.
    pub(crate) async fn query<T: FromRedisValue + Send>(&self, cmd: &Cmd) -> RedisResult<T> {
        match self {
            Link::Single(connection) => cmd.query_async(&mut connection.clone()).await,
            Link::Cluster(connection, limit) => bounded(*limit, send_to_cluster(connection, cmd, None)).await,
            Link::Sentinel(link) => {
                link.call(|mut connection| async move { cmd.query_async(&mut connection).await }).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// redis-rs shows its settings only in `Debug`: no retries (a timed-out
    /// or cut-off script call would be sent again), and no response
    /// timeout of its own, per node or overall.
    #[test]
    fn the_cluster_client_never_sends_a_call_again() {
        let options = RedisOptions::default();
        let client = cluster_client(vec!["redis://127.0.0.1:7000".to_owned()], &options).unwrap();
        let shown = format!("{client:?}");
        assert!(shown.contains("number_of_retries: 0,"), "{shown}");
        assert!(shown.contains("connection_timeout: 1s, response_timeout: None,"), "{shown}");
        assert!(shown.contains("overall_response_timeout: None,"), "{shown}");
    }
}
