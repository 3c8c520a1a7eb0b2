//! Content-Type (RFC 2045 §5, RFC 2231 parameter continuations and charsets)
//! and Content-Transfer-Encoding (RFC 2045 §6).

use std::collections::BTreeMap;

use crate::limits::MAX_PARAM_SECTIONS;

/// A media type with parameters (RFC 2045 §5.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ContentType {
    /// Lowercase `type/subtype`.
    pub mime_type: String,
    /// Parameters in order of first appearance; names lowercased, RFC 2231
    /// sections merged and percent/charset-decoded, RFC 2047 encoded words in
    /// values (other than `boundary`) decoded.
    pub params: Vec<(String, String)>,
}

impl ContentType {
    /// `text/plain; charset=us-ascii`, the RFC 2045 §5.2 default.
    pub fn text_plain() -> Self {
        ContentType {
            mime_type: "text/plain".into(),
            params: vec![("charset".into(), "us-ascii".into())],
        }
    }

    /// `message/rfc822`, the default inside multipart/digest (RFC 2046 §5.1.5).
    pub fn message_rfc822() -> Self {
        ContentType {
            mime_type: "message/rfc822".into(),
            params: Vec::new(),
        }
    }

    /// A parameter value by (case-insensitive) name.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The top-level type (`text` of `text/plain`).
    pub fn main_type(&self) -> &str {
        self.mime_type.split('/').next().unwrap_or("")
    }

    /// The subtype (`plain` of `text/plain`).
    pub fn subtype(&self) -> &str {
        self.mime_type.split_once('/').map(|(_, s)| s).unwrap_or("")
    }

    /// Whether this is `multipart/*`.
    pub fn is_multipart(&self) -> bool {
        self.main_type() == "multipart"
    }

    /// Parses a Content-Type value (unfolded bytes after the colon); `None`
    /// when no `type/subtype` can be read.
    pub fn parse(value: &[u8]) -> Option<ContentType> {
        parse_content_type(value)
    }

    /// Formats as a header value (with a leading space): parameters as
    /// tokens, quoted strings, or RFC 2231 `name*=utf-8''...` when a value is
    /// not printable ASCII, so that [`ContentType::parse`] reads the same
    /// value back.
    pub fn to_header_value(&self) -> String {
        let mut s = String::with_capacity(64);
        s.push(' ');
        s.push_str(&self.mime_type);
        for (n, v) in &self.params {
            s.push_str("; ");
            push_param(&mut s, n, v);
        }
        s
    }
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(&b)
}

/// Appends `name=value` in the form that parses back to `value`.
pub(crate) fn push_param(s: &mut String, name: &str, value: &str) {
    let printable = value.bytes().all(|b| b == b' ' || b.is_ascii_graphic());
    if printable && value.len() <= 60 && !value.contains("=?") {
        s.push_str(name);
        s.push('=');
        if !value.is_empty() && value.bytes().all(is_token_byte) {
            s.push_str(value);
        } else {
            s.push('"');
            for c in value.chars() {
                if c == '"' || c == '\\' {
                    s.push('\\');
                }
                s.push(c);
            }
            s.push('"');
        }
        return;
    }
    // RFC 2231 §4, split into sections (§3) of bounded length so that
    // folding can keep lines short.
    let pieces: Vec<String> = value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    // Sections of about 48 characters, larger when that would exceed the
    // section limit the parser applies.
    let total: usize = pieces.iter().map(String::len).sum();
    let size = 48.max(total / (MAX_PARAM_SECTIONS - 1) + 3);
    let mut enc = String::new();
    let mut sections = Vec::new();
    for piece in pieces {
        if !enc.is_empty() && enc.len() + piece.len() > size {
            sections.push(std::mem::take(&mut enc));
        }
        enc.push_str(&piece);
    }
    sections.push(enc);
    if sections.len() == 1 {
        s.push_str(&format!("{name}*=utf-8''{}", sections[0]));
    } else {
        for (i, sec) in sections.iter().enumerate() {
            if i > 0 {
                s.push_str("; ");
            }
            if i == 0 {
                s.push_str(&format!("{name}*0*=utf-8''{sec}"));
            } else {
                s.push_str(&format!("{name}*{i}*={sec}"));
            }
        }
    }
}

