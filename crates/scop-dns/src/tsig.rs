//! TSIG (RFC 8945): shared-secret message authentication.
//!
//! The MAC is computed on the exact bytes of the message without its TSIG
//! record (RFC 8945 4.3.3), so this module works on bytes, never on a
//! re-encoded message. [`Chain`] carries the previous MAC from request to
//! response and from one message of a zone transfer to the next
//! (RFC 8945 5.3.1).
//!
//! Key files use BIND's syntax, which `nsupdate -k` and `named` also read:
//!
//! ```text
//! key "dkim-signer." {
//!     algorithm hmac-sha256;
//!     secret "base64...";
//! };
//! ```

use crate::Error;
use crate::wire::{self, RawTsig};
use aws_lc_rs::{constant_time, hmac};
use hickory_proto::rr::Name;
use std::collections::BTreeMap;
use std::fmt;

/// Allowed clock difference when the request does not say (seconds).
pub const DEFAULT_FUDGE: u16 = 300;
/// Largest key file read.
pub const MAX_KEY_FILE_BYTES: usize = 64 * 1024;
/// Shortest secret accepted (bytes); shorter HMAC keys are guessable.
pub const MIN_SECRET_BYTES: usize = 16;

/// TSIG error codes (RFC 8945 3, the IANA "TSIG Error values").
pub mod error_code {
    /// The MAC did not verify.
    pub const BADSIG: u16 = 16;
    /// The key is unknown, or its algorithm differs.
    pub const BADKEY: u16 = 17;
    /// The signing time is outside the fudge window.
    pub const BADTIME: u16 = 18;
    /// The MAC was truncated below what we accept.
    pub const BADTRUNC: u16 = 22;
}

/// The HMAC algorithms we implement (RFC 8945 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `hmac-sha256` (mandatory to implement).
    HmacSha256,
    /// `hmac-sha384`.
    HmacSha384,
    /// `hmac-sha512`.
    HmacSha512,
}

impl Algorithm {
    /// The algorithm's name as it appears in BIND key files.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::HmacSha256 => "hmac-sha256",
            Algorithm::HmacSha384 => "hmac-sha384",
            Algorithm::HmacSha512 => "hmac-sha512",
        }
    }

    /// Parses `hmac-sha256`, `hmac-sha384`, `hmac-sha512` (any case, with
    /// or without a trailing dot).
    pub fn from_str_name(name: &str) -> Option<Self> {
        match name.trim_end_matches('.').to_ascii_lowercase().as_str() {
            "hmac-sha256" => Some(Algorithm::HmacSha256),
            "hmac-sha384" => Some(Algorithm::HmacSha384),
            "hmac-sha512" => Some(Algorithm::HmacSha512),
            _ => None,
        }
    }

    fn wire_name(self) -> Name {
        let mut name = Name::from_ascii(self.as_str()).unwrap_or_default();
        name.set_fqdn(true);
        name
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            Algorithm::HmacSha256 => hmac::HMAC_SHA256,
            Algorithm::HmacSha384 => hmac::HMAC_SHA384,
            Algorithm::HmacSha512 => hmac::HMAC_SHA512,
        }
    }

    /// Length of the full MAC in bytes.
    pub fn mac_len(self) -> usize {
        match self {
            Algorithm::HmacSha256 => 32,
            Algorithm::HmacSha384 => 48,
            Algorithm::HmacSha512 => 64,
        }
    }
}

