//! Which server holds a key, when there are several: pymemcache's
//! `HashClient` (what `limits` uses for `memcached://h1:p1,h2:p2`), so that
//! Python and Rust services put every key on the same server.
//!
//! `HashClient` uses rendezvous hashing: each server named `host:port` (or
//! its socket path) scores `murmur3_32("<name>-<key>", seed 0)`; the highest
//! score wins, a tie goes to the greater name.

/// MurmurHash3 (x86, 32 bits) over `data`'s characters, as pymemcache's pure
/// Python version computes it: one byte per character (its code point's low
/// eight bits), which is the UTF-8 byte for the ASCII keys it accepts.
pub(crate) fn murmur3_32(data: &str, seed: u32) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let bytes: Vec<u8> = data.chars().map(|c| (u32::from(c) & 0xff) as u8).collect();
    let mut h1 = seed;
    let mut blocks = bytes.chunks_exact(4);
    for block in &mut blocks {
        let mut k1 = u32::from_le_bytes(block.try_into().unwrap_or_default());
        k1 = k1.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h1 ^= k1;
        h1 = h1.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        let mut k1 = 0u32;
        for (i, b) in tail.iter().enumerate() {
            k1 |= u32::from(*b) << (8 * i);
        }
        k1 = k1.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h1 ^= k1;
    }
    // pymemcache mixes in the number of characters, not of UTF-8 bytes.
    h1 ^= u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    h1 ^= h1 >> 16;
    h1 = h1.wrapping_mul(0x85eb_ca6b);
    h1 ^= h1 >> 13;
    h1 = h1.wrapping_mul(0xc2b2_ae35);
    h1 ^= h1 >> 16;
    h1
}

/// The index, in `names`, of the server that holds `key`.
pub(crate) fn pick<S: AsRef<str>>(names: &[S], key: &str) -> usize {
    let mut best: Option<(u32, usize)> = None;
    for (index, name) in names.iter().enumerate() {
        let score = murmur3_32(&format!("{}-{key}", name.as_ref()), 0);
        let wins = match best {
            None => true,
            Some((high, winner)) => {
                score > high || (score == high && name.as_ref() > names.get(winner).map_or("", AsRef::as_ref))
            }
        };
        if wins {
            best = Some((score, index));
        }
    }
    best.map_or(0, |(_, index)| index)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values printed by pymemcache 4.0's `murmur3_32` (`limits[memcached]` 5.8).
    #[test]
    fn murmur3_matches_pymemcache() {
        assert_eq!(murmur3_32("", 0), 0);
        assert_eq!(murmur3_32("a", 0), 0x3c25_69b2);
        assert_eq!(murmur3_32("hello", 0), 0x248b_fa47);
        assert_eq!(murmur3_32("hello, world", 0), 0x149b_bb7f);
        assert_eq!(murmur3_32("é", 0), 0x44c6_d4b2);
        assert_eq!(murmur3_32("127.0.0.1:11211-LIMITER/127.0.0.1/x/5/1/minute", 0), 0xcb60_e999);
    }

    /// `RendezvousHash(["127.0.0.1:11211", "127.0.0.1:11212", "127.0.0.1:11213"])
    /// .get_node(f"LIMITER/k{i}/5/1/minute")` for i in 0..8, as pymemcache answers.
    #[test]
    fn servers_are_picked_as_pymemcache_picks_them() {
        let names = ["127.0.0.1:11211", "127.0.0.1:11212", "127.0.0.1:11213"];
        let picked: Vec<usize> = (0..8).map(|i| pick(&names, &format!("LIMITER/k{i}/5/1/minute"))).collect();
        assert_eq!(picked, [0, 1, 1, 1, 2, 0, 1, 1]);
        assert_eq!(pick(&["only"], "anything"), 0);
    }
}
