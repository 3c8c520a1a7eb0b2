//! RFC 8463 Appendix A: the Ed25519 and RSA signatures of the example
//! message, read at test time from dkimpy's source distribution
//! (`target/peers/dkimpy-src/dkim/tests/data/`, installed by
//! `cargo xtask peers`).

use scop_dkim::{Algorithm, DkimResult, DnsAnswer, VerifyOptions, verify_message};

fn data(name: &str) -> Vec<u8> {
    let path = scop_testkit::peer_path(&format!("dkimpy-src/dkim/tests/data/{name}"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn dns(name: &str) -> DnsAnswer {
    match name {
        // RFC 8463 Appendix A.2.
        "brisbane._domainkey.football.example.com" => DnsAnswer::Txt(vec![
            b"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=".to_vec(),
        ]),
        "test._domainkey.football.example.com" => {
            DnsAnswer::Txt(vec![data("test.txt").trim_ascii().to_vec()])
        }
        _ => DnsAnswer::NxDomain,
    }
}

#[test]
fn appendix_a_signed_message_verifies() {
    let msg = data("rfc6376.signed.msg");
    let out = verify_message(&msg, VerifyOptions::at(1_700_000_000), dns);
    assert_eq!(out.len(), 2, "{out:#?}");
    assert_eq!(out[0].algorithm, Some(Algorithm::Ed25519Sha256));
    assert_eq!(out[0].result, DkimResult::Pass, "{out:#?}");
    assert_eq!(out[1].algorithm, Some(Algorithm::RsaSha256));
    assert_eq!(out[1].result, DkimResult::Pass, "{out:#?}");
    assert_eq!(out[1].key_bits, Some(1024));
    assert_eq!(out[0].domain.as_deref(), Some("football.example.com"));
    assert_eq!(out[0].selector.as_deref(), Some("brisbane"));
}

#[test]
fn appendix_a_tampered_fails() {
    let msg = data("rfc6376.signed.msg");
    let text = String::from_utf8(msg).unwrap();
    let body = text.replace("We lost the game.", "We won the game.");
    let out = verify_message(body.as_bytes(), VerifyOptions::at(1_700_000_000), dns);
    assert!(out.iter().all(|o| o.result == DkimResult::Fail), "{out:#?}");
    let subject = text.replace("Is dinner ready?", "Is lunch ready?");
    let out = verify_message(subject.as_bytes(), VerifyOptions::at(1_700_000_000), dns);
    assert!(out.iter().all(|o| o.result == DkimResult::Fail), "{out:#?}");
}
