//! Wire-strictness and abuse tests, one named test per attack.

mod common;

use common::{App, converse, server_with};
use scop_smtp::{Event, PeerAuthorised, TlsInfo};

const EHLO: &[u8] = b"EHLO client.example\r\n";
const ENVELOPE: &[u8] = b"MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.net>\r\nDATA\r\n";
const SMUGGLED: &[u8] =
    b"MAIL FROM:<admin@bank.example>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\nFrom: admin@bank.example\r\n\r\nsmuggled\r\n";

fn smuggle(fake_end: &[u8]) {
    let mut s = server_with(|_| {});
    let mut app = App::default();
    let mut body = b"From: alice@example.org\r\nSubject: hi\r\n\r\nhello".to_vec();
    body.extend_from_slice(fake_end);
    body.extend_from_slice(SMUGGLED);
    body.extend_from_slice(b"\r\n.\r\n");
    let out = converse(&mut s, &mut app, &[EHLO, ENVELOPE, &body, b"QUIT\r\n"]);
    // The fake end is not an end: the whole thing is one rejected message.
    assert!(out[3].starts_with("554 5.6.0 "), "{out:?}");
    assert!(app.messages.is_empty(), "no message may be accepted");
    let mails = app
        .events
        .iter()
        .filter(|e| matches!(e, Event::Mail { .. }))
        .count();
    assert_eq!(mails, 1, "the smuggled MAIL must never be executed");
    assert!(
        app.events
            .iter()
            .any(|e| matches!(e, Event::MessageAborted(_)))
    );
    assert_eq!(out[4], "221 2.0.0 Bye\r\n");
    assert!(s.is_closed());
}

#[test]
fn smuggling_lf_dot_lf() {
    smuggle(b"\n.\n");
}

#[test]
fn smuggling_cr_dot_cr() {
    smuggle(b"\r.\r");
}

#[test]
fn smuggling_lf_dot_crlf() {
    smuggle(b"\n.\r\n");
}

#[test]
fn smuggling_crlf_dot_lf() {
    smuggle(b"\r\n.\n");
}

#[test]
fn smuggling_crlf_dot_cr() {
    smuggle(b"\r\n.\r");
}

#[test]
fn smuggling_cr_dot_crlf() {
    smuggle(b"\r.\r\n");
}

#[test]
fn smuggling_bare_lf_in_headers() {
    let mut s = server_with(|_| {});
    let mut app = App::default();
    let body = b"From: a@example.org\nSubject: x\r\n\r\nbody\r\n.\r\n";
    let out = converse(&mut s, &mut app, &[EHLO, ENVELOPE, body]);
    assert!(out[3].starts_with("554 5.6.0 "), "{out:?}");
    assert!(app.messages.is_empty());
}

#[test]
fn smuggling_in_bdat_chunk_is_rejected() {
    let mut s = server_with(|_| {});
    let mut app = App::default();
    let out = converse(
        &mut s,
        &mut app,
        &[
            EHLO,
            b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nBDAT 9 LAST\r\na\n.\nQUIT\n",
            b"NOOP\r\n",
        ],
    );
    assert!(out[2].contains("554 5.6.0 "), "{out:?}");
    assert!(app.messages.is_empty());
    assert_eq!(out[3], "250 2.0.0 OK\r\n");
}

#[test]
fn starttls_injection_is_discarded() {
    let mut s = server_with(|_| {});
    let mut app = App::default();
    let injected: &[u8] =
        b"STARTTLS\r\nMAIL FROM:<evil@example.org>\r\nRCPT TO:<x@example.net>\r\n";
    let out = converse(&mut s, &mut app, &[EHLO, injected]);
    assert_eq!(out[2], "220 2.0.0 Ready to start TLS\r\n");
    let discarded = injected.len() - b"STARTTLS\r\n".len();
    assert!(app.events.contains(&Event::StartTls { discarded }));
    assert_eq!(s.discarded_plaintext(), discarded);
    assert!(!app.events.iter().any(|e| matches!(e, Event::Mail { .. })));
    // converse completed the handshake; the session restarts before EHLO.
    assert!(s.is_tls());
    let out = converse(&mut s, &mut app, &[b"MAIL FROM:<a@example.org>\r\n"]);
    assert!(out[1].starts_with("503 5.5.1 "), "{out:?}");
}

