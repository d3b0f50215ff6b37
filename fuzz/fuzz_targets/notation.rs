//! Fuzzes the rate limit notation parser: for any UTF-8 input, `parse_many`
//! must not panic; each limit it returns must display as a string that parses
//! back to the same limit; an error must point at a range of the input on
//! character boundaries, and must format (plain and alternate) without
//! panicking. `parse` and `str::parse` must agree with `parse_many`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use limiter_core::{ParseError, RateLimit, parse, parse_many};

fn check_error(err: &ParseError, input: &str) {
    assert_eq!(err.input(), input);
    let span = err.span();
    assert!(span.start <= span.end && span.end <= input.len(), "span {span:?} out of {input:?}");
    assert!(input.is_char_boundary(span.start) && input.is_char_boundary(span.end), "span {span:?} in {input:?}");
    let plain = err.to_string();
    assert!(format!("{err:#}").starts_with(&plain));
}

fuzz_target!(|data: &[u8]| {
    // Arbitrary bytes, cut to their longest UTF-8 prefix.
    let input = match std::str::from_utf8(data) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(&data[..e.valid_up_to()]).unwrap_or_default(),
    };
    let many = parse_many(input);
    match &many {
        Ok(limits) => {
            assert!(!limits.is_empty());
            for limit in limits {
                let shown = limit.to_string();
                assert_eq!(shown.parse::<RateLimit>(), Ok(*limit), "{shown:?} from {input:?}");
            }
        }
        Err(err) => check_error(err, input),
    }
    match parse(input) {
        Ok(first) => assert_eq!(Some(&first), many.as_ref().ok().and_then(|l| l.first())),
        Err(err) => {
            assert!(many.is_err());
            check_error(&err, input);
        }
    }
    match input.parse::<RateLimit>() {
        Ok(one) => assert_eq!(many, Ok(vec![one])),
        Err(err) => {
            assert!(!matches!(&many, Ok(l) if l.len() == 1));
            check_error(&err, input);
        }
    }
});
