//! Property tests: codecs, the round-trip contract on fragment-built and
//! arbitrary inputs, and builder-made messages.

use proptest::prelude::*;
use scop_mime::codec::{base64_decode, base64_encode, qp_decode, qp_encode};
use scop_mime::{Body, Builder, Mailbox, fuzz, parse};

const FRAGMENTS: &[&str] = &[
    "Content-Type: multipart/mixed; boundary=b",
    "Content-Type: multipart/alternative; boundary=\"c d\"",
    "Content-Type: multipart/digest; boundary=b",
    "Content-Type: multipart/mixed; boundary=bb",
    "Content-Type: multipart/mixed",
    "Content-Type: message/rfc822",
    "Content-Type: text/plain; charset=iso-8859-1",
    "Content-Type: text/html; charset=\"utf-8\"; name*0*=utf-8''%C3%A9; name*1=x",
    "Content-Type: text",
    "Content-Transfer-Encoding: base64",
    "Content-Transfer-Encoding: quoted-printable",
    "Content-Transfer-Encoding: binary",
    "Content-Transfer-Encoding: 8bit",
    "Content-Transfer-Encoding: x-uuencode",
    "--b",
    "--b--",
    "--bb",
    "--bb--",
    "--c d",
    "--c d--",
    "--b \t",
    "--b--x",
    "",
    "",
    "",
    " ",
    "\t folded continuation",
    " =?utf-8?q?caf=C3=A9?= =?iso-8859-1?b?6Q==?=",
    "Subject: =?utf-8?q?x?= y",
    "Subject : spaced",
    "X:",
    "From: \"Doe, J\" <j@d>, (c) x@y",
    "To: G: a@b, c <d@e>;",
    "Date: Fri, 21 Nov 1997 09:55:06 -0600",
    "Message-ID: <a@b>",
    "SGVsbG8gd29ybGQ=",
    "QQ",
    "!!",
    "=3D=",
    "abc=",
    "a =20 ",
    "h\u{e9}llo w\u{f6}rld",
    "\u{0}",
    "From x@y Mon",
    ":",
    "a:b",
    "x",
    "\r",
    "long long long long long long long long long long long long long long long long long long long long",
];

fn fragment_message() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        8 => prop::sample::select(FRAGMENTS).prop_map(|s| s.as_bytes().to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..8),
    ];
    let eol = prop::sample::select(&["\n", "\r\n", "\r\n", "\n", "\r", ""][..]);
    prop::collection::vec((line, eol), 0..40).prop_map(|lines| {
        let mut out = Vec::new();
        for (l, e) in lines {
            out.extend_from_slice(&l);
            out.extend_from_slice(e.as_bytes());
        }
        out
    })
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn base64_decode_inverts_encode(data in prop::collection::vec(any::<u8>(), 0..400)) {
        prop_assert_eq!(base64_decode(&base64_encode(&data)), data);
    }

    #[test]
    fn qp_decode_inverts_encode(data in prop::collection::vec(prop_oneof![any::<u8>(), Just(b' '), Just(b'\r'), Just(b'\n'), Just(b'=')], 0..400)) {
        let enc = qp_encode(&data);
        prop_assert!(enc.split(|&b| b == b'\n').all(|l| l.len() <= 77));
        prop_assert_eq!(qp_decode(&enc), data);
    }

    #[test]
    fn round_trip_fragments(msg in fragment_message()) {
        fuzz::parse(&msg);
        fuzz::round_trip(&msg);
    }

    #[test]
    fn round_trip_arbitrary(mut data in prop::collection::vec(any::<u8>(), 0..300)) {
        fuzz::parse(&data);
        fuzz::round_trip(&data);
        // Make most inputs start like a message.
        let mut m = b"A: b\n".to_vec();
        m.append(&mut data);
        fuzz::round_trip(&m);
    }
}

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            "[a-zA-Z0-9]{1,12}",
            Just("é".to_string()),
            Just("日本".to_string()),
            Just("=?".to_string()),
            Just("\"".to_string()),
            "[a-z]{60,120}",
        ],
        1..12,
    )
    .prop_map(|w| w.join(" "))
}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn builder_messages_round_trip(
        subject in text(),
        name in text(),
        body in prop::collection::vec(any::<u8>(), 0..300),
        body_text in text(),
        utf8 in any::<bool>(),
        nparts in 0usize..3,
    ) {
        let mut b = Builder::new()
            .smtputf8(utf8)
            .from(Mailbox::new(Some(&name), "a@example.org"))
            .to(Mailbox::new(None, "b@example.com"))
            .subject(&subject)
            .text(body_text.clone());
        for i in 0..nparts {
            b = b.attachment(format!("{name}-{i}.bin"), "application/octet-stream", body.clone());
        }
        let bytes = b.build();
        for line in bytes.split(|&c| c == b'\n') {
            prop_assert!(line.len() <= 999);
        }
        let p = parse(&bytes).expect("builder output parses");
        prop_assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
        let m = &p.message;
        prop_assert_eq!(m.header("subject").map(|h| h.text()), Some(subject.clone()));
        let from = m.header("from").map(|h| h.addresses());
        prop_assert_eq!(from, Some(vec![Mailbox::new(Some(&name), "a@example.org").into()]));
        let mut leaves = Vec::new();
        m.walk(&mut |p| if let Body::Leaf(l) = p.body() { leaves.push((l.decoded().to_vec(), l.text().map(|t| t.into_owned()))) });
        prop_assert_eq!(leaves.len(), 1 + nparts);
        prop_assert_eq!(leaves[0].1.as_deref(), Some(body_text.as_str()));
        for l in &leaves[1..] {
            prop_assert_eq!(&l.0, &body);
        }
        fuzz::round_trip(&bytes);
    }
}
