//! The master of a sentinel service: asked of the sentinels
//! (`SENTINEL get-master-addr-by-name`), connected to, and forgotten when a
//! call fails as a lost or demoted master fails, or when the sentinels name
//! another master (checked in the background), so that the next call goes
//! to the new one.

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use limiter_core::{StorageError, StorageErrorKind};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisError, RedisResult};

use crate::NAME;
use crate::connection::{bounded, connection_config};
use crate::options::RedisOptions;
use crate::uri::SentinelTarget;

/// A master as `(host, port)`.
type Address = (String, u16);

#[derive(Clone)]
struct Master {
    address: Address,
    connection: MultiplexedConnection,
}

/// The sentinels of one service and the connection to its master.
pub(crate) struct SentinelLink {
    sentinels: Vec<redis::Client>,
    names: String,
    target: SentinelTarget,
    config: AsyncConnectionConfig,
    connect_timeout: Duration,
    response_timeout: Duration,
    master: Mutex<Option<Master>>,
    /// One resolution at a time: a failover must not open a connection per
    /// waiting request.
    resolving: tokio::sync::Mutex<()>,
}

fn unavailable(message: String) -> RedisError {
    RedisError::from(std::io::Error::new(std::io::ErrorKind::NotConnected, message))
}

/// Whether `e` says the master is gone or no longer the master.
fn master_lost(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || matches!(e.code(), Some("READONLY" | "MASTERDOWN" | "LOADING"))
}

impl SentinelLink {
    /// Builds the link, resolves the master once (so that a wrong service
    /// name fails at startup), and starts watching the sentinels.
    pub(crate) async fn connect(target: SentinelTarget, options: &RedisOptions) -> Result<Arc<Self>, StorageError> {
        let sentinels = target
            .sentinels
            .iter()
            .map(|url| redis::Client::open(url.as_str()))
            .collect::<RedisResult<Vec<_>>>()
            .map_err(|e| {
                StorageError::new(StorageErrorKind::Rejected, NAME, format!("invalid sentinel address: {:?}", e.kind()))
            })?;
        let names = target
            .sentinels
            .iter()
            .map(|url| limiter_core::engine::redact_uri(url).trim_start_matches("redis://").to_owned())
            .collect::<Vec<_>>()
            .join(",");
        let link = Arc::new(SentinelLink {
            sentinels,
            names,
            target,
            config: connection_config(options),
            connect_timeout: options.connect_timeout,
            response_timeout: options.response_timeout,
            master: Mutex::new(None),
            resolving: tokio::sync::Mutex::new(()),
        });
        link.master().await.map_err(|e| crate::error(&e))?;
        tokio::spawn(watch(Arc::downgrade(&link), options.sentinel_check_interval));
        Ok(link)
    }

    fn current(&self) -> Option<Master> {
        self.master.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Forgets the master at `address`, if it is still the current one.
    fn forget(&self, address: &Address) {
        let mut master = self.master.lock().unwrap_or_else(PoisonError::into_inner);
        if master.as_ref().is_some_and(|m| &m.address == address) {
            *master = None;
        }
    }

    /// The master the sentinels name, from the first that answers.
    async fn master_address(&self) -> RedisResult<Address> {
        let mut last = None;
        for sentinel in &self.sentinels {
            let answer = bounded(self.connect_timeout.saturating_add(self.response_timeout), async {
                let mut connection = sentinel.get_multiplexed_async_connection_with_config(&self.config).await?;
                redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(&self.target.service)
                    .query_async::<Option<(String, u16)>>(&mut connection)
                    .await
            })
            .await;
            match answer {
                Ok(Some(address)) => return Ok(address),
                Ok(None) => last = Some(format!("the sentinels know no service {:?}", self.target.service)),
                Err(e) => last = Some(format!("{:?}", e.kind())),
            }
        }
        Err(unavailable(format!(
            "no sentinel of {} named the master of {:?} ({})",
            self.names,
            self.target.service,
            last.unwrap_or_default()
        )))
    }

    /// The current master, connecting to it if need be.
    async fn master(&self) -> RedisResult<Master> {
        if let Some(master) = self.current() {
            return Ok(master);
        }
        let _resolving = self.resolving.lock().await;
        if let Some(master) = self.current() {
            return Ok(master);
        }
        let address = self.master_address().await?;
        let (host, port) = &address;
        let host = if host.contains(':') { format!("[{host}]") } else { host.clone() };
        let url = format!("redis://{}{host}:{port}/{}", self.target.credentials, self.target.db);
        let client = redis::Client::open(url)?;
        let connection = client.get_multiplexed_async_connection_with_config(&self.config).await?;
        let master = Master { address, connection };
        *self.master.lock().unwrap_or_else(PoisonError::into_inner) = Some(master.clone());
        Ok(master)
    }

    /// Runs `call` on the master within the timeouts; a failure that says
    /// the master is lost makes the next call ask the sentinels again.
    pub(crate) async fn call<T, F, Fut>(&self, call: F) -> RedisResult<T>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let master = bounded(self.connect_timeout.saturating_add(self.response_timeout), self.master()).await?;
        let address = master.address.clone();
        let result = bounded(self.response_timeout, call(master.connection)).await;
        if let Err(e) = &result
            && master_lost(e)
        {
            self.forget(&address);
        }
        result
    }
}

/// Asks the sentinels every `interval` which server is the master, and
/// drops the connection when they name another: after a failover the old
/// master may accept writes for seconds before it is demoted.
async fn watch(link: Weak<SentinelLink>, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        let Some(link) = link.upgrade() else { return };
        if let (Ok(named), Some(current)) = (link.master_address().await, link.current())
            && named != current.address
        {
            link.forget(&current.address);
        }
    }
}
