//! Records of the delivery journal: one mailbox copy each (the mailbox
//! directory, the file name it gets there, the stored bytes), framed so
//! that a record cut short by a crash, bytes that are not a record, and
//! the records an earlier use of the same file left behind are told
//! apart from a whole record of the segment being read.
//!
//! ```text
//! "SCJ2" | length: u32 LE | CRC-32 of the fields: u32 LE | fields
//! fields = segment: u64 LE | dir length: u32 LE | dir | name length: u32 LE | name | body
//! ```
//!
//! `length` is the length of `fields`; the body takes what is left. A
//! segment's file is reused for a later segment once its copies are in
//! their mailboxes (its blocks are written already, so syncing a record
//! written over them writes no inode): past the new records it still
//! holds old ones, whose segment number is not the file's.
//!
//! Version 1 (`"SCJ1"`, no segment number) is still read, from files
//! written before segment numbers: a file whose first record is of
//! version 1 is read as version 1 throughout.

/// The first bytes of every record.
pub const MAGIC: &[u8; 4] = b"SCJ2";
/// The first bytes of a record of version 1 (read, never written).
pub const MAGIC_V1: &[u8; 4] = b"SCJ1";
/// Bytes before the fields.
pub const HEADER_LEN: usize = 12;
/// The largest fields accepted (a message at the SMTP size limit is far
/// smaller).
pub const MAX_FIELDS_LEN: usize = 1 << 30;

/// One mailbox copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// The segment the record was written to (`None`: version 1).
    pub segment: Option<u64>,
    /// The mailbox (or folder) directory, as bytes of the path.
    pub dir: &'a [u8],
    /// The file name in `new/`.
    pub name: &'a str,
    /// The bytes stored.
    pub body: &'a [u8],
}

/// What the start of a buffer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A whole record, and the bytes it takes.
    Record(Record<'a>, usize),
    /// The start of a record whose end is missing: a write cut short (at
    /// the end of a journal), or more bytes to read.
    Incomplete,
    /// Not a record: the journal ends here.
    Corrupt,
}

/// Appends the record for one copy in `segment` to `out`.
pub fn encode_into(out: &mut Vec<u8>, segment: u64, dir: &[u8], name: &str, body: &[u8]) {
    encode_head(out, segment, dir, name, &[body]);
    out.extend_from_slice(body);
}

/// Appends the record for one copy in `segment` whose body is the
/// concatenation of `body` to `out`, up to the body: the caller writes
/// the body's parts right after (a vectored write, say).
pub fn encode_head(out: &mut Vec<u8>, segment: u64, dir: &[u8], name: &str, body: &[&[u8]]) {
    head(out, Some(segment), dir, name, body);
}

/// Appends a record of version 1, as versions before segment numbers
/// wrote it (for tests of what they left).
pub fn encode_v1_into(out: &mut Vec<u8>, dir: &[u8], name: &str, body: &[u8]) {
    head(out, None, dir, name, &[body]);
    out.extend_from_slice(body);
}