struct Lexer<'b> {
    v: &'b [u8],
    i: usize,
}

impl<'b> Lexer<'b> {
    fn skip_cfws(&mut self) {
        while self.i < self.v.len() {
            match self.v[self.i] {
                b' ' | b'\t' | b'\r' | b'\n' => self.i += 1,
                b'(' => self.skip_comment(),
                _ => break,
            }
        }
    }

    fn skip_comment(&mut self) {
        let mut depth = 0usize;
        while self.i < self.v.len() {
            match self.v[self.i] {
                b'(' => depth += 1,
                b')' => {
                    depth -= 1;
                    if depth == 0 {
                        self.i += 1;
                        return;
                    }
                }
                b'\\' if self.i + 1 < self.v.len() => self.i += 1,
                _ => {}
            }
            self.i += 1;
        }
    }

    fn token(&mut self) -> &'b [u8] {
        let s = self.i;
        while self.i < self.v.len() && is_token_byte(self.v[self.i]) {
            self.i += 1;
        }
        &self.v[s..self.i]
    }

    fn peek(&self) -> Option<u8> {
        self.v.get(self.i).copied()
    }

    fn quoted(&mut self) -> Vec<u8> {
        // At '"'.
        self.i += 1;
        let mut out = Vec::new();
        while self.i < self.v.len() {
            match self.v[self.i] {
                b'"' => {
                    self.i += 1;
                    return out;
                }
                b'\\' if self.i + 1 < self.v.len() => {
                    out.push(self.v[self.i + 1]);
                    self.i += 2;
                    continue;
                }
                b => out.push(b),
            }
            self.i += 1;
        }
        out
    }
}

fn parse_content_type(v: &[u8]) -> Option<ContentType> {
    let mut lx = Lexer { v, i: 0 };
    lx.skip_cfws();
    let t = lx.token();
    lx.skip_cfws();
    if t.is_empty() || lx.peek() != Some(b'/') {
        return None;
    }
    lx.i += 1;
    lx.skip_cfws();
    let st = lx.token();
    if st.is_empty() {
        return None;
    }
    let mut mime_type = String::with_capacity(t.len() + st.len() + 1);
    mime_type.push_str(&String::from_utf8_lossy(t).to_ascii_lowercase());
    mime_type.push('/');
    mime_type.push_str(&String::from_utf8_lossy(st).to_ascii_lowercase());
    let raw = parse_params(&mut lx);
    Some(ContentType {
        mime_type,
        params: merge_params(raw),
    })
}

/// A Content-Disposition (RFC 2183 §2, RFC 2231 parameters).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ContentDisposition {
    /// Lowercase disposition type (`inline`, `attachment`, ...).
    pub kind: String,
    /// Parameters, merged and decoded like [`ContentType::params`].
    pub params: Vec<(String, String)>,
}

impl ContentDisposition {
    /// Parses a Content-Disposition value (unfolded bytes after the colon).
    pub fn parse(value: &[u8]) -> Option<ContentDisposition> {
        let mut lx = Lexer { v: value, i: 0 };
        lx.skip_cfws();
        let t = lx.token();
        if t.is_empty() {
            return None;
        }
        let kind = String::from_utf8_lossy(t).to_ascii_lowercase();
        let raw = parse_params(&mut lx);
        Some(ContentDisposition {
            kind,
            params: merge_params(raw),
        })
    }

