//! The relay finds mail servers through DNS: MX records by preference, the
//! implicit MX, the null MX (RFC 7505) and a missing domain, answered by
//! SCoP's own authoritative server (scop-dns) on loopback, asked through
//! the validating resolver with `test.` as a stub zone (unsigned, so the
//! answers are insecure but usable).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Setup, domain, file_with, mesh_dir, run_swaks};
use scop_dns::hickory_proto::rr::Name;
use scop_dns::policy::Policy;
use scop_dns::resolver::{Config as ResolverConfig, Stub};
use scop_dns::tsig::KeyRing;
use scop_dns::{Engine, Zone};
use scop_mail::mxlookup::{Answer, Dns, Plan, plan};
use scop_mail::relay::Routes;

const ZONE: &str = "$ORIGIN b.test.\n$TTL 300\n\
@ IN SOA ns hostmaster 1 7200 3600 1209600 300\n\
@ NS ns\nns A 127.0.0.1\n\
@ MX 20 backup\n@ MX 10 mx1\nmx1 A 127.0.0.1\nbackup A 127.0.0.1\nbackup AAAA ::1\n\
null MX 0 .\n\
plain A 127.0.0.1\n";

/// Our authoritative server for `zones` on loopback.
async fn serve_zones(zones: &[&str]) -> SocketAddr {
    let zones = zones
        .iter()
        .map(|z| Zone::from_master(z, None).unwrap())
        .collect();
    common::serve_engine(Engine::new(zones, KeyRing::default(), Policy::default()).unwrap()).await
}

async fn dns() -> SocketAddr {
    serve_zones(&[ZONE]).await
}

fn dns_with_timeout(addr: SocketAddr, timeout: Duration) -> Dns {
    Dns::new(&ResolverConfig {
        stubs: vec![Stub {
            zone: Name::from_ascii("test.").unwrap(),
            servers: vec![addr],
        }],
        timeout,
        ..ResolverConfig::default()
    })
    .unwrap()
}

