//! The message tree (RFC 5322 §2.1 message = header block + body; RFC 2045
//! entities; RFC 2046 §5.1 multipart, §5.2.1 message/rfc822) and its parser.

use std::borrow::Cow;

use crate::bytes::{Bytes, Owner};
use crate::codec;
use crate::content_type::{ContentDisposition, ContentType, TransferEncoding};
use crate::header::Header;
use crate::limits::*;
use crate::{Diagnostic, DiagnosticKind, ParseError, Parsed};

/// A message or body part (RFC 2045 §2.4 entity): header fields and a body.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    pub(crate) raw: Bytes<'a>,
    pub(crate) body_start: usize,
    pub(crate) headers: Vec<Header<'a>>,
    pub(crate) body: Body<'a>,
    pub(crate) content_type: ContentType,
}

/// The body of an entity.
#[derive(Debug, Clone)]
pub enum Body<'a> {
    /// A discrete body (RFC 2046 §4), with its transfer encoding decoded.
    Leaf(Leaf<'a>),
    /// A multipart body (RFC 2046 §5.1).
    Multipart(Multipart<'a>),
    /// An encapsulated message (RFC 2046 §5.2.1 message/rfc822, RFC 6532 §3.7
    /// message/global).
    Message(Box<Message<'a>>),
}

/// A discrete body (RFC 2045 §6): raw bytes and decoded bytes.
#[derive(Debug, Clone)]
pub struct Leaf<'a> {
    pub(crate) raw: Bytes<'a>,
    pub(crate) decoded: Bytes<'a>,
    pub(crate) encoding: TransferEncoding,
    pub(crate) is_text: bool,
    pub(crate) charset: Option<String>,
}

/// A multipart body (RFC 2046 §5.1.1).
#[derive(Debug, Clone)]
pub struct Multipart<'a> {
    pub(crate) boundary: String,
    pub(crate) preamble: Bytes<'a>,
    pub(crate) epilogue: Bytes<'a>,
    pub(crate) parts: Vec<Message<'a>>,
    pub(crate) closed: bool,
}

impl<'a> Message<'a> {
    /// The exact input bytes of this message or part.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// A copy of [`Message::raw`].
    pub fn to_bytes(&self) -> Vec<u8> {
        self.raw.to_vec()
    }

    /// The input bytes of the header block (with its final blank line, if
    /// any; an mbox `From ` line is included at the top level).
    pub fn raw_headers(&self) -> &[u8] {
        self.raw.get(..self.body_start).unwrap_or(&[])
    }

    /// The input bytes of the body (after the blank line), undecoded.
    pub fn raw_body(&self) -> &[u8] {
        self.raw.get(self.body_start..).unwrap_or(&[])
    }

    /// Header fields in order, duplicates kept.
    pub fn headers(&self) -> &[Header<'a>] {
        &self.headers
    }

