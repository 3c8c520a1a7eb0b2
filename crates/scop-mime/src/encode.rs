//! Canonical re-encoding of a parsed message.

use crate::codec::{self, FNV_OFFSET, fnv1a};
use crate::content_type::TransferEncoding;
use crate::header::{unfold, write_folded};
use crate::message::{Body, Leaf, Message, has_delimiter_line};

/// Canonical encoding of a message: CRLF line endings; each header field as
/// `name:` plus its unfolded value, re-folded at whitespace only where a line
/// exceeds 78 characters; bodies re-encoded with their declared
/// Content-Transfer-Encoding (base64 in 76-character lines, canonical
/// quoted-printable, 7bit/8bit/binary as decoded); multiparts written as
/// preamble, delimiter, part, ..., close delimiter, epilogue, keeping the
/// boundary unless a re-encoded part would contain a delimiter line, in which
/// case a new boundary derived from a hash of the content is chosen and the
/// Content-Type field is rewritten.
///
/// `parse(encode(m))` is [`crate::equivalent`] to `m`, and `encode` of that is
/// byte-identical to `encode(m)`.
pub fn encode(message: &Message<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.raw().len() + message.raw().len() / 8 + 64);
    encode_into(message, &mut out);
    out
}

fn encode_into(m: &Message<'_>, out: &mut Vec<u8>) {
    match &m.body {
        Body::Multipart(mp) => {
            let children: Vec<Vec<u8>> = mp.parts.iter().map(encode).collect();
            let collides = |b: &str| {
                has_delimiter_line(&mp.preamble, b)
                    || children.iter().any(|c| has_delimiter_line(c, b))
            };
            let mut boundary = mp.boundary.clone();
            let changed = collides(&boundary);
            if changed {
                let mut h = fnv1a(&mp.preamble, FNV_OFFSET);
                for c in &children {
                    h = fnv1a(c, h);
                }
                let mut n = 0u64;
                loop {
                    let cand = format!("=_scop_{:016x}", h.wrapping_add(n));
                    if !collides(&cand) {
                        boundary = cand;
                        break;
                    }
                    n += 1;
                }
            }
            write_headers(m, out, changed.then_some(boundary.as_str()));
            out.extend_from_slice(b"\r\n");
            if !mp.preamble.is_empty() {
                out.extend_from_slice(&mp.preamble);
                out.extend_from_slice(b"\r\n");
            }
            for c in &children {
                out.extend_from_slice(b"--");
                out.extend_from_slice(boundary.as_bytes());
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(c);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"--");
            out.extend_from_slice(boundary.as_bytes());
            out.extend_from_slice(b"--\r\n");
            out.extend_from_slice(&mp.epilogue);
        }
        Body::Message(inner) => {
            write_headers(m, out, None);
            out.extend_from_slice(b"\r\n");
            encode_into(inner, out);
        }
        Body::Leaf(l) => {
            write_headers(m, out, None);
            out.extend_from_slice(b"\r\n");
            encode_leaf(l, out);
        }
    }
}

fn write_headers(m: &Message<'_>, out: &mut Vec<u8>, new_boundary: Option<&str>) {
    let mut ct_done = false;
    for h in &m.headers {
        if let Some(b) = new_boundary
            && !ct_done
            && h.is("content-type")
        {
            ct_done = true;
            let mut ct = m.content_type.clone();
            for (n, v) in &mut ct.params {
                if n == "boundary" {
                    *v = b.to_string();
                }
            }
            write_folded(out, h.name().as_bytes(), ct.to_header_value().as_bytes());
            continue;
        }
        write_folded(out, h.name().as_bytes(), &unfold(h.raw_value()));
    }
}

fn encode_leaf(l: &Leaf<'_>, out: &mut Vec<u8>) {
    match l.encoding {
        TransferEncoding::QuotedPrintable => out.extend_from_slice(&codec::qp_encode(&l.decoded)),
        TransferEncoding::Base64 => out.extend_from_slice(&codec::base64_encode(&l.decoded)),
        _ => out.extend_from_slice(&l.decoded),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{equivalent, parse};

    #[test]
    fn canonical_form() {
        let input = b"Subject : hi\nX-Long: aaaa bbbb cccc dddd eeee ffff gggg hhhh iiii jjjj kkkk llll mmmm nnnn oooo\nContent-Type: text/plain\nContent-Transfer-Encoding: Base64\n\nSGVs\nbG8=\n";
        let m = parse(input).expect("parses").message;
        let out = encode(&m);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "Subject: hi\r\nX-Long: aaaa bbbb cccc dddd eeee ffff gggg hhhh iiii jjjj kkkk llll mmmm nnnn\r\n oooo\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: Base64\r\n\r\nSGVsbG8=\r\n"
        );
        let again = parse(&out).expect("re-parses").message;
        assert_eq!(equivalent(&m, &again), Ok(()));
        assert_eq!(encode(&again), out);
    }

    #[test]
    fn colliding_boundary_is_replaced() {
        // The QP part decodes to a line equal to the delimiter; re-encoding
        // writes it literally, so the boundary must change.
        let input = b"Content-Type: multipart/mixed; boundary=b; x=y\n\n--b\nContent-Transfer-Encoding: quoted-printable\n\n=2D-b\n--b--\n";
        let m = parse(input).expect("parses").message;
        let out = encode(&m);
        let again = parse(&out).expect("re-parses").message;
        assert_ne!(again.content_type().param("boundary"), Some("b"));
        assert_eq!(again.content_type().param("x"), Some("y"));
        assert_eq!(equivalent(&m, &again), Ok(()));
        assert_eq!(encode(&again), out);
    }

    #[test]
    fn missing_close_delimiter_is_written() {
        let m = parse(b"Content-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n")
            .expect("parses")
            .message;
        let out = encode(&m);
        assert!(
            out.ends_with(b"--b\r\n\r\nx\r\n\r\n--b--\r\n"),
            "{}",
            out.escape_ascii()
        );
    }
}
