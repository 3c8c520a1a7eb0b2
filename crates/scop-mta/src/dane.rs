//! DANE for SMTP (RFC 7672, with RFC 7671 and RFC 6698): what the relay
//! must do with an MX host given the DNSSEC status of its address and
//! TLSA lookups, and whether a certificate matches a TLSA record.
//!
//! ```text
//!  MX RRset and the host's addresses secure?
//!   ├─ no ──────────────────────────────► Opportunistic (pre-DANE TLS)
//!   └─ yes: TLSA _25._tcp.<host>
//!        ├─ lookup failed or bogus ─────► Unreachable (skip the host)
//!        ├─ insecure, or a proven denial► Opportunistic
//!        ├─ secure, none usable ────────► Encrypted (TLS required, unauthenticated)
//!        └─ secure, usable ─────────────► Authenticated (TLS required,
//!                                          the certificate must match)
//! ```
//!
//! Only DANE-TA(2) and DANE-EE(3) are usable (RFC 7672 3.1.3), with the
//! Cert(0) or SPKI(1) selector and the Full(0), SHA2-256(1) or
//! SHA2-512(2) matching type; of the digests, only the strongest present
//! for a usage and selector counts (RFC 7671 9). DANE-EE(3) records match
//! the server's own certificate, without name or date checks (RFC 7672
//! 3.1.1); DANE-TA(2) records name a certificate of the chain the server
//! sends, which must then issue the server's certificate for the host
//! name (that check needs X.509 path validation, done by the I/O shell).

use aws_lc_rs::digest;
use scop_codec::der::element;

/// TLSA records used per host, at most (an RRset larger than this is
/// cut; the first ones count).
pub const TLSA_RECORDS_MAX: usize = 32;

/// Certificate usage DANE-TA(2): a trust anchor of the server's chain.
pub const DANE_TA: u8 = 2;
/// Certificate usage DANE-EE(3): the server's own certificate or key.
pub const DANE_EE: u8 = 3;
/// Selector Cert(0): the whole certificate.
pub const SELECTOR_CERT: u8 = 0;
/// Selector SPKI(1): the SubjectPublicKeyInfo.
pub const SELECTOR_SPKI: u8 = 1;
/// Matching type Full(0): the selected data itself.
pub const MATCH_FULL: u8 = 0;
/// Matching type SHA2-256(1).
pub const MATCH_SHA256: u8 = 1;
/// Matching type SHA2-512(2).
pub const MATCH_SHA512: u8 = 2;

/// One TLSA record (RFC 6698 2.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tlsa {
    /// Certificate usage.
    pub usage: u8,
    /// Selector.
    pub selector: u8,
    /// Matching type.
    pub matching: u8,
    /// Certificate association data.
    pub data: Vec<u8>,
}

impl Tlsa {
    /// Whether SMTP can use the record: DANE-TA or DANE-EE, a known
    /// selector and matching type, and data of the digest's length.
    pub fn usable(&self) -> bool {
        matches!(self.usage, DANE_TA | DANE_EE)
            && matches!(self.selector, SELECTOR_CERT | SELECTOR_SPKI)
            && match self.matching {
                MATCH_FULL => !self.data.is_empty(),
                MATCH_SHA256 => self.data.len() == 32,
                MATCH_SHA512 => self.data.len() == 64,
                _ => false,
            }
    }

    /// Whether `cert` (DER) matches the record (usage not considered).
    pub fn matches(&self, cert: &[u8]) -> bool {
        let selected = match self.selector {
            SELECTOR_CERT => cert,
            SELECTOR_SPKI => match spki(cert) {
                Some(s) => s,
                None => return false,
            },
            _ => return false,
        };
        match self.matching {
            MATCH_FULL => selected == self.data.as_slice(),
            MATCH_SHA256 => digest::digest(&digest::SHA256, selected).as_ref() == self.data,
            MATCH_SHA512 => digest::digest(&digest::SHA512, selected).as_ref() == self.data,
            _ => false,
        }
    }

    /// The record `3 1 1` for `cert` (DER): DANE-EE, the SHA2-256 of its
    /// public key, which stays valid across renewals that keep the key
    /// (what a domain publishes for its own MX). `None` when the
    /// certificate cannot be read.
    pub fn ee_spki_sha256(cert: &[u8]) -> Option<Tlsa> {
        Some(Tlsa {
            usage: DANE_EE,
            selector: SELECTOR_SPKI,
            matching: MATCH_SHA256,
            data: digest::digest(&digest::SHA256, spki(cert)?)
                .as_ref()
                .to_vec(),
        })
    }

