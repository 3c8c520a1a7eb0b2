//! Message data: the DATA decoder (RFC 5321 4.1.1.4 end of data, 4.5.2
//! transparency) with SMTP-smuggling-proof end detection, the BDAT body
//! checker (RFC 3030), and the client-side encoders.
//!
//! # End of data, and smuggling
//!
//! Only `CRLF "." CRLF` ends DATA. Every other spelling (`\n.\n`,
//! `\r.\r`, `\n.\r\n`, `\r\n.\n`, `\r\n.\r`, ...) is *not* an end: the
//! bare CR or LF marks the message bad, the decoder keeps scanning for the
//! real `CRLF "." CRLF`, emits no further data, and the server rejects the
//! message there with `554 5.6.0` (the session stays open, counting one
//! error). Commands smuggled after a fake end are thus swallowed as part of
//! the rejected message and never executed.

use crate::error::{Error, InvalidInput, PeerMisbehaved};
use crate::limits::TEXT_LINE_MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    /// After CRLF (or at the start of data).
    LineStart,
    /// Inside a line.
    Mid,
    /// After a CR inside a line.
    Cr,
    /// After a dot at the start of a line.
    Dot,
    /// After `CRLF "." CR`.
    DotCr,
    /// `CRLF "." CRLF` seen.
    Done,
}

/// Whether the decoder has seen the end of data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataStatus {
    /// Feed more bytes.
    NeedMore,
    /// `CRLF "." CRLF` consumed; bytes after it were not consumed.
    Done,
}

/// Streaming DATA decoder: dot-unstuffing, strict line endings, NUL, 8-bit,
/// line length and size checks; it buffers nothing.
#[derive(Debug, Clone)]
pub struct DataDecoder {
    st: St,
    size: u64,
    max_size: u64,
    allow_8bit: bool,
    line_len: usize,
    error: Option<Error>,
}

impl DataDecoder {
    /// A decoder for one message. `allow_8bit` is true when the body was
    /// declared `BODY=8BITMIME` (RFC 6152) or `SMTPUTF8` (RFC 6531).
    pub fn new(max_size: u64, allow_8bit: bool) -> Self {
        DataDecoder {
            st: St::LineStart,
            size: 0,
            max_size,
            allow_8bit,
            line_len: 0,
            error: None,
        }
    }

    /// The first error found, if any (the message must then be rejected).
    pub fn error(&self) -> Option<&Error> {
        self.error.as_ref()
    }

    /// Octets of message emitted so far (after unstuffing).
    pub fn size(&self) -> u64 {
        self.size
    }

    fn fail(&mut self, e: impl Into<Error>) {
        if self.error.is_none() {
            self.error = Some(e.into());
        }
    }

    fn emit(&mut self, out: &mut Vec<u8>, bytes: &[u8]) {
        if self.error.is_some() {
            return;
        }
        let size = self.size + bytes.len() as u64;
        if size > self.max_size {
            // Counted up to the first octet too many, as byte by byte.
            self.size = self.size.max(self.max_size + 1);
            self.fail(PeerMisbehaved::MessageTooBig);
            return;
        }
        self.size = size;
        out.extend_from_slice(bytes);
    }

    /// Whether `b` inside a line changes no state.
    fn plain(&self, b: u8) -> bool {
        !matches!(b, b'\r' | b'\n' | 0) && (b < 0x80 || self.allow_8bit)
    }

