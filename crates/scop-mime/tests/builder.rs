//! Builder properties: folding (78 preferred, 998 hard), encoded words that
//! decode back, boundaries that never collide with content.

use proptest::prelude::*;
use scop_mime::{Body, Builder, Mailbox, fuzz, parse};

fn lines(b: &[u8]) -> impl Iterator<Item = &[u8]> {
    b.split(|&c| c == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}

fn header_block(b: &[u8]) -> &[u8] {
    let end = memchr_blank(b).unwrap_or(b.len());
    &b[..end]
}

fn memchr_blank(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n")
}

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9,.!?]{1,20}",
        "[a-z]{20,60}",
        Just("é".to_string()),
        Just("Grüße".to_string()),
        Just("日本語".to_string()),
        Just("=?".to_string()),
        Just("\"quoted\"".to_string()),
    ]
}

fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(500))]

    #[test]
    fn folding_prefers_78(words in prop::collection::vec(word(), 1..40), name in prop::collection::vec(word(), 1..6), utf8 in any::<bool>()) {
        let subject = words.join(" ");
        let display = name.join(" ");
        let bytes = Builder::new()
            .smtputf8(utf8)
            .from(Mailbox::new(Some(&display), "someone@example.org"))
            .subject(&subject)
            .header("Content-Description", &subject)
            .text("x")
            .build();
        for l in lines(header_block(&bytes)) {
            // Words of at most 60 characters always fit a 78-character line
            // (encoded words are at most 75).
            let width = if utf8 { String::from_utf8_lossy(l).chars().count() } else { l.len() };
            prop_assert!(width <= 78 || utf8, "{} ({} chars)", String::from_utf8_lossy(l), l.len());
            prop_assert!(l.len() <= 998);
        }
        let p = parse(&bytes).expect("parses");
        let m = &p.message;
        prop_assert_eq!(m.header("subject").map(|h| h.text()), Some(subject.clone()));
        prop_assert_eq!(m.header("content-description").map(|h| h.text()), Some(subject));
        let from = m.header("from").map(|h| h.addresses());
        prop_assert_eq!(from, Some(vec![Mailbox::new(Some(&display), "someone@example.org").into()]));
    }

    #[test]
    fn folding_never_exceeds_998(len in 900usize..3000, utf8 in any::<bool>()) {
        let token = "x".repeat(len);
        let subject = format!("start {token} end");
        let bytes = Builder::new().smtputf8(utf8).subject(&subject).text("x").build();
        for l in lines(&bytes) {
            prop_assert!(l.len() <= 998, "line of {}", l.len());
        }
        let p = parse(&bytes).expect("parses");
        prop_assert_eq!(p.message.header("subject").map(|h| h.text()), Some(subject));
    }

    #[test]
    fn boundaries_never_collide(bodies in prop::collection::vec(prop::collection::vec(prop_oneof![
        Just(b"--=_scop_".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"--".to_vec()),
        Just(b"0123456789abcdef".to_vec()),
        prop::collection::vec(any::<u8>(), 0..4),
    ], 0..20), 1..4)) {
        let mut b = Builder::new().subject("parts").text("main");
        let flat: Vec<Vec<u8>> = bodies.iter().map(|v| v.concat()).collect();
        for body in &flat {
            b = b.mime_part("application/octet-stream", body.clone());
        }
        let bytes = b.build();
        let p = parse(&bytes).expect("parses");
        prop_assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
        let Body::Multipart(mp) = p.message.body() else { panic!("multipart") };
        prop_assert_eq!(mp.parts().len(), 1 + flat.len());
        for (part, body) in mp.parts()[1..].iter().zip(&flat) {
            let Body::Leaf(l) = part.body() else { panic!("leaf") };
            prop_assert_eq!(l.decoded(), &body[..]);
        }
        fuzz::round_trip(&bytes);
    }
}

