//! Our primary against real DNS peers: nsupdate and dig (BIND 9),
//! knsupdate and kdig (Knot), and BIND's `named` as a TSIG-authenticated
//! secondary. A missing peer fails the test (`cargo xtask peers`
//! installs them).

mod common;

use common::*;
use scop_dns::server::Config;
use std::time::Duration;

fn spec(key: &scop_dns::tsig::Key) -> String {
    key.to_spec()
}

fn nsupdate(port: u16, key: &str, body: &str) -> Output {
    let mut cmd = peer("usr/bin/nsupdate");
    cmd.args(["-y", key, "-t", "5"]);
    let script = format!("server 127.0.0.1 {port}\nzone example.org.\n{body}send\n");
    run(cmd, &script)
}

fn knsupdate(port: u16, key: &str, body: &str) -> Output {
    let mut cmd = peer("usr/bin/knsupdate");
    cmd.args(["-y", key, "-t", "5"]);
    let script = format!("server 127.0.0.1 {port}\nzone example.org.\n{body}send\nquit\n");
    run(cmd, &script)
}

fn txt(port: u16, name: &str) -> String {
    let out = dig(port, &["+short", name, "TXT"]);
    assert!(out.ok, "dig failed: {}", out.stderr);
    out.stdout.trim().to_string()
}

#[test]
fn nsupdate_add_replace_delete_domainkey_txt() {
    let server = start(engine(""), Config::default());
    let p = server.port();
    let key = spec(&dkim_key());
    let name = "s1._domainkey.example.org.";

    let out = nsupdate(
        p,
        &key,
        &format!("update add {name} 300 TXT \"v=DKIM1; p=one\"\n"),
    );
    assert!(out.ok, "add: {}{}", out.stdout, out.stderr);
    assert_eq!(txt(p, name), "\"v=DKIM1; p=one\"");

    let out = nsupdate(
        p,
        &key,
        &format!("update delete {name} TXT\nupdate add {name} 300 TXT \"v=DKIM1; p=two\"\n"),
    );
    assert!(out.ok, "replace: {}{}", out.stdout, out.stderr);
    assert_eq!(txt(p, name), "\"v=DKIM1; p=two\"");

    let out = nsupdate(p, &key, &format!("update delete {name} TXT\n"));
    assert!(out.ok, "delete: {}{}", out.stdout, out.stderr);
    assert_eq!(txt(p, name), "");
    let out = dig(p, &[name, "TXT"]);
    assert!(out.stdout.contains("status: NXDOMAIN"), "{}", out.stdout);
    assert!(out.stdout.contains("flags: qr aa"), "{}", out.stdout);
    // Three changes, three serial bumps.
    let soa = dig(p, &["+short", "example.org.", "SOA"]);
    assert!(soa.stdout.contains(" 2024010104 "), "{}", soa.stdout);
}

#[test]
fn knsupdate_add_replace_delete_domainkey_txt() {
    let server = start(engine(""), Config::default());
    let p = server.port();
    let key = spec(&dkim_key());
    let name = "s2._domainkey.example.org.";
    let short = |name: &str| {
        let out = kdig(p, &["+short", name, "TXT"]);
        assert!(out.ok, "kdig: {}", out.stderr);
        out.stdout.trim().to_string()
    };

    let out = knsupdate(
        p,
        &key,
        &format!("update add {name} 300 TXT \"v=DKIM1; p=k1\"\n"),
    );
    assert!(out.ok, "add: {}{}", out.stdout, out.stderr);
    assert_eq!(short(name), "\"v=DKIM1; p=k1\"");

    let out = knsupdate(
        p,
        &key,
        &format!("update delete {name} TXT\nupdate add {name} 300 TXT \"v=DKIM1; p=k2\"\n"),
    );
    assert!(out.ok, "replace: {}{}", out.stdout, out.stderr);
    assert_eq!(short(name), "\"v=DKIM1; p=k2\"");

    let out = knsupdate(
        p,
        &key,
        &format!("update delete {name} TXT \"v=DKIM1; p=k2\"\n"),
    );
    assert!(out.ok, "delete: {}{}", out.stdout, out.stderr);
    assert_eq!(short(name), "");
}

