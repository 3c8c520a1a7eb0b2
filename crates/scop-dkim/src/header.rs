//! A small, lossless splitter of the raw header block (RFC 5322 section 2.2).
//!
//! DKIM signs header fields byte for byte (simple canonicalization) or after
//! a light normalisation (relaxed), so it works on the raw bytes: each field
//! is kept with its folding and its line terminator. A line terminator is LF
//! with an optional CR before it (mail stored with bare LF is treated as if
//! it had CRLF, as dkimpy, OpenDKIM and mailauth do); a CR not followed by LF
//! is ordinary content.

/// Most header fields looked at; the rest of a larger header block is treated
/// as body-less noise and reported in [`RawHeader::truncated`].
pub const MAX_HEADER_FIELDS: usize = 1000;

/// Largest header block looked at, in bytes.
pub const MAX_HEADER_BYTES: usize = 1 << 20;

/// One header field, as it appears in the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderField<'a> {
    name: &'a [u8],
    raw: &'a [u8],
    colon: usize,
}

impl<'a> HeaderField<'a> {
    /// The field name, without the colon and trailing whitespace.
    pub fn name(&self) -> &'a [u8] {
        self.name
    }

    /// The whole field: name, colon, value with folding, line terminator.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// The raw value: everything after the colon, folding included, without
    /// the final line terminator.
    pub fn value(&self) -> &'a [u8] {
        strip_line_end(&self.raw[self.colon + 1..])
    }

    /// Whether the name equals `name`, ignoring ASCII case.
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name.as_bytes())
    }
}

/// Removes one trailing line terminator (LF or CRLF), if any.
pub(crate) fn strip_line_end(s: &[u8]) -> &[u8] {
    match s {
        [rest @ .., b'\r', b'\n'] | [rest @ .., b'\n'] => rest,
        _ => s,
    }
}

/// The header block of a message, split into fields.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawHeader<'a> {
    /// The fields, in order.
    pub fields: Vec<HeaderField<'a>>,
    /// Offset of the first body byte (after the empty separator line), or
    /// the message length when there is no body.
    pub body_offset: usize,
    /// Lines that are neither a field nor a continuation (e.g. an mbox
    /// `From ` line, or a line without a colon); they are skipped.
    pub malformed_lines: usize,
    /// Whether a limit ([`MAX_HEADER_FIELDS`], [`MAX_HEADER_BYTES`]) stopped
    /// the split early.
    pub truncated: bool,
}

/// Splits `message` (header block, optionally followed by the body) into
/// fields. Never fails: what cannot be understood is counted and skipped.
pub fn split_header(message: &[u8]) -> RawHeader<'_> {
    let mut fields: Vec<HeaderField<'_>> = Vec::new();
    let mut malformed_lines = 0;
    let mut truncated = false;
    // Current field: start offset, colon offset (relative), and whether the
    // previous line extended a field (so continuations attach to it).
    let mut current: Option<(usize, usize)> = None;
    let mut pos = 0;
    fn finish<'m>(
        fields: &mut Vec<HeaderField<'m>>,
        message: &'m [u8],
        start: usize,
        colon: usize,
        end: usize,
    ) {
        let raw = &message[start..end];
        let name = trim_wsp_end(&raw[..colon]);
        fields.push(HeaderField { name, raw, colon });
    }
    let body_offset = loop {
        if pos >= message.len() {
            if let Some((start, colon)) = current.take() {
                finish(&mut fields, message, start, colon, message.len());
            }
            break message.len();
        }
        if pos > MAX_HEADER_BYTES || fields.len() >= MAX_HEADER_FIELDS {
            truncated = true;
            if let Some((start, colon)) = current.take() {
                finish(&mut fields, message, start, colon, pos);
            }
            break message.len();
        }
        let end = match memchr::memchr(b'\n', &message[pos..]) {
            Some(i) => pos + i + 1,
            None => message.len(),
        };
        let line = &message[pos..end];
        let content = strip_line_end(line);
        if content.is_empty() && end > pos && line.ends_with(b"\n") {
            // The empty line separating header and body.
            if let Some((start, colon)) = current.take() {
                finish(&mut fields, message, start, colon, pos);
            }
            break end;
        }
        if matches!(line.first(), Some(b' ' | b'\t')) {
            if current.is_none() {
                malformed_lines += 1;
            }
        } else {
            if let Some((start, colon)) = current.take() {
                finish(&mut fields, message, start, colon, pos);
            }
            match memchr::memchr(b':', content) {
                Some(colon) if is_field_name(trim_wsp_end(&content[..colon])) => {
                    current = Some((pos, colon));
                }
                _ => malformed_lines += 1,
            }
        }
        pos = end;
    };
    RawHeader {
        fields,
        body_offset,
        malformed_lines,
        truncated,
    }
}

/// RFC 5322 section 3.6.8: `field-name = 1*ftext`, printable ASCII but colon.
fn is_field_name(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|&c| (33..=126).contains(&c) && c != b':')
}

pub(crate) fn trim_wsp_end(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_folded_fields_and_body() {
        let msg = b"From: a@b\r\nSubject: one\r\n two\r\nX-Empty:\r\n\r\nbody\r\n";
        let h = split_header(msg);
        assert_eq!(h.fields.len(), 3);
        assert_eq!(h.fields[1].name(), b"Subject");
        assert_eq!(h.fields[1].raw(), b"Subject: one\r\n two\r\n");
        assert_eq!(h.fields[1].value(), b" one\r\n two");
        assert_eq!(h.fields[2].value(), b"");
        assert_eq!(&msg[h.body_offset..], b"body\r\n");
    }

    #[test]
    fn bare_lf_and_odd_lines() {
        let msg = b"From x Mon\n Stray\nA : 1\nB:2\n\nbody";
        let h = split_header(msg);
        assert_eq!(h.malformed_lines, 2);
        assert_eq!(h.fields.len(), 2);
        assert_eq!(h.fields[0].name(), b"A");
        assert_eq!(&msg[h.body_offset..], b"body");
        let h = split_header(b"A: 1\r\nB: 2");
        assert_eq!(h.fields.len(), 2);
        assert_eq!(h.body_offset, 10);
    }

    #[test]
    fn lone_cr_is_content() {
        let h = split_header(b"Subject: a\rFrom: evil\r\n\r\n");
        assert_eq!(h.fields.len(), 1);
        assert_eq!(h.fields[0].value(), b" a\rFrom: evil");
    }
}
