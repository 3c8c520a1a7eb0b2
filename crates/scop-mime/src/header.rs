//! Header fields (RFC 5322 §2.2): names, raw values, unfolding (§2.2.3) and
//! canonical folding.

use std::borrow::Cow;

use crate::address::{self, Address};
use crate::bytes::{Bytes, Owner};
use crate::date::{self, DateTime};
use crate::limits::PREFERRED_LINE_LENGTH;

/// One header field (RFC 5322 §2.2): a name and the raw value after the
/// colon, folding kept. Both borrow from the input.
#[derive(Clone)]
pub struct Header<'a> {
    /// The whole field, name through value, final line break excluded.
    pub(crate) field: Bytes<'a>,
    pub(crate) name_len: usize,
    pub(crate) value_start: usize,
}

impl std::fmt::Debug for Header<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.name(), self.raw_value().escape_ascii())
    }
}

impl<'a> Header<'a> {
    /// The field name as written (RFC 5322 §3.6.8 `field-name`: printable
    /// ASCII except colon), without whitespace before the colon.
    pub fn name(&self) -> &str {
        std::str::from_utf8(self.field.get(..self.name_len).unwrap_or(&[])).unwrap_or("")
    }

    /// The whole field exactly as in the input (name, any whitespace before
    /// the colon, colon, value with folding), final line break excluded; what
    /// DKIM `simple` header canonicalisation needs (RFC 6376 §3.4.1).
    pub fn raw_field(&self) -> &[u8] {
        &self.field
    }

    /// Whether the name equals `name`, ignoring ASCII case.
    pub fn is(&self, name: &str) -> bool {
        self.field
            .get(..self.name_len)
            .is_some_and(|n| n.eq_ignore_ascii_case(name.as_bytes()))
    }

    /// The bytes after the colon up to the end of the field, folding line
    /// breaks kept as in the input (LF or CRLF), final line break excluded.
    pub fn raw_value(&self) -> &[u8] {
        self.field.get(self.value_start..).unwrap_or(&[])
    }

    /// The value with folding removed (RFC 5322 §2.2.3: each line break
    /// followed by whitespace is deleted).
    pub fn unfolded(&self) -> Cow<'_, [u8]> {
        unfold(self.raw_value())
    }

    /// Unfolded, RFC 2047-decoded, charset-converted (lossy) text, with
    /// surrounding whitespace trimmed.
    pub fn text(&self) -> String {
        let u = self.unfolded();
        let s = crate::rfc2047::decode_text(&u);
        let t = s.trim_matches(|c| c == ' ' || c == '\t');
        if t.len() == s.len() { s } else { t.to_string() }
    }

    /// The value read as an address list (RFC 5322 §3.4), groups kept.
    pub fn addresses(&self) -> Vec<Address> {
        address::parse_address_list(&self.unfolded())
    }

    /// The value read as a date-time (RFC 5322 §3.3, obsolete forms §4.3).
    pub fn date(&self) -> Option<DateTime> {
        date::parse_date(&self.unfolded())
    }

    /// The message identifiers (RFC 5322 §3.6.4) without angle brackets.
    pub fn message_ids(&self) -> Vec<String> {
        parse_message_ids(&self.unfolded())
    }

    /// A copy that owns its bytes.
    pub fn into_owned(self) -> Header<'static> {
        Header {
            field: Bytes::Owned(self.field.to_vec()),
            name_len: self.name_len,
            value_start: self.value_start,
        }
    }

    pub(crate) fn into_shared(self, owner: &Owner) -> Header<'static> {
        Header {
            field: self.field.into_owned(owner),
            name_len: self.name_len,
            value_start: self.value_start,
        }
    }
}

/// Removes every LF (and a CR right before it) that is followed by a space or
/// tab. Line breaks inside parsed values are always followed by whitespace.
pub(crate) fn unfold(v: &[u8]) -> Cow<'_, [u8]> {
    let Some(first) = memchr::memchr(b'\n', v) else {
        return Cow::Borrowed(v);
    };
    let mut out = Vec::with_capacity(v.len());
    let mut last = 0;
    for i in memchr::memchr_iter(b'\n', &v[first..]).map(|i| i + first) {
        let mut end = i;
        if end > last && v[end - 1] == b'\r' {
            end -= 1;
        }
        out.extend_from_slice(&v[last..end]);
        last = i + 1;
    }
    out.extend_from_slice(&v[last..]);
    Cow::Owned(out)
}