    /// The first field with this name (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&Header<'a>> {
        self.headers.iter().find(|h| h.is(name))
    }

    /// Every field with this name, in order.
    pub fn headers_named<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s Header<'a>> + 's {
        self.headers.iter().filter(move |h| h.is(name))
    }

    /// The effective content type (RFC 2045 §5.2 defaults:
    /// `text/plain; charset=us-ascii`, or `message/rfc822` inside
    /// multipart/digest, RFC 2046 §5.1.5).
    pub fn content_type(&self) -> ContentType {
        self.content_type.clone()
    }

    /// The effective content type, borrowed.
    pub fn content_type_ref(&self) -> &ContentType {
        &self.content_type
    }

    /// The Content-Disposition field, parsed (RFC 2183).
    pub fn content_disposition(&self) -> Option<ContentDisposition> {
        self.header("content-disposition")
            .and_then(|h| ContentDisposition::parse(&h.unfolded()))
    }

    /// The file name: Content-Disposition `filename`, else Content-Type
    /// `name` (RFC 2231 and RFC 2047 decoded).
    pub fn filename(&self) -> Option<String> {
        self.content_disposition()
            .and_then(|d| d.param("filename").map(str::to_string))
            .or_else(|| self.content_type.param("name").map(str::to_string))
    }

    /// The body.
    pub fn body(&self) -> &Body<'a> {
        &self.body
    }

    /// A copy that owns its bytes: the input is copied once and shared by
    /// every part.
    pub fn into_owned(self) -> Message<'static> {
        let owner = Owner::new(&self.raw);
        self.into_shared(&owner)
    }

    fn into_shared(self, owner: &Owner) -> Message<'static> {
        Message {
            raw: self.raw.into_owned(owner),
            body_start: self.body_start,
            headers: self
                .headers
                .into_iter()
                .map(|h| h.into_shared(owner))
                .collect(),
            body: match self.body {
                Body::Leaf(l) => Body::Leaf(Leaf {
                    raw: l.raw.into_owned(owner),
                    decoded: l.decoded.into_owned(owner),
                    encoding: l.encoding,
                    is_text: l.is_text,
                    charset: l.charset,
                }),
                Body::Multipart(m) => Body::Multipart(Multipart {
                    boundary: m.boundary,
                    preamble: m.preamble.into_owned(owner),
                    epilogue: m.epilogue.into_owned(owner),
                    parts: m.parts.into_iter().map(|p| p.into_shared(owner)).collect(),
                    closed: m.closed,
                }),
                Body::Message(m) => Body::Message(Box::new(m.into_shared(owner))),
            },
            content_type: self.content_type,
        }
    }

    /// Visits this entity and every descendant, depth first, in order.
    pub fn walk<'s>(&'s self, f: &mut dyn FnMut(&'s Message<'a>)) {
        f(self);
        match &self.body {
            Body::Leaf(_) => {}
            Body::Multipart(m) => m.parts.iter().for_each(|p| p.walk(f)),
            Body::Message(m) => m.walk(f),
        }
    }
}

impl Leaf<'_> {
    /// The body with its transfer encoding removed (see the crate docs for
    /// line endings).
    pub fn decoded(&self) -> &[u8] {
        &self.decoded
    }

    /// The body as in the input, still transfer-encoded.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// For `text/*` parts, the decoded body converted from its charset to
    /// UTF-8 (lossy); `None` for other types.
    pub fn text(&self) -> Option<Cow<'_, str>> {
        self.is_text
            .then(|| crate::charset::decode(self.charset.as_deref(), &self.decoded))
    }

    /// The declared Content-Transfer-Encoding (RFC 2045 §6.1; 7bit when
    /// absent).
    pub fn transfer_encoding(&self) -> TransferEncoding {
        self.encoding.clone()
    }
}

impl<'a> Multipart<'a> {
    /// The body parts, in order.
    pub fn parts(&self) -> &[Message<'a>] {
        &self.parts
    }

    /// Text before the first delimiter line (CRLF-normalised; the line break
    /// right before the delimiter belongs to the delimiter).
    pub fn preamble(&self) -> &[u8] {
        &self.preamble
    }

    /// Text after the close delimiter line (CRLF-normalised).
    pub fn epilogue(&self) -> &[u8] {
        &self.epilogue
    }

    /// The boundary parameter.
    pub fn boundary(&self) -> &str {
        &self.boundary
    }

    /// Whether a close delimiter was found.
    pub fn is_closed(&self) -> bool {
        self.closed
    }
}

/// Returns (content end, next line start) of the line starting at `pos`.
#[inline]
fn line_at(input: &[u8], pos: usize, end: usize) -> (usize, usize) {
    match memchr::memchr(b'\n', &input[pos..end]) {
        Some(i) => {
            let nl = pos + i;
            let le = if nl > pos && input[nl - 1] == b'\r' {
                nl - 1
            } else {
                nl
            };
            (le, nl + 1)
        }
        None => (end, end),
    }
}

