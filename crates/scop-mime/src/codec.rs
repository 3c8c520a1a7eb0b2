//! Content-transfer-encoding codecs (RFC 2045 §6.7 quoted-printable, §6.8
//! base64) and line-ending normalisation.
//!
//! Decoders are total (never fail): invalid base64 characters are skipped and
//! invalid quoted-printable escapes are kept literally. For every byte string
//! `x`, `decode(encode(x)) == x`.

use std::borrow::Cow;

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Length of an encoded base64 / quoted-printable line, without CRLF.
pub const ENCODED_LINE_LENGTH: usize = 76;

/// Canonical base64 (RFC 2045 §6.8): padded, 76-character lines, each ended
/// by CRLF. Empty input gives empty output.
pub fn base64_encode(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 57 * 78 + 80);
    for line in data.chunks(57) {
        scop_codec::base64::encode_into(line, &mut out);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Encodes without line breaks (for RFC 2047 encoded words).
pub(crate) fn base64_encode_flat(data: &[u8], out: &mut String) {
    out.push_str(&scop_codec::base64::encode(data));
}

/// Decoding table: 0..=63 sextets, `PAD` for '=', `SKIP` for whitespace,
/// `BAD` for anything else.
const PAD: u8 = 64;
const SKIP: u8 = 65;
const BAD: u8 = 66;
static B64_TABLE: [u8; 256] = {
    let mut t = [BAD; 256];
    let mut i = 0;
    while i < 64 {
        t[B64[i] as usize] = i as u8;
        i += 1;
    }
    t[b'=' as usize] = PAD;
    t[b' ' as usize] = SKIP;
    t[b'\t' as usize] = SKIP;
    t[b'\r' as usize] = SKIP;
    t[b'\n' as usize] = SKIP;
    t
};

/// Total base64 decoding: characters outside the alphabet are skipped, `=`
/// ends the current quantum (so concatenated padded blocks decode), and a
/// dangling single character is dropped.
pub fn base64_decode(data: &[u8]) -> Vec<u8> {
    base64_decode_checked(data).0
}

/// Like [`base64_decode`]; the flag tells whether characters other than the
/// alphabet, padding and whitespace were met.
pub(crate) fn base64_decode_checked(data: &[u8]) -> (Vec<u8>, bool) {
    let mut out = vec![0u8; data.len() / 4 * 3 + 3];
    let mut o = 0;
    let mut acc: u32 = 0;
    let mut n = 0u8;
    let mut invalid = false;
    let mut i = 0;
    while i < data.len() {
        // Fast path: four alphabet characters at a quantum boundary.
        if n == 0 && i + 4 <= data.len() {
            let a = B64_TABLE[data[i] as usize];
            let b = B64_TABLE[data[i + 1] as usize];
            let c = B64_TABLE[data[i + 2] as usize];
            let d = B64_TABLE[data[i + 3] as usize];
            if (a | b | c | d) < 64 {
                let v = (a as u32) << 18 | (b as u32) << 12 | (c as u32) << 6 | d as u32;
                if let Some(dst) = out.get_mut(o..o + 3) {
                    dst.copy_from_slice(&[(v >> 16) as u8, (v >> 8) as u8, v as u8]);
                }
                o += 3;
                i += 4;
                continue;
            }
        }
        let t = B64_TABLE[data[i] as usize];
        i += 1;
        if t < 64 {
            acc = (acc << 6) | t as u32;
            n += 1;
            if n == 4 {
                if let Some(dst) = out.get_mut(o..o + 3) {
                    dst.copy_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
                }
                o += 3;
                acc = 0;
                n = 0;
            }
        } else if t == PAD {
            o += flush_quantum(out.get_mut(o..).unwrap_or(&mut []), acc, n);
            acc = 0;
            n = 0;
        } else if t == BAD {
            invalid = true;
        }
    }
    o += flush_quantum(out.get_mut(o..).unwrap_or(&mut []), acc, n);
    out.truncate(o);
    (out, invalid)
}

/// Writes the bytes of a partial quantum; returns how many.
fn flush_quantum(out: &mut [u8], acc: u32, n: u8) -> usize {
    match (n, out) {
        (2, [a, ..]) => {
            *a = (acc >> 4) as u8;
            1
        }
        (3, [a, b, ..]) => {
            *a = (acc >> 10) as u8;
            *b = (acc >> 2) as u8;
            2
        }
        _ => 0,
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// Canonical quoted-printable (RFC 2045 §6.7). CRLF in `data` is a hard line
/// break; a lone CR or LF is `=0D` / `=0A`; whitespace before a line break or
/// at the end is encoded; lines are soft-broken at 76 characters.
pub fn qp_encode(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 16 + 8);
    let mut lines = data.split_inclusive_crlf();
    let mut first = true;
    while let Some(line) = lines.next_line() {
        if !first {
            out.extend_from_slice(b"\r\n");
        }
        first = false;
        let mut col = 0usize;
        for (i, &b) in line.iter().enumerate() {
            let last = i + 1 == line.len();
            let literal =
                (b.is_ascii_graphic() && b != b'=') || ((b == b' ' || b == b'\t') && !last);
            let width = if literal { 1 } else { 3 };
            // Room for a soft break '=' unless this is the last token.
            let limit = if last {
                ENCODED_LINE_LENGTH
            } else {
                ENCODED_LINE_LENGTH - 1
            };
            if col + width > limit {
                out.extend_from_slice(b"=\r\n");
                col = 0;
            }
            if literal {
                out.push(b);
            } else {
                out.push(b'=');
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 15) as usize]);
            }
            col += width;
        }
    }
    out
}

