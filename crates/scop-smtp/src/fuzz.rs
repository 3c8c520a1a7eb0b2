//! Entry points for fuzzers (cargo-fuzz targets call these) and for the
//! crate's own property tests. Each must never panic except on a broken
//! invariant, which is what they check.

use std::sync::Arc;

use crate::auth::{Mechanism, ScramCredentials, ScramCrypto};
use crate::client::{Client, ClientAuth, ClientConfig, Envelope, TlsPolicy};
use crate::command::{Domain, ForwardPath, Host, Mailbox, ReversePath, parse_command as parse};
use crate::extension::{Builtins, MailParams, RcptParams, Registry};
use crate::reply::{Reply, ReplyParser};
use crate::server::{PeerAuthorised, Server, ServerConfig, TlsInfo};

/// A deterministic stand-in for SHA-256/HMAC: not cryptography, only for
/// driving the SCRAM state machines under fuzzing.
#[derive(Debug)]
struct MixCrypto;

fn mix(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = [0u8; 32];
    let mut acc: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0usize;
    for p in parts {
        for &b in *p {
            acc = (acc ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
            h[i % 32] ^= (acc >> 24) as u8;
            i += 1;
        }
        acc = acc.wrapping_mul(31).wrapping_add(1);
    }
    for (j, x) in h.iter_mut().enumerate() {
        acc = (acc ^ j as u64).wrapping_mul(0x100_0000_01b3);
        *x ^= (acc >> 32) as u8;
    }
    h
}

impl ScramCrypto for MixCrypto {
    fn sha256(&self, data: &[u8]) -> [u8; 32] {
        mix(&[data])
    }
    fn hmac_sha256(&self, key: &[u8], data: &[u8]) -> [u8; 32] {
        mix(&[key, b"|", data])
    }
}

/// Parse every CRLF-separated line as a command, with and without SMTPUTF8.
pub fn parse_command(data: &[u8]) {
    for line in data.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        for utf8 in [false, true] {
            if let Ok(cmd) = parse(line, utf8) {
                // Round trip: what we emit parses to the same command.
                let mut wire = Vec::new();
                cmd.write_to(&mut wire);
                let again = parse(&wire[..wire.len() - 2], utf8);
                assert_eq!(again.as_ref().ok(), Some(&cmd), "round trip of {line:?}");
            }
        }
    }
}

/// Parse replies until the input is exhausted; every parsed reply must
/// re-encode to something that parses to the same reply.
pub fn parse_reply(data: &[u8]) {
    let mut p = ReplyParser::new();
    p.push(data);
    for _ in 0..data.len() + 1 {
        match p.next_reply() {
            Ok(None) => break,
            Ok(Some(r)) if r.lines().iter().all(|l| l.len() < 512) => {
                let mut q = ReplyParser::new();
                q.push(&r.to_bytes(true));
                assert_eq!(q.next_reply().ok().flatten().as_ref(), Some(&r));
            }
            Ok(Some(_)) | Err(_) => {}
        }
    }
}

const CLIENT_LINES: &[&[u8]] = &[
    b"EHLO client.example\r\n",
    b"HELO client.example\r\n",
    b"MAIL FROM:<a@example.org> SIZE=100 BODY=8BITMIME\r\n",
    b"MAIL FROM:<>\r\n",
    b"RCPT TO:<b@example.net> NOTIFY=SUCCESS ORCPT=rfc822;b+40example.net\r\n",
    b"RCPT TO:<postmaster>\r\n",
    b"DATA\r\n",
    b"Subject: x\r\n\r\nbody\r\n.\r\n",
    b"BDAT 10\r\n0123456789",
    b"BDAT 6 LAST\r\nab\r\nc\n",
    b"RSET\r\n",
    b"NOOP\r\n",
    b"STARTTLS\r\n",
    b"AUTH PLAIN AHVzZXIAcGFzcw==\r\n",
    b"AUTH LOGIN\r\n",
    b"dXNlcg==\r\n",
    b"AUTH SCRAM-SHA-256 biwsbj11c2VyLHI9YWJj\r\n",
    b"*\r\n",
    b"XSCOP ADDR=192.0.2.1 HELO=x LOGIN=u\r\n",
    b"QUIT\r\n",
    b"a\n.\nRCPT TO:<c@example.net>\r\n",
    b"\r\n.\r\n",
];

fn check_replies(out: &[u8]) {
    let mut p = ReplyParser::new();
    p.push(out);
    loop {
        match p.next_reply() {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => panic!("server wrote an unparsable reply: {e} in {out:?}"),
        }
    }
    assert_eq!(p.buffered(), 0, "server wrote a partial reply");
}

