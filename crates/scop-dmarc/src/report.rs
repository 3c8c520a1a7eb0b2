//! Aggregate reports (RFC 7489 section 7.2 and appendix C, the XML
//! schema), built by hand.
//!
//! ```text
//!  ReportBuilder::new(metadata, policy_published)
//!      .add(Row { source_ip, DmarcOutput, SPF/DKIM verdicts })   many times
//!      .to_xml()  ->  <feedback> ... one <record> per distinct row, with count
//! ```
//!
//! Rows are grouped by everything a `<record>` shows (source IP,
//! disposition, DMARC evaluation, identifiers, authentication results);
//! the count is the number of messages. Output order is deterministic.

use std::collections::BTreeMap;
use std::net::IpAddr;

use scop_dkim::DkimResult;
use scop_spf::SpfResult;

use crate::MAX_REPORT_ROWS;
use crate::eval::{Disposition, DmarcOutput, SpfScope};
use crate::record::{Alignment, Policy, Record};

/// `report_metadata` (appendix C, `ReportMetadataType`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportMetadata {
    /// The reporting organization.
    pub org_name: String,
    /// Its contact address.
    pub email: String,
    /// More contact information, when any.
    pub extra_contact_info: Option<String>,
    /// A unique report identifier.
    pub report_id: String,
    /// Start of the period, Unix seconds (UTC).
    pub begin: u64,
    /// End of the period, Unix seconds (UTC).
    pub end: u64,
}

/// `policy_published` (appendix C, `PolicyPublishedType`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyPublished {
    /// The domain the record was found at.
    pub domain: String,
    /// `adkim`.
    pub adkim: Alignment,
    /// `aspf`.
    pub aspf: Alignment,
    /// `p`.
    pub p: Policy,
    /// `sp`.
    pub sp: Policy,
    /// `pct`.
    pub pct: u8,
    /// `fo`, as published.
    pub fo: String,
}

impl PolicyPublished {
    /// From the record found at `domain`.
    pub fn from_record(domain: &str, record: &Record) -> PolicyPublished {
        PolicyPublished {
            domain: domain.to_string(),
            adkim: record.adkim,
            aspf: record.aspf,
            p: record.policy,
            sp: record.effective_subdomain_policy(),
            pct: record.pct,
            fo: record.fo.to_string(),
        }
    }
}

/// A reason the disposition differs from the policy (appendix C,
/// `PolicyOverrideType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PolicyOverride {
    /// Forwarded.
    Forwarded,
    /// Left out by `pct` sampling.
    SampledOut,
    /// Trusted forwarder.
    TrustedForwarder,
    /// Mailing list.
    MailingList,
    /// Local policy.
    LocalPolicy,
    /// Other.
    Other,
}

impl PolicyOverride {
    fn as_str(self) -> &'static str {
        match self {
            PolicyOverride::Forwarded => "forwarded",
            PolicyOverride::SampledOut => "sampled_out",
            PolicyOverride::TrustedForwarder => "trusted_forwarder",
            PolicyOverride::MailingList => "mailing_list",
            PolicyOverride::LocalPolicy => "local_policy",
            PolicyOverride::Other => "other",
        }
    }
}

/// One message's facts, as recorded by the verifier.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Row {
    /// The SMTP client address.
    pub source_ip: IpAddr,
    /// The disposition applied.
    pub disposition: Disposition,
    /// DKIM produced an aligned pass.
    pub dkim_aligned_pass: bool,
    /// SPF produced an aligned pass.
    pub spf_aligned_pass: bool,
    /// Why the disposition differs from the policy.
    pub overrides: Vec<PolicyOverride>,
    /// RCPT TO domain, when recorded.
    pub envelope_to: Option<String>,
    /// The author domain.
    pub header_from: String,
    /// DKIM verdicts: domain, selector, result.
    pub dkim: Vec<(String, Option<String>, DkimResultKey)>,
    /// SPF verdict: domain, scope, result.
    pub spf: Option<(String, SpfScope, SpfResultKey)>,
}

