//! The rate limit notation of Python's `limits`: `"10 per minute"`, `"5/2 seconds; 100/day"`.
//!
//! `limits` parses with a regular expression and can only say "couldn't parse".
//! This is a small hand-written scanner instead, so that an error can point at
//! the offending token and say what was expected there.

use std::fmt;
use std::ops::Range;

use crate::limit::{Granularity, LimitError, RateLimit};

/// What went wrong in a rate limit string.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// The string is empty or only white space.
    Empty,
    /// A number of hits was expected (`"-1/second"`, `"per minute"`).
    ExpectedAmount,
    /// The number is too large for a limit.
    NumberTooLarge,
    /// `/` or `per` was expected after the amount (`"10"`, `"1.5/second"`).
    ExpectedPer,
    /// A granularity was expected (`"10 per"`, `"1/ 2"`).
    ExpectedGranularity,
    /// A word that is not a granularity (`"10 per fortnight"`, `"2/sec"`).
    UnknownGranularity(String),
    /// Something other than a separator or the end followed a limit
    /// (`"10/second 20/minute"`, `"1/second:;2/minute"`).
    ExpectedSeparator,
    /// A separator with no limit after it (`"10/second;"`, `"1/second,,2/minute"`).
    ExpectedLimitAfterSeparator,
    /// Well-formed, but not a valid limit (zero multiples, window too long, ...).
    Invalid(LimitError),
    /// [`str::parse`] found more than one limit; use [`parse_many`].
    MoreThanOne,
}

/// A rate limit string that could not be parsed.
///
/// [`Display`](fmt::Display) quotes the input, names the offending token and
/// its position, and says what was expected; the alternate form (`{:#}`) adds
/// the input with a caret line under the offending token.
///
/// ```
/// let err = limiter_core::parse_many("10 per fortnight").unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "invalid rate limit \"10 per fortnight\": unknown granularity 'fortnight' at column 8, \
///      expected second, minute, hour, day, month or year (singular or plural)"
/// );
/// assert_eq!(format!("{err:#}").lines().nth(2), Some("       ^^^^^^^^^"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    input: String,
    span: Range<usize>,
    kind: ParseErrorKind,
}

impl ParseError {
    /// What went wrong.
    pub fn kind(&self) -> &ParseErrorKind {
        &self.kind
    }

    /// The byte range of the offending token in [`input`](Self::input); empty
    /// when something is missing at that position.
    pub fn span(&self) -> Range<usize> {
        self.span.clone()
    }

    /// The string that was parsed.
    pub fn input(&self) -> &str {
        &self.input
    }

    fn column(&self) -> usize {
        self.input.get(..self.span.start).map_or(0, |before| before.chars().count()) + 1
    }

    fn token(&self) -> &str {
        self.input.get(self.span.clone()).unwrap_or("")
    }
}

const EXPECTED_GRANULARITY: &str = "second, minute, hour, day, month or year (singular or plural)";

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid rate limit {:?}: ", self.input)?;
        let col = self.column();
        let found = match self.token() {
            "" => "the end".to_owned(),
            token => format!("'{token}'"),
        };
        match &self.kind {
            ParseErrorKind::Empty => {
                write!(f, "the string is empty, expected e.g. '10 per minute'")
            }
            ParseErrorKind::ExpectedAmount => {
                write!(f, "found {found} at column {col}, expected a whole number of hits, e.g. '10 per minute'")
            }
            ParseErrorKind::NumberTooLarge => {
                write!(f, "number {found} at column {col} is too large")
            }
            ParseErrorKind::ExpectedPer => {
                write!(f, "found {found} at column {col}, expected '/' or 'per' after the number of hits")
            }
            ParseErrorKind::ExpectedGranularity => {
                write!(f, "found {found} at column {col}, expected {EXPECTED_GRANULARITY}")
            }
            ParseErrorKind::UnknownGranularity(word) => {
                write!(f, "unknown granularity '{word}' at column {col}, expected {EXPECTED_GRANULARITY}")
            }
            ParseErrorKind::ExpectedSeparator => {
                write!(f, "found {found} at column {col}, expected the end or ';', ',' or '|' before the next limit")
            }
            ParseErrorKind::ExpectedLimitAfterSeparator => {
                write!(f, "found {found} at column {col}, expected a limit after the separator")
            }
            ParseErrorKind::Invalid(why) => write!(f, "{why} (at column {col})"),
            ParseErrorKind::MoreThanOne => {
                write!(f, "found a second limit at column {col}, expected exactly one (parse several with parse_many)")
            }
        }?;
        if f.alternate() {
            let pad = " ".repeat(col - 1);
            let marks = "^".repeat(self.token().chars().count().max(1));
            write!(f, "\n{}\n{pad}{marks}", self.input)?;
        }
        Ok(())
    }
}

