//! The journal: every accepted change of a zone, appended in order, so
//! that the zone survives a restart (replayed over the master file) and
//! IXFR can send differences.
//!
//! The core only encodes and decodes entries; the shell appends them to a
//! file and fsyncs before it answers the update.
//!
//! ```text
//! entry   = length:u32 checksum:8 payload          (big endian)
//! payload = "SJ1" old-soa new-soa count:u32 record* count:u32 record*
//! record  = length:u16 wire-record                 (RFC 1035 4.1.3)
//! checksum = first 8 bytes of SHA-256(payload)
//! ```
//!
//! A torn last entry (a crash during the append, never acknowledged) is
//! detected by its length or checksum and ignored; damage before the
//! last entry is an error.

use crate::zone::ZoneDiff;
use crate::{Error, MAX_UPDATE_RECORDS};
use aws_lc_rs::digest;
use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::{BinDecodable, BinEncodable};

const MAGIC: &[u8; 3] = b"SJ1";
/// Largest journal entry accepted (an update is at most
/// [`MAX_UPDATE_RECORDS`] records of at most 64 KiB each).
pub const MAX_ENTRY_BYTES: usize = 64 << 20;

fn checksum(payload: &[u8]) -> [u8; 8] {
    let d = digest::digest(&digest::SHA256, payload);
    let mut out = [0; 8];
    out.copy_from_slice(&d.as_ref()[..8]);
    out
}

fn push_record(out: &mut Vec<u8>, record: &Record) -> Result<(), Error> {
    let bytes = record
        .to_bytes()
        .map_err(|e| Error::Encode(e.to_string()))?;
    let len = u16::try_from(bytes.len()).map_err(|_| Error::Encode("record too large".into()))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&bytes);
    Ok(())
}

/// Encodes one entry, framed, ready to append.
pub fn encode(diff: &ZoneDiff) -> Result<Vec<u8>, Error> {
    let mut payload = MAGIC.to_vec();
    push_record(&mut payload, &diff.old_soa)?;
    push_record(&mut payload, &diff.new_soa)?;
    for list in [&diff.deleted, &diff.added] {
        payload.extend_from_slice(&(list.len() as u32).to_be_bytes());
        for r in list {
            push_record(&mut payload, r)?;
        }
    }
    let mut out = Vec::with_capacity(payload.len() + 12);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&checksum(&payload));
    out.extend_from_slice(&payload);
    Ok(out)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.buf.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn record(&mut self) -> Option<Record> {
        let len = self.u16()? as usize;
        Record::from_bytes(self.take(len)?).ok()
    }
}

fn decode_payload(payload: &[u8]) -> Option<ZoneDiff> {
    let mut r = Reader {
        buf: payload,
        pos: 0,
    };
    if r.take(3)? != MAGIC {
        return None;
    }
    let old_soa = r.record()?;
    let new_soa = r.record()?;
    let mut lists = [Vec::new(), Vec::new()];
    for list in &mut lists {
        let n = r.u32()? as usize;
        if n > MAX_UPDATE_RECORDS * 2 {
            return None;
        }
        for _ in 0..n {
            list.push(r.record()?);
        }
    }
    if r.pos != payload.len() {
        return None;
    }
    let [deleted, added] = lists;
    Some(ZoneDiff {
        old_soa,
        new_soa,
        deleted,
        added,
    })
}

/// What a journal file holds.
#[derive(Debug)]
pub struct Decoded {
    /// The entries, oldest first.
    pub entries: Vec<ZoneDiff>,
    /// Length of the valid prefix; shorter than the input when the last
    /// entry was torn (the shell truncates the file to this length).
    pub valid_len: usize,
}

/// Decodes a whole journal file.
pub fn decode(bytes: &[u8]) -> Result<Decoded, Error> {
    let mut entries = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let Some(head) = bytes.get(pos..pos + 12) else {
            return Ok(Decoded {
                entries,
                valid_len: pos,
            });
        };
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        if len > MAX_ENTRY_BYTES {
            return Err(Error::BadZoneData(format!(
                "journal entry at {pos} too large"
            )));
        }
        let Some(payload) = bytes.get(pos + 12..pos + 12 + len) else {
            return Ok(Decoded {
                entries,
                valid_len: pos,
            });
        };
        let last = pos + 12 + len == bytes.len();
        if checksum(payload) != head[4..12] {
            if last {
                return Ok(Decoded {
                    entries,
                    valid_len: pos,
                });
            }
            return Err(Error::BadZoneData(format!(
                "journal entry at byte {pos} is damaged"
            )));
        }
        let diff = decode_payload(payload).ok_or_else(|| {
            Error::BadZoneData(format!("journal entry at byte {pos} cannot be read"))
        })?;
        entries.push(diff);
        pos += 12 + len;
    }
    Ok(Decoded {
        entries,
        valid_len: pos,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{A, SOA, TXT};
    use hickory_proto::rr::{Name, RData};

    fn diff(serial: u32) -> ZoneDiff {
        let z = Name::from_ascii("example.org.").unwrap();
        let soa = |s| {
            Record::from_rdata(
                z.clone(),
                60,
                RData::SOA(SOA::new(z.clone(), z.clone(), s, 1, 2, 3, 4)),
            )
        };
        ZoneDiff {
            old_soa: soa(serial),
            new_soa: soa(serial + 1),
            deleted: vec![Record::from_rdata(
                Name::from_ascii("a.example.org.").unwrap(),
                60,
                RData::A(A::new(192, 0, 2, 1)),
            )],
            added: vec![Record::from_rdata(
                Name::from_ascii("s._domainkey.example.org.").unwrap(),
                60,
                RData::TXT(TXT::new(vec!["v=DKIM1; p=x".into()])),
            )],
        }
    }

    #[test]
    fn round_trip_and_torn_tail() {
        let mut file = encode(&diff(1)).unwrap();
        file.extend(encode(&diff(2)).unwrap());
        let full = file.len();
        let d = decode(&file).unwrap();
        assert_eq!(d.entries, vec![diff(1), diff(2)]);
        assert_eq!(d.valid_len, full);
        // A crash in the middle of the second append.
        let first = encode(&diff(1)).unwrap().len();
        for cut in [first + 3, first + 20, full - 1] {
            let d = decode(&file[..cut]).unwrap();
            assert_eq!(d.entries, vec![diff(1)]);
            assert_eq!(d.valid_len, first);
        }
        // Damage in the first entry is an error, not silently dropped.
        file[20] ^= 0xff;
        assert!(decode(&file).is_err());
    }
}
