//! Integration and property tests of `limiter-core`, in one test binary.
//!
//! Module index:
//!
//! - [`notation_props`]: the rate limit notation. Display parses back to the
//!   same limit; lists with any separator, white space and case parse back;
//!   any string parses or fails without panicking, with an error span on
//!   character boundaries; and strings Python's `limits` regex accepts are
//!   accepted exactly when they name a known granularity and a valid limit
//!   (the `regex` crate plays the Python regex).
//! - [`strategy_models`]: each strategy, run through `RateLimiter` on the
//!   memory storage with a manual clock, against a naive model written from
//!   the semantics of `limits`: same decisions and same remaining counts at
//!   every step, boundaries included.
//! - [`batch_modes`]: `Mode::AllOrNothing` changes nothing when it refuses and
//!   consumes every cost when it allows; `Mode::Sequential` with
//!   `stop_at_first_breach` leaves the items after the first refusal
//!   unevaluated and untouched.
//! - [`memory_bound`]: the memory storage never holds more keys than its
//!   bound, whatever the number of keys and shards.
//!
//! Property tests persist the failing cases they find next to their source,
//! as `tests/<module>.regressions` (see [`support::config`]); commit those
//! files, so that every later run tries the old failures first.

// `cfg(test)` (always true here) marks the modules as test code for Clippy,
// which then allows `unwrap`, `expect`, `panic` and indexing in them, as
// `clippy.toml` does in tests.
#[cfg(test)]
mod batch_modes;
#[cfg(test)]
mod memory_bound;
#[cfg(test)]
mod notation_props;
#[cfg(test)]
mod strategy_models;
#[cfg(test)]
mod support;