fn head(out: &mut Vec<u8>, segment: Option<u64>, dir: &[u8], name: &str, body: &[&[u8]]) {
    let body_len: usize = body.iter().map(|p| p.len()).sum();
    let seq_len = if segment.is_some() { 8 } else { 0 };
    let fields_len = seq_len + 8 + dir.len() + name.len() + body_len;
    let start = out.len();
    out.reserve(HEADER_LEN + seq_len + 8 + dir.len() + name.len());
    out.extend_from_slice(if segment.is_some() { MAGIC } else { MAGIC_V1 });
    out.extend_from_slice(&(fields_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    if let Some(s) = segment {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out.extend_from_slice(&(dir.len() as u32).to_le_bytes());
    out.extend_from_slice(dir);
    out.extend_from_slice(&(name.len() as u32).to_le_bytes());
    out.extend_from_slice(name.as_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&out[start + HEADER_LEN..]);
    for part in body {
        crc.update(part);
    }
    out[start + 8..start + 12].copy_from_slice(&crc.finalize().to_le_bytes());
}

/// The length of the record [`encode_into`] writes.
pub fn encoded_len(dir: &[u8], name: &str, body: &[u8]) -> usize {
    HEADER_LEN + 16 + dir.len() + name.len() + body.len()
}

/// The version a record starting `buf` says it is of (`Some(true)`:
/// with a segment number), from as many of its first four bytes as
/// there are; `None` when they are of neither.
fn version(buf: &[u8]) -> Option<bool> {
    let n = buf.len().min(4);
    if n == 0 {
        return None;
    }
    if MAGIC.starts_with(&buf[..n]) {
        Some(true)
    } else if MAGIC_V1.starts_with(&buf[..n]) {
        Some(false)
    } else {
        None
    }
}

/// Decodes the record at the start of `buf`.
pub fn decode(buf: &[u8]) -> Decoded<'_> {
    let Some(numbered) = version(buf) else {
        return Decoded::Corrupt;
    };
    if buf.len() < HEADER_LEN {
        return Decoded::Incomplete;
    }
    let seq_len = if numbered { 8 } else { 0 };
    let fields_len = u32_at(buf, 4) as usize;
    if !(seq_len + 8..=MAX_FIELDS_LEN).contains(&fields_len) {
        return Decoded::Corrupt;
    }
    let Some(fields) = buf.get(HEADER_LEN..HEADER_LEN + fields_len) else {
        return Decoded::Incomplete;
    };
    if crc32fast::hash(fields) != u32_at(buf, 8) {
        return Decoded::Corrupt;
    }
    let segment = numbered.then(|| u64_at(fields, 0));
    let fields = &fields[seq_len..];
    let dir_len = u32_at(fields, 0) as usize;
    let Some(dir) = fields.get(4..4 + dir_len) else {
        return Decoded::Corrupt;
    };
    let rest = &fields[4 + dir_len..];
    if rest.len() < 4 {
        return Decoded::Corrupt;
    }
    let name_len = u32_at(rest, 0) as usize;
    let Some(name) = rest.get(4..4 + name_len) else {
        return Decoded::Corrupt;
    };
    let Ok(name) = std::str::from_utf8(name) else {
        return Decoded::Corrupt;
    };
    let body = &rest[4 + name_len..];
    Decoded::Record(
        Record {
            segment,
            dir,
            name,
            body,
        },
        HEADER_LEN + fields_len,
    )
}

/// What the file of one segment holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment<'a> {
    /// Its whole records, in order.
    pub records: Vec<Record<'a>>,
    /// The bytes they take.
    pub used: usize,
    /// Bytes after them of a record of this segment cut short (a write a
    /// crash interrupted, never acknowledged): up to its last non-zero
    /// byte within the length it states. Zeros written ahead of the
    /// records and an earlier segment's records are not counted.
    pub cut_short: usize,
}

/// The records of segment `segment` at the start of `buf`: records while
/// they are whole and of that segment, or all of version 1 when the
/// first is.
pub fn decode_segment(buf: &[u8], segment: u64) -> Segment<'_> {
    // The first record's magic says which version the file is of.
    let numbered = version(buf) == Some(true);
    let want = numbered.then_some(segment);
    let mut records = Vec::new();
    let mut at = 0;
    while let Decoded::Record(r, len) = decode(&buf[at..]) {
        if r.segment != want {
            break;
        }
        records.push(r);
        at += len;
    }
    let rest = &buf[at..];
    let stated = match rest.get(4..8) {
        Some(_) => HEADER_LEN.saturating_add(u32_at(rest, 4) as usize),
        None => rest.len(),
    };
    let within = &rest[..stated.min(rest.len())];
    let written = within.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let ours = version(rest) == Some(numbered)
        // Of this segment, or nothing written past the header yet.
        && (!numbered || written <= HEADER_LEN || {
            let number = rest.get(HEADER_LEN..).unwrap_or_default();
            segment
                .to_le_bytes()
                .starts_with(&number[..number.len().min(8)])
        });
    Segment {
        records,
        used: at,
        cut_short: if ours { written } else { 0 },
    }
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    let mut b = [0; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BODY: &[u8] = b"Subject: x\r\n\r\nhi\r\n";

    fn record<'a>(
        segment: Option<u64>,
        dir: &'a [u8],
        name: &'a str,
        body: &'a [u8],
    ) -> Record<'a> {
        Record {
            segment,
            dir,
            name,
            body,
        }
    }

    #[test]
    fn round_trip_and_cut_short() {
        let mut buf = Vec::new();
        encode_into(&mut buf, 7, b"/m/a@b.test/Maildir", "1.M2.h", BODY);
        encode_into(&mut buf, 7, b"/m/c@b.test/Maildir/.Junk", "3.M4.h", b"");
        let first = encoded_len(b"/m/a@b.test/Maildir", "1.M2.h", BODY);
        assert_eq!(
            buf.len(),
            first + encoded_len(b"/m/c@b.test/Maildir/.Junk", "3.M4.h", b"")
        );
        let seg = decode_segment(&buf, 7);
        assert_eq!((seg.used, seg.cut_short), (buf.len(), 0));
        assert_eq!(
            seg.records,
            vec![
                record(Some(7), b"/m/a@b.test/Maildir", "1.M2.h", BODY),
                record(Some(7), b"/m/c@b.test/Maildir/.Junk", "3.M4.h", b""),
            ]
        );
        for cut in first + 1..buf.len() {
            let seg = decode_segment(&buf[..cut], 7);
            let written = buf[first..cut]
                .iter()
                .rposition(|&b| b != 0)
                .map_or(0, |i| i + 1);
            assert!(written > 0);
            assert_eq!(
                (seg.records.len(), seg.used, seg.cut_short),
                (1, first, written),
                "cut at {cut}"
            );
        }
        // A flipped bit anywhere in the second record ends the journal
        // after the first.
        for i in first..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x10;
            let seg = decode_segment(&bad, 7);
            assert_eq!((seg.records.len(), seg.used), (1, first), "flip at {i}");
        }
        // Zeroes (a preallocated tail) are not a record, nor cut short.
        assert_eq!(decode(&[0; 64]), Decoded::Corrupt);
        let mut zeros = buf.clone();
        zeros.resize(buf.len() + 4096, 0);
        let seg = decode_segment(&zeros, 7);
        assert_eq!(
            (seg.records.len(), seg.used, seg.cut_short),
            (2, buf.len(), 0)
        );
    }

    /// A reused file: the new segment's records, then what is left of
    /// the old ones (whole records among them).
    #[test]
    fn an_earlier_segments_records_are_not_read() {
        let mut old = Vec::new();
        for i in 0..4 {
            encode_into(&mut old, 3, b"/m/a", &format!("{i}.old"), &[b'o'; 300]);
        }
        let mut new = Vec::new();
        encode_into(&mut new, 9, b"/m/a", "0.new", b"short");
        let mut file = old.clone();
        file[..new.len()].copy_from_slice(&new);
        let seg = decode_segment(&file, 9);
        assert_eq!(
            seg.records,
            vec![record(Some(9), b"/m/a", "0.new", b"short")]
        );
        assert_eq!((seg.used, seg.cut_short), (new.len(), 0));
        // New records that end where an old one starts.
        let one = encoded_len(b"/m/a", "0.old", &[b'o'; 300]);
        let mut new = Vec::new();
        encode_into(&mut new, 9, b"/m/a", "0.new", &[b'n'; 300]);
        assert_eq!(new.len(), one);
        let mut file = old.clone();
        file[..one].copy_from_slice(&new);
        let seg = decode_segment(&file, 9);
        assert_eq!((seg.records.len(), seg.used, seg.cut_short), (1, one, 0));
        // A file taken for a new segment before anything was written to it.
        let seg = decode_segment(&old, 9);
        assert_eq!((seg.records.len(), seg.used, seg.cut_short), (0, 0, 0));
        // A record of the new segment cut short over the old records.
        let mut file = old.clone();
        file[..one + 40].copy_from_slice(&[new.clone(), new[..40].to_vec()].concat());
        let seg = decode_segment(&file, 9);
        assert_eq!((seg.records.len(), seg.used), (1, one));
        assert!(seg.cut_short >= 40, "{}", seg.cut_short);
    }

    /// What versions before segment numbers wrote is read as it was.
    #[test]
    fn version_1_files_are_read() {
        let mut buf = Vec::new();
        encode_v1_into(&mut buf, b"/m/a", "1.h", BODY);
        encode_v1_into(&mut buf, b"/m/a", "2.h", b"");
        let whole = buf.len();
        encode_v1_into(&mut buf, b"/m/a", "3.h", BODY);
        buf.truncate(whole + 10);
        buf.resize(whole + 100, 0);
        let seg = decode_segment(&buf, 5);
        assert_eq!(
            seg.records,
            vec![
                record(None, b"/m/a", "1.h", BODY),
                record(None, b"/m/a", "2.h", b""),
            ]
        );
        assert_eq!((seg.used, seg.cut_short), (whole, 10));
        // One version per file: the first record says which.
        let mut mixed = Vec::new();
        encode_into(&mut mixed, 5, b"/m/a", "1.h", BODY);
        let one = mixed.len();
        encode_v1_into(&mut mixed, b"/m/a", "2.h", BODY);
        let seg = decode_segment(&mixed, 5);
        assert_eq!((seg.records.len(), seg.used, seg.cut_short), (1, one, 0));
    }

    proptest! {
        #[test]
        fn decodes_what_it_encodes(
            segment in any::<u64>(),
            dir in proptest::collection::vec(any::<u8>(), 0..64),
            name in "[^/]{0,40}",
            body in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let mut buf = Vec::new();
            encode_into(&mut buf, segment, &dir, &name, &body);
            prop_assert_eq!(
                decode(&buf),
                Decoded::Record(record(Some(segment), &dir, &name, &body), buf.len())
            );
            let mut v1 = Vec::new();
            encode_v1_into(&mut v1, &dir, &name, &body);
            prop_assert_eq!(
                decode(&v1),
                Decoded::Record(record(None, &dir, &name, &body), v1.len())
            );
        }
    }
}
