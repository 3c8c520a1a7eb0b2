//! DANE (RFC 7672) and MTA-STS (RFC 8461) on the relay.
//!
//! DANE: MX hosts whose TLSA records are DNSSEC-validated get TLS that
//! must authenticate, against SCoP's own MX (DANE-EE, `3 1 1`) and
//! against Postfix 3.7 with a certificate issued by a private CA
//! (DANE-TA, `2 0 1`). MTA-STS: policies fetched over HTTPS decide which
//! MX hosts a domain's mail may go to, and that their certificates must
//! validate. The zones are served by scop-dns on loopback: `b.test` and
//! `d.test` signed (their keys are the resolver's trust anchors),
//! `c.test` and `s.test` unsigned (insecure).

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Domain, Setup, domain, submit_as_alice};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use scop_dns::dnssec::{Algorithm, Settings, SigningKey};
use scop_dns::hickory_proto::rr::Name;
use scop_dns::policy::Policy;
use scop_dns::resolver::{Config as ResolverConfig, Stub, parse_anchors};
use scop_dns::tsig::KeyRing;
use scop_dns::{Engine, Zone};
use scop_mail::mta_sts::Sts;
use scop_mail::mxlookup::Dns;
use scop_mail::relay::Routes;
use scop_mail::tls_reports::TlsReporter;
use scop_mesh::Role;
use scop_mta::dane::{Lookup, Tlsa};
use scop_store::Outcome;
use scop_testkit::postfix::{self, Postfix};

fn now() -> u64 {
    scop_mail::now() as u64
}

fn der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

fn zone_head(origin: &str) -> String {
    format!(
        "$ORIGIN {origin}.\n$TTL 300\n\
         @ IN SOA ns hostmaster 1 7200 3600 1209600 300\n@ NS ns\nns A 127.0.0.1\n"
    )
}

/// Serves `zones` (text, and whether to sign it) on loopback; a resolver
/// for them with the signed zones' keys as trust anchors.
async fn serve(zones: &[(&str, &str, bool)]) -> Dns {
    serve_with_dead(zones, &[]).await
}

/// As [`serve`], with stub zones `dead` whose server does not answer
/// (a closed port): every lookup there fails.
async fn serve_with_dead(zones: &[(&str, &str, bool)], dead: &[&str]) -> Dns {
    let mut parsed = Vec::new();
    let mut keys = Vec::new();
    for (origin, text, sign) in zones {
        parsed.push(Zone::from_master(text, None).unwrap());
        if *sign {
            let name = Name::from_ascii(format!("{origin}.")).unwrap();
            let key =
                SigningKey::from_secret(&name, Algorithm::EcdsaP256Sha256, true, &[7; 32]).unwrap();
            keys.push((name, key));
        }
    }
    let mut engine = Engine::new(parsed, KeyRing::default(), Policy::default()).unwrap();
    let mut anchors = String::new();
    for (name, key) in keys {
        anchors.push_str(&key.dnskey_text());
        anchors.push('\n');
        engine
            .sign_zone(&name, Settings::new(vec![key]), now())
            .unwrap();
    }
    let addr = common::serve_engine(engine).await;
    let closed = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let stub = |zone: &str, server| Stub {
        zone: Name::from_ascii(format!("{zone}.")).unwrap(),
        servers: vec![server],
    };
    Dns::new(&ResolverConfig {
        stubs: zones
            .iter()
            .map(|(origin, _, _)| stub(origin, addr))
            .chain(dead.iter().map(|zone| stub(zone, closed)))
            .collect(),
        anchors: parse_anchors(&anchors).unwrap(),
        ..ResolverConfig::default()
    })
    .unwrap()
}

/// The sending domain a.test, relaying through `dns` to `port`.
async fn sender(dns: Dns, port: u16) -> Domain {
    sender_with(dns, port, None, None).await
}

/// The same, with MTA-STS and TLS reports when given.
async fn sender_with(
    dns: Dns,
    port: u16,
    sts: Option<Arc<Sts>>,
    tls_reports: Option<Arc<TlsReporter>>,
) -> Domain {
    domain(
        "a.test",
        &[("alice@a.test", "alice-password")],
        Setup {
            routes: Routes {
                port,
                dns: Some(dns),
                sts,
                tls_reports,
                ..Routes::default()
            },
            ..Setup::default()
        },
    )
    .await
}

async fn send(a: &Domain, rcpt: &str) {
    let body = format!("From: alice@a.test\r\nTo: {rcpt}\r\nSubject: to {rcpt}\r\n\r\nhello\r\n");
    let file = common::file_with(&a.dir, &format!("{rcpt}.eml"), body.as_bytes());
    let (ok, t) = submit_as_alice(a, rcpt, &file).await;
    assert!(ok, "{rcpt}: {t}");
}

