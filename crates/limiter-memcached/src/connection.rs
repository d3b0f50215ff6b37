//! One multiplexed connection per memcached server, kept by a background
//! task: callers queue pipelines of commands, the task writes them (several
//! at once when they queue up) while it reads the replies, in order, and
//! hands each pipeline its own. It connects on first use, reconnects after any failure
//! (a server restart), and gives up on a server that does not answer within
//! the call timeout, so no caller waits longer than that.
//!
//! Why not a client crate: the async memcached clients available
//! (`async-memcached`, `memcache-async`) own one connection each with no
//! reconnect or timeouts, and cannot pipeline different commands (`ma` on
//! one key, `mg` on another) in one write, which one round trip per request
//! needs. The meta protocol subset used here is small (see `protocol`).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use limiter_core::{StorageError, StorageErrorKind};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::NAME;
use crate::protocol::{Reply, parse_reply};
use crate::uri::Address;

/// How many queued pipelines one write may carry.
const MAX_COALESCED: usize = 64;

/// A failure, copied to every pipeline it ends.
#[derive(Clone, Debug)]
struct Failure {
    kind: StorageErrorKind,
    message: String,
}

impl Failure {
    fn new(kind: StorageErrorKind, message: String) -> Self {
        Failure { kind, message }
    }

    fn into_error(self) -> StorageError {
        StorageError::new(self.kind, NAME, self.message)
    }
}

type Answer = Result<Vec<Reply>, Failure>;

struct Request {
    bytes: Vec<u8>,
    replies: usize,
    respond: oneshot::Sender<Answer>,
}

/// Timeouts of a connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timeouts {
    pub(crate) connect: Duration,
    pub(crate) call: Duration,
}

/// The handle callers hold; cloning it shares the connection.
#[derive(Clone, Debug)]
pub(crate) struct Connection {
    queue: mpsc::UnboundedSender<Request>,
    address: std::sync::Arc<Address>,
    timeouts: Timeouts,
}

/// A pipeline queued on a connection, whose replies are awaited.
#[derive(Debug)]
pub(crate) struct Pending {
    answer: Option<oneshot::Receiver<Answer>>,
    budget: Duration,
}

impl Connection {
    /// Starts the connection's task (it connects on first use). Needs a
    /// Tokio runtime.
    pub(crate) fn spawn(address: Address, timeouts: Timeouts) -> Connection {
        let (queue, requests) = mpsc::unbounded_channel();
        let address = std::sync::Arc::new(address);
        tokio::spawn(run(std::sync::Arc::clone(&address), timeouts, requests));
        Connection { queue, address, timeouts }
    }

    /// Where the server listens.
    pub(crate) fn address(&self) -> &Address {
        &self.address
    }

    /// Queues `bytes`, which hold `replies` commands. The commands are on
    /// their way, in order after everything queued before, when this
    /// returns.
    pub(crate) fn submit(&self, bytes: Vec<u8>, replies: usize) -> Pending {
        let (respond, answer) = oneshot::channel();
        // A closed queue drops the request; the caller then sees the
        // dropped sender as an unavailable storage.
        let _ = self.queue.send(Request { bytes, replies, respond });
        // The task may have to connect before it writes, then the server
        // has the call timeout to answer.
        Pending { answer: Some(answer), budget: self.timeouts.connect + self.timeouts.call }
    }
}

