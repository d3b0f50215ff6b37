//! Redis deployments for tests beyond one plain server: a cluster, a
//! sentinel-watched master with its replica, a TLS server with a CA made
//! at test time, and a server on a unix socket. Every process is a
//! [`ServerProcess`] (random loopback ports, temporary directory, killed on
//! drop, log printed when the test fails); only `redis-server` (which also
//! runs sentinels, with `--sentinel`) and, for the cluster, `redis-cli` are
//! needed.

use std::cell::Cell;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{ServerProcess, binary, free_port, servers_required};

/// How long a cluster or a sentinel setup may take to settle.
const SETTLE_WITHIN: Duration = Duration::from_secs(30);

/// The `redis-server` binary, or `None` after saying why the test is skipped.
fn redis_binary(test: &str, env_var: &str, name: &str) -> Option<PathBuf> {
    let found = binary(env_var, name);
    if found.is_none() {
        let why = format!("{test}: {name} not found (install it, or point {env_var} at it)");
        assert!(!servers_required(), "{why}; servers are required here (CI or LIMITER_TEST_REQUIRE_SERVERS)");
        eprintln!("skipping {why}");
    }
    found
}

/// Starts `program` with the arguments `args(port, dir)` gives, and waits
/// until it answers PING.
fn start(test: &str, name: &'static str, program: &Path, args: &dyn Fn(u16, &Path) -> Vec<String>) -> ServerProcess {
    super::start(test, name, program, args, b"PING\r\n", b"+PONG")
}