/// A TSIG key: name, algorithm, secret.
#[derive(Clone)]
pub struct Key {
    name: Name,
    algorithm: Algorithm,
    secret: Vec<u8>,
    hmac: hmac::Key,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("name", &self.name.to_ascii())
            .field("algorithm", &self.algorithm)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Parses a key or zone name given by a user (absolute, lower case).
pub fn parse_name(text: &str) -> Result<Name, Error> {
    let mut name = Name::from_ascii(text.trim())
        .map_err(|e| Error::ApiMisuse(format!("bad name {text:?}: {e}")))?;
    name.set_fqdn(true);
    Ok(name.to_lowercase())
}

impl Key {
    /// A key from its parts; the secret must be at least
    /// [`MIN_SECRET_BYTES`] long.
    pub fn new(name: &str, algorithm: Algorithm, secret: Vec<u8>) -> Result<Self, Error> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(Error::BadKey(format!(
                "secret of {name} is {} bytes; at least {MIN_SECRET_BYTES} are required",
                secret.len()
            )));
        }
        let name = parse_name(name).map_err(|e| Error::BadKey(e.to_string()))?;
        let hmac = hmac::Key::new(algorithm.hmac(), &secret);
        Ok(Key {
            name,
            algorithm,
            secret,
            hmac,
        })
    }

    /// A key from `ALGORITHM:NAME:BASE64` (the `-y` syntax of nsupdate and dig).
    pub fn from_spec(spec: &str) -> Result<Self, Error> {
        let mut parts = spec.splitn(3, ':');
        let (Some(alg), Some(name), Some(secret)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(Error::BadKey("expected ALGORITHM:NAME:BASE64".into()));
        };
        let algorithm = Algorithm::from_str_name(alg)
            .ok_or_else(|| Error::BadKey(format!("unknown algorithm {alg:?}")))?;
        Key::new(name, algorithm, decode_base64(secret)?)
    }

    /// The key's name (absolute, lower case).
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The secret in base64.
    pub fn secret_base64(&self) -> String {
        data_encoding::BASE64.encode(&self.secret)
    }

    /// The `ALGORITHM:NAME:BASE64` form (`nsupdate -y`, `dig -y`).
    pub fn to_spec(&self) -> String {
        format!(
            "{}:{}:{}",
            self.algorithm.as_str(),
            self.name.to_ascii(),
            self.secret_base64()
        )
    }

    /// The key in BIND's key-file syntax.
    pub fn to_bind(&self) -> String {
        format!(
            "key \"{}\" {{\n\talgorithm {};\n\tsecret \"{}\";\n}};\n",
            self.name.to_ascii(),
            self.algorithm.as_str(),
            self.secret_base64()
        )
    }

    /// Parses every `key "NAME" { algorithm A; secret "B64"; };` block of a
    /// BIND key file (`#`, `//` and `/* */` comments allowed).
    pub fn parse_bind(text: &str) -> Result<Vec<Key>, Error> {
        if text.len() > MAX_KEY_FILE_BYTES {
            return Err(Error::BadKey("key file too large".into()));
        }
        let tokens = tokenize(text)?;
        let mut keys = Vec::new();
        let mut i = 0;
        let bad = |what: &str| Error::BadKey(format!("key file: {what}"));
        while i < tokens.len() {
            if !tokens[i].eq_ignore_ascii_case("key") {
                return Err(bad(&format!("expected `key`, found {:?}", tokens[i])));
            }
            let name = tokens.get(i + 1).ok_or_else(|| bad("key without a name"))?;
            if tokens.get(i + 2).map(String::as_str) != Some("{") {
                return Err(bad("expected `{` after the key name"));
            }
            i += 3;
            let (mut algorithm, mut secret) = (None, None);
            while tokens.get(i).map(String::as_str) != Some("}") {
                let field = tokens.get(i).ok_or_else(|| bad("unterminated key block"))?;
                let value = tokens
                    .get(i + 1)
                    .ok_or_else(|| bad("field without a value"))?;
                if tokens.get(i + 2).map(String::as_str) != Some(";") {
                    return Err(bad("expected `;` after a field"));
                }
                match field.to_ascii_lowercase().as_str() {
                    "algorithm" => {
                        algorithm = Some(
                            Algorithm::from_str_name(value)
                                .ok_or_else(|| bad(&format!("unknown algorithm {value:?}")))?,
                        )
                    }
                    "secret" => secret = Some(decode_base64(value)?),
                    other => return Err(bad(&format!("unknown field {other:?}"))),
                }
                i += 3;
            }
            i += 1;
            if tokens.get(i).map(String::as_str) == Some(";") {
                i += 1;
            }
            let algorithm = algorithm.ok_or_else(|| bad("key without an algorithm"))?;
            let secret = secret.ok_or_else(|| bad("key without a secret"))?;
            keys.push(Key::new(name, algorithm, secret)?);
        }
        if keys.is_empty() {
            return Err(bad("no key found"));
        }
        Ok(keys)
    }
}

