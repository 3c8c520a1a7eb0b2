//! Every named limit: exceeding it gives a diagnostic (or, for the total
//! size, a `ParseError`), a best-effort tree, and the round-trip contract
//! still holds.

use scop_mime::limits::*;
use scop_mime::{Body, DiagnosticKind, ParseError, fuzz, parse};

fn kinds(input: &[u8]) -> Vec<DiagnosticKind> {
    parse(input)
        .expect("parses")
        .diagnostics
        .iter()
        .map(|d| d.kind)
        .collect()
}

#[test]
fn too_large_is_an_error() {
    let big = vec![b'a'; MAX_MESSAGE_SIZE + 1];
    assert_eq!(
        parse(&big).err(),
        Some(ParseError::TooLarge {
            size: MAX_MESSAGE_SIZE + 1,
            limit: MAX_MESSAGE_SIZE
        })
    );
}

#[test]
fn too_many_parts() {
    let mut m = b"Content-Type: multipart/mixed; boundary=p\n\n".to_vec();
    for i in 0..MAX_PARTS + 50 {
        m.extend_from_slice(format!("--p\n\npart {i}\n").as_bytes());
    }
    m.extend_from_slice(b"--p--\n");
    let p = parse(&m).expect("parses");
    assert!(
        p.diagnostics
            .iter()
            .any(|d| d.kind == DiagnosticKind::TooManyParts)
    );
    let Body::Multipart(mp) = p.message.body() else {
        panic!("multipart")
    };
    assert_eq!(mp.parts().len(), MAX_PARTS);
    assert!(
        mp.epilogue()
            .starts_with(format!("--p\r\n\r\npart {MAX_PARTS}").as_bytes())
    );
    fuzz::round_trip(&m);
}

#[test]
fn too_many_parts_nested() {
    // The limit is global: the second multipart keeps everything in its
    // epilogue.
    let mut m = b"Content-Type: multipart/mixed; boundary=o\n\n--o\nContent-Type: multipart/mixed; boundary=i\n\n".to_vec();
    for _ in 0..MAX_PARTS {
        m.extend_from_slice(b"--i\n\nx\n");
    }
    m.extend_from_slice(
        b"--i--\n--o\nContent-Type: multipart/mixed; boundary=j\n\npre\n--j\n\ny\n--j--\n--o--\n",
    );
    assert!(kinds(&m).contains(&DiagnosticKind::TooManyParts));
    fuzz::round_trip(&m);
}

#[test]
fn too_many_headers() {
    let mut m = Vec::new();
    for i in 0..MAX_HEADERS + 10 {
        m.extend_from_slice(format!("X-H{i}: v\n").as_bytes());
    }
    m.extend_from_slice(b"\nbody\n");
    let p = parse(&m).expect("parses");
    assert_eq!(p.message.headers().len(), MAX_HEADERS);
    assert!(
        p.diagnostics
            .iter()
            .any(|d| d.kind == DiagnosticKind::TooManyHeaders)
    );
    fuzz::round_trip(&m);
}

#[test]
fn too_many_headers_in_total() {
    let per = MAX_HEADERS - 1;
    let parts = MAX_TOTAL_HEADERS / per + 2;
    let mut m = b"Content-Type: multipart/mixed; boundary=p\n\n".to_vec();
    for _ in 0..parts {
        m.extend_from_slice(b"--p\n");
        for i in 0..per {
            m.extend_from_slice(format!("X-{i}: v\n").as_bytes());
        }
        m.extend_from_slice(b"\nbody\n");
    }
    m.extend_from_slice(b"--p--\n");
    let p = parse(&m).expect("parses");
    let mut total = 0;
    p.message.walk(&mut |e| total += e.headers().len());
    assert_eq!(total, MAX_TOTAL_HEADERS);
    assert!(
        p.diagnostics
            .iter()
            .any(|d| d.kind == DiagnosticKind::TooManyHeaders)
    );
    fuzz::round_trip(&m);
}

