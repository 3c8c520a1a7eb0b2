//! Canonicalization (RFC 6376 section 3.4) and the streaming body hash
//! (section 3.7, `bh=`).

use crate::header::HeaderField;
use aws_lc_rs::digest;

/// A canonicalization algorithm (RFC 6376 section 3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Canonicalization {
    /// `simple` (sections 3.4.1 and 3.4.3): almost no change.
    Simple,
    /// `relaxed` (sections 3.4.2 and 3.4.4): whitespace and case normalised.
    Relaxed,
}

impl Canonicalization {
    /// The name used in the `c=` tag.
    pub fn as_str(self) -> &'static str {
        match self {
            Canonicalization::Simple => "simple",
            Canonicalization::Relaxed => "relaxed",
        }
    }

    pub(crate) fn parse(s: &[u8]) -> Option<Canonicalization> {
        if s.eq_ignore_ascii_case(b"simple") {
            Some(Canonicalization::Simple)
        } else if s.eq_ignore_ascii_case(b"relaxed") {
            Some(Canonicalization::Relaxed)
        } else {
            None
        }
    }
}

/// The hash function of a signature algorithm (RFC 6376 section 3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    /// SHA-1: verification of legacy `rsa-sha1` only (RFC 8301).
    Sha1,
    /// SHA-256.
    Sha256,
}

impl HashAlgorithm {
    pub(crate) fn digest(self) -> &'static digest::Algorithm {
        match self {
            HashAlgorithm::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            HashAlgorithm::Sha256 => &digest::SHA256,
        }
    }

    /// The name used in a key record's `h=` tag.
    pub fn as_str(self) -> &'static str {
        match self {
            HashAlgorithm::Sha1 => "sha1",
            HashAlgorithm::Sha256 => "sha256",
        }
    }
}

fn is_wsp(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// Appends the canonical form of one header field, with its CRLF
/// (RFC 6376 sections 3.4.1 and 3.4.2).
pub(crate) fn canon_header(c: Canonicalization, field: &HeaderField<'_>, out: &mut Vec<u8>) {
    match c {
        Canonicalization::Simple => simple_header(field.raw(), out),
        Canonicalization::Relaxed => relaxed_header(field.name(), field.value(), out),
    }
}

/// Simple: the field unchanged, except that a bare LF line terminator is
/// written as CRLF, and a missing final terminator is added.
pub(crate) fn simple_header(raw: &[u8], out: &mut Vec<u8>) {
    let mut prev = 0u8;
    for &b in raw {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    if !raw.ends_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
}

/// Relaxed: lower-case name, unfolded value, whitespace runs as one SP, no
/// whitespace around the colon or at the end.
pub(crate) fn relaxed_header(name: &[u8], value: &[u8], out: &mut Vec<u8>) {
    out.extend(name.iter().map(u8::to_ascii_lowercase));
    out.push(b':');
    let mut ws = false;
    let mut any = false;
    let n = value.len();
    for (i, &b) in value.iter().enumerate() {
        // Line terminators inside a folded value vanish (unfolding).
        if b == b'\n' || (b == b'\r' && i + 1 < n && value[i + 1] == b'\n') {
            continue;
        }
        if is_wsp(b) {
            ws = true;
            continue;
        }
        if ws && any {
            out.push(b' ');
        }
        ws = false;
        any = true;
        out.push(b);
    }
    out.extend_from_slice(b"\r\n");
}

const STAGING: usize = 64 * 1024;

/// Unchanged spans at least this long are hashed in place.
const DIRECT_MIN: usize = 4096;

fn double_space() -> &'static memchr::memmem::Finder<'static> {
    static FINDER: std::sync::OnceLock<memchr::memmem::Finder<'static>> =
        std::sync::OnceLock::new();
    FINDER.get_or_init(|| memchr::memmem::Finder::new(b"  "))
}

/// The next tab and the next double space at or after a position of one
/// chunk, searched for once per occurrence rather than once per line.
struct Marks {
    tab: Option<usize>,
    double: Option<usize>,
}

impl Marks {
    fn new(canon: Canonicalization) -> Marks {
        // Simple needs neither; usize::MAX never stops a span.
        let never = match canon {
            Canonicalization::Simple => Some(usize::MAX),
            Canonicalization::Relaxed => None,
        };
        Marks {
            tab: never,
            double: never,
        }
    }

    fn tab(&mut self, data: &[u8], pos: usize) -> usize {
        match self.tab {
            Some(t) if t >= pos => t,
            _ => {
                let t = memchr::memchr(b'\t', &data[pos..]).map_or(usize::MAX, |i| pos + i);
                self.tab = Some(t);
                t
            }
        }
    }

    fn double(&mut self, data: &[u8], pos: usize) -> usize {
        match self.double {
            Some(d) if d >= pos => d,
            _ => {
                let d = double_space()
                    .find(&data[pos..])
                    .map_or(usize::MAX, |i| pos + i);
                self.double = Some(d);
                d
            }
        }
    }
}

/// The body hash of RFC 6376 section 3.7, computed in a stream: feed the
/// body (everything after the empty line ending the header block) in chunks
/// of any size with [`BodyHasher::update`], then [`BodyHasher::finish`].
///
/// Memory stays bounded whatever the line lengths: the canonicalizer is a
/// small state machine (pending empty lines, pending whitespace, a pending
/// CR) rather than a line buffer. With a length limit (`l=`), only the first
/// `limit` canonical bytes are hashed, but the whole canonical length is
/// still counted so trailing unsigned content can be reported.
#[derive(Clone)]
pub struct BodyHasher {
    canon: Canonicalization,
    ctx: digest::Context,
    limit: Option<u64>,
    hashed: u64,
    canonical_len: u64,
    pending_empty: u64,
    line_started: bool,
    ws_pending: bool,
    cr_pending: bool,
    out: Vec<u8>,
    capture: Option<Vec<u8>>,
}

impl std::fmt::Debug for BodyHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyHasher")
            .field("canon", &self.canon)
            .field("limit", &self.limit)
            .field("hashed", &self.hashed)
            .field("canonical_len", &self.canonical_len)
            .finish_non_exhaustive()
    }
}