fn decode_base64(text: &str) -> Result<Vec<u8>, Error> {
    let clean: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    data_encoding::BASE64
        .decode(clean.as_bytes())
        .map_err(|e| Error::BadKey(format!("secret is not base64: {e}")))
}

fn tokenize(text: &str) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                loop {
                    let Some(c) = chars.next() else {
                        return Err(Error::BadKey("unterminated comment".into()));
                    };
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
            }
            '{' | '}' | ';' => out.push(c.to_string()),
            '"' => {
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some(c) => s.push(c),
                        None => return Err(Error::BadKey("unterminated string".into())),
                    }
                }
                out.push(s);
            }
            c => {
                let mut s = c.to_string();
                while let Some(&n) = chars.peek() {
                    if n.is_whitespace() || matches!(n, '{' | '}' | ';' | '"') {
                        break;
                    }
                    s.push(n);
                    chars.next();
                }
                out.push(s);
            }
        }
    }
    Ok(out)
}

/// The keys a server knows, by name.
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    keys: BTreeMap<Name, Key>,
}

impl KeyRing {
    /// Adds (or replaces) a key.
    pub fn insert(&mut self, key: Key) {
        self.keys.insert(key.name.clone(), key);
    }

    /// The key of that name.
    pub fn get(&self, name: &Name) -> Option<&Key> {
        self.keys.get(&name.to_lowercase())
    }

    /// Every key.
    pub fn iter(&self) -> impl Iterator<Item = &Key> {
        self.keys.values()
    }

    /// Whether there is no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Which TSIG variables the MAC covers (RFC 8945 4.3.3 and 5.3.1).
enum Vars<'a> {
    Full { error: u16, other: &'a [u8] },
    TimersOnly,
}

fn compute_mac(
    key: &Key,
    prior: Option<&[u8]>,
    message: &[u8],
    time: u64,
    fudge: u16,
    vars: Vars<'_>,
) -> Vec<u8> {
    let mut ctx = hmac::Context::with_key(&key.hmac);
    if let Some(prior) = prior {
        ctx.update(&(prior.len() as u16).to_be_bytes());
        ctx.update(prior);
    }
    ctx.update(message);
    let mut v = Vec::with_capacity(128);
    if let Vars::Full { .. } = vars {
        wire::push_name(&mut v, &key.name);
        v.extend_from_slice(&255u16.to_be_bytes());
        v.extend_from_slice(&0u32.to_be_bytes());
        wire::push_name(&mut v, &key.algorithm.wire_name());
    }
    v.extend_from_slice(&time.to_be_bytes()[2..]);
    v.extend_from_slice(&fudge.to_be_bytes());
    if let Vars::Full { error, other } = vars {
        v.extend_from_slice(&error.to_be_bytes());
        v.extend_from_slice(&(other.len() as u16).to_be_bytes());
        v.extend_from_slice(other);
    }
    ctx.update(&v);
    ctx.sign().as_ref().to_vec()
}

/// Appends a TSIG record to `message` and increments ARCOUNT.
#[allow(clippy::too_many_arguments)]
fn append_tsig(
    message: &mut Vec<u8>,
    key_name: &Name,
    algorithm: &Name,
    time: u64,
    fudge: u16,
    mac: &[u8],
    error: u16,
    other: &[u8],
) {
    let original_id = wire::u16_at(message, 0).unwrap_or(0);
    wire::push_name(message, key_name);
    message.extend_from_slice(&wire::TYPE_TSIG.to_be_bytes());
    message.extend_from_slice(&255u16.to_be_bytes());
    message.extend_from_slice(&0u32.to_be_bytes());
    let mut rdata = Vec::with_capacity(64 + mac.len());
    wire::push_name(&mut rdata, algorithm);
    rdata.extend_from_slice(&time.to_be_bytes()[2..]);
    rdata.extend_from_slice(&fudge.to_be_bytes());
    rdata.extend_from_slice(&(mac.len() as u16).to_be_bytes());
    rdata.extend_from_slice(mac);
    rdata.extend_from_slice(&original_id.to_be_bytes());
    rdata.extend_from_slice(&error.to_be_bytes());
    rdata.extend_from_slice(&(other.len() as u16).to_be_bytes());
    rdata.extend_from_slice(other);
    message.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    message.extend_from_slice(&rdata);
    if message.len() >= wire::HEADER {
        let ar = wire::u16_at(message, 10).unwrap_or(0).saturating_add(1);
        message[10..12].copy_from_slice(&ar.to_be_bytes());
    }
}

/// Bytes a TSIG record adds to a message signed with `key`.
pub fn signature_len(key: &Key) -> usize {
    let name = key.name.len() + 2;
    let alg = key.algorithm.as_str().len() + 2;
    name + 10 + alg + 16 + key.algorithm.mac_len() + 6
}

/// A MAC chain: signs or verifies a request and the responses that follow
/// it (RFC 8945 5.3.1: each message covers the previous MAC).
#[derive(Debug, Clone)]
pub struct Chain {
    key: Key,
    prior: Option<Vec<u8>>,
    /// Messages signed or verified after the first response.
    answered: usize,
}

/// Why a TSIG-signed message was not accepted (RFC 8945 5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Malformed TSIG record: FORMERR.
    FormErr,
    /// Unknown key or algorithm mismatch: NOTAUTH + BADKEY, unsigned.
    BadKey,
    /// MAC mismatch: NOTAUTH + BADSIG, unsigned.
    BadSig,
    /// MAC shorter than allowed: NOTAUTH + BADTRUNC, unsigned.
    BadTrunc,
    /// Outside the time window: NOTAUTH + BADTIME, signed.
    BadTime,
}

