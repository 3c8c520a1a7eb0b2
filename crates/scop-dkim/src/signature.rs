//! The `DKIM-Signature` header field (RFC 6376 section 3.5).

use crate::base64;
use crate::canon::{Canonicalization, HashAlgorithm};
use crate::tags::{self, TagError, parse_tags, split_list, strip_fws};

/// Most names in `h=`.
pub const MAX_SIGNED_HEADERS: usize = 256;

/// Longest domain name (RFC 1035 section 2.3.4).
pub const MAX_DOMAIN_LEN: usize = 253;

/// A signing algorithm (`a=`, RFC 6376 section 3.3, RFC 8463, RFC 8301).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `rsa-sha1`: verified only, and reported as weak (RFC 8301 section 3.1).
    RsaSha1,
    /// `rsa-sha256` (RFC 6376 section 3.3.2).
    RsaSha256,
    /// `ed25519-sha256` (RFC 8463 section 3).
    Ed25519Sha256,
}

impl Algorithm {
    /// The `a=` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RsaSha1 => "rsa-sha1",
            Algorithm::RsaSha256 => "rsa-sha256",
            Algorithm::Ed25519Sha256 => "ed25519-sha256",
        }
    }

    /// The hash function.
    pub fn hash(self) -> HashAlgorithm {
        match self {
            Algorithm::RsaSha1 => HashAlgorithm::Sha1,
            Algorithm::RsaSha256 | Algorithm::Ed25519Sha256 => HashAlgorithm::Sha256,
        }
    }

    /// The key type (`k=` of the key record).
    pub fn key_type(self) -> KeyType {
        match self {
            Algorithm::RsaSha1 | Algorithm::RsaSha256 => KeyType::Rsa,
            Algorithm::Ed25519Sha256 => KeyType::Ed25519,
        }
    }

    fn parse(s: &[u8]) -> Option<Algorithm> {
        match s.to_ascii_lowercase().as_slice() {
            b"rsa-sha1" => Some(Algorithm::RsaSha1),
            b"rsa-sha256" => Some(Algorithm::RsaSha256),
            b"ed25519-sha256" => Some(Algorithm::Ed25519Sha256),
            _ => None,
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key type (`k=`, RFC 6376 section 3.6.1, RFC 8463 section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// `rsa`.
    Rsa,
    /// `ed25519`.
    Ed25519,
}

/// Why a `DKIM-Signature` field is unusable (a `permerror`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The tag list does not parse.
    #[error("malformed tag list: {0}")]
    Tags(#[from] TagError),
    /// A required tag is absent (section 3.5: v, a, b, bh, d, h, s).
    #[error("missing required tag {0}=")]
    MissingTag(&'static str),
    /// `v=` is not `1`.
    #[error("unsupported version")]
    UnsupportedVersion,
    /// `a=` names an algorithm we do not know.
    #[error("unsupported algorithm")]
    UnsupportedAlgorithm,
    /// `c=` names an unknown canonicalization.
    #[error("unsupported canonicalization")]
    UnsupportedCanonicalization,
    /// `q=` lacks `dns/txt`.
    #[error("unsupported query method")]
    UnsupportedQueryMethod,
    /// A tag value has the wrong syntax.
    #[error("malformed {0}= value")]
    BadValue(&'static str),
    /// `h=` does not include From (section 5.4).
    #[error("From is not signed")]
    FromNotSigned,
    /// The domain of `i=` is neither `d=` nor a subdomain of it (section 3.5).
    #[error("i= is not in d=")]
    IdentityNotInDomain,
    /// `x=` is not later than `t=` (section 3.5).
    #[error("x= is not after t=")]
    ExpiryBeforeTimestamp,
}

/// A parsed `DKIM-Signature` (RFC 6376 section 3.5).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// `a=`.
    pub algorithm: Algorithm,
    /// `b=`, decoded.
    pub signature: Vec<u8>,
    /// `bh=`, decoded.
    pub body_hash: Vec<u8>,
    /// `c=` header canonicalization (default simple).
    pub header_canon: Canonicalization,
    /// `c=` body canonicalization (default simple).
    pub body_canon: Canonicalization,
    /// `d=`, lower-cased.
    pub domain: String,
    /// `h=`, lower-cased, in order.
    pub signed_headers: Vec<String>,
    /// `i=` as written, if present (default `@d`).
    pub identity: Option<String>,
    /// `l=`.
    pub body_length: Option<u64>,
    /// `s=`, lower-cased.
    pub selector: String,
    /// `t=`.
    pub timestamp: Option<u64>,
    /// `x=`.
    pub expiration: Option<u64>,
}

impl Signature {
    /// The DNS name of the key record: `s._domainkey.d` (section 3.6.2.1).
    pub fn key_name(&self) -> String {
        format!("{}._domainkey.{}", self.selector, self.domain)
    }

    /// The identity (`i=`), or its default `@d`.
    pub fn identity_or_default(&self) -> String {
        self.identity
            .clone()
            .unwrap_or_else(|| format!("@{}", self.domain))
    }

    /// The domain part of the identity, lower-cased.
    pub fn identity_domain(&self) -> String {
        match &self.identity {
            Some(i) => i
                .rsplit_once('@')
                .map_or(i.as_str(), |(_, d)| d)
                .to_ascii_lowercase(),
            None => self.domain.clone(),
        }
    }
}

fn text(v: &[u8], tag: &'static str) -> Result<String, SignatureError> {
    let v = strip_fws(v);
    String::from_utf8(v).map_err(|_| SignatureError::BadValue(tag))
}

fn number(v: &[u8], tag: &'static str) -> Result<u64, SignatureError> {
    let v = strip_fws(v);
    // Section 3.5: at most 12 digits for t= and x=; l= is 76 bits. 18
    // digits fit in u64 and cover both.
    if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
        return Err(SignatureError::BadValue(tag));
    }
    v.iter()
        .try_fold(0u64, |n, d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
        .ok_or(SignatureError::BadValue(tag))
}

/// Checks a domain name as used in `d=`: dot-separated labels of letters,
/// digits, hyphen and underscore (RFC 6376 section 3.5, `domain-name`), or
/// any non-ASCII (internationalized) bytes.
pub(crate) fn valid_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= MAX_DOMAIN_LEN
        && d.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c >= 0x80)
        })
}

