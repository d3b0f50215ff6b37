//! `memcached://` URIs, read as `limits` reads them.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Where one memcached server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Address {
    /// A host (lower-cased, IPv6 without brackets) and a port.
    Tcp {
        /// The host name or address.
        host: String,
        /// The port.
        port: u16,
    },
    /// A unix socket.
    Unix(PathBuf),
}

impl fmt::Display for Address {
    /// The server's name in pymemcache's `HashClient`: `host:port`, or the
    /// socket path.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp { host, port } => write!(f, "{host}:{port}"),
            Address::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

/// What a URI says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) addresses: Vec<Address>,
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) timeout: Option<Duration>,
}

/// Reads `memcached://host:port[,host:port...]` or `memcached:///socket/path`,
/// with the optional query parameters `connect_timeout` and `timeout`
/// (seconds, pymemcache's option names). On error: what is wrong and how to
/// write it instead.
pub(crate) fn parse(uri: &str) -> Result<Target, String> {
    let Some(rest) = uri.strip_prefix("memcached://") else {
        return Err("expected memcached://host:port[,host:port...] or memcached:///path/to/socket".to_owned());
    };
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    if rest.contains('@') {
        return Err("memcached:// takes no user or password (memcached's protocol has no authentication here); \
             remove the credentials"
            .to_owned());
    }
    let (netloc, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let mut addresses = Vec::new();
    if !path.is_empty() && path != "/" {
        if !netloc.trim().is_empty() {
            return Err(
                "give either host:port locations or a socket path (memcached:///path/to.sock), not both".to_owned()
            );
        }
        addresses.push(Address::Unix(PathBuf::from(path)));
    } else {
        for location in netloc.split(',') {
            addresses.push(parse_location(location.trim())?);
        }
    }
    let mut target = Target { addresses, connect_timeout: None, timeout: None };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "connect_timeout" => target.connect_timeout = Some(seconds(name, value)?),
            "timeout" => target.timeout = Some(seconds(name, value)?),
            _ => return Err(format!("unknown option {name:?}: expected connect_timeout or timeout")),
        }
    }
    Ok(target)
}

/// A timeout option's value: float seconds, as pymemcache takes them.
pub(crate) fn seconds(name: &str, value: &str) -> Result<Duration, String> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0 && *s < 3600.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("{name}={value:?}: expected a number of seconds above 0, such as 0.5"))
}

fn parse_location(location: &str) -> Result<Address, String> {
    let missing = || format!("missing host or port in location {location:?}: write host:port, such as 127.0.0.1:11211");
    let (host, port) = if let Some(rest) = location.strip_prefix('[') {
        let (host, port) = rest.split_once("]:").ok_or_else(missing)?;
        (host, port)
    } else {
        location.rsplit_once(':').ok_or_else(missing)?
    };
    if host.is_empty() || host.contains(['/', ' ']) {
        return Err(missing());
    }
    let port: u16 =
        port.parse().map_err(|_| format!("invalid port {port:?} in location {location:?}: expected 1 to 65535"))?;
    if port == 0 {
        return Err(format!("invalid port 0 in location {location:?}: expected 1 to 65535"));
    }
    Ok(Address::Tcp { host: host.to_ascii_lowercase(), port })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn tcp(host: &str, port: u16) -> Address {
        Address::Tcp { host: host.to_owned(), port }
    }

    #[test]
    fn one_or_several_hosts_or_a_socket() {
        assert_eq!(parse("memcached://127.0.0.1:11211").unwrap().addresses, [tcp("127.0.0.1", 11211)]);
        assert_eq!(parse("memcached://Cache:11211/").unwrap().addresses, [tcp("cache", 11211)]);
        assert_eq!(parse("memcached://a:1, b:2,[::1]:3").unwrap().addresses, [tcp("a", 1), tcp("b", 2), tcp("::1", 3)]);
        assert_eq!(
            parse("memcached:///var/run/memcached.sock").unwrap().addresses,
            [Address::Unix("/var/run/memcached.sock".into())]
        );
        assert_eq!(tcp("::1", 3).to_string(), "::1:3", "pymemcache's name for the server");
    }

    #[test]
    fn timeouts_from_the_query() {
        let target = parse("memcached://a:1?connect_timeout=0.25&timeout=2").unwrap();
        assert_eq!(target.connect_timeout, Some(Duration::from_millis(250)));
        assert_eq!(target.timeout, Some(Duration::from_secs(2)));
        assert!(parse("memcached://a:1?timeout=0").unwrap_err().contains("timeout=\"0\""));
        assert!(parse("memcached://a:1?pool=3").unwrap_err().contains("unknown option \"pool\""));
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(parse("redis://a:1").unwrap_err().contains("expected memcached://"));
        assert!(parse("memcached://a").unwrap_err().contains("missing host or port in location \"a\""));
        assert!(parse("memcached://").unwrap_err().contains("missing host or port"));
        assert!(parse("memcached://a:x").unwrap_err().contains("invalid port \"x\""));
        assert!(parse("memcached://a:1/sock").unwrap_err().contains("not both"));
        let err = parse("memcached://u:secret@a:1").unwrap_err();
        assert!(!err.contains("secret") && err.contains("remove the credentials"), "{err}");
    }
}