/// For a field line, (name length, colon index): RFC 5322 §3.6.8 field-name
/// (printable ASCII except colon), optional whitespace (obsolete, §4.5),
/// colon.
#[inline]
fn field_name(line: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < line.len() && (33..=126).contains(&line[i]) && line[i] != b':' {
        i += 1;
    }
    if i == 0 {
        return None;
    }
    let name_len = i;
    while i < line.len() && (line[i] == b' ' || line[i] == b'\t') {
        i += 1;
    }
    (line.get(i) == Some(&b':')).then_some((name_len, i))
}

/// Whether `p` in `data` starts a delimiter line for `delim` (`--boundary`):
/// `delim`, optional `--`, optional spaces/tabs, then a line break or the
/// end. Returns (is close delimiter, start of the next line).
#[inline]
pub(crate) fn delimiter_at(data: &[u8], p: usize, delim: &[u8]) -> Option<(bool, usize)> {
    if p != 0 && data[p - 1] != b'\n' {
        return None;
    }
    let mut r = p + delim.len();
    let close = data[r..].starts_with(b"--");
    if close {
        r += 2;
    }
    while r < data.len() && (data[r] == b' ' || data[r] == b'\t') {
        r += 1;
    }
    if r == data.len() {
        return Some((close, r));
    }
    match data[r] {
        b'\n' => Some((close, r + 1)),
        b'\r' if data.get(r + 1) == Some(&b'\n') => Some((close, r + 2)),
        _ => None,
    }
}

/// Delimiter lines of one multipart level, found in one linear pass.
pub(crate) struct Delimiters<'d> {
    data: &'d [u8],
    delim: &'d [u8],
    finder: memchr::memmem::Finder<'d>,
    pos: usize,
}

impl<'d> Delimiters<'d> {
    pub(crate) fn new(data: &'d [u8], delim: &'d [u8]) -> Self {
        Delimiters {
            data,
            delim,
            finder: memchr::memmem::Finder::new(delim),
            pos: 0,
        }
    }
}

impl Iterator for Delimiters<'_> {
    /// (line start, is close, next line start)
    type Item = (usize, bool, usize);
    fn next(&mut self) -> Option<Self::Item> {
        while self.pos < self.data.len() {
            let hit = self.pos + self.finder.find(&self.data[self.pos..])?;
            if let Some((close, next)) = delimiter_at(self.data, hit, self.delim) {
                self.pos = next.max(hit + 1);
                return Some((hit, close, next));
            }
            self.pos = hit + 1;
        }
        None
    }
}

/// Whether `data` holds a delimiter line for `boundary`.
pub(crate) fn has_delimiter_line(data: &[u8], boundary: &str) -> bool {
    let delim = [b"--", boundary.as_bytes()].concat();
    Delimiters::new(data, &delim).next().is_some()
}

/// Start of the line break that ends the line before the line at `p`.
fn line_break_before(data: &[u8], p: usize) -> usize {
    if p == 0 {
        0
    } else if p >= 2 && data[p - 2] == b'\r' {
        p - 2
    } else {
        p - 1
    }
}

pub(crate) fn valid_boundary(b: &str) -> bool {
    !b.is_empty() && b.len() <= MAX_BOUNDARY_LENGTH && b.bytes().all(|c| (0x20..0x7f).contains(&c))
}

struct Ctx<'a> {
    input: &'a [u8],
    diags: Vec<Diagnostic>,
    parts: usize,
    headers: usize,
}

impl Ctx<'_> {
    fn diag(&mut self, kind: DiagnosticKind, offset: usize) {
        if self.diags.len() < MAX_DIAGNOSTICS {
            self.diags.push(Diagnostic { kind, offset });
        }
    }
}

