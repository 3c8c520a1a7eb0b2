//! The mesh certificate authority and the identities it issues.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;

use crate::der;
use crate::role::MESH_DNS_SUFFIX;
use crate::tls::role_of_certificate;
use crate::{MeshError, Role};

/// Most extra DNS names plus IP addresses in one certificate.
pub const MAX_EXTRA_NAMES: usize = 32;
/// Longest DNS name (RFC 1035 §2.3.4).
const MAX_DNS_NAME: usize = 253;
/// Longest DNS label (RFC 1035 §2.3.4).
const MAX_DNS_LABEL: usize = 63;
/// Common name prefix of a mesh CA; a tag from its public key follows, so
/// an old and a new CA never share a subject.
const CA_CN_PREFIX: &str = "SCoP mesh CA ";

/// When a certificate is valid. Passed in: issuance reads no clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    not_before: SystemTime,
    not_after: SystemTime,
}

impl Validity {
    /// A period from `not_before` to `not_after`; refused if it is empty
    /// or starts before 1970.
    pub fn new(not_before: SystemTime, not_after: SystemTime) -> Result<Self, MeshError> {
        if not_after <= not_before || not_before < UNIX_EPOCH {
            return Err(MeshError::InvalidValidity);
        }
        Ok(Validity {
            not_before,
            not_after,
        })
    }

    /// A period of `lifetime` starting at `not_before`.
    pub fn starting(
        not_before: SystemTime,
        lifetime: std::time::Duration,
    ) -> Result<Self, MeshError> {
        let end = not_before
            .checked_add(lifetime)
            .ok_or(MeshError::InvalidValidity)?;
        Validity::new(not_before, end)
    }

    /// Start of the period.
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }

    /// End of the period.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    fn apply(&self, params: &mut CertificateParams) -> Result<(), MeshError> {
        params.not_before = to_offset(self.not_before)?;
        params.not_after = to_offset(self.not_after)?;
        Ok(())
    }
}

fn to_offset(t: SystemTime) -> Result<OffsetDateTime, MeshError> {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_err(|_| MeshError::InvalidValidity)?
        .as_secs();
    let secs = i64::try_from(secs).map_err(|_| MeshError::InvalidValidity)?;
    OffsetDateTime::from_unix_timestamp(secs).map_err(|_| MeshError::InvalidValidity)
}

/// Names beyond the role's own, for a compartment reached at a real host
/// name or address (compartments on other hosts). Mesh clients always
/// verify the role's `.mesh.scop.invalid` name, so these are for other
/// tools (e.g. an operator's `openssl s_client -verify_hostname`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtraNames {
    dns: Vec<String>,
    ips: Vec<IpAddr>,
}

impl ExtraNames {
    /// No extra names.
    pub fn none() -> Self {
        ExtraNames::default()
    }

    /// Extra DNS names and IP addresses; DNS names are lower-cased and must
    /// be plain host names (letters, digits, hyphens, dots), not under
    /// `mesh.scop.invalid`.
    pub fn new(dns: &[&str], ips: &[IpAddr]) -> Result<Self, MeshError> {
        if dns.len() + ips.len() > MAX_EXTRA_NAMES {
            return Err(MeshError::TooManyExtraNames);
        }
        let mut out = ExtraNames {
            dns: Vec::with_capacity(dns.len()),
            ips: ips.to_vec(),
        };
        for name in dns {
            let lower = name.to_ascii_lowercase();
            if !valid_host_name(&lower) {
                return Err(MeshError::InvalidExtraName {
                    name: name.chars().take(MAX_DNS_NAME).collect(),
                });
            }
            out.dns.push(lower);
        }
        Ok(out)
    }

    /// The extra DNS names.
    pub fn dns(&self) -> &[String] {
        &self.dns
    }

    /// The extra IP addresses.
    pub fn ips(&self) -> &[IpAddr] {
        &self.ips
    }

    /// The extra names an existing certificate carries (every name except
    /// the role's own), so a re-issued certificate keeps them.
    pub fn from_certificate(cert: &CertificateDer<'_>) -> Result<Self, MeshError> {
        let view = der::parse(cert)?;
        let mut dns = Vec::new();
        for name in &view.dns_names {
            let s = std::str::from_utf8(name).map_err(|_| MeshError::InvalidExtraName {
                name: String::new(),
            })?;
            if !is_mesh_name(s) {
                dns.push(s.to_string());
            }
        }
        let mut ips = Vec::new();
        for raw in &view.ips {
            match <[u8; 4]>::try_from(*raw) {
                Ok(v4) => ips.push(IpAddr::from(v4)),
                Err(_) => match <[u8; 16]>::try_from(*raw) {
                    Ok(v6) => ips.push(IpAddr::from(v6)),
                    Err(_) => return Err(der::DerError::Malformed("iPAddress length").into()),
                },
            }
        }
        let refs: Vec<&str> = dns.iter().map(String::as_str).collect();
        ExtraNames::new(&refs, &ips)
    }
}

