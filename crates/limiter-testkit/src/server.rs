//! Real storage servers for tests: spawned on a random loopback port in a
//! temporary directory, waited for, killed on drop, their log printed when a
//! test fails.
//!
//! A missing server binary skips the test loudly on a laptop
//! ([`spawn_or_skip`](RedisServer::spawn_or_skip) returns `None` after
//! printing why) and fails it in CI (`CI` or `LIMITER_TEST_REQUIRE_SERVERS`
//! set), so that a green CI run always means the tests ran.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to answer its first ping.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// Whether a missing server binary must fail the test (CI) rather than skip it.
pub fn servers_required() -> bool {
    std::env::var_os("LIMITER_TEST_REQUIRE_SERVERS").is_some() || std::env::var_os("CI").is_some()
}

/// A spawned server process, killed (and its directory removed) on drop.
#[derive(Debug)]
pub struct ServerProcess {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    log: PathBuf,
    command: Vec<String>,
    ping: &'static [u8],
    pong: &'static [u8],
}

impl ServerProcess {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its process id (to stop and continue it with signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its working directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the server (to test outages) and waits for it to exit.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again, same port, same directory, after a
    /// [`kill`](Self::kill), and waits until it answers.
    ///
    /// # Panics
    ///
    /// If it does not start; the message holds its log.
    pub fn restart(&mut self) {
        self.kill();
        let Some((program, args)) = self.command.split_first() else { panic!("{}: no command to restart", self.name) };
        self.child = launch(Path::new(program), args, self.dir.path(), &self.log)
            .unwrap_or_else(|e| panic!("{}: cannot restart: {e}", self.name));
        let deadline = Instant::now() + READY_WITHIN;
        while Instant::now() < deadline {
            if answers(self.addr, self.ping, self.pong) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("{} did not restart; its log:\n{}", self.name, self.log());
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- {} log ({}) ---\n{}--- end of {} log ---",
                self.name,
                self.log.display(),
                self.log(),
                self.name
            );
        }
        self.kill();
    }
}

/// A free loopback port: bound, read, released. Another process may take it
/// before the server binds it; spawning retries with a new port then.
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn binary(env_var: &str, default: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env_var) {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(default)).find(|candidate| candidate.is_file())
}

/// Sends `request` and reads until `expected` arrives or the deadline.
fn answers(addr: SocketAddr, request: &[u8], expected: &[u8]) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(request).is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    let mut got = Vec::new();
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(buf.get(..n).unwrap_or_default());
        if got.windows(expected.len()).any(|w| w == expected) {
            return true;
        }
    }
    false
}

/// What it takes to start one kind of server.
struct Kind {
    name: &'static str,
    env_var: &'static str,
    binary: &'static str,
    args: fn(port: u16, dir: &Path) -> Vec<String>,
    ping: &'static [u8],
    pong: &'static [u8],
}

fn spawn(kind: &Kind, test: &str) -> Option<ServerProcess> {
    let Some(binary) = binary(kind.env_var, kind.binary) else {
        let why = format!("{test}: {} not found (install it, or point {} at it)", kind.binary, kind.env_var);
        assert!(!servers_required(), "{why}; servers are required here (CI or LIMITER_TEST_REQUIRE_SERVERS)");
        eprintln!("skipping {why}");
        return None;
    };
    Some(start(test, kind.name, &binary, &kind.args, kind.ping, kind.pong))
}

