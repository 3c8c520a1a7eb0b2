//! Failure reports (RFC 7489 section 7.3, RFC 6591) built from a real
//! evaluation, read back by scop-mime and by Python's `email` package (the
//! venv peer).

use std::process::Command;

use scop_dkim::DkimResult;
use scop_dmarc::failure::{MAX_FIELD_VALUE_LEN, MAX_REPORTED_HEADERS_LEN, MAX_SUBJECT_LEN};
use scop_dmarc::{
    AuthorDomain, DkimAuth, DmarcOutput, DmarcResult, DnsAnswer, FailureReport, Input, Options,
    Query, Resolver, SpfAuth, SpfScope, evaluate_with, should_report,
};
use scop_mime::{Body, DateTime, Message};
use scop_spf::SpfResult;

struct Dns;

impl Resolver for Dns {
    fn lookup(&self, q: &Query) -> DnsAnswer {
        if q.name == "_dmarc.example.com" {
            DnsAnswer::Records(vec![
                b"v=DMARC1; p=reject; fo=1:d; ruf=mailto:ruf@example.com".to_vec(),
            ])
        } else {
            DnsAnswer::NxDomain
        }
    }
}

const ORIGINAL: &[u8] = b"Received: from mx.evil.example by mx.receiver.example\r\n\
From: Alice <alice@example.com>\r\n\
To: bob@receiver.example\r\n\
Subject: Earn money\r\n\
Message-ID: <orig-1@evil.example>\r\n\
\r\n\
Secret body text that must not be reported.\r\n";

fn evaluation() -> Input {
    Input {
        from: AuthorDomain::One("example.com".into()),
        spf: Some(SpfAuth {
            result: SpfResult::Fail,
            domain: "evil.example".into(),
            scope: SpfScope::MailFrom,
        }),
        dkim: vec![DkimAuth {
            result: DkimResult::Fail,
            domain: "example.com".into(),
            selector: Some("sel1".into()),
        }],
    }
}

fn report<'a>(out: &'a DmarcOutput, input: &'a Input, headers: &'a [u8]) -> FailureReport<'a> {
    FailureReport {
        reporter_domain: "receiver.example",
        report_from: "dmarc-noreply@receiver.example",
        report_to: "ruf@example.com",
        date: DateTime::from_unix_timestamp(1_750_000_000),
        message_id_nonce: "fr-0001",
        mail_from: "bounce@evil.example",
        arrival_date: DateTime::from_unix_timestamp(1_749_999_000),
        source_ip: "192.0.2.7".parse().unwrap(),
        message_headers: headers,
        output: out,
        spf: input.spf.as_ref(),
        dkim: &input.dkim,
        delivery_result: None,
    }
}

fn parts<'m, 'a>(m: &'m Message<'a>) -> &'m [Message<'a>] {
    match m.body() {
        Body::Multipart(mp) => mp.parts(),
        _ => panic!("not multipart"),
    }
}

fn leaf_text(m: &Message<'_>) -> String {
    match m.body() {
        Body::Leaf(l) => String::from_utf8(l.decoded().to_vec()).unwrap(),
        Body::Message(inner) => String::from_utf8(inner.raw().to_vec()).unwrap(),
        Body::Multipart(_) => panic!("multipart"),
    }
}

fn field_names(feedback: &str) -> Vec<String> {
    feedback
        .split("\r\n")
        .filter(|l| !l.is_empty() && !l.starts_with(' '))
        .map(|l| l.split(':').next().unwrap().to_string())
        .collect()
}