/// Parses a message (RFC 5322, MIME RFC 2045-2049). Fails only when the input
/// is not a message at all; everything else is a [`Diagnostic`].
pub fn parse(input: &[u8]) -> Result<Parsed<'_>, ParseError> {
    if input.is_empty() {
        return Err(ParseError::Empty);
    }
    if input.len() > MAX_MESSAGE_SIZE {
        return Err(ParseError::TooLarge {
            size: input.len(),
            limit: MAX_MESSAGE_SIZE,
        });
    }
    let mut ctx = Ctx {
        input,
        diags: Vec::new(),
        parts: 0,
        headers: 0,
    };
    let mut start = 0;
    let (le, next) = line_at(input, 0, input.len());
    if input.starts_with(b"From ") && field_name(&input[..le]).is_none() {
        ctx.diag(DiagnosticKind::MboxFromLine, 0);
        start = next;
    }
    if start < input.len() {
        let (le, _) = line_at(input, start, input.len());
        if le > start && field_name(&input[start..le]).is_none() {
            return Err(ParseError::NotAMessage);
        }
    }
    let message = parse_entity(&mut ctx, 0, start, input.len(), 0, false);
    Ok(Parsed {
        message,
        diagnostics: ctx.diags,
    })
}

fn parse_entity<'a>(
    ctx: &mut Ctx<'a>,
    raw_start: usize,
    hdr_start: usize,
    end: usize,
    depth: usize,
    in_digest: bool,
) -> Message<'a> {
    let (headers, body_start) = parse_headers(ctx, hdr_start, end);
    let mut content_type = None;
    let mut cte = TransferEncoding::SevenBit;
    let mut seen_cte = false;
    for h in &headers {
        if content_type.is_none() && h.is("content-type") {
            match ContentType::parse(&h.unfolded()) {
                Some(ct) => content_type = Some(ct),
                None => {
                    ctx.diag(DiagnosticKind::InvalidContentType, hdr_start);
                    content_type = Some(ContentType::text_plain());
                }
            }
        } else if !seen_cte && h.is("content-transfer-encoding") {
            cte = TransferEncoding::parse(&h.unfolded());
            seen_cte = true;
        }
    }
    let content_type = content_type.unwrap_or_else(|| {
        if in_digest {
            ContentType::message_rfc822()
        } else {
            ContentType::text_plain()
        }
    });
    let body = parse_body(ctx, &content_type, cte, body_start, end, depth);
    let input = ctx.input;
    Message {
        raw: Bytes::Borrowed(&input[raw_start..end]),
        body_start: body_start - raw_start,
        headers,
        body,
        content_type,
    }
}

fn parse_headers<'a>(ctx: &mut Ctx<'a>, start: usize, end: usize) -> (Vec<Header<'a>>, usize) {
    let input = ctx.input;
    let mut headers: Vec<Header<'a>> = Vec::new();
    let mut cur: Option<(usize, usize, usize, usize)> = None;
    let mut pos = start;
    let mut long_reported = false;
    let mut dropped = false;
    let body_start;
    let mut flush = |cur: Option<(usize, usize, usize, usize)>,
                     headers: &mut Vec<Header<'a>>,
                     ctx: &mut Ctx<'a>| {
        let Some((ns, ne, vs, ve)) = cur else { return };
        if headers.len() >= MAX_HEADERS || ctx.headers >= MAX_TOTAL_HEADERS {
            if !dropped {
                ctx.diag(DiagnosticKind::TooManyHeaders, ns);
                dropped = true;
            }
            return;
        }
        if ve - ns > MAX_HEADER_SIZE {
            ctx.diag(DiagnosticKind::HeaderTooLarge, ns);
        }
        let value = &input[vs..ve];
        if !value.is_ascii() && std::str::from_utf8(value).is_err() {
            ctx.diag(DiagnosticKind::InvalidUtf8Header, ns);
        }
        ctx.headers += 1;
        headers.push(Header {
            field: Bytes::Borrowed(&input[ns..ve]),
            name_len: ne - ns,
            value_start: vs - ns,
        });
    };
    loop {
        if pos >= end {
            body_start = end;
            break;
        }
        let (le, next) = line_at(input, pos, end);
        if le - pos > MAX_LINE_LENGTH && !long_reported {
            ctx.diag(DiagnosticKind::LineTooLong, pos);
            long_reported = true;
        }
        if le == pos {
            body_start = next;
            break;
        }
        let first = input[pos];
        if first == b' ' || first == b'\t' {
            if let Some(c) = &mut cur {
                c.3 = le;
                pos = next;
                continue;
            }
            body_start = pos;
            break;
        }
        match field_name(&input[pos..le]) {
            Some((name_len, colon)) => {
                flush(cur.take(), &mut headers, ctx);
                cur = Some((pos, pos + name_len, pos + colon + 1, le));
            }
            None => {
                if cur.is_some() || !headers.is_empty() {
                    ctx.diag(DiagnosticKind::MissingBlankLine, pos);
                }
                body_start = pos;
                break;
            }
        }
        pos = next;
    }
    flush(cur.take(), &mut headers, ctx);
    let block = &input[start..body_start];
    if memchr::memchr(0, block).is_some() {
        ctx.diag(DiagnosticKind::NulInHeader, start);
    }
    if let Some(i) = memchr::memchr_iter(b'\r', block).find(|&i| block.get(i + 1) != Some(&b'\n')) {
        ctx.diag(DiagnosticKind::BareCarriageReturn, start + i);
    }
    (headers, body_start)
}

