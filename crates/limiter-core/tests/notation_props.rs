//! Property tests of the rate limit notation, against the grammar of Python's
//! `limits` (reference §2.1) and the crate's documented differences.

use std::sync::LazyLock;

use limiter_core::{Granularity, MAX_AMOUNT, MAX_WINDOW_SECS, ParseError, RateLimit, parse, parse_many};
use proptest::prelude::*;
use proptest::sample::select;
use regex::Regex;

use crate::support::config;

// ---------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------

fn granularity() -> impl Strategy<Value = Granularity> {
    select(Granularity::ALL.to_vec())
}

fn amount() -> impl Strategy<Value = u64> {
    prop_oneof![0..=10u64, 0..=MAX_AMOUNT, Just(MAX_AMOUNT), MAX_AMOUNT - 10..=MAX_AMOUNT]
}

/// Any valid limit: amount up to `MAX_AMOUNT`, a window of 1 unit up to
/// `MAX_WINDOW_SECS`, any granularity.
fn valid_limit() -> impl Strategy<Value = RateLimit> {
    (granularity(), amount()).prop_flat_map(|(g, amount)| {
        let most = MAX_WINDOW_SECS / g.seconds();
        prop_oneof![1..=most.min(10), 1..=most, Just(most)]
            .prop_map(move |multiples| RateLimit::new(amount, multiples, g).expect("generated limits are valid"))
    })
}

/// White space as Python's `\s` and Rust's `trim_start` both see it: mostly
/// ASCII, sometimes Unicode. (Python's `\s` also matches U+001C..U+001F,
/// which Rust does not; see `white_space_is_pythons`.)
fn ws() -> impl Strategy<Value = String> {
    const ASCII: [char; 6] = [' ', '\t', '\n', '\r', '\x0b', '\x0c'];
    const UNICODE: [char; 10] = [
        '\u{85}', '\u{a0}', '\u{1680}', '\u{2000}', '\u{200a}', '\u{2028}', '\u{2029}', '\u{202f}', '\u{205f}',
        '\u{3000}',
    ];
    let one = prop_oneof![8 => select(ASCII.to_vec()), 1 => select(UNICODE.to_vec())];
    prop::collection::vec(one, 0..3).prop_map(String::from_iter)
}

/// `word` with the letters whose bit is set in `mask` in upper case.
fn recase(word: &str, mask: u64) -> String {
    word.chars().enumerate().map(|(i, c)| if mask >> (i % 64) & 1 == 1 { c.to_ascii_uppercase() } else { c }).collect()
}

/// One of the many spellings of `limit`: `/` or `per` in any case, the
/// multiples written or (when 1) left out, the granularity in any case,
/// singular or plural, and white space anywhere it may be.
fn spelled(limit: RateLimit) -> impl Strategy<Value = String> {
    (prop::array::uniform5(ws()), any::<bool>(), any::<u64>(), any::<bool>(), any::<u64>(), any::<bool>()).prop_map(
        move |(ws, slash, per_case, omit, name_case, plural)| {
            let [w0, w1, w2, w3, w4] = ws;
            let per = if slash { "/".to_owned() } else { recase("per", per_case) };
            let multiples = if omit && limit.multiples() == 1 { String::new() } else { limit.multiples().to_string() };
            let mut name = limit.granularity().name().to_owned();
            if plural {
                name.push('s');
            }
            let name = recase(&name, name_case);
            format!("{w0}{amount}{w1}{per}{w2}{multiples}{w3}{name}{w4}", amount = limit.amount())
        },
    )
}

fn separator() -> impl Strategy<Value = String> {
    (ws(), select(vec![';', ',', '|']), ws()).prop_map(|(a, sep, b)| format!("{a}{sep}{b}"))
}

/// Several valid limits, and one spelling of the list.
fn spelled_list() -> impl Strategy<Value = (Vec<RateLimit>, String)> {
    prop::collection::vec(valid_limit(), 1..6).prop_flat_map(|limits| {
        let pieces: Vec<_> = limits.iter().map(|&l| spelled(l)).collect();
        let seps = prop::collection::vec(separator(), limits.len() - 1);
        (Just(limits), pieces, seps).prop_map(|(limits, pieces, seps)| {
            let mut s = String::new();
            for (i, piece) in pieces.iter().enumerate() {
                if i > 0 {
                    s.push_str(&seps[i - 1]);
                }
                s.push_str(piece);
            }
            (limits, s)
        })
    })
}

