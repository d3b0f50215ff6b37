//! `RATELIMIT_STORAGE_URI` and `RATELIMIT_STORAGE_OPTIONS`: the storage they
//! name, connected, for the backends this build has.

use std::collections::BTreeMap;

use limiter_core::engine::redact_uri;
use limiter_core::{AnyStorage, ConfigError, MemoryStorage};

const URI_OPTION: &str = "RATELIMIT_STORAGE_URI";
#[cfg(any(feature = "redis", feature = "memcached", feature = "mongodb"))]
const OPTIONS_OPTION: &str = "RATELIMIT_STORAGE_OPTIONS";

/// The storage a `RATELIMIT_STORAGE_URI` names, connected, with the default
/// options; see [`storage_from_uri_with`].
///
/// # Errors
///
/// As [`storage_from_uri_with`].
pub async fn storage_from_uri(uri: &str) -> Result<AnyStorage, ConfigError> {
    storage_from_uri_with(uri, &BTreeMap::new()).await
}

/// The storage a `RATELIMIT_STORAGE_URI` names, connected, with the options
/// of `RATELIMIT_STORAGE_OPTIONS` (named as `limits` names them):
///
/// | scheme | feature | options |
/// |---|---|---|
/// | `memory://` | (always) | `max_keys`, `shards` |
/// | `redis://`, `rediss://`, `redis+unix://`, `redis+cluster://`, `redis+sentinel://` and their `valkey` spellings | `redis` | `limiter_redis::RedisOptions::from_pairs` |
/// | `memcached://` (one or several hosts, or a socket path) | `memcached` | `limiter_memcached::MemcachedOptions::from_pairs` |
/// | `mongodb://`, `mongodb+srv://` | `mongodb` | `database_name`, `counter_collection_name`, `window_collection_name` (as `limits`), `connect_timeout`, `call_timeout` (float seconds), `max_pool_size`; the driver's own options go in the URI's query |
///
/// `async+` before a scheme (`limits`' asyncio storages) is accepted: every
/// storage here is asynchronous.
///
/// ```
/// use limiter::storage::Storage;
/// use std::collections::BTreeMap;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), limiter::ConfigError> {
/// let options = BTreeMap::from([("max_keys".to_owned(), "10000".to_owned())]);
/// let storage = limiter::storage_from_uri_with("memory://", &options).await?;
/// assert_eq!(storage.name(), "memory");
///
/// let err = limiter::storage_from_uri("cassandra://db:9042").await.unwrap_err();
/// assert!(err.to_string().contains("unknown storage scheme \"cassandra\""));
/// let shards = BTreeMap::from([("shards".to_owned(), "none".to_owned())]);
/// let err = limiter::storage_from_uri_with("memory://", &shards).await.unwrap_err();
/// assert!(err.to_string().contains("expected a whole number"));
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// [`ConfigError`] naming the URI (password hidden) and the fix if the
/// scheme is unknown, its feature is off, an option is unknown or bad, or
/// the storage cannot be reached.
pub async fn storage_from_uri_with(uri: &str, options: &BTreeMap<String, String>) -> Result<AnyStorage, ConfigError> {
    let shown = redact_uri(uri);
    let bad_uri = |fix: String| ConfigError::InvalidOption { option: URI_OPTION, value: shown.clone(), fix };
    let Some((scheme, _)) = uri.trim().split_once("://") else {
        return Err(bad_uri("expected a storage URI such as memory:// or redis://localhost:6379".to_owned()));
    };
    let scheme = scheme.to_ascii_lowercase();
    let scheme = scheme.strip_prefix("async+").unwrap_or(&scheme);
    // The backends take the URI without limits' `async+` marker.
    let uri = uri.trim().split_once("async+").map_or(uri.trim(), |(_, rest)| rest);
    match scheme {
        "memory" => memory(uri, options).map_err(bad_uri),
        "redis" | "rediss" | "redis+unix" | "redis+cluster" | "redis+sentinel" | "valkey" | "valkeys"
        | "valkey+unix" | "valkey+cluster" | "valkey+sentinel" => redis(uri, options).await,
        "memcached" => memcached(uri, options).await,
        "mongodb" | "mongodb+srv" => mongodb(uri, options).await,
        other => Err(bad_uri(format!(
            "unknown storage scheme {other:?}: expected memory://, redis://, rediss://, redis+unix://, \
             redis+cluster://, redis+sentinel:// (or valkey spellings), memcached://, mongodb:// or mongodb+srv://"
        ))),
    }
}

fn memory(uri: &str, options: &BTreeMap<String, String>) -> Result<AnyStorage, String> {
    if uri != "memory://" {
        return Err("memory:// takes no host, path or query; give its options in RATELIMIT_STORAGE_OPTIONS".to_owned());
    }
    let mut builder = MemoryStorage::builder();
    for (name, value) in options {
        let count = value.trim().parse::<usize>().ok().filter(|n| *n > 0);
        builder = match (name.as_str(), count) {
            ("max_keys", Some(n)) => builder.max_keys(n),
            ("shards", Some(n)) => builder.shards(n),
            ("max_keys" | "shards", None) => {
                return Err(format!("storage option {name} = {value:?}: expected a whole number of at least 1"));
            }
            _ => return Err(format!("unknown storage option {name:?}: memory:// takes only max_keys and shards")),
        };
    }
    Ok(AnyStorage::new(builder.build()))
}

