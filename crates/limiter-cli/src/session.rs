//! What every command works with: the limiter, where its settings came
//! from, and the output streams.

use std::io::{BufRead, Write};

use limiter::RequestInfo;
use limiter::engine::Limiter;

use crate::args::{Cli, Command};
use crate::config::Sources;
use crate::output::Paint;
use crate::{EXIT_ERROR, config, limits, parse};

/// The limiter the commands look at.
pub(crate) struct Session<'a, R> {
    pub(crate) limiter: &'a Limiter<R>,
    /// Mounted in an app (it knows the routes), or the standalone binary.
    pub(crate) mounted: bool,
    /// The storage URI, if known, for `config`.
    pub(crate) storage_uri: Option<String>,
    /// The standalone binary's settings file and environment.
    pub(crate) sources: Option<&'a Sources>,
    /// Why the configured storage could not be connected, if it could not.
    pub(crate) unreachable: Option<String>,
}

impl<R: RequestInfo + Send + Sync + 'static> Session<'_, R> {
    /// An error if the storage could not be connected.
    pub(crate) fn reachable(&self) -> Result<(), String> {
        match &self.unreachable {
            Some(why) => Err(why.clone()),
            None => Ok(()),
        }
    }
}

/// The streams, and how to write on them.
pub(crate) struct Io<'w> {
    pub(crate) out: &'w mut dyn Write,
    pub(crate) err: &'w mut dyn Write,
    pub(crate) input: &'w mut dyn BufRead,
    pub(crate) paint: Paint,
    pub(crate) json: bool,
    pub(crate) terminal: bool,
}

impl<'w> Io<'w> {
    pub(crate) fn new(
        out: &'w mut dyn Write,
        err: &'w mut dyn Write,
        input: &'w mut dyn BufRead,
        cli: &Cli,
        terminal: bool,
    ) -> Self {
        let paint = crate::paint(cli.color, terminal, cli.json);
        Io { out, err, input, paint, json: cli.json, terminal }
    }

    /// Writes `text` on standard output.
    pub(crate) fn print(&mut self, text: &str) -> Result<(), String> {
        self.out.write_all(text.as_bytes()).and_then(|()| self.out.flush()).map_err(|e| format!("cannot write: {e}"))
    }

    /// Writes a JSON document on one line.
    pub(crate) fn print_json(&mut self, value: &serde_json::Value) -> Result<(), String> {
        self.print(&format!("{value}\n"))
    }

    /// Reports an error in one line; returns the exit status.
    pub(crate) fn error(&mut self, message: &str) -> u8 {
        let one_line = message.lines().next().unwrap_or_default();
        let _ = writeln!(self.err, "limiter: error: {one_line}");
        EXIT_ERROR
    }
}

/// Runs one command.
pub(crate) async fn execute<R: RequestInfo + Send + Sync + 'static>(
    command: Command,
    session: &Session<'_, R>,
    io: &mut Io<'_>,
) -> u8 {
    let result = match command {
        Command::Parse { limits } => return parse::parse(&limits, io),
        Command::Config => config::show(session, io).await,
        Command::Limits(args) => limits::limits(session, io, &args).await,
        Command::Check(target) => limits::check(session, io, &target).await,
        Command::Clear(args) => limits::clear(session, io, &args).await,
    };
    result.unwrap_or_else(|e| io.error(&e))
}