#[test]
fn plaintext_fed_during_handshake_is_discarded() {
    let mut s = server_with(|_| {});
    let mut app = App::default();
    converse(&mut s, &mut app, &[EHLO]);
    s.feed(b"STARTTLS\r\n");
    assert!(s.tls_pending());
    assert_eq!(s.feed(b"MAIL FROM:<evil@example.org>\r\n"), 30);
    s.tls_established(TlsInfo::default()).unwrap();
    app.drive(&mut s);
    assert!(!app.events.iter().any(|e| matches!(e, Event::Mail { .. })));
    assert_eq!(s.discarded_plaintext(), 30);
}

#[test]
fn over_long_command_line() {
    let mut s = server_with(|_| {});
    let mut app = App::default();
    let mut long = b"HELO ".to_vec();
    long.extend(std::iter::repeat_n(b'a', 600));
    long.extend_from_slice(b"\r\n");
    let out = converse(&mut s, &mut app, &[&long, b"NOOP\r\n"]);
    assert_eq!(out[1], "500 5.5.2 Line too long\r\n");
    assert_eq!(out[2], "250 2.0.0 OK\r\n");
    // After EHLO with extensions, longer lines are allowed (up to 4096).
    let mut mail = b"MAIL FROM:<a@example.org> ENVID=".to_vec();
    mail.extend(std::iter::repeat_n(b'x', 90));
    mail.extend_from_slice(b" ");
    mail.extend(std::iter::repeat_n(b' ', 600));
    mail.extend_from_slice(b"\r\n");
    let out = converse(&mut s, &mut app, &[EHLO, &mail]);
    assert!(out[2].starts_with("250 2.1.0"), "{out:?}");
}

#[test]
fn too_many_recipients() {
    let mut s = server_with(|c| c.limits.recipients = 2);
    let mut app = App::default();
    let out = converse(
        &mut s,
        &mut app,
        &[
            EHLO,
            b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b1@example.net>\r\nRCPT TO:<b2@example.net>\r\nRCPT TO:<b3@example.net>\r\n",
        ],
    );
    assert!(
        out[2].ends_with("452 4.5.3 Too many recipients\r\n"),
        "{out:?}"
    );
}

#[test]
fn nul_in_command_and_data() {
    let mut s = server_with(|_| {});
    let mut app = App::default();
    let out = converse(
        &mut s,
        &mut app,
        &[EHLO, b"NO\0OP\r\n", ENVELOPE, b"a\0b\r\n.\r\n"],
    );
    assert_eq!(out[2], "500 5.5.2 NUL not allowed\r\n");
    assert_eq!(out[4], "554 5.6.0 NUL in message data\r\n");
    assert!(app.messages.is_empty());
}

#[test]
fn eight_bit_without_8bitmime() {
    let mut s = server_with(|_| {});
    let mut app = App::default();
    let body = "Subject: caf\u{e9}\r\n\r\n.\r\n".as_bytes();
    let out = converse(&mut s, &mut app, &[EHLO, ENVELOPE, body]);
    assert_eq!(out[3], "554 5.6.0 8-bit data requires BODY=8BITMIME\r\n");
    let out = converse(
        &mut s,
        &mut app,
        &[
            b"MAIL FROM:<a@example.org> BODY=8BITMIME\r\nRCPT TO:<b@example.net>\r\nDATA\r\n",
            body,
        ],
    );
    assert_eq!(out[2], "250 2.0.0 OK queued as Q1\r\n");
}

