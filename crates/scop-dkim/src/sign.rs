//! Signing (RFC 6376 section 5, RFC 8463 section 3).

use crate::base64;
use crate::canon::{BodyHash, BodyHasher, Canonicalization, canon_header, simple_header};
use crate::error::Error;
use crate::header::{HeaderField, split_header};
use crate::key::{pem_decode, pem_encode};
use crate::signature::{Algorithm, valid_domain};
use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use aws_lc_rs::{digest, rand};

/// Smallest RSA key we sign with. RFC 8301 section 3.2 allows 1024, but
/// aws-lc-rs signs with 2048 bits and more only (it is also what RFC 8301
/// recommends).
pub const MIN_SIGNING_RSA_BITS: usize = 2048;
/// Largest RSA key we sign with (RFC 8301 section 3.2: verifiers need only
/// support up to 4096).
pub const MAX_SIGNING_RSA_BITS: usize = 4096;

/// Header fields signed by default, when present (each occurrence).
pub const DEFAULT_SIGNED_HEADERS: &[&str] = &[
    "from",
    "sender",
    "reply-to",
    "subject",
    "date",
    "message-id",
    "to",
    "cc",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "content-id",
    "content-description",
    "in-reply-to",
    "references",
    "list-id",
    "list-help",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "list-subscribe",
    "list-post",
    "list-owner",
    "list-archive",
];

/// Header fields over-signed by default: listed in `h=` once more than they
/// occur, so that adding one after signing breaks the signature (RFC 6376
/// section 8.15).
pub const DEFAULT_OVERSIGNED_HEADERS: &[&str] = &[
    "from",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "reply-to",
    "content-type",
    "mime-version",
];

/// The kind of key to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA, 2048 bits (`rsa-sha256`).
    Rsa2048,
    /// RSA, 3072 bits.
    Rsa3072,
    /// RSA, 4096 bits.
    Rsa4096,
    /// Ed25519 (`ed25519-sha256`, RFC 8463).
    Ed25519,
}

enum Inner {
    Rsa(RsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// A private key that signs: RSA (2048 to 4096 bits) or Ed25519.
pub struct SigningKey {
    inner: Inner,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("algorithm", &self.algorithm())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Generates a key. Randomness comes from the operating system through
    /// aws-lc (key generation is not part of the sans-IO protocol core).
    pub fn generate(kind: KeyKind) -> Result<SigningKey, Error> {
        use aws_lc_rs::rsa::KeySize;
        let size = match kind {
            KeyKind::Ed25519 => {
                let key = Ed25519KeyPair::generate().map_err(|_| Error::Crypto)?;
                return Ok(SigningKey {
                    inner: Inner::Ed25519(key),
                });
            }
            KeyKind::Rsa2048 => KeySize::Rsa2048,
            KeyKind::Rsa3072 => KeySize::Rsa3072,
            KeyKind::Rsa4096 => KeySize::Rsa4096,
        };
        let key = RsaKeyPair::generate(size).map_err(|_| Error::Crypto)?;
        Ok(SigningKey {
            inner: Inner::Rsa(key),
        })
    }

    /// Reads a PKCS#8 DER private key (RSA or Ed25519).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<SigningKey, Error> {
        if let Ok(key) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
            return Ok(SigningKey {
                inner: Inner::Ed25519(key),
            });
        }
        let key = RsaKeyPair::from_pkcs8(der).map_err(|e| Error::InvalidKey(e.to_string()))?;
        SigningKey::rsa(key)
    }

    fn rsa(key: RsaKeyPair) -> Result<SigningKey, Error> {
        let bits = key.public_modulus_len() * 8;
        if !(MIN_SIGNING_RSA_BITS..=MAX_SIGNING_RSA_BITS).contains(&bits) {
            return Err(Error::UnsupportedKeySize(bits));
        }
        Ok(SigningKey {
            inner: Inner::Rsa(key),
        })
    }

