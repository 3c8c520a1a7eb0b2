//! Postfix as a third domain: our deployment alice.test (made by `scop
//! init`, run by `scop up`, on 127.0.0.2) and carol.test served by a real
//! Postfix (the Debian package unpacked by `cargo xtask peers`, on
//! 127.0.0.4) exchange mail in both directions.
//!
//! ```text
//!  smtplib --465 AUTH--> alice (submission, signer, relay) --route--> Postfix smtpd
//!                                                                      | virtual
//!                                                                      v
//!                                                          carol's Maildir (dkimpy: 2 x pass)
//!
//!  smtplib --25--> Postfix smtpd --smtp from 127.0.0.4--> alice's MX (verifier, delivery)
//!                                                          alice's Maildir (spf=pass, dmarc=pass)
//! ```
//!
//! carol.test's zone (SPF `ip4:127.0.0.4 -all`, DMARC p=none) is served
//! by `scop dns serve` and is a stub zone of alice's resolver without a
//! trust anchor, so it is used as insecure.

mod deploy;

use deploy::*;
use scop_testkit::postfix::{self, Postfix};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ALICE_IP: &str = "127.0.0.2";
const CAROL_IP: &str = "127.0.0.4";
const PASSWORD: &str = "correct horse battery staple";

/// A port free for TCP and UDP on `ip`.
fn port_free_on(ip: &str) -> u16 {
    for _ in 0..200 {
        let port = TcpListener::bind((ip, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if TcpListener::bind((ip, port)).is_ok() && UdpSocket::bind((ip, port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on {ip}");
}

fn addr(ip: &str, port: u16) -> SocketAddr {
    format!("{ip}:{port}").parse().unwrap()
}

/// carol.test's zone: Postfix's address is the only one allowed to send
/// its mail; DMARC monitors only.
const CAROL_ZONE: &str = "$ORIGIN carol.test.\n$TTL 300\n\
@ IN SOA ns1 hostmaster 2026010101 7200 3600 1209600 300\n\
@ NS ns1\n\
@ MX 10 mx\n\
@ TXT \"v=spf1 ip4:127.0.0.4 -all\"\n\
_dmarc TXT \"v=DMARC1; p=none\"\n\
ns1 A 127.0.0.4\n\
mx A 127.0.0.4\n";

/// `scop dns serve` of carol.test, killed on drop.
struct CarolDns(Child);

impl Drop for CarolDns {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Serves carol.test's zone on a free port of 127.0.0.4; its port.
fn serve_carol_zone(root: &Path) -> (CarolDns, u16) {
    let zone = root.join("carol.test.zone");
    std::fs::write(&zone, CAROL_ZONE).unwrap();
    let mut child = Command::new(SCOP)
        .args([
            "dns",
            "serve",
            "--listen",
            &format!("{CAROL_IP}:0"),
            "--zone",
        ])
        .arg(&zone)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(root.join("carol-dns.log")).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let guard = CarolDns(child);
    let port = line
        .trim()
        .strip_prefix(&format!("listening on {CAROL_IP}:"))
        .unwrap_or_else(|| panic!("scop dns serve: unexpected first line {line:?}"))
        .parse()
        .unwrap();
    (guard, port)
}

/// `scop init` of alice.test, as in two_domains.rs; returns its directory.
fn init_alice(root: &Path, mx: u16, dns: u16, subs: u16) -> PathBuf {
    let dir = root.join("alice.test");
    init_site(
        &dir,
        "alice.test",
        "alice",
        PASSWORD,
        ALICE_IP,
        mx,
        subs,
        dns,
    );
    dir
}

/// Adds carol.test to alice's scop.toml: a fixed route to Postfix, the
/// zone as an (insecure) stub zone, and relay options.
fn add_carol(dir: &Path, postfix: SocketAddr, carol_dns: SocketAddr) {
    let mut entries = vec![
        ("routes", format!("carol.test={postfix}")),
        ("stub_zones", format!("carol.test={carol_dns}")),
    ];
    for a in ["--source-ip", ALICE_IP, "--greeting-delay", "0"] {
        entries.push(("extra_args", a.to_string()));
    }
    add_to_mail_config(dir, &entries);
}

/// The values of every `name` header field of `message`, unfolded.
fn fields(message: &str, name: &str) -> Vec<String> {
    let prefix = format!("{}:", name.to_ascii_lowercase());
    let mut out: Vec<String> = Vec::new();
    let mut inside = false;
    for line in message.lines() {
        if line.is_empty() {
            break;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            if inside {
                out.last_mut().unwrap().push_str(line);
            }
            continue;
        }
        inside = line.to_ascii_lowercase().starts_with(&prefix);
        if inside {
            out.push(line[prefix.len()..].trim().to_string());
        }
    }
    out
}

/// Verifies every DKIM-Signature of a message file with dkimpy, the keys
/// asked over TCP from a DNS server (argv: PATH SERVER PORT, here alice's
/// primary); prints one line per signature: `d=D a=A ok|FAIL ERROR`.
const DKIMPY_VERIFY: &str = r#"
import sys, dkim, dns.resolver
path, server, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
r = dns.resolver.Resolver(configure=False)
r.nameservers = [server]
r.port = port
r.lifetime = 10
def dnsfunc(name, timeout=5):
    name = name.decode() if isinstance(name, bytes) else name
    answer = r.resolve(name, "TXT", tcp=True)
    return b"".join(b"".join(rr.strings) for rr in answer)
raw = open(path, "rb").read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
d = dkim.DKIM(raw, minkey=1024)
sigs = [h[1] for h in d.headers if h[0].lower() == b"dkim-signature"]
for i, sig in enumerate(sigs):
    tags = dict(t.strip().split("=", 1) for t in sig.decode().replace("\r\n", "").split(";") if "=" in t)
    try:
        ok = d.verify(idx=i, dnsfunc=dnsfunc)
        err = ""
    except Exception as e:
        ok, err = False, repr(e)
    print("d=%s a=%s %s %s" % (tags.get("d", "").strip(), tags.get("a", "").strip(), "ok" if ok else "FAIL", err))
"#;

/// Waits (up to 20 s) for a message containing `marker` in `maildir`;
/// on timeout, panics with `logs()`.
fn wait_for_message(maildir: &Path, marker: &str, logs: impl Fn() -> String) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(m) = messages(maildir).into_iter().find(|m| m.contains(marker)) {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "no message with {marker:?} in {}\n{}",
            maildir.display(),
            logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The path of the first message file under `maildir` containing `marker`.
fn message_path(maildir: &Path, marker: &str) -> PathBuf {
    scop_testkit::files_under(maildir)
        .into_iter()
        .find(|p| std::fs::read_to_string(p).is_ok_and(|m| m.contains(marker)))
        .unwrap_or_else(|| panic!("no message with {marker:?} under {}", maildir.display()))
}

#[test]
fn postfix_as_a_third_domain_exchanges_mail_both_ways() {
    let started = Instant::now();
    let root = fresh_root("postfix-domain");

    // carol.test's zone, served apart from both mail systems.
    let (_carol_dns, carol_dns_port) = serve_carol_zone(&root);

    // Postfix for carol.test on 127.0.0.4: carol's mail into a Maildir by
    // the virtual agent, alice.test's mail to alice's MX from 127.0.0.4.
    let alice_mx = port_free_on(ALICE_IP);
    let pf_port = port_free_on(CAROL_IP);
    let pf_dir = root.join("postfix");
    let carol_base = pf_dir.join("mail");
    std::fs::create_dir_all(&carol_base).unwrap();
    let nobody = postfix::uid_of("nobody");
    let nogroup = postfix::gid_of("nogroup");
    std::os::unix::fs::chown(&carol_base, Some(nobody), Some(nogroup)).unwrap();
    let mailboxes = pf_dir.join("virtual_mailboxes");
    std::fs::write(&mailboxes, "carol@carol.test carol/\n").unwrap();
    let transports = pf_dir.join("transport");
    std::fs::write(
        &transports,
        format!("alice.test smtp:[{ALICE_IP}]:{alice_mx}\n"),
    )
    .unwrap();
    let param = |k: &str, v: String| (k.to_string(), v);
    let pf = Postfix::start(
        &pf_dir,
        &postfix::Config {
            listen: addr(CAROL_IP, pf_port),
            hostname: "mx.carol.test".into(),
            params: vec![
                param("mydomain", "carol.test".into()),
                param("myorigin", "carol.test".into()),
                param("virtual_mailbox_domains", "carol.test".into()),
                param("virtual_mailbox_base", carol_base.display().to_string()),
                param(
                    "virtual_mailbox_maps",
                    format!("texthash:{}", mailboxes.display()),
                ),
                param("virtual_uid_maps", format!("static:{nobody}")),
                param("virtual_gid_maps", format!("static:{nogroup}")),
                param(
                    "transport_maps",
                    format!("texthash:{}", transports.display()),
                ),
                param("smtp_bind_address", CAROL_IP.into()),
                param("disable_dns_lookups", "yes".into()),
            ],
        },
    );
    let carol_maildir = carol_base.join("carol");

    // alice.test, by `scop init` and `scop up`, with carol.test routed to
    // Postfix and carol's zone as a stub zone.
    let alice_dns = port_free_on(ALICE_IP);
    let alice_subs = port_free_on(ALICE_IP);
    let alice = init_alice(&root, alice_mx, alice_dns, alice_subs);
    add_carol(&alice, pf.addr(), addr(CAROL_IP, carol_dns_port));
    let alice_up = up(&alice, &root.join("alice.up.log"));
    wait_for("alice's deployment", Duration::from_secs(30), || {
        [alice_subs, alice_mx, alice_dns]
            .iter()
            .all(|p| listening(addr(ALICE_IP, *p)))
    });
    let alice_maildir = alice.join("mail/alice@alice.test/Maildir");

    // 1. alice -> carol: submission with AUTH, our two signatures, our
    //    relay, Postfix's smtpd and virtual agent.
    submit(
        ALICE_IP,
        alice_subs,
        "alice@alice.test",
        PASSWORD,
        "carol@carol.test",
        "From: Alice <alice@alice.test>\r\nTo: Carol <carol@carol.test>\r\n\
         Subject: hello carol from scop\r\n\r\nLunch on Thursday?\r\n",
    );
    let got = wait_for_message(&carol_maildir, "hello carol from scop", || {
        format!("Postfix's log:\n{}", pf.log_tail())
    });
    let sigs = fields(&got, "DKIM-Signature");
    assert_eq!(sigs.len(), 2, "{got}");
    assert!(sigs.iter().any(|s| s.contains("a=rsa-sha256")), "{sigs:?}");
    assert!(
        sigs.iter().any(|s| s.contains("a=ed25519-sha256")),
        "{sigs:?}"
    );
    assert!(sigs.iter().all(|s| s.contains("d=alice.test")), "{sigs:?}");
    // Postfix's trace: received from our relay's address, for carol.
    assert!(
        fields(&got, "Received")
            .iter()
            .any(|r| r.contains(&format!("[{ALICE_IP}]")) && r.contains("mx.carol.test")),
        "{got}"
    );
    assert!(got.contains("Delivered-To: carol@carol.test"), "{got}");
    // dkimpy verifies both, the keys taken from alice's primary.
    let verdicts = python(
        DKIMPY_VERIFY,
        &[
            message_path(&carol_maildir, "hello carol from scop")
                .to_str()
                .unwrap(),
            ALICE_IP,
            &alice_dns.to_string(),
        ],
    );
    eprintln!("dkimpy on carol's copy:\n{verdicts}");
    let lines: Vec<&str> = verdicts.lines().collect();
    assert_eq!(lines.len(), 2, "{verdicts}");
    assert!(
        lines.contains(&"d=alice.test a=rsa-sha256 ok ")
            && lines.contains(&"d=alice.test a=ed25519-sha256 ok "),
        "dkimpy: {verdicts}"
    );

    // 2. carol -> alice: injected into Postfix's smtpd from 127.0.0.1
    //    (in mynetworks), relayed by Postfix's smtp client from 127.0.0.4
    //    to alice's MX, verified there against carol.test's zone.
    python(
        &format!(
            r#"
import smtplib
with smtplib.SMTP("{CAROL_IP}", {pf_port}, timeout=30) as s:
    s.ehlo("client.carol.test")
    s.sendmail("carol@carol.test", ["alice@alice.test"],
        "From: Carol <carol@carol.test>\r\nTo: Alice <alice@alice.test>\r\n"
        "Subject: reply from carol by postfix\r\n"
        "Date: Thu, 26 Nov 2026 12:00:00 +0000\r\n"
        "Message-ID: <reply-1@carol.test>\r\n\r\nThursday at noon suits me.\r\n")
"#
        ),
        &[],
    );
    let reply = wait_for_message(&alice_maildir, "reply from carol by postfix", || {
        format!(
            "Postfix's log:\n{}\nalice's log:\n{}",
            pf.log_tail(),
            std::fs::read_to_string(root.join("alice.up.log")).unwrap_or_default()
        )
    });
    let ar = fields(&reply, "Authentication-Results");
    assert_eq!(ar.len(), 1, "{reply}");
    let ar = &ar[0];
    eprintln!("alice's Authentication-Results: {ar}");
    assert!(ar.starts_with("mx.alice.test"), "{ar}");
    assert!(ar.contains("spf=pass"), "{ar}\n{reply}");
    assert!(ar.contains("smtp.mailfrom=carol@carol.test"), "{ar}");
    // No signature from Postfix; SPF aligns with the From domain.
    assert!(ar.contains("dkim=none"), "{ar}");
    assert!(ar.contains("dmarc=pass"), "{ar}");
    assert!(
        fields(&reply, "Received")
            .iter()
            .any(|r| r.contains("mx.carol.test") && r.contains(CAROL_IP)),
        "{reply}"
    );

    // Both stop cleanly: our supervisor, then Postfix's master (SIGTERM).
    drop(alice_up);
    pf.stop();
    eprintln!("postfix_domain: {:.1} s", started.elapsed().as_secs_f64());
    let _ = std::fs::remove_dir_all(&root);
}
