//! Mesh mTLS over loopback: who gets in, who is refused, and why.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::{expired, issue, new_ca};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    SanType,
};
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer, ServerName};
use scop_mesh::{
    ExtraNames, Identity, MeshConnector, MeshError, MeshListener, PeerRole, Role, TrustBundle,
    connect, may_connect, may_send_envelope_facts,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// Listen on loopback as `identity`, accepting `accepted`; the spawned task
/// serves one connection: handshake, then answer "pong" to "ping".
async fn serve_once(
    identity: &Identity,
    trust: &TrustBundle,
    accepted: &[Role],
) -> (SocketAddr, JoinHandle<Result<PeerRole, MeshError>>) {
    let listener = MeshListener::bind("127.0.0.1:0", identity, trust, accepted)
        .await
        .expect("bind")
        .with_handshake_timeout(Duration::from_secs(5));
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let incoming = listener.accept().await?;
        let mut conn = incoming.handshake().await?;
        let mut buf = [0u8; 4];
        conn.stream
            .read_exact(&mut buf)
            .await
            .map_err(MeshError::Net)?;
        assert_eq!(&buf, b"ping");
        conn.stream
            .write_all(b"pong")
            .await
            .map_err(MeshError::Net)?;
        conn.stream.flush().await.map_err(MeshError::Net)?;
        Ok(conn.peer)
    });
    (addr, task)
}

/// Connect as `identity` expecting `server`, send "ping", read "pong".
async fn ping(
    addr: SocketAddr,
    identity: &Identity,
    trust: &TrustBundle,
    server: Role,
) -> Result<PeerRole, MeshError> {
    let mut conn = connect(addr, identity, trust, server).await?;
    conn.stream
        .write_all(b"ping")
        .await
        .map_err(MeshError::Net)?;
    let mut buf = [0u8; 4];
    conn.stream
        .read_exact(&mut buf)
        .await
        .map_err(MeshError::Net)?;
    assert_eq!(&buf, b"pong");
    Ok(conn.peer)
}

