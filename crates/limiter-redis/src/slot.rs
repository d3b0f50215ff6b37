//! Redis Cluster hash slots: CRC16 (XMODEM) of the key, or of its hash tag
//! (the text between the first `{` and the next `}`, when not empty),
//! modulo 16384.

/// The number of slots of a Redis cluster.
const SLOTS: u16 = 16_384;

fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc
}

/// The part of `key` that is hashed.
fn hashed(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{')
        && let Some(rest) = key.get(open + 1..)
        && let Some(close) = rest.iter().position(|&b| b == b'}')
        && close > 0
    {
        return rest.get(..close).unwrap_or(key);
    }
    key
}

/// The slot of `key`.
pub(crate) fn slot(key: &str) -> u16 {
    crc16(hashed(key.as_bytes())) % SLOTS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_slots() {
        // From the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("{user1000}.following"), slot("{user1000}.followers"));
        assert_eq!(slot("foo{}{bar}"), crc16(b"foo{}{bar}") % SLOTS, "an empty tag hashes the whole key");
        assert_eq!(slot("foo{{bar}}zap"), slot("{bar"));
    }

    #[test]
    fn sliding_window_keys_share_a_slot_even_with_braces_inside() {
        for inner in ["LIMITER/1.2.3.4/a/10/1/minute", "LIMITER/x}y/{z}/10/1/minute", "LIMITER/}/1/1/second"] {
            let current = format!("LIMITS:{{{inner}}}");
            assert_eq!(slot(&current), slot(&format!("{current}/-1")), "{current}");
        }
    }
}
