//! What a storage is asked (a [`Batch`] of limits for one request) and what it
//! answers (an [`Outcome`] with everything the response headers need).

use smallvec::SmallVec;

use crate::clock::Timestamp;
use crate::limit::{DEFAULT_NAMESPACE, RateLimit};

/// Whose counter a limit is: the namespace and identifiers of the storage key
/// (`LIMITER/<identifiers…>/…`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key<'a> {
    namespace: &'a str,
    identifiers: &'a [&'a str],
}

impl<'a> Key<'a> {
    /// A key in the default `LIMITER` namespace, as `limits` builds them.
    pub const fn new(identifiers: &'a [&'a str]) -> Self {
        Key { namespace: DEFAULT_NAMESPACE, identifiers }
    }

    /// A key in another namespace.
    pub const fn with_namespace(namespace: &'a str, identifiers: &'a [&'a str]) -> Self {
        Key { namespace, identifiers }
    }

    /// The namespace (`LIMITER` unless changed).
    pub const fn namespace(&self) -> &'a str {
        self.namespace
    }

    /// The identifiers, in order.
    pub const fn identifiers(&self) -> &'a [&'a str] {
        self.identifiers
    }

    /// The full storage key for `limit`, as `limits` writes it.
    pub fn storage_key(&self, limit: &RateLimit) -> String {
        limit.key_for_namespace(self.namespace, self.identifiers)
    }
}

/// What to do with one item of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Consume the cost if it fits (`limits`' `hit`).
    Hit,
    /// Only report whether the cost would fit (`limits`' `test`): for limits
    /// deducted after the response, and meta limits checked before the others.
    Peek,
}

/// One limit to decide for a request: which limit, for whom, at what cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Item<'a> {
    /// The limit.
    pub limit: RateLimit,
    /// Whose counter.
    pub key: Key<'a>,
    /// How much this request consumes (1 for most requests).
    pub cost: u64,
    /// Consume, or only test.
    pub action: Action,
}

impl<'a> Item<'a> {
    /// An item to hit, of cost 1.
    pub const fn new(limit: RateLimit, key: Key<'a>) -> Self {
        Item { limit, key, cost: 1, action: Action::Hit }
    }

    /// The same item with another cost.
    #[must_use]
    pub const fn with_cost(mut self, cost: u64) -> Self {
        self.cost = cost;
        self
    }

    /// The same item, only tested: it takes part in the decision (a refusal
    /// refuses the batch) but consumes nothing.
    #[must_use]
    pub const fn peek(mut self) -> Self {
        self.action = Action::Peek;
        self
    }
}

/// How the items of a batch are decided. Items marked [`Action::Peek`] are
/// tested in their place in every mode, and never consume.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mode {
    /// Flask-Limiter's order: hit each item in turn; earlier items stay
    /// consumed when a later one refuses. With `stop_at_first_breach`
    /// (Flask-Limiter's default) the items after the first refusal are not
    /// evaluated at all. Each item is decided atomically; the batch as a
    /// whole need not be (another request may be decided between two of
    /// its items, as between Flask-Limiter's calls one limit at a time).
    Sequential {
        /// Stop at the first refused item.
        stop_at_first_breach: bool,
    },
    /// Consume every item only if every item allows it; otherwise consume
    /// nothing. Decided atomically: no other request sees a partial result.
    AllOrNothing,
    /// Consume nothing: report whether each item would pass (`limits`'
    /// `test`) and its current window statistics, as if every item were
    /// marked [`Action::Peek`].
    Peek,
}

/// All the limits that apply to one request, decided in one storage call.
#[derive(Clone, Copy, Debug)]
pub struct Batch<'a> {
    /// The limits, in evaluation order.
    pub items: &'a [Item<'a>],
    /// How to decide them.
    pub mode: Mode,
    /// The time of the decision, from the limiter's clock. Storages that keep
    /// time on the server may use their own clock instead.
    pub now: Timestamp,
}

