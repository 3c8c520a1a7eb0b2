//! Throughput of the body hash and sign/verify rates:
//! `cargo run --release -p scop-dkim --example bench`.

use scop_dkim::{
    BodyHasher, Canonicalization, DnsAnswer, HashAlgorithm, KeyKind, Signer, SigningKey,
    VerifyOptions, sign_message, verify_message,
};
use std::time::{Duration, Instant};

fn body(size: usize) -> Vec<u8> {
    text(
        size,
        b"To be, or not to be,  that is the question:\tWhether 'tis nobler in the mind \r\n",
    )
}

fn text(size: usize, line: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + line.len());
    while out.len() < size {
        out.extend_from_slice(line);
    }
    out
}

fn rate(name: &str, mut f: impl FnMut()) {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(2) {
        f();
        n += 1;
    }
    println!(
        "{name:<28} {:>10.0} /s",
        n as f64 / start.elapsed().as_secs_f64()
    );
}

fn main() {
    let data = body(512 << 20);
    let plain = text(
        512 << 20,
        b"To be, or not to be, that is the question: Whether 'tis nobler in the mind to\r\n",
    );
    for (name, canon, data) in [
        ("relaxed + sha256", Canonicalization::Relaxed, &data),
        (
            "relaxed + sha256 (plain)",
            Canonicalization::Relaxed,
            &plain,
        ),
        ("simple + sha256", Canonicalization::Simple, &data),
    ] {
        let start = Instant::now();
        let mut h = BodyHasher::new(canon, HashAlgorithm::Sha256, None);
        for chunk in data.chunks(64 << 10) {
            h.update(chunk);
        }
        let _ = std::hint::black_box(h.finish());
        let secs = start.elapsed().as_secs_f64();
        println!(
            "body hash {name:<25} {:>6.0} MB/s",
            data.len() as f64 / secs / 1e6
        );
    }
    let start = Instant::now();
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for chunk in data.chunks(64 << 10) {
        ctx.update(chunk);
    }
    let _ = std::hint::black_box(ctx.finish());
    println!(
        "raw sha256 (aws-lc, reference) {:>6.0} MB/s",
        data.len() as f64 / start.elapsed().as_secs_f64() / 1e6
    );
    // Canonicalization alone: with a limit of 0 nothing is hashed.
    for (name, data) in [("whitespace-heavy", &data), ("plain", &plain)] {
        let start = Instant::now();
        let mut h = BodyHasher::new(Canonicalization::Relaxed, HashAlgorithm::Sha256, Some(0));
        for chunk in data.chunks(64 << 10) {
            h.update(chunk);
        }
        let _ = std::hint::black_box(h.finish());
        println!(
            "relaxed canon only, {name:<16} {:>6.0} MB/s",
            data.len() as f64 / start.elapsed().as_secs_f64() / 1e6
        );
    }

    let mut msg = b"From: a@example.com\r\nTo: b@example.net\r\nSubject: bench\r\n\
Date: Thu, 26 Nov 2026 12:00:00 +0000\r\nMessage-ID: <1@example.com>\r\n\r\n"
        .to_vec();
    msg.extend_from_slice(&body(2000));
    for (name, kind) in [
        ("RSA-2048", KeyKind::Rsa2048),
        ("Ed25519", KeyKind::Ed25519),
    ] {
        let key = SigningKey::generate(kind).unwrap();
        let txt = key.dns_txt().unwrap().into_bytes();
        let signer = Signer::new(key, "example.com", "s").unwrap();
        rate(&format!("sign {name} (2 KB msg)"), || {
            std::hint::black_box(sign_message(std::slice::from_ref(&signer), &msg, 1).unwrap());
        });
        let signed = sign_message(&[signer], &msg, 1).unwrap();
        rate(&format!("verify {name} (2 KB msg)"), || {
            let out = verify_message(&signed, VerifyOptions::at(2), |_| {
                DnsAnswer::Txt(vec![txt.clone()])
            });
            assert_eq!(out[0].result, scop_dkim::DkimResult::Pass);
        });
    }
}
