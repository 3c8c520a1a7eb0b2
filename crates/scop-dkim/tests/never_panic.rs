//! Property tests: parsers never panic on arbitrary bytes; the streaming
//! body hash does not depend on chunking; signing then verifying passes for
//! arbitrary bodies and header values.

use proptest::prelude::*;
use scop_dkim::{
    BodyHasher, Canonicalization, DkimResult, DnsAnswer, HashAlgorithm, KeyKind, Signer,
    SigningKey, VerifyOptions, sign_message, verify_message,
};
use std::sync::OnceLock;

fn ed() -> &'static (String, String) {
    static KEY: OnceLock<(String, String)> = OnceLock::new();
    KEY.get_or_init(|| {
        let k = SigningKey::generate(KeyKind::Ed25519).unwrap();
        (k.to_pkcs8_pem().unwrap(), k.dns_txt().unwrap())
    })
}

/// Bytes biased towards the characters DKIM parsers care about.
fn dkimish() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![
            any::<u8>(),
            Just(b';'),
            Just(b'='),
            Just(b':'),
            Just(b' '),
            Just(b'\t'),
            Just(b'\r'),
            Just(b'\n'),
            Just(b'a'),
            Just(b'b'),
            Just(b'h'),
        ],
        0..400,
    )
}

/// RFC 6376 sections 3.4.3 and 3.4.4, written the obvious way: split into
/// lines (LF, with an optional CR before it), canonicalize each, drop
/// trailing empty lines, end with CRLF; the empty body rules.
fn reference(canon: Canonicalization, body: &[u8]) -> Vec<u8> {
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (line, next) = match rest.iter().position(|&c| c == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &b""[..]),
        };
        let terminated = rest.len() > line.len();
        let line = if terminated {
            line.strip_suffix(b"\r").unwrap_or(line)
        } else {
            line
        };
        lines.push(line.to_vec());
        rest = next;
    }
    let lines: Vec<Vec<u8>> = lines
        .into_iter()
        .map(|l| match canon {
            Canonicalization::Simple => l,
            Canonicalization::Relaxed => {
                let mut out = Vec::new();
                let mut ws = false;
                for &c in &l {
                    if c == b' ' || c == b'\t' {
                        ws = true;
                    } else {
                        if ws {
                            out.push(b' ');
                        }
                        ws = false;
                        out.push(c);
                    }
                }
                out
            }
        })
        .collect();
    let keep = lines
        .iter()
        .rposition(|l| !l.is_empty())
        .map_or(0, |i| i + 1);
    let mut out = Vec::new();
    for l in &lines[..keep] {
        out.extend_from_slice(l);
        out.extend_from_slice(b"\r\n");
    }
    if out.is_empty() && canon == Canonicalization::Simple {
        out.extend_from_slice(b"\r\n");
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parsers_never_panic(data in dkimish()) {
        scop_dkim::fuzz::parse_signature(&data);
        scop_dkim::fuzz::verify_message(&data);
        let _ = scop_dkim::header::split_header(&data);
    }

    #[test]
    fn signature_field_prefix_never_panics(tags in dkimish()) {
        let mut msg = b"DKIM-Signature: v=1; a=ed25519-sha256; d=x.example; s=s; h=from; ".to_vec();
        msg.extend_from_slice(&tags);
        msg.extend_from_slice(b"\r\nFrom: a@x.example\r\n\r\nbody\r\n");
        scop_dkim::fuzz::verify_message(&msg);
    }

    #[test]
    fn body_hash_ignores_chunking(body in dkimish(), cuts in proptest::collection::vec(any::<usize>(), 0..8)) {
        for canon in [Canonicalization::Simple, Canonicalization::Relaxed] {
            let mut whole = BodyHasher::new(canon, HashAlgorithm::Sha256, None);
            whole.update(&body);
            let whole = whole.finish();
            let mut points: Vec<usize> = cuts.iter().map(|c| c % (body.len() + 1)).collect();
            points.sort_unstable();
            let mut h = BodyHasher::new(canon, HashAlgorithm::Sha256, None);
            let mut at = 0;
            for p in points {
                h.update(&body[at..p]);
                at = p;
            }
            h.update(&body[at..]);
            prop_assert_eq!(h.finish(), whole);
        }
    }

    #[test]
    fn streaming_matches_reference(body in dkimish()) {
        for canon in [Canonicalization::Simple, Canonicalization::Relaxed] {
            prop_assert_eq!(
                scop_dkim::canon::canonical_body(canon, &body),
                reference(canon, &body),
                "{:?}", canon
            );
        }
    }

    #[test]
    fn sign_then_verify(subject in "[ -~]{0,120}", body in dkimish(), relaxed in any::<(bool, bool)>()) {
        let c = |r: bool| if r { Canonicalization::Relaxed } else { Canonicalization::Simple };
        let signer = Signer::new(SigningKey::from_pem(&ed().0).unwrap(), "x.example", "s")
            .unwrap()
            .with_canonicalization(c(relaxed.0), c(relaxed.1));
        let mut msg = format!("From: a@x.example\r\nSubject: {subject}\r\n\r\n").into_bytes();
        msg.extend_from_slice(&body);
        let signed = sign_message(&[signer], &msg, 1_000).unwrap();
        let out = verify_message(&signed, VerifyOptions::at(1_000), |_| {
            DnsAnswer::Txt(vec![ed().1.clone().into_bytes()])
        });
        prop_assert_eq!(out.len(), 1);
        prop_assert_eq!(out[0].result, DkimResult::Pass, "{:?}", out);
    }
}
