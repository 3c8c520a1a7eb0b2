//! Key records (RFC 6376 section 3.6.1, RFC 8463 section 4) and key files
//! (PKCS#8 in PEM, RFC 5208 and RFC 7468).

use crate::base64;
use crate::canon::HashAlgorithm;
use crate::signature::KeyType;
use crate::tags::{TagError, parse_tags, split_list, strip_fws};
use scop_codec::der::element as der;

/// Why a key record is unusable (a `permerror`, RFC 6376 section 6.1.2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyRecordError {
    /// The tag list does not parse.
    #[error("malformed key record: {0}")]
    Tags(#[from] TagError),
    /// `v=` is present and not `DKIM1`.
    #[error("unsupported key record version")]
    UnsupportedVersion,
    /// `k=` names an unknown key type.
    #[error("unsupported key type")]
    UnsupportedKeyType,
    /// No `p=` tag.
    #[error("missing p=")]
    MissingPublicKey,
    /// `p=` is not base64, or not a key of its type.
    #[error("malformed public key")]
    BadPublicKey,
}

/// A parsed key record.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// `k=` (default rsa).
    pub key_type: KeyType,
    /// `h=`: acceptable hashes, when restricted. Unknown names are dropped.
    pub hashes: Option<Vec<HashAlgorithm>>,
    /// `s=` allows email (`email` or `*`; default `*`).
    pub email_service: bool,
    /// `t=y`: the domain is testing DKIM.
    pub testing: bool,
    /// `t=s`: `i=` must have exactly the domain of `d=`.
    pub strict: bool,
    /// `p=` decoded; empty means revoked.
    pub public_key: Vec<u8>,
    /// RSA modulus size in bits (0 for Ed25519 or a revoked key).
    pub rsa_bits: usize,
}

impl KeyRecord {
    /// `p=` is empty: the key was revoked (section 3.6.1).
    pub fn is_revoked(&self) -> bool {
        self.public_key.is_empty()
    }
}

/// Parses a TXT record (its character-strings concatenated).
pub fn parse_key_record(txt: &[u8]) -> Result<KeyRecord, KeyRecordError> {
    let tags = parse_tags(txt)?;
    let get = |name: &str| tags.iter().find(|t| t.name == name).map(|t| t.value);
    if let Some(v) = get("v")
        && strip_fws(v) != b"DKIM1"
    {
        return Err(KeyRecordError::UnsupportedVersion);
    }
    let key_type = match get("k").map(strip_fws) {
        None => KeyType::Rsa,
        Some(k) if k.eq_ignore_ascii_case(b"rsa") => KeyType::Rsa,
        Some(k) if k.eq_ignore_ascii_case(b"ed25519") => KeyType::Ed25519,
        Some(_) => return Err(KeyRecordError::UnsupportedKeyType),
    };
    let hashes = get("h").map(|h| {
        split_list(h, b':')
            .filter_map(|n| {
                if n.eq_ignore_ascii_case(b"sha256") {
                    Some(HashAlgorithm::Sha256)
                } else if n.eq_ignore_ascii_case(b"sha1") {
                    Some(HashAlgorithm::Sha1)
                } else {
                    None
                }
            })
            .collect()
    });
    let email_service = get("s")
        .is_none_or(|s| split_list(s, b':').any(|n| n == b"*" || n.eq_ignore_ascii_case(b"email")));
    let (testing, strict) = get("t").map_or((false, false), |t| {
        let flags: Vec<&[u8]> = split_list(t, b':').collect();
        (flags.contains(&&b"y"[..]), flags.contains(&&b"s"[..]))
    });
    let p = get("p").ok_or(KeyRecordError::MissingPublicKey)?;
    let public_key = base64::decode(p).ok_or(KeyRecordError::BadPublicKey)?;
    let rsa_bits = if public_key.is_empty() {
        0
    } else {
        match key_type {
            KeyType::Rsa => rsa_modulus_bits(&public_key).ok_or(KeyRecordError::BadPublicKey)?,
            KeyType::Ed25519 if public_key.len() == 32 => 0,
            KeyType::Ed25519 => return Err(KeyRecordError::BadPublicKey),
        }
    };
    Ok(KeyRecord {
        key_type,
        hashes,
        email_service,
        testing,
        strict,
        public_key,
        rsa_bits,
    })
}

