//! The 64-bit token key: a fixed, specified hash of the token's bytes.
//!
//! The model stores keys, not token text: a key is 8 bytes whatever the
//! token's length, compares in one instruction and needs no allocation. The
//! hash is part of the model file format, so it is defined here once, with
//! test vectors, and never changes within a format version.
//!
//! Construction (all integers little-endian, `fold(a, b)` = the 128-bit
//! product `a × b` with its high and low halves XORed):
//!
//! ```text
//! h = K0 ^ (len × K1)
//! for each 16-byte block (a, b) of the input, the last one zero-padded
//! (an empty input is one all-zero block):
//!     h = fold(a ^ h ^ K1, b ^ K2)
//! key = fold(h ^ K3, len ^ K0)
//! ```
//!
//! It is not a cryptographic hash: a chosen token can be made to collide
//! with another. That buys an attacker nothing over writing the other token
//! itself, which any message can do. For independent tokens the chance of a
//! collision among `n` distinct tokens is about `n² / 2⁶⁵` (one in about
//! 170 million for a model of 460,000 tokens).

const K0: u64 = 0x243f_6a88_85a3_08d3;
const K1: u64 = 0x1319_8a2e_0370_7344;
const K2: u64 = 0xa409_3822_299f_31d0;
const K3: u64 = 0x082e_fa98_ec4e_6c89;

#[inline(always)]
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

#[inline(always)]
fn word(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// The zero-padded last block `(a, b)` of fewer than 16 bytes, read with
/// (overlapping) loads of the bytes themselves: no byte-by-byte loop and
/// no copy through memory.
#[inline(always)]
fn tail(rest: &[u8]) -> (u64, u64) {
    let r = rest.len();
    let u32_at = |i: usize| {
        let mut a = [0u8; 4];
        a.copy_from_slice(&rest[i..i + 4]);
        u64::from(u32::from_le_bytes(a))
    };
    if r >= 8 {
        let a = word(rest);
        // rest[r - 8..r] holds rest[8..r] in its top r - 8 bytes.
        let b = if r > 8 {
            word(&rest[r - 8..]) >> (8 * (16 - r))
        } else {
            0
        };
        (a, b)
    } else if r >= 4 {
        // Two overlapping 4-byte loads; the overlap holds equal bytes.
        (u32_at(0) | (u32_at(r - 4) << (8 * (r - 4))), 0)
    } else if r > 0 {
        let a = u64::from(rest[0])
            | (u64::from(rest[r / 2]) << (8 * (r / 2)))
            | (u64::from(rest[r - 1]) << (8 * (r - 1)));
        (a, 0)
    } else {
        (0, 0)
    }
}

/// The key of the token whose UTF-8 bytes are `bytes`.
#[inline]
pub fn token_key(bytes: &[u8]) -> u64 {
    let len = bytes.len() as u64;
    let mut h = K0 ^ len.wrapping_mul(K1);
    let mut blocks = bytes.chunks_exact(16);
    for b in &mut blocks {
        h = fold(word(b) ^ h ^ K1, word(&b[8..]) ^ K2);
    }
    let rest = blocks.remainder();
    if !rest.is_empty() || bytes.is_empty() {
        let (a, b) = tail(rest);
        h = fold(a ^ h ^ K1, b ^ K2);
    }
    fold(h ^ K3, len ^ K0)
}

#[cfg(test)]
mod tests {
    use super::token_key;
    use std::collections::HashSet;

    /// Pinned values (computed by an independent implementation of the
    /// construction in the module docs): the model file format depends on
    /// them.
    #[test]
    fn test_vectors() {
        let got: Vec<u64> = [
            "",
            "a",
            "subject:free",
            "0123456789abcdef",
            "url:x.example.com/path",
        ]
        .iter()
        .map(|t| token_key(t.as_bytes()))
        .collect();
        assert_eq!(
            got,
            [
                0x8a92_b6f2_c05d_86b7,
                0xfad8_aff7_c045_e5aa,
                0xbf5a_9036_f710_0372,
                0xb971_33c6_8581_a9ae,
                0xe2ee_7c7d_7f8d_c301,
            ],
            "{got:#x?}"
        );
    }

    /// The tail loads agree with zero padding for every length.
    #[test]
    fn tail_is_the_zero_padded_block() {
        let bytes: Vec<u8> = (1..=16u8).map(|b| b.wrapping_mul(37)).collect();
        for r in 0..16 {
            let mut pad = [0u8; 16];
            pad[..r].copy_from_slice(&bytes[..r]);
            let expected = (
                u64::from_le_bytes(pad[..8].try_into().expect("8 bytes")),
                u64::from_le_bytes(pad[8..].try_into().expect("8 bytes")),
            );
            assert_eq!(super::tail(&bytes[..r]), expected, "length {r}");
        }
    }

    #[test]
    fn length_and_padding_matter() {
        assert_ne!(token_key(b""), token_key(b"\0"));
        assert_ne!(token_key(b"a"), token_key(b"a\0"));
        assert_ne!(token_key(&[0; 16]), token_key(&[0; 32]));
    }

    #[test]
    fn no_collision_on_a_million_similar_tokens() {
        let mut seen = HashSet::new();
        for i in 0..1_000_000u32 {
            let t = format!("tok{i}");
            assert!(seen.insert(token_key(t.as_bytes())), "collision at {t}");
        }
    }
}
