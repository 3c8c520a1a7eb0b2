//! Online DNSSEC: signing keys, their BIND key files, the DS record for
//! the parent, and the wire forms the signer needs (RFC 4034 DNSKEY,
//! RRSIG, NSEC, DS; RFC 5155 NSEC3 and NSEC3PARAM).
//!
//! Algorithms: ECDSA P-256 with SHA-256 (13, RFC 6605) by default and
//! Ed25519 (15, RFC 8080). Denial of existence: NSEC3 with SHA-1, no
//! salt and zero extra iterations (RFC 9276) by default, or NSEC.
//!
//! The DNSSEC record types travel as opaque RDATA (RFC 3597) through
//! hickory-proto: this module builds and reads their bytes itself, so the
//! signed data is exactly what goes on the wire.
//!
//! Key files follow BIND's format, which `dnssec-dsfromkey`, `delv` and
//! `named` read:
//!
//! ```text
//! Kexample.org.+013+12345.key      example.org. IN DNSKEY 257 3 13 <base64>
//! Kexample.org.+013+12345.private  Private-key-format: v1.3
//!                                  Algorithm: 13 (ECDSAP256SHA256)
//!                                  PrivateKey: <base64 of the 32-byte secret>
//! ```
//!
//! The secret is the P-256 scalar or the Ed25519 seed. Creating a key
//! takes the 32 random bytes as an input: the core reads no randomness.

use crate::Error;
use crate::wire::push_name;
use aws_lc_rs::digest;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use data_encoding::{BASE32HEX_NOPAD, BASE64, HEXUPPER};
use hickory_proto::rr::rdata::NULL;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

/// DNSKEY protocol field (RFC 4034 2.1.2).
pub const DNSKEY_PROTOCOL: u8 = 3;
/// DNSKEY flags of a zone key (RFC 4034 2.1.1).
pub const FLAGS_ZSK: u16 = 256;
/// DNSKEY flags of a zone key with the Secure Entry Point bit: a KSK, or
/// a combined signing key (CSK) when it is the zone's only key.
pub const FLAGS_KSK: u16 = 257;
/// Signature lifetime given to new RRSIGs.
pub const DEFAULT_VALIDITY_SECS: u32 = 14 * 86_400;
/// A signature is renewed when less than this remains before it expires.
pub const DEFAULT_REFRESH_SECS: u32 = 5 * 86_400;
/// Inception is backdated by this much (clock skew of validators).
pub const INCEPTION_SKEW_SECS: u32 = 3_600;
/// Keys used for one zone at a time.
pub const MAX_KEYS_PER_ZONE: usize = 8;
/// Largest key file read.
pub const MAX_KEY_FILE_BYTES: usize = 16 * 1024;
/// Length of the secret (P-256 scalar or Ed25519 seed).
pub const SECRET_BYTES: usize = 32;
/// NSEC3 hash algorithm 1, SHA-1 (RFC 5155 11).
pub const NSEC3_SHA1: u8 = 1;

/// The signing algorithms we implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// ECDSA P-256 with SHA-256, number 13 (RFC 6605).
    EcdsaP256Sha256,
    /// Ed25519, number 15 (RFC 8080).
    Ed25519,
}

impl Algorithm {
    /// The IANA number.
    pub fn number(self) -> u8 {
        match self {
            Algorithm::EcdsaP256Sha256 => 13,
            Algorithm::Ed25519 => 15,
        }
    }

    /// The IANA mnemonic (BIND's private-key files print it).
    pub fn mnemonic(self) -> &'static str {
        match self {
            Algorithm::EcdsaP256Sha256 => "ECDSAP256SHA256",
            Algorithm::Ed25519 => "ED25519",
        }
    }

    /// The algorithm of that number, if we implement it.
    pub fn from_number(n: u8) -> Option<Self> {
        match n {
            13 => Some(Algorithm::EcdsaP256Sha256),
            15 => Some(Algorithm::Ed25519),
            _ => None,
        }
    }
}

/// How non-existence is proven.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Denial {
    /// NSEC3, SHA-1, no salt, no extra iterations, no opt-out (RFC 9276).
    #[default]
    Nsec3,
    /// NSEC (RFC 4034 4): simpler, but lets anyone list the zone.
    Nsec,
}