impl Pending {
    /// The replies, one per command, in order.
    pub(crate) async fn wait(mut self) -> Result<Vec<Reply>, StorageError> {
        let Some(answer) = self.answer.take() else {
            return Err(StorageError::new(StorageErrorKind::Other, NAME, "replies awaited twice"));
        };
        match tokio::time::timeout(self.budget, answer).await {
            Ok(Ok(answer)) => answer.map_err(Failure::into_error),
            Ok(Err(_)) => Err(StorageError::new(StorageErrorKind::Unavailable, NAME, "the connection task stopped")),
            Err(_) => {
                Err(StorageError::new(StorageErrorKind::Timeout, NAME, format!("no answer within {:?}", self.budget)))
            }
        }
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A pipeline written and waiting for its replies.
struct InFlight {
    replies: usize,
    got: Vec<Reply>,
    respond: oneshot::Sender<Answer>,
    deadline: Instant,
}

/// An open connection and what it owes.
struct Link {
    io: Box<dyn Io>,
    /// Bytes queued for the server, of which `written` are sent.
    out: Vec<u8>,
    written: usize,
    /// Bytes received, not yet parsed.
    buf: BytesMut,
    scratch: Vec<u8>,
    in_flight: VecDeque<InFlight>,
}

impl Link {
    fn new(io: Box<dyn Io>) -> Link {
        Link {
            io,
            out: Vec::with_capacity(4096),
            written: 0,
            buf: BytesMut::with_capacity(16 * 1024),
            scratch: vec![0; 16 * 1024],
            in_flight: VecDeque::new(),
        }
    }

    /// Ends every pipeline in flight with `failure`.
    fn fail(self, failure: &Failure) {
        for pipeline in self.in_flight {
            let _ = pipeline.respond.send(Err(failure.clone()));
        }
    }

    /// Hands out every complete reply in the buffer.
    fn dispatch(&mut self) -> Result<(), Failure> {
        while let Some((used, reply)) =
            parse_reply(&self.buf).map_err(|e| Failure::new(StorageErrorKind::Protocol, e.0))?
        {
            self.buf.advance(used);
            let Some(front) = self.in_flight.front_mut() else {
                return Err(Failure::new(StorageErrorKind::Protocol, "a reply nobody asked for".to_owned()));
            };
            front.got.push(reply);
            if front.got.len() >= front.replies
                && let Some(done) = self.in_flight.pop_front()
            {
                let _ = done.respond.send(Ok(done.got));
            }
        }
        Ok(())
    }
}

async fn connect(address: &Address, timeout: Duration) -> Result<Box<dyn Io>, Failure> {
    let attempt = async {
        match address {
            Address::Tcp { host, port } => {
                let stream = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
                stream.set_nodelay(true)?;
                Ok::<Box<dyn Io>, std::io::Error>(Box::new(stream))
            }
            #[cfg(unix)]
            Address::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<Box<dyn Io>, std::io::Error>(Box::new(stream))
            }
            #[cfg(not(unix))]
            Address::Unix(_) => {
                Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "unix sockets need a unix system"))
            }
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(io)) => Ok(io),
        Ok(Err(e)) => Err(Failure::new(StorageErrorKind::Unavailable, format!("cannot connect to {address}: {e}"))),
        Err(_) => {
            Err(Failure::new(StorageErrorKind::Timeout, format!("connecting to {address} took over {timeout:?}")))
        }
    }
}

/// What happened on a link.
enum Event {
    /// Bytes were sent.
    Wrote(usize),
    /// Bytes arrived (they are in the link's buffer).
    Read,
    /// The connection is unusable.
    Broken(String),
}

/// Moves a link on: sends what is queued and receives what arrived, both
/// at once, so that a server that stops reading while its replies are
/// unread cannot block the connection. Never ready without a link.
fn progress(link: &mut Option<Link>) -> impl Future<Output = Event> + '_ {
    std::future::poll_fn(move |cx| {
        let Some(link) = link.as_mut() else { return Poll::Pending };
        if link.written < link.out.len() {
            let unsent = link.out.get(link.written..).unwrap_or_default();
            match Pin::new(&mut link.io).poll_write(cx, unsent) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Event::Broken("the connection takes no more bytes".to_owned()));
                }
                Poll::Ready(Ok(n)) => return Poll::Ready(Event::Wrote(n)),
                Poll::Ready(Err(e)) => return Poll::Ready(Event::Broken(format!("writing: {e}"))),
                Poll::Pending => {}
            }
        }
        let mut read = ReadBuf::new(&mut link.scratch);
        match Pin::new(&mut link.io).poll_read(cx, &mut read) {
            Poll::Ready(Ok(())) if read.filled().is_empty() => {
                Poll::Ready(Event::Broken("the server closed the connection".to_owned()))
            }
            Poll::Ready(Ok(())) => {
                link.buf.extend_from_slice(read.filled());
                Poll::Ready(Event::Read)
            }
            Poll::Ready(Err(e)) => Poll::Ready(Event::Broken(format!("reading: {e}"))),
            Poll::Pending => Poll::Pending,
        }
    })
}

