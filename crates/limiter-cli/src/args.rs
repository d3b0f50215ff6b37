//! The command line, as clap reads it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Show, check and clear rate limits.
#[derive(Debug, Parser)]
#[command(name = "limiter", version, about, long_about = None)]
pub(crate) struct Cli {
    /// The settings file (TOML, Flask-Limiter's keys); `RATELIMIT_*`
    /// variables override it.
    #[arg(long, short = 'c', global = true, env = "LIMITER_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// JSON for scripts instead of tables and trees.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// When to color the output.
    #[arg(long, global = true, value_enum, default_value_t = Color::Auto, value_name = "WHEN")]
    pub(crate) color: Color,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// When to color the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Color {
    /// On a terminal, unless `NO_COLOR` is set.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// The effective configuration (file, then `RATELIMIT_*` environment),
    /// and whether the storage answers. Exit status 1 if it does not.
    Config,
    /// The limits as trees: meta, application, routes and groups, with
    /// their methods and exemptions.
    Limits(LimitsArgs),
    /// Whether a client would pass each limit, and how much remains.
    /// Exit status 1 if an enforced limit would refuse it.
    Check(Target),
    /// Forgets a client's counters (asks first unless `-y`).
    Clear(ClearArgs),
    /// Explains a rate limit string: each limit and its window. Exit
    /// status 2 if it does not parse.
    Parse {
        /// The limits, e.g. "200 per day; 50/hour".
        limits: String,
    },
}

/// Whose counters, on which route.
#[derive(Debug, Args)]
pub(crate) struct Target {
    /// The client key, as the limiter's key function returns it (e.g. the
    /// client's IP address); the key prefix is added as the limiter adds it.
    #[arg(long, short = 'k')]
    pub(crate) key: String,
    /// A route's name, or a path pattern (routes the limiter was not told
    /// about are counted under their pattern). Without it: every known
    /// route, and the application and meta limits.
    #[arg(long, short = 'r')]
    pub(crate) route: Option<String>,
    /// The request method, for limits on some methods or counted per
    /// method (`check`: GET by default; `clear`: every method by default).
    #[arg(long, short = 'm')]
    pub(crate) method: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct LimitsArgs {
    /// Also show, for each limit, whether this client would pass and how
    /// much remains.
    #[arg(long, short = 'k')]
    pub(crate) key: Option<String>,
    /// Only this route (a name or a path pattern).
    #[arg(long, short = 'r')]
    pub(crate) route: Option<String>,
    /// The request method, with `--key`.
    #[arg(long, short = 'm', default_value = "GET")]
    pub(crate) method: String,
    /// Refresh the view until interrupted.
    #[arg(long, short = 'w')]
    pub(crate) watch: bool,
    /// Seconds between refreshes, with `--watch`.
    #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
    pub(crate) interval: f64,
    /// Stop after this many views, with `--watch`.
    #[arg(long, value_name = "N")]
    pub(crate) count: Option<u64>,
}

#[derive(Debug, Args)]
pub(crate) struct ClearArgs {
    #[command(flatten)]
    pub(crate) target: Target,
    /// Clear without asking.
    #[arg(long, short = 'y')]
    pub(crate) yes: bool,
}