/// The error for a storage that failed to connect or refused its options.
#[cfg(any(feature = "redis", feature = "memcached", feature = "mongodb"))]
fn unreachable_or_rejected(uri: &str, error: &limiter_core::StorageError) -> ConfigError {
    let option = if error.kind() == limiter_core::StorageErrorKind::Rejected { OPTIONS_OPTION } else { URI_OPTION };
    let option = if option == OPTIONS_OPTION && error.to_string().contains("URI") { URI_OPTION } else { option };
    ConfigError::InvalidOption { option, value: redact_uri(uri), fix: error.to_string() }
}

/// A backend whose cargo feature is off.
#[cfg_attr(all(feature = "redis", feature = "memcached", feature = "mongodb"), allow(dead_code))]
fn feature_off(uri: &str, backend: &str, feature: &str) -> ConfigError {
    ConfigError::InvalidOption {
        option: URI_OPTION,
        value: redact_uri(uri),
        fix: format!(
            "the {backend} storage is in the `{feature}` feature of the `limiter` crate: enable it in Cargo.toml"
        ),
    }
}

#[cfg(feature = "redis")]
async fn redis(uri: &str, options: &BTreeMap<String, String>) -> Result<AnyStorage, ConfigError> {
    let options = limiter_redis::RedisOptions::from_pairs(options).map_err(|e| unreachable_or_rejected(uri, &e))?;
    limiter_redis::RedisStorage::connect_with(uri, options)
        .await
        .map(AnyStorage::new)
        .map_err(|e| unreachable_or_rejected(uri, &e))
}

#[cfg(not(feature = "redis"))]
async fn redis(uri: &str, _: &BTreeMap<String, String>) -> Result<AnyStorage, ConfigError> {
    Err(feature_off(uri, "Redis and Valkey", "redis"))
}

#[cfg(feature = "memcached")]
async fn memcached(uri: &str, options: &BTreeMap<String, String>) -> Result<AnyStorage, ConfigError> {
    let options =
        limiter_memcached::MemcachedOptions::from_pairs(options).map_err(|e| unreachable_or_rejected(uri, &e))?;
    limiter_memcached::MemcachedStorage::connect_with(uri, options)
        .await
        .map(AnyStorage::new)
        .map_err(|e| unreachable_or_rejected(uri, &e))
}

#[cfg(not(feature = "memcached"))]
async fn memcached(uri: &str, _: &BTreeMap<String, String>) -> Result<AnyStorage, ConfigError> {
    Err(feature_off(uri, "Memcached", "memcached"))
}

#[cfg(feature = "mongodb")]
async fn mongodb(uri: &str, options: &BTreeMap<String, String>) -> Result<AnyStorage, ConfigError> {
    let options = mongo_options(options).map_err(|fix| ConfigError::InvalidOption {
        option: OPTIONS_OPTION,
        value: redact_uri(uri),
        fix,
    })?;
    limiter_mongodb::MongoStorage::connect_with(uri, options)
        .await
        .map(AnyStorage::new)
        .map_err(|e| unreachable_or_rejected(uri, &e))
}

#[cfg(not(feature = "mongodb"))]
async fn mongodb(uri: &str, _: &BTreeMap<String, String>) -> Result<AnyStorage, ConfigError> {
    Err(feature_off(uri, "MongoDB", "mongodb"))
}

/// `limits`' MongoDB storage options, onto [`limiter_mongodb::MongoOptions`].
#[cfg(feature = "mongodb")]
fn mongo_options(pairs: &BTreeMap<String, String>) -> Result<limiter_mongodb::MongoOptions, String> {
    let mut options = limiter_mongodb::MongoOptions::default();
    let seconds = |name: &str, value: &str| {
        value
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0 && *s < 3600.0)
            .map(std::time::Duration::from_secs_f64)
            .ok_or_else(|| {
                format!("storage option {name} = {value:?}: expected a number of seconds above 0, such as 0.5")
            })
    };
    for (name, value) in pairs {
        match name.as_str() {
            "database_name" => value.clone_into(&mut options.database_name),
            "counter_collection_name" => value.clone_into(&mut options.counter_collection_name),
            "window_collection_name" => value.clone_into(&mut options.window_collection_name),
            "connect_timeout" => options.connect_timeout = seconds(name, value)?,
            "call_timeout" => options.call_timeout = seconds(name, value)?,
            "max_pool_size" => {
                options.max_pool_size = Some(value.trim().parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    format!("storage option max_pool_size = {value:?}: expected a whole number of at least 1")
                })?);
            }
            _ => {
                return Err(format!(
                    "unknown MongoDB storage option {name:?}: expected database_name, counter_collection_name, \
                     window_collection_name, connect_timeout, call_timeout or max_pool_size (driver options go in \
                     the URI's query, e.g. ?maxIdleTimeMS=60000)"
                ));
            }
        }
    }
    Ok(options)
}
