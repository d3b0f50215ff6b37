//! Storage URIs as `limits` 5.8 reads them, sorted into topologies.

use limiter_core::{StorageError, StorageErrorKind};

use crate::NAME;
use crate::options::RedisOptions;

/// What a URI points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// One server: `redis://`, `rediss://` (TLS), `redis+unix://`,
    /// `unix://` and the `valkey` spellings; the URL as redis-rs reads it.
    Single {
        /// The URL for redis-rs.
        url: String,
        /// Whether it is TLS.
        tls: bool,
    },
    /// `redis+cluster://[[user]:password@]h1:p1,h2:p2`: the seed nodes as
    /// `redis://` URLs.
    Cluster {
        /// One URL per seed node, each with the credentials.
        nodes: Vec<String>,
    },
    /// `redis+sentinel://[[user]:password@]h1:p1,h2:p2/service[/db]`.
    Sentinel(SentinelTarget),
}

/// The sentinels and the service they watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SentinelTarget {
    /// `redis://[credentials@]host:port` per sentinel.
    pub(crate) sentinels: Vec<String>,
    /// `[credentials@]`, the same for the master as for the sentinels, as
    /// `limits` passes them to both.
    pub(crate) credentials: String,
    /// The service name.
    pub(crate) service: String,
    /// The database of the master.
    pub(crate) db: i64,
}

fn rejected(message: String) -> StorageError {
    StorageError::new(StorageErrorKind::Rejected, NAME, message)
}

/// Splits `[credentials@]h1:p1,h2:p2[/path]` into credentials (with the
/// `@`, or empty), hosts and path (without the leading `/`).
fn split_authority(rest: &str) -> (&str, &str, &str) {
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    // The last '@' ends the credentials: a password may hold one.
    match authority.rfind('@') {
        Some(at) => (authority.get(..=at).unwrap_or(""), authority.get(at + 1..).unwrap_or(""), path),
        None => ("", authority, path),
    }
}

fn hosts(scheme: &str, hosts: &str, address: &str, default_port: u16) -> Result<Vec<String>, StorageError> {
    let list: Vec<String> = hosts
        .split(',')
        .filter(|h| !h.trim().is_empty())
        .map(|h| {
            let h = h.trim();
            // `[::1]:6379`, `host:6379`, or `host` with the default port.
            let has_port = h.rsplit_once(':').is_some_and(|(host, port)| {
                !port.is_empty()
                    && port.bytes().all(|b| b.is_ascii_digit())
                    && (!host.contains(':') || host.ends_with(']'))
            });
            if has_port { h.to_owned() } else { format!("{h}:{default_port}") }
        })
        .collect();
    if list.is_empty() {
        return Err(rejected(format!("{address} names no host: write {scheme}://host:port[,host:port...]")));
    }
    Ok(list)
}

/// Reads `uri` (whose redacted form is `address`).
pub(crate) fn parse(uri: &str, options: &RedisOptions, address: &str) -> Result<Target, StorageError> {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return Err(rejected(format!("{address} is not a URI: write redis://host:port")));
    };
    match scheme.to_ascii_lowercase().as_str() {
        "redis" | "valkey" | "redis+unix" | "valkey+unix" | "unix" => {
            Ok(Target::Single { url: uri.to_owned(), tls: false })
        }
        "rediss" | "valkeys" => Ok(Target::Single { url: uri.to_owned(), tls: true }),
        "redis+cluster" | "valkey+cluster" => {
            let (credentials, list, path) = split_authority(rest);
            if !path.is_empty() {
                return Err(rejected(format!(
                    "{address}: a cluster has no database or path; write {scheme}://host:port,host:port"
                )));
            }
            let nodes =
                hosts(scheme, list, address, 6379)?.into_iter().map(|h| format!("redis://{credentials}{h}")).collect();
            Ok(Target::Cluster { nodes })
        }
        "redis+sentinel" | "valkey+sentinel" => {
            let (credentials, list, path) = split_authority(rest);
            let sentinels =
                hosts(scheme, list, address, 26379)?.into_iter().map(|h| format!("redis://{credentials}{h}")).collect();
            let mut parts = path.split('/').filter(|p| !p.is_empty());
            let service = parts.next().map(str::to_owned).or_else(|| options.service_name.clone()).ok_or_else(|| {
                rejected(format!(
                    "{address} names no sentinel service: write {scheme}://host:port/service_name, or set the option service_name"
                ))
            })?;
            let db = match parts.next() {
                None => 0,
                Some(db) => db.parse().map_err(|_| {
                    rejected(format!("{address}: the database {db:?} after the service name is not a number"))
                })?,
            };
            if let Some(extra) = parts.next() {
                return Err(rejected(format!(
                    "{address}: unexpected {extra:?}; write {scheme}://host:port/service_name[/db]"
                )));
            }
            Ok(Target::Sentinel(SentinelTarget { sentinels, credentials: credentials.to_owned(), service, db }))
        }
        other => Err(rejected(format!(
            "{address}: the scheme {other:?} is not a Redis one; use redis://, rediss://, redis+unix://, \
             redis+cluster://, redis+sentinel:// or their valkey spellings"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(uri: &str) -> Target {
        parse(uri, &RedisOptions::default(), uri).unwrap()
    }

    #[test]
    fn cluster_hosts_carry_the_credentials() {
        assert_eq!(
            parsed("redis+cluster://:s3cr@t@h1:7000,h2:7001,h3"),
            Target::Cluster {
                nodes: vec![
                    "redis://:s3cr@t@h1:7000".to_owned(),
                    "redis://:s3cr@t@h2:7001".to_owned(),
                    "redis://:s3cr@t@h3:6379".to_owned()
                ]
            }
        );
    }

    #[test]
    fn sentinel_service_and_db() {
        let Target::Sentinel(target) = parsed("valkey+sentinel://:pw@h1:26379,h2/mymaster/2") else { panic!() };
        assert_eq!(target.sentinels, ["redis://:pw@h1:26379", "redis://:pw@h2:26379"]);
        assert_eq!((target.service.as_str(), target.db, target.credentials.as_str()), ("mymaster", 2, ":pw@"));
    }

    #[test]
    fn sentinel_service_from_the_options() {
        let options = RedisOptions { service_name: Some("cache".to_owned()), ..RedisOptions::default() };
        let Ok(Target::Sentinel(target)) = parse("redis+sentinel://h1:26379", &options, "x") else { panic!() };
        assert_eq!(target.service, "cache");
        let e = parse("redis+sentinel://h1:26379", &RedisOptions::default(), "redis+sentinel://h1:26379")
            .unwrap_err()
            .to_string();
        assert!(e.contains("service_name"), "{e}");
    }

    #[test]
    fn single_servers() {
        assert_eq!(parsed("rediss://h:6380/0"), Target::Single { url: "rediss://h:6380/0".to_owned(), tls: true });
        assert_eq!(
            parsed("redis+unix:///tmp/r.sock"),
            Target::Single { url: "redis+unix:///tmp/r.sock".to_owned(), tls: false }
        );
        let e = parse("memcached://h:1", &RedisOptions::default(), "memcached://h:1").unwrap_err().to_string();
        assert!(e.contains("memcached") && e.contains("redis+cluster://"), "{e}");
    }
}