/// Whether `name` is the mesh suffix or lies under it (case-insensitive).
pub(crate) fn is_mesh_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let lower = lower.trim_end_matches('.');
    lower == MESH_DNS_SUFFIX
        || lower
            .strip_suffix(MESH_DNS_SUFFIX)
            .is_some_and(|head| head.ends_with('.'))
}

fn valid_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_DNS_NAME
        && !is_mesh_name(name)
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= MAX_DNS_LABEL
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// A set of trusted mesh CA certificates: normally one, two while a CA
/// rotation overlaps the old and the new.
#[derive(Clone, PartialEq, Eq)]
pub struct TrustBundle {
    cas: Vec<CertificateDer<'static>>,
}

impl fmt::Debug for TrustBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustBundle")
            .field("cas", &self.cas.len())
            .finish()
    }
}

impl TrustBundle {
    /// A bundle of the given CA certificates; refused if empty.
    pub fn new(cas: Vec<CertificateDer<'static>>) -> Result<Self, MeshError> {
        if cas.is_empty() {
            return Err(MeshError::EmptyTrust);
        }
        Ok(TrustBundle { cas })
    }

    /// The CA certificates.
    pub fn cas(&self) -> &[CertificateDer<'static>] {
        &self.cas
    }

    /// Parse a PEM bundle (one or more `CERTIFICATE` blocks).
    pub fn from_pem(pem: &[u8]) -> Result<Self, MeshError> {
        let cas = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| MeshError::Pem {
                path: PathBuf::from("trust bundle"),
                reason: "unreadable PEM",
            })?;
        TrustBundle::new(cas)
    }

    /// The bundle as PEM.
    pub fn to_pem(&self) -> String {
        self.cas.iter().map(|c| cert_pem(c)).collect()
    }
}

/// PEM text of one certificate.
pub(crate) fn cert_pem(cert: &CertificateDer<'_>) -> String {
    const LINE: usize = 64;
    let b64 = scop_codec::base64::encode(cert);
    let mut out = String::with_capacity(b64.len() + b64.len() / LINE + 64);
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(LINE) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// A compartment's own certificate chain and private key.
pub struct Identity {
    role: Role,
    chain: Vec<CertificateDer<'static>>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            role: self.role,
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("role", &self.role)
            .field("chain", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// An identity from a certificate and its PKCS#8 key; checks that the
    /// certificate names `role` and that the key belongs to it.
    pub fn new(
        role: Role,
        cert: CertificateDer<'static>,
        key: PrivatePkcs8KeyDer<'static>,
    ) -> Result<Self, MeshError> {
        let found = role_of_certificate(&cert)?;
        if found != role {
            return Err(MeshError::WrongRole {
                expected: role,
                found,
            });
        }
        let pair = KeyPair::try_from(key.secret_pkcs8_der())?;
        let view = der::parse(&cert)?;
        if view.spki != pair.subject_public_key_info().as_slice() {
            return Err(MeshError::KeyMismatch {
                path: PathBuf::from(format!("{role} certificate")),
            });
        }
        Ok(Identity {
            role,
            chain: vec![cert],
            key,
        })
    }

    /// Parse PEM text of a certificate and a PKCS#8 key.
    pub fn from_pem(role: Role, cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, MeshError> {
        let cert = CertificateDer::from_pem_slice(cert_pem).map_err(|_| MeshError::Pem {
            path: PathBuf::from(format!("{role} certificate")),
            reason: "no CERTIFICATE block",
        })?;
        let key = PrivatePkcs8KeyDer::from_pem_slice(key_pem).map_err(|_| MeshError::Pem {
            path: PathBuf::from(format!("{role} key")),
            reason: "no PRIVATE KEY (PKCS#8) block",
        })?;
        Identity::new(role, cert, key)
    }

    /// The role the certificate names.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The end-entity certificate.
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.chain[0]
    }

    /// The certificate chain, end entity first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The private key, for rustls.
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }

    /// The certificate as PEM.
    pub fn cert_pem(&self) -> String {
        cert_pem(self.certificate())
    }

    /// The private key as PKCS#8 PEM. Write it owner-only.
    pub fn key_pem(&self) -> Result<String, MeshError> {
        Ok(KeyPair::try_from(self.key.secret_pkcs8_der())?.serialize_pem())
    }
}

/// The mesh certificate authority: an ECDSA P-256 key and its self-signed
/// certificate, constrained to issue end-entity certificates only.
pub struct Ca {
    key: KeyPair,
    cert: CertificateDer<'static>,
    params: CertificateParams,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("subject", &ca_common_name(&self.key))
            .finish_non_exhaustive()
    }
}

