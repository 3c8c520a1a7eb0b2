//! Our signer against our verifier, and the attacks of the issue: each one
//! must end in the precise verdict named here.

use scop_dkim::{
    Canonicalization, DkimOutput, DkimResult, DnsAnswer, KeyKind, Reason, SignatureError, Signer,
    SigningKey, Verifier, VerifyOptions, sign_message, verify_message,
};
use std::sync::OnceLock;

const NOW: u64 = 1_750_000_000;
const DOMAIN: &str = "example.com";

struct Keys {
    rsa_pem: String,
    ed_pem: String,
    rsa_txt: String,
    ed_txt: String,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let rsa = SigningKey::generate(KeyKind::Rsa2048).unwrap();
        let ed = SigningKey::generate(KeyKind::Ed25519).unwrap();
        Keys {
            rsa_pem: rsa.to_pkcs8_pem().unwrap(),
            ed_pem: ed.to_pkcs8_pem().unwrap(),
            rsa_txt: rsa.dns_txt().unwrap(),
            ed_txt: ed.dns_txt().unwrap(),
        }
    })
}

fn rsa_signer() -> Signer {
    Signer::new(
        SigningKey::from_pem(&keys().rsa_pem).unwrap(),
        DOMAIN,
        "rsa",
    )
    .unwrap()
}

fn ed_signer() -> Signer {
    Signer::new(SigningKey::from_pem(&keys().ed_pem).unwrap(), DOMAIN, "ed").unwrap()
}

fn dns(name: &str) -> DnsAnswer {
    match name {
        "rsa._domainkey.example.com" => DnsAnswer::Txt(vec![keys().rsa_txt.clone().into_bytes()]),
        "ed._domainkey.example.com" => DnsAnswer::Txt(vec![keys().ed_txt.clone().into_bytes()]),
        _ => DnsAnswer::NxDomain,
    }
}

fn verify(msg: &[u8]) -> Vec<DkimOutput> {
    verify_message(msg, VerifyOptions::at(NOW + 10), dns)
}

const MESSAGE: &[u8] = b"From: Alice <alice@example.com>\r\n\
To: Bob <bob@example.net>\r\n\
Subject: Lunch\r\n\
Date: Thu, 26 Nov 2026 11:00:00 +0000\r\n\
Message-ID: <1@example.com>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
Shall we meet at  noon?\r\n\
\r\n\
Alice\r\n";

fn dual_signed() -> Vec<u8> {
    sign_message(&[rsa_signer(), ed_signer()], MESSAGE, NOW).unwrap()
}

fn crlf_to_lf(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len());
    for (i, &b) in msg.iter().enumerate() {
        if !(b == b'\r' && msg.get(i + 1) == Some(&b'\n')) {
            out.push(b);
        }
    }
    out
}

fn results(out: &[DkimOutput]) -> Vec<DkimResult> {
    out.iter().map(|o| o.result).collect()
}

#[test]
fn dual_signature_passes() {
    let signed = dual_signed();
    let text = String::from_utf8(signed.clone()).unwrap();
    // Folded, no line over 78 columns, over-signed From, no l=.
    assert!(text.lines().all(|l| l.len() <= 78), "{text}");
    assert!(text.contains("h=from:from:"), "{text}");
    assert!(!text.contains("l="), "{text}");
    let out = verify(&signed);
    assert_eq!(
        results(&out),
        [DkimResult::Pass, DkimResult::Pass],
        "{out:#?}"
    );
    assert_eq!(out[0].key_bits, Some(2048));
    assert_eq!(out[0].domain.as_deref(), Some(DOMAIN));
}

#[test]
fn every_canonicalization_round_trips_on_hamlet() {
    use Canonicalization::*;
    let hamlet = scop_hamlet::Hamlet::new(7, scop_hamlet::Config::default());
    let mut n = 0;
    for i in 0..40 {
        let msg = hamlet.message(i);
        for (h, b) in [
            (Simple, Simple),
            (Simple, Relaxed),
            (Relaxed, Simple),
            (Relaxed, Relaxed),
        ] {
            let signers = [
                rsa_signer().with_canonicalization(h, b),
                ed_signer().with_canonicalization(h, b),
            ];
            let signed = sign_message(&signers, &msg, NOW).unwrap();
            let out = verify(&signed);
            assert_eq!(
                results(&out),
                [DkimResult::Pass; 2],
                "message {i} {h:?}/{b:?}: {out:#?}"
            );
            // LF-only storage of the same message verifies too.
            let lf = crlf_to_lf(&signed);
            let out = verify(&lf);
            assert_eq!(
                results(&out),
                [DkimResult::Pass; 2],
                "LF {i} {h:?}/{b:?}: {out:#?}"
            );
            n += 1;
        }
    }
    assert_eq!(n, 160);
}