/// What a [`BodyHasher`] computed.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyHash {
    /// The digest of the hashed canonical body (the `bh=` value, decoded).
    pub digest: Vec<u8>,
    /// Canonical bytes hashed (at most the limit).
    pub hashed_len: u64,
    /// Canonical length of the whole body.
    pub canonical_len: u64,
}

impl BodyHasher {
    /// A hasher for one canonicalization and hash, with an optional `l=`
    /// limit.
    pub fn new(canon: Canonicalization, hash: HashAlgorithm, limit: Option<u64>) -> BodyHasher {
        BodyHasher {
            canon,
            ctx: digest::Context::new(hash.digest()),
            limit,
            hashed: 0,
            canonical_len: 0,
            pending_empty: 0,
            line_started: false,
            ws_pending: false,
            cr_pending: false,
            out: Vec::new(),
            capture: None,
        }
    }

    /// Feeds the next chunk of the body.
    ///
    /// Runs of lines that canonicalization leaves unchanged (CRLF-terminated
    /// and non-empty; for relaxed also without tabs, double spaces or
    /// trailing whitespace) are hashed straight from `data` as one slice;
    /// only the other lines go through the byte-level state machine.
    pub fn update(&mut self, data: &[u8]) {
        let mut marks = Marks::new(self.canon);
        let mut pos = 0;
        while pos < data.len() {
            if self.is_clean() {
                let end = self.clean_span(data, pos, &mut marks);
                if end > pos {
                    self.direct(&data[pos..end]);
                    pos = end;
                    continue;
                }
            }
            // One line (or the unterminated rest) the slow way.
            let end = memchr::memchr(b'\n', &data[pos..]).map_or(data.len(), |i| pos + i + 1);
            self.update_lines(&data[pos..end]);
            pos = end;
        }
    }