/// Writes `name:value` folded, CRLF-terminated. `value` is unfolded; a CRLF
/// is inserted before a space or tab only where a line would exceed 78
/// characters, so unfolding the output gives `value` back. Tokens without
/// whitespace are never split, so a line may exceed 78 (or even 998).
pub(crate) fn write_folded(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.push(b':');
    let mut col = name.len() + 1;
    if col + value.len() <= PREFERRED_LINE_LENGTH {
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
        return;
    }
    // Chunks start at a whitespace byte that is followed by non-whitespace.
    let mut written_on_line = false;
    let mut start = 0;
    let n = value.len();
    let mut i = 1;
    loop {
        let at_break = i >= n
            || (matches!(value[i], b' ' | b'\t')
                && i + 1 < n
                && !matches!(value[i + 1], b' ' | b'\t'));
        if at_break {
            let chunk = &value[start..i.min(n)];
            // Break before this chunk when the line would grow too long:
            // after earlier content, or right after `name:` when the chunk
            // starts with whitespace and fits on a line of its own.
            let may_break = written_on_line
                || (start == 0
                    && matches!(chunk.first(), Some(b' ' | b'\t'))
                    && chunk.len() <= PREFERRED_LINE_LENGTH);
            if may_break && col + chunk.len() > PREFERRED_LINE_LENGTH {
                out.extend_from_slice(b"\r\n");
                col = 0;
            }
            out.extend_from_slice(chunk);
            col += chunk.len();
            if chunk.iter().any(|b| !matches!(b, b' ' | b'\t')) {
                written_on_line = true;
            }
            start = i;
            if i >= n {
                break;
            }
        }
        i += 1;
    }
    out.extend_from_slice(b"\r\n");
}

/// Message identifiers (RFC 5322 §3.6.4), leniently: every `<...>` outside
/// comments and quoted strings; failing that, whitespace-separated words.
pub(crate) fn parse_message_ids(v: &[u8]) -> Vec<String> {
    let mut ids = Vec::new();
    let mut i = 0;
    let mut depth = 0usize;
    while i < v.len() {
        match v[i] {
            b'(' => depth += 1,
            b')' => depth = depth.saturating_sub(1),
            b'\\' if depth > 0 => i += 1,
            b'<' if depth == 0 => {
                if let Some(end) = memchr::memchr(b'>', &v[i + 1..]) {
                    // Drop whitespace, quotes and comments inside the brackets
                    // (obsolete syntax, RFC 5322 §4.5.4).
                    let mut id = Vec::with_capacity(end);
                    let mut cdepth = 0usize;
                    for &b in &v[i + 1..i + 1 + end] {
                        match b {
                            b'(' => cdepth += 1,
                            b')' if cdepth > 0 => cdepth -= 1,
                            _ if cdepth > 0 => {}
                            b' ' | b'\t' | b'\r' | b'\n' | b'"' => {}
                            _ => id.push(b),
                        }
                    }
                    if !id.is_empty() {
                        ids.push(String::from_utf8_lossy(&id).into_owned());
                    }
                    i += end + 1;
                } else {
                    break;
                }
            }
            _ => {}
        }
        i += 1;
    }
    if ids.is_empty() {
        for w in v.split(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b',')) {
            if w.contains(&b'@') {
                let w: Vec<u8> = w
                    .iter()
                    .copied()
                    .filter(|b| !matches!(b, b'<' | b'>'))
                    .collect();
                ids.push(String::from_utf8_lossy(&w).into_owned());
            }
        }
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfolding() {
        assert_eq!(&*unfold(b" a\r\n b\n\tc"), b" a b\tc");
        assert_eq!(&*unfold(b" a\r\r\n b"), b" a\r b");
    }

    #[test]
    fn folding_is_reversible_and_short() {
        let v: Vec<u8> = std::iter::repeat_n(&b" word"[..], 60)
            .flatten()
            .copied()
            .collect();
        let mut out = Vec::new();
        write_folded(&mut out, b"Subject", &v);
        for line in out.split(|&b| b == b'\n') {
            assert!(line.len() <= 79, "{}", line.escape_ascii());
        }
        let body = &out[b"Subject:".len()..out.len() - 2];
        assert_eq!(&*unfold(body), &v[..]);
        let mut short = Vec::new();
        write_folded(&mut short, b"A", b" b");
        assert_eq!(short, b"A: b\r\n");
        let mut long = Vec::new();
        let token = vec![b'x'; 120];
        write_folded(&mut long, b"X", &[&b" "[..], &token, b" y"].concat());
        assert_eq!(long, [&b"X: "[..], &token, b"\r\n y\r\n"].concat());
    }

    #[test]
    fn message_ids() {
        assert_eq!(
            parse_message_ids(b" <a@b> (c <x@y>) <d@e>"),
            vec!["a@b", "d@e"]
        );
        assert_eq!(parse_message_ids(b" a@b"), vec!["a@b"]);
    }
}
