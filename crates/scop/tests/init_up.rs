//! `scop init` then `scop up`: the deployment serves its zone and takes
//! authenticated submission, signs and delivers; the supervisor restarts a
//! killed compartment and stops everything on SIGTERM.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

mod deploy;

use deploy::*;

#[test]
fn init_then_up_serves_signs_delivers_and_restarts() {
    let root = fresh_root("init-up");
    let dir = root.join("alice");
    let dir_s = dir.to_str().unwrap();
    let (mx, subs, dns) = (free_port(), free_port(), free_port());
    let mx_addr = format!("127.0.0.1:{mx}");
    let subs_addr = format!("127.0.0.1:{subs}");
    let dns_addr = format!("127.0.0.1:{dns}");
    let mesh_base = format!("127.0.0.1:{}", free_ports("127.0.0.1", 6));
    let init_args = [
        "init",
        "--dir",
        dir_s,
        "--domain",
        "alice.test",
        "--hostname",
        "mx.alice.test",
        "--ip",
        "127.0.0.1",
        "--user",
        "alice",
        "--password-stdin",
        "--mx",
        &mx_addr,
        "--submission",
        "off",
        "--submissions",
        &subs_addr,
        "--dns",
        &dns_addr,
        "--resolver",
        &dns_addr,
        "--mesh-base",
        &mesh_base,
    ];
    let out = scop(&init_args, "a long passphrase\n");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "init: {out:?}");
    assert!(stdout.contains("alice.test. NS mx.alice.test."), "{stdout}");
    assert!(stdout.contains("mx.alice.test. A 127.0.0.1"), "{stdout}");
    assert!(!stdout.contains("a long passphrase"));
    // The zone publishes the MX's DANE record, as `scop tls tlsa` prints it.
    let out = scop(&["tls", "tlsa", "--dir", dir_s], "");
    assert!(out.status.success(), "tls tlsa: {out:?}");
    let tlsa = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        tlsa.starts_with(&format!("_{mx}._tcp.mx.alice.test. IN TLSA 3 1 1 ")),
        "{tlsa}"
    );
    let zone = std::fs::read_to_string(dir.join("zones/alice.test.zone")).unwrap();
    assert!(zone.lines().any(|l| l == tlsa), "{tlsa}\n{zone}");
    let ds = stdout
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("alice.test.") && l.contains(" DS "))
        .unwrap_or_else(|| panic!("no DS line: {stdout}"))
        .to_string();

    // A second init changes nothing.
    let again = scop(&init_args, "other\n");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already a deployment"));

    // Private keys are the owner's alone.
    let mut selectors = Vec::new();
    for entry in std::fs::read_dir(dir.join("keys/dkim")).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
        selectors.push(path.file_stem().unwrap().to_str().unwrap().to_string());
    }
    selectors.sort();
    assert_eq!(selectors.len(), 2, "{selectors:?}");
    assert!(selectors[0].starts_with('e') && selectors[1].starts_with('r'));
    for key in ["keys/tsig/signer.key", "tls/key.pem"] {
        assert_eq!(mode(&dir.join(key)), 0o600, "{key}");
    }
    assert_eq!(mode(&dir.join("keys")), 0o700);
    assert_eq!(mode(&dir.join("mesh")), 0o700);
    for role in [
        "ca",
        "submission",
        "signer",
        "relay",
        "mx",
        "spamfilter",
        "verifier",
        "delivery",
    ] {
        assert_eq!(mode(&dir.join(format!("mesh/{role}.key"))), 0o600, "{role}");
    }
    let private_dnssec: Vec<_> = std::fs::read_dir(dir.join("keys/dnssec"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "private"))
        .collect();
    assert_eq!(private_dnssec.len(), 1);
    assert_eq!(mode(&private_dnssec[0]), 0o600);

    let supervisor = up(&dir, &root.join("up.log"));
    let subs_sock: SocketAddr = subs_addr.parse().unwrap();
    let mx_sock: SocketAddr = mx_addr.parse().unwrap();
    let dns_sock: SocketAddr = dns_addr.parse().unwrap();
    wait_for("the listeners", Duration::from_secs(30), || {
        listening(subs_sock) && listening(mx_sock) && listening(dns_sock)
    });

    // The zone, served by the deployment's own primary.
    assert_eq!(dig(dns, &["alice.test", "MX"]).trim(), "10 mx.alice.test.");
    assert!(
        dig(dns, &["_dmarc.alice.test", "TXT"]).contains("rua=mailto:dmarc-reports@alice.test")
    );
    assert!(dig(dns, &["alice.test", "TXT"]).contains("v=spf1 mx -all"));
    assert!(
        dig(dns, &["_smtp._tls.alice.test", "TXT"])
            .contains("v=TLSRPTv1; rua=mailto:tls-reports@alice.test")
    );
    for s in &selectors {
        let txt = dig(dns, &[&format!("{s}._domainkey.alice.test"), "TXT"]);
        assert!(txt.contains("v=DKIM1"), "{s}: {txt}");
    }

    // The zone is signed: delv, trusting the DS that init printed, fully
    // validates the MX answer.
    let dnskey = dig(dns, &["alice.test", "DNSKEY"]);
    assert!(dnskey.contains("257 3 13"), "{dnskey}");
    let fields: Vec<&str> = ds.split_whitespace().collect();
    let ds_at = fields.iter().position(|f| *f == "DS").unwrap();
    let anchor = root.join("anchor.conf");
    std::fs::write(
        &anchor,
        format!(
            "trust-anchors {{ alice.test. static-ds {} {} {} \"{}\"; }};\n",
            fields[ds_at + 1],
            fields[ds_at + 2],
            fields[ds_at + 3],
            fields[ds_at + 4..].concat()
        ),
    )
    .unwrap();
    let delv = scop_testkit::debian_command("usr/bin/delv")
        .args(["@127.0.0.1", "-p", &dns.to_string(), "-a"])
        .arg(&anchor)
        .args(["+root=alice.test", "alice.test", "MX"])
        .output()
        .unwrap();
    let delv_out =
        String::from_utf8_lossy(&delv.stdout).into_owned() + &String::from_utf8_lossy(&delv.stderr);
    assert!(delv_out.contains("fully validated"), "delv: {delv_out}");

    // Authenticated submission over implicit TLS; the message is signed
    // with both keys and delivered to the account's mailbox.
    submit(
        "127.0.0.1",
        subs,
        "alice@alice.test",
        "a long passphrase",
        "postmaster@alice.test",
        "From: alice@alice.test\r\nTo: postmaster@alice.test\r\nSubject: hello from init\r\n\r\nIt works.\r\n",
    );
    let maildir = dir.join("mail/alice@alice.test/Maildir");
    wait_for("local delivery", Duration::from_secs(30), || {
        !delivered(&maildir).is_empty()
    });
    let message = std::fs::read_to_string(&delivered(&maildir)[0]).unwrap();
    assert!(message.contains("Subject: hello from init"), "{message}");
    for s in &selectors {
        assert!(
            message.contains(&format!("s={s}")),
            "{s} signature: {message}"
        );
    }

    // An account added while the deployment runs, as the README says
    // (the hash goes to the credentials file only submission opens), can
    // log in at once; without the file the command refuses.
    let data = dir.join("data");
    let credentials = dir.join("credentials/passwords.db");
    assert_eq!(mode(&credentials), 0o600);
    assert_eq!(mode(&dir.join("credentials")), 0o700);
    let add = |with_credentials: bool| {
        let mut args = vec![
            "user",
            "add",
            "bob@alice.test",
            "--password-stdin",
            "--data",
            data.to_str().unwrap(),
        ];
        if with_credentials {
            args.extend(["--credentials", credentials.to_str().unwrap()]);
        }
        scop(&args, "bob's passphrase\n")
    };
    let refused = add(false);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--credentials"));
    let added = add(true);
    assert!(added.status.success(), "{added:?}");
    submit(
        "127.0.0.1",
        subs,
        "bob@alice.test",
        "bob's passphrase",
        "postmaster@alice.test",
        "From: bob@alice.test\r\nTo: postmaster@alice.test\r\nSubject: from bob\r\n\r\nHi.\r\n",
    );
    wait_for("bob's message", Duration::from_secs(30), || {
        delivered(&maildir).iter().any(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .contains("Subject: from bob")
        })
    });

    // Mail from outside through the MX: the verifier asks the validating
    // resolver, which takes alice.test from the domain's own primary (a
    // stub zone) and validates it with the domain's DNSSEC key. SPF
    // passes (mx.alice.test is 127.0.0.1) and DMARC by SPF alignment; a
    // bogus or unreachable answer would give temperror instead.
    python(
        r#"
import smtplib, sys
with smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=30) as s:
    s.ehlo("mx.alice.test")
    s.sendmail("bounces@alice.test", ["postmaster@alice.test"],
        "From: someone@alice.test\r\nTo: postmaster@alice.test\r\nSubject: through the mx\r\n\r\nHi.\r\n")
