//! DMARC failure reports (RFC 7489 section 7.3) in the Authentication
//! Failure Reporting Format (RFC 6591, an RFC 5965 feedback report).
//!
//! ```text
//!   FailureOptions (fo=) + DmarcOutput + SPF/DKIM verdicts
//!        |
//!        v  should_report()          RFC 7489 section 6.3, fo=0/1/d/s
//!   FailureReport { .. }.build()
//!        |
//!        v
//!   multipart/report; report-type=feedback-report      RFC 6522
//!     1. text/plain                 human-readable summary
//!     2. message/feedback-report    Feedback-Type: auth-failure (RFC 6591)
//!     3. text/rfc822-headers        the failed message's header only
//! ```
//!
//! Sans-IO: the date, the arrival date and the Message-ID nonce are inputs;
//! the output is the bytes of a complete RFC 5322 message with CRLF line
//! endings. Every value copied into the report is stripped of CR, LF and
//! other control characters and cut to a named bound, so no input can add
//! a header field or a MIME part.

use std::net::IpAddr;

use scop_dkim::DkimResult;
use scop_mime::{Builder, DateTime, Mailbox};
use scop_spf::SpfResult;

use crate::eval::{Disposition, DkimAuth, DmarcOutput, DmarcResult, SpfAuth, SpfScope};
use crate::record::FailureOptions;

/// Longest value (domain, selector, address, nonce) copied into one field,
/// in characters.
pub const MAX_FIELD_VALUE_LEN: usize = 255;
/// Longest `Subject` of the report, in characters.
pub const MAX_SUBJECT_LEN: usize = 200;
/// Longest `Authentication-Results` value in the feedback part, in
/// characters.
pub const MAX_AUTH_RESULTS_LEN: usize = 2048;
/// Largest copy of the failed message's header block, in bytes; a longer
/// block is cut at the last line break within the bound.
pub const MAX_REPORTED_HEADERS_LEN: usize = 64 * 1024;
/// Most DKIM signatures described in the report.
pub const MAX_REPORTED_SIGNATURES: usize = 8;

/// Whether a DKIM verdict counts as a failed evaluation for `fo=d`.
fn dkim_failed(result: DkimResult) -> bool {
    !matches!(result, DkimResult::Pass | DkimResult::None)
}

/// Whether an SPF verdict counts as a failed evaluation for `fo=s`.
fn spf_failed(result: SpfResult) -> bool {
    matches!(
        result,
        SpfResult::Fail | SpfResult::SoftFail | SpfResult::TempError | SpfResult::PermError
    )
}

/// Whether `fo` asks for a failure report on this evaluation (RFC 7489
/// section 6.3):
/// - `0`: neither SPF nor DKIM produced an aligned pass;
/// - `1`: SPF or DKIM did not produce an aligned pass;
/// - `d`: a DKIM signature failed evaluation (any result other than `pass`
///   or `none`), aligned or not;
/// - `s`: SPF failed evaluation (`fail`, `softfail`, `temperror`,
///   `permerror`), aligned or not.
///
/// Only evaluations that found a policy record and came to `pass` or
/// `fail` are reported: `none`, `temperror` and `permerror` have no
/// domain owner who asked for reports.
pub fn should_report(
    fo: &FailureOptions,
    out: &DmarcOutput,
    spf: Option<&SpfAuth>,
    dkim: &[DkimAuth],
) -> bool {
    if out.record.is_none() || !matches!(out.result, DmarcResult::Pass | DmarcResult::Fail) {
        return false;
    }
    let spf_ok = out.spf_aligned;
    let dkim_ok = out.dkim_pass();
    (fo.all_fail && !spf_ok && !dkim_ok)
        || (fo.any_fail && (!spf_ok || !dkim_ok))
        || (fo.dkim && dkim.iter().any(|d| dkim_failed(d.result)))
        || (fo.spf && spf.is_some_and(|s| spf_failed(s.result)))
}

/// What the receiver did with the message (RFC 6591 section 3.1,
/// `Delivery-Result`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryResult {
    /// Delivered to the recipient's inbox.
    Delivered,
    /// Delivered to a spam or quarantine folder.
    Spam,
    /// Not delivered, by local policy.
    Policy,
    /// Rejected.
    Reject,
    /// Anything else.
    Other,
}

impl DeliveryResult {
    /// The RFC 6591 keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryResult::Delivered => "delivered",
            DeliveryResult::Spam => "spam",
            DeliveryResult::Policy => "policy",
            DeliveryResult::Reject => "reject",
            DeliveryResult::Other => "other",
        }
    }
}