/// Signing settings of a zone.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The keys: one CSK, or KSKs (flags 257, sign the DNSKEY RRset)
    /// plus ZSKs (flags 256, sign everything else).
    pub keys: Vec<SigningKey>,
    /// NSEC3 or NSEC.
    pub denial: Denial,
    /// Lifetime of new signatures (seconds).
    pub validity: u32,
    /// Renew a signature when less than this remains (seconds).
    pub refresh: u32,
    /// Extra NSEC3 hash iterations. RFC 9276 says 0 (the default); other
    /// values exist to test validators' limits against costly chains.
    pub nsec3_iterations: u16,
}

impl Settings {
    /// NSEC3 and the default lifetimes.
    pub fn new(keys: Vec<SigningKey>) -> Self {
        Settings {
            keys,
            denial: Denial::Nsec3,
            validity: DEFAULT_VALIDITY_SECS,
            refresh: DEFAULT_REFRESH_SECS,
            nsec3_iterations: 0,
        }
    }
}

#[derive(Clone)]
enum Pair {
    Ecdsa(Arc<EcdsaKeyPair>),
    Ed25519(Arc<Ed25519KeyPair>),
}

/// A zone signing key: the private half and its DNSKEY.
#[derive(Clone)]
pub struct SigningKey {
    zone: Name,
    algorithm: Algorithm,
    flags: u16,
    public: Vec<u8>,
    secret: Vec<u8>,
    pair: Pair,
    tag: u16,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("zone", &self.zone)
            .field("algorithm", &self.algorithm)
            .field("flags", &self.flags)
            .field("tag", &self.tag)
            .finish_non_exhaustive()
    }
}

/// RFC 5915 ECPrivateKey around a raw P-256 scalar (the curve named, the
/// public key left for the library to derive).
fn p256_der(scalar: &[u8]) -> Vec<u8> {
    let mut der = vec![0x30, 0x31, 0x02, 0x01, 0x01, 0x04, 0x20];
    der.extend_from_slice(scalar);
    der.extend_from_slice(&[
        0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
    ]);
    der
}

fn fqdn_lower(name: &Name) -> Name {
    let mut n = name.to_lowercase();
    n.set_fqdn(true);
    n
}

impl SigningKey {
    /// A key for `zone` from a 32-byte secret (random bytes for a new key:
    /// the caller draws them). `sep`: flags 257 (KSK or CSK), else 256.
    /// A secret that is not a valid P-256 scalar is refused (draw again).
    pub fn from_secret(
        zone: &Name,
        algorithm: Algorithm,
        sep: bool,
        secret: &[u8],
    ) -> Result<Self, Error> {
        if secret.len() != SECRET_BYTES {
            return Err(Error::BadKey(format!(
                "a DNSSEC secret is {SECRET_BYTES} bytes"
            )));
        }
        let (pair, public) = match algorithm {
            Algorithm::EcdsaP256Sha256 => {
                let pair = EcdsaKeyPair::from_private_key_der(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    &p256_der(secret),
                )
                .map_err(|e| Error::BadKey(format!("P-256 private key: {e}")))?;
                // Uncompressed point 04 || x || y; DNSKEY carries x || y.
                let public = pair.public_key().as_ref().get(1..).unwrap_or(&[]).to_vec();
                (Pair::Ecdsa(Arc::new(pair)), public)
            }
            Algorithm::Ed25519 => {
                let pair = Ed25519KeyPair::from_seed_unchecked(secret)
                    .map_err(|e| Error::BadKey(format!("Ed25519 private key: {e}")))?;
                let public = pair.public_key().as_ref().to_vec();
                (Pair::Ed25519(Arc::new(pair)), public)
            }
        };
        let mut key = SigningKey {
            zone: fqdn_lower(zone),
            algorithm,
            flags: if sep { FLAGS_KSK } else { FLAGS_ZSK },
            public,
            secret: secret.to_vec(),
            pair,
            tag: 0,
        };
        key.tag = key_tag(&key.dnskey_rdata());
        Ok(key)
    }