/// Fragments that lead the parser into every branch, among them characters
/// that are tricky in UTF-8 or in case mapping: letters of several bytes,
/// combining marks, non-ASCII digits and white space, and letters whose case
/// mapping changes their length (`İ`, `ß`), or that fold to ASCII (`K`, the
/// Kelvin sign; `ſ`, the long s).
fn tricky_fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        select(vec![
            "0",
            "1",
            "10",
            "007",
            "9007199254740991",
            "9007199254740992",
            "18446744073709551615",
            "18446744073709551616",
            "99999999999999999999999999",
            "/",
            "per",
            "PER",
            "pér",
            "second",
            "seconds",
            "SECONDS",
            "minute",
            "hours",
            "Day",
            "months",
            "year",
            "sec",
            "s",
            "ſecond",
            "\u{212a}",
            "İ",
            "ß",
            "é",
            "e\u{301}",
            "١",
            "٣",
            "\u{ff11}",
            "\u{a0}",
            "\u{85}",
            "\u{2028}",
            "\u{3000}",
            "\u{1c}",
            "\u{feff}",
            "😀",
            "\u{10ffff}",
            ";",
            ",",
            "|",
            ":",
            "-",
            ".",
            " ",
            "\t",
            "\n",
        ])
        .prop_map(str::to_owned),
        any::<char>().prop_map(String::from),
    ]
}

fn tricky_string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        prop::collection::vec(tricky_fragment(), 0..16).prop_map(|v| v.concat()),
        // A valid list with something spliced in.
        (spelled_list(), tricky_fragment(), any::<prop::sample::Index>()).prop_map(|((_, s), frag, at)| {
            let bounds: Vec<usize> = s.char_indices().map(|(i, _)| i).chain([s.len()]).collect();
            let at = bounds[at.index(bounds.len())];
            format!("{}{frag}{}", &s[..at], &s[at..])
        }),
    ]
}

// ---------------------------------------------------------------------------
// Checks shared by several properties
// ---------------------------------------------------------------------------

/// An error must point inside its input, on character boundaries, and
/// format in both forms without panicking.
fn check_error(err: &ParseError, input: &str) -> Result<(), TestCaseError> {
    prop_assert_eq!(err.input(), input);
    let span = err.span();
    prop_assert!(span.start <= span.end, "span {:?} is reversed", span);
    prop_assert!(span.end <= input.len(), "span {:?} is past the end of {:?}", span, input);
    prop_assert!(
        input.is_char_boundary(span.start) && input.is_char_boundary(span.end),
        "span {:?} splits a character of {:?}",
        span,
        input
    );
    let plain = err.to_string();
    let alternate = format!("{err:#}");
    prop_assert!(alternate.starts_with(&plain));
    let debug = format!("{err:?}");
    prop_assert!(!debug.is_empty());
    Ok(())
}

/// What a successful parse must satisfy: every limit displays as a string
/// that parses back to it.
fn check_limits(limits: &[RateLimit]) -> Result<(), TestCaseError> {
    prop_assert!(!limits.is_empty());
    for limit in limits {
        let shown = limit.to_string();
        prop_assert_eq!(shown.parse::<RateLimit>(), Ok(*limit), "{}", shown);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The Python oracle
// ---------------------------------------------------------------------------

/// `limits`' single-limit expression, with the IGNORECASE flag.
const SINGLE: &str = r"\s*([0-9]+)\s*(/|\s*per\s*)\s*([0-9]+)?\s*([a-z]+)\s*";

/// What Python's `limits` accepts, and what this crate must therefore do
/// with the same string.
struct Oracle {
    /// `limits`' `EXPR`, with `(?:` where `limits` has `(:?` (see the
    /// crate docs: the stray ':' it lets through is refused on purpose).
    whole: Regex,
    single: Regex,
}

/// One limit as `limits` reads it, before this crate's stricter checks.
#[derive(Debug)]
struct PyLimit {
    /// `None` if the digits do not even fit 128 bits.
    amount: Option<u128>,
    multiples: Option<Option<u128>>,
    granularity: Option<Granularity>,
}

/// Built once: compiling the expressions takes longer than a test case.
static ORACLE: LazyLock<Oracle> = LazyLock::new(Oracle::new);

impl Oracle {
    fn new() -> Self {
        Oracle {
            whole: Regex::new(&format!("(?i)^{SINGLE}(?:[,;|]{{1}}{SINGLE})*$")).unwrap(),
            single: Regex::new(&format!("(?i)^{SINGLE}$")).unwrap(),
        }
    }

    /// `limits.parse_many`, stopping before it builds the items: `None` if
    /// the expression does not match.
    fn python(&self, s: &str) -> Option<Vec<PyLimit>> {
        if !self.whole.is_match(s) {
            return None;
        }
        let pieces = s.split([',', ';', '|']).map(|piece| {
            let caps = self.single.captures(piece).expect("each piece matches");
            let word = caps[4].to_ascii_lowercase();
            PyLimit {
                amount: caps[1].parse().ok(),
                multiples: caps.get(3).map(|m| m.as_str().parse().ok()),
                // Python: a case-insensitive match on the name or name + "s".
                granularity: Granularity::ALL
                    .into_iter()
                    .find(|g| word == g.name() || word == format!("{}s", g.name())),
            }
        });
        Some(pieces.collect())
    }

    /// What this crate must answer for a string `limits` accepts: the same
    /// limits, unless one of them has an unknown granularity (an error in
    /// `limits` too), zero multiples, too large an amount, or too long a
    /// window (errors here, by design).
    fn expected(limits: &[PyLimit]) -> Option<Vec<RateLimit>> {
        limits
            .iter()
            .map(|l| {
                let g = l.granularity?;
                let amount = u64::try_from(l.amount?).ok()?;
                let multiples = match l.multiples {
                    None => 1,
                    Some(m) => u64::try_from(m?).ok()?,
                };
                if amount > MAX_AMOUNT || multiples == 0 || multiples.checked_mul(g.seconds())? > MAX_WINDOW_SECS {
                    return None;
                }
                Some(RateLimit::new(amount, multiples, g).unwrap())
            })
            .collect()
    }
}

fn digits() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (0..=20u64).prop_map(|n| n.to_string()),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => (0..=MAX_AMOUNT).prop_map(|n| n.to_string()),
        1 => select(vec![
            "0",
            "00",
            "007",
            "0000000000000000000000000001",
            "100",
            "101",
            "1200",
            "1201",
            "36000",
            "36001",
            "864000",
            "864001",
            "51840000",
            "51840001",
            "3110400000",
            "3110400001",
            "4294967295",
            "4294967296",
            "9007199254740991",
            "9007199254740992",
            "18446744073709551615",
            "18446744073709551616",
            "340282366920938463463374607431768211456",
        ])
        .prop_map(str::to_owned),
        1 => "[0-9]{1,40}",
    ]
}