async fn expire(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The connection's task: runs until every handle is dropped.
async fn run(address: std::sync::Arc<Address>, timeouts: Timeouts, mut requests: mpsc::UnboundedReceiver<Request>) {
    let mut link: Option<Link> = None;
    loop {
        let deadline = link.as_ref().and_then(|l| l.in_flight.front().map(|p| p.deadline));
        tokio::select! {
            request = requests.recv() => {
                let Some(first) = request else { return };
                let mut batch = vec![first];
                while batch.len() < MAX_COALESCED {
                    match requests.try_recv() {
                        Ok(more) => batch.push(more),
                        Err(_) => break,
                    }
                }
                if link.is_none() {
                    match connect(&address, timeouts.connect).await {
                        Ok(io) => link = Some(Link::new(io)),
                        Err(failure) => {
                            // Whoever queued meanwhile would wait on the same
                            // dead server: fail them now, retry on the next call.
                            while let Ok(more) = requests.try_recv() {
                                batch.push(more);
                            }
                            for request in batch {
                                let _ = request.respond.send(Err(failure.clone()));
                            }
                            continue;
                        }
                    }
                }
                if let Some(open) = link.as_mut() {
                    // The call timeout runs from here: a server that stops
                    // reading stalls the write, and that counts too.
                    let deadline = Instant::now() + timeouts.call;
                    for request in batch {
                        open.out.extend_from_slice(&request.bytes);
                        open.in_flight.push_back(InFlight {
                            replies: request.replies,
                            got: Vec::with_capacity(request.replies),
                            respond: request.respond,
                            deadline,
                        });
                    }
                }
            }
            event = progress(&mut link) => {
                let failure = match event {
                    Event::Wrote(n) => {
                        if let Some(open) = link.as_mut() {
                            open.written += n;
                            if open.written >= open.out.len() {
                                open.out.clear();
                                open.written = 0;
                            }
                        }
                        None
                    }
                    Event::Read => link.as_mut().and_then(|open| open.dispatch().err()),
                    Event::Broken(why) => Some(Failure::new(
                        StorageErrorKind::Unavailable,
                        format!("{address}: {why}; reconnecting on the next call"),
                    )),
                };
                if let Some(failure) = failure
                    && let Some(broken) = link.take()
                {
                    broken.fail(&failure);
                }
            }
            () = expire(deadline) => {
                if let Some(stalled) = link.take() {
                    stalled.fail(&Failure::new(
                        StorageErrorKind::Timeout,
                        format!("{address} did not answer within {:?}; reconnecting on the next call", timeouts.call),
                    ));
                }
            }
        }
    }
}

/// The keys starting with `prefix` on the server at `address`, listed with
/// `lru_crawler metadump all` on a connection of its own (memcached allows
/// nothing else on a connection while it dumps).
pub(crate) async fn metadump(address: &Address, timeouts: Timeouts, prefix: &str) -> Result<Vec<String>, StorageError> {
    // Crawling a large cache takes a while; each read may wait this long.
    let patience = timeouts.call.max(Duration::from_secs(5));
    let mut io = connect(address, timeouts.connect).await.map_err(Failure::into_error)?;
    let unavailable = |e: std::io::Error| {
        StorageError::new(StorageErrorKind::Unavailable, NAME, format!("listing the keys of {address}: {e}"))
    };
    let timeout = || StorageError::new(StorageErrorKind::Timeout, NAME, format!("listing the keys of {address}"));
    tokio::time::timeout(timeouts.call, io.write_all(b"lru_crawler metadump all\r\n"))
        .await
        .map_err(|_| timeout())?
        .map_err(unavailable)?;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut keys = Vec::new();
    loop {
        // Key lines end with a bare `\n`, `END` with `\r\n`.
        while let Some(end) = buf.iter().position(|&b| b == b'\n') {
            let line = buf.split_to(end + 1);
            let line = String::from_utf8_lossy(line.get(..end).unwrap_or_default());
            let line = line.trim_end_matches('\r');
            if line == "END" {
                return Ok(keys);
            }
            let Some(rest) = line.strip_prefix("key=") else {
                return Err(StorageError::new(
                    StorageErrorKind::Rejected,
                    NAME,
                    format!(
                        "{address} cannot list its keys for reset ({line}); \
                         run memcached 1.6 or later without -o no_lru_crawler"
                    ),
                ));
            };
            let encoded = rest.split(' ').next().unwrap_or_default();
            if let Ok(key) = String::from_utf8(percent_encoding::percent_decode_str(encoded).collect())
                && key.starts_with(prefix)
            {
                keys.push(key);
            }
        }
        let read = tokio::time::timeout(patience, io.read_buf(&mut buf)).await.map_err(|_| timeout())?;
        if read.map_err(unavailable)? == 0 {
            return Err(unavailable(std::io::ErrorKind::UnexpectedEof.into()));
        }
    }
}
