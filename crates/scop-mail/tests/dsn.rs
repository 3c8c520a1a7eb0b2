//! Delivery status notifications end to end (RFC 3461 parameters given by
//! Python's smtplib on port 465, RFC 3464 reports delivered to the
//! sender's mailbox): one delay DSN then a failure DSN, NOTIFY=NEVER and
//! NOTIFY without FAILURE, RET=HDRS, ENVID and ORCPT echoed, a "relayed"
//! DSN for a next hop without DSN, and the parameters passed on to a next
//! hop that announces DSN (Postfix's smtp-sink records what it received).
//! Every report parses with scop-mime and Python's email package.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{Domain, Setup, domain};
use scop_mail::relay::{RetryPolicy, Routes};

const SEND: &str = r#"
import smtplib, ssl, sys
port, rcpt, subject = int(sys.argv[1]), sys.argv[2], sys.argv[3]
mail_options = [o for o in sys.argv[4].split(" ") if o]
rcpt_options = [o for o in sys.argv[5].split(" ") if o]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
msg = ("From: alice@a.test\r\nTo: %s\r\nSubject: %s\r\n\r\n"
       "The body text stays private.\r\n") % (rcpt, subject)
with smtplib.SMTP_SSL("127.0.0.1", port, context=ctx) as s:
    s.login("alice@a.test", "alice-password")
    if not s.has_extn("dsn"):
        print("no DSN extension announced")
        sys.exit(1)
    s.sendmail("alice@a.test", [rcpt], msg, mail_options=mail_options,
               rcpt_options=rcpt_options)
print("sent")
"#;

/// Python's view of a report: the top content type, then each part's.
const INSPECT: &str = r#"
import email, email.policy, sys
m = email.message_from_bytes(open(sys.argv[1], "rb").read(), policy=email.policy.default)
print(m.get_content_type(), m.get_param("report-type"))
for p in m.iter_parts():
    print(p.get_content_type())
"#;

/// alice@a.test sends `subject` to `rcpt` with the DSN options given
/// (space-separated), through smtplib on port 465.
async fn send(d: &Domain, rcpt: &str, subject: &str, mail_opts: &str, rcpt_opts: &str) {
    let port = d.submissions().port().to_string();
    let (ok, text) = python(&[SEND, &port, rcpt, subject, mail_opts, rcpt_opts]).await;
    assert!(ok && text.contains("sent"), "{text}");
}

/// Runs `python -c SCRIPT ARGS...` off the runtime's threads: whether it
/// succeeded, and its stdout and stderr.
async fn python(script_and_args: &[&str]) -> (bool, String) {
    let mut cmd = std::process::Command::new(scop_testkit::python());
    cmd.arg("-c").args(script_and_args);
    common::run(cmd).await
}