#[test]
fn boundary_chosen_around_its_own_text() {
    // Put the boundary the builder picked into the content of the next build.
    let first = Builder::new()
        .text("a")
        .mime_part("text/plain", "b")
        .build();
    let p = parse(&first).expect("parses");
    let Body::Multipart(mp) = p.message.body() else {
        panic!("multipart")
    };
    let b = mp.boundary().to_string();
    let tricky = format!("--{b}\r\n--{b}--\r\n");
    let second = Builder::new()
        .text(tricky.clone())
        .mime_part("text/plain", tricky.clone())
        .build();
    let p = parse(&second).expect("parses");
    let Body::Multipart(mp) = p.message.body() else {
        panic!("multipart")
    };
    assert_eq!(mp.parts().len(), 2);
    for part in mp.parts() {
        let Body::Leaf(l) = part.body() else {
            panic!("leaf")
        };
        assert_eq!(l.text().as_deref(), Some(tricky.as_str()));
    }
}

#[test]
fn report_shape() {
    // A DSN-like report: multipart/report with a delivery-status part and the
    // returned message.
    let bytes = Builder::new()
        .from(Mailbox::new(Some("Mail Delivery System"), "mailer-daemon@example.org"))
        .to(Mailbox::new(None, "sender@example.com"))
        .subject("Undelivered Mail Returned to Sender")
        .multipart("report")
        .multipart_param("report-type", "delivery-status")
        .text("Your message could not be delivered.\n")
        .mime_part("message/delivery-status", "Reporting-MTA: dns; example.org\n\nFinal-Recipient: rfc822; x@y\nAction: failed\nStatus: 5.1.1\n")
        .message_rfc822(b"Subject: original\nFrom: sender@example.com\n\nhello\n".to_vec())
        .build();
    let p = parse(&bytes).expect("parses");
    assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
    let ct = p.message.content_type();
    assert_eq!(ct.mime_type, "multipart/report");
    assert_eq!(ct.param("report-type"), Some("delivery-status"));
    let Body::Multipart(mp) = p.message.body() else {
        panic!("multipart")
    };
    assert_eq!(mp.parts().len(), 3);
    assert_eq!(
        mp.parts()[1].content_type().mime_type,
        "message/delivery-status"
    );
    let Body::Message(inner) = mp.parts()[2].body() else {
        panic!("message")
    };
    assert_eq!(
        inner.header("subject").map(|h| h.text()),
        Some("original".into())
    );
    fuzz::round_trip(&bytes);
}

#[test]
fn nested_builder_part_and_attachment_names() {
    let inner = Builder::new()
        .header("Content-Description", "nested part")
        .html("<b>hi</b>");
    let bytes = Builder::new()
        .text("t")
        .part(inner)
        .attachment(
            "Звіт за 2024 рік — фінальна версія.pdf",
            "application/pdf",
            vec![0u8, 1, 2, 255],
        )
        .build();
    for l in lines(&bytes) {
        assert!(l.len() <= 78, "{}", String::from_utf8_lossy(l));
    }
    let p = parse(&bytes).expect("parses");
    let Body::Multipart(mp) = p.message.body() else {
        panic!("multipart")
    };
    assert_eq!(
        mp.parts()[1]
            .header("content-description")
            .map(|h| h.text()),
        Some("nested part".into())
    );
    let att = &mp.parts()[2];
    assert_eq!(
        att.content_type().param("name"),
        Some("Звіт за 2024 рік — фінальна версія.pdf")
    );
    let disp = att.content_disposition().expect("disposition");
    assert_eq!(disp.kind, "attachment");
    assert_eq!(att.filename().as_deref(), disp.param("filename"));
    assert_eq!(
        disp.param("filename"),
        Some("Звіт за 2024 рік — фінальна версія.pdf")
    );
    let Body::Leaf(l) = att.body() else {
        panic!("leaf")
    };
    assert_eq!(l.decoded(), &[0u8, 1, 2, 255]);
}