#[test]
fn streaming_verifier_matches_one_shot() {
    let signed = dual_signed();
    let split = scop_dkim::header::split_header(&signed).body_offset;
    let mut v = Verifier::new(&signed[..split], VerifyOptions::at(NOW));
    let queries = v.key_queries();
    assert_eq!(
        queries,
        ["rsa._domainkey.example.com", "ed._domainkey.example.com"]
    );
    for chunk in signed[split..].chunks(3) {
        v.update_body(chunk);
    }
    for q in queries {
        v.answer(&q, dns(&q));
    }
    assert_eq!(results(&v.finish()), [DkimResult::Pass; 2]);
}

#[test]
fn unsigned_message_is_none() {
    let out = verify(MESSAGE);
    assert_eq!(results(&out), [DkimResult::None]);
    assert_eq!(out[0].reason, Reason::NoSignature);
}

#[test]
fn attack_second_from_added() {
    let signed = dual_signed();
    // Added at the top (before the signatures) and at the bottom of the header.
    let mut top = b"From: Mallory <m@evil.example>\r\n".to_vec();
    top.extend_from_slice(&signed);
    let bottom = String::from_utf8(signed).unwrap().replacen(
        "\r\n\r\n",
        "\r\nFrom: Mallory <m@evil.example>\r\n\r\n",
        1,
    );
    for msg in [top, bottom.into_bytes()] {
        let out = verify(&msg);
        assert_eq!(results(&out), [DkimResult::Fail; 2], "{out:#?}");
        assert!(out.iter().all(|o| o.reason == Reason::SignatureMismatch));
    }
}

#[test]
fn attack_modified_body_and_header() {
    let text = String::from_utf8(dual_signed()).unwrap();
    let body = text.replace("noon", "midnight");
    let out = verify(body.as_bytes());
    assert_eq!(results(&out), [DkimResult::Fail; 2]);
    assert!(out.iter().all(|o| o.reason == Reason::BodyHashMismatch));
    let header = text.replace("Subject: Lunch", "Subject: Dinner");
    let out = verify(header.as_bytes());
    assert_eq!(results(&out), [DkimResult::Fail; 2]);
    assert!(out.iter().all(|o| o.reason == Reason::SignatureMismatch));
    // Relaxed canonicalization tolerates whitespace changes only.
    let ws = text.replace("Subject: Lunch", "Subject:   Lunch ");
    assert_eq!(results(&verify(ws.as_bytes())), [DkimResult::Pass; 2]);
}

#[test]
fn attack_header_injection_through_folding() {
    let text = String::from_utf8(dual_signed()).unwrap();
    // A folded continuation smuggling a From into the signed Subject.
    let folded = text.replace(
        "Subject: Lunch\r\n",
        "Subject: Lunch\r\n From: m@evil.example\r\n",
    );
    // A bare CR, which some parsers take as a line end: content for us.
    let bare_cr = text.replace(
        "Subject: Lunch\r\n",
        "Subject: Lunch\rFrom: m@evil.example\r\n",
    );
    // A bare LF inside a value becomes a line end: a new, unsigned field.
    let bare_lf = text.replace(
        "Subject: Lunch\r\n",
        "Subject: Lunch\nFrom: m@evil.example\r\n",
    );
    for msg in [folded, bare_cr, bare_lf] {
        let out = verify(msg.as_bytes());
        assert_eq!(results(&out), [DkimResult::Fail; 2], "{msg}\n{out:#?}");
    }
}

#[test]
fn attack_short_key_is_permerror() {
    // A 512-bit key published for the selector (RFC 8301: under 1024 bits
    // is not acceptable): permerror, even before any signature check.
    let spki = "MFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBALIfnf9aWA1ltuDm48rURdRYVUfyp3yRjoeKgvYqIgoO1a6h5H0xDa52CLMKGINmZ+G6MBkktxCZ/kCLMqfOIYUCAwEAAQ==";
    let signed = sign_message(&[rsa_signer()], MESSAGE, NOW).unwrap();
    let out = verify_message(&signed, VerifyOptions::at(NOW), |_| {
        DnsAnswer::Txt(vec![format!("v=DKIM1; k=rsa; p={spki}").into_bytes()])
    });
    assert_eq!(results(&out), [DkimResult::PermError]);
    assert_eq!(out[0].reason, Reason::KeyTooShort(512));
}

