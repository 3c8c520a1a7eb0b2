//! Composing new messages (RFC 5322 §3.6 fields, RFC 2045-2047 MIME, RFC 2231
//! filenames, RFC 6532 UTF-8 headers).

use crate::address::Address;
use crate::codec::{self, FNV_OFFSET, fnv1a};
use crate::content_type::{ContentType, push_param};
use crate::date::DateTime;
use crate::header::write_folded;
use crate::message::has_delimiter_line;
use crate::rfc2047;

/// A file attached to a message (RFC 2183 Content-Disposition, RFC 2231
/// filename).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// File name (any Unicode; RFC 2231-encoded when not ASCII).
    pub filename: String,
    /// Media type, e.g. `application/pdf` (parameters allowed).
    pub content_type: String,
    /// The file's bytes.
    pub data: Vec<u8>,
}

#[derive(Debug, Clone)]
enum HeaderSpec {
    Text(String, String),
    Raw(String, String),
    Addresses(String, Vec<Address>),
}

#[derive(Debug, Clone)]
enum PartSpec {
    Attachment(Attachment),
    Nested(Box<Builder>),
    Rfc822(Vec<u8>),
    Mime(String, Vec<u8>),
}

/// Composes a message: header fields with correct folding (78 preferred,
/// 998 hard, RFC 5322 §2.1.1), encoded words for non-ASCII values (RFC 2047)
/// or raw UTF-8 (RFC 6532, [`Builder::smtputf8`]), quoted addresses,
/// automatic transfer encodings (7bit, quoted-printable, base64), multiparts
/// with boundaries that cannot collide with their content, and attachments
/// with RFC 2231 filenames. Deterministic: no clock, no randomness.
///
/// ```
/// use scop_mime::{Builder, Mailbox};
/// let bytes = Builder::new()
///     .from(Mailbox::new(Some("Zoë"), "zoe@example.org"))
///     .to(Mailbox::new(None, "bob@example.com"))
///     .subject("Grüße")
///     .text("Hello\n")
///     .attachment("résumé.pdf", "application/pdf", b"%PDF-1.4".to_vec())
///     .build();
/// let parsed = scop_mime::parse(&bytes).unwrap();
/// assert_eq!(parsed.message.header("Subject").unwrap().text(), "Grüße");
/// ```
#[derive(Debug, Clone, Default)]
pub struct Builder {
    headers: Vec<HeaderSpec>,
    text: Option<String>,
    html: Option<String>,
    parts: Vec<PartSpec>,
    utf8: bool,
    multipart: Option<String>,
    multipart_params: Vec<(String, String)>,
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect()
}

fn sanitize_name(s: &str) -> String {
    let n: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic() && *c != ':')
        .collect();
    if n.is_empty() {
        "X-Invalid-Name".into()
    } else {
        n
    }
}

