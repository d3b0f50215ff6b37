//! The memcached meta protocol (memcached 1.6 and later): commands written
//! into a buffer, replies parsed out of one.
//!
//! Only the meta commands are used: `ma` increments with auto-creation and a
//! TTL in one atomic step and returns the new value, TTL and CAS together,
//! which the classic `incr`/`add` pair cannot. Every command gets exactly one
//! reply (the quiet flag `q` is never used: 1.6.18 still answers some quiet
//! `ma` calls), so replies are matched to commands by counting.

use std::fmt::Write as _;

use limiter_core::Timestamp;

/// Memcached's limit on the length of a key, as sent.
pub(crate) const MAX_KEY_LEN: usize = 250;

/// The longest key that fits base64-encoded: 4 bytes sent per 3, so
/// `4 * ceil(n / 3) <= 250`.
pub(crate) const MAX_ENCODED_KEY_LEN: usize = MAX_KEY_LEN / 4 * 3;

/// The largest item memcached can hold (its `-I` option's maximum, 1 GiB).
const MAX_VALUE_LEN: usize = 1 << 30;

/// The longest expiry memcached reads as seconds from now
/// (`REALTIME_MAXDELTA`, 30 days); above it, an expiry is a Unix time.
pub(crate) const MAX_RELATIVE_TTL: u64 = 30 * 24 * 3600;

/// The latest Unix time memcached can take as an expiry (its exptime is a
/// signed 32-bit number): 2038-01-19.
const MAX_EXPTIME: u64 = 2_147_483_647;

/// How far the TTL memcached answers for an item it just gave an absolute
/// expiry may stray from the one meant: that TTL is the expiry, reckoned on
/// the limiter's clock, less the server's clock, rounded by a second.
const CLOCK_SLACK: u64 = 60;

/// One reply to one meta command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// `VA <size> <flags>` and the data: a hit with its value.
    Value {
        /// The data, without its line end.
        data: Vec<u8>,
        /// The returned flags.
        meta: Meta,
    },
    /// `HD <flags>`: success without a value.
    Done(Meta),
    /// `EN` or `NF`: no such item.
    Miss,
    /// `NS`: not stored.
    NotStored,
    /// `EX`: the CAS value did not match.
    Exists,
    /// `MN`: the answer to `mn`.
    Noop,
}

impl Reply {
    /// The value as a counter (`None` on a miss or a non-numeric value).
    pub(crate) fn number(&self) -> Option<u64> {
        match self {
            Reply::Value { data, .. } => std::str::from_utf8(data).ok()?.trim().parse().ok(),
            _ => None,
        }
    }

    /// The returned flags, if the item was there.
    pub(crate) fn meta(&self) -> Option<Meta> {
        match self {
            Reply::Value { meta, .. } | Reply::Done(meta) => Some(*meta),
            _ => None,
        }
    }
}

/// The flags a reply carries back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Meta {
    /// `t`: seconds left to live; `-1` for an item that never expires.
    pub(crate) ttl: Option<i64>,
    /// `c`: the item's CAS value.
    pub(crate) cas: Option<u64>,
}

/// A reply the connection cannot go on after: an error line, or bytes that
/// are not the meta protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ProtocolError(pub(crate) String);

