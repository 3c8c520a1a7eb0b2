//! Verification (RFC 6376 section 6), sans-IO.
//!
//! ```text
//!  Verifier::new(header block, options)        parse every DKIM-Signature
//!       |            \__ key_queries() -> ["sel._domainkey.example.com", ...]
//!       |                     (the caller asks DNS for TXT records)
//!  update_body(chunk)*        answer(name, DnsAnswer::Txt | NxDomain | TempError)
//!       |____________________________|
//!                  finish() -> Vec<DkimOutput>   one verdict per signature
//! ```

use crate::canon::{BodyHasher, Canonicalization, HashAlgorithm, canon_header};
use crate::header::{HeaderField, split_header};
use crate::key::{KeyRecord, KeyRecordError, parse_key_record};
use crate::signature::{Algorithm, Signature, SignatureError, parse_signature, without_b_value};
use aws_lc_rs::{digest, signature as sig};

/// Most `DKIM-Signature` fields evaluated in one message; the others get
/// [`Reason::TooManySignatures`].
pub const MAX_SIGNATURES: usize = 16;

/// Smallest RSA key accepted by default (RFC 8301 section 3.2).
pub const MIN_RSA_BITS: usize = 1024;

/// Most TXT records looked at per key query.
pub const MAX_KEY_RECORDS: usize = 8;

/// A DKIM verdict, in the vocabulary of RFC 8601 section 2.7.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DkimResult {
    /// The signature verified.
    Pass,
    /// The signature or body hash did not verify.
    Fail,
    /// Signed, but the signature could not be processed (unused here: we
    /// say which of the other results applies).
    Neutral,
    /// Signed and verified, but not acceptable (e.g. `rsa-sha1`).
    Policy,
    /// A transient error (DNS): try again later.
    TempError,
    /// A permanent error: malformed signature or key, expired, no key...
    PermError,
    /// The message is not signed.
    None,
}

impl DkimResult {
    /// The RFC 8601 keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            DkimResult::Pass => "pass",
            DkimResult::Fail => "fail",
            DkimResult::Neutral => "neutral",
            DkimResult::Policy => "policy",
            DkimResult::TempError => "temperror",
            DkimResult::PermError => "permerror",
            DkimResult::None => "none",
        }
    }
}

impl std::fmt::Display for DkimResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a verdict is what it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Reason {
    /// Signature and body hash verified.
    #[error("signature verified")]
    Verified,
    /// No `DKIM-Signature` field.
    #[error("no signature")]
    NoSignature,
    /// The `DKIM-Signature` field is malformed (RFC 6376 section 6.1.1).
    #[error("bad signature: {0}")]
    Signature(#[from] SignatureError),
    /// `x=` is in the past.
    #[error("signature expired")]
    Expired,
    /// `t=` is in the future (beyond the allowed clock skew).
    #[error("signature timestamp in the future")]
    FutureTimestamp,
    /// No key record (NXDOMAIN, or no TXT record).
    #[error("no key for signature")]
    KeyNotFound,
    /// DNS failed transiently.
    #[error("key query failed temporarily")]
    DnsTempError,
    /// The caller gave no answer for the key query.
    #[error("key query not answered")]
    KeyNotAnswered,
    /// The key record is malformed (RFC 6376 section 6.1.2).
    #[error("bad key record: {0}")]
    KeyRecord(KeyRecordError),
    /// `p=` is empty: the key is revoked.
    #[error("key revoked")]
    KeyRevoked,
    /// The key type does not match `a=`.
    #[error("key type does not match the algorithm")]
    KeyTypeMismatch,
    /// The key's `h=` excludes the signature's hash.
    #[error("hash algorithm not allowed by the key")]
    HashNotAllowed,
    /// The key's `s=` excludes email.
    #[error("key not for email")]
    ServiceNotEmail,
    /// The key has `t=s` and `i=` is a subdomain of `d=`.
    #[error("key forbids subdomain identities (t=s)")]
    StrictIdentity,
    /// The RSA key is too short.
    #[error("RSA key too short: {0} bits")]
    KeyTooShort(usize),
    /// The public key is unusable.
    #[error("unusable public key")]
    BadKey,
    /// The body hash differs (RFC 6376 section 6.1.3).
    #[error("body hash did not verify")]
    BodyHashMismatch,
    /// `l=` is larger than the body.
    #[error("l= exceeds the body length")]
    BodyLengthExceeded,
    /// The signature does not verify.
    #[error("signature did not verify")]
    SignatureMismatch,
    /// Verified, but with `rsa-sha1` (RFC 8301 section 3.1).
    #[error("weak algorithm rsa-sha1")]
    WeakAlgorithm,
    /// More than [`MAX_SIGNATURES`] signatures.
    #[error("too many signatures")]
    TooManySignatures,
}

/// Facts worth reporting beside the verdict.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    /// The signature uses `rsa-sha1`.
    pub weak_rsa_sha1: bool,
    /// The signature has `l=`: only part of the body may be signed.
    pub body_length_limited: bool,
    /// With `l=`, content follows the signed part of the body (RFC 6376
    /// section 8.2): it may have been appended by anyone.
    pub unsigned_trailing_content: bool,
    /// The key record has `t=y` (testing).
    pub testing: bool,
}

