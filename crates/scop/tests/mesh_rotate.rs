//! `scop mesh rotate` on a running deployment: new certificates from the
//! current CA, then a new CA in three steps; after each, mail still
//! crosses every mesh hop of both chains (submission, signer, relay; mx,
//! spam filter, verifier, delivery), and at the end only the new CA is
//! trusted.

use std::path::Path;
use std::time::Duration;

mod deploy;

use deploy::*;

/// One message submitted with AUTH and one through the MX, both found in
/// alice's mailbox.
fn mail_flows(dir: &Path, mx: u16, subs: u16, tag: &str) {
    submit(
        "127.0.0.1",
        subs,
        "alice@alice.test",
        "a long passphrase",
        "postmaster@alice.test",
        &format!(
            "From: alice@alice.test\r\nTo: postmaster@alice.test\r\nSubject: submitted {tag}\r\n\r\nHi.\r\n"
        ),
    );
    python(
        r#"
import smtplib, sys
with smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=30) as s:
    s.ehlo("mx.alice.test")
    s.sendmail("bounces@alice.test", ["postmaster@alice.test"],
        "From: someone@alice.test\r\nTo: postmaster@alice.test\r\nSubject: inbound " + sys.argv[2] + "\r\n\r\nHi.\r\n")
"#,
        &[&mx.to_string(), tag],
    );
    let maildir = dir.join("mail/alice@alice.test/Maildir");
    let signed = wait_message(&maildir, &format!("Subject: submitted {tag}"));
    assert!(signed.contains("DKIM-Signature:"), "{signed}");
    let inbound = wait_message(&maildir, &format!("Subject: inbound {tag}"));
    assert!(inbound.contains("dmarc=pass"), "{inbound}");
}

fn pem_count(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap()
        .matches("-----BEGIN CERTIFICATE-----")
        .count()
}

#[test]
fn rotating_certificates_and_the_ca_keeps_mail_flowing() {
    let root = fresh_root("mesh-rotate");
    let dir = root.join("alice");
    let dir_s = dir.to_str().unwrap();
    let (mx, subs, dns) = (free_port(), free_port(), free_port());
    init_site(
        &dir,
        "alice.test",
        "alice",
        "a long passphrase",
        "127.0.0.1",
        mx,
        subs,
        dns,
    );
    let _supervisor = up(&dir, &root.join("up.log"));
    let addr = |p: u16| format!("127.0.0.1:{p}").parse().unwrap();
    wait_for("the listeners", Duration::from_secs(30), || {
        listening(addr(mx)) && listening(addr(subs))
    });
    mail_flows(&dir, mx, subs, "before");

    let cert = |role: &str| std::fs::read(dir.join(format!("mesh/{role}.pem"))).unwrap();
    let ca = || std::fs::read(dir.join("mesh/ca.pem")).unwrap();
    let pids = || -> Vec<u64> { MAIL_ROLES.iter().map(|r| compartment(&dir, r).0).collect() };

    // New certificates from the same CA; every compartment restarted.
    let (old_relay, old_ca, old_pids) = (cert("relay"), ca(), pids());
    let out = scop(&["mesh", "rotate", "--dir", dir_s], "");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "rotate: {out:?}");
    assert!(text.contains("compartments restarted"), "{text}");
    assert_ne!(cert("relay"), old_relay);
    assert_eq!(ca(), old_ca);
    let new_pids = pids();
    for (i, role) in MAIL_ROLES.iter().enumerate() {
        assert_ne!(new_pids[i], old_pids[i], "{role} was not restarted");
    }
    mail_flows(&dir, mx, subs, "after-leaves");

    // A new CA: three steps, three restarts; only the new CA is trusted.
    let (old_mx, old_ca) = (cert("mx"), ca());
    let out = scop(&["mesh", "rotate", "--dir", dir_s, "--ca"], "");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "rotate --ca: {out:?}");
    for step in ["step 1/3", "step 2/3", "step 3/3"] {
        assert!(text.contains(step), "{step}: {text}");
    }
    assert_eq!(text.matches("compartments restarted").count(), 3, "{text}");
    assert_ne!(ca(), old_ca);
    assert_ne!(cert("mx"), old_mx);
    assert!(!dir.join("mesh/ca-previous.pem").exists());
    assert_eq!(pem_count(&dir.join("mesh/trust.pem")), 1);
    assert_eq!(std::fs::read(dir.join("mesh/trust.pem")).unwrap(), ca());
    mail_flows(&dir, mx, subs, "after-ca");

    // `scop mesh status` shows the CA and every role.
    let out = scop(&["mesh", "status", "--dir", dir_s], "");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "status: {out:?}");
    assert!(text.starts_with("CA "), "{text}");
    for role in MAIL_ROLES {
        assert!(text.contains(role), "{role}: {text}");
    }
    assert!(!text.contains("in progress"), "{text}");
    drop(_supervisor);
    let _ = std::fs::remove_dir_all(&root);
}