fn parse_body<'a>(
    ctx: &mut Ctx<'a>,
    ct: &ContentType,
    cte: TransferEncoding,
    start: usize,
    end: usize,
    depth: usize,
) -> Body<'a> {
    if ct.is_multipart() {
        match ct.param("boundary").filter(|b| valid_boundary(b)) {
            None => ctx.diag(DiagnosticKind::MissingBoundary, start),
            Some(_) if depth >= MAX_DEPTH => ctx.diag(DiagnosticKind::TooDeep, start),
            Some(b) => {
                let b = b.to_string();
                if let Some(mp) =
                    parse_multipart(ctx, b, start, end, depth, ct.subtype() == "digest")
                {
                    return Body::Multipart(mp);
                }
            }
        }
    } else if ct.mime_type == "message/rfc822" || ct.mime_type == "message/global" {
        match cte {
            TransferEncoding::Base64 | TransferEncoding::QuotedPrintable => {
                ctx.diag(DiagnosticKind::EncodedMessageBody, start)
            }
            _ if depth >= MAX_DEPTH => ctx.diag(DiagnosticKind::TooDeep, start),
            _ => {
                return Body::Message(Box::new(parse_entity(
                    ctx,
                    start,
                    start,
                    end,
                    depth + 1,
                    false,
                )));
            }
        }
    }
    Body::Leaf(make_leaf(ctx, ct, cte, start, end))
}

fn make_leaf<'a>(
    ctx: &mut Ctx<'a>,
    ct: &ContentType,
    cte: TransferEncoding,
    start: usize,
    end: usize,
) -> Leaf<'a> {
    let raw = &ctx.input[start..end];
    let decoded = match &cte {
        TransferEncoding::Binary => Bytes::Borrowed(raw),
        TransferEncoding::QuotedPrintable => {
            let (d, bad) = codec::qp_decode_checked(raw);
            if bad {
                ctx.diag(DiagnosticKind::InvalidQuotedPrintable, start);
            }
            Bytes::Owned(d)
        }
        TransferEncoding::Base64 => {
            let (d, bad) = codec::base64_decode_checked(raw);
            if bad {
                ctx.diag(DiagnosticKind::InvalidBase64, start);
            }
            Bytes::Owned(d)
        }
        _ => Bytes::from(codec::normalize_crlf(raw)),
    };
    Leaf {
        raw: Bytes::Borrowed(raw),
        decoded,
        encoding: cte,
        is_text: ct.main_type() == "text",
        charset: ct.param("charset").map(str::to_string),
    }
}

