//! The model file: a compact, checked binary format.
//!
//! ```text
//! offset size  field (integers little-endian)
//!      0    8  magic "SCOPSPAM"
//!      8    2  format version (1)
//!     10    2  flags (0; any other value is rejected)
//!     12    4  ham messages      16  4  spam messages
//!     20   48  s, x, min_dev, ham_cutoff, spam_cutoff, dependence (f64 each)
//!     68    4  max_clues
//!     72    4  token count N
//!     76       N records: len u8 (1..=MAX_TOKEN_LEN), UTF-8 token,
//!              ham u32, spam u32; tokens strictly increasing (bytewise)
//!    end    4  CRC-32 (IEEE) of every byte before it
//! ```
//!
//! The encoding is canonical: `to_bytes(from_bytes(b)?) == b`.

use crate::ModelError;
use crate::limits::{MAX_MODEL_TOKENS, MAX_TOKEN_LEN};
use crate::model::{Counts, Model, Params};
use std::collections::HashMap;

/// The first 8 bytes of every model file.
pub const MAGIC: &[u8; 8] = b"SCOPSPAM";
/// The format version this build reads and writes.
pub const FORMAT_VERSION: u16 = 1;

const HEADER_LEN: usize = 76;
// Token lengths are stored in one byte.
const _: () = assert!(MAX_TOKEN_LEN <= 255);
const MIN_RECORD: usize = 1 + 1 + 8;

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c = CRC_TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
    }
    !c
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
    fn u8(&mut self) -> Result<u8, ModelError> {
        Ok(self.take(1)?[0])
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
        let mut entries: Vec<(&str, Counts)> = self
            .tokens
            .iter()
            .filter(|(t, c)| !t.is_empty() && t.len() <= MAX_TOKEN_LEN && (c.ham, c.spam) != (0, 0))
            .map(|(t, c)| (&**t, *c))
            .collect();
        entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let size = HEADER_LEN + entries.iter().map(|(t, _)| 9 + t.len()).sum::<usize>() + 4;
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
        for (t, c) in &entries {
            out.push(t.len() as u8);
            out.extend_from_slice(t.as_bytes());
            out.extend_from_slice(&c.ham.to_le_bytes());
            out.extend_from_slice(&c.spam.to_le_bytes());
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
        let mut tokens = HashMap::with_capacity_and_hasher(count, Default::default());
        let mut prev: &[u8] = &[];
        for _ in 0..count {
            let at = r.pos;
            let len = usize::from(r.u8()?);
            if len == 0 || len > MAX_TOKEN_LEN {
                return Err(invalid("token length out of range", at));
            }
            let bytes = r.take(len)?;
            let token =
                std::str::from_utf8(bytes).map_err(|_| invalid("token is not UTF-8", at))?;
            if bytes <= prev {
                return Err(invalid("tokens not strictly increasing", at));
            }
            prev = bytes;
            let counts = Counts {
                ham: r.u32()?,
                spam: r.u32()?,
            };
            if counts.ham > messages.ham || counts.spam > messages.spam {
                return Err(invalid("token count above the message count", at));
            }
            if (counts.ham, counts.spam) == (0, 0) {
                return Err(invalid("token with no count", at));
            }
            tokens.insert(Box::<str>::from(token), counts);
        }
        if r.pos != body_len {
            return Err(ModelError::TrailingBytes {
                extra: body_len - r.pos,
            });
        }
        Ok(Model {
            params,
            messages,
            tokens,
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