/// The verdict on one signature.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimOutput {
    /// The result.
    pub result: DkimResult,
    /// Why.
    pub reason: Reason,
    /// `d=`, when the signature was readable that far.
    pub domain: Option<String>,
    /// `s=`.
    pub selector: Option<String>,
    /// `a=`.
    pub algorithm: Option<Algorithm>,
    /// `i=` (or its default `@d`).
    pub identity: Option<String>,
    /// RSA key size, when a key was found.
    pub key_bits: Option<usize>,
    /// Flags.
    pub flags: Flags,
}

impl DkimOutput {
    fn bare(result: DkimResult, reason: Reason) -> DkimOutput {
        DkimOutput {
            result,
            reason,
            domain: None,
            selector: None,
            algorithm: None,
            identity: None,
            key_bits: None,
            flags: Flags::default(),
        }
    }
}

/// The answer to one key query (`selector._domainkey.domain TXT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsAnswer {
    /// TXT records, each with its character-strings already concatenated
    /// (RFC 6376 section 3.6.2.2). An empty list means NODATA.
    Txt(Vec<Vec<u8>>),
    /// The name does not exist.
    NxDomain,
    /// Timeout or SERVFAIL.
    TempError,
}

/// Verification settings; the clock is injected.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Current Unix time, for `t=` and `x=`.
    pub now: u64,
    /// Tolerated clock difference for `t=` in the future, in seconds.
    pub clock_skew: u64,
    /// Smallest RSA key accepted ([`MIN_RSA_BITS`] by default).
    pub min_rsa_bits: usize,
    /// Report a verified `rsa-sha1` signature as `pass` rather than
    /// `policy` (it is flagged weak either way).
    pub accept_rsa_sha1: bool,
}

impl VerifyOptions {
    /// Defaults at time `now`.
    pub fn at(now: u64) -> VerifyOptions {
        VerifyOptions {
            now,
            clock_skew: 300,
            min_rsa_bits: MIN_RSA_BITS,
            accept_rsa_sha1: false,
        }
    }
}

#[derive(Debug)]
struct Pending {
    sig: Signature,
    /// The header hash input (RFC 6376 section 3.7).
    data: Vec<u8>,
    hasher: usize,
}

#[derive(Debug)]
enum State {
    Done(DkimOutput),
    Pending(Box<Pending>),
}

/// Verifies every signature of one message. See the module diagram.
#[derive(Debug)]
pub struct Verifier {
    options: VerifyOptions,
    states: Vec<State>,
    hashers: Vec<(Canonicalization, HashAlgorithm, Option<u64>, BodyHasher)>,
    answers: Vec<(String, DnsAnswer)>,
}

fn describe(sig: &Signature, result: DkimResult, reason: Reason) -> DkimOutput {
    DkimOutput {
        result,
        reason,
        domain: Some(sig.domain.clone()),
        selector: Some(sig.selector.clone()),
        algorithm: Some(sig.algorithm),
        identity: Some(sig.identity_or_default()),
        key_bits: None,
        flags: Flags {
            weak_rsa_sha1: sig.algorithm == Algorithm::RsaSha1,
            body_length_limited: sig.body_length.is_some(),
            ..Flags::default()
        },
    }
}

