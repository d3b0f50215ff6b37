//! Connection settings, and reading them from `limits`-style key/value
//! pairs (Flask-Limiter's `RATELIMIT_STORAGE_OPTIONS`).

use std::path::PathBuf;
use std::time::Duration;

use limiter_core::{StorageError, StorageErrorKind};

use crate::NAME;

/// The key prefix `limits` puts in front of every Redis key.
pub const DEFAULT_KEY_PREFIX: &str = "LIMITS";

/// The option names [`RedisOptions::from_pairs`] accepts.
pub const OPTION_NAMES: &[&str] = &[
    "key_prefix",
    "socket_timeout",
    "socket_connect_timeout",
    "ssl_ca_certs",
    "ssl_certfile",
    "ssl_keyfile",
    "service_name",
    "use_replicas",
    "sentinel_check_interval",
];

/// Connection settings, shared by every topology (one server, cluster,
/// sentinel) and transport (TCP, TLS, unix socket).
///
/// ```
/// use std::time::Duration;
/// use limiter_redis::RedisOptions;
///
/// let options = RedisOptions::from_pairs([("socket_timeout", "0.2"), ("key_prefix", "APP")])?;
/// assert_eq!(options.response_timeout, Duration::from_millis(200));
/// assert_eq!(options.key_prefix, "APP");
/// # Ok::<(), limiter_core::StorageError>(())
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RedisOptions {
    /// The prefix of every key (`limits`' `key_prefix`, default `LIMITS`).
    pub key_prefix: String,
    /// How long connecting may take (redis-py's `socket_connect_timeout`,
    /// default 1 s). Applies to every node of a cluster and to the sentinels.
    pub connect_timeout: Duration,
    /// How long an answer may take (redis-py's `socket_timeout`, default
    /// 500 ms). A call not answered in time fails with a `Timeout` error and
    /// is never sent again (see the [crate docs](crate)).
    ///
    /// * One server: each command sent (a script call that meets `NOSCRIPT`
    ///   sends three: the call, `SCRIPT LOAD`, the call again).
    /// * Sentinel: the call to the master; finding the master first may
    ///   take [`connect_timeout`](Self::connect_timeout) plus this.
    /// * Cluster: each script call to one slot group gets twice this,
    ///   redirections and a script load included. A request whose limits
    ///   lie in several slots sends its calls in rounds: one parallel round
    ///   (peeks, sequential batches without stop), two (all or nothing, and
    ///   sequential batches stopping at the first refusal: a trial, then
    ///   the hits), and for the latter, when a concurrent request changed a
    ///   count between the two, one more call per remaining run of one
    ///   slot, in turn. A request may so take up to twice this per round.
    pub response_timeout: Duration,
    /// `rediss://`: a PEM file of the certificate authorities to trust
    /// instead of the system's (`ssl_ca_certs`).
    pub tls_ca_certs: Option<PathBuf>,
    /// `rediss://`: a PEM client certificate for mutual TLS (`ssl_certfile`;
    /// needs [`tls_keyfile`](Self::tls_keyfile)).
    pub tls_certfile: Option<PathBuf>,
    /// `rediss://`: the PEM private key of [`tls_certfile`](Self::tls_certfile)
    /// (`ssl_keyfile`).
    pub tls_keyfile: Option<PathBuf>,
    /// `redis+sentinel://`: the service name when the URI has no path
    /// (`limits`' `service_name`).
    pub service_name: Option<String>,
    /// `redis+sentinel://`: how often the sentinels are asked which server
    /// is the master, so that requests move to a new master soon after a
    /// failover even while the old one still answers (default 1 s).
    pub sentinel_check_interval: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_millis(500),
            tls_ca_certs: None,
            tls_certfile: None,
            tls_keyfile: None,
            service_name: None,
            sentinel_check_interval: Duration::from_secs(1),
        }
    }
}

fn bad(message: String) -> StorageError {
    StorageError::new(StorageErrorKind::Rejected, NAME, message)
}

/// Float seconds, as redis-py takes its timeouts.
fn seconds(name: &str, value: &str) -> Result<Duration, StorageError> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0 && *s < 86_400.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| {
            bad(format!("Redis option {name} = {value:?} is not a duration: give seconds above 0, such as 0.5"))
        })
}