/// Total quoted-printable decoding. Each hard line break (LF or CRLF) becomes
/// CRLF, trailing whitespace on a line is dropped, `=` at the end of a line
/// (after optional whitespace) is a soft break, and an invalid escape is kept
/// literally.
pub fn qp_decode(data: &[u8]) -> Vec<u8> {
    qp_decode_checked(data).0
}

pub(crate) fn qp_decode_checked(data: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::with_capacity(data.len());
    let mut invalid = false;
    let mut pos = 0;
    while pos <= data.len() {
        let (line, has_break, next) = match memchr::memchr(b'\n', &data[pos..]) {
            Some(i) => {
                let mut end = pos + i;
                if end > pos && data[end - 1] == b'\r' {
                    end -= 1;
                }
                (&data[pos..end], true, pos + i + 1)
            }
            None => (&data[pos..], false, data.len() + 1),
        };
        let mut l = line;
        while let [rest @ .., b' ' | b'\t'] = l {
            l = rest;
        }
        let soft = l.last() == Some(&b'=');
        if soft {
            l = &l[..l.len() - 1];
        }
        let mut i = 0;
        while i < l.len() {
            let b = l[i];
            if b == b'=' {
                if let (Some(h), Some(lo)) = (
                    l.get(i + 1).copied().and_then(hex_value),
                    l.get(i + 2).copied().and_then(hex_value),
                ) {
                    out.push(h << 4 | lo);
                    i += 3;
                    continue;
                }
                invalid = true;
            }
            out.push(b);
            i += 1;
        }
        if has_break && !soft {
            out.extend_from_slice(b"\r\n");
        }
        pos = next;
    }
    (out, invalid)
}

/// Rewrites every LF not preceded by CR as CRLF; borrows when nothing changes.
pub fn normalize_crlf(data: &[u8]) -> Cow<'_, [u8]> {
    let mut first_bad = None;
    for i in memchr::memchr_iter(b'\n', data) {
        if i == 0 || data[i - 1] != b'\r' {
            first_bad = Some(i);
            break;
        }
    }
    let Some(first) = first_bad else {
        return Cow::Borrowed(data);
    };
    let mut out = Vec::with_capacity(data.len() + data.len() / 32 + 2);
    out.extend_from_slice(&data[..first]);
    let mut last = first;
    for i in memchr::memchr_iter(b'\n', &data[first..]).map(|i| i + first) {
        out.extend_from_slice(&data[last..i]);
        if i == 0 || data[i - 1] != b'\r' {
            out.push(b'\r');
        }
        out.push(b'\n');
        last = i + 1;
    }
    out.extend_from_slice(&data[last..]);
    Cow::Owned(out)
}