/// The arguments every test redis-server gets: loopback, no persistence.
fn base_args(port: u16, dir: &Path) -> Vec<String> {
    [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--dir",
        &dir.display().to_string(),
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

/// Sends one command (RESP-encoded) and returns what arrives within a short
/// read timeout, as text; empty if the server cannot be reached.
pub fn raw_command(addr: SocketAddr, args: &[&str]) -> String {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else { return String::new() };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(300)));
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    if stream.write_all(request.as_bytes()).is_err() {
        return String::new();
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(buf.get(..n).unwrap_or_default());
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Polls `check` until it holds, or panics with `what` and `logs()`.
fn settle(what: &str, mut check: impl FnMut() -> bool, logs: impl Fn() -> String) {
    let deadline = Instant::now() + SETTLE_WITHIN;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not happen within {SETTLE_WITHIN:?}; logs:\n{}", logs());
}

/// A Redis cluster of 3 masters (and optionally one replica each), made
/// with `redis-cli --cluster create`, every slot served (`cluster_state:ok`
/// on every node) before it is handed out.
#[derive(Debug)]
pub struct RedisClusterServer {
    /// The nodes: the masters first, then the replicas.
    pub nodes: Vec<ServerProcess>,
}

impl RedisClusterServer {
    /// Starts 3 masters, plus one replica per master if `replicas` (handed
    /// out once each is in sync, so that it can take over), or
    /// returns `None` (after saying why) if `redis-server` or `redis-cli`
    /// is missing and servers are not required.
    pub fn spawn_or_skip(test: &str, replicas: bool) -> Option<Self> {
        let server = redis_binary(test, "LIMITER_TEST_REDIS_BIN", "redis-server")?;
        let cli = redis_binary(test, "LIMITER_TEST_REDIS_CLI_BIN", "redis-cli")?;
        let count = if replicas { 6 } else { 3 };
        let nodes: Vec<ServerProcess> = (0..count)
            .map(|_| {
                start(test, "redis-cluster-node", &server, &|port, dir| {
                    let mut args = base_args(port, dir);
                    // The bus port defaults to port + 10000, which may be
                    // taken or out of range: pick one (Redis 7's cluster-port).
                    let bus = free_port().unwrap_or_else(|e| panic!("no free port for the cluster bus: {e}"));
                    args.extend(strings(&[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "2000",
                        "--cluster-port",
                        &bus.to_string(),
                        // A replica may always take over (tests kill
                        // masters), and syncs at once.
                        "--cluster-replica-validity-factor",
                        "0",
                        "--repl-diskless-sync-delay",
                        "0",
                    ]));
                    args
                })
            })
            .collect();
        let cluster = RedisClusterServer { nodes };
        let mut create = Command::new(&cli);
        create.arg("--cluster").arg("create");
        for node in &cluster.nodes {
            create.arg(node.addr().to_string());
        }
        let output = create
            .args(["--cluster-replicas", if replicas { "1" } else { "0" }, "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{test}: cannot run {}: {e}", cli.display()));
        assert!(
            output.status.success(),
            "{test}: redis-cli --cluster create failed:\n{}{}\nlogs:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            cluster.logs()
        );
        settle(
            "cluster_state:ok on every node",
            || cluster.nodes.iter().all(|n| raw_command(n.addr(), &["CLUSTER", "INFO"]).contains("cluster_state:ok")),
            || cluster.logs(),
        );
        if replicas {
            settle(
                "every replica in sync with its master",
                || {
                    let linked = cluster
                        .nodes
                        .iter()
                        .filter(|n| raw_command(n.addr(), &["INFO", "replication"]).contains("master_link_status:up"))
                        .count();
                    linked == count / 2
                },
                || cluster.logs(),
            );
        }
        Some(cluster)
    }

    /// `redis+cluster://127.0.0.1:<p1>,127.0.0.1:<p2>,...` (every node).
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.nodes.iter().map(|n| n.addr().to_string()).collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// The master nodes' addresses, as the cluster sees them now.
    pub fn masters(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(ServerProcess::addr).filter(|a| raw_command(*a, &["ROLE"]).contains("master")).collect()
    }

    /// Every node's log.
    pub fn logs(&self) -> String {
        self.nodes.iter().map(|n| format!("--- {} ---\n{}", n.addr(), n.log())).collect()
    }
}

/// The service name of [`RedisSentinelSetup`].
pub const SENTINEL_SERVICE: &str = "mymaster";

/// A master, one replica, and sentinels watching them as
/// [`SENTINEL_SERVICE`] (quorum 1, a master is down after 1 s without an
/// answer). Handed out once every sentinel names the master and has seen
/// the replica online, so that a failover can promote it.
#[derive(Debug)]
pub struct RedisSentinelSetup {
    /// The first master.
    pub master: ServerProcess,
    /// Its replica.
    pub replica: ServerProcess,
    /// The sentinels (`redis-server --sentinel`).
    pub sentinels: Vec<ServerProcess>,
}

impl RedisSentinelSetup {
    /// Starts the master, its replica and `sentinels` sentinels (1 to 3), or
    /// returns `None` (after saying why) if `redis-server` is missing and
    /// servers are not required.
    pub fn spawn_or_skip(test: &str, sentinels: usize) -> Option<Self> {
        let server = redis_binary(test, "LIMITER_TEST_REDIS_BIN", "redis-server")?;
        // Full syncs start at once, not after the default 5 s wait for more
        // replicas; either server may be the master after a failover.
        let node_args = |port, dir: &Path| {
            let mut args = base_args(port, dir);
            args.extend(strings(&["--repl-diskless-sync-delay", "0"]));
            args
        };
        let master = start(test, "redis-master", &server, &node_args);
        let master_port = master.addr().port().to_string();
        let replica = start(test, "redis-replica", &server, &|port, dir| {
            let mut args = node_args(port, dir);
            args.extend(strings(&["--replicaof", "127.0.0.1", &master_port]));
            args
        });
        settle(
            "the replica's link to the master",
            || raw_command(replica.addr(), &["INFO", "replication"]).contains("master_link_status:up"),
            || format!("{}\n{}", master.log(), replica.log()),
        );
        let sentinels: Vec<ServerProcess> = (0..sentinels.clamp(1, 3))
            .map(|_| {
                start(test, "redis-sentinel", &server, &|port, dir| {
                    // Sentinel rewrites its configuration: one file of its own.
                    let conf = dir.join("sentinel.conf");
                    let text = format!(
                        "port {port}\nbind 127.0.0.1\ndir {}\n\
                         sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {master_port} 1\n\
                         sentinel down-after-milliseconds {SENTINEL_SERVICE} 1000\n\
                         sentinel failover-timeout {SENTINEL_SERVICE} 3000\n\
                         sentinel parallel-syncs {SENTINEL_SERVICE} 1\n",
                        dir.display()
                    );
                    std::fs::write(&conf, text).unwrap_or_else(|e| panic!("cannot write {conf:?}: {e}"));
                    vec![conf.display().to_string(), "--sentinel".to_owned()]
                })
            })
            .collect();
        let setup = RedisSentinelSetup { master, replica, sentinels };
        let replica_port = setup.replica.addr().port().to_string();
        let others = setup.sentinels.len() - 1;
        settle(
            "every sentinel knowing the master, the replica and the other sentinels",
            || {
                setup.sentinels.iter().all(|s| {
                    raw_command(s.addr(), &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_SERVICE])
                        .contains(&master_port)
                        && {
                            let replicas = raw_command(s.addr(), &["SENTINEL", "REPLICAS", SENTINEL_SERVICE]);
                            replicas.contains(&replica_port) && replicas.contains("flags\r\n$5\r\nslave\r\n")
                        }
                        && raw_command(s.addr(), &["SENTINEL", "MASTER", SENTINEL_SERVICE])
                            .contains(&format!("num-other-sentinels\r\n$1\r\n{others}\r\n"))
                })
            },
            || setup.logs(),
        );
        Some(setup)
    }

    /// `redis+sentinel://127.0.0.1:<s1>,.../mymaster`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.sentinels.iter().map(|s| s.addr().to_string()).collect();
        format!("redis+sentinel://{}/{SENTINEL_SERVICE}", hosts.join(","))
    }

    /// The port of the master the first sentinel that answers names.
    pub fn master_port(&self) -> Option<u16> {
        self.sentinels.iter().find_map(|s| {
            let reply = raw_command(s.addr(), &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_SERVICE]);
            // *2 $9 127.0.0.1 $<n> <port>
            reply.lines().filter(|l| !l.starts_with(['*', '$'])).nth(1).and_then(|p| p.trim().parse().ok())
        })
    }

    /// Asks a sentinel to fail over (`SENTINEL FAILOVER`), and waits until
    /// every sentinel names the replica as the master.
    ///
    /// # Panics
    ///
    /// If the failover is refused or does not complete in time.
    pub fn failover(&self) {
        let Some(sentinel) = self.sentinels.first() else { panic!("no sentinel") };
        let reply = raw_command(sentinel.addr(), &["SENTINEL", "FAILOVER", SENTINEL_SERVICE]);
        assert!(reply.starts_with("+OK"), "SENTINEL FAILOVER answered {reply:?}; logs:\n{}", self.logs());
        self.wait_for_master(self.replica.addr().port());
    }

    /// Waits until every sentinel names the server on `port` as the master.
    ///
    /// # Panics
    ///
    /// If that does not happen in time.
    pub fn wait_for_master(&self, port: u16) {
        let port = port.to_string();
        settle(
            &format!("every sentinel naming port {port} as the master"),
            || {
                self.sentinels.iter().all(|s| {
                    let reply = raw_command(s.addr(), &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_SERVICE]);
                    reply.lines().any(|l| l.trim() == port)
                })
            },
            || self.logs(),
        );
    }

    /// Every process's log.
    pub fn logs(&self) -> String {
        std::iter::once(&self.master)
            .chain(std::iter::once(&self.replica))
            .chain(&self.sentinels)
            .map(|p| format!("--- {} ---\n{}", p.addr(), p.log()))
            .collect()
    }
}

