//! Python's `limits` 5.8 as a peer of a Rust storage on one server: the
//! interoperability tests of every backend alternate hits between the two
//! and check that they enforce one limit together.
//!
//! The peer runs under the interpreter named by `LIMITER_TEST_PYTHON` (one
//! with `limits[redis,memcached,mongodb]==5.8.0`; `.ci/run` makes it).
//! Without it the tests skip loudly, or fail where servers are required.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use limiter_core::{AnyStorage, RateLimit, RateLimiter, StrategyKind};

use crate::server::servers_required;

/// The Python interpreter with `limits`, or `None` (with a message) when
/// `LIMITER_TEST_PYTHON` is not set and servers are not required.
///
/// # Panics
///
/// When it is not set but servers are required (CI).
pub fn python_or_skip(test: &str) -> Option<String> {
    if let Ok(python) = std::env::var("LIMITER_TEST_PYTHON") {
        return Some(python);
    }
    let why = format!("{test}: LIMITER_TEST_PYTHON is not set (a Python with limits[redis,memcached,mongodb]==5.8.0)");
    assert!(!servers_required(), "{why}; it is required here (CI)");
    eprintln!("skipping {why}");
    None
}

/// One Python process running `limits` on a storage URI, killed on drop.
#[derive(Debug)]
pub struct PythonPeer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl PythonPeer {
    /// Starts `limits` with `strategy` and `limit` on the storage at `url`.
    ///
    /// # Panics
    ///
    /// If the peer does not start or does not say it is ready.
    pub fn start(python: &str, url: &str, strategy: StrategyKind, limit: &str) -> PythonPeer {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/limits_peer.py");
        let mut child = Command::new(python)
            .args([script, url, strategy.name(), limit])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the Python peer starts");
        let stdin = child.stdin.take().expect("its stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("its stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("it says it is ready");
        assert_eq!(line.trim(), "ready", "the Python peer failed to start");
        PythonPeer { child, stdin, stdout }
    }

    fn ask(&mut self, request: &str) -> String {
        writeln!(self.stdin, "{request}").expect("a request is sent");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("the peer answers");
        line.trim().to_owned()
    }

    /// `limits`' `hit`: `Ok(allowed)`, or the storage error it printed.
    pub fn try_hit(&mut self, identifiers: &[&str]) -> Result<bool, String> {
        match self.ask(&identifiers.join(" ")).as_str() {
            "True" => Ok(true),
            "False" => Ok(false),
            other => Err(other.to_owned()),
        }
    }

    /// `limits`' `hit`.
    ///
    /// # Panics
    ///
    /// If the peer's storage failed.
    pub fn hit(&mut self, identifiers: &[&str]) -> bool {
        self.try_hit(identifiers).unwrap_or_else(|e| panic!("the Python peer failed: {e}"))
    }

    /// `limits`' window statistics: the reset time (float seconds) and the
    /// hits remaining.
    ///
    /// # Panics
    ///
    /// If the peer's storage failed.
    pub fn stats(&mut self, identifiers: &[&str]) -> (f64, u64) {
        let line = self.ask(&format!("stats {}", identifiers.join(" ")));
        let (reset, remaining) =
            line.split_once(' ').unwrap_or_else(|| panic!("the Python peer answered {line:?} to stats"));
        (reset.parse().expect("a float"), remaining.parse().expect("an integer"))
    }
}

impl Drop for PythonPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Alternates hits of `limit` on `identifiers` between a Rust limiter over
/// `storage` and Python's `limits` over `url` (the same server), one more
/// round than the limit's amount: exactly the amount passes, the first hits
/// from both sides.
///
/// # Panics
///
/// If the two sides do not enforce one limit together.
pub async fn alternate_hits(
    python: &str,
    url: &str,
    storage: AnyStorage,
    strategy: StrategyKind,
    limit: &str,
    identifiers: &[&str],
) {
    let rust = RateLimiter::dynamic(strategy, storage).expect("the storage runs the strategy");
    let parsed: RateLimit = limit.parse().expect("a valid limit");
    let amount = usize::try_from(parsed.amount()).expect("a small amount");
    let mut peer = PythonPeer::start(python, url, strategy, limit);
    let mut passed = Vec::new();
    for round in 0..=amount {
        passed.push(("rust", round, rust.hit(&parsed, identifiers, 1).await.expect("the Rust hit")));
        passed.push(("python", round, peer.hit(identifiers)));
    }
    let allowed = passed.iter().filter(|(_, _, ok)| *ok).count();
    assert_eq!(
        allowed, amount,
        "{strategy} on {url}, {identifiers:?}: exactly {amount} alternating hits pass: {passed:?}"
    );
    assert!(
        passed.iter().take(amount).all(|(_, _, ok)| *ok),
        "{strategy} on {url}, {identifiers:?}: the first {amount} pass, from both sides: {passed:?}"
    );
}
