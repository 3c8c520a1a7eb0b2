//! SASL for SMTP AUTH (RFC 4954): PLAIN (RFC 4616), LOGIN
//! (draft-murchison-sasl-login) and SCRAM-SHA-256 (RFC 7677, RFC 5802),
//! server and client sides. Cryptography comes from the caller through
//! [`ScramCrypto`]; nonces are passed in.

use std::fmt;

use crate::codec::{base64_decode, base64_encode};
use crate::error::{Error, InvalidInput, PeerMisbehaved};

/// A SASL mechanism this crate implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// PLAIN (RFC 4616).
    Plain,
    /// LOGIN (draft-murchison-sasl-login).
    Login,
    /// SCRAM-SHA-256 (RFC 7677).
    ScramSha256,
}

impl Mechanism {
    /// The registered name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
        }
    }

    /// Parse a (case-insensitive) name.
    pub fn from_name(name: &str) -> Option<Self> {
        [Mechanism::Plain, Mechanism::Login, Mechanism::ScramSha256]
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }
}

/// SHA-256, HMAC-SHA-256 and PBKDF2-HMAC-SHA-256 as provided by the caller
/// (e.g. aws-lc-rs in the compartments). RFC 5802 3 `H`, `HMAC`, `Hi`.
pub trait ScramCrypto: fmt::Debug + Send + Sync {
    /// SHA-256 of `data`.
    fn sha256(&self, data: &[u8]) -> [u8; 32];
    /// HMAC-SHA-256 of `data` under `key`.
    fn hmac_sha256(&self, key: &[u8], data: &[u8]) -> [u8; 32];
    /// `Hi(password, salt, i)` = PBKDF2-HMAC-SHA-256 with one output block
    /// (RFC 5802 2.2). The default derives it from [`ScramCrypto::hmac_sha256`].
    fn pbkdf2_hmac_sha256(&self, password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
        let mut s = salt.to_vec();
        s.extend_from_slice(&1u32.to_be_bytes());
        let mut u = self.hmac_sha256(password, &s);
        let mut out = u;
        for _ in 1..iterations {
            u = self.hmac_sha256(password, &u);
            for (o, x) in out.iter_mut().zip(u.iter()) {
                *o ^= x;
            }
        }
        out
    }
}

/// What a server stores for SCRAM (RFC 5802 3): never the password.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredentials {
    /// Salt.
    pub salt: Vec<u8>,
    /// Iteration count (RFC 7677 asks for at least 4096).
    pub iterations: u32,
    /// `H(ClientKey)`.
    pub stored_key: [u8; 32],
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: [u8; 32],
}

impl fmt::Debug for ScramCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramCredentials")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramCredentials {
    /// Derive stored credentials from a password (RFC 5802 3).
    pub fn derive(crypto: &dyn ScramCrypto, password: &str, salt: &[u8], iterations: u32) -> Self {
        let salted = crypto.pbkdf2_hmac_sha256(password.as_bytes(), salt, iterations);
        let client_key = crypto.hmac_sha256(&salted, b"Client Key");
        ScramCredentials {
            salt: salt.to_vec(),
            iterations,
            stored_key: crypto.sha256(&client_key),
            server_key: crypto.hmac_sha256(&salted, b"Server Key"),
        }
    }
}

/// Decoded PLAIN message `[authzid] NUL authcid NUL passwd` (RFC 4616 2).
pub(crate) fn decode_plain(msg: &[u8]) -> Result<(String, String, String), Error> {
    let parts: Vec<&[u8]> = msg.split(|&b| b == 0).collect();
    if parts.len() != 3 || parts[1].is_empty() || parts[2].is_empty() {
        return Err(InvalidInput::Sasl.into());
    }
    let s = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| Error::from(InvalidInput::Sasl));
    Ok((s(parts[0])?, s(parts[1])?, s(parts[2])?))
}

/// Encode a PLAIN message.
pub(crate) fn encode_plain(authzid: &str, user: &str, password: &str) -> String {
    let mut v = Vec::new();
    v.extend_from_slice(authzid.as_bytes());
    v.push(0);
    v.extend_from_slice(user.as_bytes());
    v.push(0);
    v.extend_from_slice(password.as_bytes());
    base64_encode(&v)
}

/// Decode one AUTH continuation line: `*` cancels (RFC 4954 4), `=` is
/// empty, otherwise base64.
pub(crate) fn decode_response(line: &[u8]) -> Result<Vec<u8>, Error> {
    match line {
        b"*" => Err(PeerMisbehaved::AuthCancelled.into()),
        b"=" => Ok(Vec::new()),
        _ => base64_decode(line),
    }
}

fn sasl_name_escape(s: &str) -> String {
    s.replace('=', "=3D").replace(',', "=2C")
}

