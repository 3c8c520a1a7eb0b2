//! RFC 2047 encoded words (`=?charset?B|Q?text?=`), decoding and encoding.

use crate::charset;
use crate::codec::base64_encode_flat;

/// Longest encoded word we try to recognise (RFC 2047 §2 says 75; be lenient).
const MAX_ENCODED_WORD: usize = 256;

/// Decodes unfolded header text: encoded words anywhere are decoded (RFC 2047
/// §5, leniently), whitespace between adjacent encoded words is dropped
/// (§6.2), consecutive words in one charset are decoded together (so a
/// character split across words survives), other bytes are read as UTF-8
/// (RFC 6532) with a Windows-1252 fallback.
pub(crate) fn decode_text(input: &[u8]) -> String {
    let mut out = String::with_capacity(input.len());
    let mut pending: Option<(String, Vec<u8>)> = None;
    let mut lit_start = 0;
    let mut i = 0;
    while let Some(off) = find_ew_start(&input[i..]) {
        let p = i + off;
        match parse_encoded_word(input, p) {
            Some((cs, bytes, end)) => {
                let between = &input[lit_start..p];
                let ws_only = between
                    .iter()
                    .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'));
                if !(pending.is_some() && ws_only) {
                    flush(&mut out, &mut pending);
                    out.push_str(&charset::decode(None, between));
                }
                match &mut pending {
                    Some((pcs, pbytes)) if pcs.eq_ignore_ascii_case(&cs) => {
                        pbytes.extend_from_slice(&bytes)
                    }
                    _ => {
                        flush(&mut out, &mut pending);
                        pending = Some((cs, bytes));
                    }
                }
                i = end;
                lit_start = end;
            }
            None => i = p + 2,
        }
    }
    flush(&mut out, &mut pending);
    out.push_str(&charset::decode(None, &input[lit_start..]));
    out
}

/// Offset of the next `=?` (memchr on `=`, which is rare in header text).
#[inline]
pub(crate) fn find_ew_start(s: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = memchr::memchr(b'=', &s[from..]) {
        let p = from + i;
        if s.get(p + 1) == Some(&b'?') {
            return Some(p);
        }
        from = p + 1;
    }
    None
}

fn flush(out: &mut String, pending: &mut Option<(String, Vec<u8>)>) {
    if let Some((cs, bytes)) = pending.take() {
        out.push_str(&charset::decode(Some(&cs), &bytes));
    }
}