#[test]
fn nsupdate_with_wrong_secret_or_unknown_key_is_refused() {
    let server = start(engine(""), Config::default());
    let p = server.port();
    let body = "update add s1._domainkey.example.org. 300 TXT \"x\"\n";
    let wrong = "hmac-sha256:dkim-signer.:d3Jvbmcgc2VjcmV0IDAxMjM0NTY3ODk=";
    let out = nsupdate(p, wrong, body);
    assert!(!out.ok);
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(all.contains("update failed: NOTAUTH(BADSIG)"), "{all}");

    let unknown = "hmac-sha256:stranger.:d3Jvbmcgc2VjcmV0IDAxMjM0NTY3ODk=";
    let out = nsupdate(p, unknown, body);
    assert!(!out.ok);
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(all.contains("update failed: NOTAUTH(BADKEY)"), "{all}");

    // No key at all: updates must be signed.
    let mut cmd = peer("usr/bin/nsupdate");
    cmd.args(["-t", "5"]);
    let out = run(
        cmd,
        &format!("server 127.0.0.1 {p}\nzone example.org.\n{body}send\n"),
    );
    assert!(!out.ok);
    assert!(
        out.stderr.contains("update failed: REFUSED"),
        "{}",
        out.stderr
    );

    assert_eq!(txt(p, "s1._domainkey.example.org."), "");
}

#[test]
fn dkim_key_cannot_replace_apex_mx() {
    let server = start(engine(""), Config::default());
    let p = server.port();
    let out = nsupdate(
        p,
        &spec(&dkim_key()),
        "update delete example.org. MX\nupdate add example.org. 300 MX 10 evil.example.net.\n",
    );
    assert!(!out.ok);
    assert!(
        out.stdout.contains("REFUSED") || out.stderr.contains("REFUSED"),
        "{}{}",
        out.stdout,
        out.stderr
    );
    let mx = dig(p, &["+short", "example.org.", "MX"]);
    assert_eq!(mx.stdout.trim(), "10 mail.example.org.");
    let soa = dig(p, &["+short", "example.org.", "SOA"]);
    assert!(
        soa.stdout.contains(" 2024010101 "),
        "zone unchanged: {}",
        soa.stdout
    );
}

/// A zone well over 64 KiB.
fn big_zone() -> String {
    let mut extra = String::new();
    for i in 0..3000 {
        extra.push_str(&format!(
            "host{i:05} TXT \"filler record number {i} to make the zone larger than sixty-four KiB\"\n"
        ));
    }
    extra
}

#[test]
fn dig_axfr_with_tsig_of_a_zone_over_64k() {
    let extra = big_zone();
    let eng = engine(&extra);
    let total = eng.zones().next().unwrap().len();
    let server = start(eng, Config::default());
    let p = server.port();
    let out = dig(p, &["-y", &spec(&xfr_key()), "AXFR", "example.org."]);
    assert!(out.ok, "{}", out.stderr);
    assert!(!out.stdout.contains("Transfer failed"), "{}", out.stdout);
    assert!(
        !out.stdout.contains("Couldn't verify") && !out.stdout.contains("tsig"),
        "dig verified every message's TSIG: {}",
        out.stdout
    );
    let records = out
        .stdout
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty() && !l.contains("\tTSIG\t"))
        .count();
    assert_eq!(records, total + 1, "every record plus the closing SOA");
    let messages: usize = out
        .stdout
        .lines()
        .find_map(|l| l.split("(messages ").nth(1))
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!(
        messages > 4,
        "several messages: {}",
        out.stdout.lines().last().unwrap_or("")
    );

    // Without a key, or with a key not allowed to transfer: refused.
    let out = dig(p, &["AXFR", "example.org."]);
    assert!(out.stdout.contains("Transfer failed"), "{}", out.stdout);
    let out = dig(p, &["-y", &spec(&dkim_key()), "AXFR", "example.org."]);
    assert!(out.stdout.contains("Transfer failed"), "{}", out.stdout);
}

#[test]
fn dig_ixfr_returns_the_journal_difference() {
    let server = start(engine(""), Config::default());
    let p = server.port();
    let key = spec(&dkim_key());
    let out = nsupdate(
        p,
        &key,
        "update add a._domainkey.example.org. 300 TXT \"first\"\n",
    );
    assert!(out.ok, "{}", out.stderr);
    let out = nsupdate(
        p,
        &key,
        "update delete a._domainkey.example.org. TXT\nupdate add b._domainkey.example.org. 300 TXT \"second\"\n",
    );
    assert!(out.ok, "{}", out.stderr);
    let out = dig(
        p,
        &[
            "+tcp",
            "-y",
            &spec(&xfr_key()),
            "IXFR=2024010101",
            "example.org.",
        ],
    );
    assert!(out.ok, "{}", out.stderr);
    let lines: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty() && !l.contains("\tTSIG\t"))
        .collect();
    // SOA 3, SOA 1, (no deletes), SOA 2, +first, SOA 2, -first, SOA 3, +second, SOA 3
    assert_eq!(lines.len(), 9, "{}", out.stdout);
    assert!(lines[0].contains(" 2024010103 "));
    assert!(lines[1].contains(" 2024010101 "));
    assert!(lines[2].contains(" 2024010102 "));
    assert!(lines[3].contains("\"first\""));
    assert!(lines[4].contains(" 2024010102 "));
    assert!(lines[5].contains("\"first\""));
    assert!(lines[6].contains(" 2024010103 "));
    assert!(lines[7].contains("\"second\""));
    assert!(lines[8].contains(" 2024010103 "));
    // Up to date: the SOA alone.
    let out = dig(
        p,
        &[
            "+tcp",
            "-y",
            &spec(&xfr_key()),
            "IXFR=2024010103",
            "example.org.",
        ],
    );
    let n = out.stdout.lines().filter(|l| l.contains("\tSOA\t")).count();
    assert_eq!(n, 1, "{}", out.stdout);
}