impl std::error::Error for ParseError {}

/// Parses every limit in `s`, in order (`limits.parse_many`).
///
/// # Errors
///
/// [`ParseError`] pointing at the first offending token.
///
/// # Examples
///
/// ```
/// let limits = limiter_core::parse_many("5/2 seconds;10/hour;100/day;2000 per year")?;
/// let shown: Vec<String> = limits.iter().map(ToString::to_string).collect();
/// assert_eq!(shown, ["5 per 2 second", "10 per 1 hour", "100 per 1 day", "2000 per 1 year"]);
/// # Ok::<(), limiter_core::ParseError>(())
/// ```
pub fn parse_many(s: &str) -> Result<Vec<RateLimit>, ParseError> {
    let mut scanner = Scanner { input: s, pos: 0 };
    scanner.skip_ws();
    if scanner.at_end() {
        return Err(scanner.error(ParseErrorKind::Empty, 0..0));
    }
    let mut limits = vec![scanner.limit()?];
    loop {
        scanner.skip_ws();
        match scanner.peek() {
            None => return Ok(limits),
            Some(';' | ',' | '|') => {
                scanner.pos += 1;
                scanner.skip_ws();
                match scanner.peek() {
                    Some(c) if c.is_ascii_digit() => limits.push(scanner.limit()?),
                    _ => {
                        return Err(scanner.error_at_token(ParseErrorKind::ExpectedLimitAfterSeparator));
                    }
                }
            }
            Some(_) => return Err(scanner.error_at_token(ParseErrorKind::ExpectedSeparator)),
        }
    }
}

/// Parses `s` and returns its first limit (`limits.parse`).
///
/// # Errors
///
/// [`ParseError`] if any part of `s` is malformed.
pub fn parse(s: &str) -> Result<RateLimit, ParseError> {
    let mut limits = parse_many(s)?;
    // parse_many never returns an empty list.
    Ok(limits.swap_remove(0))
}

/// Parses `s`, which must hold exactly one limit.
pub(crate) fn parse_one(s: &str) -> Result<RateLimit, ParseError> {
    let mut scanner = Scanner { input: s, pos: 0 };
    scanner.skip_ws();
    if scanner.at_end() {
        return Err(scanner.error(ParseErrorKind::Empty, 0..0));
    }
    let limit = scanner.limit()?;
    scanner.skip_ws();
    match scanner.peek() {
        None => Ok(limit),
        Some(';' | ',' | '|') => {
            scanner.pos += 1;
            scanner.skip_ws();
            Err(scanner.error_at_token(ParseErrorKind::MoreThanOne))
        }
        Some(_) => Err(scanner.error_at_token(ParseErrorKind::ExpectedSeparator)),
    }
}

struct Scanner<'a> {
    input: &'a str,
    pos: usize,
}