/// Python's email package: the report's content type and its parts'.
fn python_view(d: &Domain, report: &[u8]) -> Vec<String> {
    let path = d.dir.join(format!("report-{}.eml", scop_mail::queue_id()));
    std::fs::write(&path, report).unwrap();
    let out = std::process::Command::new(scop_testkit::python())
        .args(["-c", INSPECT])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The report checked by scop-mime and Python: multipart/report with
/// delivery-status, returning the content types of its three parts.
fn check_report(d: &Domain, report: &[u8]) -> Vec<String> {
    let parsed = scop_mime::parse(report).unwrap();
    let m = &parsed.message;
    assert_eq!(m.content_type().mime_type, "multipart/report");
    assert_eq!(
        m.content_type().param("report-type"),
        Some("delivery-status")
    );
    let scop_mime::Body::Multipart(mp) = m.body() else {
        panic!("not multipart")
    };
    let ours: Vec<String> = mp
        .parts()
        .iter()
        .map(|p| p.content_type().mime_type)
        .collect();
    let python = python_view(d, report);
    assert_eq!(python[0], "multipart/report delivery-status", "{python:?}");
    assert_eq!(python[1..], ours[..], "Python and scop-mime agree");
    assert_eq!(ours.len(), 3, "{ours:?}");
    assert_eq!(ours[..2], ["text/plain", "message/delivery-status"]);
    ours
}

fn text(m: &[u8]) -> String {
    String::from_utf8_lossy(m).to_string()
}

/// Waits until the queue is empty (every report delivered too).
async fn drained(d: &Domain, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let q = d.store.list_queue().await.unwrap();
        if q.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "queue not drained: {q:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// a.test whose mail for unreachable.test goes nowhere (port 1).
async fn unreachable(lifetime_secs: i64, delay_warning_secs: i64) -> Domain {
    let mut routes = Routes::default();
    routes.fixed.insert(
        "unreachable.test".into(),
        vec!["127.0.0.1:1".parse().unwrap()],
    );
    let setup = Setup {
        routes,
        lifetime_secs,
        retry: RetryPolicy {
            base_secs: 1,
            max_secs: 1,
            delay_warning_secs,
        },
        ..Setup::default()
    };
    domain("a.test", &[("alice@a.test", "alice-password")], setup).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_delay_dsn_then_a_failure_dsn_at_the_lifetime() {
    let a = unreachable(9, 2).await;
    send(
        &a,
        "carol@unreachable.test",
        "stuck mail",
        "ENVID=QQ314159",
        "NOTIFY=DELAY,FAILURE",
    )
    .await;
    let got = a.wait_messages("alice@a.test", 1, 30).await;
    let delayed = text(&got[0]);
    assert!(
        delayed.contains("Delayed Mail (still being retried)"),
        "{delayed}"
    );
    assert!(delayed.contains("Action: delayed"), "{delayed}");
    assert!(delayed.contains("Status: 4.4.1"), "{delayed}");
    assert!(delayed.contains("Will-Retry-Until: "), "{delayed}");
    assert!(
        delayed.contains("Original-Envelope-Id: QQ314159"),
        "{delayed}"
    );
    assert!(delayed.contains("Subject: stuck mail"), "{delayed}");
    assert!(
        !delayed.contains("The body text stays private"),
        "{delayed}"
    );
    let parts = check_report(&a, &got[0]);
    assert_eq!(parts[2], "text/rfc822-headers");
    // The recipient is marked, while still pending.
    let q = a.store.list_queue().await.unwrap();
    assert!(
        q.iter()
            .flat_map(|m| &m.recipients)
            .any(|r| r.rcpt == "carol@unreachable.test" && r.delay_notified),
        "{q:?}"
    );

    let got = a.wait_messages("alice@a.test", 2, 40).await;
    drained(&a, 20).await;
    let got_after = a.messages("alice@a.test");
    assert_eq!(got_after.len(), 2, "exactly one delay and one failure DSN");
    let failed = text(&got[1]);
    assert!(
        failed.contains("Undelivered Mail Returned to Sender"),
        "{failed}"
    );
    assert!(failed.contains("Action: failed"), "{failed}");
    assert!(failed.contains("Status: 4.4.7"), "{failed}");
    assert!(
        failed.contains("Original-Envelope-Id: QQ314159"),
        "{failed}"
    );
    // No RET: the whole message comes back.
    let parts = check_report(&a, &got[1]);
    assert_eq!(parts[2], "message/rfc822");
    assert!(failed.contains("The body text stays private"), "{failed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_never_or_without_failure_sends_no_bounce() {
    let a = unreachable(2, 0).await;
    send(
        &a,
        "never@unreachable.test",
        "never tell",
        "",
        "NOTIFY=NEVER",
    )
    .await;
    send(
        &a,
        "success-only@unreachable.test",
        "success only",
        "",
        "NOTIFY=SUCCESS",
    )
    .await;
    send(
        &a,
        "failure@unreachable.test",
        "tell on failure",
        "",
        "NOTIFY=FAILURE",
    )
    .await;
    a.wait_messages("alice@a.test", 1, 30).await;
    drained(&a, 30).await;
    let got = a.messages("alice@a.test");
    assert_eq!(got.len(), 1, "one bounce only");
    let m = text(&got[0]);
    assert!(
        m.contains("Final-Recipient: rfc822; failure@unreachable.test"),
        "{m}"
    );
    assert!(!m.contains("never@"), "{m}");
    assert!(!m.contains("success-only@"), "{m}");
    // All three failed for good.
    let mut failed = 0;
    for id in 1..=3 {
        let log = a
            .store
            .delivery_log(scop_store::MessageId(id))
            .await
            .unwrap();
        failed += log
            .iter()
            .filter(|r| r.outcome == scop_store::Outcome::Failed)
            .count();
    }
    assert_eq!(failed, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ret_hdrs_returns_headers_and_envid_orcpt_are_echoed() {
    let a = unreachable(2, 0).await;
    send(
        &a,
        "carol@unreachable.test",
        "headers only",
        "RET=HDRS ENVID=env+2Bid-7",
        "NOTIFY=FAILURE ORCPT=rfc822;Carol+2Borig@unreachable.test",
    )
    .await;
    let got = a.wait_messages("alice@a.test", 1, 30).await;
    drained(&a, 20).await;
    let m = text(&got[0]);
    assert!(m.contains("Action: failed"), "{m}");
    assert!(m.contains("Original-Envelope-Id: env+id-7\r\n"), "{m}");
    assert!(
        m.contains("Original-Recipient: rfc822; Carol+orig@unreachable.test\r\n"),
        "{m}"
    );
    assert!(
        m.contains("Final-Recipient: rfc822; carol@unreachable.test"),
        "{m}"
    );
    let parts = check_report(&a, &got[0]);
    assert_eq!(parts[2], "text/rfc822-headers");
    assert!(m.contains("Subject: headers only"), "{m}");
    assert!(!m.contains("The body text stays private"), "{m}");
}

/// Postfix's smtp-sink on a free port (announcing DSN unless `no_dsn`),
/// writing what it receives under the returned directory.
fn smtp_sink(no_dsn: bool) -> (std::process::Child, u16, PathBuf) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dump = common::temp_dir("dsn-sink");
    std::fs::set_permissions(&dump, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let template = format!("{}/%Y%m%d%H%M%S.", dump.display());
    let mut cmd = scop_testkit::debian_command("usr/sbin/smtp-sink");
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
    cmd.args(["-u", "nobody", "-D", &template, "-c"]);
    if no_dsn {
        cmd.arg("-N");
    }
    let child = cmd
        .arg(format!("127.0.0.1:{port}"))
        .arg("100")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    (child, port, dump)
}

fn sink_received(dump: &PathBuf) -> String {
    let mut all = String::new();
    for d in std::fs::read_dir(dump).unwrap().flatten() {
        all.push_str(&std::fs::read_to_string(d.path()).unwrap());
    }
    all
}

async fn via_sink(port: u16) -> Domain {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_success_to_a_next_hop_without_dsn_is_reported_relayed() {
    let (mut sink, port, dump) = smtp_sink(true);
    let a = via_sink(port).await;
    send(
        &a,
        "dave@sink.test",
        "receipt please",
        "RET=HDRS ENVID=receipt-1",
        "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;dave@sink.test",
    )
    .await;
    let got = a.wait_messages("alice@a.test", 1, 30).await;
    drained(&a, 20).await;
    sink.kill().ok();
    sink.wait().ok();
    let m = text(&got[0]);
    assert!(m.contains("Successful Mail Delivery Report"), "{m}");
    assert!(m.contains("Action: relayed"), "{m}");
    assert!(m.contains("Status: 2.0.0"), "{m}");
    assert!(m.contains("Final-Recipient: rfc822; dave@sink.test"), "{m}");
    assert!(m.contains("Original-Envelope-Id: receipt-1"), "{m}");
    assert!(m.contains("Remote-MTA: dns; sink.test"), "{m}");
    let parts = check_report(&a, &got[0]);
    assert_eq!(parts[2], "text/rfc822-headers");
    // The next hop got the message, without DSN parameters.
    let received = sink_received(&dump);
    assert!(received.contains("Subject: receipt please"), "{received}");
    assert!(
        received.contains("X-Mail-Args: <alice@a.test>"),
        "{received}"
    );
    assert!(!received.contains("ENVID="), "{received}");
    assert!(!received.contains("NOTIFY="), "{received}");
    assert_eq!(a.messages("alice@a.test").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dsn_parameters_are_passed_on_to_a_next_hop_with_dsn() {
    let (mut sink, port, dump) = smtp_sink(false);
    let a = via_sink(port).await;
    send(
        &a,
        "erin@sink.test",
        "pass it on",
        "RET=HDRS ENVID=QQ+2B314",
        "NOTIFY=SUCCESS,DELAY ORCPT=rfc822;Erin+2Blist@sink.test",
    )
    .await;
    drained(&a, 30).await;
    sink.kill().ok();
    sink.wait().ok();
    let received = sink_received(&dump);
    assert!(received.contains("Subject: pass it on"), "{received}");
    assert!(
        received.contains("X-Mail-Args: <alice@a.test> RET=HDRS ENVID=QQ+2B314"),
        "{received}"
    );
    assert!(
        received.contains(
            "X-Rcpt-Args: <erin@sink.test> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;Erin+2Blist@sink.test"
        ),
        "{received}"
    );
    // The next hop reports success itself: no DSN from us.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(a.messages("alice@a.test").is_empty());
}

/// A message from the Internet to the MX: port, sender, recipient, MAIL
/// options, RCPT options (space-separated).
const TO_MX: &str = r#"
import smtplib, sys
port, sender, rcpt = int(sys.argv[1]), sys.argv[2], sys.argv[3]
mail_options = [o for o in sys.argv[4].split(" ") if o]
rcpt_options = [o for o in sys.argv[5].split(" ") if o]
msg = "From: someone@elsewhere.test\r\nSubject: to the MX\r\n\r\nhello\r\n"
with smtplib.SMTP("127.0.0.1", port) as s:
    s.sendmail(sender, [rcpt], msg, mail_options=mail_options, rcpt_options=rcpt_options)
"#;

async fn to_mx(d: &Domain, sender: &str, rcpt: &str, mail_opts: &str, rcpt_opts: &str) {
    let port = d.mx().port().to_string();
    let (ok, text) = python(&[TO_MX, &port, sender, rcpt, mail_opts, rcpt_opts]).await;
    assert!(ok, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_from_the_mx_keep_the_dsn_parameters() {
    let (mut sink, port, dump) = smtp_sink(false);
    let a = via_sink(port).await;
    a.store.add_user("fwd@a.test", "fwd-pw").await.unwrap();
    a.store
        .set_forward("fwd@a.test", &["frank@sink.test".to_string()])
        .await
        .unwrap();
    to_mx(
        &a,
        "someone@elsewhere.test",
        "fwd@a.test",
        "RET=HDRS ENVID=fw1",
        "NOTIFY=FAILURE,DELAY",
    )
    .await;
    drained(&a, 30).await;
    sink.kill().ok();
    sink.wait().ok();
    let received = sink_received(&dump);
    assert!(received.contains("Subject: to the MX"), "{received}");
    assert!(
        received.contains("=elsewhere.test=someone@a.test> RET=HDRS ENVID=fw1\n"),
        "SRS sender and MAIL parameters: {received}"
    );
    // NOTIFY kept, ORCPT set to the address the sender used.
    assert!(
        received.contains(
            "X-Rcpt-Args: <frank@sink.test> NOTIFY=FAILURE,DELAY ORCPT=rfc822;fwd@a.test\n"
        ),
        "{received}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_null_sender_never_gets_a_dsn() {
    // A bounce arriving at the MX for a forwarded address: the forward
    // keeps the null sender and fails, and nobody is told.
    let a = unreachable(2, 1).await;
    a.store.add_user("fwd@a.test", "fwd-pw").await.unwrap();
    a.store
        .set_forward("fwd@a.test", &["carol@unreachable.test".to_string()])
        .await
        .unwrap();
    to_mx(&a, "", "fwd@a.test", "", "NOTIFY=FAILURE,DELAY").await;
    drained(&a, 30).await;
    let log = a
        .store
        .delivery_log(scop_store::MessageId(1))
        .await
        .unwrap();
    assert!(
        log.iter().any(|r| r.outcome == scop_store::Outcome::Failed),
        "{log:?}"
    );
    // Nothing was queued after the forward: no report of any kind, to
    // anyone (NOTIFY asked for failure and delay reports).
    let next = a
        .store
        .delivery_log(scop_store::MessageId(2))
        .await
        .unwrap();
    assert!(next.is_empty(), "{log:?} then {next:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_success_on_local_delivery_is_reported_delivered() {
    let a = domain(
        "a.test",
        &[
            ("alice@a.test", "alice-password"),
            ("carol@a.test", "carol-password"),
        ],
        Setup::default(),
    )
    .await;
    // Through submission and the relay's local delivery...
    send(
        &a,
        "carol@a.test",
        "local receipt",
        "ENVID=local-1",
        "NOTIFY=SUCCESS",
    )
    .await;
    // ...and through the MX, the final MTA for a.test.
    to_mx(
        &a,
        "alice@a.test",
        "carol@a.test",
        "ENVID=mx-1",
        "NOTIFY=SUCCESS",
    )
    .await;
    a.wait_messages("carol@a.test", 2, 30).await;
    let got = a.wait_messages("alice@a.test", 2, 30).await;
    drained(&a, 20).await;
    let mut envids = Vec::new();
    for r in &got {
        let m = text(r);
        assert!(m.contains("Successful Mail Delivery Report"), "{m}");
        assert!(m.contains("Action: delivered"), "{m}");
        assert!(m.contains("Final-Recipient: rfc822; carol@a.test"), "{m}");
        for id in ["local-1", "mx-1"] {
            if m.contains(&format!("Original-Envelope-Id: {id}\r\n")) {
                envids.push(id);
            }
        }
        let parts = check_report(&a, r);
        assert_eq!(parts[2], "text/rfc822-headers");
    }
    envids.sort();
    assert_eq!(envids, ["local-1", "mx-1"]);
    assert_eq!(a.messages("alice@a.test").len(), 2);
}
