//! Raw-byte helpers: the few things that must be done on the exact bytes
//! (finding and removing the TSIG record, RFC 8945 4.3.3) before the
//! message is handed to hickory-proto.

use hickory_proto::rr::Name;

/// Most compression pointers followed in one name (a loop ends here).
pub(crate) const MAX_POINTERS: usize = 64;
/// DNS header length.
pub(crate) const HEADER: usize = 12;
/// RR type of TSIG.
pub(crate) const TYPE_TSIG: u16 = 250;

pub(crate) fn u16_at(buf: &[u8], pos: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*buf.get(pos)?, *buf.get(pos + 1)?]))
}

/// Reads a (possibly compressed) name at `pos`; returns the name and the
/// position after it in the original stream.
pub(crate) fn read_name(buf: &[u8], mut pos: usize) -> Option<(Name, usize)> {
    let mut labels: Vec<&[u8]> = Vec::new();
    let mut end = None;
    let mut jumps = 0;
    let mut total = 1;
    loop {
        let len = *buf.get(pos)? as usize;
        if len & 0xC0 == 0xC0 {
            let target = (u16_at(buf, pos)? & 0x3FFF) as usize;
            if end.is_none() {
                end = Some(pos + 2);
            }
            jumps += 1;
            if jumps > MAX_POINTERS || target >= buf.len() {
                return None;
            }
            pos = target;
            continue;
        }
        if len & 0xC0 != 0 {
            return None;
        }
        if len == 0 {
            let end = end.unwrap_or(pos + 1);
            let mut name = Name::from_labels(labels).ok()?;
            name.set_fqdn(true);
            return Some((name, end));
        }
        total += len + 1;
        if total > 255 {
            return None;
        }
        labels.push(buf.get(pos + 1..pos + 1 + len)?);
        pos += 1 + len;
    }
}

/// Skips a name (without reading it).
fn skip_name(buf: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let len = *buf.get(pos)? as usize;
        if len & 0xC0 == 0xC0 {
            buf.get(pos + 1)?;
            return Some(pos + 2);
        }
        if len & 0xC0 != 0 {
            return None;
        }
        if len == 0 {
            return Some(pos + 1);
        }
        pos += 1 + len;
    }
}

/// The TSIG record's fields (RFC 8945 4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawTsig {
    pub key_name: Name,
    /// CLASS and TTL of the TSIG record (must be ANY and 0).
    pub class: u16,
    pub ttl: u32,
    pub algorithm: Name,
    pub time_signed: u64,
    pub fudge: u16,
    pub mac: Vec<u8>,
    pub original_id: u16,
    pub error: u16,
    pub other: Vec<u8>,
}

/// A message split at its TSIG record.
#[derive(Debug)]
pub(crate) struct Split {
    /// The message without the TSIG record, ARCOUNT decremented and the
    /// original ID restored: the bytes the MAC covers.
    pub unsigned: Vec<u8>,
    pub tsig: Option<RawTsig>,
}

/// Finds the last additional record; if it is a TSIG record, removes it.
/// `None`: the framing is broken (the caller answers FORMERR).
pub(crate) fn split_tsig(buf: &[u8]) -> Option<Split> {
    if buf.len() < HEADER {
        return None;
    }
    let qd = u16_at(buf, 4)? as usize;
    let rr = u16_at(buf, 6)? as usize + u16_at(buf, 8)? as usize + u16_at(buf, 10)? as usize;
    let ar = u16_at(buf, 10)?;
    let mut pos = HEADER;
    for _ in 0..qd {
        pos = skip_name(buf, pos)? + 4;
    }
    let mut last = None;
    for _ in 0..rr {
        let start = pos;
        pos = skip_name(buf, pos)?;
        let rtype = u16_at(buf, pos)?;
        let rdlen = u16_at(buf, pos + 8)? as usize;
        let rdata = pos + 10;
        pos = rdata + rdlen;
        if pos > buf.len() {
            return None;
        }
        last = Some((start, rtype, pos - rdlen - 8, rdata));
    }
    match last {
        Some((start, TYPE_TSIG, fixed, rdata)) if ar > 0 => {
            if pos != buf.len() {
                return None;
            }
            let (key_name, _) = read_name(buf, start)?;
            let class = u16_at(buf, fixed)?;
            let ttl =
                (u32::from(u16_at(buf, fixed + 2)?) << 16) | u32::from(u16_at(buf, fixed + 4)?);
            let tsig = parse_tsig_rdata(buf, rdata, key_name, class, ttl)?;
            let mut unsigned = buf[..start].to_vec();
            unsigned[10..12].copy_from_slice(&(ar - 1).to_be_bytes());
            unsigned[0..2].copy_from_slice(&tsig.original_id.to_be_bytes());
            Some(Split {
                unsigned,
                tsig: Some(tsig),
            })
        }
        _ => Some(Split {
            unsigned: buf.to_vec(),
            tsig: None,
        }),
    }
}

fn parse_tsig_rdata(
    buf: &[u8],
    pos: usize,
    key_name: Name,
    class: u16,
    ttl: u32,
) -> Option<RawTsig> {
    let (algorithm, mut p) = read_name(buf, pos)?;
    let t = buf.get(p..p + 6)?;
    let time_signed = t.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    p += 6;
    let fudge = u16_at(buf, p)?;
    let mac_len = u16_at(buf, p + 2)? as usize;
    p += 4;
    let mac = buf.get(p..p + mac_len)?.to_vec();
    p += mac_len;
    let original_id = u16_at(buf, p)?;
    let error = u16_at(buf, p + 2)?;
    let other_len = u16_at(buf, p + 4)? as usize;
    p += 6;
    let other = buf.get(p..p + other_len)?.to_vec();
    Some(RawTsig {
        key_name: key_name.to_lowercase(),
        class,
        ttl,
        algorithm: algorithm.to_lowercase(),
        time_signed,
        fudge,
        mac,
        original_id,
        error,
        other,
    })
}

/// Appends a name uncompressed, in lower case (canonical form).
pub(crate) fn push_name(out: &mut Vec<u8>, name: &Name) {
    for label in name.iter() {
        out.push(label.len() as u8);
        out.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    out.push(0);
}