fn boolean(name: &str, value: &str) -> Result<bool, StorageError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(bad(format!("Redis option {name} = {value:?} is not a boolean: give true or false"))),
    }
}

impl RedisOptions {
    /// The defaults changed by `pairs`, named as `limits` and redis-py name
    /// them (Flask-Limiter's `RATELIMIT_STORAGE_OPTIONS`):
    ///
    /// | name | meaning |
    /// | --- | --- |
    /// | `key_prefix` | [`key_prefix`](Self::key_prefix) |
    /// | `socket_timeout` | [`response_timeout`](Self::response_timeout), float seconds |
    /// | `socket_connect_timeout` | [`connect_timeout`](Self::connect_timeout), float seconds |
    /// | `ssl_ca_certs`, `ssl_certfile`, `ssl_keyfile` | the TLS files, paths |
    /// | `service_name` | the sentinel service when the URI names none |
    /// | `use_replicas` | accepted for `limits` compatibility; every call goes to the master (only peeks could be served by a replica, and they would read stale counts) |
    /// | `sentinel_check_interval` | [`sentinel_check_interval`](Self::sentinel_check_interval), float seconds |
    ///
    /// # Errors
    ///
    /// [`StorageError`] (kind `Rejected`) naming the unknown option or the
    /// bad value, and what is accepted.
    pub fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Result<Self, StorageError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut options = RedisOptions::default();
        for (name, value) in pairs {
            options.set(name.as_ref(), value.as_ref())?;
        }
        Ok(options)
    }

    /// Sets one option by its `limits` name; see [`from_pairs`](Self::from_pairs).
    ///
    /// # Errors
    ///
    /// As [`from_pairs`](Self::from_pairs).
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), StorageError> {
        let path = |value: &str| {
            if value.trim().is_empty() {
                Err(bad(format!("Redis option {name} is empty: give the path of a PEM file")))
            } else {
                Ok(Some(PathBuf::from(value)))
            }
        };
        match name {
            "key_prefix" => {
                if value.is_empty() {
                    return Err(bad("Redis option key_prefix is empty: give a prefix such as LIMITS".to_owned()));
                }
                value.clone_into(&mut self.key_prefix);
            }
            "socket_timeout" => self.response_timeout = seconds(name, value)?,
            "socket_connect_timeout" => self.connect_timeout = seconds(name, value)?,
            "ssl_ca_certs" => self.tls_ca_certs = path(value)?,
            "ssl_certfile" => self.tls_certfile = path(value)?,
            "ssl_keyfile" => self.tls_keyfile = path(value)?,
            "service_name" => self.service_name = Some(value.to_owned()),
            "use_replicas" => {
                boolean(name, value)?;
            }
            "sentinel_check_interval" => self.sentinel_check_interval = seconds(name, value)?,
            _ => {
                return Err(bad(format!("unknown Redis option {name:?}: the options are {}", OPTION_NAMES.join(", "))));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_limits_set_the_fields() {
        let options = RedisOptions::from_pairs([
            ("socket_timeout", "0.25"),
            ("socket_connect_timeout", "2"),
            ("ssl_ca_certs", "/etc/ca.pem"),
            ("service_name", "mymaster"),
            ("use_replicas", "false"),
        ])
        .unwrap();
        assert_eq!(options.response_timeout, Duration::from_millis(250));
        assert_eq!(options.connect_timeout, Duration::from_secs(2));
        assert_eq!(options.tls_ca_certs, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(options.service_name.as_deref(), Some("mymaster"));
    }

    #[test]
    fn errors_name_the_option_and_the_value() {
        let e = RedisOptions::from_pairs([("socket_timeout", "soon")]).unwrap_err().to_string();
        assert!(e.contains("socket_timeout") && e.contains("soon"), "{e}");
        let e = RedisOptions::from_pairs([("socket_timeout", "-1")]).unwrap_err().to_string();
        assert!(e.contains("-1"), "{e}");
        let e = RedisOptions::from_pairs([("max_conections", "4")]).unwrap_err().to_string();
        assert!(e.contains("max_conections") && e.contains("socket_timeout"), "{e}");
        let e = RedisOptions::from_pairs([("use_replicas", "maybe")]).unwrap_err().to_string();
        assert!(e.contains("maybe"), "{e}");
    }
}