#[test]
fn utf8_address_without_smtputf8() {
    let mut s = server_with(|_| {});
    let mut app = App::default();
    let out = converse(
        &mut s,
        &mut app,
        &[
            EHLO,
            "MAIL FROM:<j\u{f6}ran@example.org>\r\n".as_bytes(),
            "MAIL FROM:<j\u{f6}ran@example.org> SMTPUTF8\r\n".as_bytes(),
        ],
    );
    assert_eq!(out[2], "553 5.6.7 Non-ASCII address requires SMTPUTF8\r\n");
    assert_eq!(out[3], "250 2.1.0 Sender OK\r\n");
    // Without the extension, the same is refused even with the parameter.
    let mut s = server_with(|c| c.registry.builtins.smtputf8 = false);
    let out = converse(
        &mut s,
        &mut app,
        &[
            EHLO,
            "MAIL FROM:<j\u{f6}ran@example.org> SMTPUTF8\r\n".as_bytes(),
        ],
    );
    assert!(out[2].starts_with("553 5.6.7 "), "{out:?}");
}

#[test]
fn auth_before_tls_refused() {
    let mut s = server_with(|_| {});
    let mut app = App::default();
    let out = converse(
        &mut s,
        &mut app,
        &[EHLO, b"AUTH PLAIN AHVzZXIAcGVuY2ls\r\n"],
    );
    assert!(
        !out[1].contains("AUTH"),
        "AUTH must not be offered in plaintext"
    );
    assert_eq!(out[2], "530 5.7.0 Must issue a STARTTLS command first\r\n");
    let out = converse(
        &mut s,
        &mut app,
        &[b"STARTTLS\r\n", EHLO, b"AUTH PLAIN AHVzZXIAcGVuY2ls\r\n"],
    );
    assert!(out[2].contains("AUTH PLAIN LOGIN"), "{out:?}");
    assert_eq!(out[3], "235 2.7.0 Authentication successful\r\n");
    assert_eq!(s.authenticated(), Some("user"));
}

#[test]
fn errors_per_session_close_with_421() {
    let mut s = server_with(|c| c.limits.errors = 3);
    let mut app = App::default();
    let out = converse(
        &mut s,
        &mut app,
        &[b"FOO\r\n", b"BAR\r\n", b"BAZ\r\n", b"NOOP\r\n"],
    );
    assert_eq!(out[2], "500 5.5.1 Command unrecognized\r\n");
    assert_eq!(
        out[3],
        "500 5.5.1 Command unrecognized\r\n421 4.7.0 Too many errors, closing connection\r\n"
    );
    assert_eq!(out[4], "");
    assert!(s.is_closed());
}

#[test]
fn commands_per_session_close_with_421() {
    let mut s = server_with(|c| c.limits.commands = 2);
    let mut app = App::default();
    let out = converse(&mut s, &mut app, &[b"NOOP\r\n", b"NOOP\r\n", b"NOOP\r\n"]);
    assert_eq!(
        out[3],
        "421 4.7.0 Too many commands, closing connection\r\n"
    );
    assert!(s.is_closed());
}

#[test]
fn pipelining_refused_without_extension() {
    let mut s = server_with(|_| {});
    let mut app = App::default();
    let out = converse(
        &mut s,
        &mut app,
        &[
            b"HELO client.example\r\n",
            b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n",
        ],
    );
    assert_eq!(out[2], "554 5.5.0 Improper command pipelining\r\n");
    assert!(s.is_closed());
}

#[test]
fn data_pipelined_before_354_refused() {
    let mut s = server_with(|_| {});
    let mut app = App::default();
    let mut seg = ENVELOPE.to_vec();
    seg.extend_from_slice(b"Subject: x\r\n\r\nbody\r\n.\r\n");
    let out = converse(&mut s, &mut app, &[EHLO, &seg]);
    assert!(
        out[2].ends_with("554 5.5.0 Improper command pipelining\r\n"),
        "{out:?}"
    );
    assert!(app.messages.is_empty());
}