/// Waits until `rcpt`'s first attempt is recorded; its outcome and detail.
async fn first_outcome(a: &Domain, rcpt: &str) -> (Outcome, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for entry in a.store.list_queue().await.unwrap() {
            for r in a.store.delivery_log(entry.id).await.unwrap() {
                if r.rcpt == rcpt {
                    return (r.outcome, r.detail);
                }
            }
        }
        assert!(Instant::now() < deadline, "no attempt for {rcpt}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_authenticates_mx_hosts_with_validated_tlsa_records() {
    let b = domain("b.test", &[("bob@b.test", "pw")], Setup::default()).await;
    for (d, user) in [
        ("bad.b.test", "carol@bad.b.test"),
        ("mixed.b.test", "dave@mixed.b.test"),
        ("pkix.b.test", "erin@pkix.b.test"),
        ("c.test", "fay@c.test"),
        ("dead.b.test", "gina@dead.b.test"),
    ] {
        b.store.add_domain(d).await.unwrap();
        b.store.add_user(user, "pw").await.unwrap();
    }
    let port = b.mx().port();
    let good = Tlsa::ee_spki_sha256(&der(&b.cert)).unwrap().to_text();
    let wrong = format!("3 1 1 {}", "00".repeat(32));
    let pkix = format!("1 1 1 {}", "00".repeat(32));
    let signed = format!(
        "{}@ MX 10 mx\nmx A 127.0.0.1\n_{port}._tcp.mx TLSA {good}\n\
         bad MX 10 mx.bad\nmx.bad A 127.0.0.1\n_{port}._tcp.mx.bad TLSA {wrong}\n\
         mixed MX 10 mx.bad\nmixed MX 20 mx\n\
         pkix MX 10 mx.pkix\nmx.pkix A 127.0.0.1\n_{port}._tcp.mx.pkix TLSA {pkix}\n\
         _smtp._tls TXT \"v=TLSRPTv1; rua=mailto:alice@a.test\"\n\
         _smtp._tls.bad TXT \"v=TLSRPTv1;rua=mailto:alice@a.test\"\n\
         dead MX 10 mx.dead\nmx.dead A 127.0.0.1\n\
         _smtp._tls.dead TXT \"v=TLSRPTv1;rua=mailto:alice@a.test\"\n",
        zone_head("b.test")
    );
    // The same wrong record in an unsigned zone proves nothing: ignored.
    let unsigned = format!(
        "{}@ MX 10 mx\nmx A 127.0.0.1\n_{port}._tcp.mx TLSA {wrong}\n",
        zone_head("c.test")
    );
    // mx.dead.b.test's TLSA records sit in a zone whose server is gone:
    // their lookup fails.
    let dns = serve_with_dead(
        &[("b.test", &signed, true), ("c.test", &unsigned, false)],
        &["_tcp.mx.dead.b.test"],
    )
    .await;
    // The relay asks a resolver compartment over the mesh, as in a split
    // deployment: the validation status crosses the hop (the AD bit).
    let mesh = common::mesh_dir("dane");
    let identity = mesh.load_identity(Role::Resolver).unwrap();
    let trust = mesh.load_trust().unwrap();
    let listener = scop_mesh::MeshListener::bind_policy("127.0.0.1:0", &identity, &trust)
        .await
        .unwrap();
    let hop = listener.local_addr().unwrap();
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(scop_mail::dns_hop::serve(listener, dns.clone(), stop_rx));
    let over_mesh = Dns::over_mesh(&mesh, Role::Relay, hop).unwrap();
    for host in ["mx.b.test", "mx.c.test", "none.b.test"] {
        assert_eq!(
            over_mesh.tlsa(host, port).await,
            dns.tlsa(host, port).await,
            "{host}"
        );
    }
    assert!(matches!(
        over_mesh.tlsa("mx.b.test", port).await,
        Lookup::Records { secure: true, .. }
    ));
    assert!(matches!(
        over_mesh.tlsa("mx.c.test", port).await,
        Lookup::Records { secure: false, .. }
    ));
    assert_eq!(
        over_mesh.tlsa("none.b.test", port).await,
        Lookup::Denied { secure: true }
    );
    let a = sender_with(over_mesh, port, None, Some(reporter(2, None, None))).await;
    for rcpt in [
        "bob@b.test",
        "carol@bad.b.test",
        "dave@mixed.b.test",
        "erin@pkix.b.test",
        "fay@c.test",
        "gina@dead.b.test",
    ] {
        send(&a, rcpt).await;
    }
    // A matching DANE-EE record: delivered over TLS.
    let got = b.wait_messages("bob@b.test", 1, 30).await;
    assert!(
        String::from_utf8_lossy(&got[0]).contains("with ESMTPS"),
        "{}",
        String::from_utf8_lossy(&got[0])
    );
    // The first MX does not match; the second does.
    b.wait_messages("dave@mixed.b.test", 1, 30).await;
    // Only unusable (PKIX) records: TLS required, not authenticated.
    let got = b.wait_messages("erin@pkix.b.test", 1, 30).await;
    assert!(String::from_utf8_lossy(&got[0]).contains("with ESMTPS"));
    b.wait_messages("fay@c.test", 1, 30).await;
    // No record matches the only MX: deferred, never sent in clear.
    let (outcome, detail) = first_outcome(&a, "carol@bad.b.test").await;
    assert_eq!(outcome, Outcome::Deferred, "{detail}");
    assert!(detail.contains("certificate"), "{detail}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(b.messages("carol@bad.b.test").is_empty());
    // The only MX's TLSA lookup fails: deferred, as if unreachable.
    let (outcome, detail) = first_outcome(&a, "gina@dead.b.test").await;
    assert_eq!(outcome, Outcome::Deferred, "{detail}");
    assert!(detail.contains("TLSA lookup failed"), "{detail}");
    let queue = a.store.list_queue().await.unwrap();
    let waiting: Vec<&str> = queue
        .iter()
        .map(|m| m.recipients[0].rcpt.as_str())
        .collect();
    assert_eq!(
        waiting,
        ["carol@bad.b.test", "gina@dead.b.test"],
        "{queue:?}"
    );

    // REQUIRETLS (RFC 8689): to b.test, whose MX DANE authenticates and
    // offers REQUIRETLS, delivered; to c.test, whose TLSA records are not
    // validated, refused with 5.7.30 and reported with the header only.
    submit_requiretls(&a, &["bob@b.test", "fay@c.test"]).await;
    let got = b.wait_messages("bob@b.test", 2, 30).await;
    assert!(
        got.iter()
            .any(|m| String::from_utf8_lossy(m).contains("Subject: requiretls to bob@b.test"))
    );
    requiretls_report(&a, "fay@c.test", "DANE").await;
    assert_eq!(
        b.messages("fay@c.test").len(),
        1,
        "only the first, plain one"
    );

    // `TLS-Required: No` (RFC 8689 5): the sender lets the message go to
    // carol's MX although no TLSA record matches (still over TLS).
    let body = b"From: alice@a.test\r\nTo: carol@bad.b.test\r\nSubject: no policy\r\nTLS-Required: No\r\n\r\nhello\r\n";
    let file = common::file_with(&a.dir, "no-policy.eml", body);
    let (ok, t) = submit_as_alice(&a, "carol@bad.b.test", &file).await;
    assert!(ok, "{t}");
    let got = b.wait_messages("carol@bad.b.test", 1, 30).await;
    let got = String::from_utf8_lossy(&got[0]).to_string();
    assert!(
        got.contains("Subject: no policy") && got.contains("with ESMTPS"),
        "{got}"
    );

    // TLS reports (RFC 8460) on b.test and bad.b.test, which publish a
    // record; carol's `TLS-Required: No` session is not counted.
    expect_tls_reports(
        &a,
        None,
        &[
            ("b.test", "tlsa", "1+", "0"),
            ("bad.b.test", "tlsa", "0", "1+ tlsa-invalid mx.bad.b.test"),
            // No session to mx.dead.b.test: its TLSA lookup failed.
            (
                "dead.b.test",
                "tlsa",
                "0",
                "1+ dnssec-invalid mx.dead.b.test",
            ),
        ],
        &["mixed.b.test", "pkix.b.test", "c.test"],
    )
    .await;
}

/// A TLS reporter for the sender a.test, sending every `secs` seconds,
/// signing with `signer` (for a.test) when given, uploading with `https`.
fn reporter(
    secs: u64,
    signer: Option<scop_dkim::Signer>,
    https: Option<Arc<rustls::ClientConfig>>,
) -> Arc<TlsReporter> {
    let signers: HashMap<String, Vec<scop_dkim::Signer>> = signer
        .map(|s| ("a.test".to_string(), vec![s]))
        .into_iter()
        .collect();
    let mut r = TlsReporter::new(
        "relay.a.test",
        "tlsrpt-noreply@a.test",
        Arc::new(signers),
        Duration::from_secs(secs),
        now(),
    );
    r.https = https;
    Arc::new(r)
}

/// Waits (60 s at most) until the TLS reports in alice's mailbox cover
/// every domain of `want`, each `(domain, policy type, successes,
/// failures)`, where a count "N+" is at least N and the failures may be
/// followed by the first failure's result type and MX host; and none of
/// `none`.
async fn expect_tls_reports(
    a: &Domain,
    key_record: Option<&str>,
    want: &[(&str, &str, &str, &str)],
    none: &[&str],
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let totals = tls_report_totals(a, key_record).await;
        match reports_match(&totals, want, none) {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => panic!("{e}: {totals:?}"),
            // Later reports may add what is missing.
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Whether the `totals` lines of [`tls_report_totals`] are what
/// [`expect_tls_reports`] wants.
fn reports_match(
    totals: &[String],
    want: &[(&str, &str, &str, &str)],
    none: &[&str],
) -> Result<(), String> {
    let line_of = |d: &str| totals.iter().find(|l| l.starts_with(&format!("{d} ")));
    let count = |got: &str, want: &str| match want.strip_suffix('+') {
        Some(n) => got.parse::<u64>().unwrap() >= n.parse().unwrap(),
        None => got == want,
    };
    for (domain, kind, ok, failed) in want {
        let line = line_of(domain).ok_or(format!("no report on {domain}"))?;
        let fields: Vec<&str> = line.split(' ').collect();
        let failed: Vec<&str> = failed.split(' ').collect();
        if fields[1] != *kind
            || !count(fields[2], ok)
            || !count(fields[3], failed[0])
            || fields[4..]
                .iter()
                .take(failed.len() - 1)
                .ne(failed[1..].iter())
        {
            return Err(format!("{line}: want {kind} {ok} {}", failed.join(" ")));
        }
    }
    match none.iter().find(|d| line_of(d).is_some()) {
        Some(d) => Err(format!("a report on {d}")),
        None => Ok(()),
    }
}

const REQUIRETLS: &str = r#"
import smtplib, ssl, sys
host, port = sys.argv[1], int(sys.argv[2])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
with smtplib.SMTP_SSL(host, port, context=ctx) as s:
    s.login("alice@a.test", "alice-password")
    for rcpt in sys.argv[3:]:
        body = "From: alice@a.test\r\nTo: %s\r\nSubject: requiretls to %s\r\n\r\nsecret body\r\n"
        s.sendmail("alice@a.test", [rcpt], body % (rcpt, rcpt), mail_options=["REQUIRETLS"])
print("ok")
"#;

/// Submits one message per recipient with `MAIL FROM:<..> REQUIRETLS`
/// (Python's smtplib, over implicit TLS).
async fn submit_requiretls(a: &Domain, rcpts: &[&str]) {
    let port = a.submissions().port().to_string();
    let mut args = vec![
        "-c".to_string(),
        REQUIRETLS.to_string(),
        "127.0.0.1".into(),
        port,
    ];
    args.extend(rcpts.iter().map(|r| r.to_string()));
    let mut cmd = std::process::Command::new(scop_testkit::python());
    cmd.args(&args);
    let (ok, text) = common::run(cmd).await;
    assert!(ok, "{text}");
}

/// Waits for alice's report that her REQUIRETLS message to `rcpt`
/// failed (5.7.30, `why` in the diagnostic): the header returned, never
/// the body.
async fn requiretls_report(a: &Domain, rcpt: &str, why: &str) {
    // Among TLS reports, in the runs that send them.
    let recipient = format!("Final-Recipient: rfc822; {rcpt}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let report = loop {
        let found = a
            .messages("alice@a.test")
            .into_iter()
            .map(|m| String::from_utf8_lossy(&m).to_string())
            .find(|m| m.contains(&recipient));
        match found {
            Some(m) => break m,
            None if Instant::now() > deadline => panic!("no report on {rcpt}"),
            None => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    for want in [
        &format!("Final-Recipient: rfc822; {rcpt}"),
        "Status: 5.7.30",
        why,
        "text/rfc822-headers",
    ] {
        assert!(report.contains(want), "{want}: {report}");
    }
    assert!(!report.contains("secret body"), "{report}");
}

/// A CA and a server certificate it issues for `names`, PEM.
fn ca_and_server(names: &[&str]) -> (String, String, String) {
    let (ca, mut certs) = ca_issuing(&[names]);
    let (cert, key) = certs.remove(0);
    (ca, cert, key)
}

/// A CA, and a certificate and key it issues for each set of names, PEM.
fn ca_issuing(name_sets: &[&[&str]]) -> (String, Vec<(String, String)>) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "SCoP test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let certs = name_sets
        .iter()
        .map(|names| {
            let key = KeyPair::generate().unwrap();
            let params =
                CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                    .unwrap();
            let cert = params.signed_by(&key, &issuer).unwrap();
            (cert.pem(), key.serialize_pem())
        })
        .collect();
    (ca_cert.pem(), certs)
}

/// Postfix on loopback as `mx_name`, presenting `cert` (with the chain
/// up to `ca`) for STARTTLS.
async fn postfix_with_cert(
    dir: &std::path::Path,
    mx_name: &str,
    cert: &str,
    key: &str,
    ca: &str,
) -> (Postfix, u16) {
    let chain = dir.join("chain.pem");
    std::fs::write(&chain, format!("{cert}{ca}")).unwrap();
    let key_file = dir.join("key.pem");
    std::fs::write(&key_file, key).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let param = |k: &str, v: String| (k.to_string(), v);
    let dir = dir.join("postfix");
    let hostname = mx_name.to_string();
    let pf = tokio::task::spawn_blocking(move || {
        Postfix::start(
            &dir,
            &postfix::Config {
                listen: format!("127.0.0.1:{port}").parse().unwrap(),
                hostname,
                params: vec![
                    param(
                        "smtpd_tls_chain_files",
                        format!("{}, {}", key_file.display(), chain.display()),
                    ),
                    param("smtpd_tls_security_level", "may".into()),
                    param("smtpd_tls_loglevel", "1".into()),
                ],
            },
        )
    })
    .await
    .unwrap();
    (pf, port)
}

/// What `found` gives once it gives something (asked every 50 ms);
/// fails with `what` after `secs`.
async fn eventually<T>(secs: u64, what: &str, mut found: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = found() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until Postfix has queued a message for `rcpt`; its log.
async fn postfix_got(pf: &Postfix, rcpt: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = pf.log_tail();
        if log.contains(&format!("to=<{rcpt}>")) {
            return log;
        }
        assert!(Instant::now() < deadline, "{rcpt}: {log}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_authenticates_postfix_by_a_dane_ta_record() {
    let dir = common::temp_dir("dane-postfix");
    let (ca, cert, key) = ca_and_server(&["mx.d.test"]);
    let (pf, port) = postfix_with_cert(&dir, "mx.d.test", &cert, &key, &ca).await;
    let ta = Tlsa {
        usage: 2,
        selector: 0,
        matching: 1,
        data: aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der(&ca))
            .as_ref()
            .to_vec(),
    }
    .to_text();
    // mx.d.test is the name the certificate carries; mx2.d.test (same
    // server, same anchor) is not, and DANE-TA checks the name.
    let zone = format!(
        "{}@ MX 10 mx\nmx A 127.0.0.1\n_{port}._tcp.mx TLSA {ta}\n\
         other MX 10 mx2\nmx2 A 127.0.0.1\n_{port}._tcp.mx2 TLSA {ta}\n",
        zone_head("d.test")
    );
    let dns = serve(&[("d.test", &zone, true)]).await;
    let a = sender(dns, port).await;
    send(&a, "dan@d.test").await;
    send(&a, "otto@other.d.test").await;
    // Postfix queued dan's message (its own onward attempts log the
    // recipient), received over TLS.
    let log = postfix_got(&pf, "dan@d.test").await;
    assert!(log.contains("TLS connection established from"), "{log}");
    let (outcome, detail) = first_outcome(&a, "otto@other.d.test").await;
    assert_eq!(outcome, Outcome::Deferred, "{detail}");
    assert!(detail.contains("certificate"), "{detail}");
    let queue = a.store.list_queue().await.unwrap();
    assert_eq!(queue.len(), 1, "{queue:?}");
    assert!(!pf.log_tail().contains("otto@other.d.test"));
    // Postfix does not offer REQUIRETLS: a message that requires it is
    // not sent (QUIT after EHLO) and comes back with 5.7.30.
    submit_requiretls(&a, &["rita@d.test"]).await;
    requiretls_report(&a, "rita@d.test", "does not offer REQUIRETLS").await;
    assert!(!pf.log_tail().contains("rita@d.test"));
    tokio::task::spawn_blocking(move || pf.stop())
        .await
        .unwrap();
}

/// Requests a [`policy_server`] took: policy fetches per host, and the
/// bodies POSTed (TLS reports) with their request head.
#[derive(Default)]
struct Served {
    fetches: HashMap<String, usize>,
    posts: Vec<(String, Vec<u8>)>,
}

/// An HTTPS server for MTA-STS policies on loopback: answers a GET with
/// the policy of its Host header (404 for an unknown host), and accepts
/// POSTs; its port and what it was asked.
async fn policy_server(
    cert: &str,
    key: &str,
    policies: &[(&str, &str)],
) -> (u16, Arc<Mutex<Served>>) {
    let config = scop_mail::tls::server_config(cert.as_bytes(), key.as_bytes()).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let policies: HashMap<String, String> = policies
        .iter()
        .map(|(h, p)| (h.to_string(), p.to_string()))
        .collect();
    let served = Arc::new(Mutex::new(Served::default()));
    let seen = served.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, policies, seen) = (acceptor.clone(), policies.clone(), seen.clone());
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                // A client that refuses the certificate ends here.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buf = [0; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let end = request.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                let mut body = request.split_off(end);
                let request = String::from_utf8_lossy(&request).to_string();
                if request.starts_with("POST ") {
                    let length: usize = request
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                    while body.len() < length {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => body.extend_from_slice(&buf[..n]),
                        }
                    }
                    seen.lock().unwrap().posts.push((request, body));
                    let accepted = "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n";
                    tls.write_all(accepted.as_bytes()).await.ok();
                    tls.shutdown().await.ok();
                    return;
                }
                assert!(
                    request.starts_with("GET /.well-known/mta-sts.txt HTTP/1.1\r\n"),
                    "{request}"
                );
                let host = request
                    .lines()
                    .find_map(|l| l.strip_prefix("Host: "))
                    .unwrap_or_default()
                    .to_string();
                *seen
                    .lock()
                    .unwrap()
                    .fetches
                    .entry(host.clone())
                    .or_insert(0) += 1;
                let response = match policies.get(&host) {
                    Some(p) => format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{p}",
                        p.len()
                    ),
                    None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_string(),
                };
                tls.write_all(response.as_bytes()).await.ok();
                tls.shutdown().await.ok();
            });
        }
    });
    (port, served)
}

