//! TLS for the public endpoints (rustls with aws-lc-rs): server
//! configurations from PEM files, a self-signed certificate for local use,
//! and the relay's client configurations (opportunistic, and DANE's).

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use scop_mta::dane::{ChainMatch, Tlsa, match_chain};

/// TLS set-up errors.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The PEM data holds no usable certificate or key.
    #[error("{0}")]
    Pem(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// Certificate generation failed.
    #[error("certificate generation: {0}")]
    Generate(String),
}

pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A server configuration from a PEM certificate chain and private key.
pub fn server_config(
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem(format!("certificate: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::Pem("no certificate in the PEM data".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| TlsError::Pem(format!("private key: {e}")))?;
    let cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(Arc::new(cfg))
}

/// A self-signed certificate and its key (PEM) for `names`.
pub fn self_signed(names: &[String]) -> Result<(String, String), TlsError> {
    let ck = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    Ok((ck.cert.pem(), ck.signing_key.serialize_pem()))
}

/// Loads `cert.pem` and `key.pem` from `dir`, creating a self-signed pair
/// for `hostname` first when they do not exist (the key file is written
/// with mode 0600).
pub fn load_or_create(dir: &Path, hostname: &str) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| TlsError::Io { path, source }
    };
    if !key.exists() {
        // Processes starting together (the compartments) may all get
        // here: the first to put its key in place writes its certificate
        // too, the others drop their pair, so no one reads a key and a
        // certificate that do not belong together.
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let (c, k) = self_signed(&[hostname.to_string()])?;
        if crate::private_file::publish_once(&key, k.as_bytes()).map_err(io(&key))? {
            let tmp_cert = dir.join(format!(".cert.pem.{}", std::process::id()));
            crate::private_file::write(&tmp_cert, c.as_bytes()).map_err(io(&tmp_cert))?;
            std::fs::rename(&tmp_cert, &cert).map_err(io(&cert))?;
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io(dir))?;
        }
    }
    // The winner of a concurrent start may still be renaming its
    // certificate into place.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !cert.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    if !cert.exists() {
        // A key without its certificate (a crash between the two): start
        // over once.
        std::fs::remove_file(&key).map_err(io(&key))?;
        return load_or_create(dir, hostname);
    }
    let c = std::fs::read(&cert).map_err(io(&cert))?;
    let k = std::fs::read(&key).map_err(io(&key))?;
    server_config(&c, &k)
}

/// The DANE record (RFC 7672 3.1.1: `3 1 1`, DANE-EE of the SHA2-256 of
/// the public key) that authenticates the first certificate of
/// `cert_pem`, in presentation format; it stays valid across renewals
/// that keep the key.
pub fn dane_ee_record(cert_pem: &[u8]) -> Result<String, TlsError> {
    let cert = CertificateDer::from_pem_slice(cert_pem)
        .map_err(|e| TlsError::Pem(format!("no certificate: {e}")))?;
    Tlsa::ee_spki_sha256(&cert)
        .map(|t| t.to_text())
        .ok_or_else(|| TlsError::Pem("the certificate's public key cannot be read".into()))
}

/// The relay's client configuration: opportunistic TLS as MTAs do without
/// DANE or MTA-STS (RFC 7435): the connection is encrypted, the server's
/// certificate is not checked against a trust store (a failed check would
/// only make the relay fall back to cleartext). The handshake signature is
/// still verified, so the session key belongs to whoever holds the
/// presented certificate.
pub fn opportunistic_client() -> Arc<rustls::ClientConfig> {
    client_with(RelayVerifier {
        provider: provider(),
        dane: None,
        observe: None,
    })
}

/// The relay's client configuration for a host with usable TLSA records
/// (RFC 7672): the certificate must match a DANE-EE record, or be issued
/// for one of `names` (the MX host name first) under a certificate of the
/// server's chain that matches a DANE-TA record. Without a match the
/// handshake fails, and the relay moves to the next host.
pub fn dane_client(records: Vec<Tlsa>, names: Vec<String>) -> Arc<rustls::ClientConfig> {
    client_with(RelayVerifier {
        provider: provider(),
        dane: Some(Dane { records, names }),
        observe: None,
    })
}

/// What [`observing_client`] found wrong with the server's certificate,
/// if anything (filled during the handshake).
pub type Verdict = Arc<std::sync::Mutex<Option<rustls::Error>>>;

