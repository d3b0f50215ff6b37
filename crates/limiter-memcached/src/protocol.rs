//! The memcached meta protocol (memcached 1.6 and later): commands written
//! into a buffer, replies parsed out of one.
//!
//! Only the meta commands are used: `ma` increments with auto-creation and a
//! TTL in one atomic step and returns the new value, TTL and CAS together,
//! which the classic `incr`/`add` pair cannot. Every command gets exactly one
//! reply (the quiet flag `q` is never used: 1.6.18 still answers some quiet
//! `ma` calls), so replies are matched to commands by counting.

use std::fmt::Write as _;

/// Memcached's limit on the length of a key.
pub(crate) const MAX_KEY_LEN: usize = 250;

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
            let total = consumed + size + 2;
            if buf.len() < total {
                return Ok(None);
            }
            if buf.get(consumed + size..total) != Some(b"\r\n".as_slice()) {
                return Err(ProtocolError("a value not followed by a line end".to_owned()));
            }
            let data = buf.get(consumed..consumed + size).unwrap_or_default().to_vec();
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
        let (flag, value) = token.split_at(token.len().min(1));
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
pub(crate) struct KeyTooLong(pub(crate) usize);

/// Writes `key` as a command's key: as is when it is printable ASCII without
/// spaces (every key `limits` can use), else base64-encoded, which the
/// caller flags with `b`, so that no identifier can break the command line.
/// Returns whether it was encoded.
fn push_key(out: &mut Vec<u8>, key: &str) -> Result<bool, KeyTooLong> {
    if key.len() > MAX_KEY_LEN {
        return Err(KeyTooLong(key.len()));
    }
    if !key.is_empty() && key.bytes().all(|b| b.is_ascii_graphic()) {
        out.extend_from_slice(key.as_bytes());
        Ok(false)
    } else {
        base64(key.as_bytes(), out);
        Ok(true)
    }
}

/// Standard base64 with padding, as memcached's `b` flag expects,
/// appended to `out` without an intermediate string.
fn base64(input: &[u8], out: &mut Vec<u8>) {
    use base64::Engine as _;
    let start = out.len();
    // A key is at most a few hundred bytes: its encoded length cannot overflow.
    let len = base64::encoded_len(input.len(), true).unwrap_or_default();
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
    fn line(&mut self, verb: &str, key: &str, flags: &str) -> Result<(), KeyTooLong> {
        self.bytes.extend_from_slice(verb.as_bytes());
        self.bytes.push(b' ');
        let encoded = push_key(&mut self.bytes, key)?;
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
    /// TTL `ttl` if it is missing (as `limits`' `incr` then `add` does, but
    /// in one step). Answers the new value, its TTL and CAS.
    pub(crate) fn incr(&mut self, key: &str, delta: u64, ttl: u64) -> Result<(), KeyTooLong> {
        self.line("ma", key, &format!(" N{ttl} J{delta} D{delta} v t c"))
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

    /// `ms`: sets `value` with a TTL (0: none).
    pub(crate) fn set(&mut self, key: &str, value: &[u8], ttl: u64) -> Result<(), KeyTooLong> {
        self.line("ms", key, &format!(" {} T{ttl}", value.len()))?;
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
        c.incr("k", 3, 60).unwrap();
        c.decr("k", 3, Some(9)).unwrap();
        c.decr("k", 1, None).unwrap();
        c.add_to("k", 2).unwrap();
        c.set("k/expires", b"1.5", 60).unwrap();
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
        c.set("a b", b"1", 5).unwrap();
        assert_eq!(String::from_utf8(c.bytes).unwrap(), "md Zm9vIGJhcg== b\r\nmd w6k= b\r\nms YSBi 1 T5 b\r\n1\r\n");
        assert_eq!(Commands::default().get(&"k".repeat(251)), Err(KeyTooLong(251)));
    }

    #[test]
    fn base64_pads() {
        for (input, expected) in [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg==")] {
            let mut out = Vec::new();
            base64(input.as_bytes(), &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), expected);
        }
    }
}