impl Failure {
    /// The TSIG error code sent back.
    pub fn code(self) -> u16 {
        match self {
            Failure::FormErr => 0,
            Failure::BadKey => error_code::BADKEY,
            Failure::BadSig => error_code::BADSIG,
            Failure::BadTrunc => error_code::BADTRUNC,
            Failure::BadTime => error_code::BADTIME,
        }
    }
}

/// The outcome of checking a request's TSIG record.
#[derive(Debug)]
pub(crate) enum Checked {
    /// No TSIG record.
    Unsigned,
    /// Valid: sign the responses with this chain.
    Valid(Chain),
    /// Invalid. `chain` is set for BADTIME (its response is signed).
    Invalid {
        failure: Failure,
        tsig: Box<RawTsig>,
        chain: Option<Chain>,
    },
}

impl Chain {
    /// A chain that will sign a request with `key`.
    pub fn new(key: Key) -> Self {
        Chain {
            key,
            prior: None,
            answered: 0,
        }
    }

    /// The key of this chain.
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// Signs a request (client side) at `now` (unix seconds).
    pub fn sign_request(&mut self, message: &mut Vec<u8>, now: u64) {
        let mac = compute_mac(
            &self.key,
            None,
            message,
            now,
            DEFAULT_FUDGE,
            Vars::Full {
                error: 0,
                other: &[],
            },
        );
        let alg = self.key.algorithm.wire_name();
        append_tsig(
            message,
            &self.key.name,
            &alg,
            now,
            DEFAULT_FUDGE,
            &mac,
            0,
            &[],
        );
        self.prior = Some(mac);
        self.answered = 0;
    }

    /// Signs a response, or the next message of a multi-message response.
    pub fn sign_response(&mut self, message: &mut Vec<u8>, now: u64) {
        self.sign_response_with(message, now, now, 0, &[]);
    }

    fn sign_response_with(
        &mut self,
        message: &mut Vec<u8>,
        time: u64,
        _now: u64,
        error: u16,
        other: &[u8],
    ) {
        let vars = if self.answered == 0 {
            Vars::Full { error, other }
        } else {
            Vars::TimersOnly
        };
        let mac = compute_mac(
            &self.key,
            self.prior.as_deref(),
            message,
            time,
            DEFAULT_FUDGE,
            vars,
        );
        let alg = self.key.algorithm.wire_name();
        append_tsig(
            message,
            &self.key.name,
            &alg,
            time,
            DEFAULT_FUDGE,
            &mac,
            error,
            other,
        );
        self.prior = Some(mac);
        self.answered += 1;
    }

