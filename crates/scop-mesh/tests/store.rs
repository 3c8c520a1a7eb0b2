//! The mesh directory: files, permissions, loading errors and rotation.

mod common;

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use common::{DAY, HOUR, current, temp_dir};
use scop_mesh::{
    ExtraNames, Identity, MeshDir, MeshError, MeshListener, PeerRole, Role, TrustBundle, Validity,
    connect, role_of_certificate,
};
use tokio::io::AsyncWriteExt;

fn ca_validity() -> Validity {
    Validity::starting(SystemTime::now() - HOUR, 365 * DAY).expect("validity")
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("metadata").permissions().mode() & 0o7777
}

fn init(name: &str, roles: &[Role]) -> MeshDir {
    let entries: Vec<(Role, ExtraNames)> = roles.iter().map(|r| (*r, ExtraNames::none())).collect();
    MeshDir::init(
        temp_dir(name).join("mesh"),
        ca_validity(),
        current(),
        &entries,
    )
    .expect("init")
}

#[test]
fn init_writes_keys_owner_only_and_everything_loads() {
    let dir = init("init", &Role::ALL);
    assert_eq!(mode(dir.root()), 0o700);
    assert_eq!(mode(&dir.ca_key_path()), 0o600);
    assert_eq!(mode(&dir.ca_cert_path()), 0o644);
    assert_eq!(mode(&dir.trust_path()), 0o644);
    for role in Role::ALL {
        assert_eq!(mode(&dir.key_path(role)), 0o600, "{role}");
        assert_eq!(mode(&dir.cert_path(role)), 0o644, "{role}");
        let id = dir.load_identity(role).expect("load");
        assert_eq!(id.role(), role);
        assert_eq!(role_of_certificate(id.certificate()).expect("role"), role);
    }
    assert_eq!(dir.roles(), Role::ALL.to_vec());
    assert_eq!(dir.load_trust().expect("trust").cas().len(), 1);
    dir.load_ca().expect("CA");
    let leftovers: Vec<_> = fs::read_dir(dir.root())
        .expect("read_dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let again = MeshDir::init(dir.root(), ca_validity(), current(), &[]);
    assert!(matches!(again, Err(MeshError::AlreadyExists { .. })));
}

#[test]
fn readable_keys_are_refused() {
    let dir = init("perm", &[Role::Signer]);
    for bad in [0o644, 0o640, 0o604, 0o660, 0o601] {
        fs::set_permissions(dir.key_path(Role::Signer), fs::Permissions::from_mode(bad))
            .expect("chmod");
        match dir.load_identity(Role::Signer) {
            Err(MeshError::InsecurePermissions { mode, .. }) => assert_eq!(mode, bad),
            other => panic!("mode {bad:o}: {other:?}"),
        }
    }
    fs::set_permissions(
        dir.key_path(Role::Signer),
        fs::Permissions::from_mode(0o400),
    )
    .expect("chmod");
    dir.load_identity(Role::Signer).expect("0400 is owner-only");

    fs::set_permissions(dir.ca_key_path(), fs::Permissions::from_mode(0o644)).expect("chmod");
    assert!(matches!(
        dir.load_ca(),
        Err(MeshError::InsecurePermissions { .. })
    ));

    // A symbolic link to a private key is refused even if the target is 0600.
    let key = dir.key_path(Role::Signer);
    let real = dir.root().join("real.key");
    fs::rename(&key, &real).expect("rename");
    fs::set_permissions(&real, fs::Permissions::from_mode(0o600)).expect("chmod");
    std::os::unix::fs::symlink(&real, &key).expect("symlink");
    assert!(matches!(
        dir.load_identity(Role::Signer),
        Err(MeshError::InsecurePermissions { .. })
    ));
}

#[test]
fn missing_mismatched_and_misnamed_files_are_clear_errors() {
    let dir = init("errors", &[Role::Signer, Role::Relay]);
    match dir.load_identity(Role::Mx) {
        Err(MeshError::Missing { path }) => assert_eq!(path, dir.cert_path(Role::Mx)),
        other => panic!("{other:?}"),
    }
    // The relay's key beside the signer's certificate.
    fs::copy(dir.key_path(Role::Relay), dir.key_path(Role::Signer)).expect("copy");
    match dir.load_identity(Role::Signer) {
        Err(MeshError::KeyMismatch { path }) => assert_eq!(path, dir.cert_path(Role::Signer)),
        other => panic!("{other:?}"),
    }
    // The relay's certificate and key under the signer's name.
    fs::copy(dir.cert_path(Role::Relay), dir.cert_path(Role::Signer)).expect("copy");
    match dir.load_identity(Role::Signer) {
        Err(MeshError::WrongRole { expected, found }) => {
            assert_eq!((expected, found), (Role::Signer, Role::Relay));
        }
        other => panic!("{other:?}"),
    }
    // Not PEM at all.
    fs::write(dir.cert_path(Role::Relay), b"hello").expect("write");
    assert!(matches!(
        dir.load_identity(Role::Relay),
        Err(MeshError::Pem { .. })
    ));
    fs::write(dir.trust_path(), b"").expect("write");
    assert!(matches!(dir.load_trust(), Err(MeshError::Pem { .. })));
    // Oversized.
    fs::write(dir.cert_path(Role::Relay), vec![b'A'; 70 * 1024]).expect("write");
    assert!(matches!(
        dir.load_identity(Role::Relay),
        Err(MeshError::FileTooLarge { .. })
    ));
}

#[test]
fn reissue_changes_the_key_and_keeps_extra_names() {
    let root = temp_dir("reissue").join("mesh");
    let extra = ExtraNames::new(
        &["Relay.Example.ORG"],
        &[IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))],
    )
    .expect("extra");
    let dir =
        MeshDir::init(&root, ca_validity(), current(), &[(Role::Relay, extra)]).expect("init");
    let before = dir.load_identity(Role::Relay).expect("load");
    let kept = ExtraNames::from_certificate(before.certificate()).expect("names");
    assert_eq!(kept.dns(), ["relay.example.org"]);
    assert_eq!(kept.ips(), [IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))]);
    dir.reissue(Role::Relay, current()).expect("reissue");
    let after = dir.load_identity(Role::Relay).expect("load");
    assert_ne!(before.certificate(), after.certificate());
    assert_ne!(
        before.key_pem().expect("pem"),
        after.key_pem().expect("pem")
    );
    assert_eq!(
        ExtraNames::from_certificate(after.certificate()).expect("names"),
        kept
    );
    assert_eq!(mode(&dir.key_path(Role::Relay)), 0o600);

    for bad in ["relay.mesh.scop.invalid", "*.example.org", "a b", ""] {
        assert!(
            matches!(
                ExtraNames::new(&[bad], &[]),
                Err(MeshError::InvalidExtraName { .. })
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn rotation_steps_are_refused_out_of_order() {
    let dir = init("order", &[Role::Signer]);
    assert!(matches!(
        dir.finish_ca_rotation(),
        Err(MeshError::Rotation(_))
    ));
    dir.begin_ca_rotation(ca_validity()).expect("begin");
    assert!(matches!(
        dir.begin_ca_rotation(ca_validity()),
        Err(MeshError::Rotation(_))
    ));
    dir.finish_ca_rotation().expect("finish");
    assert!(dir.previous_ca().expect("read").is_none());
}

/// Serve one connection as `server` (accepting its policy roles) and
/// connect as `client`; the result is what the server saw.
async fn hop(
    server: &Identity,
    server_trust: &TrustBundle,
    client: &Identity,
    client_trust: &TrustBundle,
) -> Result<PeerRole, MeshError> {
    let listener = MeshListener::bind_policy("127.0.0.1:0", server, server_trust)
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (served, connected) = tokio::join!(
        async {
            let mut c = listener.accept().await?.handshake().await?;
            c.stream.shutdown().await.map_err(MeshError::Net)?;
            Ok::<_, MeshError>(c.peer)
        },
        connect(addr, client, client_trust, server.role())
    );
    let peer = served?;
    connected?;
    Ok(peer)
}

#[tokio::test]
async fn ca_rotation_keeps_old_peers_working_during_the_overlap() {
    let dir = init("rotate", &[Role::Submission, Role::Signer]);
    let trust_old = dir.load_trust().expect("trust");
    let old_sub = dir.load_identity(Role::Submission).expect("load");
    let old_signer = dir.load_identity(Role::Signer).expect("load");
    hop(&old_signer, &trust_old, &old_sub, &trust_old)
        .await
        .expect("before rotation");

    // Step 1: new CA, both trusted, certificates unchanged.
    dir.begin_ca_rotation(ca_validity()).expect("begin");
    let trust_both = dir.load_trust().expect("trust");
    assert_eq!(trust_both.cas().len(), 2);
    assert!(dir.previous_ca().expect("read").is_some());
    hop(&old_signer, &trust_both, &old_sub, &trust_both)
        .await
        .expect("old certificates, both CAs trusted");

    // Step 2: new certificates from the (reloaded) new CA.
    assert_eq!(
        dir.reissue_all(current()).expect("reissue"),
        vec![Role::Submission, Role::Signer]
    );
    let new_sub = dir.load_identity(Role::Submission).expect("load");
    let new_signer = dir.load_identity(Role::Signer).expect("load");
    assert_ne!(new_sub.certificate(), old_sub.certificate());
    let seen = hop(&new_signer, &trust_both, &old_sub, &trust_both)
        .await
        .expect("old client, new server");
    assert_eq!(seen.role(), Role::Submission);
    hop(&old_signer, &trust_both, &new_sub, &trust_both)
        .await
        .expect("new client, old server");
    hop(&new_signer, &trust_both, &new_sub, &trust_both)
        .await
        .expect("new client, new server");
    // A compartment that never reloaded its trust refuses new certificates:
    // this is why every step is followed by a restart.
    let stale = hop(&old_signer, &trust_old, &new_sub, &trust_both).await;
    assert!(
        stale
            .as_ref()
            .is_err_and(|e| e.to_string().contains("UnknownIssuer")),
        "{stale:?}"
    );

    // Step 3: only the new CA; old certificates stop working.
    dir.finish_ca_rotation().expect("finish");
    let trust_new = dir.load_trust().expect("trust");
    assert_eq!(trust_new.cas().len(), 1);
    hop(&new_signer, &trust_new, &new_sub, &trust_new)
        .await
        .expect("after rotation");
    let old = hop(&new_signer, &trust_new, &old_sub, &trust_both).await;
    assert!(
        old.as_ref()
            .is_err_and(|e| e.to_string().contains("UnknownIssuer")),
        "{old:?}"
    );
}

#[tokio::test]
async fn reissue_with_a_past_validity_is_refused_and_a_current_one_accepted() {
    let dir = init("leaf", &[Role::Submission, Role::Signer]);
    let trust = dir.load_trust().expect("trust");
    let signer = dir.load_identity(Role::Signer).expect("load");
    let now = SystemTime::now();
    let past = Validity::new(now - 3 * HOUR, now - HOUR).expect("validity");
    let stale = dir.reissue(Role::Submission, past).expect("reissue");
    let refused = hop(&signer, &trust, &stale, &trust).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("certificate expired")),
        "{refused:?}"
    );
    let short = Validity::starting(now - HOUR, Duration::from_secs(3 * 3600)).expect("validity");
    let fresh = dir.reissue(Role::Submission, short).expect("reissue");
    let seen = hop(&signer, &trust, &fresh, &trust)
        .await
        .expect("reissued");
    assert_eq!(seen.role(), Role::Submission);
}
