//! Bad input against the running MX and submission listeners, one test per
//! attack class: over-long lines, over-size messages, too many
//! recipients, AUTH before TLS, password guessing, NUL bytes, 8-bit data
//! without 8BITMIME, UTF-8 addresses without SMTPUTF8, a client that
//! stalls in the middle of DATA, and an account over its sending limits.
//! Nothing bad may be delivered, and the server keeps serving.

mod common;

use std::time::{Duration, Instant};

use common::{Setup, domain};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

struct Conn<S> {
    s: S,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    async fn reply(&mut self) -> String {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = tokio::time::timeout(Duration::from_secs(15), self.s.read(&mut buf))
                .await
                .expect("reply in time")
                .unwrap_or(0);
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
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

    async fn cmd(&mut self, line: &[u8]) -> String {
        self.s.write_all(line).await.unwrap();
        self.reply().await
    }

    /// Sends `line`; the reply must start with `want`.
    async fn expect(&mut self, line: impl AsRef<[u8]>, want: &str) {
        let line = line.as_ref();
        let r = self.cmd(line).await;
        let shown = String::from_utf8_lossy(&line[..line.len().min(60)]);
        assert!(r.starts_with(want), "{}: {r}", shown.trim_end());
    }
}

async fn connect(addr: std::net::SocketAddr) -> Conn<TcpStream> {
    let mut c = Conn {
        s: TcpStream::connect(addr).await.unwrap(),
    };
    assert!(c.reply().await.starts_with("220"));
    assert!(c.cmd(b"EHLO attacker.test\r\n").await.starts_with("250"));
    c
}

async fn setup() -> common::Domain {
    domain(
        "a.test",
        &[("alice@a.test", "alice-password")],
        Setup {
            message_size: 4096,
            idle_timeout: Duration::from_secs(2),
            ..Setup::default()
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_long_command_line_is_refused() {
    let a = setup().await;
    let mut c = connect(a.mx()).await;
    let mut line = b"MAIL FROM:<".to_vec();
    line.extend(std::iter::repeat_n(b'a', 5000));
    line.extend_from_slice(b"@x.test>\r\n");
    let r = c.cmd(&line).await;
    assert!(r.starts_with("500"), "{r}");
    // The session goes on.
    assert!(c.cmd(b"NOOP\r\n").await.starts_with("250"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_size_message_is_refused_and_not_delivered() {
    let a = setup().await;
    let mut c = connect(a.mx()).await;
    // Declared too big: refused at MAIL.
    let r = c.cmd(b"MAIL FROM:<x@elsewhere.test> SIZE=100000\r\n").await;
    assert!(r.starts_with("552"), "{r}");
    // Undeclared: refused at the end of data.
    assert!(
        c.cmd(b"MAIL FROM:<x@elsewhere.test>\r\n")
            .await
            .starts_with("250")
    );
    assert!(
        c.cmd(b"RCPT TO:<alice@a.test>\r\n")
            .await
            .starts_with("250")
    );
    assert!(c.cmd(b"DATA\r\n").await.starts_with("354"));
    let mut body = b"Subject: big\r\n\r\n".to_vec();
    for _ in 0..200 {
        body.extend_from_slice(b"0123456789012345678901234567890123456789\r\n");
    }
    body.extend_from_slice(b".\r\n");
    let r = c.cmd(&body).await;
    assert!(r.starts_with("552"), "{r}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(a.messages("alice@a.test").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_recipients_are_refused() {
    let a = setup().await;
    let mut c = connect(a.mx()).await;
    assert!(
        c.cmd(b"MAIL FROM:<x@elsewhere.test>\r\n")
            .await
            .starts_with("250")
    );
    let limit = scop_smtp::Limits::default().recipients;
    for i in 0..limit {
        let r = c.cmd(b"RCPT TO:<alice@a.test>\r\n").await;
        assert!(r.starts_with("250"), "recipient {i}: {r}");
    }
    let r = c.cmd(b"RCPT TO:<alice@a.test>\r\n").await;
    assert!(r.starts_with("452") || r.starts_with("552"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_before_tls_is_refused_on_submission() {
    let a = setup().await;
    let mut c = connect(a.submission()).await;
    // "\0alice@a.test\0alice-password"
    let r = c
        .cmd(b"AUTH PLAIN AGFsaWNlQGEudGVzdABhbGljZS1wYXNzd29yZA==\r\n")
        .await;
    assert!(r.starts_with('5'), "{r}");
    let r = c.cmd(b"MAIL FROM:<alice@a.test>\r\n").await;
    assert!(r.starts_with("530"), "{r}");
}

/// A session on the implicit-TLS submission port, after EHLO.
async fn submission_session(
    a: &common::Domain,
) -> Conn<tokio_rustls::client::TlsStream<TcpStream>> {
    let connector = tokio_rustls::TlsConnector::from(scop_mail::tls::opportunistic_client());
    let tcp = TcpStream::connect(a.submissions()).await.unwrap();
    let tls = connector
        .connect("mail.a.test".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let mut c = Conn { s: tls };
    assert!(c.reply().await.starts_with("220"));
    assert!(c.cmd(b"EHLO client.test\r\n").await.contains("AUTH"));
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_guessing_is_slowed_down() {
    let a = setup().await;
    let mut c = submission_session(&a).await;
    let mut times = Vec::new();
    // "\0alice@a.test\0guess"
    for _ in 0..4 {
        let t = Instant::now();
        let r = c.cmd(b"AUTH PLAIN AGFsaWNlQGEudGVzdABndWVzcw==\r\n").await;
        times.push(t.elapsed());
        if r.starts_with("421") {
            break;
        }
        assert!(r.starts_with("535"), "{r}");
    }
    // The first guess is answered at once, later ones wait longer and
    // longer (250 ms, 500 ms, 1 s, ...).
    assert!(times.len() >= 3, "{times:?}");
    assert!(times[2] >= Duration::from_millis(450), "{times:?}");
    assert!(times[2] > times[0], "{times:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_bytes_are_refused() {
    let a = setup().await;
    let mut c = connect(a.mx()).await;
    let r = c.cmd(b"MAIL FROM:<x\0y@elsewhere.test>\r\n").await;
    assert!(r.starts_with('5'), "{r}");
    assert!(c.cmd(b"NOOP\r\n").await.starts_with("250"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_bit_data_without_8bitmime_is_refused() {
    let a = setup().await;
    let mut c = connect(a.mx()).await;
    assert!(
        c.cmd(b"MAIL FROM:<x@elsewhere.test>\r\n")
            .await
            .starts_with("250")
    );
    assert!(
        c.cmd(b"RCPT TO:<alice@a.test>\r\n")
            .await
            .starts_with("250")
    );
    assert!(c.cmd(b"DATA\r\n").await.starts_with("354"));
    let r = c
        .cmd(b"Subject: caf\xc3\xa9\r\n\r\nna\xc3\xafve\r\n.\r\n")
        .await;
    assert!(r.starts_with('5'), "{r}");
    // With BODY=8BITMIME the same message is fine.
    assert!(
        c.cmd(b"MAIL FROM:<x@elsewhere.test> BODY=8BITMIME\r\n")
            .await
            .starts_with("250")
    );
    assert!(
        c.cmd(b"RCPT TO:<alice@a.test>\r\n")
            .await
            .starts_with("250")
    );
    assert!(c.cmd(b"DATA\r\n").await.starts_with("354"));
    let r = c
        .cmd(b"Subject: caf\xc3\xa9\r\n\r\nna\xc3\xafve\r\n.\r\n")
        .await;
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(a.messages("alice@a.test").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn utf8_address_without_smtputf8_is_refused() {
    let a = setup().await;
    let mut c = connect(a.mx()).await;
    let r = c.cmd("MAIL FROM:<jöe@elsewhere.test>\r\n".as_bytes()).await;
    assert!(r.starts_with('5'), "{r}");
    let r = c
        .cmd("MAIL FROM:<jöe@elsewhere.test> SMTPUTF8\r\n".as_bytes())
        .await;
    assert!(r.starts_with("250"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_stalling_in_data_is_cut_off_and_nothing_is_delivered() {
    let a = setup().await;
    let mut c = connect(a.mx()).await;
    assert!(
        c.cmd(b"MAIL FROM:<x@elsewhere.test>\r\n")
            .await
            .starts_with("250")
    );
    assert!(
        c.cmd(b"RCPT TO:<alice@a.test>\r\n")
            .await
            .starts_with("250")
    );
    assert!(c.cmd(b"DATA\r\n").await.starts_with("354"));
    let started = Instant::now();
    let r = c.cmd(b"Subject: half\r\n\r\nhalf a mess").await;
    assert!(r.starts_with("421 4.4.2"), "{r}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(a.messages("alice@a.test").is_empty());
    // Others are still served.
    let mut d = connect(a.mx()).await;
    assert!(d.cmd(b"QUIT\r\n").await.starts_with("221"));
}

/// A message of `len` bytes from `from`, with its final dot.
fn message_of(from: &str, len: usize) -> Vec<u8> {
    let mut m = format!("From: <{from}>\r\nSubject: limits\r\n\r\n").into_bytes();
    while m.len() < len {
        m.extend_from_slice(b"0123456789012345678901234567890123456789\r\n");
    }
    m.extend_from_slice(b".\r\n");
    m
}

/// REQUIRETLS (RFC 8689) is offered only under TLS: asked for on a
/// cleartext session, it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requiretls_is_offered_only_under_tls() {
    let a = setup().await;
    let mut c = connect(a.mx()).await;
    let ehlo = c.cmd(b"EHLO client.test\r\n").await;
    assert!(
        ehlo.contains("STARTTLS") && !ehlo.contains("REQUIRETLS"),
        "{ehlo}"
    );
    let r = c.cmd(b"MAIL FROM:<x@elsewhere.test> REQUIRETLS\r\n").await;
    assert!(r.starts_with("555"), "{r}");
    let mut c = logged_in(&a, "alice@a.test", "alice-password").await;
    let ehlo = c.cmd(b"EHLO client.test\r\n").await;
    assert!(ehlo.contains("REQUIRETLS"), "{ehlo}");
    c.expect("MAIL FROM:<alice@a.test> REQUIRETLS\r\n", "250")
        .await;
}

/// A submission session logged in as `login`.
async fn logged_in(
    a: &common::Domain,
    login: &str,
    password: &str,
) -> Conn<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut c = submission_session(a).await;
    let plain = scop_smtp::codec::base64_encode(format!("\0{login}\0{password}").as_bytes());
    c.expect(format!("AUTH PLAIN {plain}\r\n"), "235").await;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_over_its_sending_limits_is_refused_and_others_are_not() {
    let a = domain(
        "a.test",
        &[
            ("alice@a.test", "alice-password"),
            ("bob@a.test", "bob-password"),
            ("carol@a.test", "carol-password"),
            ("dave@a.test", "dave-password"),
        ],
        Setup {
            message_size: 4096,
            ..Setup::default()
        },
    )
    .await;
    let own = scop_store::SendingLimits {
        messages_per_hour: Some(2),
        messages_per_day: None,
        recipients_per_hour: Some(3),
        max_message_size: Some(1000),
    };
    a.store
        .set_sending_limits("alice@a.test", own)
        .await
        .unwrap();

    // The login's case does not matter.
    let mut c = logged_in(&a, "Alice@A.test", "alice-password").await;
    // Declared over the account's size (but within the listener's).
    c.expect("MAIL FROM:<alice@a.test> SIZE=1500\r\n", "552 5.3.4")
        .await;
    // Message 1 of 2: three recipients, then 452 for a fourth.
    c.expect("MAIL FROM:<alice@a.test>\r\n", "250").await;
    for rcpt in ["bob", "carol", "dave"] {
        c.expect(format!("RCPT TO:<{rcpt}@a.test>\r\n"), "250")
            .await;
    }
    c.expect("RCPT TO:<alice@a.test>\r\n", "452 4.5.3").await;
    // Undeclared and over the account's size: refused after the data.
    c.expect("DATA\r\n", "354").await;
    c.expect(message_of("alice@a.test", 1500), "552 5.3.4")
        .await;
    // Message 2 of 2: the recipients of the hour are used up.
    c.expect("MAIL FROM:<alice@a.test>\r\n", "250").await;
    c.expect("RCPT TO:<bob@a.test>\r\n", "452 4.5.3").await;
    c.expect("RSET\r\n", "250").await;
    // A third message in the hour.
    c.expect("MAIL FROM:<alice@a.test>\r\n", "450 4.7.1").await;

    // Another account, on the server's defaults, is not held back.
    let mut d = logged_in(&a, "bob@a.test", "bob-password").await;
    d.expect("MAIL FROM:<bob@a.test> SIZE=1500\r\n", "250")
        .await;
    for rcpt in ["alice", "carol", "dave", "bob"] {
        d.expect(format!("RCPT TO:<{rcpt}@a.test>\r\n"), "250")
            .await;
    }
    d.expect("DATA\r\n", "354").await;
    d.expect(message_of("bob@a.test", 1500), "250").await;
    a.wait_messages("carol@a.test", 1, 30).await;

    // A change to the account's limits counts from its next MAIL.
    let more = scop_store::SendingLimits {
        messages_per_hour: Some(3),
        ..own
    };
    a.store
        .set_sending_limits("alice@a.test", more)
        .await
        .unwrap();
    c.expect("MAIL FROM:<alice@a.test>\r\n", "250").await;
    c.expect("RCPT TO:<bob@a.test>\r\n", "452 4.5.3").await;
    // The counts are the account's, whatever the case of its login.
    let mut e = logged_in(&a, "alice@a.test", "alice-password").await;
    e.expect("MAIL FROM:<alice@a.test>\r\n", "450 4.7.1 Message rate")
        .await;
    // The day counts the same messages: with room in the hour, three
    // sent today reach a daily limit of three, and a fourth does not.
    for (per_day, want) in [(3, "450 4.7.1 Daily"), (4, "250")] {
        let daily = scop_store::SendingLimits {
            messages_per_hour: Some(10),
            messages_per_day: Some(per_day),
            ..own
        };
        a.store
            .set_sending_limits("alice@a.test", daily)
            .await
            .unwrap();
        e.expect("MAIL FROM:<alice@a.test>\r\n", want).await;
    }
    e.expect("RSET\r\n", "250").await;
    // Only bob's message went anywhere.
    for login in ["alice@a.test", "bob@a.test", "carol@a.test", "dave@a.test"] {
        let m = a.messages(login);
        assert_eq!(m.len(), 1, "{login}");
        assert!(
            m[0].windows(17).any(|w| w == b"From: <bob@a.test"),
            "{login}"
        );
    }
}