    /// Reads a BIND key pair: the `.key` file (the DNSKEY record) and the
    /// `.private` file (`Algorithm:` and `PrivateKey:` lines).
    pub fn from_bind(public_text: &str, private_text: &str) -> Result<Self, Error> {
        if public_text.len() > MAX_KEY_FILE_BYTES || private_text.len() > MAX_KEY_FILE_BYTES {
            return Err(Error::BadKey("key file too large".into()));
        }
        let line = public_text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with(';'))
            .ok_or_else(|| Error::BadKey("no DNSKEY record in the .key file".into()))?;
        let tokens: Vec<&str> = line.split_whitespace().collect();
        let at = tokens
            .iter()
            .position(|t| t.eq_ignore_ascii_case("DNSKEY"))
            .ok_or_else(|| Error::BadKey("no DNSKEY record in the .key file".into()))?;
        let zone = Name::from_ascii(tokens[0])
            .map_err(|e| Error::BadKey(format!("owner name {}: {e}", tokens[0])))?;
        let field = |i: usize| {
            tokens
                .get(at + i)
                .copied()
                .ok_or_else(|| Error::BadKey("DNSKEY record too short".into()))
        };
        let flags: u16 = field(1)?
            .parse()
            .map_err(|_| Error::BadKey("bad DNSKEY flags".into()))?;
        let number: u8 = field(3)?
            .parse()
            .map_err(|_| Error::BadKey("bad DNSKEY algorithm".into()))?;
        let public = BASE64
            .decode(tokens.get(at + 4..).unwrap_or(&[]).concat().as_bytes())
            .map_err(|_| Error::BadKey("bad DNSKEY public key".into()))?;
        let mut private_number = None;
        let mut secret = None;
        for l in private_text.lines() {
            let Some((k, v)) = l.split_once(':') else {
                continue;
            };
            match k.trim() {
                "Algorithm" => {
                    private_number = v.split_whitespace().next().and_then(|n| n.parse().ok());
                }
                "PrivateKey" => {
                    secret = Some(
                        BASE64
                            .decode(v.trim().as_bytes())
                            .map_err(|_| Error::BadKey("bad PrivateKey".into()))?,
                    );
                }
                _ => {}
            }
        }
        if private_number != Some(number) {
            return Err(Error::BadKey(
                "the .key and .private files name different algorithms".into(),
            ));
        }
        let algorithm = Algorithm::from_number(number)
            .ok_or_else(|| Error::BadKey(format!("DNSSEC algorithm {number} not supported")))?;
        let secret = secret.ok_or_else(|| Error::BadKey("no PrivateKey line".into()))?;
        if flags & !1 != FLAGS_ZSK {
            return Err(Error::BadKey(format!("DNSKEY flags {flags} not supported")));
        }
        let key = SigningKey::from_secret(&zone, algorithm, flags & 1 == 1, &secret)?;
        if key.public != public {
            return Err(Error::BadKey(
                "the public key does not match the private key".into(),
            ));
        }
        Ok(key)
    }

    /// The zone this key signs.
    pub fn zone(&self) -> &Name {
        &self.zone
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// DNSKEY flags (256 or 257).
    pub fn flags(&self) -> u16 {
        self.flags
    }

    /// Whether the Secure Entry Point bit is set (KSK or CSK).
    pub fn is_sep(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The key tag (RFC 4034 Appendix B).
    pub fn tag(&self) -> u16 {
        self.tag
    }

    /// BIND's file name stem: `K<zone>.+<alg>+<tag>`.
    pub fn file_stem(&self) -> String {
        format!(
            "K{}+{:03}+{:05}",
            self.zone.to_ascii(),
            self.algorithm.number(),
            self.tag
        )
    }

    /// The DNSKEY RDATA (RFC 4034 2.1).
    pub fn dnskey_rdata(&self) -> Vec<u8> {
        let mut out = self.flags.to_be_bytes().to_vec();
        out.push(DNSKEY_PROTOCOL);
        out.push(self.algorithm.number());
        out.extend_from_slice(&self.public);
        out
    }

    /// The DNSKEY record with this TTL.
    pub fn dnskey_record(&self, ttl: u32) -> Record {
        opaque(
            self.zone.clone(),
            ttl,
            RecordType::DNSKEY,
            self.dnskey_rdata(),
        )
    }

    /// The DNSKEY in master-file form.
    pub fn dnskey_text(&self) -> String {
        format!(
            "{} IN DNSKEY {} {} {} {}",
            self.zone.to_ascii(),
            self.flags,
            DNSKEY_PROTOCOL,
            self.algorithm.number(),
            BASE64.encode(&self.public)
        )
    }

    /// The `.key` file.
    pub fn public_file(&self) -> String {
        format!(
            "; This is a {} key, keyid {}, for {}\n{}\n",
            if self.is_sep() {
                "key-signing"
            } else {
                "zone-signing"
            },
            self.tag,
            self.zone.to_ascii(),
            self.dnskey_text()
        )
    }

    /// The `.private` file (keep it mode 0600).
    pub fn private_file(&self) -> String {
        format!(
            "Private-key-format: v1.3\nAlgorithm: {} ({})\nPrivateKey: {}\n",
            self.algorithm.number(),
            self.algorithm.mnemonic(),
            BASE64.encode(&self.secret)
        )
    }

    /// The DS RDATA with a SHA-256 digest (RFC 4509): what the parent
    /// publishes.
    pub fn ds_rdata(&self) -> Vec<u8> {
        let mut data = Vec::new();
        push_name(&mut data, &self.zone);
        data.extend_from_slice(&self.dnskey_rdata());
        let d = digest::digest(&digest::SHA256, &data);
        let mut out = self.tag.to_be_bytes().to_vec();
        out.push(self.algorithm.number());
        out.push(2);
        out.extend_from_slice(d.as_ref());
        out
    }

    /// The DS record in master-file form, for the parent zone.
    pub fn ds_text(&self) -> String {
        let ds = self.ds_rdata();
        format!(
            "{} IN DS {} {} 2 {}",
            self.zone.to_ascii(),
            self.tag,
            self.algorithm.number(),
            HEXUPPER.encode(ds.get(4..).unwrap_or(&[]))
        )
    }

    fn sign(&self, data: &[u8]) -> Result<Vec<u8>, Error> {
        match &self.pair {
            Pair::Ecdsa(pair) => {
                let rng = aws_lc_rs::rand::SystemRandom::new();
                pair.sign(&rng, data)
                    .map(|s| s.as_ref().to_vec())
                    .map_err(|_| Error::Encode("ECDSA signing failed".into()))
            }
            Pair::Ed25519(pair) => Ok(pair.sign(data).as_ref().to_vec()),
        }
    }
}

/// The key tag of DNSKEY RDATA (RFC 4034 Appendix B).
pub fn key_tag(rdata: &[u8]) -> u16 {
    let mut acc: u32 = 0;
    for (i, b) in rdata.iter().enumerate() {
        acc += if i & 1 == 1 {
            u32::from(*b)
        } else {
            u32::from(*b) << 8
        };
    }
    acc += (acc >> 16) & 0xFFFF;
    (acc & 0xFFFF) as u16
}

/// A record whose RDATA we built ourselves.
pub(crate) fn opaque(name: Name, ttl: u32, rtype: RecordType, rdata: Vec<u8>) -> Record {
    let mut r = Record::from_rdata(
        name,
        ttl,
        RData::Unknown {
            code: rtype,
            rdata: NULL::with(rdata),
        },
    );
    r.dns_class = DNSClass::IN;
    r
}

/// The raw RDATA of a record built by [`opaque`] or read from the wire.
/// Records decoded by hickory-proto's own DNSSEC types (when another
/// crate of the build turns its DNSSEC feature on) are encoded back.
pub(crate) fn raw(record: &Record) -> Option<std::borrow::Cow<'_, [u8]>> {
    use hickory_proto::serialize::binary::BinEncodable;
    match &record.data {
        RData::Unknown { rdata, .. } => Some(std::borrow::Cow::Borrowed(&rdata.anything)),
        other => other.to_bytes().ok().map(std::borrow::Cow::Owned),
    }
}