"#,
        &[&mx.to_string()],
    );
    let through_mx = wait_message(&maildir, "Subject: through the mx");
    assert!(through_mx.contains("spf=pass"), "{through_mx}");
    assert!(through_mx.contains("dmarc=pass"), "{through_mx}");

    // `scop status` sees everything running.
    let st = scop(&["status", "--dir", dir_s], "");
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(st.status.success(), "status: {text}");
    // One process per compartment.
    for name in std::iter::once("dns").chain(MAIL_ROLES) {
        assert!(text.contains(name), "{name}: {text}");
        assert_eq!(compartment(&dir, name).1, "running", "{name}");
    }

    // A killed compartment comes back under a new pid.
    let (pid, state, restarts) = compartment(&dir, "signer");
    assert_eq!((state.as_str(), restarts), ("running", 0));
    // The DKIM signer publishes its keys with a TSIG UPDATE at each start:
    // remove one record with the signer's key, kill the signer process,
    // and the restarted one puts the record back.
    let gone = format!("{}._domainkey", selectors[0]);
    let out = scop(
        &[
            "dns",
            "update",
            "--server",
            &dns_addr,
            "--key",
            dir.join("keys/tsig/signer.key").to_str().unwrap(),
            "--zone",
            "alice.test",
            "delete",
            &gone,
            "TXT",
        ],
        "",
    );
    assert!(out.status.success(), "dns update delete: {out:?}");
    let txt_of = |name: &str| dig(dns, &[&format!("{name}.alice.test"), "TXT"]);
    assert!(txt_of(&gone).trim().is_empty(), "{}", txt_of(&gone));
    signal(pid, "-KILL");
    wait_for("the signer restart", Duration::from_secs(30), || {
        let (new_pid, state, restarts) = compartment(&dir, "signer");
        new_pid != 0 && new_pid != pid && state == "running" && restarts == 1
    });
    wait_for("the listeners again", Duration::from_secs(30), || {
        listening(subs_sock) && listening(mx_sock)
    });
    wait_for(
        "the DKIM key published again",
        Duration::from_secs(30),
        || txt_of(&gone).contains("v=DKIM1"),
    );

    // `scop dkim rotate`: new selectors published with the signer's key,
    // the supervisor restarts the signer with them, and the next message is
    // signed with them while the old records stay.
    let (pid, _, _) = compartment(&dir, "signer");
    let out = scop(&["dkim", "rotate", "--dir", dir_s], "");
    assert!(out.status.success(), "dkim rotate: {out:?}");
    let config = std::fs::read_to_string(dir.join("scop.toml")).unwrap();
    let mut rotated: Vec<String> = std::fs::read_dir(dir.join("keys/dkim"))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .path()
                .file_stem()
                .unwrap()
                .to_str()
                .unwrap()
                .to_string()
        })
        .filter(|s| !selectors.contains(s))
        .collect();
    rotated.sort();
    assert_eq!(rotated.len(), 2, "{rotated:?}");
    for s in &rotated {
        assert!(config.contains(&format!("selector = \"{s}\"")), "{config}");
        assert!(
            txt_of(&format!("{s}._domainkey")).contains("v=DKIM1"),
            "{s}"
        );
    }
    for s in &selectors {
        assert!(
            txt_of(&format!("{s}._domainkey")).contains("v=DKIM1"),
            "{s}"
        );
    }
    wait_for(
        "the signer restart after rotation",
        Duration::from_secs(30),
        || {
            let (new_pid, state, restarts) = compartment(&dir, "signer");
            new_pid != 0 && new_pid != pid && state == "running" && restarts == 2
        },
    );
    wait_for(
        "the listeners after rotation",
        Duration::from_secs(30),
        || listening(subs_sock) && listening(mx_sock),
    );
    submit(
        "127.0.0.1",
        subs,
        "alice@alice.test",
        "a long passphrase",
        "postmaster@alice.test",
        "From: alice@alice.test\r\nTo: postmaster@alice.test\r\nSubject: after rotation\r\n\r\nNew keys.\r\n",
    );
    let after = wait_message(&maildir, "Subject: after rotation");
    for s in &rotated {
        assert!(after.contains(&format!("s={s}")), "{s}: {after}");
    }
    for s in &selectors {
        assert!(!after.contains(&format!("s={s};")), "{s}: {after}");
    }

    // SIGTERM stops the supervisor and its compartments.
    let mut supervisor = supervisor;
    let (dns_pid, _, _) = compartment(&dir, "dns");
    signal(u64::from(supervisor.0.id()), "-TERM");
    let start = Instant::now();
    let exit = loop {
        if let Some(exit) = supervisor.0.try_wait().unwrap() {
            break exit;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "supervisor did not stop"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(exit.success(), "{exit}");
    assert!(!listening(subs_sock), "mail still listening after stop");
    assert!(
        !Path::new(&format!("/proc/{dns_pid}")).exists(),
        "dns (pid {dns_pid}) outlived the supervisor"
    );
    let st = scop(&["status", "--dir", dir_s], "");
    assert_eq!(st.status.code(), Some(3), "{st:?}");
    drop(supervisor);
    let _ = std::fs::remove_dir_all(&root);
}