/// Words `[a-z]+` (any case): granularities, near misses, and noise.
fn word() -> impl Strategy<Value = String> {
    let known: Vec<String> =
        Granularity::ALL.iter().flat_map(|g| [g.name().to_owned(), format!("{}s", g.name())]).collect();
    let near = vec![
        "sec",
        "secs",
        "s",
        "min",
        "mins",
        "hr",
        "hrs",
        "secondss",
        "minutess",
        "dayss",
        "fortnight",
        "week",
        "weeks",
        "daily",
        "per",
        "persecond",
        "seconde",
    ];
    prop_oneof![
        8 => (select(known), any::<u64>()).prop_map(|(w, m)| recase(&w, m)),
        1 => (select(near), any::<u64>()).prop_map(|(w, m)| recase(w, m)),
        1 => "[a-zA-Z]{1,10}",
    ]
}

/// One piece that `SINGLE` matches.
fn python_piece() -> impl Strategy<Value = String> {
    (
        prop::array::uniform6(ws()),
        digits(),
        prop_oneof![Just("/".to_owned()), any::<u64>().prop_map(|m| recase("per", m))],
        prop::option::weighted(0.5, digits()),
        word(),
    )
        .prop_map(|(ws, amount, per, multiples, word)| {
            let [w0, w1, w2, w3, w4, w5] = ws;
            // `\s*per\s*` may carry white space of its own.
            let per = if per == "/" { per } else { format!("{w2}{per}{w2}") };
            let multiples = multiples.unwrap_or_default();
            format!("{w0}{amount}{w1}{per}{w3}{multiples}{w4}{word}{w5}")
        })
}

/// A string that `limits`' `EXPR` matches (without the ':' quirk).
fn python_string() -> impl Strategy<Value = String> {
    prop::collection::vec((python_piece(), select(vec![';', ',', '|'])), 1..5).prop_map(|pieces| {
        let mut s = String::new();
        for (i, (piece, sep)) in pieces.iter().enumerate() {
            if i > 0 {
                s.push(*sep);
            }
            s.push_str(piece);
        }
        s
    })
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(512))]

    /// `Display` is the canonical notation: it parses back to the same limit.
    #[test]
    fn display_parses_back(limit in valid_limit()) {
        let shown = limit.to_string();
        prop_assert_eq!(shown.parse::<RateLimit>(), Ok(limit));
        prop_assert_eq!(parse(&shown), Ok(limit));
        prop_assert_eq!(parse_many(&shown), Ok(vec![limit]));
    }

    /// Any separator, white space, case and plural gives back the same list.
    #[test]
    fn lists_parse_back_whatever_the_spelling((limits, s) in spelled_list()) {
        prop_assert_eq!(parse_many(&s), Ok(limits.clone()), "{:?}", s);
        prop_assert_eq!(parse(&s), Ok(limits[0]), "{:?}", s);
        if limits.len() == 1 {
            prop_assert_eq!(s.parse::<RateLimit>(), Ok(limits[0]), "{:?}", s);
        } else {
            prop_assert!(s.parse::<RateLimit>().is_err(), "{:?}", s);
        }
    }
}

