//! Client against server in a simulated network (quinn's `Pair::drive`).

mod common;

use common::{
    Pair, RFC7677_CLIENT_NONCE, RFC7677_SERVER_NONCE, SoftCrypto, crypto, rfc7677_credentials,
    server_with,
};
use scop_smtp::auth::ScramServerStart;
use scop_smtp::{
    Client, ClientAuth, ClientConfig, ClientEvent, Domain, Envelope, ForwardPath, Host, MailParams,
    Mailbox, Mechanism, PeerIncompatible, RcptParams, ReversePath, ScramClient, ServerConfig,
    TlsPolicy,
};

fn client(f: impl FnOnce(&mut ClientConfig)) -> Client {
    let mut c = ClientConfig::new(Host::Domain(
        Domain::parse("client.example", false).unwrap(),
    ));
    f(&mut c);
    Client::new(c)
}

fn envelope(rcpts: &[&str]) -> Envelope {
    Envelope {
        facts: None,
        from: ReversePath::Mailbox(Mailbox::parse("alice@example.org", false).unwrap()),
        params: MailParams::default(),
        rcpts: rcpts
            .iter()
            .map(|r| {
                (
                    ForwardPath::Mailbox(Mailbox::parse(r, true).unwrap()),
                    RcptParams::default(),
                )
            })
            .collect(),
    }
}

const MESSAGE: &[u8] =
    b"From: alice@example.org\r\nTo: bob@example.net\r\nSubject: test\r\n\r\nHello.\r\n.leading dot\r\n..two\r\n.\r\nend\r\n";

fn auth(mechs: &[Mechanism]) -> ClientAuth {
    ClientAuth {
        username: "user".into(),
        password: "pencil".into(),
        mechanisms: mechs.to_vec(),
        scram: Some(crypto()),
        client_nonce: RFC7677_CLIENT_NONCE.into(),
    }
}

fn run(
    server_cfg: impl FnOnce(&mut ServerConfig),
    client_cfg: impl FnOnce(&mut ClientConfig),
    rcpts: &[&str],
    message: &[u8],
    mtu: usize,
) -> Pair {
    let mut p = Pair::new(server_with(server_cfg), client(client_cfg));
    p.mtu = mtu;
    p.client.send_message(envelope(rcpts), message).unwrap();
    p.client.quit();
    p.drive();
    p
}

fn assert_delivered(p: &Pair, message: &[u8]) {
    let t = p.transactions();
    assert_eq!(t.len(), 1, "{:?}", p.client_events);
    assert!(t[0].delivered(), "{:?}", t[0]);
    assert_eq!(p.app.messages.len(), 1);
    assert_eq!(p.app.messages[0], scop_smtp::data::normalize_crlf(message));
    assert!(p.server.is_closed());
    assert!(p.client.is_closed());
    assert_eq!(p.client_events.last(), Some(&ClientEvent::Closed(None)));
}

#[test]
fn data_with_pipelining() {
    let p = run(
        |_| {},
        |c| c.chunking = false,
        &["bob@example.net"],
        MESSAGE,
        0,
    );
    assert_delivered(&p, MESSAGE);
    assert!(p.client.is_tls(), "opportunistic STARTTLS was used");
    let c2s = String::from_utf8_lossy(&p.c2s);
    assert!(
        c2s.contains("RCPT TO:<bob@example.net>\r\nDATA\r\n"),
        "pipelined group"
    );
    assert!(
        c2s.contains("\r\n..leading dot\r\n...two\r\n..\r\n"),
        "dot-stuffed"
    );
}

#[test]
fn data_without_pipelining() {
    let p = run(
        |c| c.registry.builtins.pipelining = false,
        |c| c.chunking = false,
        &["bob@example.net", "carol@example.net"],
        MESSAGE,
        0,
    );
    assert_delivered(&p, MESSAGE);
}