    /// The record in presentation format (`3 1 1 ab12...`).
    pub fn to_text(&self) -> String {
        let mut s = format!("{} {} {} ", self.usage, self.selector, self.matching);
        for b in &self.data {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }
}

/// The records of an RRset that count: the usable ones, and of the
/// digests for each usage and selector only the strongest present
/// (RFC 7671 9: a key that matches only a weaker digest is not
/// accepted); Full(0) records always count.
pub fn effective(records: &[Tlsa]) -> Vec<Tlsa> {
    let usable: Vec<&Tlsa> = records
        .iter()
        .take(TLSA_RECORDS_MAX)
        .filter(|t| t.usable())
        .collect();
    let strongest = |usage: u8, selector: u8| {
        usable
            .iter()
            .filter(|t| t.usage == usage && t.selector == selector && t.matching != MATCH_FULL)
            .map(|t| t.matching)
            .max()
    };
    usable
        .iter()
        .filter(|t| t.matching == MATCH_FULL || Some(t.matching) == strongest(t.usage, t.selector))
        .map(|t| (*t).clone())
        .collect()
}

/// Whether the message's header has `TLS-Required: No` (RFC 8689 5):
/// its sender asks that TLS policies (DANE here) not stop it; it is still
/// sent over STARTTLS when the server offers it.
pub fn tls_not_required(msg: &[u8]) -> bool {
    let end = crate::headers::header_end(msg);
    msg[..end].split(|&b| b == b'\n').any(|line| {
        crate::headers::field_value(line, "TLS-Required")
            .is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"no"))
    })
}

/// What a DNS lookup said, as far as DANE cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<T> {
    /// Records; `secure` when DNSSEC proved them.
    Records {
        /// The records.
        records: Vec<T>,
        /// Validated.
        secure: bool,
    },
    /// No such name or no records of the type; `secure` when the denial
    /// was proved.
    Denied {
        /// Validated.
        secure: bool,
    },
    /// No usable answer: SERVFAIL, timeout, or a bogus answer.
    Failed(String),
}

/// How the relay must talk to one MX host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostSecurity {
    /// Pre-DANE opportunistic TLS: STARTTLS when offered, any
    /// certificate, cleartext when TLS fails.
    Opportunistic,
    /// TLS is required but not authenticated: the host has secure TLSA
    /// records, none usable (RFC 7672 2.2).
    Encrypted,
    /// TLS is required and the certificate must match one of these
    /// records (the [`effective`] ones, never empty).
    Authenticated(Vec<Tlsa>),
    /// TLS is required and the certificate must chain to the trust store
    /// and name the host: an MX host an enforced MTA-STS policy names
    /// (RFC 8461 4.2), where DANE does not apply.
    Pkix,
    /// The host must not be used: its TLSA lookup failed while its
    /// addresses were secure (RFC 7672 2.2: as if unreachable).
    Unreachable(String),
}

impl HostSecurity {
    /// Whether a session without TLS is refused.
    pub fn requires_tls(&self) -> bool {
        matches!(
            self,
            HostSecurity::Encrypted | HostSecurity::Authenticated(_) | HostSecurity::Pkix
        )
    }
}

/// Whether the TLSA records of a host are to be looked up (RFC 7672
/// 2.2.1, 2.2.2): only when both the MX RRset (or the proof that there
/// is none, for the implicit MX) and the host's addresses are secure.
/// An insecure MX RRset could name any host, so its hosts' TLSA records
/// prove nothing about the domain (Postfix's `dane` level decides the
/// same).
pub fn wants_tlsa(mx_secure: bool, addresses_secure: bool) -> bool {
    mx_secure && addresses_secure
}

/// The host's security from its TLSA lookup (RFC 7672 2.2).
pub fn host_security(tlsa: Lookup<Tlsa>) -> HostSecurity {
    match tlsa {
        Lookup::Failed(e) => HostSecurity::Unreachable(format!("TLSA lookup failed: {e}")),
        Lookup::Denied { .. } | Lookup::Records { secure: false, .. } => {
            HostSecurity::Opportunistic
        }
        Lookup::Records {
            records,
            secure: true,
        } => {
            let usable = effective(&records);
            if usable.is_empty() {
                HostSecurity::Encrypted
            } else {
                HostSecurity::Authenticated(usable)
            }
        }
    }
}

