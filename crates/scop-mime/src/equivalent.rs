//! Structural equivalence of two message trees (the round-trip contract).

use crate::content_type::ContentType;
use crate::header::{Header, unfold};
use crate::message::{Body, Message};

/// Where and how two messages differ; `Display` gives a path such as
/// `part 1.2, header #3 (Subject): left "..." right "..."`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// `message`, `part 1.2`, `part 2 > message/rfc822`, ...
    pub path: String,
    /// What differs (`header #3 (Subject)`, `decoded body`, ...).
    pub what: String,
    /// The left side, escaped and shortened.
    pub left: String,
    /// The right side, escaped and shortened.
    pub right: String,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}, {}: left {} right {}",
            self.path, self.what, self.left, self.right
        )
    }
}

const ADDRESS_FIELDS: &[&str] = &[
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "bcc",
    "resent-from",
    "resent-sender",
    "resent-to",
    "resent-cc",
    "resent-bcc",
];
const DATE_FIELDS: &[&str] = &["date", "resent-date"];
const ID_FIELDS: &[&str] = &[
    "message-id",
    "in-reply-to",
    "references",
    "resent-message-id",
    "content-id",
];

/// Checks that two trees are equivalent:
///
/// * same number of header fields; pairwise the same name (case-sensitive)
///   and the same value after unfolding, collapsing runs of spaces and tabs
///   into one space and trimming; address, date and message-id fields also
///   compare their structured values; Content-Type fields compare the parsed
///   type and parameters, ignoring `boundary` (the encoder may change it);
/// * the same effective content type (boundary ignored);
/// * the same body shape; leaves have the same transfer encoding and
///   byte-equal decoded bodies; multiparts the same preamble, epilogue and
///   parts (recursively); encapsulated messages are equivalent.
pub fn equivalent(a: &Message<'_>, b: &Message<'_>) -> Result<(), Difference> {
    compare(a, b, "message")
}

fn show(b: &[u8]) -> String {
    const MAX: usize = 160;
    let s = b.escape_ascii().to_string();
    if s.len() > MAX {
        let mut end = MAX;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("\"{}\"... ({} bytes)", &s[..end], b.len())
    } else {
        format!("\"{s}\"")
    }
}

fn diff(path: &str, what: impl Into<String>, left: String, right: String) -> Difference {
    Difference {
        path: path.to_string(),
        what: what.into(),
        left,
        right,
    }
}

pub(crate) fn normalized_value(h: &Header<'_>) -> Vec<u8> {
    let u = unfold(h.raw_value());
    let mut out = Vec::with_capacity(u.len());
    let mut ws = false;
    for &c in u.iter() {
        if c == b' ' || c == b'\t' {
            ws = true;
        } else {
            if ws && !out.is_empty() {
                out.push(b' ');
            }
            ws = false;
            out.push(c);
        }
    }
    out
}

fn without_boundary(ct: Option<ContentType>) -> Option<ContentType> {
    ct.map(|mut ct| {
        ct.params.retain(|(n, _)| n != "boundary");
        ct
    })
}

fn compare_header(
    i: usize,
    ha: &Header<'_>,
    hb: &Header<'_>,
    path: &str,
) -> Result<(), Difference> {
    let what = || format!("header #{} ({})", i + 1, ha.name());
    if ha.name() != hb.name() {
        return Err(diff(
            path,
            format!("header #{} name", i + 1),
            show(ha.name().as_bytes()),
            show(hb.name().as_bytes()),
        ));
    }
    let lname = ha.name().to_ascii_lowercase();
    if lname == "content-type" {
        let ca = without_boundary(ContentType::parse(&ha.unfolded()));
        let cb = without_boundary(ContentType::parse(&hb.unfolded()));
        if ca != cb {
            return Err(diff(path, what(), format!("{ca:?}"), format!("{cb:?}")));
        }
        return Ok(());
    }
    let (va, vb) = (normalized_value(ha), normalized_value(hb));
    if va != vb {
        return Err(diff(path, what(), show(&va), show(&vb)));
    }
    if ADDRESS_FIELDS.contains(&lname.as_str()) {
        let (x, y) = (ha.addresses(), hb.addresses());
        if x != y {
            return Err(diff(
                path,
                what() + " addresses",
                format!("{x:?}"),
                format!("{y:?}"),
            ));
        }
    } else if DATE_FIELDS.contains(&lname.as_str()) {
        let (x, y) = (ha.date(), hb.date());
        if x != y {
            return Err(diff(
                path,
                what() + " date",
                format!("{x:?}"),
                format!("{y:?}"),
            ));
        }
    } else if ID_FIELDS.contains(&lname.as_str()) {
        let (x, y) = (ha.message_ids(), hb.message_ids());
        if x != y {
            return Err(diff(
                path,
                what() + " message ids",
                format!("{x:?}"),
                format!("{y:?}"),
            ));
        }
    }
    Ok(())
}

fn first_difference(a: &[u8], b: &[u8]) -> usize {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()))
}

