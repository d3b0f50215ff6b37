//! The servers of a storage, and pipelines across them: each command goes to
//! the server that holds its key, every server's commands leave in one
//! write, all servers are asked at once, and the replies come back in the
//! order the commands were added.

use limiter_core::{StorageError, StorageErrorKind};

use crate::NAME;
use crate::connection::{Connection, Pending, Timeouts};
use crate::protocol::{Commands, Exptime, KeyTooLong, MAX_ENCODED_KEY_LEN, MAX_KEY_LEN, Reply};
use crate::ring;
use crate::uri::Address;

/// Every server, with the names pymemcache's `HashClient` hashes.
#[derive(Debug)]
pub(crate) struct Servers {
    connections: Vec<Connection>,
    names: Vec<String>,
}

impl Servers {
    /// Starts one connection per address.
    pub(crate) fn spawn(addresses: Vec<Address>, timeouts: Timeouts) -> Servers {
        let names = addresses.iter().map(ToString::to_string).collect();
        let connections = addresses.into_iter().map(|a| Connection::spawn(a, timeouts)).collect();
        Servers { connections, names }
    }

    pub(crate) fn connections(&self) -> &[Connection] {
        &self.connections
    }

    /// The index of the server holding `key`.
    fn route(&self, key: &str) -> usize {
        if self.connections.len() == 1 { 0 } else { ring::pick(&self.names, key) }
    }

    pub(crate) fn pipeline(&self) -> Pipeline<'_> {
        Pipeline {
            servers: self,
            commands: std::iter::repeat_with(Commands::default).take(self.connections.len()).collect(),
            slots: Vec::new(),
        }
    }
}

/// Commands being gathered for one round trip.
#[derive(Debug)]
pub(crate) struct Pipeline<'s> {
    servers: &'s Servers,
    commands: Vec<Commands>,
    /// For each command added: its server and its place in that server's list.
    slots: Vec<(usize, usize)>,
}

fn too_long(e: &KeyTooLong) -> StorageError {
    let why = match e.encoded {
        None => format!("a key of {} bytes is longer than memcached's {MAX_KEY_LEN}: use shorter identifiers", e.len),
        Some(encoded) => format!(
            "a key of {} bytes, sent base64-encoded as {encoded} because of its spaces, control or non-ASCII \
             characters, is longer than memcached's {MAX_KEY_LEN}: such a key may have at most \
             {MAX_ENCODED_KEY_LEN} bytes; use shorter identifiers",
            e.len
        ),
    };
    StorageError::new(StorageErrorKind::Rejected, NAME, why)
}

impl Pipeline<'_> {
    /// Adds one command on `key`, written by `write`; returns its slot.
    fn push(
        &mut self,
        key: &str,
        write: impl FnOnce(&mut Commands) -> Result<(), KeyTooLong>,
    ) -> Result<usize, StorageError> {
        let server = self.servers.route(key);
        let Some(commands) = self.commands.get_mut(server) else {
            return Err(StorageError::new(StorageErrorKind::Other, NAME, "no server for a key"));
        };
        write(commands).map_err(|e| too_long(&e))?;
        self.slots.push((server, commands.count - 1));
        Ok(self.slots.len() - 1)
    }

    /// See [`Commands::get`].
    pub(crate) fn get(&mut self, key: &str) -> Result<usize, StorageError> {
        self.push(key, |c| c.get(key))
    }

    /// See [`Commands::incr`].
    pub(crate) fn incr(&mut self, key: &str, delta: u64, exptime: Exptime) -> Result<usize, StorageError> {
        self.push(key, |c| c.incr(key, delta, exptime))
    }

    /// See [`Commands::decr`].
    pub(crate) fn decr(&mut self, key: &str, delta: u64, cas: Option<u64>) -> Result<usize, StorageError> {
        self.push(key, |c| c.decr(key, delta, cas))
    }

    /// See [`Commands::add_to`].
    pub(crate) fn add_to(&mut self, key: &str, delta: u64) -> Result<usize, StorageError> {
        self.push(key, |c| c.add_to(key, delta))
    }

    /// See [`Commands::set`].
    pub(crate) fn set(&mut self, key: &str, value: &[u8], exptime: Exptime) -> Result<usize, StorageError> {
        self.push(key, |c| c.set(key, value, exptime))
    }

    /// See [`Commands::delete`].
    pub(crate) fn delete(&mut self, key: &str) -> Result<usize, StorageError> {
        self.push(key, |c| c.delete(key))
    }

    /// Whether nothing was added.
    pub(crate) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn submit(self) -> (Vec<Option<Pending>>, Vec<(usize, usize)>) {
        let pending = self
            .commands
            .into_iter()
            .zip(&self.servers.connections)
            .map(|(commands, connection)| {
                (commands.count > 0).then(|| connection.submit(commands.bytes, commands.count))
            })
            .collect();
        (pending, self.slots)
    }

    /// Sends every server its commands at once and waits for all replies.
    pub(crate) async fn send(self) -> Result<Replies, StorageError> {
        let (pending, slots) = self.submit();
        // Every server has its commands already; waiting on each in turn
        // takes as long as the slowest.
        let mut per_server = Vec::with_capacity(pending.len());
        for pending in pending {
            per_server.push(match pending {
                Some(pending) => pending.wait().await?,
                None => Vec::new(),
            });
        }
        Ok(Replies { per_server, slots })
    }

    /// Sends the commands without waiting for their replies (which the
    /// connection reads and drops): for writes nothing waits on.
    pub(crate) fn send_detached(self) {
        drop(self.submit());
    }
}

/// The replies of a pipeline.
#[derive(Debug)]
pub(crate) struct Replies {
    per_server: Vec<Vec<Reply>>,
    slots: Vec<(usize, usize)>,
}

impl Replies {
    /// The reply to the command added as `slot`.
    pub(crate) fn get(&self, slot: usize) -> Result<&Reply, StorageError> {
        self.slots
            .get(slot)
            .and_then(|&(server, index)| self.per_server.get(server)?.get(index))
            .ok_or_else(|| StorageError::new(StorageErrorKind::Protocol, NAME, "fewer replies than commands"))
    }
}