#[test]
fn evaluation_asks_for_a_report_and_it_parses() {
    let input = evaluation();
    let out = evaluate_with(&Dns, input.clone(), Options::default());
    assert_eq!(out.result, DmarcResult::Fail);
    let record = out.record.clone().unwrap();
    assert!(should_report(
        &record.fo,
        &out,
        input.spf.as_ref(),
        &input.dkim
    ));
    assert_eq!(record.ruf.len(), 1);

    let bytes = report(&out, &input, ORIGINAL).build();
    assert!(bytes.is_ascii());
    for line in bytes.split(|&b| b == b'\n') {
        assert!(line.is_empty() || line.ends_with(b"\r"), "bare LF");
    }
    let parsed = scop_mime::parse(&bytes).unwrap();
    assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
    let m = &parsed.message;
    let ct = m.content_type();
    assert_eq!(ct.mime_type, "multipart/report");
    assert_eq!(ct.param("report-type"), Some("feedback-report"));
    assert_eq!(m.header("Subject").unwrap().text(), "FW: Earn money");
    assert_eq!(
        m.header("Message-ID").unwrap().message_ids(),
        vec!["fr-0001@receiver.example".to_string()]
    );
    let p = parts(m);
    assert_eq!(p.len(), 3);
    assert_eq!(p[0].content_type().mime_type, "text/plain");
    assert_eq!(p[1].content_type().mime_type, "message/feedback-report");
    assert_eq!(p[2].content_type().mime_type, "text/rfc822-headers");

    let feedback = leaf_text(&p[1]);
    for needed in [
        "Feedback-Type: auth-failure\r\n",
        "Version: 1\r\n",
        "Original-Mail-From: <bounce@evil.example>\r\n",
        "Source-IP: 192.0.2.7\r\n",
        "Reported-Domain: example.com\r\n",
        "Auth-Failure: dmarc\r\n",
        "Identity-Alignment: none\r\n",
        "Delivery-Result: reject\r\n",
        "DKIM-Domain: example.com\r\n",
        "DKIM-Selector: sel1\r\n",
        "Authentication-Results: receiver.example;\r\n dmarc=fail header.from=example.com;\r\n \
         spf=fail smtp.mailfrom=evil.example;\r\n dkim=fail header.d=example.com header.s=sel1\r\n",
    ] {
        assert!(
            feedback.contains(needed),
            "missing {needed:?} in\n{feedback}"
        );
    }
    assert!(feedback.contains("Arrival-Date: "));
    assert!(feedback.contains("User-Agent: scop-dmarc/"));

    let headers = leaf_text(&p[2]);
    assert!(headers.contains("Subject: Earn money\r\n"));
    assert!(headers.contains("Message-ID: <orig-1@evil.example>"));
    assert!(!String::from_utf8_lossy(&bytes).contains("Secret body"));
}

#[test]
fn aligned_pass_gives_alignment_and_no_dkim_fields() {
    let mut input = evaluation();
    input.dkim[0].result = DkimResult::Pass;
    let out = evaluate_with(&Dns, input.clone(), Options::default());
    assert_eq!(out.result, DmarcResult::Pass);
    let record = out.record.clone().unwrap();
    // fo=1: SPF did not produce an aligned pass.
    assert!(should_report(
        &record.fo,
        &out,
        input.spf.as_ref(),
        &input.dkim
    ));
    let bytes = report(&out, &input, ORIGINAL).build();
    let parsed = scop_mime::parse(&bytes).unwrap();
    let feedback = leaf_text(&parts(&parsed.message)[1]);
    assert!(
        feedback.contains("Identity-Alignment: dkim\r\n"),
        "{feedback}"
    );
    assert!(feedback.contains("Delivery-Result: delivered\r\n"));
    assert!(!feedback.contains("DKIM-Domain"));
    assert!(!feedback.contains("DKIM-Selector"));
}