impl Scanner<'_> {
    fn rest(&self) -> &str {
        self.input.get(self.pos..).unwrap_or("")
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.input.len()
    }

    /// Skips what Python's `\s` matches: Unicode white space plus the
    /// separators U+001C to U+001F, which `str.isspace()` counts too.
    fn skip_ws(&mut self) {
        let rest = self.rest();
        self.pos += rest.len()
            - rest.trim_start_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)).len();
    }

    fn take_while(&mut self, pred: impl Fn(char) -> bool) -> Range<usize> {
        let start = self.pos;
        let len: usize = self.rest().chars().take_while(|&c| pred(c)).map(char::len_utf8).sum();
        self.pos += len;
        start..self.pos
    }

    fn error(&self, kind: ParseErrorKind, span: Range<usize>) -> ParseError {
        ParseError { input: self.input.to_owned(), span, kind }
    }

    /// An error spanning the word (or the single character) at the cursor.
    fn error_at_token(&self, kind: ParseErrorKind) -> ParseError {
        let rest = self.rest();
        let word: usize = rest.chars().take_while(|c| c.is_alphanumeric()).map(char::len_utf8).sum();
        let len = if word > 0 { word } else { rest.chars().next().map_or(0, char::len_utf8) };
        self.error(kind, self.pos..self.pos + len)
    }

    fn number(&mut self) -> Result<Option<(u64, Range<usize>)>, ParseError> {
        let span = self.take_while(|c| c.is_ascii_digit());
        if span.is_empty() {
            return Ok(None);
        }
        let digits = self.input.get(span.clone()).unwrap_or("");
        match digits.parse::<u64>() {
            Ok(n) => Ok(Some((n, span))),
            Err(_) => Err(self.error(ParseErrorKind::NumberTooLarge, span)),
        }
    }

    /// One limit: `amount ("/" | "per") [multiples] granularity`, with white
    /// space allowed (and not required) between the parts, as in `limits`.
    fn limit(&mut self) -> Result<RateLimit, ParseError> {
        let start = self.pos;
        let Some((amount, amount_span)) = self.number()? else {
            return Err(self.error_at_token(ParseErrorKind::ExpectedAmount));
        };
        self.skip_ws();
        if self.rest().starts_with('/') {
            self.pos += 1;
        } else if self.rest().get(..3).is_some_and(|w| w.eq_ignore_ascii_case("per")) {
            self.pos += 3;
        } else {
            return Err(self.error_at_token(ParseErrorKind::ExpectedPer));
        }
        self.skip_ws();
        let multiples = self.number()?;
        self.skip_ws();
        let word = self.take_while(char::is_alphabetic);
        if word.is_empty() {
            return Err(self.error_at_token(ParseErrorKind::ExpectedGranularity));
        }
        let name = self.input.get(word.clone()).unwrap_or("");
        let Some(granularity) = Granularity::from_name(name) else {
            return Err(self.error(ParseErrorKind::UnknownGranularity(name.to_owned()), word));
        };
        let (multiples, multiples_span) = multiples.unwrap_or((1, word.clone()));
        RateLimit::new(amount, multiples, granularity).map_err(|why| {
            let span = match why {
                LimitError::AmountTooLarge { .. } => amount_span,
                LimitError::ZeroMultiples { .. } => multiples_span,
                _ => start..word.end,
            };
            self.error(ParseErrorKind::Invalid(why), span)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> (u64, u64, Granularity) {
        let l = parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"));
        (l.amount(), l.multiples(), l.granularity())
    }

    fn kind(s: &str) -> ParseErrorKind {
        match parse_many(s) {
            Ok(l) => panic!("{s:?} should be rejected, got {l:?}"),
            Err(e) => e.kind,
        }
    }

    #[test]
    fn accepts_what_limits_accepts() {
        use Granularity::*;
        for s in ["10/minute", "10 per minute", "10per minute", "10perminute", "10 /minute", "10/Minute"] {
            assert_eq!(one(s), (10, 1, Minute), "{s}");
        }
        assert_eq!(one("10 PER HOUR"), (10, 1, Hour));
        assert_eq!(one("10/Second"), (10, 1, Second));
        assert_eq!(one("10 /second"), (10, 1, Second));
        assert_eq!(one("  10 / 2   hours  "), (10, 2, Hour));
        assert_eq!(one("1/2 seconds"), (1, 2, Second));
        assert_eq!(one("1/2seconds"), (1, 2, Second));
        assert_eq!(one("1 per2 days"), (1, 2, Day));
        assert_eq!(one("0/second"), (0, 1, Second));
        assert_eq!(one("3/month"), (3, 1, Month));
        assert_eq!(one("3 per 2 YEARS"), (3, 2, Year));
        assert_eq!(one("10/second\n"), (10, 1, Second));
        assert_eq!(one("\t10/second"), (10, 1, Second));
    }

    #[test]
    fn parses_several_with_each_separator() {
        let many = parse_many("5/2 seconds;10/hour;100/day;2000 per year").unwrap();
        let got: Vec<_> = many.iter().map(|l| (l.amount(), l.multiples(), l.granularity())).collect();
        use Granularity::*;
        assert_eq!(got, [(5, 2, Second), (10, 1, Hour), (100, 1, Day), (2000, 1, Year)]);
        assert_eq!(parse_many("100/day, 500/7 days").unwrap().len(), 2);
        assert_eq!(parse_many("1/second|2/minute").unwrap().len(), 2);
        assert_eq!(parse_many("1/second ; 2/minute , 3/hour|4/day").unwrap().len(), 4);
        assert_eq!(parse("1/second;2/minute").unwrap().amount(), 1);
    }

    #[test]
    fn rejects_what_limits_rejects() {
        assert_eq!(kind("10/secs"), ParseErrorKind::UnknownGranularity("secs".into()));
        assert_eq!(kind("2/sec"), ParseErrorKind::UnknownGranularity("sec".into()));
        assert_eq!(kind("1/ 2"), ParseErrorKind::ExpectedGranularity);
        assert_eq!(kind("10/second;"), ParseErrorKind::ExpectedLimitAfterSeparator);
        assert_eq!(kind("1/second,,2/minute"), ParseErrorKind::ExpectedLimitAfterSeparator);
        assert_eq!(kind("10/second 20/minute"), ParseErrorKind::ExpectedSeparator);
        assert_eq!(kind("-1/second"), ParseErrorKind::ExpectedAmount);
        assert_eq!(kind("1.5/second"), ParseErrorKind::ExpectedPer);
        assert_eq!(kind("10"), ParseErrorKind::ExpectedPer);
        assert_eq!(kind("10 per"), ParseErrorKind::ExpectedGranularity);
        assert_eq!(kind("١٠/second"), ParseErrorKind::ExpectedAmount);
        assert_eq!(kind(""), ParseErrorKind::Empty);
        assert_eq!(kind("   "), ParseErrorKind::Empty);
        assert_eq!(kind("per minute"), ParseErrorKind::ExpectedAmount);
        assert_eq!(kind("10 per fortnight"), ParseErrorKind::UnknownGranularity("fortnight".into()));
        assert_eq!(kind("10/ſecond"), ParseErrorKind::UnknownGranularity("ſecond".into()));
    }

    /// Strings `limits` accepts only through quirks of its regular expression.
    #[test]
    fn regex_accidents_are_decided() {
        // `(:?SEP SINGLE)` makes ':' before a separator optional-but-allowed in
        // Python; it is a typo for a non-capturing group, so we refuse it.
        assert_eq!(kind("1/second:;2/minute"), ParseErrorKind::ExpectedSeparator);
        // Python turns 0 multiples into 1; an empty window is a mistake.
        assert_eq!(
            kind("10/0 seconds"),
            ParseErrorKind::Invalid(LimitError::ZeroMultiples { granularity: Granularity::Second })
        );
        // Trailing white space, newlines included, is accepted as in Python.
        assert_eq!(parse_many("10/second\n\n").unwrap().len(), 1);
    }

    #[test]
    fn numbers_out_of_range() {
        assert_eq!(kind("99999999999999999999999/second"), ParseErrorKind::NumberTooLarge);
        assert!(matches!(kind("9007199254740992/second"), ParseErrorKind::Invalid(LimitError::AmountTooLarge { .. })));
        assert!(matches!(kind("1/101 years"), ParseErrorKind::Invalid(LimitError::WindowTooLong { .. })));
    }

    #[test]
    fn errors_point_at_the_token() {
        let err = parse_many("10 per fortnight").unwrap_err();
        assert_eq!(err.span(), 7..16);
        assert!(err.to_string().contains("unknown granularity 'fortnight'"), "{err}");
        assert!(err.to_string().contains("expected second, minute, hour, day, month or year"), "{err}");

        let err = parse_many("1/second; 2/minute junk").unwrap_err();
        assert_eq!(&err.input()[err.span()], "junk");
        assert_eq!(format!("{err:#}").lines().nth(2), Some("                   ^^^^"));

        let err = parse_many("10/second;").unwrap_err();
        assert_eq!(err.span(), 10..10);
        assert!(err.to_string().contains("found the end at column 11"), "{err}");

        let err = parse_many("10/0 minutes").unwrap_err();
        assert_eq!(&err.input()[err.span()], "0");
        assert!(err.to_string().contains("a window of 0 minutes is empty"), "{err}");
    }

    #[test]
    fn from_str_wants_exactly_one() {
        assert!("10/minute".parse::<RateLimit>().is_ok());
        let err = "10/minute; 20/hour".parse::<RateLimit>().unwrap_err();
        assert_eq!(err.kind(), &ParseErrorKind::MoreThanOne);
        assert_eq!(&err.input()[err.span()], "20");
    }
}
