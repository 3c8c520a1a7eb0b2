//! Base64 encoding (RFC 4648 section 4): the standard alphabet, padded,
//! no line breaks. Decoding stays with each protocol, whose rules differ
//! (SMTP AUTH refuses white space, DKIM skips folding white space, MIME
//! skips anything outside the alphabet).

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Appends the base64 of `data` to `out`.
pub fn encode_into(data: &[u8], out: &mut Vec<u8>) {
    let symbol = |n: u32, shift: u32| ALPHABET[(n >> shift) as usize & 63];
    out.reserve(data.len().div_ceil(3) * 4);
    let mut chunks = data.chunks_exact(3);
    for c in &mut chunks {
        let n = (u32::from(c[0]) << 16) | (u32::from(c[1]) << 8) | u32::from(c[2]);
        out.extend_from_slice(&[symbol(n, 18), symbol(n, 12), symbol(n, 6), symbol(n, 0)]);
    }
    match *chunks.remainder() {
        [a] => {
            let n = u32::from(a) << 16;
            out.extend_from_slice(&[symbol(n, 18), symbol(n, 12), b'=', b'=']);
        }
        [a, b] => {
            let n = (u32::from(a) << 16) | (u32::from(b) << 8);
            out.extend_from_slice(&[symbol(n, 18), symbol(n, 12), symbol(n, 6), b'=']);
        }
        _ => {}
    }
}

/// The base64 of `data`.
pub fn encode(data: &[u8]) -> String {
    let mut out = Vec::new();
    encode_into(data, &mut out);
    String::from_utf8(out).expect("the base64 alphabet is ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc_4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encode(input.as_bytes()), want);
        }
        assert_eq!(encode(&[0xfb, 0xff, 0xbf]), "+/+/");
    }

    proptest! {
        /// Four symbols per three bytes (padded), and the bits come back
        /// when decoded the plain way.
        #[test]
        fn encodes_every_bit(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let text = encode(&data);
            prop_assert_eq!(text.len(), data.len().div_ceil(3) * 4);
            let mut bits = 0u32;
            let mut n = 0;
            let mut back = Vec::new();
            for c in text.bytes().take_while(|&c| c != b'=') {
                let v = ALPHABET.iter().position(|&a| a == c).unwrap() as u32;
                bits = (bits << 6) | v;
                n += 6;
                if n >= 8 {
                    n -= 8;
                    back.push((bits >> n) as u8);
                }
            }
            prop_assert_eq!(back, data);
        }
    }
}