fn parse_multipart<'a>(
    ctx: &mut Ctx<'a>,
    boundary: String,
    start: usize,
    end: usize,
    depth: usize,
    digest: bool,
) -> Option<Multipart<'a>> {
    let input = ctx.input;
    let body = &input[start..end];
    let delim = [b"--", boundary.as_bytes()].concat();
    let mut it = Delimiters::new(body, &delim);
    let norm = |s: &'a [u8]| Bytes::from(codec::normalize_crlf(s));
    let Some((p0, close0, next0)) = it.next() else {
        ctx.diag(DiagnosticKind::BoundaryNotFound, start);
        return None;
    };
    let preamble = norm(&body[..line_break_before(body, p0)]);
    let mut parts = Vec::new();
    let mut epilogue: &'a [u8] = &[];
    let mut closed = close0;
    if close0 {
        epilogue = &body[next0..];
    } else {
        let mut opener = p0;
        let mut cur = next0;
        loop {
            let found = it.next();
            if ctx.parts >= MAX_PARTS {
                ctx.diag(DiagnosticKind::TooManyParts, start + opener);
                epilogue = &body[opener..];
                closed = true;
                break;
            }
            ctx.parts += 1;
            match found {
                Some((p, close, next)) => {
                    let part_end = line_break_before(body, p).max(cur);
                    parts.push(parse_entity(
                        ctx,
                        start + cur,
                        start + cur,
                        start + part_end,
                        depth + 1,
                        digest,
                    ));
                    if close {
                        epilogue = &body[next..];
                        closed = true;
                        break;
                    }
                    opener = p;
                    cur = next;
                }
                None => {
                    parts.push(parse_entity(
                        ctx,
                        start + cur,
                        start + cur,
                        end,
                        depth + 1,
                        digest,
                    ));
                    ctx.diag(DiagnosticKind::MissingCloseDelimiter, end);
                    break;
                }
            }
        }
    }
    Some(Multipart {
        boundary,
        preamble,
        epilogue: norm(epilogue),
        parts,
        closed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_message() {
        let p = parse(b"Subject: hi\r\nFrom : a@b\r\n\r\nbody\r\n").expect("parses");
        let m = &p.message;
        assert_eq!(m.headers().len(), 2);
        assert_eq!(m.headers()[1].name(), "From");
        assert_eq!(m.header("subject").map(|h| h.text()), Some("hi".into()));
        let Body::Leaf(l) = m.body() else {
            panic!("leaf")
        };
        assert_eq!(l.decoded(), b"body\r\n");
        assert_eq!(m.raw_body(), b"body\r\n");
        assert!(p.diagnostics.is_empty());
    }

    #[test]
    fn not_a_message() {
        assert_eq!(parse(b"").err(), Some(ParseError::Empty));
        assert_eq!(parse(b"hello world\n").err(), Some(ParseError::NotAMessage));
        assert!(parse(b"\nbody").is_ok());
        assert!(parse(b"From a@b Mon Jan 1\nSubject: x\n\nbody").is_ok());
    }

    #[test]
    fn multipart_structure() {
        let msg = b"Content-Type: multipart/mixed; boundary=b\n\npre\n--b\nA: 1\n\none\n--b\n\ntwo\n--b--\nepi\n";
        let p = parse(msg).expect("parses");
        let Body::Multipart(mp) = p.message.body() else {
            panic!("multipart")
        };
        assert_eq!(mp.preamble(), b"pre");
        assert_eq!(mp.parts().len(), 2);
        assert_eq!(mp.epilogue(), b"epi\r\n");
        let Body::Leaf(l) = mp.parts()[0].body() else {
            panic!("leaf")
        };
        assert_eq!(l.decoded(), b"one");
        assert!(mp.is_closed());
    }

    #[test]
    fn delimiter_detection() {
        assert_eq!(delimiter_at(b"--b\r\nx", 0, b"--b"), Some((false, 5)));
        assert_eq!(delimiter_at(b"x\n--b-- \n", 2, b"--b"), Some((true, 9)));
        assert_eq!(delimiter_at(b"--bc\n", 0, b"--b"), None);
        assert_eq!(delimiter_at(b"--b\r\r\n", 0, b"--b"), None);
    }
}
