//! The mail compartments on loopback, driven by swaks (the real SMTP test
//! client) and by raw sockets for the attacks: submission with AUTH over
//! 465 and 587, relay to another domain's MX, local delivery, forwarding
//! with SRS, bounces with DSNs, and the MX's defences (no open relay,
//! unknown users refused at RCPT, SMTP smuggling, STARTTLS command
//! injection, early talkers, per-address limits).

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{Domain, Setup, domain, file_with, run_swaks};
use scop_mail::relay::{RetryPolicy, Routes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MESSAGE: &[u8] = b"From: Alice <alice@a.test>\r\nTo: bob@b.test\r\nSubject: hello from scop\r\n\r\nA line of text.\r\n..a line that starts with a dot\r\n";

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn port(a: SocketAddr) -> String {
    a.port().to_string()
}

async fn routed_pair(setup_a: Setup) -> (common::Domain, common::Domain) {
    let b = domain(
        "b.test",
        &[("bob@b.test", "bob-password")],
        Setup::default(),
    )
    .await;
    let mut setup_a = setup_a;
    setup_a.routes.fixed.insert("b.test".into(), vec![b.mx()]);
    let a = domain("a.test", &[("alice@a.test", "alice-password")], setup_a).await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submission_465_relays_to_the_other_domain_mx() {
    let (a, b) = routed_pair(Setup::default()).await;
    let data = file_with(&a.dir, "msg.eml", MESSAGE);
    let (ok, t) = common::submit_as_alice(&a, "bob@b.test", &data).await;
    assert!(ok, "{t}");
    assert!(t.contains("235 2.7.0"), "{t}");
    assert!(t.contains("250 2.0.0 OK queued as"), "{t}");

    let got = b.wait_messages("bob@b.test", 1, 20).await;
    let m = String::from_utf8_lossy(&got[0]).to_string();
    assert!(m.starts_with("Return-Path: <alice@a.test>\r\n"), "{m}");
    // Two trace fields: b's MX (TLS, from the relay) above a's submission.
    let mx = m.find("by mail.b.test with ESMTPS").expect(&m);
    let sub = m.find("by mail.a.test with ESMTPSA").expect(&m);
    assert!(mx < sub, "{m}");
    assert!(
        m.contains("Message-ID: <"),
        "submission adds a Message-ID: {m}"
    );
    assert!(m.contains("\r\nDate: "), "submission adds a Date: {m}");
    assert!(
        m.contains("\r\n\r\nA line of text.\r\n..a line that starts with a dot\r\n"),
        "{m}"
    );
    let parsed = scop_mime::parse(&got[0]).unwrap();
    assert_eq!(
        parsed.message.header("Subject").unwrap().text(),
        "hello from scop"
    );
    // The queue is empty once delivered.
    for _ in 0..100 {
        if a.store.list_queue().await.unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let q = a.store.list_queue().await.unwrap();
    assert!(q.is_empty(), "{q:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submission_587_needs_starttls_auth_and_an_owned_sender() {
    let (a, b) = routed_pair(Setup::default()).await;
    let data = file_with(&a.dir, "msg.eml", MESSAGE);
    let p = port(a.submission());
    let base = |extra: &[&str]| {
        let mut v = args(&[
            "--server",
            "127.0.0.1",
            "--port",
            &p,
            "--to",
            "bob@b.test",
            "--data",
            &data,
        ]);
        v.extend(args(extra));
        v
    };
    // STARTTLS + AUTH LOGIN works.
    let (ok, t) = run_swaks(base(&[
        "--tls",
        "--auth",
        "LOGIN",
        "--auth-user",
        "alice@a.test",
        "--auth-password",
        "alice-password",
        "--from",
        "alice@a.test",
    ]))
    .await;
    assert!(ok, "{t}");
    b.wait_messages("bob@b.test", 1, 20).await;

    // Without TLS, AUTH is not even offered.
    let (ok, t) = run_swaks(base(&[
        "--auth",
        "PLAIN",
        "--auth-user",
        "alice@a.test",
        "--auth-password",
        "alice-password",
        "--from",
        "alice@a.test",
    ]))
    .await;
    assert!(!ok, "{t}");
    assert!(!t.contains("AUTH PLAIN"), "AUTH offered before TLS: {t}");

    // Without AUTH, MAIL is refused.
    let (ok, t) = run_swaks(base(&["--tls", "--from", "alice@a.test"])).await;
    assert!(!ok, "{t}");
    assert!(t.contains("530 5.7.0"), "{t}");

    // A wrong password is refused.
    let (ok, t) = run_swaks(base(&[
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        "alice@a.test",
        "--auth-password",
        "wrong",
        "--from",
        "alice@a.test",
    ]))
    .await;
    assert!(!ok, "{t}");
    assert!(t.contains("535 5.7.8"), "{t}");

    // Alice may not send as bob.
    let (ok, t) = run_swaks(base(&[
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        "alice@a.test",
        "--auth-password",
        "alice-password",
        "--from",
        "bob@b.test",
    ]))
    .await;
    assert!(!ok, "{t}");
    assert!(t.contains("553 5.7.1"), "{t}");
    assert_eq!(b.messages("bob@b.test").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mx_is_not_an_open_relay_and_refuses_unknown_users() {
    let (a, _b) = routed_pair(Setup::default()).await;
    let data = file_with(&a.dir, "msg.eml", MESSAGE);
    let p = port(a.mx());
    let to = |rcpt: &str| {
        args(&[
            "--server",
            "127.0.0.1",
            "--port",
            &p,
            "--from",
            "someone@elsewhere.test",
            "--to",
            rcpt,
            "--data",
            &data,
        ])
    };
    let (ok, t) = run_swaks(to("nobody@a.test")).await;
    assert!(!ok, "{t}");
    assert!(t.contains("550 5.1.1"), "{t}");
    // b.test is routed by a's relay, but a's MX must not relay to it.
    let (ok, t) = run_swaks(to("bob@b.test")).await;
    assert!(!ok, "{t}");
    assert!(t.contains("554 5.7.1"), "{t}");
    let (ok, t) = run_swaks(to("victim@[127.0.0.1]")).await;
    assert!(!ok, "{t}");
    assert!(t.contains("550 5.7.1"), "{t}");
    // Postmaster and a real user are accepted.
    let (ok, t) = run_swaks(to("alice@A.TEST")).await;
    assert!(ok, "{t}");
    a.wait_messages("alice@a.test", 1, 10).await;
    assert!(
        a.store.list_queue().await.unwrap().is_empty(),
        "nothing relayed"
    );
}

async fn read_reply(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("reply in time")
            .unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        // Complete when the last line is a final line ("ddd ").
        let text = String::from_utf8_lossy(&out);
        let last = text
            .trim_end_matches("\r\n")
            .rsplit("\r\n")
            .next()
            .unwrap_or("");
        if out.ends_with(b"\r\n") && last.len() >= 4 && last.as_bytes()[3] == b' ' {
            break;
        }
    }
    String::from_utf8_lossy(&out).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_smuggling_is_refused_at_the_real_end_of_data() {
    let (a, _b) = routed_pair(Setup::default()).await;
    for ending in [&b"\n.\n"[..], b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r\n.\r"] {
        let mut s = TcpStream::connect(a.mx()).await.unwrap();
        assert!(read_reply(&mut s).await.starts_with("220"));
        s.write_all(b"EHLO attacker.test\r\n").await.unwrap();
        read_reply(&mut s).await;
        for cmd in [
            "MAIL FROM:<x@elsewhere.test>\r\n",
            "RCPT TO:<alice@a.test>\r\n",
            "DATA\r\n",
        ] {
            s.write_all(cmd.as_bytes()).await.unwrap();
            let r = read_reply(&mut s).await;
            assert!(r.starts_with('2') || r.starts_with('3'), "{cmd}: {r}");
        }
        let mut body = b"Subject: first\r\n\r\nhello".to_vec();
        body.extend_from_slice(ending);
        body.extend_from_slice(
            b"MAIL FROM:<ceo@a.test>\r\nRCPT TO:<alice@a.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nsmuggled\r\n.\r\n",
        );
        s.write_all(&body).await.unwrap();
        let r = read_reply(&mut s).await;
        assert!(r.starts_with("554 5.6.0"), "{ending:?}: {r}");
        s.write_all(b"QUIT\r\n").await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(a.messages("alice@a.test").is_empty(), "nothing delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_talkers_and_connection_floods_are_refused() {
    let setup = Setup {
        greeting_delay: Duration::from_millis(400),
        per_ip: 2,
        ..Setup::default()
    };
    let a = domain("a.test", &[("alice@a.test", "pw")], setup).await;
    let mut s = TcpStream::connect(a.mx()).await.unwrap();
    s.write_all(b"EHLO fast.test\r\n").await.unwrap();
    let r = read_reply(&mut s).await;
    assert!(r.starts_with("554 5.5.1"), "{r}");

    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = TcpStream::connect(a.mx()).await.unwrap();
        assert!(read_reply(&mut c).await.starts_with("220"));
        held.push(c);
    }
    let mut third = TcpStream::connect(a.mx()).await.unwrap();
    let r = read_reply(&mut third).await;
    assert!(r.starts_with("421 4.7.0"), "{r}");
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_pipelined_behind_starttls_are_discarded() {
    let a = domain("a.test", &[("alice@a.test", "pw")], Setup::default()).await;
    let mut s = TcpStream::connect(a.mx()).await.unwrap();
    assert!(read_reply(&mut s).await.starts_with("220"));
    s.write_all(b"EHLO x.test\r\n").await.unwrap();
    assert!(read_reply(&mut s).await.contains("STARTTLS"));
    // The injected MAIL rides in the same segment as STARTTLS.
    s.write_all(b"STARTTLS\r\nMAIL FROM:<injected@evil.test>\r\n")
        .await
        .unwrap();
    let r = read_reply(&mut s).await;
    assert!(r.starts_with("220"), "{r}");
    let connector = tokio_rustls::TlsConnector::from(scop_mail::tls::opportunistic_client());
    let mut tls = connector
        .connect("mail.a.test".try_into().unwrap(), s)
        .await
        .unwrap();
    tls.write_all(b"RCPT TO:<alice@a.test>\r\n").await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tls.read(&mut buf).await.unwrap();
    let r = String::from_utf8_lossy(&buf[..n]).to_string();
    // Had the MAIL survived, RCPT would be accepted; it must be out of
    // sequence (503) since the session restarted.
    assert!(r.starts_with("503"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_destination_bounces_with_a_dsn_after_the_lifetime() {
    let mut routes = Routes::default();
    // Nothing listens on port 1.
    routes.fixed.insert(
        "unreachable.test".into(),
        vec!["127.0.0.1:1".parse().unwrap()],
    );
    let setup = Setup {
        routes,
        lifetime_secs: 2,
        retry: RetryPolicy {
            base_secs: 1,
            max_secs: 1,
            ..RetryPolicy::default()
        },
        ..Setup::default()
    };
    let a = domain("a.test", &[("alice@a.test", "alice-password")], setup).await;
    let data = file_with(&a.dir, "msg.eml", MESSAGE);
    let (ok, t) = common::submit_as_alice(&a, "carol@unreachable.test", &data).await;
    assert!(ok, "{t}");
    let got = a.wait_messages("alice@a.test", 1, 30).await;
    let m = String::from_utf8_lossy(&got[0]).to_string();
    assert!(m.starts_with("Return-Path: <>\r\n"), "{m}");
    assert!(m.contains("Undelivered Mail Returned to Sender"), "{m}");
    assert!(
        m.contains("Final-Recipient: rfc822; carol@unreachable.test"),
        "{m}"
    );
    assert!(m.contains("Action: failed"), "{m}");
    assert!(m.contains("Status: 4.4.7"), "{m}");
    assert!(m.contains("Subject: hello from scop"), "{m}");
    // The failed recipient is recorded, and the DSN is not bounced again:
    // the queue empties once the report's own delivery is recorded (just
    // after its mailbox write).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let queue = a.store.list_queue().await.unwrap();
        if queue.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{queue:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(a.messages("alice@a.test").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_mail_is_rewritten_with_srs_and_aliases_resolve() {
    let (a, b) = routed_pair(Setup::default()).await;
    a.store.add_user("carol@a.test", "carol-pw").await.unwrap();
    a.store
        .set_forward("carol@a.test", &["bob@b.test".to_string()])
        .await
        .unwrap();
    a.store
        .add_alias("info@a.test", "alice@a.test")
        .await
        .unwrap();
    a.store.add_alias("@a.test", "alice@a.test").await.unwrap();
    let data = file_with(&a.dir, "msg.eml", MESSAGE);
    let p = port(a.mx());
    for rcpt in ["carol@a.test", "info@a.test", "anything@a.test"] {
        let (ok, t) = run_swaks(args(&[
            "--server",
            "127.0.0.1",
            "--port",
            &p,
            "--from",
            "sender@origin.test",
            "--to",
            rcpt,
            "--data",
            &data,
        ]))
        .await;
        assert!(ok, "{rcpt}: {t}");
    }
    // Alias and catch-all land in alice's mailbox.
    a.wait_messages("alice@a.test", 2, 10).await;
    // The forward reaches bob with an SRS envelope sender at a.test.
    let got = b.wait_messages("bob@b.test", 1, 20).await;
    let m = String::from_utf8_lossy(&got[0]).to_string();
    assert!(m.starts_with("Return-Path: <SRS0="), "{m}");
    assert!(m.contains("=origin.test=sender@a.test>"), "{m}");
}

fn postfix_tool(name: &str) -> std::process::Command {
    let mut cmd = scop_testkit::debian_command(&format!("usr/sbin/{name}"));
    let root = scop_testkit::peer_path("debian");
    cmd.env(
        "LD_LIBRARY_PATH",
        std::env::join_paths(
            [
                root.join("usr/lib/postfix"),
                root.join("usr/lib/x86_64-linux-gnu"),
            ]
            .iter(),
        )
        .unwrap(),
    );
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_smtp_source_delivers_to_our_mx() {
    let a = domain("a.test", &[("alice@a.test", "pw")], Setup::default()).await;
    let target = format!("127.0.0.1:{}", a.mx().port());
    let mut cmd = postfix_tool("smtp-source");
    cmd.args([
        "-s",
        "5",
        "-m",
        "100",
        "-l",
        "2000",
        "-f",
        "sender@origin.test",
    ])
    .args(["-t", "alice@a.test", &target]);
    let (ok, text) = common::run(cmd).await;
    assert!(ok, "smtp-source: {text}");
    let got = a.wait_messages("alice@a.test", 100, 30).await;
    assert_eq!(got.len(), 100);
}

/// Postfix's smtp-sink on a free port, dumping each message into `dump`.
fn smtp_sink(dump: &std::path::Path) -> (std::process::Child, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let template = format!("{}/%Y%m%d%H%M%S.", dump.display());
    let sink = postfix_tool("smtp-sink")
        .args(["-u", "nobody", "-D", &template, "-c"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("100")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::fs::set_permissions(dump, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    (sink, port)
}

/// Messages smtp-sink dumped into `dump` (it appends each to the file
/// its template names).
fn sunk(dump: &std::path::Path) -> usize {
    std::fs::read_dir(dump)
        .unwrap()
        .flatten()
        .map(|d| {
            std::fs::read_to_string(d.path())
                .unwrap()
                .matches("Subject: hello from scop")
                .count()
        })
        .sum()
}

/// A domain whose relay sends mail for sink.test to `port`.
async fn relaying_to(port: u16) -> Domain {
    let mut routes = Routes::default();
    routes.fixed.insert(
        "sink.test".into(),
        vec![format!("127.0.0.1:{port}").parse().unwrap()],
    );
    domain(
        "a.test",
        &[("alice@a.test", "alice-password")],
        Setup {
            routes,
            ..Setup::default()
        },
    )
    .await
}

/// Five messages from alice to sink.test, each relayed before the next
/// is submitted when `one_at_a_time`.
async fn submit_to_sink(a: &Domain, one_at_a_time: bool) {
    let data = file_with(&a.dir, "msg.eml", MESSAGE);
    for i in 0..5 {
        let rcpt = format!("user{i}@sink.test");
        let (ok, t) = common::submit_as_alice(a, &rcpt, &data).await;
        assert!(ok, "{t}");
        if one_at_a_time {
            queue_drained(a).await;
        }
    }
}

async fn queue_drained(a: &Domain) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !a.store.list_queue().await.unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "queue not drained");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_relay_delivers_to_postfix_smtp_sink() {
    let dump = common::temp_dir("sink");
    let (mut sink, port) = smtp_sink(&dump);
    let a = relaying_to(port).await;
    submit_to_sink(&a, false).await;
    queue_drained(&a).await;
    sink.kill().ok();
    sink.wait().ok();
    let received = sunk(&dump);
    assert_eq!(received, 5, "smtp-sink received {received} of 5 messages");
}

/// Messages to one host one after another share one session: the relay
/// keeps it open between them, and closes it (QUIT) once it has idled
/// for `POOL_IDLE`. A proxy in front of smtp-sink counts connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_relay_keeps_its_session_to_postfix_for_the_next_message() {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    let dump = common::temp_dir("sink-pool");
    let (mut sink, sink_port) = smtp_sink(&dump);
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_port = proxy.local_addr().unwrap().port();
    let opened = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    {
        let (opened, closed) = (opened.clone(), closed.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = proxy.accept().await {
                opened.fetch_add(1, SeqCst);
                let closed = closed.clone();
                tokio::spawn(async move {
                    if let Ok(mut server) =
                        tokio::net::TcpStream::connect(("127.0.0.1", sink_port)).await
                    {
                        tokio::io::copy_bidirectional(&mut client, &mut server)
                            .await
                            .ok();
                    }
                    closed.fetch_add(1, SeqCst);
                });
            }
        });
    }
    let a = relaying_to(proxy_port).await;
    submit_to_sink(&a, true).await;
    assert_eq!(opened.load(SeqCst), 1, "one connection for five messages");
    let deadline = std::time::Instant::now() + scop_mail::outbound::POOL_IDLE * 3;
    while closed.load(SeqCst) < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the idle session was not closed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sink.kill().ok();
    sink.wait().ok();
    assert_eq!(sunk(&dump), 5);
}

const SMTPLIB: &str = r#"
import smtplib, ssl, sys
host, port465, port587, mx = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
msg = "From: alice@a.test\r\nTo: bob@b.test\r\nSubject: via smtplib %s\r\n\r\nhello\r\n"
with smtplib.SMTP_SSL(host, port465, context=ctx) as s:
    s.login("alice@a.test", "alice-password")
    s.sendmail("alice@a.test", ["bob@b.test"], msg % "465")
with smtplib.SMTP(host, port587) as s:
    s.starttls(context=ctx)
    s.login("alice@a.test", "alice-password")
    s.sendmail("alice@a.test", ["bob@b.test"], msg % "587")
    # A second AUTH in the session is refused with 503 (RFC 4954 4), which
    # smtplib reports as a return value.
    code, _ = s.login("alice@a.test", "wrong")
    if code != 503:
        print("second AUTH answered", code)
        sys.exit(1)
with smtplib.SMTP(host, mx) as s:
    s.sendmail("someone@elsewhere.test", ["alice@a.test"], msg % "mx")
    try:
        s.sendmail("someone@elsewhere.test", ["nobody@a.test"], msg % "mx")
        print("unknown recipient accepted")
        sys.exit(1)
    except smtplib.SMTPRecipientsRefused as e:
        print("refused", e.recipients["nobody@a.test"][0])
print("ok")
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_smtplib_submits_and_delivers() {
    let (a, b) = routed_pair(Setup::default()).await;
    let (p465, p587, mx) = (port(a.submissions()), port(a.submission()), port(a.mx()));
    let mut cmd = std::process::Command::new(scop_testkit::python());
    cmd.args(["-c", SMTPLIB, "127.0.0.1", &p465, &p587, &mx]);
    let (ok, text) = common::run(cmd).await;
    assert!(ok, "{text}");
    assert!(text.contains("refused 550"), "{text}");
    let got = b.wait_messages("bob@b.test", 2, 20).await;
    let all: String = got
        .iter()
        .map(|m| String::from_utf8_lossy(m).to_string())
        .collect();
    assert!(all.contains("via smtplib 465") && all.contains("via smtplib 587"));
    let got = a.wait_messages("alice@a.test", 1, 10).await;
    assert!(String::from_utf8_lossy(&got[0]).contains("via smtplib mx"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_pipelining_on_the_mx() {
    let a = domain("a.test", &[("alice@a.test", "pw")], Setup::default()).await;
    let data = file_with(&a.dir, "msg.eml", MESSAGE);
    let (ok, t) = run_swaks(args(&[
        "--server",
        "127.0.0.1",
        "--port",
        &port(a.mx()),
        "--pipeline",
        "--from",
        "someone@elsewhere.test",
        "--to",
        "alice@a.test",
        "--data",
        &data,
    ]))
    .await;
    assert!(ok, "{t}");
    assert!(t.contains("PIPELINING"), "{t}");
    a.wait_messages("alice@a.test", 1, 10).await;
}

/// A relay of its own over `store`, with mailboxes under `dir/mail`.
fn relay_on(
    store: &scop_store::Store,
    dir: &std::path::Path,
    hostname: String,
    routes: Routes,
) -> scop_mail::relay::Relay {
    let delivery = scop_mail::delivery::Delivery {
        store: store.clone(),
        mail_root: dir.join("mail"),
        hostname,
        srs: Arc::new(scop_mail::srs::Srs::new(b"test srs key")),
        lifetime_secs: 86_400,
        queued: Arc::new(tokio::sync::Notify::new()),
        journal: None,
    };
    scop_mail::relay::Relay::new(delivery, routes)
}

/// The relay removes delivery records older than its retention when it
/// starts (and every hour), and keeps them all without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_prunes_old_delivery_records() {
    let dir = common::temp_dir("prune");
    let store = scop_store::Store::open(&format!("sqlite:{}", dir.join("scop.db").display()))
        .await
        .unwrap();
    let now = scop_mail::now();
    let day = 86_400;
    let id = store
        .enqueue(
            &scop_store::NewMessage {
                sender: "alice@a.test".into(),
                recipients: vec!["x@far.test".into(), "y@far.test".into()],
                body: b"Subject: old\r\n\r\nbody\r\n".to_vec(),
                lifetime_secs: 90 * day,
                dsn: Default::default(),
            },
            now - 40 * day,
        )
        .await
        .unwrap();
    // Not due for days: the relay leaves the message alone.
    for (rcpt, at) in [("x@far.test", now - 40 * day), ("y@far.test", now - day)] {
        store
            .record_deferred(id, rcpt, at, now + 10 * day, "451 later")
            .await
            .unwrap();
    }
    let times = || async {
        let log = store.delivery_log(id).await.unwrap();
        log.iter().map(|r| r.at).collect::<Vec<_>>()
    };
    let start = |retention: Option<Duration>| {
        let mut relay = relay_on(&store, &dir, "mail.a.test".into(), Routes::default());
        relay.log_retention = retention;
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        (stop, tokio::spawn(Arc::new(relay).run(stop_rx)))
    };
    // Kept for ever.
    let (stop, task) = start(None);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.send(true).unwrap();
    task.await.unwrap();
    assert_eq!(times().await, [now - 40 * day, now - day]);
    // Kept 30 days (the default).
    let (stop, task) = start(Some(scop_mail::relay::LOG_RETENTION));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while times().await.len() == 2 {
        assert!(std::time::Instant::now() < deadline, "nothing pruned");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(true).unwrap();
    task.await.unwrap();
    assert_eq!(times().await, [now - day]);
    assert_eq!(store.list_queue().await.unwrap().len(), 1);
}

/// Two relays work one store, each under its own lease name: every
/// queued message reaches the other domain's mailbox once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_share_one_store() {
    use std::sync::Arc;
    let b = domain(
        "b.test",
        &[("bob@b.test", "bob-password")],
        Setup::default(),
    )
    .await;
    let dir = common::temp_dir("two-relays");
    let store = scop_store::Store::open(&format!("sqlite:{}", dir.join("scop.db").display()))
        .await
        .unwrap();
    store.add_domain("a.test").await.unwrap();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for name in ["one", "two"] {
        let mut routes = Routes::default();
        routes.fixed.insert("b.test".into(), vec![b.mx()]);
        let mut relay = relay_on(&store, &dir, format!("relay-{name}.a.test"), routes);
        relay.owner = name.into();
        relay.poll = Duration::from_millis(20);
        tasks.push(tokio::spawn(Arc::new(relay).run(stop_rx.clone())));
    }
    let count = 60;
    let now = scop_mail::now();
    for i in 0..count {
        let body = format!("Message-ID: <m{i}@a.test>\r\nSubject: m{i}\r\n\r\nbody\r\n");
        store
            .enqueue(
                &scop_store::NewMessage {
                    sender: "alice@a.test".into(),
                    recipients: vec!["bob@b.test".into()],
                    body: body.into_bytes(),
                    lifetime_secs: 86_400,
                    dsn: Default::default(),
                },
                now,
            )
            .await
            .unwrap();
    }
    let got = b.wait_messages("bob@b.test", count, 30).await;
    // The queue empties, and nothing arrives twice.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !store.list_queue().await.unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the queue did not empty"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got_later = b.messages("bob@b.test");
    assert_eq!(got_later.len(), got.len());
    let mut subjects: Vec<String> = got_later
        .iter()
        .map(|m| {
            let m = String::from_utf8_lossy(m);
            m.lines()
                .find(|l| l.starts_with("Subject: "))
                .unwrap()
                .to_string()
        })
        .collect();
    subjects.sort();
    subjects.dedup();
    assert_eq!(subjects.len(), count, "each message once");
    let by_one = got_later
        .iter()
        .filter(|m| String::from_utf8_lossy(m).contains("from relay-one.a.test"))
        .count();
    eprintln!(
        "two relays: {by_one} of {count} messages sent by relay one, {} by relay two",
        count - by_one
    );
    stop.send(true).unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    std::fs::remove_dir_all(&dir).ok();
}