/// A rendered entity: header lines (name, value with leading space) and body.
struct Entity {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Entity {
    fn write(&self, out: &mut Vec<u8>) {
        for (n, v) in &self.headers {
            write_folded(out, n.as_bytes(), v.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
    }
}

fn max_line(data: &[u8]) -> usize {
    data.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l).len())
        .max()
        .unwrap_or(0)
}

fn has_bare_cr_or_lf(data: &[u8]) -> bool {
    data.iter().enumerate().any(|(i, &b)| {
        (b == b'\n' && (i == 0 || data[i - 1] != b'\r'))
            || (b == b'\r' && data.get(i + 1) != Some(&b'\n'))
    })
}

/// A leaf entity with an automatically chosen transfer encoding.
fn leaf(ct: ContentType, data: &[u8], extra: Vec<(String, String)>, utf8: bool) -> Entity {
    let is_text = ct.main_type() == "text";
    let is_message = ct.main_type() == "message";
    let data = if is_text || is_message {
        codec::normalize_crlf(data).into_owned()
    } else {
        data.to_vec()
    };
    let ascii = data.iter().all(|&b| b < 0x80 && b != 0);
    let bare = has_bare_cr_or_lf(&data);
    let longest = max_line(&data);
    let (cte, body) = if is_message {
        let cte = if ascii && longest <= 998 {
            "7bit"
        } else if longest <= 998 && !data.contains(&0) {
            "8bit"
        } else {
            "binary"
        };
        (cte, data)
    } else if ascii && !bare && longest <= 78 {
        ("7bit", data)
    } else if is_text
        && utf8
        && !bare
        && longest <= 998
        && !data.contains(&0)
        && std::str::from_utf8(&data).is_ok()
    {
        ("8bit", data)
    } else {
        let non_ascii = data.iter().filter(|&&b| b >= 0x80 || b == 0).count();
        if is_text && non_ascii * 5 <= data.len() {
            ("quoted-printable", codec::qp_encode(&data))
        } else {
            ("base64", codec::base64_encode(&data))
        }
    };
    let mut headers = vec![("Content-Type".to_string(), ct.to_header_value())];
    headers.extend(extra);
    if cte != "7bit" {
        headers.push(("Content-Transfer-Encoding".into(), format!(" {cte}")));
    }
    Entity { headers, body }
}

/// A multipart entity whose boundary is derived from a hash of the rendered
/// children and checked not to occur as a delimiter line in any of them.
fn multipart(subtype: &str, params: &[(String, String)], children: Vec<Entity>) -> Entity {
    let rendered: Vec<Vec<u8>> = children
        .iter()
        .map(|c| {
            let mut v = Vec::new();
            c.write(&mut v);
            v
        })
        .collect();
    let mut h = FNV_OFFSET;
    for r in &rendered {
        h = fnv1a(r, h);
    }
    let mut n = 0u64;
    let boundary = loop {
        let cand = format!("=_scop_{:016x}", h.wrapping_add(n));
        if !rendered.iter().any(|r| has_delimiter_line(r, &cand)) {
            break cand;
        }
        n += 1;
    };
    let mut body = Vec::new();
    for r in &rendered {
        body.extend_from_slice(b"--");
        body.extend_from_slice(boundary.as_bytes());
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(r);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"--");
    body.extend_from_slice(boundary.as_bytes());
    body.extend_from_slice(b"--\r\n");
    let mut ct = ContentType {
        mime_type: format!("multipart/{}", subtype.to_ascii_lowercase()),
        params: params.to_vec(),
    };
    ct.params.push(("boundary".into(), boundary));
    Entity {
        headers: vec![("Content-Type".into(), ct.to_header_value())],
        body,
    }
}

fn text_type(sub: &str, s: &str) -> ContentType {
    let cs = if s.is_ascii() { "us-ascii" } else { "utf-8" };
    ContentType {
        mime_type: format!("text/{sub}"),
        params: vec![("charset".into(), cs.into())],
    }
}

fn parse_ct(s: &str) -> ContentType {
    ContentType::parse(format!(" {s}").as_bytes()).unwrap_or_else(|| ContentType {
        mime_type: "application/octet-stream".into(),
        params: Vec::new(),
    })
}

impl Builder {
    /// An empty message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes non-ASCII header values as raw UTF-8 (RFC 6532, for SMTPUTF8
    /// transport) instead of RFC 2047 encoded words; text bodies may then
    /// use 8bit.
    pub fn smtputf8(mut self, on: bool) -> Self {
        self.utf8 = on;
        self
    }

    /// Adds an unstructured field (RFC 5322 §3.2.5); non-ASCII words become
    /// encoded words. CR and LF in `value` become spaces; invalid name
    /// characters are dropped.
    pub fn header(mut self, name: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        self.headers.push(HeaderSpec::Text(
            sanitize_name(name.as_ref()),
            sanitize(value.as_ref()),
        ));
        self
    }

    /// Adds a field whose value the caller has already formatted (e.g. a
    /// structured field); it is only folded. CR and LF become spaces.
    pub fn raw_header(mut self, name: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        self.headers.push(HeaderSpec::Raw(
            sanitize_name(name.as_ref()),
            sanitize(value.as_ref()),
        ));
        self
    }

    fn address(mut self, name: &str, a: Address) -> Self {
        for h in &mut self.headers {
            if let HeaderSpec::Addresses(n, list) = h
                && n == name
            {
                list.push(a);
                return self;
            }
        }
        self.headers
            .push(HeaderSpec::Addresses(name.into(), vec![a]));
        self
    }

    /// Adds an author to `From` (RFC 5322 §3.6.2).
    pub fn from(self, a: impl Into<Address>) -> Self {
        self.address("From", a.into())
    }

    /// Sets `Sender` (RFC 5322 §3.6.2).
    pub fn sender(self, a: impl Into<Address>) -> Self {
        self.address("Sender", a.into())
    }

    /// Adds to `Reply-To` (RFC 5322 §3.6.2).
    pub fn reply_to(self, a: impl Into<Address>) -> Self {
        self.address("Reply-To", a.into())
    }

    /// Adds a recipient to `To` (RFC 5322 §3.6.3).
    pub fn to(self, a: impl Into<Address>) -> Self {
        self.address("To", a.into())
    }

