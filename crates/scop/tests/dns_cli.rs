//! `scop dns tsig-keygen`, `scop dns serve` and `scop dns update`, end to
//! end through the binary, with BIND's `dig` and `nsupdate -k` as the
//! other side (a missing peer fails the test).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const ZONE: &str = "$ORIGIN example.org.\n$TTL 3600\n\
@ IN SOA ns1 hostmaster 2024010101 7200 3600 1209600 300\n\
@ NS ns1\n@ MX 10 mail\nns1 A 127.0.0.1\nmail A 192.0.2.2\n";

const POLICY: &str = "update dkim-signer. *._domainkey.@ TXT\n";

fn scop() -> Command {
    Command::new(env!("CARGO_BIN_EXE_scop"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = scop_testkit::workspace_root()
        .join("target")
        .join("scop-dns-cli-tests")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn peer(binary: &str) -> Command {
    let root = scop_testkit::peer_path("debian");
    let mut cmd = scop_testkit::debian_command(binary);
    let libs = [
        root.join("usr/lib/x86_64-linux-gnu"),
        root.join("usr/lib/x86_64-linux-gnu/bind"),
    ];
    cmd.env(
        "LD_LIBRARY_PATH",
        std::env::join_paths(libs.iter()).unwrap(),
    );
    cmd
}

fn dig_txt(port: u16, name: &str) -> String {
    let out = peer("usr/bin/dig")
        .args([
            "@127.0.0.1",
            "-p",
            &port.to_string(),
            "+short",
            "+time=2",
            "+tries=1",
            name,
            "TXT",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

struct Serve(Child);
impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(dir: &Path, key: &Path) -> (Serve, u16) {
    let mut cmd = scop();
    cmd.args(["dns", "serve", "--listen", "127.0.0.1:0", "--zone"])
        .arg(dir.join("zone"))
        .arg("--tsig-key")
        .arg(key)
        .arg("--policy")
        .arg(dir.join("policy"))
        .arg("--journal")
        .arg(dir.join("journal"));
    start(&mut cmd)
}

#[test]
fn keygen_serve_update_and_nsupdate_with_the_key_file() {
    let dir = scratch("flow");
    std::fs::write(dir.join("zone"), ZONE).unwrap();
    std::fs::write(dir.join("policy"), POLICY).unwrap();
    let key = dir.join("dkim.key");
    let st = scop()
        .args(["dns", "tsig-keygen", "dkim-signer", "--out"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(st.success());
    let text = std::fs::read_to_string(&key).unwrap();
    assert!(text.starts_with("key \"dkim-signer.\" {"), "{text}");
    assert!(text.contains("algorithm hmac-sha256;"), "{text}");
    // Refuses to overwrite a key.
    assert!(
        !scop()
            .args(["dns", "tsig-keygen", "x", "--out"])
            .arg(&key)
            .status()
            .unwrap()
            .success()
    );

    let (server, port) = serve(&dir, &key);
    let server_addr = format!("127.0.0.1:{port}");
    let update = |args: &[&str]| {
        scop()
            .args(["dns", "update", "--server", &server_addr, "--key"])
            .arg(&key)
            .args(["--zone", "example.org"])
            .args(args)
            .output()
            .unwrap()
    };
    let out = update(&["add", "s1._domainkey", "300", "TXT", "\"v=DKIM1; p=one\""]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "update: NOERROR"
    );
    assert_eq!(
        dig_txt(port, "s1._domainkey.example.org."),
        "\"v=DKIM1; p=one\""
    );

    let out = update(&[
        "replace",
        "s1._domainkey",
        "300",
        "TXT",
        "\"v=DKIM1; p=two\"",
    ]);
    assert!(out.status.success());
    assert_eq!(
        dig_txt(port, "s1._domainkey.example.org."),
        "\"v=DKIM1; p=two\""
    );

    // The policy: the DKIM key may not touch the apex MX.
    let out = update(&["replace", "@", "300", "MX", "10 evil.example.net."]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Refused"));

    // nsupdate reads the same key file (-k).
    let mut ns = peer("usr/bin/nsupdate")
        .arg("-k")
        .arg(&key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = ns.stdin.take().unwrap();
        write!(
            stdin,
            "server 127.0.0.1 {port}\nzone example.org.\nupdate delete s1._domainkey.example.org. TXT\nsend\n"
        )
        .unwrap();
    }
    let out = ns.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(dig_txt(port, "s1._domainkey.example.org."), "");

    let out = update(&["add", "s2._domainkey", "300", "TXT", "\"kept\""]);
    assert!(out.status.success());
    drop(server);

    // A restart replays the journal.
    let (_server, port) = serve(&dir, &key);
    assert_eq!(dig_txt(port, "s2._domainkey.example.org."), "\"kept\"");
}

#[test]
fn update_with_a_wrong_secret_reports_badsig() {
    let dir = scratch("badsig");
    std::fs::write(dir.join("zone"), ZONE).unwrap();
    std::fs::write(dir.join("policy"), POLICY).unwrap();
    let key = dir.join("good.key");
    assert!(
        scop()
            .args(["dns", "tsig-keygen", "dkim-signer", "--out"])
            .arg(&key)
            .status()
            .unwrap()
            .success()
    );
    let bad = dir.join("bad.key");
    std::fs::write(
        &bad,
        "key \"dkim-signer.\" { algorithm hmac-sha256; secret \"d3Jvbmcgc2VjcmV0IDAxMjM0NTY3ODk=\"; };\n",
    )
    .unwrap();
    let (_server, port) = serve(&dir, &key);
    let out = scop()
        .args([
            "dns",
            "update",
            "--server",
            &format!("127.0.0.1:{port}"),
            "--key",
        ])
        .arg(&bad)
        .args([
            "--zone",
            "example.org",
            "add",
            "s1._domainkey",
            "300",
            "TXT",
            "x",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("BADSIG"), "{stdout}");
}

fn serve_signed(dir: &Path, keys: &Path) -> (Serve, u16) {
    let mut cmd = scop();
    cmd.args(["dns", "serve", "--listen", "127.0.0.1:0", "--zone"])
        .arg(dir.join("zone"))
        .arg("--dnssec-keys")
        .arg(keys);
    start(&mut cmd)
}

/// Starts `scop dns serve` and reads the port from its first line.
fn start(cmd: &mut Command) -> (Serve, u16) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .strip_prefix("listening on 127.0.0.1:")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();
    (Serve(child), port)
}

/// A delv trust-anchors file from a `.key` file's DNSKEY line.
fn anchor(dir: &Path, key_file: &Path, name: &str) -> PathBuf {
    let text = std::fs::read_to_string(key_file).unwrap();
    let line = text.lines().find(|l| !l.starts_with(';')).unwrap();
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(f[2], "DNSKEY", "{line}");
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "trust-anchors {{ example.org. static-key {} {} {} \"{}\"; }};\n",
            f[3],
            f[4],
            f[5],
            f[6..].concat()
        ),
    )
    .unwrap();
    path
}

fn delv_ok(port: u16, anchor: &Path, name: &str, rtype: &str) -> bool {
    let out = peer("usr/bin/delv")
        .args(["@127.0.0.1", "-p", &port.to_string(), "-a"])
        .arg(anchor)
        .args(["+root=example.org", name, rtype])
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    all.contains("fully validated")
}

fn key_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "key"))
        .collect();
    v.sort();
    v
}

#[test]
fn dnssec_keygen_ds_serve_and_rollover() {
    let dir = scratch("dnssec");
    std::fs::write(dir.join("zone"), ZONE).unwrap();
    let keys = dir.join("keys");
    for alg in ["ecdsap256", "ed25519"] {
        let sub = keys.join(alg);
        let out = scop()
            .args(["dns", "keygen", "example.org", "--algorithm", alg, "--dir"])
            .arg(&sub)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stem = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let number = if alg == "ed25519" { "015" } else { "013" };
        assert!(
            stem.starts_with(&format!("Kexample.org.+{number}+")),
            "{stem}"
        );
        let public = sub.join(format!("{stem}.key"));
        let private = sub.join(format!("{stem}.private"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&private).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Our DS equals BIND's, computed from our .key file.
        let ours = scop()
            .args(["dns", "ds", "example.org", "--dir"])
            .arg(&sub)
            .output()
            .unwrap();
        assert!(ours.status.success());
        let bind = peer("usr/bin/dnssec-dsfromkey")
            .args(["-2"])
            .arg(&public)
            .output()
            .unwrap();
        assert!(
            bind.status.success(),
            "{}",
            String::from_utf8_lossy(&bind.stderr)
        );
        let norm = |b: &[u8]| {
            String::from_utf8_lossy(b)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(norm(&ours.stdout), norm(&bind.stdout));

        let (server, port) = serve_signed(&dir, &sub);
        let ta = anchor(&dir, &public, &format!("{alg}.anchor"));
        assert!(delv_ok(port, &ta, "mail.example.org", "A"), "{alg}");
        assert!(
            delv_ok(port, &ta, "nope.example.org", "A"),
            "{alg} NXDOMAIN"
        );
        drop(server);

        // Rollover, step one: both keys sign; either anchor validates.
        let out = scop()
            .args(["dns", "rollover", "example.org", "--dir"])
            .arg(&sub)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains(" IN DS "));
        let new_public = key_files(&sub).pop().unwrap();
        assert_ne!(new_public, public);
        let new_ta = anchor(&dir, &new_public, &format!("{alg}.new.anchor"));
        let (server, port) = serve_signed(&dir, &sub);
        assert!(
            delv_ok(port, &ta, "mail.example.org", "A"),
            "{alg}: old anchor during rollover"
        );
        assert!(
            delv_ok(port, &new_ta, "mail.example.org", "A"),
            "{alg}: new anchor during rollover"
        );
        drop(server);

        // Step two: only the new key is left.
        let out = scop()
            .args(["dns", "rollover", "example.org", "--finish", "--dir"])
            .arg(&sub)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (_server, port) = serve_signed(&dir, &sub);
        assert!(
            delv_ok(port, &new_ta, "mail.example.org", "A"),
            "{alg}: new anchor after"
        );
        assert!(
            !delv_ok(port, &ta, "mail.example.org", "A"),
            "{alg}: old key gone"
        );
    }
}

/// `scop spf check` and `scop dkim verify` without DNS data on the command
/// line ask the validating resolver. With
/// a stub zone to our signed primary and the zone's key directory as trust
/// anchor, SPF passes or fails on the validated record; with another key
/// as anchor every answer is bogus, and the check is a temperror rather
/// than a result drawn from unvalidated data.
#[test]
fn spf_and_dkim_checks_through_the_validating_resolver() {
    let dir = scratch("resolver");
    let dkim_key = dir.join("s1.pem");
    let out = scop()
        .args([
            "dkim",
            "keygen",
            "--algorithm",
            "ed25519",
            "--domain",
            "example.org",
        ])
        .args(["--selector", "s1", "--out"])
        .arg(&dkim_key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let dkim_txt = String::from_utf8_lossy(&out.stdout).trim().to_string();
    std::fs::write(
        dir.join("zone"),
        format!("{ZONE}@ TXT \"v=spf1 ip4:192.0.2.10 -all\"\n{dkim_txt}\n"),
    )
    .unwrap();
    let keys = dir.join("keys");
    let other = dir.join("other");
    for d in [&keys, &other] {
        let out = scop()
            .args(["dns", "keygen", "example.org", "--dir"])
            .arg(d)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    let (_serve, port) = serve_signed(&dir, &keys);
    let spf = |ip: &str, anchor: &Path| {
        let out = scop()
            .args(["spf", "check", "--ip", ip, "--mail-from", "a@example.org"])
            .args(["--helo", "client.example.org", "--resolver", "127.0.0.1:9"])
            .args(["--stub-zone", &format!("example.org=127.0.0.1:{port}")])
            .arg("--trust-anchor")
            .arg(anchor)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(spf("192.0.2.10", &keys), "pass");

    // `scop dkim verify` without --dns-txt/--dns-zone finds the key the
    // same way.
    let mut sign = scop()
        .args([
            "dkim",
            "sign",
            "--domain",
            "example.org",
            "--selector",
            "s1",
            "--key",
        ])
        .arg(&dkim_key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        &mut sign.stdin.take().unwrap(),
        b"From: a@example.org\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nHello.\r\n",
    )
    .unwrap();
    let signed = sign.wait_with_output().unwrap();
    assert!(signed.status.success(), "{signed:?}");
    let mut verify = scop()
        .args(["dkim", "verify", "--resolver", "127.0.0.1:9"])
        .args(["--stub-zone", &format!("example.org=127.0.0.1:{port}")])
        .arg("--trust-anchor")
        .arg(&keys)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut verify.stdin.take().unwrap(), &signed.stdout).unwrap();
    let verified = verify.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&verified.stdout);
    assert!(
        verified.status.success() && text.starts_with("pass d=example.org s=s1"),
        "{text}"
    );
    assert_eq!(spf("192.0.2.11", &keys), "fail");
    assert_eq!(spf("192.0.2.10", &other), "temperror");
}