    /// A parameter value by (case-insensitive) name.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Raw `;name=value` pairs: (lowercased name, value bytes).
fn parse_params(lx: &mut Lexer<'_>) -> Vec<(String, Vec<u8>)> {
    let mut raw = Vec::new();
    loop {
        // Find the next ';'.
        lx.skip_cfws();
        match lx.peek() {
            None => break,
            Some(b';') => lx.i += 1,
            Some(b'"') => {
                lx.quoted();
                continue;
            }
            Some(_) => {
                lx.i += 1;
                continue;
            }
        }
        lx.skip_cfws();
        let name = lx.token();
        lx.skip_cfws();
        if name.is_empty() || lx.peek() != Some(b'=') {
            continue;
        }
        lx.i += 1;
        lx.skip_cfws();
        let value = if lx.peek() == Some(b'"') {
            lx.quoted()
        } else {
            let s = lx.i;
            while lx.i < lx.v.len() && !matches!(lx.v[lx.i], b';' | b'(' | b'"') {
                lx.i += 1;
            }
            let mut val = &lx.v[s..lx.i];
            while let [rest @ .., b' ' | b'\t' | b'\r' | b'\n'] = val {
                val = rest;
            }
            val.to_vec()
        };
        raw.push((String::from_utf8_lossy(name).to_ascii_lowercase(), value));
    }
    raw
}

fn percent_decode(v: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'%'
            && let (Some(h), Some(l)) = (
                v.get(i + 1).and_then(|b| (*b as char).to_digit(16)),
                v.get(i + 2).and_then(|b| (*b as char).to_digit(16)),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(v[i]);
        i += 1;
    }
}

enum Slot {
    Plain(Vec<u8>),
    Sections(BTreeMap<usize, (Vec<u8>, bool)>),
}

fn merge_params(raw: Vec<(String, Vec<u8>)>) -> Vec<(String, String)> {
    let mut order: Vec<String> = Vec::new();
    let mut seen: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    let mut plain: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut ext: BTreeMap<String, BTreeMap<usize, (Vec<u8>, bool)>> = BTreeMap::new();
    for (name, value) in raw {
        let (base, extended) = match name.strip_suffix('*') {
            Some(b) => (b.to_string(), true),
            None => (name.clone(), false),
        };
        let (base, section) = match base.rsplit_once('*') {
            Some((b, n))
                if !n.is_empty() && n.len() <= 4 && n.bytes().all(|c| c.is_ascii_digit()) =>
            {
                (b.to_string(), n.parse::<usize>().ok())
            }
            _ => (base, None),
        };
        if seen.insert(base.clone()) {
            order.push(base.clone());
        }
        if section.is_none() && !extended {
            plain.entry(base).or_insert(value);
        } else {
            let secs = ext.entry(base).or_default();
            let idx = section.unwrap_or(0);
            if secs.len() < MAX_PARAM_SECTIONS && idx < MAX_PARAM_SECTIONS {
                secs.entry(idx).or_insert((value, extended));
            }
        }
    }
    let mut out = Vec::with_capacity(order.len());
    for name in order {
        let slot = match ext.remove(&name) {
            Some(secs) => Slot::Sections(secs),
            None => match plain.remove(&name) {
                Some(v) => Slot::Plain(v),
                None => continue,
            },
        };
        let value = match slot {
            Slot::Plain(v) => {
                if name != "boundary" && crate::rfc2047::find_ew_start(&v).is_some() {
                    crate::rfc2047::decode_text(&v)
                } else {
                    crate::charset::decode(Some("utf-8"), &v).into_owned()
                }
            }
            Slot::Sections(secs) => {
                let mut bytes = Vec::new();
                let mut charset: Option<String> = None;
                // Sections are joined in numeric order; gaps are tolerated.
                for (i, (v, extended)) in secs.into_values().enumerate() {
                    if extended {
                        let mut v = &v[..];
                        if i == 0 {
                            // charset'language'value
                            let mut parts = v.splitn(3, |&b| b == b'\'');
                            if let (Some(cs), Some(_lang), Some(rest)) =
                                (parts.next(), parts.next(), parts.next())
                            {
                                if !cs.is_empty() {
                                    charset = Some(String::from_utf8_lossy(cs).into_owned());
                                }
                                v = rest;
                            }
                        }
                        percent_decode(v, &mut bytes);
                    } else {
                        bytes.extend_from_slice(&v);
                    }
                }
                crate::charset::decode(Some(charset.as_deref().unwrap_or("utf-8")), &bytes)
                    .into_owned()
            }
        };
        out.push((name, value));
    }
    out
}

/// A Content-Transfer-Encoding (RFC 2045 §6.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum TransferEncoding {
    /// `7bit` (also the default when the field is absent).
    #[default]
    SevenBit,
    /// `8bit`.
    EightBit,
    /// `binary`: the body is kept byte-exact.
    Binary,
    /// `quoted-printable` (RFC 2045 §6.7).
    QuotedPrintable,
    /// `base64` (RFC 2045 §6.8).
    Base64,
    /// Anything else, lowercased; the body is treated like 8bit.
    Other(String),
}

