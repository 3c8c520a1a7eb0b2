//! The model file: a compact, checked binary format.
//!
//! ```text
//! offset size  field (integers little-endian)
//!      0    8  magic "SCOPSPAM"
//!      8    2  format version (2)
//!     10    2  flags (0; any other value is rejected)
//!     12    4  ham messages      16  4  spam messages
//!     20   48  s, x, min_dev, ham_cutoff, spam_cutoff, dependence (f64 each)
//!     68    4  max_clues
//!     72    4  token count N
//!     76       N records: token key u64 (see `token_key`), ham count,
//!              spam count (each unsigned LEB128, shortest form);
//!              keys strictly increasing
//!    end    4  CRC-32 (IEEE) of every byte before it
//! ```
//!
//! Tokens are stored as their 64-bit keys, not as text: a record is 10
//! bytes for the typical token seen in fewer than 128 messages of each
//! class, whatever the token's length, and loading is a linear pass with no
//! string allocation. Explanations show the text of the message being
//! classified, which is at hand; the model never needs it.
//!
//! Version 1 stored token text; its files are rejected
//! ([`ModelError::UnsupportedVersion`]): retrain from the messages.
//!
//! The encoding is canonical: `to_bytes(from_bytes(b)?) == b`.

use crate::ModelError;
use crate::limits::MAX_MODEL_TOKENS;
use crate::model::{Counts, Model, Params, TableLoader};

/// The first 8 bytes of every model file.
pub const MAGIC: &[u8; 8] = b"SCOPSPAM";
/// The format version this build reads and writes.
pub const FORMAT_VERSION: u16 = 2;

const HEADER_LEN: usize = 76;
/// The shortest record: a key and two one-byte counts.
const MIN_RECORD: usize = 8 + 1 + 1;
/// The longest LEB128 encoding of a `u32`.
const MAX_VARINT: usize = 5;

/// The file's checksum: CRC-32 (IEEE, reflected; check value 0xCBF43926).
fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

fn put_varint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ModelError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or(ModelError::Truncated { offset: self.pos })?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u64(&mut self) -> Result<u64, ModelError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    /// An unsigned LEB128 `u32` in its shortest form.
    #[inline]
    fn varint(&mut self) -> Result<u32, ModelError> {
        // One byte: the common case (a count below 128), always shortest.
        if let Some(&b) = self.data.get(self.pos)
            && b < 0x80
        {
            self.pos += 1;
            return Ok(u32::from(b));
        }
        let at = self.pos;
        let mut v: u64 = 0;
        for i in 0..MAX_VARINT {
            let b = self.take(1)?[0];
            v |= u64::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                // The shortest form never ends in a zero byte after the first.
                if i > 0 && b == 0 {
                    break;
                }
                return u32::try_from(v).map_err(|_| ModelError::Invalid {
                    what: "count above 2^32 - 1",
                    offset: at,
                });
            }
        }
        Err(ModelError::Invalid {
            what: "count not in shortest LEB128 form",
            offset: at,
        })
    }
    fn u16(&mut self) -> Result<u16, ModelError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, ModelError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn f64(&mut self) -> Result<f64, ModelError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(f64::from_le_bytes(a))
    }
}

impl Model {
    /// The model in its file form (see the module docs of the format).
    pub fn to_bytes(&self) -> Vec<u8> {
        let entries = self.tokens.sorted_entries();
        let size = HEADER_LEN + entries.len() * (8 + 2 * MAX_VARINT) + 4;
        let mut out = Vec::with_capacity(size);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&self.messages.ham.to_le_bytes());
        out.extend_from_slice(&self.messages.spam.to_le_bytes());
        let p = &self.params;
        for v in [
            p.s,
            p.x,
            p.min_dev,
            p.ham_cutoff,
            p.spam_cutoff,
            p.dependence,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&p.max_clues.to_le_bytes());
        out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        for (k, c) in &entries {
            out.extend_from_slice(&k.to_le_bytes());
            put_varint(&mut out, c.ham);
            put_varint(&mut out, c.spam);
        }
        let crc = crc32(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads a model file. Checks the magic, version, checksum, parameters,
    /// every count and every token; never panics, and allocates in
    /// proportion to the input only.
    pub fn from_bytes(data: &[u8]) -> Result<Model, ModelError> {
        if data.len() < MAGIC.len() || &data[..MAGIC.len()] != MAGIC {
            return Err(ModelError::BadMagic);
        }
        let mut r = Reader {
            data,
            pos: MAGIC.len(),
        };
        let version = r.u16()?;
        if version != FORMAT_VERSION {
            return Err(ModelError::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        if data.len() < HEADER_LEN + 4 {
            return Err(ModelError::Truncated { offset: data.len() });
        }
        let body_len = data.len() - 4;
        let stored = u32::from_le_bytes([
            data[body_len],
            data[body_len + 1],
            data[body_len + 2],
            data[body_len + 3],
        ]);
        if crc32(&data[..body_len]) != stored {
            return Err(ModelError::BadChecksum);
        }
        let mut r = Reader {
            data: &data[..body_len],
            pos: r.pos,
        };
        let invalid = |what, offset| ModelError::Invalid { what, offset };
        if r.u16()? != 0 {
            return Err(invalid("unknown flags", 10));
        }
        let messages = Counts {
            ham: r.u32()?,
            spam: r.u32()?,
        };
        let params = Params {
            s: r.f64()?,
            x: r.f64()?,
            min_dev: r.f64()?,
            ham_cutoff: r.f64()?,
            spam_cutoff: r.f64()?,
            dependence: r.f64()?,
            max_clues: r.u32()?,
        };
        if !params.is_valid() {
            return Err(invalid("scoring parameters out of range", 20));
        }
        let count_at = r.pos;
        let count = r.u32()? as usize;
        if count > MAX_MODEL_TOKENS || count > (body_len - r.pos) / MIN_RECORD {
            return Err(invalid("token count larger than the file", count_at));
        }
        let mut table = TableLoader::new(count);
        let mut prev: Option<u64> = None;
        for _ in 0..count {
            let at = r.pos;
            let key = r.u64()?;
            if prev.is_some_and(|p| key <= p) {
                return Err(invalid("token keys not strictly increasing", at));
            }
            prev = Some(key);
            let counts = Counts {
                ham: r.varint()?,
                spam: r.varint()?,
            };
            if counts.ham > messages.ham || counts.spam > messages.spam {
                return Err(invalid("token count above the message count", at));
            }
            if (counts.ham, counts.spam) == (0, 0) {
                return Err(invalid("token with no count", at));
            }
            table.push(key, counts);
        }
        if r.pos != body_len {
            return Err(ModelError::TrailingBytes {
                extra: body_len - r.pos,
            });
        }
        Ok(Model {
            params,
            messages,
            tokens: table.finish(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::crc32;

    #[test]
    fn crc_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }
}
