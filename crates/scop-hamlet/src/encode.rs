//! Wire encoders: base64 and quoted-printable (RFC 2045 section 6), encoded
//! words (RFC 2047), RFC 2231 percent encoding, header folding (RFC 5322
//! section 2.2.3). Output lines always end in CRLF; the LF variant is derived
//! from the finished message.

use crate::charset::{CHARSETS, encode_into};

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Longest encoded line of base64 and quoted-printable (RFC 2045).
pub(crate) const MAX_ENCODED_LINE: usize = 76;
/// Longest encoded word (RFC 2047 section 2).
pub(crate) const MAX_ENCODED_WORD: usize = 75;
/// Folding target for header lines: RFC 5322 section 2.1.1 recommends 78;
/// RFC 2047 section 2 limits lines holding encoded words to 76.
pub(crate) const FOLD_AT: usize = 76;

/// Marks a space where a header may be folded.
pub(crate) const FOLD: u8 = 0x01;
/// Marks a space where a header may be folded, with a tab on continuation.
pub(crate) const FOLD_TAB: u8 = 0x02;

/// Appends the base64 of `data` without line breaks.
pub(crate) fn base64_raw(data: &[u8], out: &mut Vec<u8>) {
    let mut chunks = data.chunks_exact(3);
    for c in &mut chunks {
        let n = (u32::from(c[0]) << 16) | (u32::from(c[1]) << 8) | u32::from(c[2]);
        out.extend_from_slice(&[
            B64[(n >> 18) as usize & 63],
            B64[(n >> 12) as usize & 63],
            B64[(n >> 6) as usize & 63],
            B64[n as usize & 63],
        ]);
    }
    match *chunks.remainder() {
        [a] => {
            let n = u32::from(a) << 16;
            out.extend_from_slice(&[
                B64[(n >> 18) as usize & 63],
                B64[(n >> 12) as usize & 63],
                b'=',
                b'=',
            ]);
        }
        [a, b] => {
            let n = (u32::from(a) << 16) | (u32::from(b) << 8);
            out.extend_from_slice(&[
                B64[(n >> 18) as usize & 63],
                B64[(n >> 12) as usize & 63],
                B64[(n >> 6) as usize & 63],
                b'=',
            ]);
        }
        _ => {}
    }
}

/// Appends the base64 of `data` in lines of `width` characters (a multiple
/// of 4, at most 76), each ending in CRLF.
pub(crate) fn base64_lines(data: &[u8], width: usize, out: &mut Vec<u8>) {
    debug_assert!(width.is_multiple_of(4) && width <= MAX_ENCODED_LINE);
    out.reserve(data.len() / 3 * 4 + data.len() / 28 + 8);
    for line in data.chunks(width / 4 * 3) {
        base64_raw(line, out);
        out.extend_from_slice(b"\r\n");
    }
}

/// Bytes written literally in quoted-printable when not at the end of a
/// line (RFC 2045 section 6.7 rules 2 and 3).
const QP_LITERAL: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 33;
    while b <= 126 {
        t[b] = b != b'=' as usize;
        b += 1;
    }
    t[b' ' as usize] = true;
    t[b'\t' as usize] = true;
    t
};