fn stub(addr: SocketAddr) -> Dns {
    dns_with_timeout(addr, Duration::from_secs(5))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mx_records_implicit_and_null_mx() {
    let s = stub(dns().await);
    assert_eq!(
        plan("b.test", s.mx("b.test").await),
        Plan::Hosts(vec!["mx1.b.test".into(), "backup.b.test".into()])
    );
    assert_eq!(plan("null.b.test", s.mx("null.b.test").await), Plan::NullMx);
    assert_eq!(
        plan("plain.b.test", s.mx("plain.b.test").await),
        Plan::Hosts(vec!["plain.b.test".into()])
    );
    assert_eq!(s.mx("missing.b.test").await, Answer::NxDomain);
    let mut backup = s.addresses("backup.b.test").await.unwrap();
    backup.sort();
    assert_eq!(
        backup,
        vec![
            "127.0.0.1".parse::<std::net::IpAddr>().unwrap(),
            "::1".parse().unwrap()
        ]
    );
    // A resolver that does not answer is a temporary failure.
    let dead = dns_with_timeout("127.0.0.1:9".parse().unwrap(), Duration::from_millis(300));
    assert!(matches!(dead.mx("b.test").await, Answer::Temp(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_delivers_by_mx_and_bounces_null_mx_and_missing_domains_at_once() {
    let dns = dns().await;
    let b = domain("b.test", &[("bob@b.test", "pw")], Setup::default()).await;
    let routes = Routes {
        port: b.mx().port(),
        dns: Some(stub(dns)),
        ..Routes::default()
    };
    let a = domain(
        "a.test",
        &[("alice@a.test", "alice-password")],
        Setup {
            routes,
            ..Setup::default()
        },
    )
    .await;
    let data = file_with(
        &a.dir,
        "msg.eml",
        b"From: alice@a.test\r\nSubject: by mx\r\n\r\nhello\r\n",
    );
    for rcpt in ["bob@b.test", "x@null.b.test", "y@missing.b.test"] {
        let (ok, t) = common::submit_as_alice(&a, rcpt, &data).await;
        assert!(ok, "{rcpt}: {t}");
    }
    let got = b.wait_messages("bob@b.test", 1, 20).await;
    assert!(String::from_utf8_lossy(&got[0]).contains("Subject: by mx"));
    // Both failures are permanent: reported at once, not after the lifetime.
    let bounces = a.wait_messages("alice@a.test", 2, 20).await;
    let all: String = bounces
        .iter()
        .map(|m| String::from_utf8_lossy(m).to_string())
        .collect();
    assert!(
        all.contains("Final-Recipient: rfc822; x@null.b.test"),
        "{all}"
    );
    assert!(all.contains("Status: 5.1.10"), "{all}");
    assert!(
        all.contains("Final-Recipient: rfc822; y@missing.b.test"),
        "{all}"
    );
    assert!(all.contains("Status: 5.1.2"), "{all}");
}

const GOOD: &str = "$ORIGIN good.test.\n$TTL 300\n\
@ IN SOA ns hostmaster 1 7200 3600 1209600 300\n@ NS ns\nns A 127.0.0.1\n\
@ TXT \"v=spf1 ip4:127.0.0.0/8 -all\"\n_dmarc TXT \"v=DMARC1; p=reject\"\n";
const VICTIM: &str = "$ORIGIN victim.test.\n$TTL 300\n\
@ IN SOA ns hostmaster 1 7200 3600 1209600 300\n@ NS ns\nns A 127.0.0.1\n\
@ TXT \"v=spf1 ip4:192.0.2.10 -all\"\n_dmarc TXT \"v=DMARC1; p=reject\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mx_checks_spf_and_dmarc_and_rejects_a_forged_from() {
    let dns = serve_zones(&[GOOD, VICTIM]).await;
    let b = domain(
        "b.test",
        &[("bob@b.test", "pw")],
        Setup {
            verifier: Some(scop_mail::verifier::Verifier {
                dns: stub(dns),
                authserv_id: "mail.b.test".into(),
                enforce: true,
                reports: None,
            }),
            ..Setup::default()
        },
    )
    .await;
    let p = b.mx().port().to_string();
    let send = |from: &str, header_from: &str, forged_ar: bool| {
        let data = format!(
            "{}From: {header_from}\r\nSubject: from {header_from}\r\n\r\nhello\r\n",
            if forged_ar {
                "Authentication-Results: mail.b.test; dmarc=pass\r\n"
            } else {
                ""
            }
        );
        let file = file_with(
            &b.dir,
            &format!("{}.eml", header_from.replace('@', "_")),
            data.as_bytes(),
        );
        [
            "--server",
            "127.0.0.1",
            "--port",
            &p,
            "--from",
            from,
            "--to",
            "bob@b.test",
            "--data",
            &file,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
    };
    let (ok, t) = run_swaks(send("alice@good.test", "alice@good.test", false)).await;
    assert!(ok, "{t}");
    let got = b.wait_messages("bob@b.test", 1, 10).await;
    let m = String::from_utf8_lossy(&got[0]).to_string();
    assert!(m.contains("Authentication-Results: mail.b.test;"), "{m}");
    assert!(m.contains("spf=pass"), "{m}");
    assert!(m.contains("dmarc=pass"), "{m}");
    // A forged victim.test From from an address its SPF does not allow,
    // with a forged Authentication-Results of ours: refused.
    let (ok, t) = run_swaks(send("ceo@victim.test", "ceo@victim.test", true)).await;
    assert!(!ok, "{t}");
    assert!(t.contains("550 5.7.1"), "{t}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(b.messages("bob@b.test").len(), 1);
    assert!(b.junk("bob@b.test").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submission_signs_with_dkim_and_the_receiving_mx_verifies_it() {
    use scop_dkim::{KeyKind, Signer, SigningKey};
    let rsa = Signer::new(
        SigningKey::generate(KeyKind::Rsa2048).unwrap(),
        "a.test",
        "rsa1",
    )
    .unwrap();
    let ed = Signer::new(
        SigningKey::generate(KeyKind::Ed25519).unwrap(),
        "a.test",
        "ed1",
    )
    .unwrap();
    // SPF fails from loopback on purpose: DMARC must pass through DKIM.
    let zone = format!(
        "$ORIGIN a.test.\n$TTL 300\n@ IN SOA ns hostmaster 1 7200 3600 1209600 300\n@ NS ns\nns A 127.0.0.1\n\
         @ TXT \"v=spf1 ip4:192.0.2.10 -all\"\n_dmarc TXT \"v=DMARC1; p=reject\"\n\
         rsa1._domainkey TXT \"{}\"\ned1._domainkey TXT \"{}\"\n",
        rsa.key().dns_txt().unwrap(),
        ed.key().dns_txt().unwrap()
    );
    // An RSA-2048 key is longer than one 255-byte character-string.
    let zone = zone.replace(
        &format!("\"{}\"", rsa.key().dns_txt().unwrap()),
        &rsa.key()
            .dns_txt()
            .unwrap()
            .as_bytes()
            .chunks(200)
            .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
            .collect::<Vec<_>>()
            .join(" "),
    );
    let dns = serve_zones(&[&zone]).await;

    let b = domain(
        "b.test",
        &[("bob@b.test", "pw")],
        Setup {
            verifier: Some(scop_mail::verifier::Verifier {
                dns: stub(dns),
                authserv_id: "mail.b.test".into(),
                enforce: true,
                reports: None,
            }),
            ..Setup::default()
        },
    )
    .await;
    let mut routes = Routes::default();
    routes.fixed.insert("b.test".into(), vec![b.mx()]);
    let a = domain(
        "a.test",
        &[("alice@a.test", "alice-password")],
        Setup {
            routes,
            dkim: vec![("a.test".into(), rsa), ("a.test".into(), ed)],
            ..Setup::default()
        },
    )
    .await;
    let data = file_with(
        &a.dir,
        "msg.eml",
        b"From: Alice <alice@a.test>\r\nTo: bob@b.test\r\nSubject: signed\r\n\r\nhello\r\n",
    );
    let (ok, t) = common::submit_as_alice(&a, "bob@b.test", &data).await;
    assert!(ok, "{t}");
    let got = b.wait_messages("bob@b.test", 1, 20).await;
    let m = String::from_utf8_lossy(&got[0]).to_string();
    assert_eq!(m.matches("DKIM-Signature:").count(), 2, "{m}");
    assert!(m.contains("spf=fail"), "{m}");
    assert_eq!(m.matches("dkim=pass").count(), 2, "{m}");
    assert!(m.contains("dmarc=pass"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resolver_compartment_answers_the_relay_and_the_verifier_only() {
    use scop_mesh::Role;
    let mesh = mesh_dir("ok");
    let identity = mesh.load_identity(Role::Resolver).unwrap();
    let trust = mesh.load_trust().unwrap();
    let listener = scop_mesh::MeshListener::bind_policy("127.0.0.1:0", &identity, &trust)
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(scop_mail::dns_hop::serve(
        listener,
        stub(dns().await),
        stop_rx,
    ));
    // The relay asks over the mesh: the same answers as a local resolver,
    // on one reused connection.
    let relay = Dns::over_mesh(&mesh, Role::Relay, addr).unwrap();
    for _ in 0..3 {
        assert_eq!(
            plan("b.test", relay.mx("b.test").await),
            Plan::Hosts(vec!["mx1.b.test".into(), "backup.b.test".into()])
        );
    }
    assert_eq!(
        plan("null.b.test", relay.mx("null.b.test").await),
        Plan::NullMx
    );
    assert_eq!(relay.mx("missing.b.test").await, Answer::NxDomain);
    assert_eq!(relay.txt("plain.b.test").await, Answer::NoData);
    let mut backup = relay.addresses("backup.b.test").await.unwrap();
    backup.sort();
    assert_eq!(backup.len(), 2);
    // A name outside every configured zone: no usable answer.
    assert!(matches!(
        relay.mx("elsewhere.example").await,
        Answer::Temp(_)
    ));
    let verifier = Dns::over_mesh(&mesh, Role::Verifier, addr).unwrap();
    assert_eq!(verifier.mx("missing.b.test").await, Answer::NxDomain);
    // Roles the hop table does not name get nothing, and a certificate of
    // another mesh neither.
    for (dir, role) in [
        (&mesh, Role::Mx),
        (&mesh, Role::Submission),
        (&mesh_dir("other"), Role::Relay),
    ] {
        let other = Dns::over_mesh(dir, role, addr).unwrap();
        assert!(
            matches!(other.mx("b.test").await, Answer::Temp(_)),
            "{role} got an answer"
        );
    }
}