/// MTA-STS (RFC 8461) against Postfix 3.7, whose certificate for
/// `mx.s.test` a private CA issues; the policies come over HTTPS from a
/// server whose certificate the same CA issues. The zone is unsigned, so
/// DANE does not apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_applies_mta_sts_policies() {
    let dir = common::temp_dir("mta-sts");
    let (ca, certs) = ca_issuing(&[
        &["mx.s.test"],
        &[
            "mta-sts.s.test",
            "mta-sts.w.s.test",
            "mta-sts.v.s.test",
            "mta-sts.t.s.test",
            "mta-sts.u.s.test",
            "mta-sts.f.s.test",
            "mta-sts.c.s.test",
            "rpt.s.test",
        ],
    ]);
    let ((mx_cert, mx_key), (web_cert, web_key)) = (&certs[0], &certs[1]);
    let (pf, port) = postfix_with_cert(&dir, "mx.s.test", mx_cert, mx_key, &ca).await;
    let policy = |mode: &str, mx: &str| {
        format!("version: STSv1\r\nmode: {mode}\r\nmx: {mx}\r\nmax_age: 86400\r\n")
    };
    let (s, w, v, t, u) = (
        policy("enforce", "mx.s.test"),
        policy("enforce", "mx.s.test"),
        policy("enforce", "*.v.s.test"),
        policy("testing", "mx.elsewhere.test"),
        policy("testing", "mx.u.s.test"),
    );
    let (https, served) = policy_server(
        web_cert,
        web_key,
        &[
            ("mta-sts.s.test", &s),
            ("mta-sts.w.s.test", &w),
            ("mta-sts.v.s.test", &v),
            ("mta-sts.t.s.test", &t),
            ("mta-sts.u.s.test", &u),
            ("mta-sts.c.s.test", &s),
        ],
    )
    .await;
    // Each subdomain SUB has MX mx.SUB, a policy announced at
    // _mta-sts.SUB and served at mta-sts.SUB, all on loopback:
    // - s.test: enforce, names mx.s.test (Postfix's certificate's name);
    // - w: enforce, names mx.s.test but the MX is mx.w.s.test;
    // - v: enforce, names *.v.s.test, which Postfix's certificate lacks;
    // - t: testing, names another host;
    // - u: testing, names mx.u.s.test, which Postfix's certificate lacks;
    // - n: announced, but the policy server has no certificate for it;
    // - f: announced, but the policy server has no policy for it (404);
    // - c: as s.test, asked for by several messages at once.
    let mut zone = zone_head("s.test");
    zone.push_str(
        "@ MX 10 mx\nmx A 127.0.0.1\n_mta-sts TXT \"v=STSv1; id=1;\"\nmta-sts A 127.0.0.1\n",
    );
    for sub in ["w", "v", "t", "n", "u", "f", "c"] {
        zone.push_str(&format!(
            "{sub} MX 10 mx.{sub}\nmx.{sub} A 127.0.0.1\n\
             _mta-sts.{sub} TXT \"v=STSv1; id=20261127\"\nmta-sts.{sub} A 127.0.0.1\n"
        ));
    }
    // TLS reports (RFC 8460) to alice, of the sending domain, for all
    // but w.s.test, where no session is made, and t.s.test, whose reports
    // are uploaded to the policy server.
    zone.push_str("_smtp._tls TXT \"v=TLSRPTv1; rua=mailto:alice@a.test\"\n");
    zone.push_str(&format!(
        "_smtp._tls.t TXT \"v=TLSRPTv1; rua=https://rpt.s.test:{https}/v1/tlsrpt\"\nrpt A 127.0.0.1\n"
    ));
    for sub in ["v", "n", "u", "f"] {
        zone.push_str(&format!(
            "_smtp._tls.{sub} TXT \"v=TLSRPTv1; rua=mailto:alice@a.test\"\n"
        ));
    }
    let dns = serve(&[("s.test", &zone, false)]).await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(der(&ca))).unwrap();
    let cache = dir.join("sts");
    std::fs::create_dir_all(&cache).unwrap();
    let sts = Arc::new(Sts::new(roots, https, Some(cache.clone())));
    // Messages that want a policy while it is being fetched wait for
    // that one fetch.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let at_once = tokio::join!(
        sts.policy(&dns, "c.s.test", now),
        sts.policy(&dns, "c.s.test", now),
        sts.policy(&dns, "c.s.test", now),
    );
    for (policy, failure) in [at_once.0, at_once.1, at_once.2] {
        assert_eq!(
            (policy.map(|p| p.mx), failure),
            (Some(vec!["mx.s.test".to_string()]), None)
        );
    }
    assert_eq!(
        served.lock().unwrap().fetches.get("mta-sts.c.s.test"),
        Some(&1)
    );
    // Past half its max_age of a day, the policy is used and fetched
    // again meanwhile; kept as fetched then.
    let later = now + 50_000;
    let (policy, _) = sts.policy(&dns, "c.s.test", later).await;
    assert!(policy.is_some());
    eventually(20, "no refresh", || {
        let fetches = served
            .lock()
            .unwrap()
            .fetches
            .get("mta-sts.c.s.test")
            .copied();
        (fetches == Some(2)).then_some(())
    })
    .await;
    eventually(20, "refreshed policy not kept", || {
        let kept = std::fs::read_to_string(cache.join("c.s.test")).ok()?;
        scop_mta::mta_sts::Cached::parse(&kept).filter(|c| c.fetched == later)
    })
    .await;
    // Reports every 2 s, signed: the test adds up those that come, and
    // dkimpy checks their signatures as TLS reports (RFC 8460 3).
    let signer = scop_dkim::Signer::new(
        scop_dkim::SigningKey::generate(scop_dkim::KeyKind::Rsa2048).unwrap(),
        "a.test",
        "rpt",
    )
    .unwrap();
    let key_record = format!("{}; s=tlsrpt", signer.key().dns_txt().unwrap());
    let reports = reporter(2, Some(signer), Some(sts.https_client()));
    let a = sender_with(dns, port, Some(sts), Some(reports)).await;

    send(&a, "dan@s.test").await;
    let log = postfix_got(&pf, "dan@s.test").await;
    assert!(log.contains("TLS connection established from"), "{log}");
    send(&a, "otto@w.s.test").await;
    let (outcome, detail) = first_outcome(&a, "otto@w.s.test").await;
    assert_eq!(outcome, Outcome::Deferred, "{detail}");
    assert!(
        detail.contains("MTA-STS: no MX host of w.s.test"),
        "{detail}"
    );
    send(&a, "vic@v.s.test").await;
    let (outcome, detail) = first_outcome(&a, "vic@v.s.test").await;
    assert_eq!(outcome, Outcome::Deferred, "{detail}");
    assert!(detail.contains("certificate"), "{detail}");
    send(&a, "tess@t.s.test").await;
    postfix_got(&pf, "tess@t.s.test").await;
    send(&a, "nat@n.s.test").await;
    postfix_got(&pf, "nat@n.s.test").await;
    send(&a, "ursula@u.s.test").await;
    postfix_got(&pf, "ursula@u.s.test").await;
    // A failed fetch is not tried again for the next message at once
    // (mta_sts::FETCH_RETRY_SECS).
    for rcpt in ["fay@f.s.test", "fred@f.s.test"] {
        send(&a, rcpt).await;
        postfix_got(&pf, rcpt).await;
    }
    assert_eq!(
        served.lock().unwrap().fetches.get("mta-sts.f.s.test"),
        Some(&1)
    );
    let log = pf.log_tail();
    for never in ["otto@w.s.test", "vic@v.s.test"] {
        assert!(!log.contains(never), "{never}: {log}");
    }
    // The policy is fetched once, and kept.
    send(&a, "dora@s.test").await;
    postfix_got(&pf, "dora@s.test").await;
    assert_eq!(
        served.lock().unwrap().fetches.get("mta-sts.s.test"),
        Some(&1)
    );
    let kept = std::fs::read_to_string(cache.join("s.test")).unwrap();
    let kept = scop_mta::mta_sts::Cached::parse(&kept).unwrap();
    assert_eq!(
        (kept.id.as_str(), kept.policy.mx.as_slice()),
        ("1", &["mx.s.test".to_string()][..])
    );
    // An enforced policy authenticates the MX for REQUIRETLS, so the
    // message goes as far as Postfix's EHLO, which lacks REQUIRETLS.
    submit_requiretls(&a, &["rita@s.test"]).await;
    requiretls_report(&a, "rita@s.test", "does not offer REQUIRETLS").await;

    // TLS reports (RFC 8460): every domain with a record that got a
    // session; mx.v.s.test's certificate does not carry that name.
    expect_tls_reports(
        &a,
        Some(&key_record),
        &[
            // dan, dora and rita; a message may reuse the session an
            // earlier one left open (no new TLS session).
            ("s.test", "sts", "2+", "0"),
            (
                "v.s.test",
                "sts",
                "0",
                "1+ certificate-host-mismatch mx.v.s.test",
            ),
            // The policy server's certificate does not name
            // mta-sts.n.s.test: delivered without a policy, reported.
            ("n.s.test", "sts", "0", "1 sts-webpki-invalid mx.n.s.test"),
            // No policy to fetch: delivered without one, reported.
            (
                "f.s.test",
                "sts",
                "0",
                "1+ sts-policy-fetch-error mx.f.s.test",
            ),
            // Testing mode: delivered, and reported as enforce mode's
            // check of the certificate would have found it.
            (
                "u.s.test",
                "sts",
                "0",
                "1 certificate-host-mismatch mx.u.s.test",
            ),
        ],
        &["w.s.test", "t.s.test"],
    )
    .await;
    // t.s.test's report came by HTTPS POST (RFC 8460 5.4), gzip'd JSON
    // as Python's gzip and json modules read it.
    let (head, body) = eventually(30, "no report uploaded", || {
        served.lock().unwrap().posts.first().cloned()
    })
    .await;
    assert!(head.starts_with("POST /v1/tlsrpt HTTP/1.1\r\n"), "{head}");
    assert!(
        head.contains("\r\nContent-Type: application/tlsrpt+gzip\r\n"),
        "{head}"
    );
    let file = common::file_with(&a.dir, "uploaded.json.gz", &body);
    let mut cmd = std::process::Command::new(scop_testkit::python());
    cmd.arg("-c")
        .arg(
            "import gzip, json, sys\n\
             r = json.loads(gzip.decompress(open(sys.argv[1], 'rb').read()))\n\
             p = r['policies'][0]\n\
             print(p['policy']['policy-domain'], p['policy']['policy-type'], \
             p['summary']['total-successful-session-count'], \
             p['summary']['total-failure-session-count'], \
             p['failure-details'][0]['result-type'], r['organization-name'])",
        )
        .arg(&file);
    let (ok, out) = common::run(cmd).await;
    assert!(ok, "{out}");
    // Testing mode, the MX not named by the policy: delivered, reported
    // as a failed validation.
    assert_eq!(
        out.trim(),
        "t.s.test sts 0 1 validation-failure relay.a.test"
    );
    tokio::task::spawn_blocking(move || pf.stop())
        .await
        .unwrap();
}