    /// Adds a recipient to `Cc` (RFC 5322 §3.6.3).
    pub fn cc(self, a: impl Into<Address>) -> Self {
        self.address("Cc", a.into())
    }

    /// Adds a recipient to `Bcc` (RFC 5322 §3.6.3).
    pub fn bcc(self, a: impl Into<Address>) -> Self {
        self.address("Bcc", a.into())
    }

    /// Sets `Subject` (RFC 5322 §3.6.5), encoded when not ASCII.
    pub fn subject(self, s: impl AsRef<str>) -> Self {
        self.header("Subject", s)
    }

    /// Sets `Date` (RFC 5322 §3.6.1).
    pub fn date(self, d: DateTime) -> Self {
        self.raw_header("Date", d.to_rfc5322())
    }

    /// Sets `Message-ID` (RFC 5322 §3.6.4); angle brackets are added.
    pub fn message_id(self, id: impl AsRef<str>) -> Self {
        let id = id
            .as_ref()
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_string();
        self.raw_header("Message-ID", format!("<{id}>"))
    }

    /// Sets the plain-text body (line endings normalised to CRLF).
    pub fn text(mut self, body: impl Into<String>) -> Self {
        self.text = Some(body.into());
        self
    }

    /// Sets an HTML body; with a text body they form multipart/alternative
    /// (RFC 2046 §5.1.4).
    pub fn html(mut self, body: impl Into<String>) -> Self {
        self.html = Some(body.into());
        self
    }

    /// Attaches a file (Content-Disposition: attachment with an RFC 2231
    /// filename).
    pub fn attachment(
        mut self,
        filename: impl Into<String>,
        content_type: impl Into<String>,
        data: impl Into<Vec<u8>>,
    ) -> Self {
        self.parts.push(PartSpec::Attachment(Attachment {
            filename: filename.into(),
            content_type: content_type.into(),
            data: data.into(),
        }));
        self
    }

    /// Adds a nested entity built by another builder (its fields become the
    /// part's fields).
    pub fn part(mut self, nested: Builder) -> Self {
        self.parts.push(PartSpec::Nested(Box::new(nested)));
        self
    }

    /// Adds a message/rfc822 part (RFC 2046 §5.2.1) holding `message`.
    pub fn message_rfc822(mut self, message: impl Into<Vec<u8>>) -> Self {
        self.parts.push(PartSpec::Rfc822(message.into()));
        self
    }

    /// Adds a leaf part of any type (e.g. `message/delivery-status` for a
    /// DSN, RFC 3464), with an automatic transfer encoding.
    pub fn mime_part(mut self, content_type: impl Into<String>, data: impl Into<Vec<u8>>) -> Self {
        self.parts
            .push(PartSpec::Mime(content_type.into(), data.into()));
        self
    }

    /// Makes the body `multipart/<subtype>` (default `mixed` when parts are
    /// present), e.g. `report` for RFC 6522 reports.
    pub fn multipart(mut self, subtype: impl Into<String>) -> Self {
        self.multipart = Some(subtype.into());
        self
    }

    /// Adds a parameter to the multipart Content-Type (e.g. `report-type`).
    pub fn multipart_param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.multipart_params
            .push((name.into().to_ascii_lowercase(), value.into()));
        self
    }

    fn header_lines(&self) -> Vec<(String, String)> {
        self.headers
            .iter()
            .map(|h| match h {
                HeaderSpec::Text(n, v) => (
                    n.clone(),
                    format!(" {}", rfc2047::encode_unstructured(v, self.utf8)),
                ),
                HeaderSpec::Raw(n, v) => (n.clone(), format!(" {v}")),
                HeaderSpec::Addresses(n, list) => {
                    let l: Vec<String> =
                        list.iter().map(|a| a.to_header_string(self.utf8)).collect();
                    (n.clone(), format!(" {}", l.join(", ")))
                }
            })
            .collect()
    }

