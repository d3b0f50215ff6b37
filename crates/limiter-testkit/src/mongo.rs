//! A MongoDB-compatible server for tests: SecantusDB (`secantusd-py`, a
//! MongoDB wire-protocol server in Python over WiredTiger, from PyPI), not
//! mongod, which no package source reachable here provides. It answers
//! `hello` as a one-member replica set (`setName: secantus`), so the driver
//! may use sessions, retryable writes and transactions on it.
//!
//! Known gap (SecantusDB 0.7.0b3): date minus date in an aggregation
//! expression fails with an `InternalError`. The storage only uses `$toLong`
//! date arithmetic; Python `limits`' sliding window counter uses date minus
//! date and so cannot run on it.

use std::path::Path;

use super::{Kind, ServerProcess, spawn};

/// A SecantusDB server (`secantusd-py`, or `$LIMITER_TEST_SECANTUSD`) keeping
/// its data in memory: a MongoDB-compatible server, not mongod.
#[derive(Debug)]
pub struct MongoServer(pub ServerProcess);

/// `{hello: 1, $db: "admin"}` as one OP_MSG: the server is ready once it
/// answers it (its reply names `isWritablePrimary`).
const HELLO: &[u8] = &[
    0x34, 0, 0, 0, // message length: 52
    1, 0, 0, 0, // request id
    0, 0, 0, 0, // response to
    0xdd, 0x07, 0, 0, // opcode 2013: OP_MSG
    0, 0, 0, 0, // flag bits
    0, // section kind 0: the body
    0x1f, 0, 0, 0, // document length: 31
    0x10, b'h', b'e', b'l', b'l', b'o', 0, 1, 0, 0, 0, // hello: int32 1
    0x02, b'$', b'd', b'b', 0, 6, 0, 0, 0, b'a', b'd', b'm', b'i', b'n', 0, // $db: "admin"
    0, // end of document
];

fn args(port: u16, _dir: &Path) -> Vec<String> {
    ["--host", "127.0.0.1", "--port", &port.to_string(), "--storage-path", ":memory:"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}

const SECANTUS: Kind = Kind {
    name: "secantusd",
    env_var: "LIMITER_TEST_SECANTUSD",
    binary: "secantusd-py",
    args,
    ping: HELLO,
    pong: b"isWritablePrimary",
};

impl MongoServer {
    /// Starts one for `test`, or returns `None` (after saying why) if
    /// `secantusd-py` is missing and servers are not required. It answers
    /// about a second after it starts.
    pub fn spawn_or_skip(test: &str) -> Option<Self> {
        spawn(&SECANTUS, test).map(MongoServer)
    }

    /// `mongodb://127.0.0.1:<port>/?directConnection=true`: one server,
    /// however it describes its replica set.
    pub fn url(&self) -> String {
        format!("mongodb://{}/?directConnection=true", self.0.addr())
    }
}