#[test]
fn server_without_extensions() {
    // A server offering no extension at all: no STARTTLS, plain DATA.
    let p = run(
        |c| {
            c.registry = scop_smtp::Registry::new(scop_smtp::Builtins {
                pipelining: false,
                size: false,
                eightbitmime: false,
                smtputf8: false,
                enhanced_status_codes: false,
                starttls: false,
                auth: vec![],
                auth_requires_tls: true,
                chunking: false,
                dsn: false,
                requiretls: false,
                xscop: false,
            })
        },
        |c| c.tls = TlsPolicy::Opportunistic,
        &["bob@example.net"],
        MESSAGE,
        0,
    );
    assert_delivered(&p, MESSAGE);
    assert!(!p.client.is_tls());
}

#[test]
fn bdat_with_pipelining_large_message() {
    let mut big = Vec::new();
    for i in 0..3000 {
        big.extend_from_slice(format!("line {i} of a long message............\r\n").as_bytes());
    }
    let p = run(
        |c| c.limits.message_size = 1 << 20,
        |_| {},
        &["bob@example.net"],
        &big,
        0,
    );
    assert_delivered(&p, &big);
    let c2s = String::from_utf8_lossy(&p.c2s);
    assert!(c2s.contains("BDAT 65536\r\n"));
    assert!(c2s.contains(" LAST\r\n"));
}

#[test]
fn bdat_without_pipelining() {
    let mut big = Vec::new();
    for i in 0..3000 {
        big.extend_from_slice(format!("line {i}\r\n").as_bytes());
    }
    let mut big2 = big.clone();
    big2.extend_from_slice(&big);
    big2.extend_from_slice(&big);
    big2.extend_from_slice(&big);
    let p = run(
        |c| c.registry.builtins.pipelining = false,
        |_| {},
        &["bob@example.net"],
        &big2,
        0,
    );
    assert_delivered(&p, &big2);
}

#[test]
fn byte_at_a_time_network() {
    let p = run(
        |_| {},
        |c| c.auth = Some(auth(&[Mechanism::Plain])),
        &["bob@example.net"],
        MESSAGE,
        1,
    );
    assert_delivered(&p, MESSAGE);
    assert_eq!(p.authenticated(), Some(Mechanism::Plain));
}

#[test]
fn auth_plain() {
    let p = run(
        |_| {},
        |c| c.auth = Some(auth(&[Mechanism::Plain])),
        &["bob@example.net"],
        MESSAGE,
        0,
    );
    assert_delivered(&p, MESSAGE);
    assert_eq!(p.authenticated(), Some(Mechanism::Plain));
    assert_eq!(p.server.authenticated(), Some("user"));
    assert!(p.app.events.iter().any(
        |e| matches!(e, scop_smtp::Event::Authenticated { username, .. } if username == "user")
    ));
}

#[test]
fn auth_login() {
    let p = run(
        |_| {},
        |c| c.auth = Some(auth(&[Mechanism::Login])),
        &["bob@example.net"],
        MESSAGE,
        0,
    );
    assert_delivered(&p, MESSAGE);
    assert_eq!(p.authenticated(), Some(Mechanism::Login));
}

#[test]
fn auth_scram_sha_256() {
    let p = run(
        |c| c.registry.builtins.auth = vec![Mechanism::ScramSha256, Mechanism::Plain],
        |c| c.auth = Some(auth(&[Mechanism::ScramSha256, Mechanism::Plain])),
        &["bob@example.net"],
        MESSAGE,
        0,
    );
    assert_delivered(&p, MESSAGE);
    assert_eq!(p.authenticated(), Some(Mechanism::ScramSha256));
    // The exchange is exactly the RFC 7677 section 3 one.
    let c2s = String::from_utf8_lossy(&p.c2s);
    let b64 = |s: &str| scop_smtp::codec::base64_encode(s.as_bytes());
    assert!(c2s.contains(&b64("n,,n=user,r=rOprNGfwEbeRWgbNEkqO")));
    assert!(c2s.contains(&b64(
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    )));
    let s2c = String::from_utf8_lossy(&p.s2c);
    assert!(s2c.contains(&b64("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")));
}

