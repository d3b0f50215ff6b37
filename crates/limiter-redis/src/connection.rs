//! The connection to a topology: one server (TCP, TLS or unix socket), a
//! cluster, or the master a set of sentinels names. Every call is bounded
//! by the configured timeouts.

use std::sync::Arc;
use std::time::Duration;

use limiter_core::{StorageError, StorageErrorKind};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Cmd, FromRedisValue, RedisError, RedisResult, ScriptInvocation};

use crate::options::RedisOptions;
use crate::sentinel::SentinelLink;
use crate::uri::Target;
use crate::{NAME, error};

/// A live connection, cheap to clone.
#[derive(Clone)]
pub(crate) enum Link {
    /// One server: a multiplexed connection that reconnects by itself.
    Single(ConnectionManager),
    /// A cluster: one multiplexed connection per node, routed by slot.
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
                let client = redis::cluster::ClusterClient::builder(nodes)
                    .connection_timeout(options.connect_timeout)
                    .response_timeout(options.response_timeout)
                    .retries(2)
                    .min_retry_wait(10)
                    .max_retry_wait(100)
                    .build()
                    .map_err(|e| client_error(address, &e))?;
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
    pub(crate) async fn invoke<T: FromRedisValue + Send>(&self, invocation: &ScriptInvocation<'_>) -> RedisResult<T> {
        match self {
            Link::Single(connection) => invocation.invoke_async(&mut connection.clone()).await,
            // A NOSCRIPT from any node loads the script on every primary
            // (redis-rs routes SCRIPT LOAD to all of them), then retries.
            Link::Cluster(connection, limit) => bounded(*limit, invocation.invoke_async(&mut connection.clone())).await,
            Link::Sentinel(link) => {
                link.call(|mut connection| async move { invocation.invoke_async(&mut connection).await }).await
            }
        }
    }

    /// Runs a command.
    pub(crate) async fn query<T: FromRedisValue + Send>(&self, cmd: &Cmd) -> RedisResult<T> {
        match self {
            Link::Single(connection) => cmd.query_async(&mut connection.clone()).await,
            Link::Cluster(connection, limit) => bounded(*limit, cmd.query_async(&mut connection.clone())).await,
            Link::Sentinel(link) => {
                link.call(|mut connection| async move { cmd.query_async(&mut connection).await }).await
            }
        }
    }
}