/// An ordered wrapper of [`DkimResult`] (for grouping).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DkimResultKey(u8);

impl From<DkimResult> for DkimResultKey {
    fn from(r: DkimResult) -> Self {
        DkimResultKey(match r {
            DkimResult::None => 0,
            DkimResult::Pass => 1,
            DkimResult::Fail => 2,
            DkimResult::Policy => 3,
            DkimResult::Neutral => 4,
            DkimResult::TempError => 5,
            DkimResult::PermError => 6,
        })
    }
}

impl DkimResultKey {
    fn as_str(self) -> &'static str {
        [
            "none",
            "pass",
            "fail",
            "policy",
            "neutral",
            "temperror",
            "permerror",
        ]
        .get(self.0 as usize)
        .copied()
        .unwrap_or("none")
    }
}

/// An ordered wrapper of [`SpfResult`] (for grouping).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpfResultKey(u8);

impl From<SpfResult> for SpfResultKey {
    fn from(r: SpfResult) -> Self {
        SpfResultKey(match r {
            SpfResult::None => 0,
            SpfResult::Neutral => 1,
            SpfResult::Pass => 2,
            SpfResult::Fail => 3,
            SpfResult::SoftFail => 4,
            SpfResult::TempError => 5,
            SpfResult::PermError => 6,
        })
    }
}

impl SpfResultKey {
    fn as_str(self) -> &'static str {
        [
            "none",
            "neutral",
            "pass",
            "fail",
            "softfail",
            "temperror",
            "permerror",
        ]
        .get(self.0 as usize)
        .copied()
        .unwrap_or("none")
    }
}

impl Row {
    /// A row from an evaluation and the verdicts it used.
    pub fn new(source_ip: IpAddr, output: &DmarcOutput, input: &crate::Input) -> Row {
        let mut overrides = Vec::new();
        if output.sampled_out {
            overrides.push(PolicyOverride::SampledOut);
        }
        Row {
            source_ip,
            disposition: output.disposition,
            dkim_aligned_pass: output.dkim_aligned.is_some(),
            spf_aligned_pass: output.spf_aligned,
            overrides,
            envelope_to: None,
            header_from: output.header_from.clone().unwrap_or_default(),
            dkim: input
                .dkim
                .iter()
                .map(|d| (d.domain.clone(), d.selector.clone(), d.result.into()))
                .collect(),
            spf: input
                .spf
                .as_ref()
                .map(|s| (s.domain.clone(), s.scope, s.result.into())),
        }
    }
}

/// Accumulates rows for one reporting period and one policy domain.
#[derive(Debug, Clone)]
pub struct ReportBuilder {
    metadata: ReportMetadata,
    policy: PolicyPublished,
    rows: BTreeMap<Row, u64>,
    /// Rows dropped because [`MAX_REPORT_ROWS`] distinct rows were reached.
    dropped: u64,
}

impl ReportBuilder {
    /// A builder for one report.
    pub fn new(metadata: ReportMetadata, policy: PolicyPublished) -> ReportBuilder {
        ReportBuilder {
            metadata,
            policy,
            rows: BTreeMap::new(),
            dropped: 0,
        }
    }

    /// Records one message.
    pub fn add(&mut self, row: Row) -> &mut ReportBuilder {
        self.add_count(row, 1)
    }

    /// Records `count` messages with the same facts.
    pub fn add_count(&mut self, row: Row, count: u64) -> &mut ReportBuilder {
        if let Some(n) = self.rows.get_mut(&row) {
            *n = n.saturating_add(count);
        } else if self.rows.len() < MAX_REPORT_ROWS {
            self.rows.insert(row, count);
        } else {
            self.dropped = self.dropped.saturating_add(count);
        }
        self
    }

    /// Distinct rows so far.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether no row was added.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Messages recorded (dropped ones included).
    pub fn message_count(&self) -> u64 {
        self.rows.values().sum::<u64>() + self.dropped
    }