    /// Verifies a response (client side) to the request this chain signed.
    /// Returns the response's TSIG error code (0 when none).
    pub fn verify_response(&mut self, message: &[u8], now: u64) -> Result<u16, Error> {
        let split =
            wire::split_tsig(message).ok_or_else(|| Error::BadReply("malformed message".into()))?;
        let Some(tsig) = split.tsig else {
            return Err(Error::BadReply("the reply is not TSIG-signed".into()));
        };
        if tsig.key_name != self.key.name {
            return Err(Error::BadReply(
                "the reply is signed with another key".into(),
            ));
        }
        if tsig.mac.is_empty() && tsig.error != 0 {
            // An unsigned error (BADKEY, BADSIG): nothing to verify.
            return Ok(tsig.error);
        }
        let vars = if self.answered == 0 {
            Vars::Full {
                error: tsig.error,
                other: &tsig.other,
            }
        } else {
            Vars::TimersOnly
        };
        let mac = compute_mac(
            &self.key,
            self.prior.as_deref(),
            &split.unsigned,
            tsig.time_signed,
            tsig.fudge,
            vars,
        );
        if constant_time::verify_slices_are_equal(&mac, &tsig.mac).is_err() {
            return Err(Error::BadReply(
                "the reply's TSIG MAC does not verify".into(),
            ));
        }
        if tsig.error == 0 && now.abs_diff(tsig.time_signed) > u64::from(tsig.fudge) {
            return Err(Error::BadReply(
                "the reply's TSIG time is out of window".into(),
            ));
        }
        self.prior = Some(mac);
        self.answered += 1;
        Ok(tsig.error)
    }
}

/// Checks the TSIG record of a request (server side, RFC 8945 5.2).
/// `split` is the request cut at its TSIG record.
pub(crate) fn check_request(keys: &KeyRing, split: &wire::Split, now: u64) -> Checked {
    let Some(tsig) = &split.tsig else {
        return Checked::Unsigned;
    };
    let invalid = |failure, chain| Checked::Invalid {
        failure,
        tsig: Box::new(tsig.clone()),
        chain,
    };
    if tsig.class != 255 || tsig.ttl != 0 {
        return invalid(Failure::FormErr, None);
    }
    let Some(key) = keys.get(&tsig.key_name) else {
        return invalid(Failure::BadKey, None);
    };
    if Algorithm::from_str_name(&tsig.algorithm.to_ascii()) != Some(key.algorithm) {
        return invalid(Failure::BadKey, None);
    }
    let full = key.algorithm.mac_len();
    // RFC 8945 5.2.2.1: a MAC longer than the hash, or shorter than half
    // of it or 10 bytes, is a FORMERR; we also refuse any truncation.
    if tsig.mac.len() > full || tsig.mac.len() < (full / 2).max(10) {
        return invalid(Failure::FormErr, None);
    }
    let mac = compute_mac(
        key,
        None,
        &split.unsigned,
        tsig.time_signed,
        tsig.fudge,
        Vars::Full {
            error: tsig.error,
            other: &tsig.other,
        },
    );
    if constant_time::verify_slices_are_equal(&mac[..tsig.mac.len()], &tsig.mac).is_err() {
        return invalid(Failure::BadSig, None);
    }
    if tsig.mac.len() < full {
        return invalid(Failure::BadTrunc, None);
    }
    let chain = Chain {
        key: key.clone(),
        prior: Some(mac),
        answered: 0,
    };
    if now.abs_diff(tsig.time_signed) > u64::from(tsig.fudge) {
        return invalid(Failure::BadTime, Some(chain));
    }
    Checked::Valid(chain)
}