fn message(r: &Result<PeerRole, MeshError>) -> String {
    match r {
        Ok(p) => format!("accepted as {p}"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn allowed_role_connects_and_server_sees_its_role() {
    let ca = new_ca();
    let trust = ca.trust();
    let signer = issue(&ca, Role::Signer);
    let submission = issue(&ca, Role::Submission);
    let (addr, server) = serve_once(&signer, &trust, &Role::Signer.accepted_clients()).await;
    let seen_by_client = ping(addr, &submission, &trust, Role::Signer)
        .await
        .expect("client");
    let seen_by_server = server.await.expect("join").expect("server");
    assert_eq!(seen_by_client.role(), Role::Signer);
    assert_eq!(seen_by_server.role(), Role::Submission);
    assert_eq!(seen_by_server.name(), "submission");
    assert_eq!(
        seen_by_server.envelope_facts_role(Role::Signer),
        Some("submission")
    );
    assert_eq!(seen_by_client.envelope_facts_role(Role::Submission), None);
}

#[tokio::test]
async fn role_not_in_accepted_set_is_refused_at_handshake() {
    let ca = new_ca();
    let trust = ca.trust();
    let signer = issue(&ca, Role::Signer);
    let relay = issue(&ca, Role::Relay);
    let (addr, server) = serve_once(&signer, &trust, &Role::Signer.accepted_clients()).await;
    let client = ping(addr, &relay, &trust, Role::Signer).await;
    let server = server.await.expect("join");
    assert!(client.is_err(), "client: {}", message(&client));
    let msg = message(&server);
    assert!(
        matches!(server, Err(MeshError::Handshake(_))),
        "server: {msg}"
    );
    assert!(msg.contains("relay may not connect to signer"), "{msg}");
}

#[tokio::test]
async fn certificate_from_another_ca_is_refused() {
    let ca = new_ca();
    let other = new_ca();
    let signer = issue(&ca, Role::Signer);
    let intruder = issue(&other, Role::Submission);
    // The intruder trusts the real CA, so only its own certificate is wrong.
    let (addr, server) = serve_once(&signer, &ca.trust(), &[Role::Submission]).await;
    let client = ping(addr, &intruder, &ca.trust(), Role::Signer).await;
    let server = server.await.expect("join");
    assert!(client.is_err(), "client: {}", message(&client));
    let msg = message(&server);
    assert!(msg.contains("UnknownIssuer"), "server: {msg}");

    // And a client that trusts only the real CA refuses a server of the
    // other CA.
    let fake_signer = issue(&other, Role::Signer);
    let submission = issue(&ca, Role::Submission);
    let (addr, server) = serve_once(&fake_signer, &other.trust(), &[Role::Submission]).await;
    let client = ping(addr, &submission, &ca.trust(), Role::Signer).await;
    let msg = message(&client);
    assert!(msg.contains("UnknownIssuer"), "client: {msg}");
    assert!(server.await.expect("join").is_err());
}

#[tokio::test]
async fn no_client_certificate_is_refused() {
    let ca = new_ca();
    let signer = issue(&ca, Role::Signer);
    let (addr, server) = serve_once(&signer, &ca.trust(), &[Role::Submission]).await;
    // A client that verifies the server properly but presents nothing.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.certificate().clone()).expect("root");
    let config = rustls::ClientConfig::builder_with_provider(scop_mesh::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.expect("tcp");
    let name = ServerName::try_from("signer.mesh.scop.invalid").expect("name");
    let client: std::io::Result<()> = async {
        let mut tls = connector.connect(name, tcp).await?;
        tls.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await?;
        Ok(())
    }
    .await;
    assert!(client.is_err(), "client got an answer");
    let server = server.await.expect("join");
    let msg = message(&server);
    assert!(msg.contains("peer sent no certificates"), "server: {msg}");
}

#[tokio::test]
async fn expired_certificates_are_refused_both_ways() {
    let ca = new_ca();
    let trust = ca.trust();
    let signer = issue(&ca, Role::Signer);
    let stale = ca
        .issue(Role::Submission, expired(), &ExtraNames::none())
        .expect("issue");
    let (addr, server) = serve_once(&signer, &trust, &[Role::Submission]).await;
    let client = ping(addr, &stale, &trust, Role::Signer).await;
    assert!(client.is_err(), "client: {}", message(&client));
    let msg = message(&server.await.expect("join"));
    assert!(msg.contains("certificate expired"), "server: {msg}");

    let stale_signer = ca
        .issue(Role::Signer, expired(), &ExtraNames::none())
        .expect("issue");
    let submission = issue(&ca, Role::Submission);
    let (addr, server) = serve_once(&stale_signer, &trust, &[Role::Submission]).await;
    let msg = message(&ping(addr, &submission, &trust, Role::Signer).await);
    assert!(msg.contains("certificate expired"), "client: {msg}");
    assert!(server.await.expect("join").is_err());
}

#[tokio::test]
async fn client_refuses_server_naming_another_role() {
    let ca = new_ca();
    let trust = ca.trust();
    let relay = issue(&ca, Role::Relay);
    let submission = issue(&ca, Role::Submission);
    let (addr, server) = serve_once(&relay, &trust, &[Role::Submission]).await;
    let client = ping(addr, &submission, &trust, Role::Signer).await;
    let msg = message(&client);
    assert!(
        msg.contains("not valid for name \"signer.mesh.scop.invalid\""),
        "client: {msg}"
    );
    assert!(server.await.expect("join").is_err());
}

/// A test CA built with rcgen directly, to make certificates our own `Ca`
/// refuses to make.
struct RawCa {
    key: KeyPair,
    params: CertificateParams,
    cert: CertificateDer<'static>,
}

impl RawCa {
    fn new() -> RawCa {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "raw test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.not_before = time_now() - time::Duration::hours(1);
        params.not_after = time_now() + time::Duration::days(1);
        let cert = params.self_signed(&key).expect("self-signed").der().clone();
        RawCa { key, params, cert }
    }

    fn leaf(&self, sans: Vec<SanType>) -> (CertificateDer<'static>, PrivatePkcs8KeyDer<'static>) {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut params = CertificateParams::default();
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = time_now() - time::Duration::hours(1);
        params.not_after = time_now() + time::Duration::days(1);
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("sign").der().clone();
        (cert, PrivatePkcs8KeyDer::from(key.serialize_der()))
    }

    fn trust(&self) -> TrustBundle {
        TrustBundle::new(vec![self.cert.clone()]).expect("trust")
    }
}

fn time_now() -> time::OffsetDateTime {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    time::OffsetDateTime::from_unix_timestamp(secs as i64).expect("time")
}

/// A raw rustls server presenting `cert`, for certificates `Identity`
/// would refuse to hold.
async fn raw_server(
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
) -> (SocketAddr, JoinHandle<()>) {
    let config = rustls::ServerConfig::builder_with_provider(scop_mesh::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key.into())
        .expect("config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        if let Ok((tcp, _)) = listener.accept().await {
            let _ = acceptor.accept(tcp).await;
        }
    });
    (addr, task)
}

#[tokio::test]
async fn mesh_dns_name_without_role_uri_or_with_a_conflicting_one_is_refused() {
    let raw = RawCa::new();
    let client_id = {
        let (cert, key) = raw.leaf(vec![
            SanType::URI("scop:role:submission".try_into().expect("uri")),
            SanType::DnsName("submission.mesh.scop.invalid".try_into().expect("dns")),
        ]);
        Identity::new(Role::Submission, cert, key).expect("identity")
    };
    let signer_dns = || SanType::DnsName("signer.mesh.scop.invalid".try_into().expect("dns"));
    let cases = [
        (vec![signer_dns()], "names no mesh role"),
        (
            vec![
                SanType::URI("scop:role:relay".try_into().expect("uri")),
                signer_dns(),
            ],
            "more than one mesh role",
        ),
        (
            vec![
                SanType::URI("scop:role:signer".try_into().expect("uri")),
                SanType::URI("scop:role:relay".try_into().expect("uri")),
                signer_dns(),
            ],
            "more than one mesh role",
        ),
        (
            vec![
                SanType::URI("scop:role:postmaster".try_into().expect("uri")),
                signer_dns(),
            ],
            "unknown role",
        ),
    ];
    for (sans, want) in cases {
        // WebPKI alone would accept each of these for signer.mesh.scop.invalid.
        let (cert, key) = raw.leaf(sans);
        let (addr, server) = raw_server(cert, key).await;
        let msg = message(&ping(addr, &client_id, &raw.trust(), Role::Signer).await);
        assert!(msg.contains(want), "want {want:?}, got {msg}");
        server.abort();
    }
    // The well-formed counterpart is accepted, so the refusals above are
    // about the names alone.
    let (cert, key) = raw.leaf(vec![
        SanType::URI("scop:role:signer".try_into().expect("uri")),
        signer_dns(),
    ]);
    let (addr, server) = raw_server(cert, key).await;
    let conn = connect(addr, &client_id, &raw.trust(), Role::Signer)
        .await
        .expect("well-formed signer accepted");
    assert_eq!(conn.peer.role(), Role::Signer);
    server.abort();
}

#[tokio::test]
async fn every_pair_follows_the_table() {
    let ca = new_ca();
    let trust = ca.trust();
    let identities: Vec<Identity> = Role::ALL.iter().map(|r| issue(&ca, *r)).collect();
    let mut checked = 0;
    for server_id in &identities {
        let server_role = server_id.role();
        let accepted = server_role.accepted_clients();
        if accepted.is_empty() {
            continue;
        }
        let listener = MeshListener::bind_policy("127.0.0.1:0", server_id, &trust)
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        for client_id in &identities {
            let client_role = client_id.role();
            let connector = MeshConnector::new(client_id, &trust, server_role).expect("connector");
            let (server, client) = tokio::join!(
                async {
                    let mut c = listener.accept().await?.handshake().await?;
                    c.stream.shutdown().await.map_err(MeshError::Net)?;
                    Ok::<_, MeshError>(c.peer)
                },
                async {
                    let mut c = connector.connect(addr).await?;
                    let mut b = [0u8; 1];
                    // The server closes (close_notify) without writing if
                    // it accepted, or sends an alert if it refused.
                    c.stream.read(&mut b).await.map_err(MeshError::Net)
                }
            );
            if may_connect(client_role, server_role) {
                let peer = server.unwrap_or_else(|e| panic!("{client_role} -> {server_role}: {e}"));
                assert_eq!(peer.role(), client_role);
                assert_eq!(
                    peer.may_send_envelope_facts(server_role),
                    may_send_envelope_facts(client_role, server_role)
                );
                assert!(client.is_ok());
            } else {
                let e = server.expect_err("refused");
                assert!(
                    e.to_string().contains("may not connect"),
                    "{client_role} -> {server_role}: {e}"
                );
                assert!(client.is_err(), "{client_role} -> {server_role}");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 7 * 9);
}

#[tokio::test]
async fn silent_peer_hits_the_handshake_timeout() {
    let ca = new_ca();
    let signer = issue(&ca, Role::Signer);
    let listener = MeshListener::bind("127.0.0.1:0", &signer, &ca.trust(), &[Role::Submission])
        .await
        .expect("bind")
        .with_handshake_timeout(Duration::from_millis(200));
    let addr = listener.local_addr().expect("addr");
    let _silent = TcpStream::connect(addr).await.expect("tcp");
    let started = std::time::Instant::now();
    let result = listener.accept().await.expect("accept").handshake().await;
    assert!(
        matches!(result, Err(MeshError::HandshakeTimeout { .. })),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn server_config_refuses_an_empty_accepted_set() {
    let ca = new_ca();
    let mx = issue(&ca, Role::Mx);
    let err = MeshListener::bind("127.0.0.1:0", &mx, &ca.trust(), &[])
        .await
        .expect_err("empty set");
    assert!(matches!(
        err,
        MeshError::NoAcceptedRoles { server: Role::Mx }
    ));
}

#[tokio::test]
async fn silent_server_hits_the_client_handshake_timeout() {
    let ca = new_ca();
    let submission = issue(&ca, Role::Submission);
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = tcp.local_addr().expect("addr");
    let holder = tokio::spawn(async move {
        let held = tcp.accept().await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(held);
    });
    let connector = MeshConnector::new(&submission, &ca.trust(), Role::Signer)
        .expect("connector")
        .with_handshake_timeout(Duration::from_millis(200));
    let started = std::time::Instant::now();
    let result = connector.connect(addr).await;
    assert!(
        matches!(result, Err(MeshError::HandshakeTimeout { .. })),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    holder.abort();
}