/// The modulus size of an RSA public key given as SubjectPublicKeyInfo
/// (RFC 5280, what `p=` holds) or as a bare RSAPublicKey (RFC 8017, which
/// some publishers use).
pub(crate) fn rsa_modulus_bits(key: &[u8]) -> Option<usize> {
    let (tag, seq, _) = der(key)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, first, rest) = der(seq)?;
    let rsa_public_key = match tag {
        // SubjectPublicKeyInfo: AlgorithmIdentifier, then a BIT STRING.
        0x30 => {
            // rsaEncryption 1.2.840.113549.1.1.1
            let (_, oid, _) = der(first)?;
            if oid != [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01] {
                return None;
            }
            let (tag, bits, _) = der(rest)?;
            if tag != 0x03 || bits.first() != Some(&0) {
                return None;
            }
            let (tag, inner, _) = der(&bits[1..])?;
            if tag != 0x30 {
                return None;
            }
            inner
        }
        0x02 => seq,
        _ => return None,
    };
    let (tag, modulus, _) = der(rsa_public_key)?;
    if tag != 0x02 {
        return None;
    }
    let start = modulus.iter().position(|&b| b != 0)?;
    let modulus = &modulus[start..];
    Some(modulus.len() * 8 - modulus[0].leading_zeros() as usize)
}

/// Decodes the first PEM block labelled `label` (RFC 7468).
pub(crate) fn pem_decode(text: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text[start..].find(&end)?;
    base64::decode(&text.as_bytes()[start..stop])
}

/// Encodes DER as PEM with 64-column lines.
pub(crate) fn pem_encode(der: &[u8], label: &str) -> String {
    let b64 = base64::encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // A 512-bit RSA key, `openssl genrsa 512 | openssl rsa -pubout`.
    pub(crate) const RSA512_SPKI: &str = "MFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBALIfnf9aWA1ltuDm48rURdRYVUfyp3yRjoeKgvYqIgoO1a6h5H0xDa52CLMKGINmZ+G6MBkktxCZ/kCLMqfOIYUCAwEAAQ==";

    #[test]
    fn records() {
        let r =
            parse_key_record(format!("v=DKIM1; k=rsa; t=y:s; p={RSA512_SPKI}").as_bytes()).unwrap();
        assert_eq!(r.rsa_bits, 512);
        assert!(r.testing && r.strict && r.email_service);
        let r = parse_key_record(b"v=DKIM1; p=").unwrap();
        assert!(r.is_revoked());
        let r = parse_key_record(
            b"v=DKIM1; k=ed25519; h=sha256:foo; s=email; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
        )
        .unwrap();
        assert_eq!(r.key_type, KeyType::Ed25519);
        assert_eq!(r.hashes, Some(vec![HashAlgorithm::Sha256]));
        assert!(!parse_key_record(b"s=other; p=").unwrap().email_service);
        assert_eq!(
            parse_key_record(b"v=DKIM2; p="),
            Err(KeyRecordError::UnsupportedVersion)
        );
        assert_eq!(
            parse_key_record(b"k=dsa; p="),
            Err(KeyRecordError::UnsupportedKeyType)
        );
        assert_eq!(
            parse_key_record(b"k=rsa"),
            Err(KeyRecordError::MissingPublicKey)
        );
        assert_eq!(
            parse_key_record(b"p=AAAA"),
            Err(KeyRecordError::BadPublicKey)
        );
        assert_eq!(
            parse_key_record(b"k=ed25519; p=AAAA"),
            Err(KeyRecordError::BadPublicKey)
        );
    }
}