impl From<Disposition> for DeliveryResult {
    fn from(d: Disposition) -> Self {
        match d {
            Disposition::None => DeliveryResult::Delivered,
            Disposition::Quarantine => DeliveryResult::Spam,
            Disposition::Reject => DeliveryResult::Reject,
        }
    }
}

/// One failure report to build. All borrowed; [`FailureReport::build`]
/// renders it.
#[derive(Debug, Clone)]
pub struct FailureReport<'a> {
    /// The receiver's domain (`User-Agent` text, `Authentication-Results`
    /// authserv-id, right side of the Message-ID).
    pub reporter_domain: &'a str,
    /// The report's `From` address.
    pub report_from: &'a str,
    /// The report's `To` address (from a `ruf` `mailto:` URI).
    pub report_to: &'a str,
    /// The report's `Date`.
    pub date: DateTime,
    /// A unique token for the Message-ID (`<nonce@reporter_domain>`).
    pub message_id_nonce: &'a str,
    /// The envelope sender (RFC5321.MailFrom), without angle brackets;
    /// empty for the null sender.
    pub mail_from: &'a str,
    /// When the failed message arrived.
    pub arrival_date: DateTime,
    /// The SMTP client's address.
    pub source_ip: IpAddr,
    /// The failed message's header block (a whole message is accepted;
    /// only its header is copied).
    pub message_headers: &'a [u8],
    /// The DMARC evaluation.
    pub output: &'a DmarcOutput,
    /// The SPF verdict, when SPF was checked.
    pub spf: Option<&'a SpfAuth>,
    /// Every DKIM verdict.
    pub dkim: &'a [DkimAuth],
    /// What was done with the message; `None` derives it from the
    /// disposition.
    pub delivery_result: Option<DeliveryResult>,
}

/// `s` without control characters (CR and LF included), cut to `max`
/// characters, trimmed.
fn clean(s: &str, max: usize) -> String {
    let v: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    v.trim().to_string()
}

/// Like [`clean`], and ASCII only (for feedback-report fields, which RFC
/// 5965 defines over ASCII): other characters become `?`.
fn clean_ascii(s: &str, max: usize) -> String {
    clean(s, max)
        .chars()
        .map(|c| if c.is_ascii() { c } else { '?' })
        .collect()
}

/// Characters of a dot-atom (for the Message-ID), others dropped.
fn atom(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(*c))
        .take(MAX_FIELD_VALUE_LEN)
        .collect::<String>()
        .trim_matches('.')
        .to_string()
}

/// The header block of `message`: up to and including the line break that
/// ends its last field, cut at a line break within
/// [`MAX_REPORTED_HEADERS_LEN`].
fn header_block(message: &[u8]) -> &[u8] {
    if message.starts_with(b"\n") || message.starts_with(b"\r\n") {
        return &[];
    }
    let mut end = message.len();
    let mut i = 0;
    while i < message.len() {
        if message[i] == b'\n' {
            let next = &message[i + 1..];
            if next.starts_with(b"\n") || next.starts_with(b"\r\n") {
                end = i + 1;
                break;
            }
        }
        i += 1;
    }
    let block = &message[..end];
    if block.len() <= MAX_REPORTED_HEADERS_LEN {
        return block;
    }
    let cut = &block[..MAX_REPORTED_HEADERS_LEN];
    match cut.iter().rposition(|&b| b == b'\n') {
        Some(p) => &cut[..=p],
        None => &[],
    }
}