    /// How many bytes at the start of `bytes` are plain: eight at a time
    /// while a word holds no CR, LF, NUL (nor, without 8-bit, a byte
    /// above 0x7F), then one at a time.
    fn plain_len(&self, bytes: &[u8]) -> usize {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGH: u64 = 0x8080_8080_8080_8080;
        // Nonzero when a byte of `w` is `b` (exact when it is zero).
        let has = |w: u64, b: u8| {
            let x = w ^ (ONES * u64::from(b));
            x.wrapping_sub(ONES) & !x & HIGH
        };
        let high = if self.allow_8bit { 0 } else { HIGH };
        let mut n = 0;
        for word in bytes.chunks_exact(8) {
            let w = u64::from_le_bytes([
                word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7],
            ]);
            if has(w, b'\r') | has(w, b'\n') | has(w, 0) | (w & high) != 0 {
                break;
            }
            n += 8;
        }
        n + bytes[n..]
            .iter()
            .position(|&b| !self.plain(b))
            .unwrap_or(bytes.len() - n)
    }

    /// From `at` inside a line: where the run of bytes that only extend
    /// lines (plain bytes, and `CRLF` followed by a plain byte other than
    /// a dot) ends, within the line length limit, and the length of the
    /// line being read there.
    fn plain_run(&self, input: &[u8], at: usize) -> (usize, usize) {
        let mut j = at;
        let mut line_len = self.line_len;
        loop {
            let room = TEXT_LINE_MAX.saturating_sub(line_len);
            let run = self.plain_len(&input[j..input.len().min(j + room)]);
            j += run;
            line_len += run;
            match input.get(j..j + 3) {
                Some([b'\r', b'\n', next])
                    if line_len + 2 <= TEXT_LINE_MAX && *next != b'.' && self.plain(*next) =>
                {
                    j += 3;
                    line_len = 1;
                }
                _ => return (j, line_len),
            }
        }
    }

    /// The rules for one byte.
    fn step(&mut self, b: u8, out: &mut Vec<u8>) {
        self.line_len += 1;
        if self.line_len > TEXT_LINE_MAX {
            self.fail(InvalidInput::TextLineTooLong);
        }
        if b == 0 {
            self.fail(InvalidInput::DataNul);
        } else if b >= 0x80 && !self.allow_8bit {
            self.fail(PeerMisbehaved::EightBitData);
        }
        self.st = match (self.st, b) {
            (St::LineStart, b'.') => St::Dot,
            (St::DotCr, b'\n') => St::Done,
            (St::Cr, b'\n') => {
                self.emit(out, b"\r\n");
                self.line_len = 0;
                St::LineStart
            }
            (St::Cr | St::DotCr, _) => {
                // CR not followed by LF.
                self.fail(InvalidInput::DataBareNewline);
                if b == b'\r' { St::Cr } else { St::Mid }
            }
            (_, b'\r') if self.st == St::Dot => St::DotCr,
            (_, b'\r') => St::Cr,
            (_, b'\n') => {
                self.fail(InvalidInput::DataBareNewline);
                St::Mid
            }
            (St::Dot, _) | (St::LineStart | St::Mid, _) => {
                // A dot at line start is removed (RFC 5321 4.5.2).
                self.emit(out, &[b]);
                St::Mid
            }
            (St::Done, _) => St::Done,
        };
    }

    /// Decode from `input`, appending message bytes to `out` (nothing once
    /// an error is found). Returns the octets consumed and the status.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, DataStatus) {
        let mut i = 0;
        while i < input.len() {
            if self.st == St::Done {
                return (i, DataStatus::Done);
            }
            // Inside a line, a run of bytes that change no state is
            // emitted at once, line ends included when the next line
            // starts with such a byte (`step` byte by byte gives the
            // same).
            if self.st == St::Mid {
                let (end, line_len) = self.plain_run(input, i);
                if end > i {
                    self.line_len = line_len;
                    self.emit(out, &input[i..end]);
                    i = end;
                    continue;
                }
            }
            self.step(input[i], out);
            i += 1;
        }
        if self.st == St::Done {
            (input.len(), DataStatus::Done)
        } else {
            (input.len(), DataStatus::NeedMore)
        }
    }
}

/// Checker for BDAT chunk contents (RFC 3030): without BINARYMIME the body
/// must still be CRLF text, so the same bare CR/LF, NUL, 8-bit and size
/// checks apply across chunk boundaries; no dot handling.
#[derive(Debug, Clone)]
pub struct BdatChecker {
    prev_cr: bool,
    size: u64,
    max_size: u64,
    allow_8bit: bool,
    error: Option<Error>,
}

impl BdatChecker {
    /// A checker for one message.
    pub fn new(max_size: u64, allow_8bit: bool) -> Self {
        BdatChecker {
            prev_cr: false,
            size: 0,
            max_size,
            allow_8bit,
            error: None,
        }
    }

    /// The first error found.
    pub fn error(&self) -> Option<&Error> {
        self.error.as_ref()
    }

    /// Octets accepted so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    fn fail(&mut self, e: impl Into<Error>) {
        if self.error.is_none() {
            self.error = Some(e.into());
        }
    }

    /// Check `chunk`, appending it to `out` while no error was found.
    pub fn chunk(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        for &b in chunk {
            match (self.prev_cr, b) {
                (true, b'\n') => {}
                (true, _) => self.fail(InvalidInput::DataBareNewline),
                (false, b'\n') => self.fail(InvalidInput::DataBareNewline),
                _ => {}
            }
            self.prev_cr = b == b'\r';
            if b == 0 {
                self.fail(InvalidInput::DataNul);
            } else if b >= 0x80 && !self.allow_8bit {
                self.fail(PeerMisbehaved::EightBitData);
            }
        }
        self.size = self.size.saturating_add(chunk.len() as u64);
        if self.size > self.max_size {
            self.fail(PeerMisbehaved::MessageTooBig);
        }
        if self.error.is_none() {
            out.extend_from_slice(chunk);
        }
    }

    /// Call after the LAST chunk: a trailing CR is a bare CR.
    pub fn finish(&mut self) {
        if self.prev_cr {
            self.fail(InvalidInput::DataBareNewline);
        }
    }
}