    /// The report (appendix C), UTF-8 XML.
    pub fn to_xml(&self) -> String {
        let mut x = Xml::default();
        x.raw("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<feedback>\n");
        x.leaf(1, "version", "1.0");
        let m = &self.metadata;
        x.open(1, "report_metadata");
        x.leaf(2, "org_name", &m.org_name);
        x.leaf(2, "email", &m.email);
        if let Some(extra) = &m.extra_contact_info {
            x.leaf(2, "extra_contact_info", extra);
        }
        x.leaf(2, "report_id", &m.report_id);
        x.open(2, "date_range");
        x.leaf(3, "begin", &m.begin.to_string());
        x.leaf(3, "end", &m.end.to_string());
        x.close(2, "date_range");
        if self.dropped > 0 {
            x.leaf(
                2,
                "error",
                &format!(
                    "{} messages not reported: too many distinct rows",
                    self.dropped
                ),
            );
        }
        x.close(1, "report_metadata");
        let p = &self.policy;
        x.open(1, "policy_published");
        x.leaf(2, "domain", &p.domain);
        x.leaf(2, "adkim", p.adkim.as_str());
        x.leaf(2, "aspf", p.aspf.as_str());
        x.leaf(2, "p", p.p.as_str());
        x.leaf(2, "sp", p.sp.as_str());
        x.leaf(2, "pct", &p.pct.to_string());
        x.leaf(2, "fo", &p.fo);
        x.close(1, "policy_published");
        for (row, count) in &self.rows {
            x.open(1, "record");
            x.open(2, "row");
            x.leaf(3, "source_ip", &row.source_ip.to_string());
            x.leaf(3, "count", &count.to_string());
            x.open(3, "policy_evaluated");
            x.leaf(4, "disposition", row.disposition.as_str());
            x.leaf(4, "dkim", pass_fail(row.dkim_aligned_pass));
            x.leaf(4, "spf", pass_fail(row.spf_aligned_pass));
            for o in &row.overrides {
                x.open(4, "reason");
                x.leaf(5, "type", o.as_str());
                x.close(4, "reason");
            }
            x.close(3, "policy_evaluated");
            x.close(2, "row");
            x.open(2, "identifiers");
            if let Some(to) = &row.envelope_to {
                x.leaf(3, "envelope_to", to);
            }
            x.leaf(3, "header_from", &row.header_from);
            x.close(2, "identifiers");
            x.open(2, "auth_results");
            for (domain, selector, result) in &row.dkim {
                x.open(3, "dkim");
                x.leaf(4, "domain", domain);
                if let Some(s) = selector {
                    x.leaf(4, "selector", s);
                }
                x.leaf(4, "result", result.as_str());
                x.close(3, "dkim");
            }
            // The schema requires one <spf> element: "none" when SPF was
            // not checked.
            let (domain, scope, result) = match &row.spf {
                Some((d, s, r)) => (d.as_str(), *s, *r),
                None => ("", SpfScope::MailFrom, SpfResult::None.into()),
            };
            x.open(3, "spf");
            x.leaf(4, "domain", domain);
            x.leaf(4, "scope", scope.as_str());
            x.leaf(4, "result", result.as_str());
            x.close(3, "spf");
            x.close(2, "auth_results");
            x.close(1, "record");
        }
        x.raw("</feedback>\n");
        x.out
    }
}

fn pass_fail(b: bool) -> &'static str {
    if b { "pass" } else { "fail" }
}

/// Escapes text for XML character data: `&`, `<`, `>`, quotes, and drops
/// characters XML 1.0 does not allow (controls other than tab, LF, CR).
pub fn escape_xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

#[derive(Default)]
struct Xml {
    out: String,
}

