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
    // The last '@' ends the credentials, as `redact_uri` reads them: a
    // password may hold '@' or '/'.
    let (credentials, after) = match rest.rfind('@') {
        Some(at) => (rest.get(..=at).unwrap_or(""), rest.get(at + 1..).unwrap_or("")),
        None => ("", rest),
    };
    let (hosts, path) = after.split_once('/').unwrap_or((after, ""));
    (credentials, hosts, path)
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

/// A query-string name or value: `+` is a space and `%XX` a byte, as
/// redis-py (`urllib.parse.parse_qs`) reads them.
fn decoded(raw: &str) -> String {
    percent_encoding::percent_decode_str(&raw.replace('+', " ")).decode_utf8_lossy().into_owned()
}

/// The connection options a single-server URI's query string may carry,
/// as redis-py reads them there: [`RedisOptions`] names.
const QUERY_OPTIONS: [&str; 5] =
    ["ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "socket_timeout", "socket_connect_timeout"];

/// `uri` (a single server's: `scheme` is `redis`, `rediss`, a unix one or
/// a `valkey` spelling) for redis-rs, which reads only `protocol` from the
/// query (and `db`, `user`, `pass` on a unix socket). redis-py reads every
/// pair, so the query of a `limits` URI may hold options: those
/// [`RedisOptions`] knows are moved into `options`, overriding it (as in
/// redis-py, whose `from_url` lets the query string win over keyword
/// arguments); the spellings redis-py takes and redis-rs spells otherwise
/// are translated; any other name is an error naming it, never ignored.
fn single(
    uri: &str,
    scheme: &str,
    tls: bool,
    options: &mut RedisOptions,
    address: &str,
) -> Result<String, StorageError> {
    let unix = scheme.ends_with("unix");
    let (body, fragment) = match uri.split_once('#') {
        Some((body, fragment)) => (body, Some(fragment)),
        None => (uri, None),
    };
    let Some((base, query)) = body.split_once('?') else { return Ok(uri.to_owned()) };
    let mut kept: Vec<String> = Vec::new();
    let mut db: Option<String> = None;
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let (name, value) = (decoded(raw_name), decoded(raw_value));
        match name.as_str() {
            "protocol" => kept.push(pair.to_owned()),
            // redis-rs reads a unix socket's database, user and password
            // from the query, the latter two as `user` and `pass`.
            "db" if unix => kept.push(pair.to_owned()),
            "user" | "pass" if unix => kept.push(pair.to_owned()),
            "username" if unix => kept.push(format!("user={raw_value}")),
            "password" if unix => kept.push(format!("pass={raw_value}")),
            // redis-py: the query's database wins over the path's.
            "db" => {
                if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(rejected(format!("{address}: db={value:?} is not a database number")));
                }
                db = Some(value);
            }
            "username" | "password" | "user" | "pass" => {
                return Err(rejected(format!(
                    "{address}: redis-rs does not read {name:?} from the query of a {scheme}:// URI; \
                     write the credentials before the host: {scheme}://[user]:password@host:port"
                )));
            }
            "ssl_ca_certs" | "ssl_certfile" | "ssl_keyfile" if !tls => {
                return Err(rejected(format!(
                    "{address}: {name} is a TLS setting, and {scheme}:// does not use TLS; write rediss:// \
                     (valkeys://) to connect over TLS, or remove {name}"
                )));
            }
            // Verifying the server's certificate is redis-py's default too.
            "ssl_cert_reqs" if value.eq_ignore_ascii_case("required") && tls => {}
            "ssl_cert_reqs" => {
                return Err(rejected(format!(
                    "{address}: ssl_cert_reqs={value:?} is not supported: the server's certificate is always \
                     verified; to trust a private certificate authority give its PEM file as \
                     ssl_ca_certs=/path/to/ca.pem"
                )));
            }
            name if QUERY_OPTIONS.contains(&name) => options.set(name, &value)?,
            name => {
                return Err(rejected(format!(
                    "{address}: unknown query parameter {name:?}; the query of a {scheme}:// URI takes \
                     protocol, db, {}{}; give other settings in RATELIMIT_STORAGE_OPTIONS",
                    QUERY_OPTIONS.join(", "),
                    if unix { ", username, password" } else { "" }
                )));
            }
        }
    }
    let base = match db {
        // `scheme://authority[/path]`: the path is the database; the
        // query's replaces it.
        Some(db) => {
            let (head, rest) = base.split_once("://").unwrap_or((base, ""));
            let (credentials, hosts, _) = split_authority(rest);
            format!("{head}://{credentials}{hosts}/{db}")
        }
        None => base.to_owned(),
    };
    let mut url = base;
    if !kept.is_empty() {
        url.push('?');
        url.push_str(&kept.join("&"));
    }
    if let Some(fragment) = fragment {
        url.push('#');
        url.push_str(fragment);
    }
    Ok(url)
}