/// Parses an encoded word starting at `p` (which holds `=?`); returns the
/// charset (language suffix removed), the decoded bytes and the end offset.
fn parse_encoded_word(input: &[u8], p: usize) -> Option<(String, Vec<u8>, usize)> {
    let rest = &input[p + 2..];
    let limit = rest.len().min(MAX_ENCODED_WORD);
    let rest = &rest[..limit];
    let q1 = memchr::memchr(b'?', rest)?;
    let cs = &rest[..q1];
    if cs.is_empty() || cs.iter().any(|b| !b.is_ascii_graphic()) {
        return None;
    }
    let enc = *rest.get(q1 + 1)?;
    if rest.get(q1 + 2) != Some(&b'?') {
        return None;
    }
    let text_start = q1 + 3;
    let text_len = memchr::memmem::find(&rest[text_start..], b"?=")?;
    let text = &rest[text_start..text_start + text_len];
    if text
        .iter()
        .any(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
    {
        return None;
    }
    let bytes = match enc {
        b'B' | b'b' => crate::codec::base64_decode(text),
        b'Q' | b'q' => decode_q(text),
        _ => return None,
    };
    let cs = std::str::from_utf8(cs).ok()?;
    let cs = cs.split('*').next().unwrap_or(cs).to_string();
    Some((cs, bytes, p + 2 + text_start + text_len + 2))
}

fn decode_q(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'_' => out.push(b' '),
            b'=' => {
                let h = text.get(i + 1).and_then(|b| (*b as char).to_digit(16));
                let l = text.get(i + 2).and_then(|b| (*b as char).to_digit(16));
                if let (Some(h), Some(l)) = (h, l) {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                out.push(b'=');
            }
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// Characters a Q-encoded word may carry literally in any position (the
/// RFC 2047 §5(3) phrase subset).
fn q_literal(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'!' | b'*' | b'+' | b'-' | b'/')
}

/// Payload budget of one encoded word: 75 minus `=?utf-8?X?` and `?=`.
const PAYLOAD: usize = 75 - 12;

/// Encodes `text` as a run of UTF-8 encoded words separated by single spaces,
/// each at most 75 characters, never splitting a character. Q is used when
/// most bytes are literal, else B.
pub(crate) fn encode_words(text: &str) -> String {
    let escaped = text.bytes().filter(|&b| !q_literal(b) && b != b' ').count();
    let use_q = escaped * 3 <= text.len();
    let mut out = String::new();
    let mut chunk_start = 0;
    let mut chunk_cost = 0;
    let mut first = true;
    let mut emit = |chunk: &str, out: &mut String| {
        if chunk.is_empty() {
            return;
        }
        if !first {
            out.push(' ');
        }
        first = false;
        if use_q {
            out.push_str("=?utf-8?Q?");
            for b in chunk.bytes() {
                if q_literal(b) {
                    out.push(b as char);
                } else if b == b' ' {
                    out.push('_');
                } else {
                    out.push_str(&format!("={b:02X}"));
                }
            }
        } else {
            out.push_str("=?utf-8?B?");
            base64_encode_flat(chunk.as_bytes(), out);
        }
        out.push_str("?=");
    };
    for (idx, ch) in text.char_indices() {
        let len = ch.len_utf8();
        let cost = if use_q {
            let mut buf = [0u8; 4];
            ch.encode_utf8(&mut buf)
                .bytes()
                .map(|b| if q_literal(b) || b == b' ' { 1 } else { 3 })
                .sum()
        } else {
            len
        };
        let fits = if use_q {
            chunk_cost + cost <= PAYLOAD
        } else {
            (chunk_cost + cost).div_ceil(3) * 4 <= PAYLOAD
        };
        if !fits {
            emit(&text[chunk_start..idx], &mut out);
            chunk_start = idx;
            chunk_cost = 0;
        }
        chunk_cost += cost;
    }
    emit(&text[chunk_start..], &mut out);
    out
}

/// Whether a whitespace-free word of unstructured text must be encoded.
fn word_needs_encoding(w: &str, utf8: bool) -> bool {
    w.len() > 900
        || w.contains("=?")
        || w.bytes()
            .any(|b| !((0x21..0x7f).contains(&b) || (utf8 && b >= 0x80)))
}

/// Encodes unstructured text (RFC 5322 §3.2.5) for a header: words that are
/// printable ASCII stay literal; runs of words needing encoding become
/// encoded words. With `utf8` (RFC 6532), non-ASCII words stay raw. `text`
/// must not contain CR or LF.
pub(crate) fn encode_unstructured(text: &str, utf8: bool) -> String {
    let words: Vec<&str> = text.split(' ').collect();
    let mut out = String::with_capacity(text.len() + 16);
    let mut i = 0;
    while i < words.len() {
        if i > 0 {
            out.push(' ');
        }
        if word_needs_encoding(words[i], utf8) {
            let mut j = i;
            loop {
                // Extend the run over empty words (repeated spaces) when an
                // encoded word follows them: whitespace between two encoded
                // words would be dropped when decoding.
                let mut k = j + 1;
                while k < words.len() && words[k].is_empty() {
                    k += 1;
                }
                if k < words.len() && word_needs_encoding(words[k], utf8) {
                    j = k;
                } else {
                    break;
                }
            }
            out.push_str(&encode_words(&words[i..=j].join(" ")));
            i = j + 1;
        } else {
            out.push_str(words[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_b_and_q() {
        assert_eq!(decode_text(b"=?utf-8?B?w6k=?= x"), "é x");
        assert_eq!(
            decode_text(b"=?ISO-8859-1?Q?caf=E9_au_lait?="),
            "café au lait"
        );
        assert_eq!(decode_text(b"=?utf-8?q?a?= \r\n =?utf-8?q?b?="), "ab");
        assert_eq!(decode_text(b"=?utf-8?q?a?= x =?utf-8?q?b?="), "a x b");
        // A character split across two words.
        assert_eq!(decode_text(b"=?utf-8?Q?=C3?= =?utf-8?Q?=A9?="), "é");
        assert_eq!(decode_text(b"=?utf-8*en?q?hi?="), "hi");
        assert_eq!(decode_text(b"=?broken"), "=?broken");
    }

    #[test]
    fn encode_round_trip() {
        for s in [
            "héllo wörld",
            "日本語のテキスト",
            "plain ascii",
            "mixed ascii and ünïcödé words here",
            "a  b é",
            "=?x?q?y?=",
        ] {
            let enc = encode_unstructured(s, false);
            assert!(enc.is_ascii());
            assert_eq!(decode_text(enc.as_bytes()), s, "{enc}");
        }
        let long: String = "é".repeat(200);
        let enc = encode_words(&long);
        assert!(enc.split(' ').all(|w| w.len() <= 75));
        assert_eq!(decode_text(enc.as_bytes()), long);
    }
}