/// The types whose records the signer owns: never loaded, never updated.
pub fn is_dnssec_type(t: RecordType) -> bool {
    matches!(
        t,
        RecordType::RRSIG
            | RecordType::NSEC
            | RecordType::NSEC3
            | RecordType::NSEC3PARAM
            | RecordType::DNSKEY
    )
}

/// The canonical RDATA (RFC 4034 6.2: uncompressed, names lowercase in
/// the types RFC 6840 5.1 lists).
pub(crate) fn canonical_rdata(record: &Record) -> Result<Vec<u8>, Error> {
    let mut buf = Vec::new();
    let mut enc = BinEncoder::new(&mut buf);
    enc.set_canonical_form(true);
    record
        .data
        .emit(&mut enc)
        .map_err(|e| Error::Encode(e.to_string()))?;
    Ok(buf)
}

/// The NSEC/NSEC3 type bit maps field (RFC 4034 4.1.2).
pub(crate) fn type_bitmap(types: &BTreeSet<u16>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut window: Option<(u8, [u8; 32], usize)> = None;
    let flush = |w: &Option<(u8, [u8; 32], usize)>, out: &mut Vec<u8>| {
        if let Some((n, bits, len)) = w {
            out.push(*n);
            out.push(*len as u8);
            out.extend_from_slice(&bits[..*len]);
        }
    };
    for t in types {
        let (n, low) = ((t >> 8) as u8, (t & 0xFF) as usize);
        if window.as_ref().is_none_or(|w| w.0 != n) {
            flush(&window, &mut out);
            window = Some((n, [0; 32], 0));
        }
        if let Some(w) = window.as_mut() {
            w.1[low / 8] |= 0x80 >> (low % 8);
            w.2 = w.2.max(low / 8 + 1);
        }
    }
    flush(&window, &mut out);
    out
}