#[test]
fn changes_survive_a_restart_through_the_journal() {
    let dir = scratch("journal");
    let config = Config {
        journal_dir: Some(dir.clone()),
        notify: Vec::new(),
    };
    {
        let mut eng = engine("");
        scop_dns::server::replay_journals(&mut eng, &dir).unwrap();
        let server = start(eng, config.clone());
        let out = nsupdate(
            server.port(),
            &spec(&dkim_key()),
            "update add s9._domainkey.example.org. 300 TXT \"durable\"\n",
        );
        assert!(out.ok, "{}", out.stderr);
    }
    let mut eng = engine("");
    assert_eq!(
        scop_dns::server::replay_journals(&mut eng, &dir).unwrap(),
        1
    );
    let server = start(eng, config);
    assert_eq!(
        txt(server.port(), "s9._domainkey.example.org."),
        "\"durable\""
    );
    let soa = dig(server.port(), &["+short", "example.org.", "SOA"]);
    assert!(soa.stdout.contains(" 2024010102 "), "{}", soa.stdout);
}

use common::KillOnDrop as Named;

#[test]
fn bind_named_secondary_takes_axfr_then_ixfr_after_notify() {
    let dir = scratch("named");
    let named_port = free_port();
    let extra = big_zone();
    let server = start(
        engine(&extra),
        Config {
            journal_dir: None,
            notify: vec![format!("127.0.0.1:{named_port}").parse().unwrap()],
        },
    );
    let key = xfr_key();
    let conf = format!(
        "options {{\n directory \"{dir}\";\n listen-on port {named_port} {{ 127.0.0.1; }};\n listen-on-v6 {{ none; }};\n pid-file none;\n recursion no;\n dnssec-validation no;\n notify no;\n}};\n\
controls {{ }};\n{key_block}\
zone \"example.org\" {{ type secondary; primaries {{ 127.0.0.1 port {port} key \"xfr.\"; }}; file \"example.org.db\"; }};\n",
        dir = dir.display(),
        key_block = key.to_bind(),
        port = server.port()
    );
    std::fs::write(dir.join("named.conf"), conf).unwrap();
    let log = dir.join("named.log");
    let mut cmd = peer("usr/sbin/named");
    cmd.args(["-g", "-n", "1", "-c"])
        .arg(dir.join("named.conf"));
    cmd.stdout(std::fs::File::create(&log).unwrap());
    cmd.stderr(std::fs::File::create(&log).unwrap());
    let _named = Named(cmd.spawn().expect("named starts"));

    let text = wait_for(&log, "Transfer status: success", 1, Duration::from_secs(30));
    assert!(text.contains("Transfer completed"), "{text}");
    assert!(
        text.contains("3011 records"),
        "every record arrived: {text}"
    );
    let out = dig(named_port, &["+short", "host02999.example.org.", "TXT"]);
    assert!(
        out.stdout.contains("filler record number 2999"),
        "{}",
        out.stdout
    );

    // An update on our side: NOTIFY, then named asks for IXFR.
    let out = nsupdate(
        server.port(),
        &spec(&dkim_key()),
        "update add s1._domainkey.example.org. 300 TXT \"after notify\"\n",
    );
    assert!(out.ok, "{}", out.stderr);
    let text = wait_for(&log, "Transfer status: success", 2, Duration::from_secs(30));
    assert!(text.contains("notify from 127.0.0.1"), "{text}");
    // Incremental: new SOA, old SOA, new SOA, the TXT, new SOA.
    assert!(
        text.contains("Transfer completed: 1 messages, 5 records"),
        "an IXFR, not a full transfer: {text}"
    );
    let out = dig(named_port, &["+short", "s1._domainkey.example.org.", "TXT"]);
    assert_eq!(out.stdout.trim(), "\"after notify\"");
}
