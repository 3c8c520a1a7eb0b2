//! `scop spf check` and `scop auth check` run as the built binary, with DNS
//! data in a master file (`--dns-zone`) written to a temporary directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const NOW: &str = "1750000000";

fn dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("auth-cli")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn scop(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_scop"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run scop");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "scop failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// A zone for example.com (SPF, DMARC) written as a master file, with the
/// DKIM key record `key_txt` at `s1._domainkey`.
fn write_zone(dir: &Path, key_txt: &str) -> PathBuf {
    // A TXT character-string holds at most 255 bytes: split the key.
    let chunks: Vec<String> = key_txt
        .as_bytes()
        .chunks(200)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect();
    let zone = format!(
        "$ORIGIN example.com.\n$TTL 300\n\
         @ IN SOA ns1 hostmaster ( 1 7200 3600\n    1209600 300 ) ; multi-line\n\
         \tIN NS ns1\n\
         \tIN TXT \"v=spf1 ip4:192.0.2.0/24 \" \"-all\"\n\
         mx IN A 192.0.2.25\n\
         _dmarc IN TXT \"v=DMARC1\\; p=reject\\; rua=mailto:dmarc@example.com\"\n\
         s1._domainkey 300 IN TXT ( {} )\n\
         other.example.org. IN TXT \"v=spf1 -all\"\n\
         _dmarc.example.org. IN TXT \"v=DMARC1; p=quarantine\"\n\
         x IN HINFO \"cpu\" \"os\"\n",
        chunks.join("\n    ")
    );
    let path = dir.join("example.com.zone");
    std::fs::write(&path, zone).unwrap();
    path
}

fn signed_message(from: &str) -> (Vec<u8>, String) {
    let key = scop_dkim::SigningKey::generate(scop_dkim::KeyKind::Ed25519).unwrap();
    let txt = key.dns_txt().unwrap();
    let signer = scop_dkim::Signer::new(key, "example.com", "s1").unwrap();
    let msg = format!(
        "From: Ann <ann@{from}>\r\nTo: bob@example.net\r\nSubject: hi\r\n\
         Date: Mon, 16 Jun 2025 10:00:00 +0000\r\nMessage-ID: <1@example.com>\r\n\r\nHello.\r\n"
    );
    let signed = scop_dkim::sign_message(&[signer], msg.as_bytes(), 1_750_000_000).unwrap();
    (signed, txt)
}

#[test]
fn spf_check_pass_and_fail() {
    let d = dir("spf");
    let zone = write_zone(&d, "v=DKIM1; p=");
    let zone = zone.to_str().unwrap();
    let base = [
        "spf",
        "check",
        "--helo",
        "mx.example.com",
        "--dns-zone",
        zone,
        "--now",
        NOW,
    ];
    let mut args = base.to_vec();
    args.extend(["--ip", "192.0.2.25", "--mail-from", "a@example.com"]);
    let out = stdout(&scop(&args, b""));
    assert!(out.starts_with("pass\n"), "{out}");
    assert!(out.contains("Received-SPF: pass"), "{out}");
    assert!(out.contains("client-ip=192.0.2.25;"), "{out}");
    let mut args = base.to_vec();
    args.extend(["--ip", "198.51.100.7", "--mail-from", "a@example.com"]);
    let out = stdout(&scop(&args, b""));
    assert!(out.starts_with("fail\n"), "{out}");
    let mut args = base.to_vec();
    args.extend([
        "--ip",
        "198.51.100.7",
        "--mail-from",
        "a@nowhere.example.com",
    ]);
    let out = stdout(&scop(&args, b""));
    assert!(out.starts_with("none\n"), "{out}");
}

/// Without master files the resolver asks the DNS; a resolver that does
/// not answer makes SPF a temperror (RFC 7208 2.6.6), not a failure.
#[test]
fn spf_check_without_a_reachable_resolver_is_a_temperror() {
    let out = scop(
        &[
            "spf",
            "check",
            "--ip",
            "192.0.2.1",
            "--mail-from",
            "a@example.com",
            "--helo",
            "h",
            "--resolver",
            "127.0.0.1:9",
        ],
        b"",
    );
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).starts_with("temperror\n"), "{out:?}");
}

