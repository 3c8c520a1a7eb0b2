//! Two deployments made by `scop init` and run by `scop up`, exchanging
//! mail end to end: alice.test on 127.0.0.2 and bob.test on 127.0.0.3,
//! each with its own signed primary. Each resolver takes the other's zone
//! from the other's primary (a stub zone) and validates it with the
//! other's DNSSEC keys.
//!
//! - alice submits over 465 with AUTH (Python smtplib and swaks); the
//!   message is signed (RSA and Ed25519), found by MX lookup, relayed from
//!   127.0.0.2 to bob's MX, labelled by the spam filter, verified
//!   (spf=pass, two dkim=pass, dmarc=pass) and delivered to bob's mailbox;
//! - a forged alice.test From sent straight to bob's MX from 127.0.0.1 is
//!   refused by DMARC (alice publishes p=reject);
//! - a message to a missing user is refused at RCPT;
//! - a spam message of the corpus's evaluation half is labelled spam;
//! - alice's relay bounces a message to an unreachable domain with a DSN
//!   after its (shortened) lifetime.

mod deploy;

use deploy::*;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A port free for TCP and UDP on every address of `ips`.
fn port_free_on(ips: &[&str]) -> u16 {
    for _ in 0..200 {
        let port = TcpListener::bind((ips[0], 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let free = ips.iter().all(|ip| {
            TcpListener::bind((*ip, port)).is_ok() && UdpSocket::bind((*ip, port)).is_ok()
        });
        if free {
            return port;
        }
    }
    panic!("no common free port on {ips:?}");
}

struct Site {
    name: &'static str,
    user: &'static str,
    ip: &'static str,
    dir: PathBuf,
    dns: u16,
    subs: u16,
}

impl Site {
    fn addr(&self, port: u16) -> SocketAddr {
        format!("{}:{port}", self.ip).parse().unwrap()
    }
    fn maildir(&self, user: &str) -> PathBuf {
        self.dir.join(format!("mail/{user}@{}/Maildir", self.name))
    }
}

const PASSWORD: &str = "correct horse battery staple";

fn init(root: &Path, name: &'static str, user: &'static str, ip: &'static str, mx: u16) -> Site {
    let site = Site {
        name,
        user,
        ip,
        dir: root.join(name),
        dns: port_free_on(&[ip]),
        subs: port_free_on(&[ip]),
    };
    init_site(&site.dir, name, user, PASSWORD, ip, mx, site.subs, site.dns);
    site
}

/// Adds the other site's zone (stub and trust anchor) and `extra`
/// arguments of `scop mail serve` to `site`'s scop.toml.
fn peer_with(site: &Site, other: &Site, extra: &[String]) {
    let mut entries = vec![
        (
            "stub_zones",
            format!("{}={}", other.name, other.addr(other.dns)),
        ),
        (
            "trust_anchors",
            other.dir.join("keys/dnssec").display().to_string(),
        ),
    ];
    entries.extend(extra.iter().map(|a| ("extra_args", a.clone())));
    add_to_mail_config(&site.dir, &entries);
}

fn up_site(root: &Path, site: &Site) -> Supervisor {
    up(&site.dir, &root.join(format!("{}.up.log", site.name)))
}

/// The Authentication-Results field of `message`, unfolded.
fn auth_results(message: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in message.lines() {
        if line.is_empty() {
            break;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            if inside {
                out.push_str(line);
            }
            continue;
        }
        inside = line
            .to_ascii_lowercase()
            .starts_with("authentication-results:");
        if inside {
            out.push_str(line);
        }
    }
    out
}

#[test]
fn alice_and_bob_exchange_authenticated_mail() {
    let root = fresh_root("two-domains");

    // Relays look MX hosts up and connect to this port on them.
    let mx = port_free_on(&["127.0.0.2", "127.0.0.3"]);
    let alice = init(&root, "alice.test", "alice", "127.0.0.2", mx);
    let bob = init(&root, "bob.test", "bob", "127.0.0.3", mx);

    // Bob filters spam with a model trained on the corpus's training half.
    let corpus = scop_testkit::spamassassin_corpus();
    let model = root.join("spam.model");
    let out = scop(
        &[
            "spam",
            "train",
            "--ham",
            corpus.join("easy-ham-1").to_str().unwrap(),
            "--ham",
            corpus.join("hard-ham-1").to_str().unwrap(),
            "--spam",
            corpus.join("spam-1").to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
        ],
        "",
    );
    assert!(out.status.success(), "spam train: {out:?}");

    let common = |site: &Site| -> Vec<String> {
        [
            "--source-ip",
            site.ip,
            "--remote-port",
            &mx.to_string(),
            "--greeting-delay",
            "0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let mut alice_extra = common(&alice);
    alice_extra.extend(
        ["--queue-lifetime", "4", "--retry-base", "1"]
            .iter()
            .map(|s| s.to_string()),
    );
    peer_with(&alice, &bob, &alice_extra);
    let mut bob_extra = common(&bob);
    bob_extra.extend(["--spam-model".to_string(), model.display().to_string()]);
    bob_extra.extend(["--dmarc-reports".to_string(), "3s".to_string()]);
    peer_with(&bob, &alice, &bob_extra);

    let _alice_up = up_site(&root, &alice);
    let _bob_up = up_site(&root, &bob);
    wait_for("both deployments", Duration::from_secs(60), || {
        [&alice, &bob]
            .iter()
            .all(|s| listening(s.addr(s.subs)) && listening(s.addr(mx)) && listening(s.addr(s.dns)))
    });

    // 1. alice -> bob through submission, signer, MX lookup, relay, MX,
    //    spam filter, verifier and delivery. Once with smtplib...
    submit(
        alice.ip,
        alice.subs,
        "alice@alice.test",
        PASSWORD,
        "bob@bob.test",
        "From: Alice <alice@alice.test>\r\nTo: bob@bob.test\r\nSubject: lunch by smtplib\r\n\r\nShall we meet at noon on Thursday?\r\n",
    );
    // ... and once with swaks.
    let swaks = scop_testkit::swaks()
        .args([
            "--server",
            alice.ip,
            "--port",
            &alice.subs.to_string(),
            "--tls-on-connect",
            "--auth",
            "PLAIN",
            "--auth-user",
            "alice@alice.test",
            "--auth-password",
            PASSWORD,
            "--from",
            "alice@alice.test",
            "--to",
            "bob@bob.test",
            "--header",
            "Subject: lunch by swaks",
            "--body",
            "The usual place, then.",
        ])
        .output()
        .unwrap();
    assert!(swaks.status.success(), "swaks: {swaks:?}");

    for subject in ["lunch by smtplib", "lunch by swaks"] {
        let got = wait_message(&bob.maildir(bob.user), subject);
        let ar = auth_results(&got);
        assert!(ar.contains("spf=pass"), "{subject}: {ar}\n{got}");
        assert_eq!(ar.matches("dkim=pass").count(), 2, "{subject}: {ar}");
        assert!(ar.contains("dmarc=pass"), "{subject}: {ar}");
        assert!(got.contains("X-Spam-Verdict:"), "{subject}: {got}");
        assert!(got.contains("a=rsa-sha256") && got.contains("a=ed25519-sha256"));
    }
    // bob's zone, as `scop init` wrote it, publishes the TLSA record of
    // bob's MX; alice's relay found it validated, so its TLS to bob had
    // to match it (DANE, RFC 7672).
    let relay_log = std::fs::read_to_string(alice.dir.join("logs/relay.log")).unwrap();
    assert!(
        relay_log.contains("DANE: TLS must match the host's TLSA records host=mx.bob.test"),
        "{relay_log}"
    );

    // 2. A forged alice.test From, straight to bob's MX from 127.0.0.1
    //    (not alice's address), unsigned: DMARC fails and alice's p=reject
    //    is enforced at the end of DATA.
    let forged = python(
        &format!(
            r#"
import smtplib
try:
    with smtplib.SMTP("{ip}", {mx}, timeout=30) as s:
        s.ehlo("forger.example")
        s.sendmail("billing@alice.test", ["bob@bob.test"],
            "From: Alice <alice@alice.test>\r\nTo: bob@bob.test\r\nSubject: pay this invoice\r\n\r\nUrgent.\r\n")
    print("accepted")
except smtplib.SMTPDataError as e:
    print("refused", e.smtp_code, e.smtp_error.decode())
"#,
            ip = bob.ip
        ),
        &[],
    );
    assert!(forged.starts_with("refused 550"), "{forged}");
    assert!(forged.to_ascii_lowercase().contains("dmarc"), "{forged}");

    // 3. A missing user is refused at RCPT.
    let missing = python(
        &format!(
            r#"
import smtplib
try:
    with smtplib.SMTP("{ip}", {mx}, timeout=30) as s:
        s.ehlo("mx.alice.test")
        s.sendmail("alice@alice.test", ["nobody@bob.test"], "Subject: x\r\n\r\nx\r\n")
    print("accepted")
except smtplib.SMTPRecipientsRefused as e:
    print("refused", e.recipients["nobody@bob.test"][0])
"#,
            ip = bob.ip
        ),
        &[],
    );
    assert_eq!(missing.trim(), "refused 550", "{missing}");

    // 4. Spam from the evaluation half of the corpus is labelled spam: the
    //    first of its messages that `scop spam classify` calls spam must
    //    get the same verdict inside the pipeline.
    let mut spam_files = scop_testkit::files_under(&corpus.join("spam-2"));
    spam_files.sort();
    spam_files.retain(|p| std::fs::read(p).is_ok_and(|m| m.len() < 20_000 && m.is_ascii()));
    spam_files.truncate(40);
    let mut args = vec!["spam", "classify", "--model", model.to_str().unwrap()];
    args.extend(spam_files.iter().map(|p| p.to_str().unwrap()));
    let out = scop(&args, "");
    assert!(out.status.success(), "spam classify: {out:?}");
    let verdicts = String::from_utf8_lossy(&out.stdout).into_owned();
    let chosen = verdicts
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"spam")).then(|| PathBuf::from(f[0]))
        })
        .unwrap_or_else(|| panic!("no spam among the first messages: {verdicts}"));
    let spam = std::fs::read(&chosen).unwrap();
    let spam_path = root.join("spam.eml");
    // The corpus files start with an mbox "From " line, which is not part
    // of the message on the wire.
    let body = match spam.strip_prefix(b"From ") {
        Some(rest) => &rest[rest.iter().position(|b| *b == b'\n').map_or(0, |i| i + 1)..],
        None => &spam[..],
    };
    let mut marked = b"X-Test-Marker: corpus spam\n".to_vec();
    marked.extend_from_slice(body);
    std::fs::write(&spam_path, &marked).unwrap();
    python(
        &format!(
            r#"
import smtplib, email.policy, email.parser
raw = open("{path}", "rb").read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
with smtplib.SMTP("{ip}", {mx}, timeout=30) as s:
    s.ehlo("relay.example")
    s.sendmail("", ["bob@bob.test"], raw)
"#,
            path = spam_path.display(),
            ip = bob.ip
        ),
        &[],
    );
    let labelled = wait_message(&bob.maildir(bob.user), "X-Test-Marker: corpus spam");
    assert!(
        labelled.contains("X-Spam-Verdict: spam"),
        "{}",
        &labelled[..labelled.len().min(2000)]
    );

    // 5. A domain that cannot be reached: alice's relay gives up after the
    //    lifetime and alice gets a failure DSN.
    submit(
        alice.ip,
        alice.subs,
        "alice@alice.test",
        PASSWORD,
        "carol@nowhere.invalid",
        "From: alice@alice.test\r\nTo: carol@nowhere.invalid\r\nSubject: into the void\r\n\r\nHello?\r\n",
    );
    let dsn = wait_message(&alice.maildir(alice.user), "carol@nowhere.invalid");
    assert!(dsn.contains("multipart/report"), "{dsn}");
    assert!(dsn.contains("Action: failed"), "{dsn}");

    // 6. Bob's verifier sends DMARC aggregate reports (every 3 s here) to
    //    alice.test's rua, dmarc-reports@alice.test, an alias of alice's
    //    account. The reports are DKIM-signed by bob.test, so they pass
    //    DMARC at alice's MX, and together they show alice's signed mail
    //    from 127.0.0.2 and the forgery from 127.0.0.1 refused.
    let decode = r#"
import email, email.policy, sys, glob, os
out = []
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*", "*"))):
    m = email.message_from_binary_file(open(path, "rb"), policy=email.policy.default)
    if not str(m["Subject"] or "").startswith("Report Domain: alice.test"):
        continue
    out.append("AR: " + " ".join(str(m["Authentication-Results"]).split()))
    for part in m.iter_attachments():
        out.append("FILE: " + part.get_filename())
        out.append(part.get_content() if isinstance(part.get_content(), str) else part.get_content().decode())
print("\n".join(out))
"#;
    let mut reports = String::new();
    wait_for("DMARC aggregate reports", Duration::from_secs(60), || {
        let maildir = alice.maildir(alice.user);
        reports = python(decode, &[maildir.to_str().unwrap()]);
        reports.contains("<source_ip>127.0.0.2</source_ip>")
            && reports.contains("<source_ip>127.0.0.1</source_ip>")
    });
    assert!(
        reports.contains("FILE: mx.bob.test!alice.test!"),
        "{reports}"
    );
    assert!(
        reports.contains("<header_from>alice.test</header_from>"),
        "{reports}"
    );
    assert!(
        reports.contains("<disposition>reject</disposition>"),
        "{reports}"
    );
    assert!(
        reports.contains("<disposition>none</disposition>"),
        "{reports}"
    );
    for line in reports.lines().filter(|l| l.starts_with("AR: ")) {
        assert!(line.contains("dmarc=pass"), "{line}");
        assert!(line.contains("header.d=bob.test"), "{line}");
    }

    // 7. The forgery also brought alice.test a failure report at once
    //    (its record has ruf= and the default fo=0: nothing aligned), an
    //    RFC 6591 auth-failure report, signed by bob.test.
    let failure = wait_message(&alice.maildir(alice.user), "Feedback-Type: auth-failure");
    for expected in [
        "Source-IP: 127.0.0.1",
        "Delivery-Result: reject",
        "Reported-Domain: alice.test",
        "d=bob.test",
    ] {
        assert!(failure.contains(expected), "{expected}: {failure}");
    }

    drop((_alice_up, _bob_up));
    let _ = std::fs::remove_dir_all(&root);
}