/// Parses the first complete reply of `buf`: `Ok(None)` if more bytes are
/// needed, else the reply and how many bytes it took.
pub(crate) fn parse_reply(buf: &[u8]) -> Result<Option<(usize, Reply)>, ProtocolError> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() > 8 * 1024 {
            return Err(ProtocolError("a reply line longer than 8 KiB".to_owned()));
        }
        return Ok(None);
    };
    let line = buf.get(..end).unwrap_or_default();
    let line = std::str::from_utf8(line).map_err(|_| ProtocolError("a reply line that is not text".to_owned()))?;
    let mut tokens = line.split(' ');
    let code = tokens.next().unwrap_or_default();
    let consumed = end + 2;
    let reply = match code {
        "VA" => {
            let size: usize = tokens
                .next()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| ProtocolError(format!("a value reply without a size: {line:?}")))?;
            let meta = parse_meta(tokens);
            let data_end = Some(size)
                .filter(|&size| size <= MAX_VALUE_LEN)
                .and_then(|size| consumed.checked_add(size))
                .filter(|end| end.checked_add(2).is_some())
                .ok_or_else(|| ProtocolError(format!("a value reply with an impossible size: {line:?}")))?;
            let total = data_end + 2;
            if buf.len() < total {
                return Ok(None);
            }
            if buf.get(data_end..total) != Some(b"\r\n".as_slice()) {
                return Err(ProtocolError("a value not followed by a line end".to_owned()));
            }
            let data = buf.get(consumed..data_end).unwrap_or_default().to_vec();
            return Ok(Some((total, Reply::Value { data, meta })));
        }
        "HD" => Reply::Done(parse_meta(tokens)),
        "EN" | "NF" => Reply::Miss,
        "NS" => Reply::NotStored,
        "EX" => Reply::Exists,
        "MN" => Reply::Noop,
        _ => return Err(ProtocolError(format!("unexpected reply {line:?} (memcached 1.6 or later is needed)"))),
    };
    Ok(Some((consumed, reply)))
}

fn parse_meta<'a>(tokens: impl Iterator<Item = &'a str>) -> Meta {
    let mut meta = Meta::default();
    for token in tokens {
        // A token starting with a multi-byte character is no flag of ours.
        let Some((flag, value)) = token.split_at_checked(1) else { continue };
        match flag {
            "t" => meta.ttl = value.parse().ok(),
            "c" => meta.cas = value.parse().ok(),
            _ => {}
        }
    }
    meta
}

/// A key that memcached cannot hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KeyTooLong {
    /// The key's length in bytes.
    pub(crate) len: usize,
    /// Its length base64-encoded, if it would be sent so.
    pub(crate) encoded: Option<usize>,
}

/// Writes `key` as a command's key: as is when it is printable ASCII without
/// spaces (every key `limits` can use), else base64-encoded, which the
/// caller flags with `b`, so that no identifier can break the command line.
/// Returns whether it was encoded. Memcached limits the key as sent, so an
/// encoded key is measured encoded. Writes nothing on error.
fn push_key(out: &mut Vec<u8>, key: &str) -> Result<bool, KeyTooLong> {
    if !key.is_empty() && key.bytes().all(|b| b.is_ascii_graphic()) {
        if key.len() > MAX_KEY_LEN {
            return Err(KeyTooLong { len: key.len(), encoded: None });
        }
        out.extend_from_slice(key.as_bytes());
        Ok(false)
    } else {
        let encoded = base64::encoded_len(key.len(), true).unwrap_or(usize::MAX);
        if encoded > MAX_KEY_LEN {
            return Err(KeyTooLong { len: key.len(), encoded: Some(encoded) });
        }
        base64(key.as_bytes(), encoded, out);
        Ok(true)
    }
}

/// An item's expiry as memcached reads it (the `N` and `T` flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Exptime {
    /// What is sent.
    value: u64,
    /// Whether `value` is a Unix time rather than seconds from now.
    absolute: bool,
}

impl Exptime {
    /// `ttl` seconds after `now`: sent as is up to 30 days, beyond as the
    /// Unix time `now + ttl` (memcached would read the bare TTL as a time in
    /// 1970, and drop the item at once), at the latest in January 2038.
    /// `now` must be the Unix time, as the limiter's system clock gives it.
    pub(crate) fn after(ttl: u64, now: Timestamp) -> Exptime {
        if ttl <= MAX_RELATIVE_TTL {
            Exptime { value: ttl, absolute: false }
        } else {
            Exptime { value: now.as_secs().saturating_add(ttl).min(MAX_EXPTIME), absolute: true }
        }
    }