#[test]
fn auth_check_pass() {
    let d = dir("auth-pass");
    let (msg, txt) = signed_message("example.com");
    let zone = write_zone(&d, &txt);
    let out = stdout(&scop(
        &[
            "auth",
            "check",
            "--ip",
            "192.0.2.25",
            "--mail-from",
            "ann@example.com",
            "--helo",
            "mx.example.com",
            "--dns-zone",
            zone.to_str().unwrap(),
            "--now",
            NOW,
            "--authserv-id",
            "mx.receiver.example",
            "--pct-sample",
            "0",
        ],
        &msg,
    ));
    let ar = scop_dmarc::AuthenticationResults::parse(out.trim_end()).expect(&out);
    assert_eq!(ar.authserv_id, "mx.receiver.example");
    assert_eq!(ar.result("spf").unwrap().result, "pass", "{out}");
    assert_eq!(
        ar.result("spf").unwrap().property("smtp", "mailfrom"),
        Some("ann@example.com")
    );
    let dkim = ar.result("dkim").unwrap();
    assert_eq!(dkim.result, "pass", "{out}");
    assert_eq!(dkim.property("header", "d"), Some("example.com"));
    assert_eq!(dkim.property("header", "s"), Some("s1"));
    assert_eq!(dkim.property("header", "a"), Some("ed25519-sha256"));
    assert!(
        dkim.property("header", "b").is_some_and(|b| b.len() == 12),
        "{out}"
    );
    let dmarc = ar.result("dmarc").unwrap();
    assert_eq!(dmarc.result, "pass", "{out}");
    assert_eq!(dmarc.property("header", "from"), Some("example.com"));
    assert_eq!(dmarc.property("policy", "dmarc"), Some("reject"));
    assert!(
        dmarc.comment.as_deref().unwrap().contains("dis=none"),
        "{out}"
    );
}

#[test]
fn auth_check_spoofed_from_is_rejected() {
    let d = dir("auth-fail");
    // Signed by example.com, but From example.org (p=quarantine), client
    // outside every SPF record.
    let (msg, txt) = signed_message("example.org");
    let zone = write_zone(&d, &txt);
    let out = stdout(&scop(
        &[
            "auth",
            "check",
            "--ip",
            "203.0.113.9",
            "--mail-from",
            "x@other.example.org",
            "--helo",
            "evil.example",
            "--dns-zone",
            zone.to_str().unwrap(),
            "--now",
            NOW,
            "--pct-sample",
            "0",
        ],
        &msg,
    ));
    let ar = scop_dmarc::AuthenticationResults::parse(out.trim_end()).expect(&out);
    assert_eq!(ar.result("spf").unwrap().result, "fail", "{out}");
    assert_eq!(ar.result("dkim").unwrap().result, "pass", "{out}");
    let dmarc = ar.result("dmarc").unwrap();
    assert_eq!(dmarc.result, "fail", "{out}");
    assert_eq!(dmarc.property("policy", "dmarc"), Some("quarantine"));
    assert!(
        dmarc.comment.as_deref().unwrap().contains("dis=quarantine"),
        "{out}"
    );
}

#[test]
fn auth_check_unsigned_without_record() {
    let d = dir("auth-none");
    let zone = write_zone(&d, "v=DKIM1; p=");
    let out = stdout(&scop(
        &[
            "auth",
            "check",
            "--ip",
            "192.0.2.25",
            "--mail-from",
            "a@example.net",
            "--helo",
            "mx.example.net",
            "--dns-zone",
            zone.to_str().unwrap(),
            "--now",
            NOW,
        ],
        b"From: a@example.net\r\nSubject: x\r\n\r\nbody\r\n",
    ));
    let ar = scop_dmarc::AuthenticationResults::parse(out.trim_end()).expect(&out);
    assert_eq!(ar.result("spf").unwrap().result, "none");
    assert_eq!(ar.result("dkim").unwrap().result, "none");
    assert_eq!(ar.result("dmarc").unwrap().result, "none");
}