/// The state of one limit after a decision: whether it passed, and what the
/// rate-limit headers show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LimitState {
    /// Whether this limit allowed the request's cost.
    pub allowed: bool,
    /// Hits of cost 1 still allowed in the current window, after this
    /// request's deduction (`X-RateLimit-Remaining`).
    pub remaining: u64,
    /// When the window resets or, for strategies without one, when the
    /// remaining count next grows (`X-RateLimit-Reset`; `limits`' `reset_time`).
    pub reset_at: Timestamp,
    /// For a refusal: the earliest time the same cost could pass
    /// (`Retry-After`). `None` when allowed, or when the cost exceeds the
    /// amount and can never pass.
    pub retry_at: Option<Timestamp>,
}

impl LimitState {
    /// An allowing state.
    pub const fn allowed(remaining: u64, reset_at: Timestamp) -> Self {
        LimitState { allowed: true, remaining, reset_at, retry_at: None }
    }

    /// A refusing state; `retry_at` is `None` if the cost can never pass.
    pub const fn limited(remaining: u64, reset_at: Timestamp, retry_at: Option<Timestamp>) -> Self {
        LimitState { allowed: false, remaining, reset_at, retry_at }
    }

    /// The window statistics alone.
    pub const fn stats(&self) -> WindowStats {
        WindowStats { remaining: self.remaining, reset_at: self.reset_at }
    }
}

/// `limits`' `WindowStats`: what remains and when the window resets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct WindowStats {
    /// Hits of cost 1 still allowed.
    pub remaining: u64,
    /// When the window resets (see [`LimitState::reset_at`]).
    pub reset_at: Timestamp,
}

/// A storage's answer to a [`Batch`]: one entry per item, in order.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Outcome {
    /// Three inline: an outcome of at most 128 bytes moves without a call to
    /// `memcpy` (a request rarely has more limits; more go on the heap).
    states: SmallVec<[Option<LimitState>; 3]>,
}

impl Outcome {
    /// An empty outcome with room for `n` items.
    pub fn with_capacity(n: usize) -> Self {
        Outcome { states: SmallVec::with_capacity(n) }
    }

    /// Appends the state of the next item; `None` if it was not evaluated
    /// (after the first breach in [`Mode::Sequential`]).
    pub fn push(&mut self, state: Option<LimitState>) {
        self.states.push(state);
    }

    /// Whether the request may proceed: every evaluated item allowed it.
    pub fn allowed(&self) -> bool {
        self.states.iter().flatten().all(|s| s.allowed)
    }

    /// Whether each of a batch's `items` was evaluated and allowed.
    pub(crate) fn allows_all(&self, items: usize) -> bool {
        self.states.len() == items && self.states.iter().all(|s| s.is_some_and(|s| s.allowed))
    }

    /// The state of each item, in batch order; `None` for items not evaluated.
    pub fn states(&self) -> &[Option<LimitState>] {
        &self.states
    }

    /// The state of item `index`, if it exists and was evaluated.
    pub fn get(&self, index: usize) -> Option<&LimitState> {
        self.states.get(index).and_then(Option::as_ref)
    }

    /// The latest `retry_at` among refused items: when all of them could
    /// pass; `None` if none was refused, or if one never can (its cost is
    /// above its amount).
    pub fn retry_at(&self) -> Option<Timestamp> {
        let refused = self.states.iter().flatten().filter(|s| !s.allowed);
        refused.map(|s| s.retry_at).collect::<Option<Vec<Timestamp>>>()?.into_iter().max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_at_is_when_every_refused_item_passes_or_never() {
        let at = |s| Some(Timestamp::from_secs(s));
        let outcome = |states: &[Option<LimitState>]| {
            let mut o = Outcome::with_capacity(states.len());
            states.iter().for_each(|s| o.push(*s));
            o
        };
        let passing = LimitState::allowed(1, Timestamp::from_secs(9));
        let soon = LimitState::limited(0, Timestamp::from_secs(5), at(5));
        let later = LimitState::limited(0, Timestamp::from_secs(7), at(7));
        let never = LimitState::limited(0, Timestamp::from_secs(7), None);
        assert_eq!(outcome(&[Some(passing), Some(soon), None, Some(later)]).retry_at(), at(7));
        assert_eq!(outcome(&[Some(never), Some(later)]).retry_at(), None, "one item can never pass");
        assert_eq!(outcome(&[Some(passing)]).retry_at(), None, "nothing refused");
    }
}
