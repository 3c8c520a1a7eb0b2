//! Base64 (RFC 4648 section 4) as DKIM uses it: `b=`, `bh=` and `p=` values,
//! which may carry folding whitespace anywhere (RFC 6376 section 2.4).

/// Encodes `data` with padding.
pub use scop_codec::base64::encode;

fn value(c: u8) -> Option<u32> {
    match c {
        b'A'..=b'Z' => Some(u32::from(c - b'A')),
        b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
        b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Decodes base64, skipping whitespace (SP, HTAB, CR, LF). Padding is
/// optional but, when present, must be at the end and consistent. Returns
/// `None` on any other byte.
pub fn decode(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3 + 3);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    let mut pad = 0usize;
    for &c in text {
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => continue,
            b'=' => {
                pad += 1;
                continue;
            }
            _ => {}
        }
        if pad > 0 {
            return None;
        }
        acc = (acc << 6) | value(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // 6 or more leftover bits, or padding that does not match, is malformed.
    if bits >= 6 || pad > 2 || (pad > 0 && (pad * 2 != bits as usize)) {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4648_vectors() {
        let cases: &[(&[u8], &str)] = &[
            (b"", ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"fooba", "Zm9vYmE="),
            (b"foobar", "Zm9vYmFy"),
        ];
        for (raw, enc) in cases {
            assert_eq!(encode(raw), *enc);
            assert_eq!(decode(enc.as_bytes()).as_deref(), Some(*raw));
        }
        assert_eq!(decode(b"Zm9v\r\n\tYg =="), Some(b"foob".to_vec()));
        assert_eq!(decode(b"Zm9vYg"), Some(b"foob".to_vec()));
        assert_eq!(decode(b"Zm=9v"), None);
        assert_eq!(decode(b"Zm9v!"), None);
        assert_eq!(decode(b"Z"), None);
        assert_eq!(decode(b"Zm9vYg="), None);
    }
}