/// Runs `program` in `dir`, its output appended to `log`. Its temporary
/// files go in `dir` too (`TMPDIR`): a server killed at the end of a test
/// never removes its own (SecantusDB's in-memory mode makes a directory per
/// start), and `dir` is removed with the test.
fn launch(program: &Path, args: &[String], dir: &Path, log: &Path) -> std::io::Result<Child> {
    let out = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    let err = out.try_clone()?;
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("TMPDIR", dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
}

/// Starts `program` on a free loopback port, in a new temporary directory,
/// with the arguments `args(port, dir)` gives, and waits until it answers
/// `ping` with `pong`; retries on a port taken meanwhile.
///
/// # Panics
///
/// If it does not start; the message holds its log.
pub(crate) fn start(
    test: &str,
    name: &'static str,
    program: &Path,
    args: &dyn Fn(u16, &Path) -> Vec<String>,
    ping: &'static [u8],
    pong: &'static [u8],
) -> ServerProcess {
    let mut last_log = String::new();
    for _attempt in 0..5 {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{test}: cannot make a temporary directory: {e}"));
        let port = free_port().unwrap_or_else(|e| panic!("{test}: no free loopback port: {e}"));
        let log = dir.path().join(format!("{name}.log"));
        let args = args(port, dir.path());
        let command: Vec<String> = std::iter::once(program.display().to_string()).chain(args.iter().cloned()).collect();
        let child = launch(program, &args, dir.path(), &log)
            .unwrap_or_else(|e| panic!("{test}: cannot start {}: {e}", program.display()));
        let mut server = ServerProcess {
            name,
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
            log,
            command,
            ping,
            pong,
        };
        let deadline = Instant::now() + READY_WITHIN;
        while Instant::now() < deadline {
            if answers(server.addr, ping, pong) {
                return server;
            }
            if let Ok(Some(_)) = server.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        last_log = server.log();
        server.kill();
        if !last_log.contains("in use") {
            break;
        }
    }
    panic!("{test}: {name} did not start ({}); its log:\n{last_log}", program.display());
}

/// A `redis-server` (or `$LIMITER_TEST_REDIS_BIN`) without persistence.
#[derive(Debug)]
pub struct RedisServer(pub ServerProcess);

const REDIS: Kind = Kind {
    name: "redis",
    env_var: "LIMITER_TEST_REDIS_BIN",
    binary: "redis-server",
    args: |port, dir| {
        vec![
            "--port".into(),
            port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--dir".into(),
            dir.display().to_string(),
            "--save".into(),
            String::new(),
            "--appendonly".into(),
            "no".into(),
        ]
    },
    ping: b"PING\r\n",
    pong: b"+PONG",
};

impl RedisServer {
    /// Starts one for `test`, or returns `None` (after saying why) if the
    /// binary is missing and servers are not required.
    pub fn spawn_or_skip(test: &str) -> Option<Self> {
        spawn(&REDIS, test).map(RedisServer)
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://{}", self.0.addr())
    }
}

/// A `valkey-server` (or `$LIMITER_TEST_VALKEY_BIN`) without persistence.
#[derive(Debug)]
pub struct ValkeyServer(pub ServerProcess);

const VALKEY: Kind = Kind {
    name: "valkey",
    env_var: "LIMITER_TEST_VALKEY_BIN",
    binary: "valkey-server",
    args: REDIS.args,
    ping: b"PING\r\n",
    pong: b"+PONG",
};

impl ValkeyServer {
    /// Starts one for `test`, or returns `None` (after saying why) if the
    /// binary is missing and servers are not required.
    pub fn spawn_or_skip(test: &str) -> Option<Self> {
        spawn(&VALKEY, test).map(ValkeyServer)
    }

    /// `redis://127.0.0.1:<port>` (Valkey speaks the Redis protocol).
    pub fn url(&self) -> String {
        format!("redis://{}", self.0.addr())
    }
}

/// A `memcached` (or `$LIMITER_TEST_MEMCACHED_BIN`) on TCP only.
#[derive(Debug)]
pub struct MemcachedServer(pub ServerProcess);

const MEMCACHED: Kind = Kind {
    name: "memcached",
    env_var: "LIMITER_TEST_MEMCACHED_BIN",
    binary: "memcached",
    args: |port, _| {
        // -u root: memcached refuses to run as root without it (CI is root).
        ["-l", "127.0.0.1", "-p", &port.to_string(), "-U", "0", "-u", "root", "-m", "64"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    },
    ping: b"version\r\n",
    pong: b"VERSION",
};

impl MemcachedServer {
    /// Starts one for `test`, or returns `None` (after saying why) if the
    /// binary is missing and servers are not required.
    pub fn spawn_or_skip(test: &str) -> Option<Self> {
        spawn(&MEMCACHED, test).map(MemcachedServer)
    }

    /// `memcached://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("memcached://{}", self.0.addr())
    }
}

/// A `memcached` (or `$LIMITER_TEST_MEMCACHED_BIN`) listening on a unix
/// socket only (`-s` turns TCP off), in a temporary directory; killed on
/// drop, its log printed when a test fails.
#[cfg(unix)]
#[derive(Debug)]
pub struct MemcachedUnixServer {
    child: Child,
    dir: tempfile::TempDir,
    socket: PathBuf,
    log: PathBuf,
}

#[cfg(unix)]
impl MemcachedUnixServer {
    /// Starts one for `test`, or returns `None` (after saying why) if the
    /// binary is missing and servers are not required.
    ///
    /// # Panics
    ///
    /// If it does not start; the message holds its log.
    pub fn spawn_or_skip(test: &str) -> Option<Self> {
        let Some(binary) = binary(MEMCACHED.env_var, MEMCACHED.binary) else {
            let why = format!("{test}: memcached not found (install it, or point {} at it)", MEMCACHED.env_var);
            assert!(!servers_required(), "{why}; servers are required here (CI or LIMITER_TEST_REQUIRE_SERVERS)");
            eprintln!("skipping {why}");
            return None;
        };
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{test}: cannot make a temporary directory: {e}"));
        let socket = dir.path().join("memcached.sock");
        let log = dir.path().join("memcached.log");
        let args = ["-s", &socket.display().to_string(), "-a", "0700", "-u", "root", "-m", "64"].map(String::from);
        let child = launch(&binary, &args, dir.path(), &log)
            .unwrap_or_else(|e| panic!("{test}: cannot start {}: {e}", binary.display()));
        let mut server = MemcachedUnixServer { child, dir, socket, log };
        let deadline = Instant::now() + READY_WITHIN;
        while Instant::now() < deadline {
            if server.answers() {
                return Some(server);
            }
            if let Ok(Some(_)) = server.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let log = server.log();
        server.kill();
        panic!("{test}: memcached did not start on {}; its log:\n{log}", server.socket.display());
    }

    fn answers(&self) -> bool {
        let Ok(mut stream) = std::os::unix::net::UnixStream::connect(&self.socket) else { return false };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        if stream.write_all(b"version\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 64];
        matches!(stream.read(&mut buf), Ok(n) if buf.get(..n).is_some_and(|got| got.starts_with(b"VERSION")))
    }

    /// The socket's path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Its working directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `memcached:///<socket path>`.
    pub fn url(&self) -> String {
        format!("memcached://{}", self.socket.display())
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the server and waits for it to exit.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(unix)]
impl Drop for MemcachedUnixServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- memcached log ({}) ---\n{}--- end of memcached log ---", self.log.display(), self.log());
        }
        self.kill();
    }
}

#[path = "mongo.rs"]
mod mongo;
pub use mongo::MongoServer;

#[path = "redis_topologies.rs"]
pub mod redis_topologies;