fn compare_bytes(path: &str, what: &str, a: &[u8], b: &[u8]) -> Result<(), Difference> {
    if a == b {
        return Ok(());
    }
    let at = first_difference(a, b);
    let from = at.saturating_sub(20);
    Err(diff(
        path,
        format!(
            "{what} (lengths {} and {}, first difference at byte {at})",
            a.len(),
            b.len()
        ),
        show(&a[from..a.len().min(at + 60)]),
        show(&b[from..b.len().min(at + 60)]),
    ))
}

fn compare(a: &Message<'_>, b: &Message<'_>, path: &str) -> Result<(), Difference> {
    for (i, (ha, hb)) in a.headers.iter().zip(&b.headers).enumerate() {
        compare_header(i, ha, hb, path)?;
    }
    if a.headers.len() != b.headers.len() {
        let extra = |m: &Message<'_>| {
            m.headers
                .get(a.headers.len().min(b.headers.len()))
                .map(|h| h.name().to_string())
                .unwrap_or_default()
        };
        return Err(diff(
            path,
            "header count",
            format!("{} (next: {})", a.headers.len(), extra(a)),
            format!("{} (next: {})", b.headers.len(), extra(b)),
        ));
    }
    let (ca, cb) = (
        without_boundary(Some(a.content_type())),
        without_boundary(Some(b.content_type())),
    );
    if ca != cb {
        return Err(diff(
            path,
            "content type",
            format!("{ca:?}"),
            format!("{cb:?}"),
        ));
    }
    match (&a.body, &b.body) {
        (Body::Leaf(x), Body::Leaf(y)) => {
            if x.encoding != y.encoding {
                return Err(diff(
                    path,
                    "transfer encoding",
                    x.encoding.as_str().into(),
                    y.encoding.as_str().into(),
                ));
            }
            compare_bytes(path, "decoded body", &x.decoded, &y.decoded)
        }
        (Body::Multipart(x), Body::Multipart(y)) => {
            compare_bytes(path, "preamble", &x.preamble, &y.preamble)?;
            if x.parts.len() != y.parts.len() {
                return Err(diff(
                    path,
                    "part count",
                    x.parts.len().to_string(),
                    y.parts.len().to_string(),
                ));
            }
            for (i, (pa, pb)) in x.parts.iter().zip(&y.parts).enumerate() {
                let sub = if path == "message" {
                    format!("part {}", i + 1)
                } else if path.starts_with("part ") && !path.contains('>') {
                    format!("{path}.{}", i + 1)
                } else {
                    format!("{path} > part {}", i + 1)
                };
                compare(pa, pb, &sub)?;
            }
            compare_bytes(path, "epilogue", &x.epilogue, &y.epilogue)
        }
        (Body::Message(x), Body::Message(y)) => compare(x, y, &format!("{path} > message/rfc822")),
        (x, y) => Err(diff(path, "body kind", kind(x).into(), kind(y).into())),
    }
}

fn kind(b: &Body<'_>) -> &'static str {
    match b {
        Body::Leaf(_) => "leaf",
        Body::Multipart(_) => "multipart",
        Body::Message(_) => "message",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    const BASE: &[u8] = b"Subject: a\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: multipart/alternative; boundary=c\n\n--c\nX: 1\nY: 2\nSubject: inner\n\nbody\n--c--\n--b--\n";

    fn differ(other: &[u8]) -> String {
        let a = parse(BASE).expect("a");
        let b = parse(other).expect("b");
        equivalent(&a.message, &b.message)
            .expect_err("differs")
            .to_string()
    }

    #[test]
    fn equal_modulo_folding_and_line_endings() {
        let a = parse(BASE).expect("a");
        let folded = String::from_utf8_lossy(BASE)
            .replace("Subject: a", "Subject:\n  a")
            .replace('\n', "\r\n");
        let b = parse(folded.as_bytes()).expect("b");
        assert_eq!(equivalent(&a.message, &b.message), Ok(()));
    }

    #[test]
    fn reports_a_path() {
        let changed = String::from_utf8_lossy(BASE).replace("Subject: inner", "Subject: other");
        let d = differ(changed.as_bytes());
        assert!(
            d.starts_with("part 1.1, header #3 (Subject): left \"inner\" right \"other\""),
            "{d}"
        );
        let changed = String::from_utf8_lossy(BASE).replace("body", "bodY");
        let d = differ(changed.as_bytes());
        assert!(d.starts_with("part 1.1, decoded body"), "{d}");
        let changed = String::from_utf8_lossy(BASE).replace("X: 1\n", "");
        assert!(differ(changed.as_bytes()).starts_with("part 1.1, header #1 name"));
    }

    #[test]
    fn boundary_is_ignored() {
        let a = parse(BASE).expect("a");
        let other = String::from_utf8_lossy(BASE)
            .replace("boundary=b", "boundary=z")
            .replace("--b", "--z");
        let b = parse(other.as_bytes()).expect("b");
        assert_eq!(equivalent(&a.message, &b.message), Ok(()));
    }
}