#[test]
fn attack_dns_timeout_is_temperror_not_fail() {
    let out = verify_message(&dual_signed(), VerifyOptions::at(NOW), |_| {
        DnsAnswer::TempError
    });
    assert_eq!(results(&out), [DkimResult::TempError; 2]);
    assert!(out.iter().all(|o| o.reason == Reason::DnsTempError));
    let out = verify_message(&dual_signed(), VerifyOptions::at(NOW), |_| {
        DnsAnswer::NxDomain
    });
    assert_eq!(results(&out), [DkimResult::PermError; 2]);
    assert!(out.iter().all(|o| o.reason == Reason::KeyNotFound));
}

#[test]
fn attack_malformed_tags_are_permerror() {
    let text = String::from_utf8(sign_message(&[rsa_signer()], MESSAGE, NOW).unwrap()).unwrap();
    let cases: &[(&str, &str, Reason)] = &[
        (
            "v=1;",
            "v=2;",
            Reason::Signature(SignatureError::UnsupportedVersion),
        ),
        (
            "v=1;",
            "v=1; v=1;",
            Reason::Signature(scop_dkim::tags::TagError::Duplicate("v".into()).into()),
        ),
        (
            "a=rsa-sha256;",
            "a=rsa-md5;",
            Reason::Signature(SignatureError::UnsupportedAlgorithm),
        ),
        (
            "c=relaxed/relaxed;",
            "c=relaxed/fancy;",
            Reason::Signature(SignatureError::UnsupportedCanonicalization),
        ),
        (
            "d=example.com;",
            "",
            Reason::Signature(SignatureError::MissingTag("d")),
        ),
        (
            "d=example.com;",
            "d=exa mple..com;",
            Reason::Signature(SignatureError::BadValue("d")),
        ),
        (
            "t=",
            "t=x",
            Reason::Signature(SignatureError::BadValue("t")),
        ),
        (
            "h=from:from:",
            "h=to:to:",
            Reason::Signature(SignatureError::FromNotSigned),
        ),
        (
            "v=1;",
            "v=1; = ;",
            Reason::Signature(scop_dkim::tags::TagError::Malformed.into()),
        ),
        (
            "bh=",
            "bh=!!",
            Reason::Signature(SignatureError::BadValue("bh")),
        ),
    ];
    for (from, to, reason) in cases {
        let bad = text.replacen(from, to, 1);
        let out = verify(bad.as_bytes());
        assert_eq!(results(&out), [DkimResult::PermError], "{from} -> {to}");
        assert_eq!(&out[0].reason, reason, "{from} -> {to}");
    }
}

#[test]
fn attack_revoked_key() {
    let out = verify_message(&dual_signed(), VerifyOptions::at(NOW), |_| {
        DnsAnswer::Txt(vec![b"v=DKIM1; k=rsa; p=".to_vec()])
    });
    assert_eq!(results(&out), [DkimResult::PermError; 2]);
    assert!(out.iter().all(|o| o.reason == Reason::KeyRevoked));
}

#[test]
fn attack_expired_signature() {
    let signer = rsa_signer().with_expiration(3600);
    let signed = sign_message(&[signer], MESSAGE, NOW).unwrap();
    assert_eq!(
        results(&verify_message(&signed, VerifyOptions::at(NOW + 3599), dns)),
        [DkimResult::Pass]
    );
    let out = verify_message(&signed, VerifyOptions::at(NOW + 3601), dns);
    assert_eq!(results(&out), [DkimResult::PermError]);
    assert_eq!(out[0].reason, Reason::Expired);
    // And a timestamp far in the future.
    let out = verify_message(&signed, VerifyOptions::at(NOW - 10_000), dns);
    assert_eq!(out[0].reason, Reason::FutureTimestamp);
}

#[test]
fn attack_identity_outside_domain() {
    let signed = sign_message(
        &[rsa_signer().with_identity("news@mail.example.com").unwrap()],
        MESSAGE,
        NOW,
    )
    .unwrap();
    assert_eq!(results(&verify(&signed)), [DkimResult::Pass]);
    let text = String::from_utf8(signed).unwrap();
    let bad = text.replace("i=news@mail.example.com", "i=news@example.org");
    let out = verify(bad.as_bytes());
    assert_eq!(results(&out), [DkimResult::PermError]);
    assert_eq!(
        out[0].reason,
        Reason::Signature(SignatureError::IdentityNotInDomain)
    );
    // Signing side refuses it too.
    assert!(rsa_signer().with_identity("x@example.org").is_err());
    // t=s in the key: a subdomain identity is refused.
    let out = verify_message(text.as_bytes(), VerifyOptions::at(NOW), |_| {
        DnsAnswer::Txt(vec![format!("{}; t=s", keys().rsa_txt).into_bytes()])
    });
    assert_eq!(out[0].reason, Reason::StrictIdentity);
}