    /// No line content, whitespace or CR held back: the next byte starts a
    /// line.
    fn is_clean(&self) -> bool {
        !self.line_started && !self.ws_pending && !self.cr_pending
    }

    /// The end of the run of unchanged lines starting at `pos`.
    fn clean_span(&self, data: &[u8], mut pos: usize, marks: &mut Marks) -> usize {
        let relaxed = self.canon == Canonicalization::Relaxed;
        while let Some(i) = memchr::memchr(b'\n', &data[pos..]) {
            let nl = pos + i;
            // Content, then CR: at least two bytes before the LF.
            if i < 2 || data[nl - 1] != b'\r' {
                break;
            }
            if relaxed
                && (is_wsp(data[nl - 2])
                    || marks.tab(data, pos) < nl
                    || marks.double(data, pos) < nl)
            {
                break;
            }
            pos = nl + 1;
        }
        pos
    }

    /// Hashes unchanged canonical lines straight from the input.
    fn direct(&mut self, bytes: &[u8]) {
        while self.pending_empty > 0 {
            self.pending_empty -= 1;
            self.emit(b"\r\n");
        }
        // Short spans join the staged bytes: few large hash updates beat
        // many small ones.
        if bytes.len() < DIRECT_MIN {
            self.emit(bytes);
            if self.out.len() >= STAGING {
                self.flush();
            }
        } else {
            self.flush();
            self.consume(bytes);
        }
    }

    fn update_lines(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let (line, terminated) = match memchr::memchr(b'\n', data) {
                Some(i) => (&data[..i], true),
                None => (data, false),
            };
            if terminated {
                // A CR right before the LF is part of the terminator.
                let content = match line {
                    [rest @ .., b'\r'] => {
                        self.resolve_cr();
                        rest
                    }
                    [] => {
                        // LF right after a chunk ending in CR: CRLF split.
                        self.cr_pending = false;
                        line
                    }
                    _ => {
                        self.resolve_cr();
                        line
                    }
                };
                self.content(content);
                self.end_line();
                data = &data[line.len() + 1..];
            } else {
                self.resolve_cr();
                match line {
                    [rest @ .., b'\r'] => {
                        self.content(rest);
                        self.cr_pending = true;
                    }
                    _ => self.content(line),
                }
                data = &[];
            }
            if self.out.len() >= STAGING {
                self.flush();
            }
        }
    }

    /// A CR held back at a chunk boundary turned out not to precede an LF:
    /// it is content.
    fn resolve_cr(&mut self) {
        if self.cr_pending {
            self.cr_pending = false;
            self.content(b"\r");
        }
    }

    fn content(&mut self, seg: &[u8]) {
        match self.canon {
            Canonicalization::Simple => {
                if !seg.is_empty() {
                    self.start_line();
                    self.emit(seg);
                }
            }
            Canonicalization::Relaxed => self.relaxed_content(seg),
        }
    }

    /// Relaxed body canonicalization of line content (no LF inside):
    /// whitespace runs become one SP, trailing whitespace is held back until
    /// more content shows it is not trailing.
    fn relaxed_content(&mut self, seg: &[u8]) {
        // Fast path: a line (or line start) that needs no change.
        if !self.line_started
            && !self.ws_pending
            && seg.last().is_some_and(|&c| !is_wsp(c))
            && memchr::memchr(b'\t', seg).is_none()
            && double_space().find(seg).is_none()
        {
            self.start_line();
            self.out.extend_from_slice(seg);
            return;
        }
        let Some(first) = seg.iter().position(|&c| !is_wsp(c)) else {
            if !seg.is_empty() {
                self.ws_pending = true;
            }
            return;
        };
        self.start_line();
        let mut ws = self.ws_pending || first > 0;
        let out = &mut self.out;
        out.reserve(seg.len() + 1);
        let n = seg.len();
        let mut i = first;
        while i < n {
            // A run of content, copied at once; then the whitespace after it.
            let end = seg[i..]
                .iter()
                .position(|&c| is_wsp(c))
                .map_or(n, |p| i + p);
            if ws {
                out.push(b' ');
            }
            out.extend_from_slice(&seg[i..end]);
            i = end;
            ws = false;
            while i < n && is_wsp(seg[i]) {
                ws = true;
                i += 1;
            }
        }
        self.ws_pending = ws;
    }

    /// Before the first content of a line: the empty lines held back are
    /// not trailing after all.
    fn start_line(&mut self) {
        if !self.line_started {
            self.line_started = true;
            while self.pending_empty > 0 {
                self.pending_empty -= 1;
                self.emit(b"\r\n");
            }
        }
    }

    fn end_line(&mut self) {
        if self.line_started {
            self.emit(b"\r\n");
        } else {
            self.pending_empty += 1;
        }
        self.line_started = false;
        self.ws_pending = false;
    }

    fn emit(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// Hashes the staged canonical bytes, up to the `l=` limit.
    fn flush(&mut self) {
        if self.out.is_empty() {
            return;
        }
        let out = std::mem::take(&mut self.out);
        self.consume(&out);
        self.out = out;
        self.out.clear();
    }

    /// Hashes canonical bytes, up to the `l=` limit.
    fn consume(&mut self, bytes: &[u8]) {
        let n = bytes.len();
        self.canonical_len += n as u64;
        let take = match self.limit {
            Some(limit) => {
                let room = limit.saturating_sub(self.hashed);
                usize::try_from(room).map_or(n, |r| r.min(n))
            }
            None => n,
        };
        if take > 0 {
            self.ctx.update(&bytes[..take]);
            self.hashed += take as u64;
        }
        if let Some(c) = &mut self.capture {
            c.extend_from_slice(bytes);
        }
    }

    fn is_empty_so_far(&self) -> bool {
        self.canonical_len == 0 && self.out.is_empty()
    }

    fn end_of_body(&mut self) {
        self.resolve_cr();
        if self.line_started {
            self.emit(b"\r\n");
        }
        if self.is_empty_so_far() && self.canon == Canonicalization::Simple {
            self.emit(b"\r\n");
        }
        self.flush();
    }

    /// Ends the body: applies the end-of-body rules (trailing empty lines
    /// ignored; a missing final CRLF added; an empty body is CRLF in simple
    /// and nothing in relaxed) and returns the digest.
    pub fn finish(mut self) -> BodyHash {
        self.end_of_body();
        BodyHash {
            digest: self.ctx.finish().as_ref().to_vec(),
            hashed_len: self.hashed,
            canonical_len: self.canonical_len,
        }
    }
}