impl Xml {
    fn raw(&mut self, s: &str) {
        self.out.push_str(s);
    }
    fn indent(&mut self, depth: usize) {
        for _ in 0..depth {
            self.out.push_str("  ");
        }
    }
    fn open(&mut self, depth: usize, tag: &str) {
        self.indent(depth);
        self.out.push_str(&format!("<{tag}>\n"));
    }
    fn close(&mut self, depth: usize, tag: &str) {
        self.indent(depth);
        self.out.push_str(&format!("</{tag}>\n"));
    }
    fn leaf(&mut self, depth: usize, tag: &str, text: &str) {
        self.indent(depth);
        self.out
            .push_str(&format!("<{tag}>{}</{tag}>\n", escape_xml(text)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(ip: &str, disposition: Disposition, from: &str) -> Row {
        Row {
            source_ip: ip.parse().unwrap(),
            disposition,
            dkim_aligned_pass: false,
            spf_aligned_pass: disposition == Disposition::None,
            overrides: vec![],
            envelope_to: None,
            header_from: from.into(),
            dkim: vec![(
                "example.com".into(),
                Some("s1".into()),
                DkimResult::Fail.into(),
            )],
            spf: Some((
                "example.com".into(),
                SpfScope::MailFrom,
                SpfResult::Pass.into(),
            )),
        }
    }

    fn builder() -> ReportBuilder {
        ReportBuilder::new(
            ReportMetadata {
                org_name: "Receiver & Co <rx>".into(),
                email: "dmarc@rx.example".into(),
                extra_contact_info: None,
                report_id: "r-1".into(),
                begin: 1_700_000_000,
                end: 1_700_086_400,
            },
            PolicyPublished::from_record(
                "example.com",
                &Record::parse("v=DMARC1; p=reject; sp=quarantine; pct=50").unwrap(),
            ),
        )
    }

    #[test]
    fn rows_are_grouped_and_counted() {
        let mut b = builder();
        b.add(row("192.0.2.1", Disposition::None, "example.com"));
        b.add(row("192.0.2.1", Disposition::None, "example.com"));
        b.add(row("192.0.2.9", Disposition::Reject, "example.com"));
        assert_eq!(b.len(), 2);
        assert_eq!(b.message_count(), 3);
        let xml = b.to_xml();
        assert!(xml.contains("<count>2</count>"), "{xml}");
        assert!(xml.contains("<count>1</count>"));
        assert!(xml.contains("<disposition>reject</disposition>"));
        assert!(xml.contains("<sp>quarantine</sp>"));
        assert!(xml.contains("<pct>50</pct>"));
        assert!(xml.contains("<scope>mfrom</scope>"));
        assert!(xml.contains("<selector>s1</selector>"));
        assert_eq!(xml.matches("<record>").count(), 2);
    }

    #[test]
    fn text_is_escaped() {
        let mut b = builder();
        b.add(row(
            "2001:db8::1",
            Disposition::None,
            "a<b>&\"c'\u{1}.example",
        ));
        let xml = b.to_xml();
        assert!(xml.contains("<org_name>Receiver &amp; Co &lt;rx&gt;</org_name>"));
        assert!(xml.contains("<header_from>a&lt;b&gt;&amp;&quot;c&apos;.example</header_from>"));
        assert!(xml.contains("<source_ip>2001:db8::1</source_ip>"));
        assert!(!xml.contains('\u{1}'));
    }

    #[test]
    fn sampled_out_reason() {
        let mut r = row("192.0.2.1", Disposition::Quarantine, "example.com");
        r.overrides.push(PolicyOverride::SampledOut);
        let mut b = builder();
        b.add(r);
        assert!(b.to_xml().contains("<type>sampled_out</type>"));
    }

    #[test]
    fn structure_is_balanced() {
        let mut b = builder();
        for i in 0..5u8 {
            b.add(row(
                &format!("192.0.2.{i}"),
                Disposition::None,
                "example.com",
            ));
        }
        let xml = b.to_xml();
        for tag in [
            "feedback",
            "report_metadata",
            "policy_published",
            "record",
            "row",
            "auth_results",
            "dkim",
            "spf",
        ] {
            assert_eq!(
                xml.matches(&format!("<{tag}>")).count(),
                xml.matches(&format!("</{tag}>")).count(),
                "{tag}"
            );
        }
    }
}