#[test]
fn key_record_constraints() {
    let signed = sign_message(&[rsa_signer()], MESSAGE, NOW).unwrap();
    let with = |extra: &str| {
        let rec = format!("{}{extra}", keys().rsa_txt);
        verify_message(&signed, VerifyOptions::at(NOW), move |_| {
            DnsAnswer::Txt(vec![rec.clone().into_bytes()])
        })
        .remove(0)
    };
    assert_eq!(with("; h=sha1").reason, Reason::HashNotAllowed);
    assert_eq!(with("; s=other").reason, Reason::ServiceNotEmail);
    assert_eq!(with("; unknown=tag").result, DkimResult::Pass);
    let testing = with("; t=y");
    assert_eq!(testing.result, DkimResult::Pass);
    assert!(testing.flags.testing);
    let ed_as_rsa = verify_message(&signed, VerifyOptions::at(NOW), |_| {
        DnsAnswer::Txt(vec![keys().ed_txt.clone().into_bytes()])
    });
    assert_eq!(ed_as_rsa[0].reason, Reason::KeyTypeMismatch);
    // A wrong key of the right type: the signature does not verify.
    let other = SigningKey::generate(KeyKind::Rsa2048)
        .unwrap()
        .dns_txt()
        .unwrap();
    let out = verify_message(&signed, VerifyOptions::at(NOW), |_| {
        DnsAnswer::Txt(vec![other.clone().into_bytes()])
    });
    assert_eq!(out[0].reason, Reason::SignatureMismatch);
    // Unparseable records are skipped when a good one follows.
    let out = verify_message(&signed, VerifyOptions::at(NOW), |_| {
        DnsAnswer::Txt(vec![
            b"garbage".to_vec(),
            keys().rsa_txt.clone().into_bytes(),
        ])
    });
    assert_eq!(out[0].result, DkimResult::Pass);
}

#[test]
fn signing_requires_from() {
    let err = rsa_signer()
        .sign(b"To: x@y\r\n\r\nbody\r\n", NOW)
        .unwrap_err();
    assert_eq!(err, scop_dkim::Error::NoFromHeader);
}

#[test]
fn key_files_round_trip() {
    let k = SigningKey::from_pem(&keys().ed_pem).unwrap();
    assert_eq!(k.to_pkcs8_pem().unwrap(), keys().ed_pem);
    let k = SigningKey::from_pem(&keys().rsa_pem).unwrap();
    assert_eq!(k.to_pkcs8_pem().unwrap(), keys().rsa_pem);
    assert!(SigningKey::from_pem("nope").is_err());
}

#[test]
fn rsa_4096_signs_and_verifies() {
    let key = SigningKey::generate(KeyKind::Rsa4096).unwrap();
    let txt = key.dns_txt().unwrap();
    let signer = Signer::new(key, DOMAIN, "big").unwrap();
    let signed = sign_message(&[signer], MESSAGE, NOW).unwrap();
    let out = verify_message(&signed, VerifyOptions::at(NOW), |_| {
        DnsAnswer::Txt(vec![txt.clone().into_bytes()])
    });
    assert_eq!(results(&out), [DkimResult::Pass]);
    assert_eq!(out[0].key_bits, Some(4096));
}

#[test]
fn several_signatures_each_judged() {
    // A good RSA signature, a broken Ed25519 one (key revoked) and a
    // malformed third: three verdicts, in header order.
    let mut signed = b"DKIM-Signature: v=1; a=rsa-sha256\r\n".to_vec();
    signed.extend_from_slice(&dual_signed());
    let out = verify_message(&signed, VerifyOptions::at(NOW), |name| {
        if name.starts_with("ed.") {
            DnsAnswer::Txt(vec![b"v=DKIM1; k=ed25519; p=".to_vec()])
        } else {
            dns(name)
        }
    });
    assert_eq!(
        results(&out),
        [
            DkimResult::PermError,
            DkimResult::Pass,
            DkimResult::PermError
        ]
    );
    assert_eq!(out[2].reason, Reason::KeyRevoked);
}