/// Appends the TSIG record of an error response (RFC 8945 5.2.2-5.2.3):
/// unsigned (empty MAC) for BADKEY/BADSIG/BADTRUNC, signed with the
/// request's time and our clock in Other Data for BADTIME.
pub(crate) fn append_error(
    message: &mut Vec<u8>,
    failure: Failure,
    tsig: &RawTsig,
    chain: Option<Chain>,
    now: u64,
) {
    match chain {
        Some(mut chain) if failure == Failure::BadTime => {
            let other = now.to_be_bytes()[2..].to_vec();
            chain.sign_response_with(message, tsig.time_signed, now, failure.code(), &other);
        }
        _ => append_tsig(
            message,
            &tsig.key_name,
            &tsig.algorithm,
            tsig.time_signed,
            tsig.fudge,
            &[],
            failure.code(),
            &[],
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        Key::new("k.", Algorithm::HmacSha256, vec![7; 32]).unwrap()
    }

    fn ring() -> KeyRing {
        let mut r = KeyRing::default();
        r.insert(key());
        r
    }

    fn query() -> Vec<u8> {
        // id 0x1234, one question "a." A IN
        vec![
            0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 0, 0, 1, 0, 1,
        ]
    }

    #[test]
    fn bind_key_file_round_trips() {
        let k = key();
        let parsed = Key::parse_bind(&k.to_bind()).unwrap();
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].to_spec(), k.to_spec());
        let text = "# c\nkey \"x.\" { algorithm HMAC-SHA512; secret \"AAAAAAAAAAAAAAAAAAAAAAAA\"; }; // end\n";
        let parsed = Key::parse_bind(text).unwrap();
        assert_eq!(parsed[0].algorithm(), Algorithm::HmacSha512);
        assert!(Key::parse_bind("key \"x\" { algorithm md5; secret \"AA==\"; };").is_err());
        assert!(Key::parse_bind("").is_err());
    }

    #[test]
    fn short_secret_refused() {
        assert!(Key::new("k.", Algorithm::HmacSha256, vec![1; 8]).is_err());
    }

    #[test]
    fn signed_request_verifies_and_tamper_fails() {
        let mut msg = query();
        Chain::new(key()).sign_request(&mut msg, 1000);
        let split = wire::split_tsig(&msg).unwrap();
        assert_eq!(split.unsigned, query());
        assert!(matches!(
            check_request(&ring(), &split, 1000),
            Checked::Valid(_)
        ));
        // Outside the window.
        assert!(matches!(
            check_request(&ring(), &split, 1000 + 301),
            Checked::Invalid {
                failure: Failure::BadTime,
                chain: Some(_),
                ..
            }
        ));
        // One flipped bit in the question.
        let mut bad = msg.clone();
        bad[13] ^= 1;
        let split = wire::split_tsig(&bad).unwrap();
        assert!(matches!(
            check_request(&ring(), &split, 1000),
            Checked::Invalid {
                failure: Failure::BadSig,
                ..
            }
        ));
        // Another secret under the same name.
        let mut other = KeyRing::default();
        other.insert(Key::new("k.", Algorithm::HmacSha256, vec![8; 32]).unwrap());
        let split = wire::split_tsig(&msg).unwrap();
        assert!(matches!(
            check_request(&other, &split, 1000),
            Checked::Invalid {
                failure: Failure::BadSig,
                ..
            }
        ));
        // Unknown key / other algorithm.
        let mut other = KeyRing::default();
        other.insert(Key::new("k.", Algorithm::HmacSha512, vec![7; 32]).unwrap());
        assert!(matches!(
            check_request(&other, &split, 1000),
            Checked::Invalid {
                failure: Failure::BadKey,
                ..
            }
        ));
    }

    #[test]
    fn response_chain_verifies_across_messages() {
        let mut client = Chain::new(key());
        let mut req = query();
        client.sign_request(&mut req, 50);
        let Checked::Valid(mut server) =
            check_request(&ring(), &wire::split_tsig(&req).unwrap(), 50)
        else {
            panic!("request must verify")
        };
        let mut msgs = Vec::new();
        for i in 0..3u8 {
            let mut m = query();
            m[2] = 0x80;
            m.push(i); // distinct bytes (not a valid message; MAC does not care)
            m.truncate(m.len() - 1);
            server.sign_response(&mut m, 51);
            msgs.push(m);
        }
        for m in &msgs {
            assert_eq!(client.verify_response(m, 51).unwrap(), 0);
        }
        // Replaying the first response again breaks the chain.
        assert!(client.verify_response(&msgs[0], 51).is_err());
    }
}