/// The relay's client configuration for a host that an MTA-STS policy in
/// `testing` mode names (RFC 8461 5): the certificate is checked against
/// `roots` for the host name, as in `enforce` mode, but a failed check
/// only goes into the returned [`Verdict`], for TLS reports; the session
/// goes on as opportunistic TLS (the handshake signature still checked).
pub fn observing_client(roots: Arc<rustls::RootCertStore>) -> (Arc<rustls::ClientConfig>, Verdict) {
    let provider = provider();
    let verdict = Verdict::default();
    // Without a root to check against there is nothing to observe.
    let observe =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .ok()
            .map(|pkix| (pkix, verdict.clone()));
    let cfg = client_with(RelayVerifier {
        provider,
        dane: None,
        observe,
    });
    (cfg, verdict)
}

fn client_with(verifier: RelayVerifier) -> Arc<rustls::ClientConfig> {
    let cfg = rustls::ClientConfig::builder_with_provider(verifier.provider.clone())
        .with_safe_default_protocol_versions()
        .expect("the default provider supports the default versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Arc::new(cfg)
}

#[derive(Debug)]
struct Dane {
    records: Vec<Tlsa>,
    names: Vec<String>,
}

impl Dane {
    /// Whether the chain is authenticated by the records (RFC 7672 3).
    fn verify(
        &self,
        provider: &rustls::crypto::CryptoProvider,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> bool {
        let chain: Vec<&[u8]> = std::iter::once(end_entity.as_ref())
            .chain(intermediates.iter().map(|c| c.as_ref()))
            .collect();
        let anchors = match match_chain(&self.records, &chain) {
            ChainMatch::EndEntity => return true,
            ChainMatch::None => return false,
            ChainMatch::TrustAnchors(a) => a,
        };
        let Ok(ee) = webpki::EndEntityCert::try_from(end_entity) else {
            return false;
        };
        let named = self.names.iter().any(|n| {
            ServerName::try_from(n.as_str())
                .is_ok_and(|name| ee.verify_is_valid_for_subject_name(&name).is_ok())
        });
        named
            && anchors.into_iter().any(|ta| {
                let ta = CertificateDer::from(ta);
                let Ok(anchor) = webpki::anchor_from_trusted_cert(&ta) else {
                    return false;
                };
                ee.verify_for_usage(
                    provider.signature_verification_algorithms.all,
                    &[anchor],
                    intermediates,
                    now,
                    webpki::KeyUsage::server_auth(),
                    None,
                    None,
                )
                .is_ok()
            })
    }
}

/// The relay's certificate check: none for opportunistic TLS, DANE's for
/// a host with usable TLSA records, PKIX's noted but not enforced for
/// [`observing_client`]; the handshake signature always.
#[derive(Debug)]
struct RelayVerifier {
    provider: Arc<rustls::crypto::CryptoProvider>,
    dane: Option<Dane>,
    observe: Option<(Arc<rustls::client::WebPkiServerVerifier>, Verdict)>,
}

impl ServerCertVerifier for RelayVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some((pkix, verdict)) = &self.observe
            && let Err(e) =
                pkix.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            && let Ok(mut v) = verdict.lock()
        {
            *v = Some(e);
        }
        match &self.dane {
            Some(d) if !d.verify(&self.provider, end_entity, intermediates, now) => {
                Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::ApplicationVerificationFailure,
                ))
            }
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_starting_together_share_one_certificate() {
        let dir = std::env::temp_dir().join(format!("scop-tls-race-{}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let dir = dir.clone();
                std::thread::spawn(move || load_or_create(&dir, "mail.race.test").is_ok())
            })
            .collect();
        for t in threads {
            assert!(t.join().unwrap(), "a start failed");
        }
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["cert.pem", "key.pem"], "temporary files left");
        // The pair belongs together.
        let cert = std::fs::read(dir.join("cert.pem")).unwrap();
        let key = std::fs::read(dir.join("key.pem")).unwrap();
        let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(&cert)
            .collect::<Result<_, _>>()
            .unwrap();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(&key).unwrap();
        let signer = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key).unwrap();
        let ck = rustls::sign::CertifiedKey::new(certs, signer);
        assert!(ck.keys_match().is_ok());
        std::fs::remove_dir_all(&dir).ok();
    }
}