    /// Reads a PEM private key: PKCS#8 (`PRIVATE KEY`), or PKCS#1
    /// (`RSA PRIVATE KEY`, as `opendkim-genkey` writes).
    pub fn from_pem(pem: &str) -> Result<SigningKey, Error> {
        if let Some(der) = pem_decode(pem, "PRIVATE KEY") {
            return SigningKey::from_pkcs8_der(&der);
        }
        if let Some(der) = pem_decode(pem, "RSA PRIVATE KEY") {
            let key = RsaKeyPair::from_der(&der).map_err(|e| Error::InvalidKey(e.to_string()))?;
            return SigningKey::rsa(key);
        }
        Err(Error::InvalidKey("no PEM private key block".into()))
    }

    /// The key as PKCS#8 v1 DER.
    pub fn to_pkcs8_der(&self) -> Result<Vec<u8>, Error> {
        let der: Pkcs8V1Der<'static> = match &self.inner {
            Inner::Rsa(k) => k.as_der(),
            Inner::Ed25519(k) => k.as_der(),
        }
        .map_err(|_| Error::Crypto)?;
        Ok(der.as_ref().to_vec())
    }

    /// The key as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn to_pkcs8_pem(&self) -> Result<String, Error> {
        Ok(pem_encode(&self.to_pkcs8_der()?, "PRIVATE KEY"))
    }

    /// The signing algorithm this key makes.
    pub fn algorithm(&self) -> Algorithm {
        match self.inner {
            Inner::Rsa(_) => Algorithm::RsaSha256,
            Inner::Ed25519(_) => Algorithm::Ed25519Sha256,
        }
    }

    /// The `p=` value: SubjectPublicKeyInfo for RSA (RFC 6376 section
    /// 3.6.1), the raw 32-byte key for Ed25519 (RFC 8463 section 4.2).
    pub fn public_key_bytes(&self) -> Result<Vec<u8>, Error> {
        match &self.inner {
            Inner::Rsa(k) => {
                let der = k.public_key().as_der().map_err(|_| Error::Crypto)?;
                Ok(der.as_ref().to_vec())
            }
            Inner::Ed25519(k) => Ok(k.public_key().as_ref().to_vec()),
        }
    }

    /// The TXT record to publish at `selector._domainkey.domain`.
    pub fn dns_txt(&self) -> Result<String, Error> {
        let k = match self.inner {
            Inner::Rsa(_) => "rsa",
            Inner::Ed25519(_) => "ed25519",
        };
        Ok(format!(
            "v=DKIM1; k={k}; p={}",
            base64::encode(&self.public_key_bytes()?)
        ))
    }

    /// Signs the header hash input (RFC 6376 section 3.7; RFC 8463 section 3
    /// signs the SHA-256 digest of it with pure Ed25519).
    fn sign_data(&self, data: &[u8]) -> Result<Vec<u8>, Error> {
        match &self.inner {
            Inner::Rsa(k) => {
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(
                    &RSA_PKCS1_SHA256,
                    &rand::SystemRandom::new(),
                    data,
                    &mut sig,
                )
                .map_err(|_| Error::Crypto)?;
                Ok(sig)
            }
            Inner::Ed25519(k) => {
                let hash = digest::digest(&digest::SHA256, data);
                Ok(k.sign(hash.as_ref()).as_ref().to_vec())
            }
        }
    }
}

/// Signs messages for one domain, selector and key (RFC 6376 section 5).
///
/// Defaults: `c=relaxed/relaxed`, the [`DEFAULT_SIGNED_HEADERS`] present in
/// the message, [`DEFAULT_OVERSIGNED_HEADERS`] over-signed, `t=` set, no
/// `x=`, no `i=`, and never `l=`.
#[derive(Debug)]
pub struct Signer {
    key: SigningKey,
    domain: String,
    selector: String,
    header_canon: Canonicalization,
    body_canon: Canonicalization,
    identity: Option<String>,
    expire_after: Option<u64>,
    headers: Vec<String>,
    oversigned: Vec<String>,
}