/// Reads `uri` (whose redacted form is `address`); options given in its
/// query string are set in `options`.
pub(crate) fn parse(uri: &str, options: &mut RedisOptions, address: &str) -> Result<Target, StorageError> {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return Err(rejected(format!("{address} is not a URI: write redis://host:port")));
    };
    let scheme_lower = scheme.to_ascii_lowercase();
    match scheme_lower.as_str() {
        "redis" | "valkey" | "redis+unix" | "valkey+unix" | "unix" | "rediss" | "valkeys" => {
            let tls = matches!(scheme_lower.as_str(), "rediss" | "valkeys");
            Ok(Target::Single { url: single(uri, &scheme_lower, tls, options, address)?, tls })
        }
        "redis+cluster" | "valkey+cluster" | "redis+sentinel" | "valkey+sentinel"
            if rest.rsplit_once('@').map_or(rest, |(_, hosts)| hosts).contains('?') =>
        {
            Err(rejected(format!(
                "{address}: a {scheme}:// URI takes no query string; give options in RATELIMIT_STORAGE_OPTIONS"
            )))
        }
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
        parse(uri, &mut RedisOptions::default(), uri).unwrap()
    }

    fn rejected_with(uri: &str) -> String {
        let e = parse(uri, &mut RedisOptions::default(), &limiter_core::engine::redact_uri(uri)).unwrap_err();
        assert_eq!(e.kind(), StorageErrorKind::Rejected, "{e}");
        e.to_string()
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
        // The credentials end at the last '@', as `redact_uri` reads them: a
        // password may hold a '/'.
        assert_eq!(
            parsed("redis+cluster://:p/w@h1:7000"),
            Target::Cluster { nodes: vec!["redis://:p/w@h1:7000".to_owned()] }
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
        let Ok(Target::Sentinel(target)) = parse("redis+sentinel://h1:26379", &mut options.clone(), "x") else {
            panic!()
        };
        assert_eq!(target.service, "cache");
        let e = parse("redis+sentinel://h1:26379", &mut RedisOptions::default(), "redis+sentinel://h1:26379")
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
        let e = parse("memcached://h:1", &mut RedisOptions::default(), "memcached://h:1").unwrap_err().to_string();
        assert!(e.contains("memcached") && e.contains("redis+cluster://"), "{e}");
    }

    #[test]
    fn tls_options_move_from_the_query_into_the_options() {
        let mut options = RedisOptions::default();
        let target = parse(
            "rediss://:pw@h:6380/2?ssl_ca_certs=%2Fetc%2Fca.pem&protocol=3&socket_timeout=0.25",
            &mut options,
            "x",
        )
        .unwrap();
        assert_eq!(target, Target::Single { url: "rediss://:pw@h:6380/2?protocol=3".to_owned(), tls: true });
        assert_eq!(options.tls_ca_certs.as_deref(), Some(std::path::Path::new("/etc/ca.pem")));
        assert_eq!(options.response_timeout, std::time::Duration::from_millis(250));
    }

    #[test]
    fn the_query_wins_over_the_options_as_in_redis_py() {
        let mut options = RedisOptions::from_pairs([("ssl_ca_certs", "/from/options.pem")]).unwrap();
        parse("rediss://h?ssl_ca_certs=/from/uri.pem", &mut options, "x").unwrap();
        assert_eq!(options.tls_ca_certs.as_deref(), Some(std::path::Path::new("/from/uri.pem")));
        let mut options = RedisOptions::from_pairs([("ssl_ca_certs", "/from/options.pem")]).unwrap();
        parse("rediss://h", &mut options, "x").unwrap();
        assert_eq!(options.tls_ca_certs.as_deref(), Some(std::path::Path::new("/from/options.pem")));
    }

    #[test]
    fn databases_and_unix_credentials_as_redis_py_spells_them() {
        assert_eq!(
            parsed("redis://:p/w@h:6379/1?db=4"),
            Target::Single { url: "redis://:p/w@h:6379/4".to_owned(), tls: false }
        );
        assert_eq!(parsed("redis://h?db=3"), Target::Single { url: "redis://h/3".to_owned(), tls: false });
        assert_eq!(
            parsed("redis+unix:///tmp/r.sock?db=2&password=s%40cret&username=app"),
            Target::Single { url: "redis+unix:///tmp/r.sock?db=2&pass=s%40cret&user=app".to_owned(), tls: false }
        );
        assert_eq!(
            parsed("rediss://h/0?ssl_cert_reqs=required#insecure"),
            Target::Single { url: "rediss://h/0#insecure".to_owned(), tls: true }
        );
    }

    #[test]
    fn unknown_or_unsupported_query_keys_are_named() {
        let e = rejected_with("redis://:s3cr3t@h:6379?max_conections=4");
        assert!(e.contains("\"max_conections\"") && e.contains("RATELIMIT_STORAGE_OPTIONS"), "{e}");
        assert!(!e.contains("s3cr3t"), "{e}");
        let e = rejected_with("rediss://h?ssl_cert_reqs=none");
        assert!(e.contains("ssl_cert_reqs") && e.contains("ssl_ca_certs="), "{e}");
        let e = rejected_with("redis://h?ssl_ca_certs=/ca.pem");
        assert!(e.contains("rediss://"), "{e}");
        let e = rejected_with("redis://h?password=s3cr3t");
        assert!(e.contains("password") && !e.contains("s3cr3t"), "{e}");
        let e = rejected_with("redis+unix:///tmp/r.sock?password=s3cr3t&key_prefix=X");
        assert!(e.contains("key_prefix") && !e.contains("s3cr3t"), "{e}");
        let e = rejected_with("redis://h?db=two");
        assert!(e.contains("two"), "{e}");
        let e = rejected_with("redis+cluster://:s3cr3t@h1:7000,h2:7001?ssl_ca_certs=/ca.pem");
        assert!(e.contains("RATELIMIT_STORAGE_OPTIONS") && !e.contains("s3cr3t"), "{e}");
        let e = rejected_with("rediss://h?socket_timeout=soon");
        assert!(e.contains("socket_timeout") && e.contains("soon"), "{e}");
    }
}