fn ca_common_name(key: &KeyPair) -> String {
    // The raw EC point is 0x04 || X || Y; eight bytes of X tag this CA.
    let raw = key.public_key_raw();
    let tag: String = raw
        .iter()
        .skip(1)
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{CA_CN_PREFIX}{tag}")
}

fn ca_params(key: &KeyPair) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, ca_common_name(key));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

impl Ca {
    /// Make a new CA with a fresh ECDSA P-256 key.
    pub fn create(validity: Validity) -> Result<Ca, MeshError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = ca_params(&key);
        validity.apply(&mut params)?;
        let cert = params.self_signed(&key)?.der().clone();
        Ok(Ca { key, cert, params })
    }

    /// Load a CA from its PEM certificate and PEM key; checks that they
    /// belong together.
    pub fn from_pem(cert_pem: &[u8], key_pem: &str) -> Result<Ca, MeshError> {
        let cert = CertificateDer::from_pem_slice(cert_pem).map_err(|_| MeshError::Pem {
            path: PathBuf::from("CA certificate"),
            reason: "no CERTIFICATE block",
        })?;
        let key = KeyPair::from_pem(key_pem)?;
        if key.algorithm() != &PKCS_ECDSA_P256_SHA256 {
            return Err(MeshError::CaMismatch);
        }
        let view = der::parse(&cert)?;
        if view.spki != key.subject_public_key_info().as_slice() || view.subject != view.issuer {
            return Err(MeshError::CaMismatch);
        }
        let subject = view.subject.to_vec();
        let params = ca_params(&key);
        let ca = Ca { key, cert, params };
        // The subject is rebuilt from the key; make sure it is the one in
        // the certificate, or issued certificates would not chain.
        let probe = ca.sign_leaf(
            Role::Resolver,
            Validity::starting(UNIX_EPOCH, std::time::Duration::from_secs(1))?,
            &ExtraNames::none(),
        )?;
        if der::parse(probe.certificate())?.issuer != subject.as_slice() {
            return Err(MeshError::CaMismatch);
        }
        Ok(ca)
    }

    /// The CA certificate.
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// The CA certificate as PEM.
    pub fn cert_pem(&self) -> String {
        cert_pem(&self.cert)
    }

    /// The CA private key as PKCS#8 PEM. Write it owner-only.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// A trust bundle holding this CA alone.
    pub fn trust(&self) -> TrustBundle {
        TrustBundle {
            cas: vec![self.cert.clone()],
        }
    }

    /// Issue a certificate for `role` with a fresh ECDSA P-256 key: URI SAN
    /// `scop:role:<role>`, DNS SAN `<role>.mesh.scop.invalid`, the extra
    /// names, and both the client and server authentication EKUs.
    pub fn issue(
        &self,
        role: Role,
        validity: Validity,
        extra: &ExtraNames,
    ) -> Result<Identity, MeshError> {
        let identity = self.sign_leaf(role, validity, extra)?;
        if der::parse(identity.certificate())?.issuer != der::parse(&self.cert)?.subject {
            return Err(MeshError::CaMismatch);
        }
        Ok(identity)
    }

    fn sign_leaf(
        &self,
        role: Role,
        validity: Validity,
        extra: &ExtraNames,
    ) -> Result<Identity, MeshError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("SCoP mesh {role}"));
        params.distinguished_name = dn;
        validity.apply(&mut params)?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.subject_alt_names = vec![
            SanType::URI(role.uri().try_into()?),
            SanType::DnsName(role.mesh_dns_name().try_into()?),
        ];
        for name in &extra.dns {
            params
                .subject_alt_names
                .push(SanType::DnsName(name.clone().try_into()?));
        }
        for ip in &extra.ips {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer)?.der().clone();
        let pkcs8 = PrivatePkcs8KeyDer::from(key.serialize_der());
        Identity::new(role, cert, pkcs8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        assert!(valid_host_name("mail.example.org"));
        assert!(valid_host_name("a-1.b"));
        assert!(!valid_host_name(""));
        assert!(!valid_host_name("-a.b"));
        assert!(!valid_host_name("a..b"));
        assert!(!valid_host_name("*.example.org"));
        assert!(!valid_host_name("relay.mesh.scop.invalid"));
        assert!(!valid_host_name("mesh.scop.invalid"));
        assert!(valid_host_name("notmesh.scop.invalid"));
        assert!(is_mesh_name("Relay.MESH.scop.invalid."));
    }
}