    /// Whether `answered`, the TTL memcached returned (`t`) with the item
    /// it just gave this expiry at `now`, is the TTL of an item created by
    /// that command rather than an older one. A relative expiry comes back
    /// exactly (memcached reckons both in the same command); an absolute
    /// one within [`CLOCK_SLACK`] of the seconds left until it.
    pub(crate) fn is_fresh(self, answered: Option<i64>, now: Timestamp) -> bool {
        let Some(answered) = answered.and_then(|t| u64::try_from(t).ok()) else { return false };
        if self.absolute {
            answered.abs_diff(self.value.saturating_sub(now.as_secs())) <= CLOCK_SLACK
        } else {
            answered == self.value
        }
    }
}

/// Standard base64 with padding, as memcached's `b` flag expects,
/// appended to `out` without an intermediate string; `len` is its encoded
/// length (`base64::encoded_len`).
fn base64(input: &[u8], len: usize, out: &mut Vec<u8>) {
    use base64::Engine as _;
    let start = out.len();
    out.resize(start + len, 0);
    if let Some(tail) = out.get_mut(start..) {
        let written = base64::engine::general_purpose::STANDARD.encode_slice(input, tail).unwrap_or_default();
        out.truncate(start + written);
    }
}

/// Appends commands to a buffer; each adds exactly one reply.
#[derive(Debug, Default)]
pub(crate) struct Commands {
    pub(crate) bytes: Vec<u8>,
    pub(crate) count: usize,
}

impl Commands {
    /// Adds one command line; leaves the buffer as it was if the key does
    /// not fit, so that the next command is not glued to half of this one.
    fn line(&mut self, verb: &str, key: &str, flags: &str) -> Result<(), KeyTooLong> {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(verb.as_bytes());
        self.bytes.push(b' ');
        let encoded = push_key(&mut self.bytes, key).inspect_err(|_| self.bytes.truncate(start))?;
        // Flags after the key; `ms` wants its data length first.
        self.bytes.extend_from_slice(flags.as_bytes());
        if encoded {
            self.bytes.extend_from_slice(b" b");
        }
        self.bytes.extend_from_slice(b"\r\n");
        self.count += 1;
        Ok(())
    }

    /// `mg`: the value (a miss answers `EN`), with its TTL and CAS.
    pub(crate) fn get(&mut self, key: &str) -> Result<(), KeyTooLong> {
        self.line("mg", key, " v t c")
    }

    /// `ma`: adds `delta`, creating the item with the value `delta` and the
    /// expiry `exptime` if it is missing (as `limits`' `incr` then `add`
    /// does, but in one step). Answers the new value, its TTL and CAS.
    pub(crate) fn incr(&mut self, key: &str, delta: u64, exptime: Exptime) -> Result<(), KeyTooLong> {
        self.line("ma", key, &format!(" N{} J{delta} D{delta} v t c", exptime.value))
    }

    /// `ma` in decrement mode (memcached stops at 0), only if the item's CAS
    /// is still `cas` when one is given. Answers the TTL; a miss answers
    /// `NF`, a changed item `EX`.
    pub(crate) fn decr(&mut self, key: &str, delta: u64, cas: Option<u64>) -> Result<(), KeyTooLong> {
        let mut flags = format!(" MD D{delta} t");
        if let Some(cas) = cas {
            let _ = write!(flags, " C{cas}");
        }
        self.line("ma", key, &flags)
    }

    /// `ma` without auto-creation: adds `delta` to an existing item only.
    pub(crate) fn add_to(&mut self, key: &str, delta: u64) -> Result<(), KeyTooLong> {
        self.line("ma", key, &format!(" D{delta}"))
    }

    /// `ms`: sets `value` with an expiry.
    pub(crate) fn set(&mut self, key: &str, value: &[u8], exptime: Exptime) -> Result<(), KeyTooLong> {
        self.line("ms", key, &format!(" {} T{}", value.len(), exptime.value))?;
        self.bytes.extend_from_slice(value);
        self.bytes.extend_from_slice(b"\r\n");
        Ok(())
    }

    /// `md`: deletes the item (a miss answers `NF`).
    pub(crate) fn delete(&mut self, key: &str) -> Result<(), KeyTooLong> {
        self.line("md", key, "")
    }