#[test]
fn no_250_until_durable() {
    let mut s = server_with(|_| {});
    let mut app = App {
        hold_messages: true,
        ..App::default()
    };
    let out = converse(
        &mut s,
        &mut app,
        &[EHLO, ENVELOPE, b"hello\r\n.\r\n", b"NOOP\r\n"],
    );
    assert_eq!(
        out[3], "",
        "nothing may be acknowledged before the store says so"
    );
    assert_eq!(out[4], "", "later commands wait behind the decision");
    assert!(s.decision_pending());
    s.message_durable("Q9").unwrap();
    assert_eq!(
        String::from_utf8(s.take_output()).unwrap(),
        "250 2.0.0 OK queued as Q9\r\n250 2.0.0 OK\r\n"
    );
}

#[test]
fn durable_store_failure_gives_4xx() {
    let mut s = server_with(|_| {});
    let mut app = App {
        hold_messages: true,
        ..App::default()
    };
    converse(&mut s, &mut app, &[EHLO, ENVELOPE, b"hello\r\n.\r\n"]);
    let r = scop_smtp::Reply::new(451, scop_smtp::EnhancedCode::new(4, 3, 0).ok(), "Try later")
        .unwrap();
    s.reject(r).unwrap();
    assert_eq!(
        String::from_utf8(s.take_output()).unwrap(),
        "451 4.3.0 Try later\r\n"
    );
    assert!(s.message_durable("x").is_err());
}