/// Drive a server with an operation sequence decoded from `data`.
pub fn server_session(data: &[u8]) {
    let mut registry = Registry::new(Builtins {
        auth: vec![Mechanism::Plain, Mechanism::Login, Mechanism::ScramSha256],
        auth_requires_tls: data.first().is_some_and(|b| b & 1 == 1),
        ..Builtins::default()
    });
    registry.builtins.pipelining = data.first().is_none_or(|b| b & 2 == 0);
    let mut config = ServerConfig::new("mx.example");
    config.registry = registry;
    config.limits.recipients = 3;
    config.limits.message_size = 200;
    config.scram = Some(Arc::new(MixCrypto));
    let mut s = Server::new(Arc::new(config), false);
    let mut i = 1;
    let mut pending_in: Vec<u8> = Vec::new();
    while i < data.len() {
        let op = data[i];
        let arg = data.get(i + 1).copied().unwrap_or(0);
        i += 2;
        match op % 10 {
            0 => {
                let n = usize::from(arg).min(data.len() - i.min(data.len()));
                pending_in.extend_from_slice(&data[i.min(data.len())..i.min(data.len()) + n]);
                i += n;
            }
            1 | 2 => {
                pending_in.extend_from_slice(CLIENT_LINES[usize::from(arg) % CLIENT_LINES.len()])
            }
            3 => {
                let _ = s.accept();
            }
            4 => {
                let _ = s.reject(Reply::with(550, (5, 7, 1), "no"));
            }
            5 => {
                let _ = s.message_durable("q1");
            }
            6 => {
                let _ = s.tls_established(TlsInfo::default());
            }
            7 => {
                let creds = ScramCredentials::derive(&MixCrypto, "pencil", b"salt", 2);
                let _ = s.scram_credentials(Some(creds), "srvnonce");
            }
            8 => s.authorise_peer(PeerAuthorised::from_verified_certificate("spamfilter")),
            _ => {
                let _ = s.reply_extension(Reply::with(250, (2, 0, 0), "ok"));
            }
        }
        let n = s.feed(&pending_in);
        pending_in.drain(..n);
        while s.poll_event().is_some() {}
        check_replies(&s.take_output());
    }
}

/// Drive a client with an operation sequence decoded from `data`.
pub fn client_session(data: &[u8]) {
    const SERVER_LINES: &[&[u8]] = &[
        b"220 mx.example ESMTP\r\n",
        b"250-mx.example\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN SCRAM-SHA-256\r\n250-CHUNKING\r\n250 8BITMIME\r\n",
        b"250 2.0.0 OK\r\n",
        b"354 go\r\n",
        b"220 2.0.0 Ready\r\n",
        b"334 \r\n",
        b"334 VXNlcm5hbWU6\r\n",
        b"334 cj1hYmNkZWYscz1jMkZzZEE9PSxpPTI=\r\n",
        b"235 2.7.0 OK\r\n",
        b"550 5.1.1 no\r\n",
        b"421 4.3.0 bye\r\n",
        b"221 2.0.0 Bye\r\n",
        b"500 5.5.1 what\r\n",
    ];
    let auth = ClientAuth {
        username: "user".into(),
        password: "pencil".into(),
        mechanisms: vec![Mechanism::ScramSha256, Mechanism::Plain, Mechanism::Login],
        scram: Some(Arc::new(MixCrypto)),
        client_nonce: "abcd".into(),
    };
    let helo =
        Host::Domain(Domain::parse("client.example", false).unwrap_or_else(|_| unreachable!()));
    let mut config = ClientConfig::new(helo);
    let first = data.first().copied().unwrap_or(0);
    config.tls = match first % 3 {
        0 => TlsPolicy::Disabled,
        1 => TlsPolicy::Opportunistic,
        _ => TlsPolicy::Required,
    };
    config.auth = (first & 4 != 0).then_some(auth);
    config.pipelining = first & 8 == 0;
    config.chunking = first & 16 == 0;
    let mut c = Client::new(config);
    let mut i = 1;
    while i < data.len() {
        let op = data[i];
        let arg = data.get(i + 1).copied().unwrap_or(0);
        i += 2;
        match op % 6 {
            0 => {
                let n = usize::from(arg).min(data.len().saturating_sub(i));
                let start = i.min(data.len());
                c.feed(&data[start..start + n]);
                i += n;
            }
            1 | 2 => {
                c.feed(SERVER_LINES[usize::from(arg) % SERVER_LINES.len()]);
            }
            3 => {
                let mb = |s: &str| Mailbox::parse(s, true).unwrap_or_else(|_| unreachable!());
                let env = Envelope {
                    facts: None,
                    from: ReversePath::Mailbox(mb("a@example.org")),
                    params: MailParams::default(),
                    rcpts: vec![
                        (
                            ForwardPath::Mailbox(mb("b@example.net")),
                            RcptParams::default(),
                        ),
                        (ForwardPath::Postmaster, RcptParams::default()),
                    ],
                };
                let body: Vec<u8> = data[i.min(data.len())..]
                    .iter()
                    .take(usize::from(arg))
                    .copied()
                    .collect();
                let _ = c.send_message(env, &body);
            }
            4 => {
                let _ = c.tls_established();
            }
            _ => c.quit(),
        }
        while c.poll_event().is_some() {}
        let _ = c.take_output();
    }
}