/// The header hash input for `sig`, found at `fields[index]`.
fn header_data(fields: &[HeaderField<'_>], index: usize, sig: &Signature) -> Vec<u8> {
    let mut data = Vec::with_capacity(1024);
    let mut used = vec![false; fields.len()];
    used[index] = true;
    for name in &sig.signed_headers {
        if let Some(i) = (0..fields.len())
            .rev()
            .find(|&i| !used[i] && fields[i].name().eq_ignore_ascii_case(name.as_bytes()))
        {
            used[i] = true;
            canon_header(sig.header_canon, &fields[i], &mut data);
        }
    }
    let field = fields[index];
    let value_offset = field.raw().len() - field.value().len() - line_end_len(field.raw());
    let stripped = without_b_value(field.raw(), value_offset);
    let reparsed = split_header(&stripped);
    if let Some(own) = reparsed.fields.first() {
        canon_header(sig.header_canon, own, &mut data);
        if data.ends_with(b"\r\n") {
            data.truncate(data.len() - 2);
        }
    }
    data
}

fn line_end_len(raw: &[u8]) -> usize {
    if raw.ends_with(b"\r\n") {
        2
    } else if raw.ends_with(b"\n") {
        1
    } else {
        0
    }
}

impl Verifier {
    /// Reads the header block (or a whole message: the body is not read
    /// here) and parses every `DKIM-Signature` field.
    pub fn new(header_block: &[u8], options: VerifyOptions) -> Verifier {
        let header = split_header(header_block);
        let fields = &header.fields;
        let mut v = Verifier {
            options,
            states: Vec::new(),
            hashers: Vec::new(),
            answers: Vec::new(),
        };
        for (index, field) in fields.iter().enumerate() {
            if !field.is("dkim-signature") {
                continue;
            }
            if v.states.len() >= MAX_SIGNATURES {
                v.states.push(State::Done(DkimOutput::bare(
                    DkimResult::PermError,
                    Reason::TooManySignatures,
                )));
                continue;
            }
            let sig = match parse_signature(field.value()) {
                Ok(sig) => sig,
                Err(e) => {
                    v.states.push(State::Done(DkimOutput::bare(
                        DkimResult::PermError,
                        e.into(),
                    )));
                    continue;
                }
            };
            if sig.expiration.is_some_and(|x| x < options.now) {
                v.states.push(State::Done(describe(
                    &sig,
                    DkimResult::PermError,
                    Reason::Expired,
                )));
                continue;
            }
            if sig
                .timestamp
                .is_some_and(|t| t > options.now.saturating_add(options.clock_skew))
            {
                v.states.push(State::Done(describe(
                    &sig,
                    DkimResult::PermError,
                    Reason::FutureTimestamp,
                )));
                continue;
            }
            let data = header_data(fields, index, &sig);
            let key = (sig.body_canon, sig.algorithm.hash(), sig.body_length);
            let hasher = match v
                .hashers
                .iter()
                .position(|(c, h, l, _)| (*c, *h, *l) == key)
            {
                Some(i) => i,
                None => {
                    v.hashers
                        .push((key.0, key.1, key.2, BodyHasher::new(key.0, key.1, key.2)));
                    v.hashers.len() - 1
                }
            };
            v.states
                .push(State::Pending(Box::new(Pending { sig, data, hasher })));
        }
        v
    }

    /// The DNS names whose TXT records are needed, without duplicates.
    pub fn key_queries(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for s in &self.states {
            if let State::Pending(p) = s {
                let name = p.sig.key_name();
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        names
    }

    /// Feeds the next chunk of the body (the bytes after the header block).
    pub fn update_body(&mut self, chunk: &[u8]) {
        for (_, _, _, h) in &mut self.hashers {
            h.update(chunk);
        }
    }

    /// Gives the answer to a key query (names compare case-insensitively,
    /// a trailing dot is ignored).
    pub fn answer(&mut self, name: &str, answer: DnsAnswer) {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.answers.retain(|(n, _)| *n != name);
        self.answers.push((name, answer));
    }

    /// One verdict per signature, in header order; a single
    /// [`DkimResult::None`] when the message has no signature.
    pub fn finish(self) -> Vec<DkimOutput> {
        if self.states.is_empty() {
            return vec![DkimOutput::bare(DkimResult::None, Reason::NoSignature)];
        }
        let hashes: Vec<_> = self
            .hashers
            .into_iter()
            .map(|(_, _, _, h)| h.finish())
            .collect();
        self.states
            .into_iter()
            .map(|s| match s {
                State::Done(out) => out,
                State::Pending(p) => {
                    let answer = self
                        .answers
                        .iter()
                        .find(|(n, _)| *n == p.sig.key_name())
                        .map(|(_, a)| a);
                    check(&self.options, &p, answer, &hashes[p.hasher])
                }
            })
            .collect()
    }
}

fn choose_key(answer: Option<&DnsAnswer>) -> Result<KeyRecord, (DkimResult, Reason)> {
    let records = match answer {
        None => return Err((DkimResult::TempError, Reason::KeyNotAnswered)),
        Some(DnsAnswer::TempError) => return Err((DkimResult::TempError, Reason::DnsTempError)),
        Some(DnsAnswer::NxDomain) => return Err((DkimResult::PermError, Reason::KeyNotFound)),
        Some(DnsAnswer::Txt(records)) => records,
    };
    let mut first_error = None;
    for txt in records.iter().take(MAX_KEY_RECORDS) {
        match parse_key_record(txt) {
            Ok(key) => return Ok(key),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(match first_error {
        Some(e) => (DkimResult::PermError, Reason::KeyRecord(e)),
        None => (DkimResult::PermError, Reason::KeyNotFound),
    })
}

fn check(
    options: &VerifyOptions,
    p: &Pending,
    answer: Option<&DnsAnswer>,
    body: &crate::canon::BodyHash,
) -> DkimOutput {
    let s = &p.sig;
    let mut out = describe(s, DkimResult::Pass, Reason::Verified);
    let mut verdict = |result, reason| {
        out.result = result;
        out.reason = reason;
        out.clone()
    };
    let key = match choose_key(answer) {
        Ok(k) => k,
        Err((r, reason)) => return verdict(r, reason),
    };
    let mut out_flags = out.flags;
    out_flags.testing = key.testing;
    if key.rsa_bits > 0 {
        out.key_bits = Some(key.rsa_bits);
    }
    if s.body_length.is_some() {
        out_flags.unsigned_trailing_content = body.canonical_len > body.hashed_len;
    }
    out.flags = out_flags;
    let mut verdict = |result, reason| {
        out.result = result;
        out.reason = reason;
        out.clone()
    };
    if key.is_revoked() {
        return verdict(DkimResult::PermError, Reason::KeyRevoked);
    }
    if key.key_type != s.algorithm.key_type() {
        return verdict(DkimResult::PermError, Reason::KeyTypeMismatch);
    }
    if key
        .hashes
        .as_ref()
        .is_some_and(|h| !h.contains(&s.algorithm.hash()))
    {
        return verdict(DkimResult::PermError, Reason::HashNotAllowed);
    }
    if !key.email_service {
        return verdict(DkimResult::PermError, Reason::ServiceNotEmail);
    }
    if key.strict && s.identity_domain() != s.domain {
        return verdict(DkimResult::PermError, Reason::StrictIdentity);
    }
    if key.key_type == crate::signature::KeyType::Rsa && key.rsa_bits < options.min_rsa_bits {
        return verdict(DkimResult::PermError, Reason::KeyTooShort(key.rsa_bits));
    }
    if s.body_length.is_some_and(|l| l > body.canonical_len) {
        return verdict(DkimResult::Fail, Reason::BodyLengthExceeded);
    }
    if body.digest != s.body_hash {
        return verdict(DkimResult::Fail, Reason::BodyHashMismatch);
    }
    let ok = match s.algorithm {
        Algorithm::RsaSha1 | Algorithm::RsaSha256 => {
            let params = if s.algorithm == Algorithm::RsaSha1 {
                &sig::RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY
            } else {
                &sig::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY
            };
            sig::UnparsedPublicKey::new(params, &key.public_key)
                .verify(&p.data, &s.signature)
                .is_ok()
        }
        Algorithm::Ed25519Sha256 => {
            let hash = digest::digest(&digest::SHA256, &p.data);
            sig::UnparsedPublicKey::new(&sig::ED25519, &key.public_key)
                .verify(hash.as_ref(), &s.signature)
                .is_ok()
        }
    };
    if !ok {
        return verdict(DkimResult::Fail, Reason::SignatureMismatch);
    }
    if s.algorithm == Algorithm::RsaSha1 && !options.accept_rsa_sha1 {
        return verdict(DkimResult::Policy, Reason::WeakAlgorithm);
    }
    verdict(DkimResult::Pass, Reason::Verified)
}

/// Verifies a whole message in one call, asking `dns` for each key record.
pub fn verify_message(
    message: &[u8],
    options: VerifyOptions,
    mut dns: impl FnMut(&str) -> DnsAnswer,
) -> Vec<DkimOutput> {
    let header = split_header(message);
    let mut v = Verifier::new(&message[..header.body_offset], options);
    v.update_body(&message[header.body_offset..]);
    for name in v.key_queries() {
        let answer = dns(&name);
        v.answer(&name, answer);
    }
    v.finish()
}

/// The `b=` value of each DKIM-Signature field, in header order (the order
/// of [`verify_message`]'s verdicts), for the `header.b` property of
/// Authentication-Results (RFC 6008).
pub fn signature_b_values(message: &[u8]) -> Vec<Option<String>> {
    let header = crate::header::split_header(message);
    header
        .fields
        .iter()
        .filter(|f| f.is("DKIM-Signature"))
        .map(|f| {
            crate::tags::parse_tags(f.value()).ok().and_then(|tags| {
                tags.iter()
                    .find(|t| t.name == "b")
                    .map(|t| String::from_utf8_lossy(t.value).into_owned())
            })
        })
        .collect()
}