/// The NSEC3 hash of a name (RFC 5155 5): SHA-1 over the canonical name
/// and the salt, then `iterations` more times over the digest and salt.
pub fn nsec3_hash(name: &Name, salt: &[u8], iterations: u16) -> [u8; 20] {
    let mut data = Vec::new();
    push_name(&mut data, name);
    let mut out = [0u8; 20];
    for _ in 0..=iterations {
        data.extend_from_slice(salt);
        let d = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &data);
        out.copy_from_slice(d.as_ref());
        data = out.to_vec();
    }
    out
}

/// The hashed owner label: base32hex without padding, lower case.
pub fn nsec3_label(hash: &[u8]) -> String {
    BASE32HEX_NOPAD.encode(hash).to_ascii_lowercase()
}

/// NSEC3PARAM RDATA for SHA-1, no flags, no salt.
pub(crate) fn nsec3param_rdata(iterations: u16) -> Vec<u8> {
    let [hi, lo] = iterations.to_be_bytes();
    vec![NSEC3_SHA1, 0, hi, lo, 0]
}

/// NSEC3 RDATA (RFC 5155 3.2) with no flags and no salt.
pub(crate) fn nsec3_rdata(next: &[u8; 20], types: &BTreeSet<u16>, iterations: u16) -> Vec<u8> {
    let [hi, lo] = iterations.to_be_bytes();
    let mut out = vec![NSEC3_SHA1, 0, hi, lo, 0, 20];
    out.extend_from_slice(next);
    out.extend_from_slice(&type_bitmap(types));
    out
}

/// NSEC RDATA (RFC 4034 4.1).
pub(crate) fn nsec_rdata(next: &Name, types: &BTreeSet<u16>) -> Vec<u8> {
    let mut out = Vec::new();
    push_name(&mut out, next);
    out.extend_from_slice(&type_bitmap(types));
    out
}

/// The fields of an RRSIG we need to manage it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SigInfo {
    pub covered: u16,
    pub algorithm: u8,
    pub expiration: u32,
    pub key_tag: u16,
}

pub(crate) fn sig_info(record: &Record) -> Option<SigInfo> {
    let d = raw(record)?;
    let u16_at = |i: usize| Some(u16::from_be_bytes([*d.get(i)?, *d.get(i + 1)?]));
    let u32_at = |i: usize| {
        Some(u32::from_be_bytes([
            *d.get(i)?,
            *d.get(i + 1)?,
            *d.get(i + 2)?,
            *d.get(i + 3)?,
        ]))
    };
    Some(SigInfo {
        covered: u16_at(0)?,
        algorithm: *d.get(2)?,
        expiration: u32_at(8)?,
        key_tag: u16_at(16)?,
    })
}

/// Labels of an owner name for the RRSIG labels field (RFC 4034 3.1.3):
/// without the root and without a leading `*` (hickory-proto's
/// `num_labels` already leaves the `*` out).
fn sig_labels(name: &Name) -> u8 {
    name.num_labels()
}