/// A redis-server answering TLS on [`tls_addr`](Self::tls_addr) with a
/// certificate for `localhost` and `127.0.0.1` signed by a certificate
/// authority made for the test ([`ca_file`](Self::ca_file)); plain TCP
/// stays on the process's own port (for readiness checks).
#[derive(Debug)]
pub struct RedisTlsServer {
    /// The server.
    pub server: ServerProcess,
    tls_port: u16,
    ca_file: PathBuf,
}

fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "limiter test CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("CA key")).expect("CA certificate");
    let key = KeyPair::generate().expect("server key");
    let mut params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("server parameters");
    params.distinguished_name.push(DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &ca).expect("server certificate");
    let files = (dir.join("ca.pem"), dir.join("server.pem"), dir.join("server.key"));
    for (path, text) in [(&files.0, ca.pem()), (&files.1, cert.pem()), (&files.2, key.serialize_pem())] {
        std::fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {path:?}: {e}"));
    }
    files
}

impl RedisTlsServer {
    /// Starts one for `test`, or returns `None` (after saying why) if the
    /// binary is missing and servers are not required.
    pub fn spawn_or_skip(test: &str) -> Option<Self> {
        let server = redis_binary(test, "LIMITER_TEST_REDIS_BIN", "redis-server")?;
        let tls_port = Cell::new(0);
        let ca_file = std::cell::RefCell::new(PathBuf::new());
        let process = start(test, "redis-tls", &server, &|port, dir| {
            let (ca, cert, key) = certificates(dir);
            let tls = free_port().unwrap_or_else(|e| panic!("no free port for TLS: {e}"));
            tls_port.set(tls);
            ca_file.replace(ca.clone());
            let mut args = base_args(port, dir);
            for (flag, value) in [
                ("--tls-port", tls.to_string()),
                ("--tls-cert-file", cert.display().to_string()),
                ("--tls-key-file", key.display().to_string()),
                ("--tls-ca-cert-file", ca.display().to_string()),
                ("--tls-auth-clients", "no".to_owned()),
            ] {
                args.push(flag.to_owned());
                args.push(value);
            }
            args
        });
        Some(RedisTlsServer { server: process, tls_port: tls_port.get(), ca_file: ca_file.into_inner() })
    }

    /// Where it answers TLS.
    pub fn tls_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.tls_port))
    }

    /// `rediss://localhost:<tls port>`.
    pub fn url(&self) -> String {
        format!("rediss://localhost:{}", self.tls_port)
    }

    /// The PEM file of the test's certificate authority.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }
}

/// A redis-server that also listens on a unix socket in its directory.
#[derive(Debug)]
pub struct RedisUnixServer(pub ServerProcess);

impl RedisUnixServer {
    /// Starts one for `test`, or returns `None` (after saying why) if the
    /// binary is missing and servers are not required.
    pub fn spawn_or_skip(test: &str) -> Option<Self> {
        let server = redis_binary(test, "LIMITER_TEST_REDIS_BIN", "redis-server")?;
        let process = start(test, "redis-unix", &server, &|port, dir| {
            let mut args = base_args(port, dir);
            args.extend(strings(&[
                "--unixsocket",
                &dir.join("redis.sock").display().to_string(),
                "--unixsocketperm",
                "700",
            ]));
            args
        });
        Some(RedisUnixServer(process))
    }

    /// The socket's path.
    pub fn socket(&self) -> PathBuf {
        self.0.dir().join("redis.sock")
    }

    /// `redis+unix://<socket path>`, as `limits` writes it.
    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.socket().display())
    }
}