impl TransferEncoding {
    /// Reads a Content-Transfer-Encoding value (comments and case ignored).
    pub fn parse(value: &[u8]) -> TransferEncoding {
        let mut lx = Lexer { v: value, i: 0 };
        lx.skip_cfws();
        let s = lx.i;
        while lx.i < value.len()
            && !matches!(value[lx.i], b' ' | b'\t' | b'\r' | b'\n' | b'(' | b';')
        {
            lx.i += 1;
        }
        let tok = &value[s..lx.i];
        if tok.eq_ignore_ascii_case(b"7bit") || tok.is_empty() {
            TransferEncoding::SevenBit
        } else if tok.eq_ignore_ascii_case(b"8bit") {
            TransferEncoding::EightBit
        } else if tok.eq_ignore_ascii_case(b"binary") {
            TransferEncoding::Binary
        } else if tok.eq_ignore_ascii_case(b"quoted-printable") {
            TransferEncoding::QuotedPrintable
        } else if tok.eq_ignore_ascii_case(b"base64") {
            TransferEncoding::Base64
        } else {
            TransferEncoding::Other(String::from_utf8_lossy(tok).to_ascii_lowercase())
        }
    }

    /// The canonical name.
    pub fn as_str(&self) -> &str {
        match self {
            TransferEncoding::SevenBit => "7bit",
            TransferEncoding::EightBit => "8bit",
            TransferEncoding::Binary => "binary",
            TransferEncoding::QuotedPrintable => "quoted-printable",
            TransferEncoding::Base64 => "base64",
            TransferEncoding::Other(s) => s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ct(s: &str) -> ContentType {
        ContentType::parse(s.as_bytes()).expect("parses")
    }

    #[test]
    fn basic() {
        let c = ct(" Text/HTML; Charset=\"UTF-8\" (comment); format=flowed");
        assert_eq!(c.mime_type, "text/html");
        assert_eq!(c.param("charset"), Some("UTF-8"));
        assert_eq!(c.param("format"), Some("flowed"));
        assert!(ContentType::parse(b"text").is_none());
        // Found by fuzzing: a comment ending in a lone backslash.
        assert!(ContentType::parse(b"text/plain; a=b (x\\").is_some());
        assert!(ContentType::parse(b"(\\").is_none());
        assert_eq!(TransferEncoding::parse(b"(\\"), TransferEncoding::SevenBit);
    }

    #[test]
    fn rfc2231() {
        let c = ct("application/x; filename*0*=utf-8''%E2%82%AC; filename*1=\" rates.txt\"");
        assert_eq!(c.param("filename"), Some("€ rates.txt"));
        let c = ct("application/x; title*=us-ascii'en-us'This%20is%20%2A%2A%2Afun%2A%2A%2A");
        assert_eq!(c.param("title"), Some("This is ***fun***"));
        let c = ct("application/x; name=\"=?utf-8?B?w6k=?=\"");
        assert_eq!(c.param("name"), Some("é"));
    }

    #[test]
    fn format_round_trip() {
        for v in [
            "plain",
            "with space",
            "quote\"back\\",
            "é€",
            "=?x?q?y?=",
            "",
            &"long é".repeat(30),
            &"é".repeat(20_000),
        ] {
            let c = ContentType {
                mime_type: "a/b".into(),
                params: vec![("name".into(), v.to_string())],
            };
            let s = c.to_header_value();
            assert_eq!(ContentType::parse(s.as_bytes()), Some(c), "{s}");
        }
    }

    #[test]
    fn cte() {
        assert_eq!(
            TransferEncoding::parse(b" Base64 "),
            TransferEncoding::Base64
        );
        assert_eq!(
            TransferEncoding::parse(b"x-uue"),
            TransferEncoding::Other("x-uue".into())
        );
    }
}
