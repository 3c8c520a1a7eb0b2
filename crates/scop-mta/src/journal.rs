//! Records of the delivery journal: one mailbox copy each (the mailbox
//! directory, the file name it gets there, the stored bytes), framed so
//! that a record cut short by a crash, or bytes that are not a record,
//! are told apart from a whole one.
//!
//! ```text
//! "SCJ1" | length: u32 LE | CRC-32 of the fields: u32 LE | fields
//! fields = dir length: u32 LE | dir | name length: u32 LE | name | body
//! ```
//!
//! `length` is the length of `fields`; the body takes what is left.

/// The first bytes of every record.
pub const MAGIC: &[u8; 4] = b"SCJ1";
/// Bytes before the fields.
pub const HEADER_LEN: usize = 12;
/// The largest fields accepted (a message at the SMTP size limit is far
/// smaller).
pub const MAX_FIELDS_LEN: usize = 1 << 30;

/// One mailbox copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
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

/// Appends the record for one copy to `out`.
pub fn encode_into(out: &mut Vec<u8>, dir: &[u8], name: &str, body: &[u8]) {
    encode_head(out, dir, name, &[body]);
    out.extend_from_slice(body);
}

/// Appends the record for one copy whose body is the concatenation of
/// `body` to `out`, up to the body: the caller writes the body's parts
/// right after (a vectored write, say).
pub fn encode_head(out: &mut Vec<u8>, dir: &[u8], name: &str, body: &[&[u8]]) {
    let body_len: usize = body.iter().map(|p| p.len()).sum();
    let fields_len = 8 + dir.len() + name.len() + body_len;
    let start = out.len();
    out.reserve(HEADER_LEN + 8 + dir.len() + name.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(fields_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
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
    HEADER_LEN + 8 + dir.len() + name.len() + body.len()
}

/// Decodes the record at the start of `buf`.
pub fn decode(buf: &[u8]) -> Decoded<'_> {
    if buf.len() < HEADER_LEN {
        return if MAGIC.starts_with(&buf[..buf.len().min(4)]) {
            Decoded::Incomplete
        } else {
            Decoded::Corrupt
        };
    }
    if &buf[..4] != MAGIC {
        return Decoded::Corrupt;
    }
    let fields_len = u32_at(buf, 4) as usize;
    if !(8..=MAX_FIELDS_LEN).contains(&fields_len) {
        return Decoded::Corrupt;
    }
    let Some(fields) = buf.get(HEADER_LEN..HEADER_LEN + fields_len) else {
        return Decoded::Incomplete;
    };
    if crc32fast::hash(fields) != u32_at(buf, 8) {
        return Decoded::Corrupt;
    }
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
    Decoded::Record(Record { dir, name, body }, HEADER_LEN + fields_len)
}

/// Every whole record at the start of `buf`, and the length they take
/// (where a cut-short or corrupt tail begins).
pub fn decode_all(buf: &[u8]) -> (Vec<Record<'_>>, usize) {
    let mut records = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        match decode(&buf[at..]) {
            Decoded::Record(r, len) => {
                records.push(r);
                at += len;
            }
            Decoded::Incomplete | Decoded::Corrupt => break,
        }
    }
    (records, at)
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_and_cut_short() {
        let mut buf = Vec::new();
        encode_into(
            &mut buf,
            b"/m/a@b.test/Maildir",
            "1.M2.h",
            b"Subject: x\r\n\r\nhi\r\n",
        );
        encode_into(&mut buf, b"/m/c@b.test/Maildir/.Junk", "3.M4.h", b"");
        assert_eq!(
            buf.len(),
            encoded_len(
                b"/m/a@b.test/Maildir",
                "1.M2.h",
                b"Subject: x\r\n\r\nhi\r\n"
            ) + encoded_len(b"/m/c@b.test/Maildir/.Junk", "3.M4.h", b"")
        );
        let (records, used) = decode_all(&buf);
        assert_eq!(used, buf.len());
        assert_eq!(
            records,
            vec![
                Record {
                    dir: b"/m/a@b.test/Maildir",
                    name: "1.M2.h",
                    body: b"Subject: x\r\n\r\nhi\r\n"
                },
                Record {
                    dir: b"/m/c@b.test/Maildir/.Junk",
                    name: "3.M4.h",
                    body: b""
                },
            ]
        );
        let first = encoded_len(
            b"/m/a@b.test/Maildir",
            "1.M2.h",
            b"Subject: x\r\n\r\nhi\r\n",
        );
        for cut in first..buf.len() {
            let (records, used) = decode_all(&buf[..cut]);
            assert_eq!((records.len(), used), (1, first), "cut at {cut}");
        }
        // A flipped bit anywhere in the second record ends the journal
        // after the first.
        for i in first..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x10;
            let (records, used) = decode_all(&bad);
            assert_eq!((records.len(), used), (1, first), "flip at {i}");
        }
        // Zeroes (a preallocated tail) are not a record.
        assert_eq!(decode(&[0; 64]), Decoded::Corrupt);
    }

    proptest! {
        #[test]
        fn decodes_what_it_encodes(
            dir in proptest::collection::vec(any::<u8>(), 0..64),
            name in "[^/]{0,40}",
            body in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let mut buf = Vec::new();
            encode_into(&mut buf, &dir, &name, &body);
            prop_assert_eq!(
                decode(&buf),
                Decoded::Record(Record { dir: &dir, name: &name, body: &body }, buf.len())
            );
        }
    }
}