#[test]
fn python_email_reads_the_report() {
    let input = evaluation();
    let out = evaluate_with(&Dns, input.clone(), Options::default());
    let bytes = report(&out, &input, ORIGINAL).build();
    let dir = std::env::temp_dir().join(format!("scop-dmarc-ruf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("report.eml");
    std::fs::write(&path, &bytes).unwrap();
    let script = r#"
import sys, email
from email import policy
with open(sys.argv[1], 'rb') as f:
    m = email.message_from_binary_file(f, policy=policy.default)
print(m.get_content_type())
print(m.get_param('report-type'))
parts = list(m.iter_parts())
print(len(parts))
print(parts[0].get_content_type())
print(parts[1].get_content_type())
print(parts[2].get_content_type())
fb = parts[1].get_payload()[0]
print(fb['Feedback-Type'])
print(fb['Reported-Domain'])
print(m['Subject'])
print(len(m.defects) + sum(len(p.defects) for p in parts))
"#;
    let run = Command::new(scop_testkit::python())
        .arg("-c")
        .arg(script)
        .arg(&path)
        .output()
        .expect("run python");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let text = String::from_utf8(run.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "multipart/report",
            "feedback-report",
            "3",
            "text/plain",
            "message/feedback-report",
            "text/rfc822-headers",
            "auth-failure",
            "example.com",
            "FW: Earn money",
            "0",
        ]
    );
}

#[test]
fn injection_in_selector_and_domain_adds_no_field() {
    let mut input = evaluation();
    input.dkim[0].selector = Some("sel\r\nBcc: victim@example.net".into());
    input.dkim[0].domain = "example.com\nX-Injected: 1".into();
    let mut out = evaluate_with(&Dns, evaluation(), Options::default());
    out.header_from = Some("example.com\r\n\r\nContent-Type: text/html".into());
    let bytes = report(&out, &input, ORIGINAL).build();
    for line in bytes.split(|&b| b == b'\n') {
        for bad in [&b"Bcc:"[..], b"X-Injected:", b"Content-Type: text/html"] {
            assert!(!line.starts_with(bad), "{}", line.escape_ascii());
        }
    }
    let parsed = scop_mime::parse(&bytes).unwrap();
    assert!(parsed.message.header("Bcc").is_none());
    let p = parts(&parsed.message);
    assert_eq!(p.len(), 3);
    let feedback = leaf_text(&p[1]);
    assert_eq!(
        field_names(&feedback),
        [
            "Feedback-Type",
            "User-Agent",
            "Version",
            "Original-Mail-From",
            "Arrival-Date",
            "Source-IP",
            "Reported-Domain",
            "Authentication-Results",
            "Auth-Failure",
            "Identity-Alignment",
            "Delivery-Result",
            "DKIM-Domain",
            "DKIM-Selector",
        ]
    );
    assert!(feedback.contains("DKIM-Selector: sel  Bcc: victim@example.net\r\n"));
}

#[test]
fn sizes_are_bounded() {
    let input = Input {
        from: AuthorDomain::One("example.com".into()),
        spf: None,
        dkim: vec![
            DkimAuth {
                result: DkimResult::Fail,
                domain: "d".repeat(10_000),
                selector: Some("s".repeat(10_000)),
            };
            3
        ],
    };
    let out = evaluate_with(&Dns, input.clone(), Options::default());
    let mut headers = format!("Subject: {}\r\n", "w ".repeat(5_000)).into_bytes();
    while headers.len() < 3 * MAX_REPORTED_HEADERS_LEN {
        headers.extend_from_slice(b"X-Filler: abcdefghijklmnopqrstuvwxyz\r\n");
    }
    let r = report(&out, &input, &headers);
    assert!(r.subject().chars().count() <= MAX_SUBJECT_LEN);
    let feedback = r.feedback_fields();
    for line in feedback.split("\r\n") {
        if let Some(v) = line
            .strip_prefix("DKIM-Domain: ")
            .or_else(|| line.strip_prefix("DKIM-Selector: "))
        {
            assert_eq!(v.len(), MAX_FIELD_VALUE_LEN);
        }
    }
    let bytes = r.build();
    let parsed = scop_mime::parse(&bytes).unwrap();
    let copied = leaf_text(&parts(&parsed.message)[2]);
    assert!(copied.len() <= MAX_REPORTED_HEADERS_LEN, "{}", copied.len());
    assert!(copied.len() > MAX_REPORTED_HEADERS_LEN / 2);
    assert!(copied.ends_with("\r\n"));
    assert!(bytes.len() < 2 * MAX_REPORTED_HEADERS_LEN);
    for line in bytes.split(|&b| b == b'\n') {
        assert!(line.len() <= 999, "line of {} bytes", line.len());
    }
    assert!(
        !String::from_utf8_lossy(&bytes).contains("Content-Transfer-Encoding: binary"),
        "every part stays within 998-character lines"
    );
}
