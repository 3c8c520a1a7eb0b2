//! rustls configurations for mesh hops: TLS 1.3 only, aws-lc-rs, client
//! certificates mandatory, roles checked after the WebPKI chain checks.

use std::fmt;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{
    CertificateError, ClientConfig, CommonState, DigitallySignedStruct, DistinguishedName,
    OtherError, RootCertStore, ServerConfig, SignatureScheme,
};

use crate::ca::is_mesh_name;
use crate::role::ROLE_URI_PREFIX;
use crate::{Identity, MeshError, Role, TrustBundle, der, may_send_envelope_facts};

/// The crypto provider of every mesh configuration: aws-lc-rs.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The role a certificate names, read from its URI SAN `scop:role:<name>`.
///
/// Exactly one such URI must be present and name a known role; any DNS SAN
/// under `mesh.scop.invalid` must be that role's own. Anything else is an
/// error: a certificate never names two roles.
pub fn role_of_certificate(cert: &CertificateDer<'_>) -> Result<Role, MeshError> {
    let view = der::parse(cert)?;
    let mut found: Option<Role> = None;
    for uri in &view.uris {
        let Some(name) = uri.strip_prefix(ROLE_URI_PREFIX.as_bytes()) else {
            continue;
        };
        let role = std::str::from_utf8(name)
            .ok()
            .and_then(Role::from_name)
            .ok_or_else(|| MeshError::UnknownRole {
                name: String::from_utf8_lossy(name)
                    .chars()
                    .take(crate::role::MAX_ROLE_NAME_ECHO)
                    .collect(),
            })?;
        if found.is_some() {
            return Err(MeshError::AmbiguousRole);
        }
        found = Some(role);
    }
    let role = found.ok_or(MeshError::NoRole)?;
    let own = role.mesh_dns_name();
    for name in &view.dns_names {
        let name = std::str::from_utf8(name).map_err(|_| MeshError::AmbiguousRole)?;
        if is_mesh_name(name) && !name.eq_ignore_ascii_case(&own) {
            return Err(MeshError::AmbiguousRole);
        }
    }
    Ok(role)
}

/// The verified role of the peer of a mesh connection.
///
/// Made only by [`peer_role`] (and the listener and connector built on it)
/// from a connection whose configuration came from [`server_config`] or
/// [`client_config`], after the peer's chain and role were checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerRole {
    role: Role,
}

impl PeerRole {
    /// The peer's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The peer's role name, as written in its certificate.
    pub fn name(&self) -> &'static str {
        self.role.name()
    }

    /// Whether this peer may send envelope facts (XSCOP) to a server with
    /// role `server`, per [`crate::HOPS`].
    pub fn may_send_envelope_facts(&self, server: Role) -> bool {
        may_send_envelope_facts(self.role, server)
    }

    /// The role name to hand to the SMTP server's XSCOP authorisation
    /// (`PeerAuthorised::from_verified_certificate`) when the hop policy
    /// allows envelope facts on this hop; `None` otherwise.
    pub fn envelope_facts_role(&self, server: Role) -> Option<&'static str> {
        self.may_send_envelope_facts(server).then(|| self.name())
    }
}

impl fmt::Display for PeerRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.role.fmt(f)
    }
}

/// Read the peer's role after a completed handshake on a mesh connection,
/// and check it is one of `permitted` (the server's accepted roles, or the
/// client's expected server role).
pub fn peer_role(conn: &CommonState, permitted: &[Role]) -> Result<PeerRole, MeshError> {
    let cert = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or(MeshError::NoPeerCertificate)?;
    let role = role_of_certificate(cert)?;
    if !permitted.contains(&role) {
        return Err(match permitted {
            [expected] => MeshError::WrongRole {
                expected: *expected,
                found: role,
            },
            _ => MeshError::PeerNotPermitted { found: role },
        });
    }
    Ok(PeerRole { role })
}

fn roots(trust: &TrustBundle) -> Result<Arc<RootCertStore>, MeshError> {
    let mut store = RootCertStore::empty();
    for ca in trust.cas() {
        store.add(ca.clone())?;
    }
    Ok(Arc::new(store))
}

/// A refusal raised inside a verifier, carried to the caller through
/// rustls' `CertificateError::Other`.
#[derive(Debug)]
struct RoleRefusal(String);

impl fmt::Display for RoleRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RoleRefusal {}

fn refuse(e: MeshError) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(RoleRefusal(
        e.to_string(),
    )))))
}

/// Client certificate verifier: rustls' WebPKI checks (chain to a trusted
/// mesh CA, validity, client-auth EKU), then the role check.
#[derive(Debug)]
struct RoleClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    server: Role,
    accepted: Vec<Role>,
}

impl ClientCertVerifier for RoleClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let client = role_of_certificate(end_entity).map_err(refuse)?;
        if !self.accepted.contains(&client) {
            return Err(refuse(MeshError::RoleNotAccepted {
                client,
                server: self.server,
            }));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Server certificate verifier: rustls' WebPKI checks (chain, validity,
/// server-auth EKU, the `<role>.mesh.scop.invalid` name), then the role URI.
#[derive(Debug)]
struct RoleServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
    expected: Role,
}

impl ServerCertVerifier for RoleServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        let found = role_of_certificate(end_entity).map_err(refuse)?;
        if found != self.expected {
            return Err(refuse(MeshError::WrongRole {
                expected: self.expected,
                found,
            }));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The TLS server name a mesh client uses for `role`.
pub(crate) fn server_name(role: Role) -> Result<ServerName<'static>, MeshError> {
    ServerName::try_from(role.mesh_dns_name()).map_err(|_| MeshError::UnknownRole {
        name: role.name().to_string(),
    })
}

/// A server configuration for `identity`'s role that requires a client
/// certificate chained to `trust` and naming one of `accepted`.
///
/// Session resumption is off, so every connection presents and has checked
/// a certificate (a resumed session would skip the role check).
pub fn server_config(
    identity: &Identity,
    trust: &TrustBundle,
    accepted: &[Role],
) -> Result<Arc<ServerConfig>, MeshError> {
    if accepted.is_empty() {
        return Err(MeshError::NoAcceptedRoles {
            server: identity.role(),
        });
    }
    let provider = provider();
    let inner = WebPkiClientVerifier::builder_with_provider(roots(trust)?, provider.clone())
        .build()
        .map_err(|e| MeshError::Tls(rustls::Error::General(e.to_string())))?;
    let verifier = Arc::new(RoleClientVerifier {
        inner,
        server: identity.role(),
        accepted: accepted.to_vec(),
    });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.chain().to_vec(), identity.private_key())?;
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// A client configuration presenting `identity` and accepting only a
/// server whose certificate chains to `trust` and names `expected_server`.
pub fn client_config(
    identity: &Identity,
    trust: &TrustBundle,
    expected_server: Role,
) -> Result<Arc<ClientConfig>, MeshError> {
    let provider = provider();
    let inner = WebPkiServerVerifier::builder_with_provider(roots(trust)?, provider.clone())
        .build()
        .map_err(|e| MeshError::Tls(rustls::Error::General(e.to_string())))?;
    let verifier = Arc::new(RoleServerVerifier {
        inner,
        expected: expected_server,
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(identity.chain().to_vec(), identity.private_key())?;
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}