/// Python's reading of the TLS reports in alice's mailbox: one line per
/// policy domain, "DOMAIN TYPE SUCCESSES FAILURES [RESULT-TYPE MX]...",
/// summed over the reports; it fails on a report that breaks RFC 8460
/// 5.3's form (headers, media types, file name, JSON members, policy
/// strings) or, given the DKIM key record of a.test, whose signature
/// dkimpy does not find valid for a TLS report.
async fn tls_report_totals(a: &Domain, key_record: Option<&str>) -> Vec<String> {
    const READ: &str = r#"
import email, email.policy, gzip, json, sys, os, collections, re
key = os.environ.get('DKIM_RECORD')
totals = collections.OrderedDict()
for path in sys.argv[1:]:
    with open(path, 'rb') as f:
        raw = f.read()
    m = email.message_from_bytes(raw, policy=email.policy.default)
    if 'TLS-Report-Domain' not in m:
        continue
    if key:
        import dkim
        assert dkim.verify(raw, dnsfunc=lambda name, timeout=5: key.encode(), tlsrpt='strict'), path
    assert m.get_content_type() == 'multipart/report', m.get_content_type()
    assert m.get_param('report-type') == 'tlsrpt', m.get_param('report-type')
    assert m['TLS-Report-Submitter'] == 'relay.a.test'
    assert m['Subject'].startswith('Report Domain: ' + m['TLS-Report-Domain'] + ' Submitter: relay.a.test Report-ID: <')
    parts = [p for p in m.iter_attachments() if p.get_content_type() == 'application/tlsrpt+gzip']
    assert len(parts) == 1, [p.get_content_type() for p in m.walk()]
    name = parts[0].get_filename()
    assert name.startswith('relay.a.test!' + m['TLS-Report-Domain'] + '!') and name.endswith('.json.gz'), name
    r = json.loads(gzip.decompress(parts[0].get_content()))
    assert r['organization-name'] == 'relay.a.test'
    assert r['contact-info'] == 'tlsrpt-noreply@a.test'
    assert r['date-range']['start-datetime'].endswith('Z')
    for p in r['policies']:
        kind = p['policy']['policy-type']
        strings = p['policy'].get('policy-string', [])
        if kind == 'tlsa':
            assert all(re.fullmatch('[0-3] [01] [0-2] [0-9A-Fa-f]+', x) for x in strings), strings
        # (An announced policy that could not be had has no text.)
        if kind == 'sts' and strings:
            assert 'version: STSv1' in strings and p['policy']['mx-host'], p['policy']
        d = p['policy']['policy-domain']
        assert d == m['TLS-Report-Domain'], d
        t = totals.setdefault(d, [p['policy']['policy-type'], 0, 0, []])
        t[1] += p['summary']['total-successful-session-count']
        t[2] += p['summary']['total-failure-session-count']
        for f in p.get('failure-details', []):
            t[3] += [f['result-type'], f['receiving-mx-hostname']]
for d, (kind, ok, failed, details) in totals.items():
    print(' '.join([d, kind, str(ok), str(failed)] + details))
"#;
    let dir = a.maildir("alice@a.test");
    let mut cmd = std::process::Command::new(scop_testkit::python());
    cmd.arg("-c").arg(READ);
    if let Some(k) = key_record {
        cmd.env("DKIM_RECORD", k);
    }
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            cmd.arg(e.path());
        }
    }
    let (ok, out) = common::run(cmd).await;
    assert!(ok, "{out}");
    out.lines().map(str::to_string).collect()
}
