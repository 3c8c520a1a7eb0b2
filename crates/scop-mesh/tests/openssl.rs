//! Interoperability with OpenSSL, an independent X.509 and TLS 1.3
//! implementation: it accepts our certificates for their purposes and
//! completes the mesh handshake with our listener.

mod common;

use std::path::Path;
use std::process::{Output, Stdio};

use common::temp_dir;
use scop_mesh::{ExtraNames, MeshDir, MeshError, MeshListener, PeerRole, Role, Validity};
use tokio::io::AsyncWriteExt;

fn openssl(args: &[&str]) -> Output {
    scop_testkit::debian_command("usr/bin/openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("openssl runs (`cargo xtask peers` installs Debian's openssl)")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn init(name: &str) -> MeshDir {
    let roles: Vec<(Role, ExtraNames)> = [Role::Submission, Role::Signer, Role::Relay]
        .into_iter()
        .map(|r| (r, ExtraNames::none()))
        .collect();
    let ca = Validity::starting(
        std::time::SystemTime::now() - common::HOUR,
        30 * common::DAY,
    )
    .expect("validity");
    MeshDir::init(temp_dir(name).join("mesh"), ca, common::current(), &roles).expect("init")
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

#[test]
fn openssl_verifies_our_chain_names_and_purposes() {
    let dir = init("openssl-verify");
    let trust = dir.trust_path();
    for role in [Role::Submission, Role::Signer] {
        let cert = dir.cert_path(role);
        for purpose in ["sslclient", "sslserver"] {
            let out = openssl(&[
                "verify",
                "-x509_strict",
                "-CAfile",
                p(&trust),
                "-purpose",
                purpose,
                "-verify_hostname",
                &role.mesh_dns_name(),
                p(&cert),
            ]);
            assert!(out.status.success(), "{role} {purpose}: {}", text(&out));
        }
        let out = openssl(&["x509", "-noout", "-ext", "subjectAltName", "-in", p(&cert)]);
        let shown = text(&out);
        assert!(shown.contains(&format!("URI:scop:role:{role}")), "{shown}");
        let out = openssl(&[
            "x509",
            "-noout",
            "-ext",
            "basicConstraints",
            "-in",
            p(&cert),
        ]);
        assert!(text(&out).contains("CA:FALSE"), "{}", text(&out));
    }
    let out = openssl(&[
        "x509",
        "-noout",
        "-ext",
        "basicConstraints",
        "-in",
        p(&dir.ca_cert_path()),
    ]);
    assert!(text(&out).contains("CA:TRUE, pathlen:0"), "{}", text(&out));
    let out = openssl(&[
        "verify",
        "-CAfile",
        p(&trust),
        "-verify_hostname",
        "signer.mesh.scop.invalid",
        p(&dir.cert_path(Role::Relay)),
    ]);
    assert!(!out.status.success(), "relay passed as signer");
}

/// Accept one connection; the handshake's outcome is returned.
async fn accept_one(listener: MeshListener) -> Result<PeerRole, MeshError> {
    let mut conn = listener.accept().await?.handshake().await?;
    conn.stream.shutdown().await.map_err(MeshError::Net)?;
    Ok(conn.peer)
}

async fn s_client(dir: &MeshDir, client: Role, port: u16, version: &str) -> Output {
    let args = vec![
        "s_client".to_string(),
        "-connect".into(),
        format!("127.0.0.1:{port}"),
        version.into(),
        "-servername".into(),
        "signer.mesh.scop.invalid".into(),
        "-verify_hostname".into(),
        "signer.mesh.scop.invalid".into(),
        "-verify_return_error".into(),
        "-CAfile".into(),
        p(&dir.trust_path()).into(),
        "-cert".into(),
        p(&dir.cert_path(client)).into(),
        "-key".into(),
        p(&dir.key_path(client)).into(),
        "-brief".into(),
    ];
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        openssl(&refs)
    })
    .await
    .expect("join")
}

#[tokio::test]
async fn openssl_client_is_accepted_or_refused_by_role() {
    let dir = init("openssl-handshake");
    let trust = dir.load_trust().expect("trust");
    let signer = dir.load_identity(Role::Signer).expect("signer");
    for (client, allowed) in [(Role::Submission, true), (Role::Relay, false)] {
        let listener = MeshListener::bind_policy("127.0.0.1:0", &signer, &trust)
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (served, out) = tokio::join!(
            accept_one(listener),
            s_client(&dir, client, port, "-tls1_3")
        );
        let shown = text(&out);
        assert!(
            shown.contains("Verification: OK"),
            "OpenSSL did not verify the signer: {shown}"
        );
        if allowed {
            assert_eq!(served.expect("accepted").role(), client, "{shown}");
        } else {
            let e = served.expect_err("refused");
            assert!(
                e.to_string().contains("relay may not connect to signer"),
                "{e}"
            );
        }
    }
}

#[tokio::test]
async fn tls_1_2_is_refused() {
    let dir = init("openssl-tls12");
    let trust = dir.load_trust().expect("trust");
    let signer = dir.load_identity(Role::Signer).expect("signer");
    let listener = MeshListener::bind_policy("127.0.0.1:0", &signer, &trust)
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (served, out) = tokio::join!(
        accept_one(listener),
        s_client(&dir, Role::Submission, port, "-tls1_2")
    );
    assert!(!out.status.success(), "{}", text(&out));
    let e = served.expect_err("refused");
    assert!(
        e.to_string().contains("SupportedVersionsExtensionRequired"),
        "{e}"
    );
}