#[test]
fn auth_wrong_password_fails() {
    let mut a = auth(&[Mechanism::Plain]);
    a.password = "wrong".into();
    let p = run(
        |_| {},
        |c| c.auth = Some(a),
        &["bob@example.net"],
        MESSAGE,
        0,
    );
    assert!(p.app.messages.is_empty());
    assert!(matches!(
        p.client_events.last(),
        Some(ClientEvent::Closed(Some(_)))
    ));
}

#[test]
fn scram_wrong_password_fails() {
    let mut a = auth(&[Mechanism::ScramSha256]);
    a.password = "wrong".into();
    let p = run(
        |c| c.registry.builtins.auth = vec![Mechanism::ScramSha256],
        |c| c.auth = Some(a),
        &["bob@example.net"],
        MESSAGE,
        0,
    );
    assert!(p.app.messages.is_empty());
    assert!(String::from_utf8_lossy(&p.s2c).contains("535 5.7.8"));
}

#[test]
fn rfc7677_test_vector() {
    let c = SoftCrypto;
    let (mut client, first) = ScramClient::new("user", "pencil", RFC7677_CLIENT_NONCE);
    assert_eq!(first, "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
    let start = ScramServerStart::parse(first.as_bytes()).unwrap();
    assert_eq!(start.username, "user");
    let (server_first, wait) = start
        .server_first(rfc7677_credentials(), RFC7677_SERVER_NONCE)
        .unwrap();
    assert_eq!(
        server_first,
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    );
    let client_final = client.server_first(&c, server_first.as_bytes()).unwrap();
    assert_eq!(
        client_final,
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    );
    let server_final = wait.client_final(&c, client_final.as_bytes()).unwrap();
    assert_eq!(
        server_final,
        "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    );
    client.server_final(server_final.as_bytes()).unwrap();
    assert!(client.server_final(b"v=AAAA").is_err());
}

#[test]
fn per_recipient_results_pipelined() {
    let p = run(
        |_| {},
        |_| {},
        &[
            "bob@example.net",
            "reject-me@example.net",
            "carol@example.net",
        ],
        MESSAGE,
        0,
    );
    let t = p.transactions();
    assert!(t[0].delivered());
    let codes: Vec<u16> = t[0]
        .rcpts
        .iter()
        .map(|(_, r)| r.as_ref().unwrap().code())
        .collect();
    assert_eq!(codes, [250, 550, 250]);
    assert_eq!(t[0].accepted().count(), 2);
}

#[test]
fn all_recipients_rejected() {
    for pipelining in [true, false] {
        for chunking in [true, false] {
            let p = run(
                |c| c.registry.builtins.pipelining = pipelining,
                |c| c.chunking = chunking,
                &["reject1@example.net", "reject2@example.net"],
                MESSAGE,
                0,
            );
            let t = p.transactions();
            assert_eq!(t.len(), 1);
            assert!(!t[0].delivered(), "{pipelining} {chunking}: {:?}", t[0]);
            assert!(p.app.messages.is_empty());
            assert!(p.client.is_closed(), "{pipelining} {chunking}");
        }
    }
}

#[test]
fn sender_rejected() {
    let mut p = Pair::new(server_with(|_| {}), client(|_| {}));
    let mut env = envelope(&["bob@example.net"]);
    env.from = ReversePath::Mailbox(Mailbox::parse("reject@example.org", false).unwrap());
    p.client.send_message(env, MESSAGE).unwrap();
    p.client
        .send_message(envelope(&["bob@example.net"]), MESSAGE)
        .unwrap();
    p.client.quit();
    p.drive();
    let t = p.transactions();
    assert_eq!(t.len(), 2);
    assert!(!t[0].delivered());
    assert!(t[1].delivered());
    assert_eq!(p.app.messages.len(), 1);
}

#[test]
fn starttls_required_but_not_offered() {
    let p = run(
        |c| c.registry.builtins.starttls = false,
        |c| c.tls = TlsPolicy::Required,
        &["bob@example.net"],
        MESSAGE,
        0,
    );
    assert!(p.app.messages.is_empty());
    assert!(p.client_events.contains(&ClientEvent::Closed(Some(
        PeerIncompatible::StartTlsUnavailable.into()
    ))));
}

#[test]
fn smtputf8_session() {
    let p = run(
        |_| {},
        |_| {},
        &["j\u{f6}ran@b\u{fc}cher.example"],
        "Subject: h\u{e9}\r\n\r\nx\r\n".as_bytes(),
        0,
    );
    assert_delivered(&p, "Subject: h\u{e9}\r\n\r\nx\r\n".as_bytes());
    assert!(String::from_utf8_lossy(&p.c2s).contains(" SMTPUTF8"));
}

#[test]
fn several_messages_one_session() {
    let mut p = Pair::new(server_with(|_| {}), client(|_| {}));
    for i in 0..5 {
        let m = format!("Subject: {i}\r\n\r\nbody {i}\r\n");
        p.client
            .send_message(envelope(&["bob@example.net"]), m.as_bytes())
            .unwrap();
    }
    p.client.quit();
    p.drive();
    assert_eq!(p.transactions().len(), 5);
    assert!(p.transactions().iter().all(|t| t.delivered()));
    assert_eq!(p.app.messages.len(), 5);
}

#[test]
fn message_larger_than_server_size_is_not_sent() {
    let p = run(
        |c| c.limits.message_size = 10,
        |_| {},
        &["bob@example.net"],
        MESSAGE,
        0,
    );
    let t = p.transactions();
    assert_eq!(t[0].error, Some(PeerIncompatible::SizeExceeded.into()));
    assert!(t[0].mail.is_none());
}

/// A client against scripted server bytes.
fn scripted(
    replies: &[&[u8]],
    f: impl FnOnce(&mut ClientConfig),
) -> (Client, Vec<u8>, Vec<ClientEvent>) {
    let mut c = client(f);
    c.send_message(envelope(&["bob@example.net"]), b"hi\r\n")
        .unwrap();
    let mut sent = Vec::new();
    let mut events = Vec::new();
    for r in replies {
        c.feed(r);
        sent.extend(c.take_output());
        while let Some(e) = c.poll_event() {
            events.push(e);
        }
    }
    (c, sent, events)
}

#[test]
fn client_falls_back_to_helo() {
    let (_, sent, events) = scripted(
        &[
            b"220 old.example\r\n",
            b"502 5.5.1 EHLO not understood\r\n",
            b"250 old.example\r\n",
            b"250 ok\r\n",
            b"250 ok\r\n",
            b"354 go\r\n",
            b"250 queued\r\n",
        ],
        |_| {},
    );
    let sent = String::from_utf8(sent).unwrap();
    assert_eq!(
        sent,
        "EHLO client.example\r\nHELO client.example\r\nMAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.net>\r\nDATA\r\nhi\r\n.\r\n"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ClientEvent::Transaction(t) if t.delivered()))
    );
}