/// Normalise line endings to CRLF (a bare CR or LF becomes CRLF) and make
/// the message end with CRLF. Used by the client so that nothing it relays
/// can smuggle an end of data downstream.
pub fn normalize_crlf(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 2);
    let mut i = 0;
    while i < message.len() {
        match message[i] {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                if message.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The DATA wire form of `message`: line endings normalised to CRLF, a dot
/// added before every line starting with a dot (RFC 5321 4.5.2), and the
/// terminating `"." CRLF`.
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let norm = normalize_crlf(message);
    let mut out = Vec::with_capacity(norm.len() + 16);
    let mut line_start = true;
    for (i, &b) in norm.iter().enumerate() {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        line_start = b == b'\n' && i > 0 && norm[i - 1] == b'\r';
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The decoder's rules one byte at a time, without the fast path.
    fn reference(d: &mut DataDecoder, input: &[u8], out: &mut Vec<u8>) -> (usize, DataStatus) {
        for (i, &b) in input.iter().enumerate() {
            if d.st == St::Done {
                return (i, DataStatus::Done);
            }
            d.step(b, out);
        }
        if d.st == St::Done {
            (input.len(), DataStatus::Done)
        } else {
            (input.len(), DataStatus::NeedMore)
        }
    }

    fn pieces() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"\r\n".to_vec()),
            Just(b".".to_vec()),
            Just(b"\r".to_vec()),
            Just(b"\n".to_vec()),
            Just(vec![0]),
            Just(vec![0xC3, 0xA9]),
            Just(vec![b'x'; 990]),
            "[a-z .]{0,30}".prop_map(String::into_bytes),
        ];
        proptest::collection::vec(piece, 0..40).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn the_fast_path_decodes_as_the_bytewise_rules(
            input in pieces(),
            chunk in 1usize..2000,
            eight_bit: bool,
            max_size in 0u64..4000,
        ) {
            let mut fast = DataDecoder::new(max_size, eight_bit);
            let mut slow = DataDecoder::new(max_size, eight_bit);
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for part in input.chunks(chunk) {
                let x = fast.decode(part, &mut a);
                let y = reference(&mut slow, part, &mut b);
                prop_assert_eq!(x, y);
            }
            prop_assert_eq!(fast.error(), slow.error());
            prop_assert_eq!(fast.size(), slow.size());
            // After an error the message is refused, whatever was emitted.
            if fast.error().is_none() {
                prop_assert_eq!(a, b);
            }
        }
    }

    fn run(input: &[u8]) -> (Vec<u8>, usize, DataStatus, Option<Error>) {
        let mut d = DataDecoder::new(1 << 20, false);
        let mut out = Vec::new();
        let (n, st) = d.decode(input, &mut out);
        (out, n, st, d.error().cloned())
    }

    #[test]
    fn unstuffs_and_ends() {
        let (out, n, st, err) = run(b"a\r\n..b\r\n.\r\nQUIT\r\n");
        assert_eq!(out, b"a\r\n.b\r\n");
        assert_eq!(n, 11);
        assert_eq!(st, DataStatus::Done);
        assert_eq!(err, None);
        let (out, _, st, _) = run(b".\r\n");
        assert!(out.is_empty());
        assert_eq!(st, DataStatus::Done);
    }

    #[test]
    fn fake_ends_are_not_ends() {
        for fake in [
            &b"a\n.\nMAIL FROM:<x@y>\r\n"[..],
            b"a\r.\rMAIL FROM:<x@y>\r\n",
            b"a\n.\r\nMAIL FROM:<x@y>\r\n",
            b"a\r\n.\nMAIL FROM:<x@y>\r\n",
            b"a\r\n.\rMAIL FROM:<x@y>\r\n",
        ] {
            let (_, n, st, err) = run(fake);
            assert_eq!(st, DataStatus::NeedMore, "{fake:?}");
            assert_eq!(n, fake.len());
            assert_eq!(err, Some(InvalidInput::DataBareNewline.into()));
        }
    }

    #[test]
    fn real_end_after_error() {
        let (out, n, st, err) = run(b"a\nb\r\n.\r\nNOOP\r\n");
        // Bytes before the error were emitted; nothing after it.
        assert_eq!(out, b"a");
        assert_eq!(n, 8);
        assert_eq!(st, DataStatus::Done);
        assert!(err.is_some());
    }

    #[test]
    fn size_and_8bit() {
        let mut d = DataDecoder::new(4, true);
        let mut out = Vec::new();
        d.decode(b"abcdef\r\n.\r\n", &mut out);
        assert_eq!(d.error(), Some(&PeerMisbehaved::MessageTooBig.into()));
        let (_, _, _, err) = run("é\r\n.\r\n".as_bytes());
        assert_eq!(err, Some(PeerMisbehaved::EightBitData.into()));
    }

    #[test]
    fn stuffing_round_trip() {
        let msg = b"a\n.b\r\n..c\rd";
        let wire = dot_stuff(msg);
        assert_eq!(wire, b"a\r\n..b\r\n...c\r\nd\r\n.\r\n");
        let (out, n, st, err) = run(&wire);
        assert_eq!(out, b"a\r\n.b\r\n..c\r\nd\r\n");
        assert_eq!((n, st, err), (wire.len(), DataStatus::Done, None));
    }

    #[test]
    fn bdat_checker() {
        let mut c = BdatChecker::new(100, false);
        let mut out = Vec::new();
        c.chunk(b"a\r", &mut out);
        c.chunk(b"\nb\r\n", &mut out);
        c.finish();
        assert_eq!(c.error(), None);
        assert_eq!(out, b"a\r\nb\r\n");
        let mut c = BdatChecker::new(100, false);
        c.chunk(b"a\nb", &mut out);
        assert!(c.error().is_some());
    }
}