#[test]
fn xscop_requires_authorised_peer() {
    let facts: &[u8] = b"XSCOP ADDR=192.0.2.7 HELO=client.example LOGIN=alice SPAM=ham\r\n";
    let mut s = server_with(|_| {});
    let mut app = App::default();
    let out = converse(&mut s, &mut app, &[EHLO, facts]);
    assert!(!out[1].contains("XSCOP"));
    assert_eq!(out[2], "500 5.5.1 Command unrecognized\r\n");
    let mut s = server_with(|_| {});
    s.authorise_peer(PeerAuthorised::from_verified_certificate("mx"));
    let mut app = App::default();
    let out = converse(&mut s, &mut app, &[EHLO, facts]);
    assert!(out[1].contains("XSCOP ADDR HELO LOGIN TLS SPAM"));
    assert_eq!(out[2], "250 2.0.0 Facts accepted\r\n");
    let f = app
        .events
        .iter()
        .find_map(|e| match e {
            Event::Facts(f) => Some(f.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(f.addr, Some("192.0.2.7".parse().unwrap()));
    assert_eq!(f.login.as_deref(), Some("alice"));
}

#[test]
fn unknown_parameter_555() {
    let mut s = server_with(|_| {});
    let mut app = App::default();
    let out = converse(
        &mut s,
        &mut app,
        &[EHLO, b"MAIL FROM:<a@example.org> XFOO=1\r\n"],
    );
    assert_eq!(out[2], "555 5.5.4 Parameter not recognized\r\n");
}

#[test]
fn message_size_enforced_while_streaming() {
    let mut s = server_with(|c| c.limits.message_size = 100);
    let mut app = App::default();
    let out = converse(
        &mut s,
        &mut app,
        &[EHLO, b"MAIL FROM:<a@example.org> SIZE=101\r\n"],
    );
    assert_eq!(out[2], "552 5.3.4 Message size exceeds fixed limit\r\n");
    let big = vec![b'x'; 80];
    let mut body = Vec::new();
    for _ in 0..10 {
        body.extend_from_slice(&big);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b".\r\n");
    let out = converse(&mut s, &mut app, &[ENVELOPE, &body]);
    assert_eq!(out[2], "552 5.3.4 Message size exceeds fixed limit\r\n");
    let delivered: usize = app
        .events
        .iter()
        .map(|e| match e {
            Event::DataChunk(c) => c.len(),
            _ => 0,
        })
        .sum();
    assert!(delivered <= 100);
}

#[test]
fn input_is_bounded_while_a_decision_is_pending() {
    let mut s = server_with(|_| {});
    let mut app = App::default();
    converse(&mut s, &mut app, &[EHLO]);
    let mut flood = b"MAIL FROM:<a@example.org>\r\n".to_vec();
    flood.extend(
        std::iter::repeat_n(b"RCPT TO:<b@example.net>\r\n".iter().copied(), 10_000).flatten(),
    );
    let taken = s.feed(&flood);
    assert!(taken <= scop_smtp::limits::INPUT_BUFFER_MAX);
    assert!(taken < flood.len());
}

mod custom_extension {
    use super::*;
    use scop_smtp::extension::ParamContext;
    use scop_smtp::{Error, Extension, InvalidInput, Parameter};

    /// A caller-defined extension: EHLO keyword with parameters, a MAIL
    /// parameter with a validation hook, and a verb.
    #[derive(Debug)]
    struct Xprio;

    impl Extension for Xprio {
        fn keyword(&self) -> &str {
            "XPRIO"
        }
        fn ehlo_params(&self) -> Vec<String> {
            vec!["LOW".into(), "HIGH".into()]
        }
        fn mail_params(&self) -> &[&str] {
            &["XPRIO"]
        }
        fn verbs(&self) -> &[&str] {
            &["XPING"]
        }
        fn check_param(&self, _: ParamContext, p: &Parameter) -> Result<(), Error> {
            match p.value.as_deref() {
                Some("LOW" | "HIGH") => Ok(()),
                _ => Err(InvalidInput::ParameterValue.into()),
            }
        }
    }

    #[test]
    fn custom_extension_keyword_param_and_verb() {
        let mut s = server_with(|c| c.registry.register(Box::new(Xprio)));
        let mut app = App::default();
        let out = converse(
            &mut s,
            &mut app,
            &[
                EHLO,
                b"MAIL FROM:<a@example.org> XPRIO=URGENT\r\n",
                b"MAIL FROM:<a@example.org> XPRIO=HIGH\r\n",
                b"XPING hello\r\n",
            ],
        );
        assert!(out[1].contains("250 XPRIO LOW HIGH\r\n"), "{out:?}");
        assert_eq!(out[2], "501 5.5.4 Bad parameter value\r\n");
        assert_eq!(out[3], "250 2.1.0 Sender OK\r\n");
        assert_eq!(out[4], "250 extension OK\r\n");
        let mail = app.events.iter().find_map(|e| match e {
            Event::Mail { params, .. } => Some(params.clone()),
            _ => None,
        });
        assert_eq!(mail.unwrap().other[0].value.as_deref(), Some("HIGH"));
        assert!(app.events.iter().any(|e| matches!(
            e,
            Event::ExtensionCommand { verb, args } if verb == "XPING" && args == "hello"
        )));
    }
}

#[test]
fn every_reply_is_well_formed_and_errors_map_once() {
    use scop_smtp::{
        ApiMisuse, Error, InvalidInput, PeerIncompatible, PeerMisbehaved, PolicyRefusal,
    };
    let errors: Vec<Error> = vec![
        InvalidInput::LineTooLong.into(),
        InvalidInput::DataBareNewline.into(),
        PeerMisbehaved::TooManyRecipients.into(),
        PeerMisbehaved::TooManyErrors.into(),
        PeerIncompatible::NoAuthMechanism.into(),
        PolicyRefusal::AuthRequiresTls.into(),
        ApiMisuse::NoDecisionPending.into(),
    ];
    for e in errors {
        let r = e.reply();
        assert!(r.is_transient() || r.is_permanent(), "{e}");
        let enh = r.enhanced().unwrap();
        assert_eq!(u16::from(enh.class()), r.code() / 100, "{e}");
    }
}