proptest! {
    #![proptest_config(config(2048))]

    /// Any string: no panic; an error points at a valid range of the input
    /// and formats; a success round-trips; `parse`, `parse_many` and
    /// `from_str` agree with each other.
    #[test]
    fn any_string_parses_or_fails_cleanly(s in tricky_string()) {
        let many = parse_many(&s);
        match &many {
            Ok(limits) => check_limits(limits)?,
            Err(err) => check_error(err, &s)?,
        }
        match parse(&s) {
            Ok(first) => prop_assert_eq!(Some(&first), many.as_ref().ok().and_then(|l| l.first())),
            Err(err) => {
                prop_assert!(many.is_err());
                check_error(&err, &s)?;
            }
        }
        match s.parse::<RateLimit>() {
            Ok(one) => prop_assert_eq!(many, Ok(vec![one])),
            Err(err) => {
                prop_assert!(!matches!(&many, Ok(l) if l.len() == 1), "{:?}", many);
                check_error(&err, &s)?;
            }
        }
    }
}

proptest! {
    #![proptest_config(config(2048))]

    /// Strings Python's `limits` accepts (its regex, then its granularity
    /// lookup) are accepted here exactly when every limit is valid by this
    /// crate's stricter rules, and mean the same limits.
    #[test]
    fn agrees_with_the_python_grammar(s in python_string()) {
        let py = ORACLE.python(&s);
        prop_assert!(py.is_some(), "the generator made a string limits rejects: {:?}", s);
        let expected = Oracle::expected(&py.unwrap());
        let got = parse_many(&s);
        match (&expected, &got) {
            (Some(want), Ok(got)) => prop_assert_eq!(want, got, "{:?}", s),
            (None, Err(err)) => check_error(err, &s)?,
            _ => prop_assert!(false, "{:?}: expected {:?}, got {:?}", s, expected, got),
        }
    }
}

/// Python's `\s` (`str.isspace`) also matches the information separators
/// U+001C to U+001F, which are not Unicode `White_Space`: `limits` 5.8.0
/// parses `"10/second\x1c"` and `"\x1f10/second"` as `10 per 1 second`.
#[test]
fn white_space_is_pythons() {
    let ten = vec![RateLimit::new(10, 1, Granularity::Second).unwrap()];
    for s in ["10/second\x1c", "\x1f10/second", "10\x1d/\x1esecond"] {
        assert_eq!(parse_many(s), Ok(ten.clone()), "{s:?}");
    }
}

/// The oracle itself matches `limits` on the examples of reference §2.1.
#[test]
fn oracle_matches_the_reference_examples() {
    let oracle = &*ORACLE;
    for ok in [
        "10/minute",
        "10 per minute",
        "10per minute",
        "10perminute",
        "10 PER HOUR",
        "10/Second",
        "  10 / 2   hours  ",
        "10 /second",
        "1/2 seconds",
        "5/2 seconds;10/hour;100/day;2000 per year",
        "100/day, 500/7 days",
        "1/second|2/minute",
        "10/second\n",
        "0/second",
    ] {
        let py = oracle.python(ok).unwrap_or_else(|| panic!("{ok:?}"));
        let want = Oracle::expected(&py).unwrap_or_else(|| panic!("{ok:?}"));
        assert_eq!(parse_many(ok), Ok(want), "{ok:?}");
    }
    // Matched by the expression, refused for the granularity, in both.
    for unknown in ["10/secs", "2/sec"] {
        let py = oracle.python(unknown).unwrap();
        assert!(Oracle::expected(&py).is_none(), "{unknown:?}");
        assert!(parse_many(unknown).is_err(), "{unknown:?}");
    }
    // Matched by the expression, refused here on purpose.
    let py = oracle.python("10/0 seconds").unwrap();
    assert!(Oracle::expected(&py).is_none());
    for rejected in [
        "1/ 2",
        "10/second;",
        "1/second,,2/minute",
        "10/second 20/minute",
        "-1/second",
        "1.5/second",
        "10",
        "10 per",
        "١/second",
    ] {
        assert!(oracle.python(rejected).is_none(), "{rejected:?}");
        assert!(parse_many(rejected).is_err(), "{rejected:?}");
    }
}