/// Signs one RRset (all records with the same owner, class and type),
/// following RFC 4034 3.1.8.1 and 6.3: canonical records sorted by RDATA,
/// duplicates removed, the original TTL.
pub(crate) fn sign_rrset(
    key: &SigningKey,
    rrset: &[Record],
    inception: u32,
    expiration: u32,
) -> Result<Record, Error> {
    let first = rrset
        .first()
        .ok_or_else(|| Error::ApiMisuse("empty RRset".into()))?;
    let owner = fqdn_lower(&first.name);
    let rtype = u16::from(first.record_type());
    let ttl = first.ttl;
    let mut rdata = Vec::new();
    push_fixed(
        &mut rdata,
        rtype,
        key,
        sig_labels(&owner),
        ttl,
        inception,
        expiration,
    );
    let mut data = rdata.clone();
    let mut owner_wire = Vec::new();
    push_name(&mut owner_wire, &owner);
    let mut canon: Vec<Vec<u8>> = rrset
        .iter()
        .map(canonical_rdata)
        .collect::<Result<_, _>>()?;
    canon.sort();
    canon.dedup();
    for rd in &canon {
        data.extend_from_slice(&owner_wire);
        data.extend_from_slice(&rtype.to_be_bytes());
        data.extend_from_slice(&1u16.to_be_bytes());
        data.extend_from_slice(&ttl.to_be_bytes());
        let len = u16::try_from(rd.len()).map_err(|_| Error::Encode("RDATA too long".into()))?;
        data.extend_from_slice(&len.to_be_bytes());
        data.extend_from_slice(rd);
    }
    rdata.extend_from_slice(&key.sign(&data)?);
    Ok(opaque(owner, ttl, RecordType::RRSIG, rdata))
}

fn push_fixed(
    out: &mut Vec<u8>,
    covered: u16,
    key: &SigningKey,
    labels: u8,
    ttl: u32,
    inception: u32,
    expiration: u32,
) {
    out.extend_from_slice(&covered.to_be_bytes());
    out.push(key.algorithm.number());
    out.push(labels);
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&expiration.to_be_bytes());
    out.extend_from_slice(&inception.to_be_bytes());
    out.extend_from_slice(&key.tag.to_be_bytes());
    push_name(out, &key.zone);
}