impl FailureReport<'_> {
    fn domain(&self) -> String {
        clean_ascii(
            self.output.header_from.as_deref().unwrap_or(""),
            MAX_FIELD_VALUE_LEN,
        )
    }

    fn failed_signatures(&self) -> impl Iterator<Item = &DkimAuth> {
        self.dkim
            .iter()
            .filter(|d| dkim_failed(d.result))
            .take(MAX_REPORTED_SIGNATURES)
    }

    /// `none`, `dkim`, `spf` or `dkim, spf`: the identifiers that produced
    /// an aligned pass (RFC 7489 section 7.3.1).
    fn identity_alignment(&self) -> &'static str {
        match (self.output.dkim_pass(), self.output.spf_aligned) {
            (false, false) => "none",
            (true, false) => "dkim",
            (false, true) => "spf",
            (true, true) => "dkim, spf",
        }
    }

    fn authentication_results(&self) -> String {
        let mut ar = format!(
            "{}; dmarc={} header.from={}",
            clean_ascii(self.reporter_domain, MAX_FIELD_VALUE_LEN),
            self.output.result.as_str(),
            self.domain()
        );
        if let Some(spf) = self.spf {
            let property = match spf.scope {
                SpfScope::MailFrom => "mailfrom",
                SpfScope::Helo => "helo",
            };
            ar.push_str(&format!(
                "; spf={} smtp.{}={}",
                spf.result.as_str(),
                property,
                clean_ascii(&spf.domain, MAX_FIELD_VALUE_LEN)
            ));
        }
        for d in self.dkim.iter().take(MAX_REPORTED_SIGNATURES) {
            ar.push_str(&format!(
                "; dkim={} header.d={}",
                d.result.as_str(),
                clean_ascii(&d.domain, MAX_FIELD_VALUE_LEN)
            ));
            if let Some(s) = &d.selector {
                ar.push_str(&format!(
                    " header.s={}",
                    clean_ascii(s, MAX_FIELD_VALUE_LEN)
                ));
            }
        }
        clean_ascii(&ar, MAX_AUTH_RESULTS_LEN)
            .split("; ")
            .collect::<Vec<_>>()
            .join(";\r\n ")
    }

    /// The `message/feedback-report` body (RFC 6591 section 3.1, RFC 7489
    /// section 7.3.1), CRLF line endings; `Authentication-Results` is
    /// folded after each `;` so every line stays under 998 characters.
    pub fn feedback_fields(&self) -> String {
        let mut f = Vec::new();
        f.push(("Feedback-Type".to_string(), "auth-failure".to_string()));
        f.push((
            "User-Agent".into(),
            format!(
                "scop-dmarc/{} ({})",
                env!("CARGO_PKG_VERSION"),
                clean_ascii(self.reporter_domain, MAX_FIELD_VALUE_LEN)
            ),
        ));
        f.push(("Version".into(), "1".into()));
        f.push((
            "Original-Mail-From".into(),
            format!(
                "<{}>",
                clean_ascii(self.mail_from, MAX_FIELD_VALUE_LEN)
                    .trim_matches(['<', '>'])
                    .replace(['<', '>'], "")
            ),
        ));
        f.push(("Arrival-Date".into(), self.arrival_date.to_rfc5322()));
        f.push(("Source-IP".into(), self.source_ip.to_string()));
        f.push(("Reported-Domain".into(), self.domain()));
        f.push((
            "Authentication-Results".into(),
            self.authentication_results(),
        ));
        f.push(("Auth-Failure".into(), "dmarc".into()));
        f.push((
            "Identity-Alignment".into(),
            self.identity_alignment().into(),
        ));
        let delivery = self
            .delivery_result
            .unwrap_or_else(|| self.output.disposition.into());
        f.push(("Delivery-Result".into(), delivery.as_str().into()));
        if let Some(d) = self.failed_signatures().next() {
            f.push((
                "DKIM-Domain".into(),
                clean_ascii(&d.domain, MAX_FIELD_VALUE_LEN),
            ));
            if let Some(s) = &d.selector {
                f.push(("DKIM-Selector".into(), clean_ascii(s, MAX_FIELD_VALUE_LEN)));
            }
        }
        let mut out = String::new();
        for (name, value) in f {
            out.push_str(&name);
            out.push_str(": ");
            out.push_str(&value);
            out.push_str("\r\n");
        }
        out
    }

    /// The report's `Subject`: `FW: ` and the failed message's subject
    /// (RFC 7489 section 7.3), or a fixed text naming the domain when the
    /// message has none.
    pub fn subject(&self) -> String {
        let original = scop_mime::parse(header_block(self.message_headers))
            .ok()
            .and_then(|p| p.message.header("Subject").map(|h| h.text()))
            .map(|s| clean(&s, MAX_SUBJECT_LEN))
            .filter(|s| !s.is_empty());
        let subject = match original {
            Some(s) => format!("FW: {s}"),
            None => format!(
                "DMARC failure report for {} from {}",
                self.domain(),
                clean(self.reporter_domain, MAX_FIELD_VALUE_LEN)
            ),
        };
        clean(&subject, MAX_SUBJECT_LEN)
    }

    fn human_text(&self) -> String {
        let mut t = format!(
            "This is a DMARC failure report (RFC 7489 section 7.3) for a\r\n\
             message claiming to be from {}\r\n\
             received from {}\r\n\
             at {}.\r\n\r\n\
             DMARC result: {}\r\n\
             Aligned identifiers: {}\r\n",
            self.domain(),
            self.source_ip,
            self.arrival_date.to_rfc5322(),
            self.output.result.as_str(),
            self.identity_alignment(),
        );
        if let Some(spf) = self.spf {
            t.push_str(&format!(
                "SPF: {} for {}\r\n",
                spf.result.as_str(),
                clean_ascii(&spf.domain, MAX_FIELD_VALUE_LEN)
            ));
        }
        for d in self.dkim.iter().take(MAX_REPORTED_SIGNATURES) {
            t.push_str(&format!(
                "DKIM: {} for d={}\r\n",
                d.result.as_str(),
                clean_ascii(&d.domain, MAX_FIELD_VALUE_LEN)
            ));
        }
        t.push_str("\r\nOnly the header of the message is included.\r\n");
        t
    }

    /// Renders the report as a complete RFC 5322 message (CRLF line
    /// endings).
    pub fn build(&self) -> Vec<u8> {
        let reporter = atom(self.reporter_domain);
        let nonce = atom(self.message_id_nonce);
        let mut headers = header_block(self.message_headers).to_vec();
        if !headers.is_empty() && !headers.ends_with(b"\n") {
            headers.extend_from_slice(b"\r\n");
        }
        Builder::new()
            .from(Mailbox::new(
                None,
                &clean_ascii(self.report_from, MAX_FIELD_VALUE_LEN),
            ))
            .to(Mailbox::new(
                None,
                &clean_ascii(self.report_to, MAX_FIELD_VALUE_LEN),
            ))
            .subject(self.subject())
            .date(self.date)
            .message_id(format!("{nonce}@{reporter}"))
            .multipart("report")
            .multipart_param("report-type", "feedback-report")
            .text(self.human_text())
            .mime_part("message/feedback-report", self.feedback_fields())
            .mime_part("text/rfc822-headers", headers)
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Policy, Record};

    fn output(spf_aligned: bool, dkim_aligned: bool) -> DmarcOutput {
        DmarcOutput {
            result: if spf_aligned || dkim_aligned {
                DmarcResult::Pass
            } else {
                DmarcResult::Fail
            },
            disposition: Disposition::Reject,
            header_from: Some("example.com".into()),
            policy_domain: Some("example.com".into()),
            organizational_domain: Some("example.com".into()),
            record: Some(Record::with_policy(Policy::Reject)),
            policy: Some(Policy::Reject),
            policy_source: None,
            sampled_out: false,
            spf_aligned,
            dkim_aligned: dkim_aligned.then(|| "example.com".into()),
            problem: None,
        }
    }

    fn fo(all: bool, any: bool, d: bool, s: bool) -> FailureOptions {
        FailureOptions {
            all_fail: all,
            any_fail: any,
            dkim: d,
            spf: s,
        }
    }

    fn spf(result: SpfResult) -> SpfAuth {
        SpfAuth {
            result,
            domain: "other.example".into(),
            scope: SpfScope::MailFrom,
        }
    }

    fn dkim(result: DkimResult) -> DkimAuth {
        DkimAuth {
            result,
            domain: "other.example".into(),
            selector: Some("sel".into()),
        }
    }

    #[test]
    fn fo_zero_and_one_over_alignment() {
        // (spf aligned, dkim aligned) -> (fo=0, fo=1)
        let cases = [
            ((false, false), (true, true)),
            ((true, false), (false, true)),
            ((false, true), (false, true)),
            ((true, true), (false, false)),
        ];
        for ((s, d), (zero, one)) in cases {
            let out = output(s, d);
            assert_eq!(
                should_report(&fo(true, false, false, false), &out, None, &[]),
                zero,
                "fo=0 spf={s} dkim={d}"
            );
            assert_eq!(
                should_report(&fo(false, true, false, false), &out, None, &[]),
                one,
                "fo=1 spf={s} dkim={d}"
            );
        }
    }

    #[test]
    fn fo_d_reports_failed_signature_regardless_of_alignment() {
        let out = output(true, true);
        let opts = fo(false, false, true, false);
        assert!(should_report(&opts, &out, None, &[dkim(DkimResult::Fail)]));
        assert!(should_report(
            &opts,
            &out,
            None,
            &[dkim(DkimResult::Pass), dkim(DkimResult::PermError)]
        ));
        assert!(!should_report(&opts, &out, None, &[dkim(DkimResult::Pass)]));
        assert!(!should_report(&opts, &out, None, &[]));
        assert!(!should_report(
            &opts,
            &out,
            Some(&spf(SpfResult::Fail)),
            &[dkim(DkimResult::Pass)]
        ));
    }

    #[test]
    fn fo_s_reports_spf_failure_regardless_of_alignment() {
        let out = output(false, true);
        let opts = fo(false, false, false, true);
        for r in [
            SpfResult::Fail,
            SpfResult::SoftFail,
            SpfResult::TempError,
            SpfResult::PermError,
        ] {
            assert!(should_report(&opts, &out, Some(&spf(r)), &[]), "{r}");
        }
        for r in [SpfResult::Pass, SpfResult::Neutral, SpfResult::None] {
            assert!(!should_report(&opts, &out, Some(&spf(r)), &[]), "{r}");
        }
        assert!(!should_report(&opts, &out, None, &[dkim(DkimResult::Fail)]));
    }

    #[test]
    fn combined_options_are_a_union() {
        let out = output(true, true);
        let opts = fo(true, false, true, true);
        assert!(!should_report(
            &opts,
            &out,
            Some(&spf(SpfResult::Pass)),
            &[]
        ));
        assert!(should_report(
            &opts,
            &out,
            Some(&spf(SpfResult::SoftFail)),
            &[]
        ));
    }

    #[test]
    fn no_report_without_a_record_or_a_verdict() {
        let every = fo(true, true, true, true);
        let mut out = output(false, false);
        out.record = None;
        assert!(!should_report(&every, &out, None, &[]));
        let mut out = output(false, false);
        out.result = DmarcResult::TempError;
        assert!(!should_report(&every, &out, None, &[]));
        let mut out = output(false, false);
        out.result = DmarcResult::None;
        assert!(!should_report(&every, &out, None, &[]));
    }

    #[test]
    fn header_block_stops_at_blank_line_and_bound() {
        assert_eq!(
            header_block(b"A: 1\r\nB: 2\r\n\r\nbody"),
            b"A: 1\r\nB: 2\r\n"
        );
        assert_eq!(header_block(b"A: 1\nB: 2\n\nbody\n"), b"A: 1\nB: 2\n");
        assert_eq!(header_block(b"A: 1\r\n"), b"A: 1\r\n");
        assert_eq!(header_block(b"\r\nbody\r\n\r\nmore"), b"");
        let mut big = Vec::new();
        while big.len() <= MAX_REPORTED_HEADERS_LEN + 100 {
            big.extend_from_slice(b"X-Filler: 0123456789\r\n");
        }
        let block = header_block(&big);
        assert!(block.len() <= MAX_REPORTED_HEADERS_LEN);
        assert!(block.ends_with(b"\r\n"));
        assert!(block.len() > MAX_REPORTED_HEADERS_LEN - 30);
    }

    #[test]
    fn injected_from_domain_adds_no_field() {
        let mut out = output(false, false);
        out.header_from = Some("evil.example\r\nBcc: victim@example.net\nX-Evil: 1".into());
        let report = FailureReport {
            reporter_domain: "receiver.example",
            report_from: "dmarc@receiver.example",
            report_to: "ruf@example.com",
            date: DateTime::from_unix_timestamp(1_750_000_000),
            message_id_nonce: "n1",
            mail_from: "a@evil.example",
            arrival_date: DateTime::from_unix_timestamp(1_749_999_000),
            source_ip: "192.0.2.1".parse().unwrap(),
            message_headers: b"From: a@evil.example\r\n\r\n",
            output: &out,
            spf: None,
            dkim: &[],
            delivery_result: None,
        };
        let fields = report.feedback_fields();
        let starts: Vec<&str> = fields
            .split("\r\n")
            .filter(|l| !l.is_empty() && !l.starts_with(' '))
            .map(|l| l.split(':').next().unwrap())
            .collect();
        assert!(!starts.contains(&"Bcc"), "{fields}");
        assert!(!starts.contains(&"X-Evil"), "{fields}");
        let known = [
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
        ];
        assert_eq!(starts, known, "{fields}");
        let bytes = report.build();
        assert!(
            !bytes
                .split(|&b| b == b'\n')
                .any(|l| l.starts_with(b"Bcc:") || l.starts_with(b"X-Evil:"))
        );
    }
}
