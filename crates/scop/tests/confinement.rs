//! Each mail compartment of a `scop init` deployment, confined by Landlock
//! as under `scop up`, reaches only its own secrets: probed file by file
//! with the same command line the supervisor gives it.

use std::path::{Path, PathBuf};

mod deploy;

use deploy::*;

/// `scop mail serve --compartment ROLE` with the deployment's options,
/// applying the confinement and then trying to read `path`.
fn probe(dir: &Path, role: &str, path: &Path) -> (bool, String) {
    probe_with(dir, role, path.to_str().unwrap(), 7401)
}

fn probe_with(dir: &Path, role: &str, what: &str, mesh_base: u16) -> (bool, String) {
    let key = |name: &str| {
        std::fs::read_dir(dir.join("keys/dkim"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with(name))
            .unwrap()
    };
    let s = |p: PathBuf| p.to_str().unwrap().to_string();
    let args = vec![
        "mail".to_string(),
        "serve".into(),
        "--data".into(),
        s(dir.join("data")),
        "--tls-cert".into(),
        s(dir.join("tls/cert.pem")),
        "--tls-key".into(),
        s(dir.join("tls/key.pem")),
        "--trust-anchor".into(),
        s(dir.join("keys/dnssec")),
        "--dkim".into(),
        format!("conf.test:r:{}", s(key("r"))),
        "--dkim".into(),
        format!("conf.test:e:{}", s(key("e"))),
        "--dkim-publish".into(),
        "127.0.0.1:9".into(),
        "--dkim-tsig-key".into(),
        s(dir.join("keys/tsig/signer.key")),
        "--credentials".into(),
        s(dir.join("credentials/passwords.db")),
        "--mailboxes".into(),
        s(dir.join("mail")),
        "--compartment".into(),
        role.into(),
        "--mesh".into(),
        s(dir.join("mesh")),
        "--mesh-base".into(),
        format!("127.0.0.1:{mesh_base}"),
        "--confine-probe".into(),
        what.into(),
    ];
    let stdout = run_probe(&args, &format!("{role} {what}"));
    (
        stdout.starts_with("readable") || stdout.starts_with("connectable"),
        stdout,
    )
}

/// Runs a `--confine-probe` command (`who` names it in failures): it must
/// succeed under fully enforced Landlock; what it printed.
fn run_probe(args: &[String], who: &str) -> String {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = scop(&args, "");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{who}: {stdout}{stderr}");
    assert!(
        stderr.contains("landlock=\"fully enforced\""),
        "{who}: Landlock not enforced on this kernel: {stderr}"
    );
    stdout
}

fn s_path(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

#[test]
fn each_compartment_reaches_only_its_own_secrets() {
    let root = std::env::current_dir()
        .unwrap()
        .join(format!("../../target/confinement-{}", std::process::id()));
    std::fs::remove_dir_all(&root).ok();
    std::fs::create_dir_all(&root).unwrap();
    let dir = std::path::absolute(root.join("conf")).unwrap();
    let dns = format!("127.0.0.1:{}", free_port());
    let out = scop(
        &[
            "init",
            "--dir",
            dir.to_str().unwrap(),
            "--domain",
            "conf.test",
            "--ip",
            "127.0.0.1",
            "--password-stdin",
            "--mx",
            "127.0.0.1:1",
            "--dns",
            &dns,
        ],
        "a long passphrase\n",
    );
    assert!(out.status.success(), "init: {out:?}");
    // The store exists once something opened it.
    let out = scop(
        &[
            "user",
            "list",
            "--store",
            &format!("sqlite:{}", dir.join("data/scop.db").display()),
        ],
        "",
    );
    assert!(out.status.success(), "user list: {out:?}");

    // The account's hash is in the credentials file, not in the store
    // every store user reads.
    let bytes = |p: &str| {
        let mut b = std::fs::read(dir.join(p)).unwrap();
        b.extend(std::fs::read(dir.join(format!("{p}-wal"))).unwrap_or_default());
        b
    };
    let has_hash = |b: Vec<u8>| b.windows(10).any(|w| w == b"$argon2id$");
    assert!(
        !has_hash(bytes("data/scop.db")),
        "a password hash in the store"
    );
    assert!(has_hash(bytes("credentials/passwords.db")));

    let dkim = std::fs::read_dir(dir.join("keys/dkim"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .next()
        .unwrap();
    let mut files: Vec<(&str, PathBuf)> = vec![
        ("dkim key", dkim),
        ("tsig key", dir.join("keys/tsig/signer.key")),
        ("mesh CA key", dir.join("mesh/ca.key")),
        ("signer mesh key", dir.join("mesh/signer.key")),
        ("mx mesh key", dir.join("mesh/mx.key")),
        ("store", dir.join("data/scop.db")),
        ("password hashes", dir.join("credentials/passwords.db")),
        ("mailboxes", dir.join("mail")),
        ("public TLS key", dir.join("tls/key.pem")),
        ("zone", dir.join("zones")),
        ("scop.toml", dir.join("scop.toml")),
    ];
    // The system's certificate authorities: the relay's MTA-STS trust
    // store, and what the resolver's library loads (where the system has
    // them). Never the rest of /etc/ssl.
    let cas = PathBuf::from("/etc/ssl/certs/ca-certificates.crt");
    if cas.exists() {
        files.push(("system CAs", cas));
    }
    let private = PathBuf::from("/etc/ssl/private");
    if private.exists() {
        files.push(("/etc/ssl/private", private));
    }
    // Who may read what (everything else is denied).
    let allowed = |role: &str, what: &str| {
        matches!(
            (role, what),
            ("signer", "dkim key" | "tsig key" | "signer mesh key")
                | ("mx", "mx mesh key" | "store" | "public TLS key")
                | ("submission", "store" | "password hashes" | "public TLS key")
                | ("delivery" | "relay", "store" | "mailboxes")
                | ("relay" | "resolver", "system CAs")
        )
    };
    // The DNS primary, confined once it has read its zones and keys,
    // reaches only its journal (made by this first run).
    let config: toml::Table = std::fs::read_to_string(dir.join("scop.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let dns = config["dns"].as_table().unwrap();
    let at = |v: &toml::Value| s_path(&dir.join(v.as_str().unwrap()));
    let mut dns_args = vec![
        "dns".to_string(),
        "serve".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--journal".into(),
        at(&dns["journal"]),
        "--policy".into(),
        at(&dns["policy"]),
        "--dnssec-keys".into(),
        at(&dns["dnssec_keys"]),
        "--landlock".into(),
        "--confine-probe".into(),
    ];
    for z in dns["zones"].as_array().unwrap() {
        dns_args.extend(["--zone".into(), at(z)]);
    }
    for k in dns["tsig_keys"].as_array().unwrap() {
        dns_args.extend(["--tsig-key".into(), at(k)]);
    }
    let journal = dir.join(dns["journal"].as_str().unwrap());
    let dns_probe = |path: &Path| {
        let mut args = dns_args.clone();
        args.insert(
            args.iter().position(|a| a == "--confine-probe").unwrap() + 1,
            s_path(path),
        );
        run_probe(&args, &format!("dns {path:?}")).starts_with("readable")
    };
    assert!(
        dns_probe(&journal),
        "the DNS primary cannot read its journal"
    );
    let mut checked = 1;
    for (what, path) in &files {
        assert!(!dns_probe(path), "the DNS primary reads the {what}");
        checked += 1;
    }
    files.push(("dns journal", journal));
    for role in MAIL_ROLES {
        for (what, path) in &files {
            assert!(path.exists(), "{path:?}");
            let (readable, text) = probe(&dir, role, path);
            assert_eq!(
                readable,
                allowed(role, what),
                "{role} reading the {what}: {text}"
            );
            checked += 1;
        }
    }
    eprintln!("confinement: {checked} role/file pairs checked");

    // TCP: each role connects only to its next hop's mesh port (and the
    // DNS, store and remote-MTA ports its role needs).
    let base = free_ports("127.0.0.1", 6);
    let listeners: Vec<_> = (base..base + 6)
        .map(|p| std::net::TcpListener::bind(("127.0.0.1", p)).unwrap())
        .collect();
    // signer, relay, spamfilter, verifier, delivery, resolver
    let port = |i: u16| format!("tcp:127.0.0.1:{}", base + i);
    let may = [
        ("mx", 2),
        ("spamfilter", 3),
        ("verifier", 4),
        ("verifier", 0),
        ("submission", 0),
        ("signer", 1),
        ("relay", 5),
        ("verifier", 5),
    ];
    let mut tcp_checked = 0;
    for role in MAIL_ROLES {
        for i in 0..6 {
            let (ok, text) = probe_with(&dir, role, &port(i), base);
            assert_eq!(
                ok,
                may.contains(&(role, i)),
                "{role} -> mesh port +{i}: {text}"
            );
            tcp_checked += 1;
        }
    }
    drop(listeners);
    eprintln!("confinement: {tcp_checked} role/port pairs checked");
    std::fs::remove_dir_all(&root).ok();
}