/// Verifies an RRSIG over an RRset with a DNSKEY's RDATA (RFC 4035
/// 5.3.2, the inverse of signing): the zone's tests check every signature
/// with it.
pub fn verify_rrsig(dnskey_rdata: &[u8], rrsig: &Record, rrset: &[Record]) -> bool {
    let Some(sig) = raw(rrsig) else { return false };
    let Some(alg) = dnskey_rdata.get(3).and_then(|a| Algorithm::from_number(*a)) else {
        return false;
    };
    let public = dnskey_rdata.get(4..).unwrap_or(&[]);
    // Fixed fields (18 bytes) then the signer name, then the signature.
    let Some((_, end)) = crate::wire::read_name(&sig, 18) else {
        return false;
    };
    let Some(info) = sig_info(rrsig) else {
        return false;
    };
    let ttl = u32::from_be_bytes([sig[4], sig[5], sig[6], sig[7]]);
    let owner = rrset.first().map(|r| fqdn_lower(&r.name));
    let Some(owner) = owner else { return false };
    let mut data = sig[..end].to_vec();
    let mut owner_wire = Vec::new();
    push_name(&mut owner_wire, &owner);
    let Ok(mut canon) = rrset
        .iter()
        .map(canonical_rdata)
        .collect::<Result<Vec<_>, _>>()
    else {
        return false;
    };
    canon.sort();
    canon.dedup();
    for rd in &canon {
        data.extend_from_slice(&owner_wire);
        data.extend_from_slice(&info.covered.to_be_bytes());
        data.extend_from_slice(&1u16.to_be_bytes());
        data.extend_from_slice(&ttl.to_be_bytes());
        data.extend_from_slice(&(rd.len() as u16).to_be_bytes());
        data.extend_from_slice(rd);
    }
    let signature = &sig[end..];
    match alg {
        Algorithm::EcdsaP256Sha256 => {
            let mut point = vec![4u8];
            point.extend_from_slice(public);
            signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(&data, signature)
                .is_ok()
        }
        Algorithm::Ed25519 => signature::UnparsedPublicKey::new(&signature::ED25519, public)
            .verify(&data, signature)
            .is_ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    #[test]
    fn rfc5155_appendix_a_hashes() {
        // RFC 5155 Appendix A: salt aabbccdd, 12 iterations.
        let salt = [0xaa, 0xbb, 0xcc, 0xdd];
        for (name, hash) in [
            ("example.", "0p9mhaveqvm6t7vbl5lop2u3t2rp3tom"),
            ("a.example.", "35mthgpgcu1qg68fab165klnsnk3dpvl"),
            ("ai.example.", "gjeqe526plbf1g8mklp59enfd789njgi"),
            ("ns1.example.", "2t7b4g4vsa5smi47k61mv5bv1a22bojr"),
            ("ns2.example.", "q04jkcevqvmu85r014c7dkba38o0ji5r"),
            ("w.example.", "k8udemvp1j2f7eg6jebps17vp3n8i58h"),
            ("*.w.example.", "r53bq7cc2uvmubfu5ocmm6pers9tk9en"),
            ("x.w.example.", "b4um86eghhds6nea196smvmlo4ors995"),
            ("y.w.example.", "ji6neoaepv8b5o6k4ev33abha8ht9fgc"),
            ("x.y.w.example.", "2vptu5timamqttgl4luu9kg21e0aor3s"),
            ("xx.example.", "t644ebqk9bibcna874givr6joj62mlhv"),
        ] {
            assert_eq!(
                nsec3_label(&nsec3_hash(&n(name), &salt, 12)),
                hash,
                "{name}"
            );
        }
    }

    #[test]
    fn bitmap_matches_rfc4034_example() {
        // RFC 4034 4.3: A MX RRSIG NSEC TYPE1234.
        let types: BTreeSet<u16> = [1, 15, 46, 47, 1234].into_iter().collect();
        // Window 0: 6 bytes (A, MX, RRSIG, NSEC); window 4: 27 bytes, the
        // last with the bit of 1234 - 1024 = 210.
        let mut expected = vec![0x00, 0x06, 0x40, 0x01, 0x00, 0x00, 0x00, 0x03, 0x04, 0x1b];
        expected.extend([0u8; 26]);
        expected.push(0x20);
        assert_eq!(type_bitmap(&types), expected);
    }

    #[test]
    fn keys_round_trip_through_bind_files_and_sign() {
        let zone = n("example.org.");
        for alg in [Algorithm::EcdsaP256Sha256, Algorithm::Ed25519] {
            let key = SigningKey::from_secret(&zone, alg, true, &[7u8; 32]).unwrap();
            let back = SigningKey::from_bind(&key.public_file(), &key.private_file()).unwrap();
            assert_eq!(back.dnskey_rdata(), key.dnskey_rdata());
            assert_eq!(back.tag(), key.tag());
            assert!(key.file_stem().starts_with("Kexample.org.+0"));
            let rrset = vec![Record::from_rdata(
                n("WWW.Example.org."),
                300,
                RData::A("192.0.2.1".parse().unwrap()),
            )];
            let sig = sign_rrset(&key, &rrset, 1, 2).unwrap();
            assert!(verify_rrsig(&key.dnskey_rdata(), &sig, &rrset));
            let other = vec![Record::from_rdata(
                n("www.example.org."),
                300,
                RData::A("192.0.2.2".parse().unwrap()),
            )];
            assert!(!verify_rrsig(&key.dnskey_rdata(), &sig, &other));
        }
    }

    #[test]
    fn key_tag_and_ds_of_rfc4034_example() {
        // RFC 4034 5.4: dskey.example.com. DNSKEY 256 3 5 ... has tag 60485;
        // algorithm 5 is not ours, so check the tag function alone on it.
        let public = BASE64
            .decode(
                b"AQOeiiR0GOMYkDshWoSKz9XzfwJr1AYtsmx3TGkJaNXVbfi/2pHm822aJ5iI9BMzNXxeYCmZDRD99WYwYqUSdjMmmAphXdvxegXd/M5+X7OrzKBaMbCVdFLUUh6DhweJBjEVv5f2wwjM9XzcnOf+EPbtG9DMBmADjFDc2w/rljwvFw==",
            )
            .unwrap();
        let mut rdata = vec![1, 0, 3, 5];
        rdata.extend_from_slice(&public);
        assert_eq!(key_tag(&rdata), 60485);
    }
}
