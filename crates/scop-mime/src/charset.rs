//! Charset conversion to UTF-8 (RFC 2046 §4.1.2 charset parameter, RFC 2047
//! §2 charset of encoded words), through `encoding_rs` (WHATWG labels).

use std::borrow::Cow;

/// Decodes `bytes` labelled `label` into UTF-8, lossily. Unknown labels are
/// read as UTF-8 (lossy). US-ASCII and absent charsets are read as UTF-8 when
/// valid, else Windows-1252 (the usual reality of unlabelled 8-bit text).
pub(crate) fn decode<'b>(label: Option<&str>, bytes: &'b [u8]) -> Cow<'b, str> {
    let label = label.map(str::trim).unwrap_or("");
    let is = |s: &str| label.eq_ignore_ascii_case(s);
    let utf8 = is("utf-8") || is("utf8");
    if label.is_empty() || utf8 || is("us-ascii") || is("ascii") {
        return match std::str::from_utf8(bytes) {
            Ok(s) => Cow::Borrowed(s),
            Err(_) if utf8 => String::from_utf8_lossy(bytes),
            Err(_) => {
                encoding_rs::WINDOWS_1252
                    .decode_without_bom_handling(bytes)
                    .0
            }
        };
    }
    match encoding_rs::Encoding::for_label(label.as_bytes()) {
        Some(enc) => enc.decode_without_bom_handling(bytes).0,
        None => String::from_utf8_lossy(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn charsets() {
        assert_eq!(decode(Some("iso-8859-1"), b"caf\xe9"), "café");
        assert_eq!(
            decode(Some("koi8-r"), b"\xf0\xd2\xc9\xd7\xc5\xd4"),
            "Привет"
        );
        assert_eq!(decode(None, b"caf\xe9"), "café");
        assert_eq!(decode(Some("x-unknown"), "é".as_bytes()), "é");
    }
}
