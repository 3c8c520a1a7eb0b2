//! ACME certificates for the public listeners, against Debian's pebble
//! (Let's Encrypt's ACME test server) validating DNS-01 challenges through
//! the deployment's own primary: `scop up` replaces the self-signed
//! certificate of an `[acme]` deployment at start, `scop tls acme` gets a
//! new one on demand, the MX (STARTTLS) and submission (implicit TLS)
//! serve each after their restart, the challenge records are gone after
//! each run, and a primary whose policy refuses the ACME key makes the
//! command fail clearly with the old certificate left in place.

use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod deploy;

use deploy::*;

const DOMAIN: &str = "acme.test";
const HOST: &str = "mx.acme.test";
/// Names first ordered by the on-demand issuance and by the refused one.
const FRESH: [&str; 2] = ["www.acme.test", "fresh.acme.test"];
const IP: &str = "127.0.0.1";

/// pebble, killed on drop.
struct Pebble(Child);

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A CA and a certificate for 127.0.0.1 it signed, for pebble's HTTPS:
/// returns the paths of the CA (PEM), the certificate and the key.
fn pebble_https(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "scop test HTTPS CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::from_params(&ca, &ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let mut leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf.subject_alt_names
        .push(rcgen::SanType::IpAddress(IP.parse().unwrap()));
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    let paths = (
        dir.join("https-ca.pem"),
        dir.join("https-cert.pem"),
        dir.join("https-key.pem"),
    );
    std::fs::write(&paths.0, ca_cert.pem()).unwrap();
    std::fs::write(&paths.1, leaf_cert.pem()).unwrap();
    std::fs::write(&paths.2, leaf_key.serialize_pem()).unwrap();
    paths
}

fn start_pebble(dir: &Path, https: &(PathBuf, PathBuf, PathBuf), dns: u16) -> (Pebble, u16, u16) {
    let (acme, management) = (free_port(), free_port());
    let config = serde_json::json!({
        "pebble": {
            "listenAddress": format!("{IP}:{acme}"),
            "managementListenAddress": format!("{IP}:{management}"),
            "certificate": https.1,
            "privateKey": https.2,
            "httpPort": free_port(),
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false
        }
    });
    let config_path = dir.join("pebble.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let log = std::fs::File::create(dir.join("pebble.log")).unwrap();
    let child = scop_testkit::debian_command("usr/bin/pebble")
        .arg("-config")
        .arg(&config_path)
        .args(["-dnsserver", &format!("{IP}:{dns}")])
        .env("PEBBLE_VA_NOSLEEP", "1")
        .env("PEBBLE_WFE_NONCEREJECT", "0")
        .env("PEBBLE_AUTHZREUSE", "0")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("pebble runs (cargo xtask peers installs it)");
    let pebble = Pebble(child);
    for port in [acme, management] {
        wait_for("pebble", Duration::from_secs(30), || {
            listening(format!("{IP}:{port}").parse().unwrap())
        });
    }
    (pebble, acme, management)
}

fn roots(pem: &[u8]) -> Arc<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    assert!(!roots.is_empty());
    Arc::new(roots)
}

fn client(roots: Arc<rustls::RootCertStore>) -> Arc<rustls::ClientConfig> {
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// pebble's current root, from its management interface.
fn pebble_root(https_ca: &Path, management: u16) -> Vec<u8> {
    let config = client(roots(&std::fs::read(https_ca).unwrap()));
    let name = ServerName::try_from(IP).unwrap().to_owned();
    let conn = rustls::ClientConnection::new(config, name).unwrap();
    let tcp = TcpStream::connect((IP, management)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(format!("GET /roots/0 HTTP/1.0\r\nHost: {IP}:{management}\r\n\r\n").as_bytes())
        .unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tls.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8(response).unwrap();
    assert!(
        text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200"),
        "{text}"
    );
    let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
    assert!(body.contains("BEGIN CERTIFICATE"), "{body}");
    body.as_bytes().to_vec()
}

fn chain(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem)
        .map(Result::unwrap)
        .collect()
}

/// Whether the chain in `pem` verifies for HOST under `root`.
fn verifies(pem: &[u8], root: &[u8]) -> Result<(), rustls::Error> {
    let certs = chain(pem);
    assert!(!certs.is_empty(), "no certificate");
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots(root), provider())
            .build()
            .unwrap();
    verifier
        .verify_server_cert(
            &certs[0],
            &certs[1..],
            &ServerName::try_from(HOST).unwrap(),
            &[],
            UnixTime::now(),
        )
        .map(|_| ())
}

/// Reads SMTP reply lines until the last one of a reply; returns it.
fn reply(reader: &mut impl BufRead) -> Result<String, String> {
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            return Err("connection closed".into());
        }
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(line);
        }
    }
}

