//! The `limiter` command line: show, check and clear rate limits.
//!
//! The `limiter` binary works from the configuration alone: the TOML file
//! given with `--config` (or `$LIMITER_CONFIG`), then the `RATELIMIT_*`
//! environment over it, as [`Settings::load`](limiter::Settings::load)
//! reads them.
//!
//! | command | what |
//! |---|---|
//! | `config` | the effective configuration, the storage URI with its password hidden, and a live storage check |
//! | `limits [--key K] [--route R] [--watch]` | the limits as trees (meta, application, routes, groups); with `--key`, whether that client would pass each, and what remains |
//! | `check --key K [--route R] [--method M]` | whether client `K` would pass each limit now (nothing is counted) |
//! | `clear --key K [--route R] [--method M] [-y]` | forgets client `K`'s counters, after asking |
//! | `parse "<limits>"` | each limit of a string and its window in seconds, or the error pointing at the bad token |
//!
//! Every command takes `--json` for scripts; tables and trees are colored
//! on a terminal only (`--color`, `NO_COLOR`). Exit status: 0 done, 1 the
//! answer is no (`check`: a limit would refuse; `config`: the storage does
//! not answer; `clear`: not confirmed), 2 an error (a one-line cause on
//! standard error).
//!
//! A Rust program cannot be imported the way Flask imports an app, so the
//! binary alone knows only the configured limits (default, application and
//! meta limits); it counts default limits under the route name or path you
//! give with `--route`. To show an app's routes, mount the command line in
//! the app's own binary with [`run`]:
//!
//! ```no_run
//! # #[cfg(feature = "redis")] {
//! use limiter::engine::{Limiter, Route};
//! # struct Request;
//! # impl limiter::RequestInfo for Request {
//! #     fn method(&self) -> &str { "GET" }
//! #     fn route(&self) -> Option<&str> { None }
//! #     fn header(&self, _: &str) -> Option<&str> { None }
//! #     fn header_values(&self, _: &str) -> Vec<&str> { Vec::new() }
//! #     fn peer_addr(&self) -> Option<std::net::IpAddr> { None }
//! # }
//!
//! # async fn app() -> Result<std::process::ExitCode, limiter::ConfigError> {
//! let limiter = Limiter::<Request>::builder()
//!     .default_limits("200 per day; 50 per hour")
//!     .route(Route::new("slow").path("/slow").limit("1 per day"))
//!     .build()?;
//! // `myapp limiter limits --key 10.0.0.1` shows the app's routes.
//! if std::env::args().nth(1).as_deref() == Some("limiter") {
//!     return Ok(limiter_cli::run(&limiter, std::env::args_os().skip(1)).await);
//! }
//! // ... serve the app ...
//! # Ok(std::process::ExitCode::SUCCESS)
//! # }
//! # }
//! ```
//!
//! With the memory storage, each process has its own counters: `check` and
//! `clear` then see only the CLI's own (empty) memory. Use them against a
//! shared storage (Redis).

mod args;
mod config;
mod limits;
mod output;
mod parse;
mod session;

use std::ffi::OsString;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use limiter::RequestInfo;
use limiter::engine::Limiter;

use args::{Cli, Color, Command};
use output::Paint;
use session::{Io, Session};

/// Exit status: done.
pub const EXIT_OK: u8 = 0;
/// Exit status: the answer is no (a limit would refuse, the storage does
/// not answer, the clearing was not confirmed).
pub const EXIT_NO: u8 = 1;
/// Exit status: an error (bad arguments, configuration or limit string,
/// storage failure).
pub const EXIT_ERROR: u8 = 2;

/// Runs the command line against an app's limiter, on the process's
/// standard streams. `args` starts with the program name, as
/// [`std::env::args_os`] does.
pub async fn run<R, I, T>(limiter: &Limiter<R>, args: I) -> ExitCode
where
    R: RequestInfo + Send + Sync + 'static,
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    Tool::new(limiter).run(args).await
}

/// The command line mounted in an app, with what the app knows besides its
/// limiter.
#[derive(Debug)]
pub struct Tool<'a, R> {
    limiter: &'a Limiter<R>,
    storage_uri: Option<String>,
}