/// What a server's chain (end-entity certificate first, DER) proves
/// against `records`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainMatch<'a> {
    /// A DANE-EE record matches the server's certificate: authenticated.
    EndEntity,
    /// These certificates of the chain (not the end-entity one) match a
    /// DANE-TA record: authenticated once the end-entity certificate is
    /// shown to be issued under one of them for the host name.
    TrustAnchors(Vec<&'a [u8]>),
    /// Nothing matches.
    None,
}

/// Matches the chain the server sent against the (effective) records.
pub fn match_chain<'a>(records: &[Tlsa], chain: &[&'a [u8]]) -> ChainMatch<'a> {
    let Some((ee, rest)) = chain.split_first() else {
        return ChainMatch::None;
    };
    if records.iter().any(|t| t.usage == DANE_EE && t.matches(ee)) {
        return ChainMatch::EndEntity;
    }
    let anchors: Vec<&[u8]> = rest
        .iter()
        .copied()
        .filter(|c| records.iter().any(|t| t.usage == DANE_TA && t.matches(c)))
        .collect();
    if anchors.is_empty() {
        ChainMatch::None
    } else {
        ChainMatch::TrustAnchors(anchors)
    }
}

/// The SubjectPublicKeyInfo (its whole DER element) of a certificate, or
/// `None` if `cert` is not a DER certificate as far as the walk goes
/// (RFC 5280 4.1: Certificate, TBSCertificate, then the optional version,
/// serial number, signature algorithm, issuer, validity, subject).
pub fn spki(cert: &[u8]) -> Option<&[u8]> {
    const SEQUENCE: u8 = 0x30;
    let (tag, cert_body, _) = element(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, mut tbs, _) = element(cert_body)?;
    if tag != SEQUENCE {
        return None;
    }
    // [0] EXPLICIT version, when present.
    if tbs.first() == Some(&0xa0) {
        tbs = element(tbs)?.2;
    }
    // serialNumber, signature, issuer, validity, subject.
    for expected in [0x02, SEQUENCE, SEQUENCE, SEQUENCE, SEQUENCE] {
        let (tag, _, rest) = element(tbs)?;
        if tag != expected {
            return None;
        }
        tbs = rest;
    }
    let (tag, _, rest) = element(tbs)?;
    if tag != SEQUENCE {
        return None;
    }
    Some(&tbs[..tbs.len() - rest.len()])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(usage: u8, selector: u8, matching: u8, data: Vec<u8>) -> Tlsa {
        Tlsa {
            usage,
            selector,
            matching,
            data,
        }
    }

    /// A certificate made by OpenSSL (`openssl req -x509 -newkey
    /// ec:<(openssl ecparam -name prime256v1) -subj /CN=mx.b.test`).
    fn cert() -> Vec<u8> {
        let pem = include_str!("../tests/data/mx.b.test.pem");
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        scop_mime::codec::base64_decode(b64.as_bytes())
    }

    #[test]
    fn the_public_key_is_found_and_hashes_as_openssl_says() {
        let c = cert();
        let key = spki(&c).expect("spki");
        assert_eq!(key[0], 0x30);
        // `openssl x509 -pubkey -noout | openssl pkey -pubin -outform DER
        // | sha256sum`, recorded with the certificate.
        let want = include_str!("../tests/data/mx.b.test.spki-sha256").trim();
        let rec = Tlsa::ee_spki_sha256(&c).unwrap();
        assert_eq!(rec.to_text(), format!("3 1 1 {want}"));
        assert!(rec.matches(&c));
        // Cut or altered certificates yield no key or another one.
        for n in 0..c.len() {
            assert!(spki(&c[..n]).is_none(), "prefix of {n} bytes");
        }
        let mut other = c.clone();
        let at = c.len() - 10;
        other[at] ^= 1;
        assert!(
            !t(
                3,
                0,
                1,
                digest::digest(&digest::SHA256, &c).as_ref().to_vec()
            )
            .matches(&other)
        );
    }

    #[test]
    fn every_selector_and_matching_type_matches_its_own_data() {
        let c = cert();
        let key = spki(&c).unwrap().to_vec();
        let sha256 = |d: &[u8]| digest::digest(&digest::SHA256, d).as_ref().to_vec();
        let sha512 = |d: &[u8]| digest::digest(&digest::SHA512, d).as_ref().to_vec();
        for r in [
            t(3, 0, 0, c.clone()),
            t(3, 0, 1, sha256(&c)),
            t(3, 0, 2, sha512(&c)),
            t(3, 1, 0, key.clone()),
            t(3, 1, 1, sha256(&key)),
            t(3, 1, 2, sha512(&key)),
        ] {
            assert!(r.usable() && r.matches(&c), "{}", r.to_text());
            let mut wrong = r.clone();
            wrong.data[0] ^= 0x80;
            assert!(!wrong.matches(&c), "{}", wrong.to_text());
        }
        // A selector given the other's data does not match.
        assert!(!t(3, 0, 1, sha256(&key)).matches(&c));
        assert!(!t(3, 1, 1, sha256(&c)).matches(&c));
    }

    #[test]
    fn unusable_records_and_weaker_digests_do_not_count() {
        let d32 = vec![1u8; 32];
        let d64 = vec![2u8; 64];
        for bad in [
            t(0, 1, 1, d32.clone()),   // PKIX-TA
            t(1, 1, 1, d32.clone()),   // PKIX-EE
            t(4, 1, 1, d32.clone()),   // unknown usage
            t(3, 2, 1, d32.clone()),   // unknown selector
            t(3, 1, 3, d32.clone()),   // unknown matching type
            t(3, 1, 1, vec![1u8; 31]), // wrong digest length
            t(3, 1, 2, d32.clone()),
            t(3, 1, 0, Vec::new()),
        ] {
            assert!(!bad.usable(), "{}", bad.to_text());
        }
        let records = vec![
            t(3, 1, 1, d32.clone()),
            t(3, 1, 2, d64.clone()),
            t(3, 1, 0, vec![9]),
            t(2, 0, 1, d32.clone()),
            t(1, 1, 2, d64.clone()),
        ];
        assert_eq!(
            effective(&records),
            vec![
                t(3, 1, 2, d64.clone()),
                t(3, 1, 0, vec![9]),
                t(2, 0, 1, d32.clone())
            ]
        );
    }

    #[test]
    fn tls_required_no_is_found_in_the_header_only() {
        assert!(tls_not_required(
            b"Subject: x\r\nTLS-Required: No\r\n\r\nbody\r\n"
        ));
        assert!(tls_not_required(b"tls-required:  no \r\n\r\n"));
        assert!(!tls_not_required(b"TLS-Required: Yes\r\n\r\n"));
        assert!(!tls_not_required(b"Subject: x\r\n\r\nTLS-Required: No\r\n"));
        assert!(!tls_not_required(b"X-TLS-Required: No\r\n\r\n"));
    }

    #[test]
    fn host_security_follows_rfc_7672() {
        let good = t(3, 1, 1, vec![1u8; 32]);
        let pkix = t(1, 1, 1, vec![1u8; 32]);
        assert!(!wants_tlsa(false, true));
        assert!(!wants_tlsa(true, false));
        assert!(wants_tlsa(true, true));
        assert!(matches!(
            host_security(Lookup::Failed("SERVFAIL".into())),
            HostSecurity::Unreachable(_)
        ));
        assert_eq!(
            host_security(Lookup::Denied { secure: true }),
            HostSecurity::Opportunistic
        );
        assert_eq!(
            host_security(Lookup::Records {
                records: vec![good.clone()],
                secure: false
            }),
            HostSecurity::Opportunistic
        );
        assert_eq!(
            host_security(Lookup::Records {
                records: vec![pkix.clone()],
                secure: true
            }),
            HostSecurity::Encrypted
        );
        assert_eq!(
            host_security(Lookup::Records {
                records: vec![pkix, good.clone()],
                secure: true
            }),
            HostSecurity::Authenticated(vec![good])
        );
        assert!(HostSecurity::Encrypted.requires_tls());
        assert!(!HostSecurity::Opportunistic.requires_tls());
    }

    #[test]
    fn chains_match_by_end_entity_or_by_an_anchor_they_carry() {
        let c = cert();
        let ee = Tlsa::ee_spki_sha256(&c).unwrap();
        let mut ta = ee.clone();
        ta.usage = DANE_TA;
        let other = vec![0x30, 0x00];
        assert_eq!(
            match_chain(std::slice::from_ref(&ee), &[&c]),
            ChainMatch::EndEntity
        );
        // A DANE-TA record does not match the end-entity certificate
        // itself, only one the chain carries above it.
        assert_eq!(match_chain(&[ta.clone()], &[&c]), ChainMatch::None);
        assert_eq!(
            match_chain(&[ta.clone()], &[&other, &c]),
            ChainMatch::TrustAnchors(vec![&c[..]])
        );
        // A DANE-EE record does not match a certificate above the server's.
        assert_eq!(match_chain(&[ee], &[&other, &c]), ChainMatch::None);
        assert_eq!(match_chain(&[ta], &[]), ChainMatch::None);
    }
}