/// The leaf certificate served at `addr` to a client trusting `root`
/// only, for HOST, over implicit TLS or after STARTTLS; the error when the
/// listener is not there (restarting) or the chain does not verify.
fn served(addr: SocketAddr, root: &[u8], starttls: bool) -> Result<Vec<u8>, String> {
    let mut tcp =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    if starttls {
        let mut reader = BufReader::new(tcp.try_clone().unwrap());
        let mut step = |send: &[u8], want: &str| -> Result<(), String> {
            if !send.is_empty() {
                tcp.write_all(send).map_err(|e| e.to_string())?;
            }
            let line = reply(&mut reader)?;
            if line.starts_with(want) {
                Ok(())
            } else {
                Err(line)
            }
        };
        step(b"", "220")?;
        step(b"EHLO client.test\r\n", "250")?;
        step(b"STARTTLS\r\n", "220")?;
    }
    let name = ServerName::try_from(HOST).unwrap().to_owned();
    let mut conn = rustls::ClientConnection::new(client(roots(root)), name).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(|e| e.to_string())?;
    }
    Ok(conn.peer_certificates().unwrap()[0].to_vec())
}

/// Waits until both public listeners serve the leaf of `pem`.
fn wait_served(mx: SocketAddr, subs: SocketAddr, pem: &[u8], root: &[u8]) {
    let leaf = chain(pem)[0].to_vec();
    let start = Instant::now();
    loop {
        let (m, s) = (served(mx, root, true), served(subs, root, false));
        if m.as_ref().is_ok_and(|c| *c == leaf) && s.as_ref().is_ok_and(|c| *c == leaf) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "the new certificate is not served: MX {:?}, submission {:?}",
            m.map(|c| c == leaf),
            s.map(|c| c == leaf)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn no_challenge_record(dns: u16) {
    for name in [HOST, FRESH[0], FRESH[1]] {
        let txt = dig(dns, &["TXT", &format!("_acme-challenge.{name}")]);
        assert!(
            txt.trim().is_empty(),
            "challenge record left at {name}: {txt}"
        );
    }
}

#[test]
fn acme_certificates_from_pebble_through_our_primary() {
    let started = Instant::now();
    let root_dir = fresh_root("acme");
    let dir = root_dir.join("site");
    let dir_s = dir.to_str().unwrap();
    let (mx, subs, dns) = (free_port(), free_port(), free_port());
    let mx_addr: SocketAddr = format!("{IP}:{mx}").parse().unwrap();
    let subs_addr: SocketAddr = format!("{IP}:{subs}").parse().unwrap();

    let https = pebble_https(&root_dir);
    let (_pebble, acme_port, management) = start_pebble(&root_dir, &https, dns);
    let directory = format!("https://{IP}:{acme_port}/dir");

    // An [acme] deployment: `scop up` replaces the self-signed certificate.
    let out = scop(
        &[
            "init",
            "--dir",
            dir_s,
            "--domain",
            DOMAIN,
            "--hostname",
            HOST,
            "--ip",
            IP,
            "--user",
            "admin",
            "--password-stdin",
            "--mx",
            &mx_addr.to_string(),
            "--submission",
            "off",
            "--submissions",
            &subs_addr.to_string(),
            "--dns",
            &format!("{IP}:{dns}"),
            "--resolver",
            "127.0.0.1:9",
            "--mesh-base",
            &format!("{IP}:{}", free_ports(IP, 6)),
            "--acme-directory",
            &directory,
            "--acme-contact",
            "mailto:admin@acme.test",
            "--acme-ca-cert",
            https.0.to_str().unwrap(),
        ],
        "a long passphrase\n",
    );
    assert!(out.status.success(), "init: {out:?}");
    assert_eq!(mode(&dir.join("keys/tsig/acme.key")), 0o600);
    let policy = std::fs::read_to_string(dir.join("dns.policy")).unwrap();
    assert!(
        policy.contains("update acme.acme.test. _acme-challenge.*.@ TXT"),
        "{policy}"
    );
    let config = std::fs::read_to_string(dir.join("scop.toml")).unwrap();
    assert!(
        config.contains("[acme]") && config.contains(&directory),
        "{config}"
    );
    let cert_path = dir.join("tls/cert.pem");
    let key_path = dir.join("tls/key.pem");
    let self_signed = std::fs::read(&cert_path).unwrap();

    let supervisor = up(&dir, &root_dir.join("up.log"));
    let up_log = || std::fs::read_to_string(root_dir.join("up.log")).unwrap_or_default();
    for addr in [mx_addr, subs_addr] {
        wait_for("the public listeners", Duration::from_secs(60), || {
            listening(addr)
        });
    }
    let mut renewed = Vec::new();
    let start = Instant::now();
    while renewed.is_empty() || renewed == self_signed {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "scop up did not renew the self-signed certificate: {}\npebble: {}",
            up_log(),
            std::fs::read_to_string(root_dir.join("pebble.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(300));
        renewed = std::fs::read(&cert_path).unwrap();
    }
    let root = pebble_root(&https.0, management);
    verifies(&renewed, &root).unwrap_or_else(|e| panic!("{e}: {}", up_log()));
    assert!(verifies(&self_signed, &root).is_err());
    assert_eq!(mode(&key_path), 0o600);
    let accounts: Vec<_> = std::fs::read_dir(dir.join("keys/acme"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(accounts.len(), 1, "{accounts:?}");
    assert_eq!(mode(&accounts[0]), 0o600);
    wait_served(mx_addr, subs_addr, &renewed, &root);
    no_challenge_record(dns);
    assert!(
        up_log().contains("scop up: acme: the certificate is self-signed"),
        "{}",
        up_log()
    );

    // The key stayed: the TLSA record `scop init` put in the zone still
    // authenticates the MX (DANE-EE `3 1 1`).
    let tlsa = scop_mail::tls::dane_ee_record(&self_signed).unwrap();
    assert_eq!(scop_mail::tls::dane_ee_record(&renewed).unwrap(), tlsa);
    let zone = std::fs::read_to_string(dir.join("zones/acme.test.zone")).unwrap();
    assert!(zone.contains(&format!("IN TLSA {tlsa}")), "{zone}");

    // `scop tls acme` on demand: a new certificate for the same key,
    // served after the supervisor restarts mx and submission.
    let acme = |names: &[&str]| {
        let mut args = vec![
            "tls",
            "acme",
            "--dir",
            dir_s,
            "--directory",
            &directory,
            "--ca-cert",
            https.0.to_str().unwrap(),
            "--names",
        ];
        args.extend(names);
        scop(&args, "")
    };
    // With a second name the CA never validated: pebble may reuse the
    // host name's valid authorization from the renewal at start, and
    // then publishes no challenge for it.
    let out = acme(&[HOST, FRESH[0]]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "tls acme: {out:?}");
    eprintln!("scop tls acme:\n{stdout}");
    assert!(
        stdout.contains(&format!("_acme-challenge.{} TXT is served", FRESH[0])),
        "{stdout}"
    );
    assert!(stdout.contains("deleted the challenge records"), "{stdout}");
    assert!(stdout.contains("restarting mx and submission"), "{stdout}");
    let issued = std::fs::read(&cert_path).unwrap();
    assert_ne!(issued, renewed);
    assert_eq!(scop_mail::tls::dane_ee_record(&issued).unwrap(), tlsa);
    assert_eq!(mode(&key_path), 0o600);
    assert!(
        chain(&issued).len() >= 2,
        "the chain holds the intermediate"
    );
    verifies(&issued, &root).unwrap();
    wait_served(mx_addr, subs_addr, &issued, &root);
    no_challenge_record(dns);

    // A primary whose policy no longer lets the ACME key in: a clear
    // error, and the certificate and key stay.
    let strict: String = policy
        .lines()
        .filter(|l| !l.contains("acme.acme.test."))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(dir.join("dns.policy"), strict).unwrap();
    let (pid, _, restarts) = compartment(&dir, "dns");
    signal(pid, "-TERM");
    wait_for("the primary's restart", Duration::from_secs(30), || {
        let (now, state, r) = compartment(&dir, "dns");
        now != pid
            && state == "running"
            && r > restarts
            && listening(format!("{IP}:{dns}").parse().unwrap())
    });
    let key_before = std::fs::read(&key_path).unwrap();
    // Again a name the CA never validated, so that a challenge must be
    // published (and is refused).
    let out = acme(&[FRESH[1]]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "tls acme with the key refused: {out:?}"
    );
    eprintln!("refused as expected: {stderr}");
    assert!(
        stderr.contains(&format!("the DNS primary at {IP}:{dns} refused the update")),
        "{stderr}"
    );
    assert!(stderr.contains("acme.acme.test."), "{stderr}");
    assert_eq!(std::fs::read(&cert_path).unwrap(), issued);
    assert_eq!(std::fs::read(&key_path).unwrap(), key_before);
    no_challenge_record(dns);

    drop(supervisor);
    eprintln!("scop up:\n{}", up_log());
    let _ = std::fs::remove_dir_all(&root_dir);
    eprintln!("acme test took {:.1} s", started.elapsed().as_secs_f64());
}