    /// `mn`: does nothing, answers `MN`.
    pub(crate) fn noop(&mut self) {
        self.bytes.extend_from_slice(b"mn\r\n");
        self.count += 1;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const NOW: Timestamp = Timestamp::from_secs(1_795_706_165);

    #[test]
    fn parses_each_reply() {
        assert_eq!(
            parse_reply(b"VA 1 t60 c7\r\n3\r\nMN\r\n").unwrap(),
            Some((16, Reply::Value { data: b"3".to_vec(), meta: Meta { ttl: Some(60), cas: Some(7) } }))
        );
        assert_eq!(parse_reply(b"VA 2 t5\r\n1").unwrap(), None, "the value is incomplete");
        assert_eq!(parse_reply(b"HD t-1\r\n").unwrap(), Some((8, Reply::Done(Meta { ttl: Some(-1), cas: None }))));
        assert_eq!(parse_reply(b"EN\r\n").unwrap(), Some((4, Reply::Miss)));
        assert_eq!(parse_reply(b"NF\r\n").unwrap(), Some((4, Reply::Miss)));
        assert_eq!(parse_reply(b"EX\r\n").unwrap(), Some((4, Reply::Exists)));
        assert_eq!(parse_reply(b"NS\r\n").unwrap(), Some((4, Reply::NotStored)));
        assert_eq!(parse_reply(b"MN\r\n").unwrap(), Some((4, Reply::Noop)));
        assert_eq!(parse_reply(b"HD").unwrap(), None);
        assert!(parse_reply(b"CLIENT_ERROR bad command line format\r\n").is_err());
        assert!(parse_reply(b"ERROR\r\n").is_err());
        assert!(parse_reply(b"VA 1\r\n12\r\n").is_err(), "a value longer than announced");
    }

    #[test]
    fn numbers_are_read_from_values() {
        let value = Reply::Value { data: b"42".to_vec(), meta: Meta::default() };
        assert_eq!(value.number(), Some(42));
        assert_eq!(Reply::Miss.number(), None);
        assert_eq!(Reply::Value { data: b"1.5".to_vec(), meta: Meta::default() }.number(), None);
    }

    #[test]
    fn commands_are_meta_lines() {
        let mut c = Commands::default();
        c.get("LIMITER/a/5/1/minute").unwrap();
        c.incr("k", 3, Exptime::after(60, NOW)).unwrap();
        c.decr("k", 3, Some(9)).unwrap();
        c.decr("k", 1, None).unwrap();
        c.add_to("k", 2).unwrap();
        c.set("k/expires", b"1.5", Exptime::after(60, NOW)).unwrap();
        c.delete("k").unwrap();
        c.noop();
        assert_eq!(
            String::from_utf8(c.bytes).unwrap(),
            "mg LIMITER/a/5/1/minute v t c\r\nma k N60 J3 D3 v t c\r\nma k MD D3 t C9\r\nma k MD D1 t\r\nma k D2\r\n\
             ms k/expires 3 T60\r\n1.5\r\nmd k\r\nmn\r\n"
        );
        assert_eq!(c.count, 8);
    }

    #[test]
    fn keys_memcached_cannot_read_are_base64() {
        let mut c = Commands::default();
        c.delete("foo bar").unwrap();
        c.delete("é").unwrap();
        c.set("a b", b"1", Exptime::after(5, NOW)).unwrap();
        assert_eq!(String::from_utf8(c.bytes).unwrap(), "md Zm9vIGJhcg== b\r\nmd w6k= b\r\nms YSBi 1 T5 b\r\n1\r\n");
        assert_eq!(Commands::default().get(&"k".repeat(251)), Err(KeyTooLong { len: 251, encoded: None }));
        assert!(Commands::default().get(&"k".repeat(250)).is_ok());
    }

    /// Memcached measures the key it is sent: 186 bytes encode to 248,
    /// 187 to 252, over its 250.
    #[test]
    fn encoded_keys_are_measured_encoded() {
        assert_eq!(MAX_ENCODED_KEY_LEN, 186);
        let fits = format!(" {}", "k".repeat(MAX_ENCODED_KEY_LEN - 1));
        let mut c = Commands::default();
        c.get(&fits).unwrap();
        assert_eq!(c.bytes.len(), "mg ".len() + 248 + " v t c b\r\n".len());
        let over = format!(" {}", "k".repeat(MAX_ENCODED_KEY_LEN));
        assert_eq!(Commands::default().get(&over), Err(KeyTooLong { len: 187, encoded: Some(252) }));
        let spaced = format!("a {}", "b".repeat(188));
        assert_eq!(Commands::default().get(&spaced), Err(KeyTooLong { len: 190, encoded: Some(256) }));
    }

    /// A command whose key does not fit leaves nothing behind for the next
    /// one to be glued to.
    #[test]
    fn a_refused_command_leaves_the_buffer_as_it_was() {
        let mut c = Commands::default();
        c.get("a").unwrap();
        let long = "k".repeat(251);
        assert!(c.set(&long, b"1", Exptime::after(60, NOW)).is_err());
        assert!(c.incr(&long, 1, Exptime::after(60, NOW)).is_err());
        assert!(c.delete(&format!(" {}", "k".repeat(200))).is_err());
        c.get("b").unwrap();
        assert_eq!(String::from_utf8(c.bytes).unwrap(), "mg a v t c\r\nmg b v t c\r\n");
        assert_eq!(c.count, 2);
    }

    /// Expiries over 30 days go as Unix times, capped at 2038; the TTL
    /// memcached answers tells a just-created item from an older one.
    #[test]
    fn long_expiries_are_unix_times() {
        let now = Timestamp::from_nanos(1_795_706_165_900_000_000);
        let month = Exptime::after(MAX_RELATIVE_TTL, now);
        assert_eq!(month, Exptime { value: 2_592_000, absolute: false });
        let year = Exptime::after(31_536_000, now);
        assert_eq!(year, Exptime { value: 1_795_706_165 + 31_536_000, absolute: true });
        let mut c = Commands::default();
        c.incr("k", 1, year).unwrap();
        c.set("k/expires", b"1", year).unwrap();
        assert_eq!(
            String::from_utf8(c.bytes).unwrap(),
            "ma k N1827242165 J1 D1 v t c\r\nms k/expires 1 T1827242165\r\n1\r\n"
        );
        assert_eq!(Exptime::after(u64::MAX, now).value, 2_147_483_647);

        assert!(month.is_fresh(Some(2_592_000), now));
        assert!(!month.is_fresh(Some(2_591_999), now), "created a second ago or more");
        assert!(!month.is_fresh(None, now));
        assert!(year.is_fresh(Some(31_536_001), now), "memcached rounds up");
        assert!(year.is_fresh(Some(31_535_990), now), "the server's clock a little ahead");
        assert!(!year.is_fresh(Some(31_536_000 - 3600), now), "created an hour ago");
        let capped = Exptime::after(100 * 31_536_000, now);
        assert!(capped.is_fresh(Some(2_147_483_647 - 1_795_706_165), now));
        assert!(!capped.is_fresh(Some(-1), now));
    }

    /// Replies that are not what memcached sends are errors, never panics.
    #[test]
    fn bad_replies_are_errors() {
        assert_eq!(
            parse_reply("HD \u{e9}t5 t7\r\n".as_bytes()).unwrap(),
            Some((12, Reply::Done(Meta { ttl: Some(7), cas: None }))),
            "a flag starting with a multi-byte character is skipped"
        );
        assert_eq!(parse_reply("VA 1 \u{e9}\r\n1\r\n".as_bytes()).unwrap().map(|(n, _)| n), Some(12));
        for size in [u64::MAX, u64::MAX - 1, u64::MAX - 5] {
            let reply = format!("VA {size} t1\r\n");
            assert!(parse_reply(reply.as_bytes()).is_err(), "{reply:?}");
        }
    }

    #[test]
    fn base64_pads() {
        for (input, expected) in [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg==")] {
            let mut out = Vec::new();
            base64(input.as_bytes(), base64::encoded_len(input.len(), true).unwrap(), &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), expected);
        }
    }
}