fn sasl_name_unescape(s: &str) -> Result<String, Error> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let esc = rest.get(i..i + 3).ok_or(InvalidInput::Sasl)?;
        match esc {
            "=2C" => out.push(','),
            "=3D" => out.push('='),
            _ => return Err(InvalidInput::Sasl.into()),
        }
        rest = &rest[i + 3..];
    }
    if rest.contains(',') {
        return Err(InvalidInput::Sasl.into());
    }
    out.push_str(rest);
    Ok(out)
}

pub(crate) fn valid_nonce(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// Server side, after the client-first message (RFC 5802 5.1).
#[derive(Debug, Clone)]
pub struct ScramServerStart {
    /// The authentication identity (unescaped).
    pub username: String,
    /// The authorization identity, if any.
    pub authzid: Option<String>,
    client_first_bare: String,
    gs2_header: String,
    client_nonce: String,
}

impl ScramServerStart {
    /// Parse the client-first message (RFC 5802 7 `client-first-message`).
    /// Channel binding is not supported: `p=` is refused.
    pub fn parse(msg: &[u8]) -> Result<Self, Error> {
        let msg = std::str::from_utf8(msg).map_err(|_| InvalidInput::Sasl)?;
        let bad = || Error::from(InvalidInput::Sasl);
        let (cb, rest) = msg.split_once(',').ok_or_else(bad)?;
        if cb != "n" && cb != "y" {
            return Err(bad());
        }
        let (authz, bare) = rest.split_once(',').ok_or_else(bad)?;
        let authzid = match authz {
            "" => None,
            a => Some(sasl_name_unescape(a.strip_prefix("a=").ok_or_else(bad)?)?),
        };
        let gs2_header = format!("{cb},{authz},");
        let mut it = bare.split(',');
        let user = it
            .next()
            .and_then(|u| u.strip_prefix("n="))
            .ok_or_else(bad)?;
        let nonce = it
            .next()
            .and_then(|r| r.strip_prefix("r="))
            .ok_or_else(bad)?;
        if user.is_empty() || !valid_nonce(nonce) || bare.starts_with("m=") {
            return Err(bad());
        }
        Ok(ScramServerStart {
            username: sasl_name_unescape(user)?,
            authzid,
            client_first_bare: bare.to_string(),
            gs2_header,
            client_nonce: nonce.to_string(),
        })
    }

    /// Build the server-first message with the stored credentials and a
    /// fresh server nonce from the caller.
    pub fn server_first(
        self,
        creds: ScramCredentials,
        server_nonce: &str,
    ) -> Result<(String, ScramServerWait), Error> {
        if !valid_nonce(server_nonce) {
            return Err(crate::error::ApiMisuse::InvalidNonce.into());
        }
        let nonce = format!("{}{}", self.client_nonce, server_nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            base64_encode(&creds.salt),
            creds.iterations
        );
        Ok((
            server_first.clone(),
            ScramServerWait {
                start: self,
                creds,
                nonce,
                server_first,
            },
        ))
    }
}

/// Server side, waiting for the client-final message.
#[derive(Debug, Clone)]
pub struct ScramServerWait {
    start: ScramServerStart,
    creds: ScramCredentials,
    nonce: String,
    server_first: String,
}

impl ScramServerWait {
    /// The username being authenticated.
    pub fn username(&self) -> &str {
        &self.start.username
    }

    /// Verify the client-final message; on success returns the server-final
    /// message `v=...` (RFC 5802 5.1).
    pub fn client_final(&self, crypto: &dyn ScramCrypto, msg: &[u8]) -> Result<String, Error> {
        let msg = std::str::from_utf8(msg).map_err(|_| InvalidInput::Sasl)?;
        let bad = || Error::from(InvalidInput::Sasl);
        let (without_proof, proof) = msg.rsplit_once(",p=").ok_or_else(bad)?;
        let mut it = without_proof.split(',');
        let cbind = it
            .next()
            .and_then(|c| c.strip_prefix("c="))
            .ok_or_else(bad)?;
        let nonce = it
            .next()
            .and_then(|r| r.strip_prefix("r="))
            .ok_or_else(bad)?;
        if base64_decode(cbind.as_bytes())? != self.start.gs2_header.as_bytes() {
            return Err(PeerMisbehaved::AuthFailed.into());
        }
        if nonce != self.nonce {
            return Err(PeerMisbehaved::AuthFailed.into());
        }
        let proof = base64_decode(proof.as_bytes())?;
        if proof.len() != 32 {
            return Err(PeerMisbehaved::AuthFailed.into());
        }
        let auth_message = format!(
            "{},{},{}",
            self.start.client_first_bare, self.server_first, without_proof
        );
        let sig = crypto.hmac_sha256(&self.creds.stored_key, auth_message.as_bytes());
        let mut client_key = [0u8; 32];
        for i in 0..32 {
            client_key[i] = proof[i] ^ sig[i];
        }
        let stored = crypto.sha256(&client_key);
        // Constant-time comparison.
        let diff = stored
            .iter()
            .zip(self.creds.stored_key.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 {
            return Err(PeerMisbehaved::AuthFailed.into());
        }
        let server_sig = crypto.hmac_sha256(&self.creds.server_key, auth_message.as_bytes());
        Ok(format!("v={}", base64_encode(&server_sig)))
    }
}

/// Client side of SCRAM-SHA-256 (RFC 5802 5).
#[derive(Debug, Clone)]
pub struct ScramClient {
    password: String,
    client_first_bare: String,
    client_nonce: String,
    server_signature: Option<[u8; 32]>,
}

impl ScramClient {
    /// Start with a username, password and a fresh client nonce; returns the
    /// client and its client-first message.
    pub fn new(username: &str, password: &str, client_nonce: &str) -> (Self, String) {
        let bare = format!("n={},r={client_nonce}", sasl_name_escape(username));
        (
            ScramClient {
                password: password.to_string(),
                client_first_bare: bare.clone(),
                client_nonce: client_nonce.to_string(),
                server_signature: None,
            },
            format!("n,,{bare}"),
        )
    }

    /// Process the server-first message, returning the client-final message.
    pub fn server_first(&mut self, crypto: &dyn ScramCrypto, msg: &[u8]) -> Result<String, Error> {
        let msg = std::str::from_utf8(msg).map_err(|_| InvalidInput::Sasl)?;
        let bad = || Error::from(InvalidInput::Sasl);
        let mut it = msg.split(',');
        let nonce = it
            .next()
            .and_then(|r| r.strip_prefix("r="))
            .ok_or_else(bad)?;
        let salt = it
            .next()
            .and_then(|s| s.strip_prefix("s="))
            .ok_or_else(bad)?;
        let iter = it
            .next()
            .and_then(|i| i.strip_prefix("i="))
            .ok_or_else(bad)?;
        if !nonce.starts_with(&self.client_nonce)
            || nonce.len() == self.client_nonce.len()
            || !valid_nonce(nonce)
        {
            return Err(PeerMisbehaved::AuthFailed.into());
        }
        let salt = base64_decode(salt.as_bytes())?;
        let iterations: u32 = iter.parse().map_err(|_| bad())?;
        if iterations == 0 || iterations > 10_000_000 {
            return Err(bad());
        }
        let salted = crypto.pbkdf2_hmac_sha256(self.password.as_bytes(), &salt, iterations);
        let client_key = crypto.hmac_sha256(&salted, b"Client Key");
        let stored_key = crypto.sha256(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{msg},{without_proof}", self.client_first_bare);
        let sig = crypto.hmac_sha256(&stored_key, auth_message.as_bytes());
        let mut proof = [0u8; 32];
        for i in 0..32 {
            proof[i] = client_key[i] ^ sig[i];
        }
        let server_key = crypto.hmac_sha256(&salted, b"Server Key");
        self.server_signature = Some(crypto.hmac_sha256(&server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", base64_encode(&proof)))
    }

    /// Verify the server-final message (RFC 5802 5.1 `v=`).
    pub fn server_final(&self, msg: &[u8]) -> Result<(), Error> {
        let v = msg
            .strip_prefix(b"v=")
            .ok_or(PeerMisbehaved::ServerSignature)?;
        let v = base64_decode(v)?;
        match self.server_signature {
            Some(s) if s[..] == v[..] => Ok(()),
            _ => Err(PeerMisbehaved::ServerSignature.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_decoding() {
        assert_eq!(
            decode_plain(b"\0user\0pass").unwrap(),
            ("".into(), "user".into(), "pass".into())
        );
        assert!(decode_plain(b"user\0pass").is_err());
        assert!(decode_plain(b"\0\0pass").is_err());
        assert_eq!(
            base64_decode(encode_plain("", "u", "p").as_bytes()).unwrap(),
            b"\0u\0p"
        );
    }

    #[test]
    fn sasl_names() {
        assert_eq!(sasl_name_escape("a,b=c"), "a=2Cb=3Dc");
        assert_eq!(sasl_name_unescape("a=2Cb=3Dc").unwrap(), "a,b=c");
        assert!(sasl_name_unescape("a=2").is_err());
        assert!(sasl_name_unescape("a,b").is_err());
    }

    #[test]
    fn scram_client_first_parse() {
        let (_, first) = ScramClient::new("us=er", "pencil", "abc");
        let s = ScramServerStart::parse(first.as_bytes()).unwrap();
        assert_eq!(s.username, "us=er");
        assert!(ScramServerStart::parse(b"p=tls-unique,,n=u,r=x").is_err());
        assert!(ScramServerStart::parse(b"n,,n=u").is_err());
    }

    #[test]
    fn mechanism_names() {
        assert_eq!(
            Mechanism::from_name("scram-sha-256"),
            Some(Mechanism::ScramSha256)
        );
        assert_eq!(Mechanism::from_name("CRAM-MD5"), None);
    }
}