/// The canonical body, all at once (for tests and small messages).
pub fn canonical_body(canon: Canonicalization, body: &[u8]) -> Vec<u8> {
    let mut h = BodyHasher::new(canon, HashAlgorithm::Sha256, None);
    h.capture = Some(Vec::new());
    h.update(body);
    h.end_of_body();
    h.capture.take().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use Canonicalization::*;

    #[test]
    fn rfc6376_section_3_4_5_example() {
        let header_in: &[&[u8]] = &[b"A: X\r\n", b"B : Y\t\r\n\tZ  \r\n"];
        let body = b" C \r\nD \t E\r\n\r\n\r\n";
        let mut relaxed = Vec::new();
        let mut simple = Vec::new();
        for raw in header_in {
            let h = crate::header::split_header(raw);
            canon_header(Relaxed, &h.fields[0], &mut relaxed);
            canon_header(Simple, &h.fields[0], &mut simple);
        }
        assert_eq!(relaxed, b"a:X\r\nb:Y Z\r\n");
        assert_eq!(simple, b"A: X\r\nB : Y\t\r\n\tZ  \r\n");
        assert_eq!(canonical_body(Relaxed, body), b" C\r\nD E\r\n");
        assert_eq!(canonical_body(Simple, body), b" C \r\nD \t E\r\n");
    }

    #[test]
    fn empty_and_trailing_rules() {
        assert_eq!(canonical_body(Simple, b""), b"\r\n");
        assert_eq!(canonical_body(Relaxed, b""), b"");
        assert_eq!(canonical_body(Simple, b"\r\n\r\n"), b"\r\n");
        assert_eq!(canonical_body(Relaxed, b"\r\n \t\r\n"), b"");
        assert_eq!(canonical_body(Simple, b"x"), b"x\r\n");
        assert_eq!(canonical_body(Relaxed, b"x  "), b"x\r\n");
        assert_eq!(canonical_body(Simple, b"a\n\nb\n\n"), b"a\r\n\r\nb\r\n");
        assert_eq!(canonical_body(Simple, b"a\rb\r"), b"a\rb\r\r\n");
        assert_eq!(canonical_body(Relaxed, b"  a\r\n"), b" a\r\n");
        assert_eq!(canonical_body(Simple, b" \r\n"), b" \r\n");
    }

    #[test]
    fn rfc8463_body_hash() {
        let body = b"Hi.\r\n\r\nWe lost the game.  Are you hungry yet?\r\n\r\nJoe.\r\n";
        let mut h = BodyHasher::new(Simple, HashAlgorithm::Sha256, None);
        h.update(body);
        assert_eq!(
            crate::base64::encode(&h.finish().digest),
            "4bLNXImK9drULnmePzZNEBleUanJCX5PIsDIFoH4KTQ="
        );
    }

    #[test]
    fn chunking_does_not_matter() {
        let body: &[u8] = b"a \t b\r\n\r\n  \r\nc\r\r\nd\re \r\n\r\n\r\n";
        for canon in [Simple, Relaxed] {
            let mut whole = BodyHasher::new(canon, HashAlgorithm::Sha256, None);
            whole.update(body);
            let whole = whole.finish();
            for split in 0..body.len() {
                let mut h = BodyHasher::new(canon, HashAlgorithm::Sha256, None);
                h.update(&body[..split]);
                h.update(&body[split..]);
                assert_eq!(h.finish(), whole, "{canon:?} split at {split}");
            }
        }
    }

    #[test]
    fn large_bodies_are_captured_whole() {
        let body = b"a  b\r\n\r\n".repeat(50_000);
        let canon = canonical_body(Relaxed, &body);
        assert_eq!(canon.len(), 7 * 50_000 - 2);
        let mut h = BodyHasher::new(Relaxed, HashAlgorithm::Sha256, None);
        h.update(&body);
        let r = h.finish();
        assert_eq!(r.canonical_len, canon.len() as u64);
        assert_eq!(r.digest, digest::digest(&digest::SHA256, &canon).as_ref());
    }

    #[test]
    fn direct_spans_match_the_state_machine() {
        // A small LCG: bodies of CRLF lines mixed with tabs, runs of spaces,
        // bare CR and LF and empty lines, fed in random chunks.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (seed >> 33) % n
        };
        let pieces: [&[u8]; 9] = [
            b"ab", b"c", b" ", b"  ", b"\t", b"\r\n", b"\r\n", b"\n", b"\r",
        ];
        for _ in 0..2000 {
            let mut body = Vec::new();
            for _ in 0..next(40) {
                body.extend_from_slice(pieces[next(9) as usize]);
            }
            for canon in [Simple, Relaxed] {
                for limit in [None, Some(next(20))] {
                    let mut slow = BodyHasher::new(canon, HashAlgorithm::Sha256, limit);
                    slow.update_lines(&body);
                    let mut fast = BodyHasher::new(canon, HashAlgorithm::Sha256, limit);
                    let split = next(body.len() as u64 + 1) as usize;
                    fast.update(&body[..split]);
                    fast.update(&body[split..]);
                    assert_eq!(fast.finish(), slow.finish(), "{canon:?} {body:?}");
                }
            }
        }
    }

    #[test]
    fn limit_counts_unsigned_tail() {
        let mut h = BodyHasher::new(Relaxed, HashAlgorithm::Sha256, Some(3));
        h.update(b"abc\r\ndef\r\n");
        let r = h.finish();
        assert_eq!(r.hashed_len, 3);
        assert_eq!(r.canonical_len, 10);
    }
}