#[test]
fn client_handles_421_mid_session() {
    let (c, _, events) = scripted(
        &[
            b"220 mx.example ESMTP\r\n",
            b"250-mx.example\r\n250 PIPELINING\r\n",
            b"421 4.3.2 shutting down\r\n",
        ],
        |c| c.tls = TlsPolicy::Opportunistic,
    );
    assert!(c.is_closed());
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ClientEvent::Transaction(t) if t.error.is_some()))
    );
    assert!(matches!(events.last(), Some(ClientEvent::Closed(Some(_)))));
}

#[test]
fn client_refuses_scram_success_without_server_signature() {
    let (c, _, events) = scripted(
        &[
            b"220 mx.example ESMTP\r\n",
            b"250-mx.example\r\n250 AUTH SCRAM-SHA-256\r\n",
            b"235 2.7.0 trust me\r\n",
        ],
        |c| {
            c.tls = TlsPolicy::Disabled;
            c.auth = Some(auth(&[Mechanism::ScramSha256]));
        },
    );
    assert!(c.is_closed());
    assert!(events.contains(&ClientEvent::Closed(Some(
        scop_smtp::PeerMisbehaved::ServerSignature.into()
    ))));
}

fn facts() -> scop_smtp::EnvelopeFacts {
    scop_smtp::EnvelopeFacts {
        addr: Some("192.0.2.7".parse().unwrap()),
        helo: Some("mail.example.org".into()),
        login: None,
        tls: Some("TLSv1.3 TLS13_AES_128_GCM_SHA256".into()),
        spam: Some("ham 0.01".into()),
    }
}