    fn body_entity(&self) -> Entity {
        let utf8 = self.utf8;
        let main = match (&self.text, &self.html) {
            (Some(t), Some(h)) => Some(multipart(
                "alternative",
                &[],
                vec![
                    leaf(text_type("plain", t), t.as_bytes(), Vec::new(), utf8),
                    leaf(text_type("html", h), h.as_bytes(), Vec::new(), utf8),
                ],
            )),
            (Some(t), None) => Some(leaf(text_type("plain", t), t.as_bytes(), Vec::new(), utf8)),
            (None, Some(h)) => Some(leaf(text_type("html", h), h.as_bytes(), Vec::new(), utf8)),
            (None, None) => None,
        };
        if self.parts.is_empty() && self.multipart.is_none() {
            return main.unwrap_or_else(|| leaf(text_type("plain", ""), b"", Vec::new(), utf8));
        }
        let mut children: Vec<Entity> = main.into_iter().collect();
        for p in &self.parts {
            children.push(match p {
                PartSpec::Attachment(a) => {
                    let mut ct = parse_ct(&a.content_type);
                    if ct.param("name").is_none() {
                        ct.params.push(("name".into(), a.filename.clone()));
                    }
                    let mut disp = String::from(" attachment; ");
                    push_param(&mut disp, "filename", &a.filename);
                    leaf(
                        ct,
                        &a.data,
                        vec![("Content-Disposition".into(), disp)],
                        utf8,
                    )
                }
                PartSpec::Nested(b) => {
                    let mut e = b.body_entity();
                    let mut headers = b.header_lines();
                    headers.append(&mut e.headers);
                    Entity {
                        headers,
                        body: e.body,
                    }
                }
                PartSpec::Rfc822(m) => leaf(ContentType::message_rfc822(), m, Vec::new(), utf8),
                PartSpec::Mime(ct, data) => leaf(parse_ct(ct), data, Vec::new(), utf8),
            });
        }
        let sub = self.multipart.as_deref().unwrap_or("mixed");
        multipart(sub, &self.multipart_params, children)
    }

    /// Renders the message (CRLF line endings). Adds `MIME-Version: 1.0`
    /// unless set.
    pub fn build(&self) -> Vec<u8> {
        let mut headers = self.header_lines();
        if !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("mime-version"))
        {
            headers.push(("MIME-Version".into(), " 1.0".into()));
        }
        let mut e = self.body_entity();
        headers.append(&mut e.headers);
        let mut out = Vec::with_capacity(e.body.len() + 512);
        Entity {
            headers,
            body: e.body,
        }
        .write(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Body, Mailbox, parse};

    #[test]
    fn simple_text() {
        let b = Builder::new()
            .from(Mailbox::new(Some("Ann"), "ann@example.org"))
            .to(Mailbox::new(None, "b@example.com"))
            .to(Mailbox::new(Some("Çé"), "c@example.com"))
            .subject("hi there")
            .message_id("abc@example.org")
            .text("one\ntwo\n")
            .build();
        let p = parse(&b).expect("parses");
        assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
        let m = &p.message;
        assert_eq!(m.header("to").map(|h| h.addresses().len()), Some(2));
        assert_eq!(
            m.header("message-id").map(|h| h.message_ids()),
            Some(vec!["abc@example.org".to_string()])
        );
        let Body::Leaf(l) = m.body() else {
            panic!("leaf")
        };
        assert_eq!(l.decoded(), b"one\r\ntwo\r\n");
        assert!(b.is_ascii());
    }

    #[test]
    fn multipart_with_attachment() {
        let b = Builder::new()
            .subject("Ünïcödé subject")
            .text("text")
            .html("<p>é</p>")
            .attachment(
                "naïve file name that is quite long indeed.txt",
                "text/plain",
                "x".repeat(100),
            )
            .message_rfc822(b"Subject: inner\n\nhello\n".to_vec())
            .build();
        let p = parse(&b).expect("parses");
        assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
        let m = &p.message;
        assert_eq!(
            m.header("subject").map(|h| h.text()),
            Some("Ünïcödé subject".into())
        );
        let Body::Multipart(mp) = m.body() else {
            panic!("multipart")
        };
        assert_eq!(mp.parts().len(), 3);
        assert_eq!(
            mp.parts()[0].content_type().mime_type,
            "multipart/alternative"
        );
        let att = &mp.parts()[1];
        assert_eq!(
            att.content_type().param("name"),
            Some("naïve file name that is quite long indeed.txt")
        );
        assert!(matches!(mp.parts()[2].body(), Body::Message(_)));
        for line in b.split(|&c| c == b'\n') {
            assert!(line.len() <= 79, "{}", line.escape_ascii());
        }
    }

    #[test]
    fn utf8_mode() {
        let b = Builder::new()
            .smtputf8(true)
            .subject("Grüße")
            .text("Grüße\n")
            .build();
        assert!(!b.is_ascii());
        let p = parse(&b).expect("parses");
        assert_eq!(
            p.message.header("subject").map(|h| h.text()),
            Some("Grüße".into())
        );
        let Body::Leaf(l) = p.message.body() else {
            panic!("leaf")
        };
        assert_eq!(l.text().as_deref(), Some("Grüße\r\n"));
    }
}