#[test]
fn too_deep() {
    let mut m = Vec::new();
    for _ in 0..MAX_DEPTH + 5 {
        m.extend_from_slice(b"Content-Type: message/rfc822\n\n");
    }
    m.extend_from_slice(b"Subject: bottom\n\nx\n");
    let p = parse(&m).expect("parses");
    assert!(
        p.diagnostics
            .iter()
            .any(|d| d.kind == DiagnosticKind::TooDeep)
    );
    let mut depth = 0;
    let mut cur = &p.message;
    while let Body::Message(inner) = cur.body() {
        depth += 1;
        cur = inner;
    }
    assert_eq!(depth, MAX_DEPTH);
    fuzz::round_trip(&m);
}

#[test]
fn long_lines_and_large_headers_are_reported_and_kept() {
    let mut m = b"Subject: ".to_vec();
    m.extend(std::iter::repeat_n(b'x', MAX_HEADER_SIZE + 10));
    m.extend_from_slice(b"\n\nbody\n");
    let k = kinds(&m);
    assert!(k.contains(&DiagnosticKind::LineTooLong));
    assert!(k.contains(&DiagnosticKind::HeaderTooLarge));
    let p = parse(&m).expect("parses");
    assert_eq!(
        p.message.headers()[0].raw_value().len(),
        MAX_HEADER_SIZE + 11
    );
    fuzz::round_trip(&m);
}

#[test]
fn diagnostics_are_bounded() {
    let mut m = b"Content-Type: multipart/mixed; boundary=p\n\n".to_vec();
    for _ in 0..MAX_DIAGNOSTICS * 2 {
        m.extend_from_slice(b"--p\nContent-Transfer-Encoding: base64\n\n!!\n");
    }
    let p = parse(&m).expect("parses");
    assert_eq!(p.diagnostics.len(), MAX_DIAGNOSTICS);
}

#[test]
fn long_boundary_is_not_a_boundary() {
    let b = "b".repeat(MAX_BOUNDARY_LENGTH + 1);
    let m = format!("Content-Type: multipart/mixed; boundary={b}\n\n--{b}\n\nx\n--{b}--\n");
    assert!(kinds(m.as_bytes()).contains(&DiagnosticKind::MissingBoundary));
    fuzz::round_trip(m.as_bytes());
}

#[test]
fn parameter_sections_are_bounded() {
    let mut v = String::from("Content-Type: text/plain");
    for i in 0..MAX_PARAM_SECTIONS + 20 {
        v.push_str(&format!("; name*{i}=a"));
    }
    v.push_str("\n\nx\n");
    let p = parse(v.as_bytes()).expect("parses");
    assert_eq!(
        p.message.content_type().param("name").map(str::len),
        Some(MAX_PARAM_SECTIONS)
    );
    fuzz::round_trip(v.as_bytes());
}

#[test]
fn pathological_inputs_stay_fast() {
    // Many encoded-word starts, many parameters, many comment openers and
    // boundary-like lines: each must parse in linear-ish time.
    let start = std::time::Instant::now();
    let mut m = b"Subject: ".to_vec();
    m.extend(b"=?a?q?".iter().cycle().take(60_000));
    m.extend_from_slice(b"\nContent-Type: text/plain");
    for i in 0..5_000 {
        m.extend_from_slice(format!(";p{i}=v").as_bytes());
    }
    m.extend_from_slice(b"\nFrom: ");
    m.extend(std::iter::repeat_n(b'(', 50_000));
    m.extend_from_slice(b"\n\n");
    fuzz::parse(&m);
    let mut mp = b"Content-Type: multipart/mixed; boundary=a\n\n".to_vec();
    for _ in 0..100_000 {
        mp.extend_from_slice(b"--a-\n--ab\n");
    }
    fuzz::parse(&mp);
    fuzz::round_trip(&mp);
    assert!(start.elapsed().as_secs() < 20, "took {:?}", start.elapsed());
}