#[test]
fn envelope_facts_reach_an_authorising_server_before_mail() {
    for pipelining in [true, false] {
        let mut server = server_with(|c| c.registry.builtins.pipelining = pipelining);
        server.authorise_peer(scop_smtp::PeerAuthorised::from_verified_certificate("mx"));
        let mut p = Pair::new(server, client(|_| {}));
        let mut env = envelope(&["bob@example.net"]);
        env.facts = Some(facts());
        p.client.send_message(env, MESSAGE).unwrap();
        p.client.quit();
        p.drive();
        assert_delivered(&p, MESSAGE);
        let i = p
            .app
            .events
            .iter()
            .position(|e| *e == scop_smtp::Event::Facts(facts()))
            .expect("facts event");
        let mail = p
            .app
            .events
            .iter()
            .position(|e| matches!(e, scop_smtp::Event::Mail { .. }))
            .expect("mail event");
        assert!(i < mail, "facts come before MAIL");
        let c2s = String::from_utf8_lossy(&p.c2s).to_string();
        assert!(
            c2s.contains("XSCOP ADDR=192.0.2.7 HELO=mail.example.org TLS=TLSv1.3+20TLS13_AES_128_GCM_SHA256 SPAM=ham+200.01\r\n"),
            "{c2s}"
        );
    }
}

#[test]
fn envelope_facts_are_never_sent_to_a_server_that_does_not_take_them() {
    // Not authorised: the server does not announce XSCOP, the client does
    // not start the transaction (no MAIL without the facts).
    let mut p = Pair::new(server_with(|_| {}), client(|_| {}));
    let mut env = envelope(&["bob@example.net"]);
    env.facts = Some(facts());
    p.client.send_message(env, MESSAGE).unwrap();
    p.client.quit();
    p.drive();
    let t = p.transactions();
    assert_eq!(t.len(), 1);
    assert!(!t[0].delivered());
    assert_eq!(
        t[0].error,
        Some(PeerIncompatible::FactsUnavailable.into()),
        "{t:?}"
    );
    let c2s = String::from_utf8_lossy(&p.c2s).to_string();
    assert!(
        !c2s.contains("XSCOP") && !c2s.contains("MAIL FROM"),
        "{c2s}"
    );
    assert!(p.app.messages.is_empty());
}

#[test]
fn sender_checks_send_mail_then_rset_and_never_a_message() {
    for pipelining in [true, false] {
        let mut server = server_with(|c| c.registry.builtins.pipelining = pipelining);
        server.authorise_peer(scop_smtp::PeerAuthorised::from_verified_certificate("mx"));
        let mut p = Pair::new(server, client(|_| {}));
        let mut ok = envelope(&["bob@example.net"]);
        ok.facts = Some(facts());
        let mut refused = envelope(&[]);
        refused.from = ReversePath::Mailbox(Mailbox::parse("rejected@example.org", false).unwrap());
        p.client.check_sender(ok).unwrap();
        p.client.check_sender(refused).unwrap();
        p.client.quit();
        p.drive();
        let t = p.transactions();
        assert_eq!(t.len(), 2, "{:?}", p.client_events);
        assert_eq!(t[0].mail.as_ref().map(|r| r.code()), Some(250), "{t:?}");
        assert!(t[0].rcpts.is_empty() && !t[0].delivered());
        assert!(t[1].mail.as_ref().is_some_and(|r| r.code() >= 500), "{t:?}");
        assert!(p.app.messages.is_empty());
        let c2s = String::from_utf8_lossy(&p.c2s).to_string();
        assert!(
            !c2s.contains("RCPT") && !c2s.contains("DATA") && !c2s.contains("BDAT"),
            "{c2s}"
        );
        assert_eq!(c2s.matches("RSET\r\n").count(), 2, "{c2s}");
        assert!(p.app.events.contains(&scop_smtp::Event::Facts(facts())));
        assert_eq!(p.client_events.last(), Some(&ClientEvent::Closed(None)));
    }
}