/// Parses the value of a `DKIM-Signature` field (everything after the
/// colon).
pub fn parse_signature(value: &[u8]) -> Result<Signature, SignatureError> {
    let tags = parse_tags(value)?;
    let get = |name: &str| tags.iter().find(|t| t.name == name).map(|t| t.value);
    let need = |name: &'static str| get(name).ok_or(SignatureError::MissingTag(name));

    if strip_fws(need("v")?) != b"1" {
        return Err(SignatureError::UnsupportedVersion);
    }
    let algorithm =
        Algorithm::parse(&strip_fws(need("a")?)).ok_or(SignatureError::UnsupportedAlgorithm)?;
    let signature = base64::decode(need("b")?).ok_or(SignatureError::BadValue("b"))?;
    let body_hash = base64::decode(need("bh")?).ok_or(SignatureError::BadValue("bh"))?;
    if signature.is_empty() {
        return Err(SignatureError::BadValue("b"));
    }
    if body_hash.len() != algorithm.hash().digest().output_len() {
        return Err(SignatureError::BadValue("bh"));
    }
    let domain = text(need("d")?, "d")?.to_ascii_lowercase();
    let domain = domain.strip_suffix('.').unwrap_or(&domain).to_owned();
    if !valid_domain(&domain) {
        return Err(SignatureError::BadValue("d"));
    }
    let selector = text(need("s")?, "s")?.to_ascii_lowercase();
    if !valid_domain(&selector) {
        return Err(SignatureError::BadValue("s"));
    }
    let mut signed_headers = Vec::new();
    for name in split_list(need("h")?, b':') {
        if name.is_empty()
            || !name.iter().all(|&c| (33..=126).contains(&c) && c != b':')
            || signed_headers.len() >= MAX_SIGNED_HEADERS
        {
            return Err(SignatureError::BadValue("h"));
        }
        signed_headers.push(String::from_utf8_lossy(name).to_ascii_lowercase());
    }
    if !signed_headers.iter().any(|h| h == "from") {
        return Err(SignatureError::FromNotSigned);
    }
    let (header_canon, body_canon) = match get("c") {
        None => (Canonicalization::Simple, Canonicalization::Simple),
        Some(c) => {
            let c = strip_fws(c);
            let (h, b) = match memchr::memchr(b'/', &c) {
                Some(i) => (&c[..i], Some(&c[i + 1..])),
                None => (&c[..], None),
            };
            let h =
                Canonicalization::parse(h).ok_or(SignatureError::UnsupportedCanonicalization)?;
            let b = match b {
                Some(b) => {
                    Canonicalization::parse(b).ok_or(SignatureError::UnsupportedCanonicalization)?
                }
                None => Canonicalization::Simple,
            };
            (h, b)
        }
    };
    if let Some(q) = get("q") {
        let q = strip_fws(q);
        if !split_list(&q, b':').any(|m| m.eq_ignore_ascii_case(b"dns/txt")) {
            return Err(SignatureError::UnsupportedQueryMethod);
        }
    }
    let identity = match get("i") {
        None => None,
        Some(i) => {
            let i = text(i, "i")?;
            let Some((_, idomain)) = i.rsplit_once('@') else {
                return Err(SignatureError::BadValue("i"));
            };
            let idomain = idomain.to_ascii_lowercase();
            let idomain = idomain.strip_suffix('.').unwrap_or(&idomain);
            if idomain != domain && !idomain.ends_with(&format!(".{domain}")) {
                return Err(SignatureError::IdentityNotInDomain);
            }
            Some(i)
        }
    };
    let body_length = get("l").map(|v| number(v, "l")).transpose()?;
    let timestamp = get("t").map(|v| number(v, "t")).transpose()?;
    let expiration = get("x").map(|v| number(v, "x")).transpose()?;
    if let (Some(t), Some(x)) = (timestamp, expiration)
        && x <= t
    {
        return Err(SignatureError::ExpiryBeforeTimestamp);
    }
    Ok(Signature {
        algorithm,
        signature,
        body_hash,
        header_canon,
        body_canon,
        domain,
        signed_headers,
        identity,
        body_length,
        selector,
        timestamp,
        expiration,
    })
}