/// Splits data into lines at CRLF only (lone CR and LF are data).
trait CrlfLines {
    fn split_inclusive_crlf(&self) -> CrlfSplit<'_>;
}

impl CrlfLines for [u8] {
    fn split_inclusive_crlf(&self) -> CrlfSplit<'_> {
        CrlfSplit {
            data: self,
            pos: 0,
            done: false,
        }
    }
}

struct CrlfSplit<'a> {
    data: &'a [u8],
    pos: usize,
    done: bool,
}

impl<'a> CrlfSplit<'a> {
    /// Next line without its CRLF; yields a final empty line after a trailing
    /// CRLF, and one empty line for empty input.
    fn next_line(&mut self) -> Option<&'a [u8]> {
        if self.done {
            return None;
        }
        let rest = &self.data[self.pos..];
        let mut from = 0;
        while let Some(i) = memchr::memchr(b'\n', &rest[from..]) {
            let nl = from + i;
            if nl > 0 && rest[nl - 1] == b'\r' {
                self.pos += nl + 1;
                return Some(&rest[..nl - 1]);
            }
            from = nl + 1;
        }
        self.done = true;
        Some(rest)
    }
}

/// FNV-1a, for deterministic boundaries.
pub(crate) fn fnv1a(data: &[u8], mut h: u64) -> u64 {
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

pub(crate) const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip_and_leniency() {
        for n in 0..200usize {
            let data: Vec<u8> = (0..n).map(|i| (i * 37 % 256) as u8).collect();
            let enc = base64_encode(&data);
            assert!(enc.split(|&b| b == b'\n').all(|l| l.len() <= 77));
            assert_eq!(base64_decode(&enc), data);
        }
        assert_eq!(base64_decode(b"SGVs bG8*"), b"Hello");
        assert_eq!(base64_decode(b"QQ==QQ=="), b"AA");
        let (_, bad) = base64_decode_checked(b"QQ!=");
        assert!(bad);
    }

    #[test]
    fn qp_cases() {
        assert_eq!(qp_decode(b"a=3Db=\r\nc \r\nd"), b"a=bc\r\nd");
        assert_eq!(qp_decode(b"a=\nb\nc"), b"ab\r\nc");
        assert_eq!(qp_decode(b"=ZZ=4"), b"=ZZ=4");
        assert_eq!(qp_encode(b"a \r\nb\n\r"), b"a=20\r\nb=0A=0D");
        let long = vec![b'x'; 200];
        let enc = qp_encode(&long);
        assert!(enc.split(|&b| b == b'\n').all(|l| l.len() <= 77));
        assert_eq!(qp_decode(&enc), long);
    }

    #[test]
    fn qp_round_trip_bytes() {
        for n in 0..300usize {
            let data: Vec<u8> = (0..n)
                .map(|i| [b' ', b'\r', b'\n', b'=', b'a', 0xE9, b'\t'][(i * 3 + i / 7) % 7])
                .collect();
            assert_eq!(qp_decode(&qp_encode(&data)), data, "{n}");
        }
    }

    #[test]
    fn normalize() {
        assert_eq!(&*normalize_crlf(b"a\nb\r\nc\r"), b"a\r\nb\r\nc\r");
        assert!(matches!(normalize_crlf(b"a\r\nb"), Cow::Borrowed(_)));
        assert_eq!(&*normalize_crlf(b"\n\n"), b"\r\n\r\n");
    }
}