impl Signer {
    /// A signer for `domain` and `selector`.
    pub fn new(key: SigningKey, domain: &str, selector: &str) -> Result<Signer, Error> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let selector = selector.to_ascii_lowercase();
        if !valid_domain(&domain) || !domain.is_ascii() {
            return Err(Error::InvalidDomain(domain));
        }
        if !valid_domain(&selector) || !selector.is_ascii() {
            return Err(Error::InvalidSelector(selector));
        }
        Ok(Signer {
            key,
            domain,
            selector,
            header_canon: Canonicalization::Relaxed,
            body_canon: Canonicalization::Relaxed,
            identity: None,
            expire_after: None,
            headers: DEFAULT_SIGNED_HEADERS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            oversigned: DEFAULT_OVERSIGNED_HEADERS
                .iter()
                .map(|s| s.to_string())
                .collect(),
        })
    }

    /// Sets the header and body canonicalizations (`c=`).
    pub fn with_canonicalization(
        mut self,
        header: Canonicalization,
        body: Canonicalization,
    ) -> Self {
        self.header_canon = header;
        self.body_canon = body;
        self
    }

    /// Sets `i=`; its domain must be the signing domain or below it.
    pub fn with_identity(mut self, identity: &str) -> Result<Self, Error> {
        let ok = identity
            .rsplit_once('@')
            .map(|(_, d)| d.to_ascii_lowercase())
            .is_some_and(|d| d == self.domain || d.ends_with(&format!(".{}", self.domain)));
        if !ok
            || identity
                .bytes()
                .any(|c| c <= b' ' || c == b';' || c >= 0x7f)
        {
            return Err(Error::InvalidIdentity(identity.to_owned()));
        }
        self.identity = Some(identity.to_owned());
        Ok(self)
    }

    /// Sets `x=` to `t=` plus `seconds`.
    pub fn with_expiration(mut self, seconds: u64) -> Self {
        self.expire_after = Some(seconds.max(1));
        self
    }

    /// Replaces the list of header fields signed when present. `from` is
    /// always signed.
    pub fn with_headers(mut self, names: &[&str]) -> Self {
        self.headers = names.iter().map(|s| s.to_ascii_lowercase()).collect();
        self
    }

    /// Replaces the list of over-signed header fields.
    pub fn with_oversigned(mut self, names: &[&str]) -> Self {
        self.oversigned = names.iter().map(|s| s.to_ascii_lowercase()).collect();
        self
    }

    /// The key.
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// The selector (`s=`): the key record is at
    /// `<selector>._domainkey.<domain>`.
    pub fn selector(&self) -> &str {
        &self.selector
    }

    /// The signing domain (`d=`).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// A body hasher matching this signer, for streaming large bodies into
    /// [`Signer::sign_with_body_hash`].
    pub fn body_hasher(&self) -> BodyHasher {
        BodyHasher::new(self.body_canon, self.key.algorithm().hash(), None)
    }

    /// Signs a whole message; returns the `DKIM-Signature` field (folded,
    /// ending in CRLF) to prepend to it. `now` is the Unix time for `t=`.
    pub fn sign(&self, message: &[u8], now: u64) -> Result<String, Error> {
        let header = split_header(message);
        let mut hasher = self.body_hasher();
        hasher.update(&message[header.body_offset..]);
        self.sign_fields(&header.fields, &hasher.finish(), now)
    }

    /// Signs given the header block (the bytes before the body) and the
    /// body hash computed with [`Signer::body_hasher`].
    pub fn sign_with_body_hash(
        &self,
        header_block: &[u8],
        body_hash: &BodyHash,
        now: u64,
    ) -> Result<String, Error> {
        self.sign_fields(&split_header(header_block).fields, body_hash, now)
    }

    fn h_list(&self, fields: &[HeaderField<'_>]) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        let mut consider = |name: &str, names: &mut Vec<String>| {
            if seen.iter().any(|s| s == name) {
                return;
            }
            seen.push(name.to_owned());
            let count = fields.iter().filter(|f| f.is(name)).count();
            let extra = usize::from(self.oversigned.iter().any(|o| o == name));
            names.extend(std::iter::repeat_n(name.to_owned(), count + extra));
        };
        consider("from", &mut names);
        for name in &self.headers {
            consider(name, &mut names);
        }
        for name in &self.oversigned {
            consider(name, &mut names);
        }
        names
    }

    fn sign_fields(
        &self,
        fields: &[HeaderField<'_>],
        body_hash: &BodyHash,
        now: u64,
    ) -> Result<String, Error> {
        if !fields.iter().any(|f| f.is("from")) {
            return Err(Error::NoFromHeader);
        }
        let h = self.h_list(fields);
        let alg = self.key.algorithm();
        let mut tags = vec![
            "v=1".to_owned(),
            format!("a={alg}"),
            format!(
                "c={}/{}",
                self.header_canon.as_str(),
                self.body_canon.as_str()
            ),
            format!("d={}", self.domain),
            format!("s={}", self.selector),
            format!("t={now}"),
        ];
        if let Some(secs) = self.expire_after {
            tags.push(format!("x={}", now.saturating_add(secs)));
        }
        if let Some(i) = &self.identity {
            tags.push(format!("i={i}"));
        }
        let mut out = String::from("DKIM-Signature:");
        let mut col = out.len();
        let put = |out: &mut String, item: &str, col: &mut usize| {
            if *col + 1 + item.len() > 76 {
                out.push_str("\r\n\t");
                *col = 8;
            } else {
                out.push(' ');
                *col += 1;
            }
            out.push_str(item);
            *col += item.len();
        };
        for tag in &tags {
            put(&mut out, &format!("{tag};"), &mut col);
        }
        // h=, folded between names (FWS is allowed around the colons).
        for (n, name) in h.iter().enumerate() {
            let item = match (n, n + 1 == h.len()) {
                (0, true) => format!("h={name};"),
                (0, false) => format!("h={name}:"),
                (_, true) => format!("{name};"),
                _ => format!("{name}:"),
            };
            if n == 0 {
                put(&mut out, &item, &mut col);
            } else if col + item.len() > 76 {
                out.push_str("\r\n\t");
                out.push_str(&item);
                col = 8 + item.len();
            } else {
                out.push_str(&item);
                col += item.len();
            }
        }
        put(
            &mut out,
            &format!("bh={};", base64::encode(&body_hash.digest)),
            &mut col,
        );
        out.push_str("\r\n\tb=");

        // The hash input: the signed fields in h= order, picked bottom-up,
        // then this field with an empty b= and no final CRLF.
        let mut data = Vec::with_capacity(1024);
        let mut used = vec![false; fields.len()];
        for name in &h {
            if let Some(i) = (0..fields.len())
                .rev()
                .find(|&i| !used[i] && fields[i].is(name))
            {
                used[i] = true;
                canon_header(self.header_canon, &fields[i], &mut data);
            }
        }
        let own = format!("{out}\r\n");
        match self.header_canon {
            Canonicalization::Simple => simple_header(own.as_bytes(), &mut data),
            Canonicalization::Relaxed => {
                let parsed = split_header(own.as_bytes());
                let field = parsed.fields.first().ok_or(Error::Crypto)?;
                canon_header(Canonicalization::Relaxed, field, &mut data);
            }
        }
        data.truncate(data.len() - 2);

        let sig = base64::encode(&self.key.sign_data(&data)?);
        for (n, chunk) in sig.as_bytes().chunks(72).enumerate() {
            if n > 0 {
                out.push_str("\r\n\t");
            }
            out.push_str(std::str::from_utf8(chunk).map_err(|_| Error::Crypto)?);
        }
        out.push_str("\r\n");
        Ok(out)
    }
}

/// Signs `message` with every signer (e.g. RSA and Ed25519, the default
/// dual signature) and returns the signed message: the new fields, then the
/// original bytes.
pub fn sign_message(signers: &[Signer], message: &[u8], now: u64) -> Result<Vec<u8>, Error> {
    let header = split_header(message);
    let mut out = Vec::with_capacity(message.len() + 1024 * signers.len());
    let mut hashes: Vec<(Canonicalization, Algorithm, BodyHash)> = Vec::new();
    for signer in signers {
        let alg = signer.key.algorithm();
        let cached = hashes
            .iter()
            .find(|(c, a, _)| *c == signer.body_canon && a.hash() == alg.hash())
            .map(|(_, _, h)| h.clone());
        let hash = match cached {
            Some(h) => h,
            None => {
                let mut hasher = signer.body_hasher();
                hasher.update(&message[header.body_offset..]);
                let h = hasher.finish();
                hashes.push((signer.body_canon, alg, h.clone()));
                h
            }
        };
        out.extend_from_slice(signer.sign_fields(&header.fields, &hash, now)?.as_bytes());
    }
    out.extend_from_slice(message);
    Ok(out)
}