/// The raw field with the value of its `b=` tag removed (RFC 6376 section
/// 3.7: the signature is computed "with the value of the b= tag (including
/// all surrounding whitespace) deleted").
pub(crate) fn without_b_value(raw_field: &[u8], value_offset: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw_field.len());
    out.extend_from_slice(&raw_field[..value_offset]);
    let value = &raw_field[value_offset..];
    let mut first = true;
    for spec in value.split(|&c| c == b';') {
        if !first {
            out.push(b';');
        }
        first = false;
        match memchr::memchr(b'=', spec) {
            Some(eq) if tags::trim_fws(&spec[..eq]) == b"b" => {
                out.extend_from_slice(&spec[..=eq]);
                // Keep the field's final line terminator, if this is the
                // last tag.
                let rest = &spec[eq + 1..];
                if rest.ends_with(b"\r\n") {
                    out.extend_from_slice(b"\r\n");
                } else if rest.ends_with(b"\n") {
                    out.push(b'\n');
                }
            }
            _ => out.extend_from_slice(spec),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BH: &str = "4bLNXImK9drULnmePzZNEBleUanJCX5PIsDIFoH4KTQ=";

    fn sig(extra: &str) -> Result<Signature, SignatureError> {
        parse_signature(
            format!("v=1; a=rsa-sha256; d=Example.com; s=sel; h=From:To; bh={BH}; b=AAAA{extra}")
                .as_bytes(),
        )
    }

    #[test]
    fn defaults_and_tags() {
        let s = sig("").unwrap();
        assert_eq!(s.domain, "example.com");
        assert_eq!(s.signed_headers, ["from", "to"]);
        assert_eq!(s.header_canon, Canonicalization::Simple);
        assert_eq!(s.key_name(), "sel._domainkey.example.com");
        assert_eq!(s.identity_or_default(), "@example.com");
        let s =
            sig("; c=relaxed; i=u@Sub.Example.COM; l=10; t=5; x=6; z=ignored; q=dns/txt").unwrap();
        assert_eq!(s.header_canon, Canonicalization::Relaxed);
        assert_eq!(s.body_canon, Canonicalization::Simple);
        assert_eq!(s.identity_domain(), "sub.example.com");
        assert_eq!(s.body_length, Some(10));
    }

    #[test]
    fn errors() {
        assert_eq!(
            sig("; i=@example.org"),
            Err(SignatureError::IdentityNotInDomain)
        );
        assert_eq!(
            sig("; i=@badexample.com"),
            Err(SignatureError::IdentityNotInDomain)
        );
        assert_eq!(
            sig("; t=6; x=5"),
            Err(SignatureError::ExpiryBeforeTimestamp)
        );
        assert_eq!(sig("; l=-1"), Err(SignatureError::BadValue("l")));
        assert_eq!(
            sig("; c=fancy"),
            Err(SignatureError::UnsupportedCanonicalization)
        );
        assert_eq!(sig("; q=http"), Err(SignatureError::UnsupportedQueryMethod));
        assert_eq!(sig("; b=x"), Err(TagError::Duplicate("b".into()).into()));
        assert_eq!(
            parse_signature(b"v=1; a=rsa-sha256; d=e.com; s=s; h=to; bh=x; b=AAAA"),
            Err(SignatureError::BadValue("bh"))
        );
        assert_eq!(
            parse_signature(
                format!("v=1; a=rsa-sha256; d=e.com; s=s; h=to; bh={BH}; b=AA").as_bytes()
            ),
            Err(SignatureError::FromNotSigned)
        );
        assert_eq!(
            parse_signature(format!("v=1; a=rsa-sha256; s=s; h=from; bh={BH}; b=AAAA").as_bytes()),
            Err(SignatureError::MissingTag("d"))
        );
        assert_eq!(
            parse_signature(b"v=2; a=rsa-sha256"),
            Err(SignatureError::UnsupportedVersion)
        );
    }

    #[test]
    fn b_value_removed() {
        let raw = b"DKIM-Signature: v=1; b=abc\r\n def; bh=x; b2=y\r\n";
        assert_eq!(
            without_b_value(raw, 15),
            b"DKIM-Signature: v=1; b=; bh=x; b2=y\r\n"
        );
        let raw = b"DKIM-Signature: v=1;\r\n b=abc\r\n def\r\n";
        assert_eq!(without_b_value(raw, 15), b"DKIM-Signature: v=1;\r\n b=\r\n");
    }
}