impl<'a, R: RequestInfo + Send + Sync + 'static> Tool<'a, R> {
    /// The command line for `limiter`.
    pub fn new(limiter: &'a Limiter<R>) -> Self {
        Tool { limiter, storage_uri: None }
    }

    /// The URI the app connected its storage with, for `config` to show
    /// (with the password hidden).
    #[must_use]
    pub fn storage_uri(mut self, uri: impl Into<String>) -> Self {
        self.storage_uri = Some(uri.into());
        self
    }

    /// Runs on the process's standard streams.
    pub async fn run<I, T>(self, args: I) -> ExitCode
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let terminal = std::io::stdout().is_terminal();
        let mut input = std::io::stdin().lock();
        let code = self.run_with(args, &mut std::io::stdout(), &mut std::io::stderr(), &mut input, terminal).await;
        ExitCode::from(code)
    }

    /// Runs with the streams given, and returns the exit status
    /// ([`EXIT_OK`], [`EXIT_NO`], [`EXIT_ERROR`]). `terminal` says whether
    /// `out` is a terminal (colors, screen clearing).
    pub async fn run_with<I, T>(
        self,
        args: I,
        out: &mut dyn Write,
        err: &mut dyn Write,
        input: &mut dyn BufRead,
        terminal: bool,
    ) -> u8
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let (cli, config_on_command_line) = match parse_args(args, out, err) {
            Ok(parsed) => parsed,
            Err(code) => return code,
        };
        // `LIMITER_CONFIG`, exported for the standalone tool, is no mistake
        // here: only a `--config` typed on this app's command line is.
        if config_on_command_line {
            return fail(err, "--config is for the standalone `limiter`: this app builds its limiter itself");
        }
        let session = Session {
            limiter: self.limiter,
            mounted: true,
            storage_uri: self.storage_uri,
            sources: None,
            unreachable: None,
        };
        let mut io = Io::new(out, err, input, &cli, terminal);
        session::execute(cli.command, &session, &mut io).await
    }
}

/// The standalone `limiter` binary: the limiter built from the settings
/// file and the environment, on the process's standard streams.
pub async fn run_standalone<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let terminal = std::io::stdout().is_terminal();
    let mut input = std::io::stdin().lock();
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let cli = match parse_args(args, &mut out, &mut err) {
        Ok((cli, _)) => cli,
        Err(code) => return ExitCode::from(code),
    };
    let mut io = Io::new(&mut out, &mut err, &mut input, &cli, terminal);
    if let Command::Parse { limits } = &cli.command {
        return ExitCode::from(parse::parse(limits, &mut io));
    }
    let loaded = match config::load(cli.config.as_deref()).await {
        Ok(loaded) => loaded,
        Err(e) => return ExitCode::from(io.error(&e)),
    };
    let session = Session {
        limiter: &loaded.limiter,
        mounted: false,
        storage_uri: loaded.storage_uri.clone(),
        sources: Some(&loaded.sources),
        unreachable: loaded.unreachable.clone(),
    };
    ExitCode::from(session::execute(cli.command, &session, &mut io).await)
}

/// The command line, and whether `--config` was given on it (rather than
/// by `LIMITER_CONFIG`).
fn parse_args<I, T>(args: I, out: &mut dyn Write, err: &mut dyn Write) -> Result<(Cli, bool), u8>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let parsed = Cli::command()
        .try_get_matches_from(args)
        .and_then(|matches| Ok((Cli::from_arg_matches(&matches)?, config_on_command_line(&matches))));
    parsed.map_err(|e| {
        let text = e.render().to_string();
        let _ = if e.use_stderr() { err.write_all(text.as_bytes()) } else { out.write_all(text.as_bytes()) };
        u8::try_from(e.exit_code()).unwrap_or(EXIT_ERROR)
    })
}

/// Whether `--config` was typed, before or after the subcommand (a global
/// argument lands in the subcommand's matches when given after it).
fn config_on_command_line(matches: &clap::ArgMatches) -> bool {
    let typed = |m: &clap::ArgMatches| m.value_source("config") == Some(clap::parser::ValueSource::CommandLine);
    typed(matches) || matches.subcommand().is_some_and(|(_, sub)| typed(sub))
}

fn fail(err: &mut dyn Write, message: &str) -> u8 {
    let _ = writeln!(err, "limiter: error: {message}");
    EXIT_ERROR
}

/// Whether to paint: on a terminal unless `NO_COLOR` is set, or as asked.
fn paint(color: Color, terminal: bool, json: bool) -> Paint {
    let on = match color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
    };
    Paint { on: on && !json }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--config` as the tests see it: read from `PATH` (always set) in
    /// place of `LIMITER_CONFIG`, which a test cannot set safely.
    fn config_typed(args: &[&str]) -> bool {
        let matches = Cli::command().mut_arg("config", |a| a.env("PATH")).try_get_matches_from(args).unwrap();
        assert!(Cli::from_arg_matches(&matches).unwrap().config.is_some(), "the variable fills --config");
        config_on_command_line(&matches)
    }

    #[test]
    fn a_config_from_the_environment_is_not_one_typed() {
        assert!(!config_typed(&["limiter", "parse", "1/day"]));
        assert!(config_typed(&["limiter", "--config", "x.toml", "parse", "1/day"]));
        assert!(config_typed(&["limiter", "parse", "1/day", "-c", "x.toml"]));
    }
}
