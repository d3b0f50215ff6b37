//! How a batch's [`Mode`] is carried out without server-side scripts.
//!
//! Every hit item is incremented in the first round trip, whatever the
//! others answer, and each increment decides its own item (the counter after
//! it includes every concurrent hit, so no limit can over-admit). What the
//! mode says must not stay consumed is then decremented again, in a second
//! round trip that only refused requests pay: memcached has no transaction
//! across keys, so a concurrent request may briefly see the undone amount,
//! and be refused where a script-based storage would have admitted it
//! (never the other way round).

use limiter_core::Mode;

/// What one item's first round trip showed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Seen {
    /// Whether the item's limit allows its cost.
    pub(crate) allowed: bool,
    /// Whether the item incremented its counter.
    pub(crate) consumed: bool,
}

/// For each item: whether it is reported, and whether its increment must
/// be undone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) reported: Vec<bool>,
    pub(crate) undo: Vec<bool>,
}

/// Whether an item is allowed, from the count the server holds: a hit's
/// count already includes it (and every concurrent hit); a test adds its
/// cost. Saturating: another client may have left a count near `u64::MAX`.
pub(crate) fn allows(hit: bool, count: u64, cost: u64, amount: u64) -> bool {
    if hit { count <= amount } else { cost <= amount && count.saturating_add(cost) <= amount }
}

/// Whether a batch in `mode` increments its hit items (every mode but
/// [`Mode::Peek`]).
pub(crate) fn consumes(mode: Mode) -> bool {
    matches!(mode, Mode::Sequential { .. } | Mode::AllOrNothing)
}

/// Applies `mode` to what the items showed. `undo_refused_hits`: whether a
/// refused hit gives back its increment (the sliding window counter), or
/// stays counted as `limits`' fixed window counts it.
pub(crate) fn plan(mode: Mode, seen: &[Seen], undo_refused_hits: bool) -> Plan {
    let first_refusal = seen.iter().position(|s| !s.allowed);
    let (reported, undo) = match mode {
        Mode::Sequential { stop_at_first_breach } => seen
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let evaluated = !stop_at_first_breach || first_refusal.is_none_or(|stop| i <= stop);
                let undo = s.consumed && (!evaluated || (!s.allowed && undo_refused_hits));
                (evaluated, undo)
            })
            .unzip(),
        Mode::AllOrNothing => seen.iter().map(|s| (true, s.consumed && first_refusal.is_some())).unzip(),
        _ => seen.iter().map(|s| (true, s.consumed)).unzip(),
    };
    Plan { reported, undo }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASS: Seen = Seen { allowed: true, consumed: true };
    const FAIL: Seen = Seen { allowed: false, consumed: true };
    const PEEK_PASS: Seen = Seen { allowed: true, consumed: false };

    #[test]
    fn sequential_stops_at_the_first_breach() {
        let plan = plan(Mode::Sequential { stop_at_first_breach: true }, &[PASS, FAIL, PASS, PEEK_PASS], false);
        assert_eq!(plan.reported, [true, true, false, false]);
        assert_eq!(plan.undo, [false, false, true, false], "the fixed window keeps the refused hit");
        let sliding = super::plan(Mode::Sequential { stop_at_first_breach: true }, &[PASS, FAIL, PASS], true);
        assert_eq!(sliding.undo, [false, true, true], "the sliding window gives it back");
    }

    #[test]
    fn sequential_without_stop_evaluates_everything() {
        let plan = plan(Mode::Sequential { stop_at_first_breach: false }, &[FAIL, PASS], true);
        assert_eq!(plan.reported, [true, true]);
        assert_eq!(plan.undo, [true, false]);
    }

    #[test]
    fn all_or_nothing_undoes_everything_on_a_refusal() {
        let refused = plan(Mode::AllOrNothing, &[PASS, PEEK_PASS, FAIL], false);
        assert_eq!(refused.reported, [true, true, true]);
        assert_eq!(refused.undo, [true, false, true]);
        let passed = plan(Mode::AllOrNothing, &[PASS, PASS], false);
        assert_eq!(passed.undo, [false, false]);
    }
}