/// Position of the first `\n` in `s` at or after `from`, eight bytes at a
/// time.
pub(crate) fn find_newline(s: &[u8], from: usize) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let mut i = from;
    while i + 8 <= s.len() {
        let mut word = [0u8; 8];
        word.copy_from_slice(&s[i..i + 8]);
        let w = u64::from_le_bytes(word) ^ (LO * u64::from(b'\n'));
        let zero = w.wrapping_sub(LO) & !w & HI;
        if zero != 0 {
            return Some(i + (zero.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    s[i..].iter().position(|&b| b == b'\n').map(|k| i + k)
}

/// Calls `f` with each line of `data` (split at `\n`, without it); a final
/// `\n` does not start an empty line.
pub(crate) fn for_each_line(data: &[u8], mut f: impl FnMut(&[u8])) {
    let mut start = 0;
    while start < data.len() {
        let end = find_newline(data, start).unwrap_or(data.len());
        f(&data[start..end]);
        start = end + 1;
    }
}

/// Appends the quoted-printable encoding of text `data`, whose lines end in
/// `\n`: each `\n` becomes a hard CRLF line break; long lines get soft breaks;
/// whitespace before a line break is encoded. Returns (soft breaks used,
/// trailing whitespace encoded).
pub(crate) fn quoted_printable_text(data: &[u8], out: &mut Vec<u8>) -> (bool, bool) {
    let mut soft = false;
    let mut trailing = false;
    for_each_line(data, |line| {
        let n = line.len();
        out.reserve(n + n / 8 + 8);
        let mut col = 0;
        let mut i = 0;
        while i < n {
            let b = line[i];
            let at_end = i + 1 == n;
            let literal = QP_LITERAL[usize::from(b)] && !(at_end && (b == b' ' || b == b'\t'));
            if !literal && (b == b' ' || b == b'\t') {
                trailing = true;
            }
            let width = if literal { 1 } else { 3 };
            // Keep room for the soft-break `=` unless this is the line's end.
            let limit = if at_end {
                MAX_ENCODED_LINE
            } else {
                MAX_ENCODED_LINE - 1
            };
            if col + width > limit {
                out.extend_from_slice(b"=\r\n");
                soft = true;
                col = 0;
            }
            if literal {
                // Copy the run of literal bytes that fit, short of the last
                // byte of the line (which has its own rule).
                let stop = (i + (MAX_ENCODED_LINE - 1).saturating_sub(col))
                    .min(n - 1)
                    .max(i + 1);
                let mut j = i + 1;
                while j < stop && QP_LITERAL[usize::from(line[j])] {
                    j += 1;
                }
                out.extend_from_slice(&line[i..j]);
                col += j - i;
                i = j;
            } else {
                out.extend_from_slice(&[b'=', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
                col += 3;
                i += 1;
            }
        }
        out.extend_from_slice(b"\r\n");
    });
    (soft, trailing)
}

/// Encoded-word flavour (RFC 2047 section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WordEncoding {
    B,
    Q,
}

/// Appends `text` as encoded words in charset number `charset`, separated by
/// [`FOLD`] markers, each word at most 75 characters and holding whole
/// characters (and, for ISO-2022-JP, ending in ASCII mode).
pub(crate) fn encoded_words(
    charset: usize,
    name: &str,
    enc: WordEncoding,
    text: &str,
    out: &mut Vec<u8>,
) {
    let overhead = name.len() + 7; // =?name?X?...?=
    let room = MAX_ENCODED_WORD - overhead;
    let mut raw = Vec::with_capacity(room);
    let mut rest = text;
    let mut first = true;
    while !rest.is_empty() {
        // Guess how many characters fit, then shrink until the word fits.
        let mut take = guess_chars(rest, enc, room);
        loop {
            let end = rest.char_indices().nth(take).map_or(rest.len(), |(i, _)| i);
            raw.clear();
            encode_into(charset, &rest[..end], &mut raw);
            if encoded_len(&raw, enc) <= room || take == 1 {
                if !first {
                    out.push(FOLD);
                }
                first = false;
                out.extend_from_slice(b"=?");
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(if enc == WordEncoding::B {
                    b"?B?"
                } else {
                    b"?Q?"
                });
                match enc {
                    WordEncoding::B => base64_raw(&raw, out),
                    WordEncoding::Q => q_encode(&raw, out),
                }
                out.extend_from_slice(b"?=");
                rest = &rest[end..];
                break;
            }
            take = (take * 3 / 4).max(1);
        }
    }
}

fn guess_chars(text: &str, enc: WordEncoding, room: usize) -> usize {
    let mut bytes = 0;
    let mut n = 0;
    for c in text.chars() {
        let raw = c.len_utf8().min(3);
        bytes += match enc {
            WordEncoding::B => raw * 4 / 3 + 1,
            WordEncoding::Q => {
                if c.is_ascii_alphanumeric() || c == ' ' {
                    1
                } else {
                    raw * 3
                }
            }
        };
        if bytes > room {
            break;
        }
        n += 1;
    }
    n.max(1)
}

fn encoded_len(raw: &[u8], enc: WordEncoding) -> usize {
    match enc {
        WordEncoding::B => raw.len().div_ceil(3) * 4,
        WordEncoding::Q => raw
            .iter()
            .map(|&b| if q_literal(b) || b == b' ' { 1 } else { 3 })
            .sum(),
    }
}

/// Characters allowed literally in a Q-encoded word anywhere, including in a
/// phrase (RFC 2047 section 5 (3)).
fn q_literal(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'!' | b'*' | b'+' | b'-' | b'/')
}

fn q_encode(raw: &[u8], out: &mut Vec<u8>) {
    for &b in raw {
        if q_literal(b) {
            out.push(b);
        } else if b == b' ' {
            out.push(b'_');
        } else {
            out.extend_from_slice(&[b'=', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
}

/// RFC 2231 section 7 percent encoding of `raw` (attribute-char kept).
pub(crate) fn percent_encode(raw: &[u8], out: &mut Vec<u8>) {
    for &b in raw {
        if b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#' | b'$' | b'&' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
            )
        {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
}

/// Writes `name: value` folded: `value` holds [`FOLD`]/[`FOLD_TAB`] markers
/// at the spaces where a line break may go. Returns the number of lines.
pub(crate) fn write_header(out: &mut Vec<u8>, name: &str, value: &[u8]) -> usize {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b":");
    let mut col = name.len() + 1;
    let mut lines = 1;
    let mut rest = value;
    let mut marker = b' ';
    let mut first = true;
    loop {
        let end = rest
            .iter()
            .position(|&b| b == FOLD || b == FOLD_TAB)
            .unwrap_or(rest.len());
        let seg = &rest[..end];
        // A first segment that does not fit goes to its own line when that
        // helps (the space after the colon is folding white space).
        let fold_first = first && col + 1 + seg.len() > FOLD_AT && seg.len() < FOLD_AT;
        if fold_first || (!first && col + 1 + seg.len() > FOLD_AT) {
            out.extend_from_slice(b"\r\n");
            out.push(if marker == FOLD_TAB { b'\t' } else { b' ' });
            col = 1;
            lines += 1;
        } else if !seg.is_empty() || !first {
            out.push(b' ');
            col += 1;
        }
        out.extend_from_slice(seg);
        col += seg.len();
        first = false;
        if end == rest.len() {
            break;
        }
        marker = rest[end];
        rest = &rest[end + 1..];
    }
    out.extend_from_slice(b"\r\n");
    lines
}

/// The charset's name for use in headers.
pub(crate) fn charset_name(charset: usize, variant: usize) -> &'static str {
    let names = CHARSETS[charset].names;
    names[variant % names.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_known_answers() {
        let mut v = Vec::new();
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            v.clear();
            base64_raw(i.as_bytes(), &mut v);
            assert_eq!(v, o.as_bytes());
        }
    }

    #[test]
    fn quoted_printable_breaks_and_trailing_space() {
        let mut v = Vec::new();
        let line = "a".repeat(100) + " \nb=c\t\n";
        let (soft, trailing) = quoted_printable_text(line.as_bytes(), &mut v);
        assert!(soft && trailing);
        let s = String::from_utf8(v).unwrap();
        for l in s.split("\r\n") {
            assert!(l.len() <= 76, "{l}");
        }
        assert!(s.contains("=20\r\nb=3Dc=09\r\n"), "{s}");
    }

    /// The byte-at-a-time reference the fast encoder must match.
    fn reference_qp(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for line in data
            .strip_suffix(b"\n")
            .unwrap_or(data)
            .split(|&b| b == b'\n')
        {
            let mut col = 0;
            for (i, &b) in line.iter().enumerate() {
                let at_end = i + 1 == line.len();
                let literal = match b {
                    b'=' => false,
                    b' ' | b'\t' => !at_end,
                    33..=126 => true,
                    _ => false,
                };
                let width = if literal { 1 } else { 3 };
                if col + width > if at_end { 76 } else { 75 } {
                    out.extend_from_slice(b"=\r\n");
                    col = 0;
                }
                if literal {
                    out.push(b);
                } else {
                    out.extend_from_slice(format!("={b:02X}").as_bytes());
                }
                col += width;
            }
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    #[test]
    fn quoted_printable_matches_reference() {
        let mut rng = crate::rng::Rng::new(9);
        let alphabet = b"ab =\t\n\xC3\xA9.-xyz0123456789";
        for _ in 0..2000 {
            let len = rng.below(400);
            let mut data: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect();
            data.push(b'\n');
            let mut fast = Vec::new();
            quoted_printable_text(&data, &mut fast);
            assert_eq!(
                String::from_utf8_lossy(&fast),
                String::from_utf8_lossy(&reference_qp(&data))
            );
        }
    }

    #[test]
    fn newline_search() {
        let s = b"0123456789abcdef\nxy\n";
        assert_eq!(find_newline(s, 0), Some(16));
        assert_eq!(find_newline(s, 17), Some(19));
        assert_eq!(find_newline(b"no newline at all here", 0), None);
    }

    #[test]
    fn folding_respects_width() {
        let mut v = Vec::new();
        let value: Vec<u8> = std::iter::repeat_n(&b"word\x01"[..], 40)
            .flatten()
            .copied()
            .collect();
        let lines = write_header(&mut v, "Subject", &value[..value.len() - 1]);
        assert!(lines > 2);
        for l in v.split(|&b| b == b'\n') {
            assert!(l.len() <= 79);
        }
    }

    #[test]
    fn encoded_words_are_short() {
        let mut v = Vec::new();
        let text = "生きるべきか、死ぬべきか、それが問題だ。デンマークの王子ハムレット";
        encoded_words(9, "iso-2022-jp", WordEncoding::B, text, &mut v);
        for w in v.split(|&b| b == FOLD) {
            assert!(
                w.len() <= MAX_ENCODED_WORD,
                "{}",
                String::from_utf8_lossy(w)
            );
        }
    }
}
