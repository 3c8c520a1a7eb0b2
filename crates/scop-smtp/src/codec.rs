//! Small codecs: base64 (RFC 4648 section 4, used by RFC 4954) and xtext
//! (RFC 3461 section 4).

use crate::error::{Error, InvalidInput};

/// Base64 encode with padding (RFC 4648 section 4).
pub use scop_codec::base64::encode as base64_encode;

fn b64_value(c: u8) -> Option<u32> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    } as u32)
}

/// Strict base64 decode: padding required, no whitespace, canonical bits.
pub fn base64_decode(text: &[u8]) -> Result<Vec<u8>, Error> {
    let bad = || Error::from(InvalidInput::Base64);
    if !text.len().is_multiple_of(4) {
        return Err(bad());
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let n_chunks = text.len() / 4;
    for (i, chunk) in text.chunks(4).enumerate() {
        let last = i + 1 == n_chunks;
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return Err(bad());
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = (n << 6) | b64_value(c).ok_or_else(bad)?;
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        let keep = 3 - pad;
        if bytes[keep..].iter().any(|&b| b != 0) {
            return Err(bad());
        }
        out.extend_from_slice(&bytes[..keep]);
    }
    Ok(out)
}

/// Decode xtext (RFC 3461 4): `+XX` hex escapes, other chars 33..=126
/// except `+` and `=`.
pub fn xtext_decode(text: &str) -> Result<String, Error> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                let hex = b.get(i + 1..i + 3).ok_or(InvalidInput::ParameterValue)?;
                let v = std::str::from_utf8(hex)
                    .ok()
                    .filter(|h| h.bytes().all(|c| matches!(c, b'0'..=b'9' | b'A'..=b'F')))
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or(InvalidInput::ParameterValue)?;
                out.push(v);
                i += 3;
            }
            c @ 33..=126 if c != b'=' => {
                out.push(c);
                i += 1;
            }
            _ => return Err(InvalidInput::ParameterValue.into()),
        }
    }
    String::from_utf8(out).map_err(|_| InvalidInput::ParameterValue.into())
}

/// Encode as xtext (RFC 3461 4).
pub fn xtext_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for &c in text.as_bytes() {
        if (33..=126).contains(&c) && c != b'+' && c != b'=' {
            out.push(c as char);
        } else {
            out.push_str(&format!("+{c:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_vectors() {
        for (p, e) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(p.as_bytes()), e);
            assert_eq!(base64_decode(e.as_bytes()).unwrap(), p.as_bytes());
        }
        assert!(base64_decode(b"Zg=").is_err());
        assert!(base64_decode(b"Zh==").is_err());
        assert!(base64_decode(b"Zg==Zg==").is_err());
        assert!(base64_decode(b"Z g=").is_err());
    }

    #[test]
    fn xtext_round_trip() {
        assert_eq!(xtext_decode("a+2Bb+3Dc").unwrap(), "a+b=c");
        assert_eq!(xtext_encode("a+b=c d"), "a+2Bb+3Dc+20d");
        assert!(xtext_decode("a+2").is_err());
        assert!(xtext_decode("a+2b").is_err());
        assert!(xtext_decode("a=b").is_err());
    }
}
