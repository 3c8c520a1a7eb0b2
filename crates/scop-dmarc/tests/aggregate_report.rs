//! Aggregate reports built from real evaluations, read back by Python's
//! `xml.etree.ElementTree` (the venv peer): the XML is well formed, every
//! escaped value comes back intact, and the counts add up.

use std::net::IpAddr;
use std::process::Command;

use scop_dkim::DkimResult;
use scop_dmarc::{
    AuthorDomain, DkimAuth, DnsAnswer, Input, Options, PolicyPublished, Query, Record,
    ReportBuilder, ReportMetadata, Resolver, Row, SpfAuth, SpfScope, evaluate_with,
};
use scop_spf::SpfResult;

struct Dns;

impl Resolver for Dns {
    fn lookup(&self, q: &Query) -> DnsAnswer {
        if q.name == "_dmarc.example.com" {
            DnsAnswer::Records(vec![
                b"v=DMARC1; p=reject; pct=50; rua=mailto:r@example.com".to_vec(),
            ])
        } else {
            DnsAnswer::NxDomain
        }
    }
}

#[test]
fn report_from_evaluations_reads_back() {
    let record = Record::parse("v=DMARC1; p=reject; pct=50; rua=mailto:r@example.com").unwrap();
    let mut builder = ReportBuilder::new(
        ReportMetadata {
            org_name: "Receiver <&> \"Org\"".into(),
            email: "dmarc-reports@receiver.example".into(),
            extra_contact_info: Some("https://receiver.example/dmarc?a=1&b=2".into()),
            report_id: "2025-06-16.1".into(),
            begin: 1_750_032_000,
            end: 1_750_118_400,
        },
        PolicyPublished::from_record("example.com", &record),
    );
    let mut total = 0u64;
    for i in 0..60u32 {
        let pass = i % 3 == 0;
        let input = Input {
            from: AuthorDomain::One("example.com".into()),
            spf: Some(SpfAuth {
                result: if pass {
                    SpfResult::Pass
                } else {
                    SpfResult::Fail
                },
                domain: "example.com".into(),
                scope: SpfScope::MailFrom,
            }),
            dkim: vec![DkimAuth {
                result: DkimResult::Fail,
                domain: "example.com".into(),
                selector: Some("s<1>".into()),
            }],
        };
        // Samples 0..99 spread over the messages: about half are sampled out.
        let out = evaluate_with(
            &Dns,
            input.clone(),
            Options::with_sample((i * 7 % 100) as u8),
        );
        let ip: IpAddr = format!("192.0.2.{}", i % 4).parse().unwrap();
        builder.add(Row::new(ip, &out, &input));
        total += 1;
    }
    assert_eq!(builder.message_count(), total);
    let xml = builder.to_xml();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("scop-dmarc-report");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("report.xml");
    std::fs::write(&path, &xml).unwrap();
    let script = r#"
import sys, xml.etree.ElementTree as E
root = E.parse(sys.argv[1]).getroot()
assert root.tag == 'feedback'
print(root.find('report_metadata/org_name').text)
print(root.find('report_metadata/extra_contact_info').text)
print(sum(int(r.find('row/count').text) for r in root.findall('record')))
print(len(root.findall('record')))
print(sorted({r.find('row/policy_evaluated/disposition').text for r in root.findall('record')}))
print(len(root.findall('record/row/policy_evaluated/reason')))
print(root.find('record/auth_results/dkim/selector').text)
"#;
    let out = Command::new(scop_testkit::python())
        .arg("-c")
        .arg(script)
        .arg(&path)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}\n{xml}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "Receiver <&> \"Org\"");
    assert_eq!(lines[1], "https://receiver.example/dmarc?a=1&b=2");
    assert_eq!(lines[2], total.to_string());
    assert_eq!(lines[3].parse::<usize>().unwrap(), builder.len());
    assert_eq!(lines[4], "['none', 'quarantine', 'reject']");
    assert!(
        lines[5].parse::<usize>().unwrap() > 0,
        "some rows are sampled out"
    );
    assert_eq!(lines[6], "s<1>");
}
