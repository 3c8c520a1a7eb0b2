//! DMARC aggregate reports (RFC 7489 7.2): the verifier records one row
//! per checked message whose DMARC record asks for reports (`rua=`); at
//! the end of each reporting interval the rows of each policy domain
//! become one XML report, mailed to each `mailto:` address through the
//! outbound queue.
//!
//! ```text
//!  verifier ──record(ip, output, input)──► Reporter (in memory, per policy domain)
//!  every interval ──take(now)──► Report ──message()──► queue ──► relay ──► rua
//! ```
//!
//! A `rua` address outside the policy domain's organizational domain gets
//! reports only when its domain publishes
//! `<policy-domain>._report._dmarc.<rua-domain> TXT "v=DMARC1"` (RFC 7489
//! 7.1). Rows live in memory: a restart loses the rows of the running
//! interval (at most [`scop_dmarc::MAX_REPORT_ROWS`] distinct rows per
//! domain, and at most [`MAX_REPORT_DOMAINS`] domains, are kept).
//!
//! Failure reports (RFC 7489 7.3, RFC 6591) go out at once, when the
//! record's `fo=` asks for one ([`scop_dmarc::failure::should_report`])
//! and names `mailto:` addresses in `ruf=`, with the same destination
//! check, and at most [`FAILURES_PER_DOMAIN_HOUR`] per policy domain and
//! [`FAILURES_PER_HOUR`] in all per hour: a flood of forgeries must not
//! turn us into a mail cannon.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use scop_dmarc::report::{PolicyPublished, ReportBuilder, ReportMetadata, Row};
use scop_mime::{Builder, DateTime, Mailbox};

/// Policy domains tracked at once in one interval; rows for further
/// domains are not recorded.
pub const MAX_REPORT_DOMAINS: usize = 10_000;
/// `rua` addresses used per domain (RFC 7489 leaves it open; two is
/// what large receivers send to).
pub const MAX_RUA_PER_DOMAIN: usize = 2;
/// Failure reports per policy domain per hour, at most.
pub const FAILURES_PER_DOMAIN_HOUR: u32 = 10;
/// Failure reports per hour in all, at most.
pub const FAILURES_PER_HOUR: u32 = 100;
/// Policy domains whose hourly failure-report counts are kept.
const FAILURE_DOMAINS_MAX: usize = 10_000;

/// One failure report waiting to go out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureReport {
    /// The domain whose record asked for it.
    pub policy_domain: String,
    /// The `ruf` address and its size limit.
    pub to: String,
    /// Its size limit (`!size`), if any.
    pub max_size: Option<u64>,
    /// The complete message (signed when the reporter holds keys).
    pub message: Vec<u8>,
}

#[derive(Default)]
struct Failures {
    queue: std::collections::VecDeque<FailureReport>,
    hour: u64,
    total: u32,
    per_domain: HashMap<String, u32>,
}

struct Pending {
    policy: PolicyPublished,
    rua: Vec<(String, Option<u64>)>,
    rows: BTreeMap<Row, u64>,
}

struct State {
    since: u64,
    domains: BTreeMap<String, Pending>,
}

/// Collects rows between reports.
pub struct Reporter {
    /// Our organization's name in reports (the host name).
    pub org_name: String,
    /// The contact address in reports and their From.
    pub email: String,
    /// DKIM signers per domain (the submission's): reports are signed
    /// with those of the From domain, so that they pass DMARC at the
    /// receiver.
    pub signers: Arc<HashMap<String, Vec<scop_dkim::Signer>>>,
    state: Mutex<State>,
    failures: Mutex<Failures>,
    failure_ready: tokio::sync::Notify,
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reporter")
            .field("org_name", &self.org_name)
            .finish()
    }
}

/// One report ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The domain reported on.
    pub policy_domain: String,
    /// Addresses to send it to, with their size limits.
    pub rua: Vec<(String, Option<u64>)>,
    /// Its identifier.
    pub report_id: String,
    /// Period start and end (Unix seconds).
    pub begin: u64,
    /// Period end.
    pub end: u64,
    /// The XML document.
    pub xml: String,
    /// Messages it covers.
    pub messages: u64,
}

/// The `mailto:` addresses of a record's `rua` (other schemes ignored).
pub fn mailto_addresses(rua: &[scop_dmarc::ReportUri]) -> Vec<(String, Option<u64>)> {
    rua.iter()
        .filter_map(|u| {
            u.uri
                .get(..7)
                .filter(|s| s.eq_ignore_ascii_case("mailto:"))?;
            let addr = u.uri[7..].trim();
            (addr.contains('@') && !addr.contains(['\r', '\n', ' ', ',']))
                .then(|| (addr.to_string(), u.max_size))
        })
        .take(MAX_RUA_PER_DOMAIN)
        .collect()
}

impl Reporter {
    /// A reporter whose interval starts at `now`; its reports come from
    /// `email` and are signed with the `signers` of its domain.
    pub fn new(
        org_name: &str,
        email: &str,
        signers: Arc<HashMap<String, Vec<scop_dkim::Signer>>>,
        now: u64,
    ) -> Self {
        Reporter {
            org_name: org_name.to_string(),
            email: email.to_string(),
            signers,
            state: Mutex::new(State {
                since: now,
                domains: BTreeMap::new(),
            }),
            failures: Mutex::default(),
            failure_ready: tokio::sync::Notify::new(),
        }
    }

    /// Queues the failure reports the policy record asks for about one
    /// evaluated `message` from `ip` (MAIL FROM `mail_from`), what we did
    /// with it being `disposition`; nothing when `fo=` does not ask, when
    /// `ruf=` has no `mailto:` address, or over the hourly limits.
    #[allow(clippy::too_many_arguments)]
    pub fn record_failure(
        &self,
        ip: IpAddr,
        mail_from: &str,
        message: &[u8],
        input: &scop_dmarc::Input,
        output: &scop_dmarc::DmarcOutput,
        disposition: scop_dmarc::Disposition,
        now: u64,
    ) {
        let (Some(record), Some(domain)) = (&output.record, &output.policy_domain) else {
            return;
        };
        let ruf = mailto_addresses(&record.ruf);
        if ruf.is_empty()
            || !scop_dmarc::failure::should_report(
                &record.fo,
                output,
                input.spf.as_ref(),
                &input.dkim,
            )
        {
            return;
        }
        let domain = domain.to_ascii_lowercase();
        {
            let Ok(mut f) = self.failures.lock() else {
                return;
            };
            let hour = now / 3600;
            if f.hour != hour {
                f.hour = hour;
                f.total = 0;
                f.per_domain.clear();
            }
            let known = f.per_domain.contains_key(&domain);
            let n = f.per_domain.get(&domain).copied().unwrap_or(0);
            if f.total >= FAILURES_PER_HOUR
                || n >= FAILURES_PER_DOMAIN_HOUR
                || (!known && f.per_domain.len() >= FAILURE_DOMAINS_MAX)
            {
                tracing::info!(%domain, "DMARC failure report over the hourly limit; not sent");
                return;
            }
            f.total += 1;
            f.per_domain.insert(domain.clone(), n + 1);
        }
        let headers = match message.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(i) => &message[..i + 2],
            None => message,
        };
        let at = DateTime::from_unix_timestamp(i64::try_from(now).unwrap_or(i64::MAX));
        let nonce = crate::queue_id();
        let mut built = Vec::new();
        for (to, max_size) in ruf {
            let report = scop_dmarc::failure::FailureReport {
                reporter_domain: &self.org_name,
                report_from: &self.email,
                report_to: &to,
                date: at,
                message_id_nonce: &nonce,
                mail_from,
                arrival_date: at,
                source_ip: ip,
                message_headers: headers,
                output,
                spf: input.spf.as_ref(),
                dkim: &input.dkim,
                delivery_result: Some(disposition.into()),
            };
            let message = self.sign(report.build(), now);
            built.push(FailureReport {
                policy_domain: domain.clone(),
                to,
                max_size,
                message,
            });
        }
        if let Ok(mut f) = self.failures.lock() {
            f.queue.extend(built);
        }
        self.failure_ready.notify_one();
    }

    /// The failure reports waiting to go out.
    pub fn take_failures(&self) -> Vec<FailureReport> {
        self.failures
            .lock()
            .map(|mut f| f.queue.drain(..).collect())
            .unwrap_or_default()
    }

    /// `message` DKIM-signed for the reporter's domain when we hold its
    /// keys (in one process; the signer compartment signs otherwise).
    fn sign(&self, message: Vec<u8>, now: u64) -> Vec<u8> {
        signed(&self.signers, &self.email, message, now)
    }

    /// Records one evaluated message from `ip` (no-op when the record
    /// asked for no aggregate report by mail).
    pub fn record(&self, ip: IpAddr, output: &scop_dmarc::DmarcOutput, input: &scop_dmarc::Input) {
        let (Some(record), Some(domain)) = (&output.record, &output.policy_domain) else {
            return;
        };
        let rua = mailto_addresses(&record.rua);
        if rua.is_empty() {
            return;
        }
        let domain = domain.to_ascii_lowercase();
        let row = Row::new(ip, output, input);
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if !state.domains.contains_key(&domain) && state.domains.len() >= MAX_REPORT_DOMAINS {
            return;
        }
        let pending = state
            .domains
            .entry(domain.clone())
            .or_insert_with(|| Pending {
                policy: PolicyPublished::from_record(&domain, record),
                rua,
                rows: BTreeMap::new(),
            });
        let room = pending.rows.len() < scop_dmarc::MAX_REPORT_ROWS;
        match pending.rows.get_mut(&row) {
            Some(n) => *n += 1,
            None if room => {
                pending.rows.insert(row, 1);
            }
            None => {}
        }
    }

    /// The reports of the interval ending at `now`; a new interval starts.
    pub fn take(&self, now: u64) -> Vec<Report> {
        let (since, domains) = match self.state.lock() {
            Ok(mut state) => {
                let since = std::mem::replace(&mut state.since, now);
                (since, std::mem::take(&mut state.domains))
            }
            Err(_) => return Vec::new(),
        };
        domains
            .into_iter()
            .map(|(domain, p)| {
                let report_id = format!("{}.{}.{}", self.org_name, domain, since);
                let metadata = ReportMetadata {
                    org_name: self.org_name.clone(),
                    email: self.email.clone(),
                    extra_contact_info: None,
                    report_id: report_id.clone(),
                    begin: since,
                    end: now,
                };
                let mut builder = ReportBuilder::new(metadata, p.policy);
                for (row, count) in p.rows {
                    builder.add_count(row, count);
                }
                Report {
                    policy_domain: domain,
                    rua: p.rua,
                    report_id,
                    begin: since,
                    end: now,
                    messages: builder.message_count(),
                    xml: builder.to_xml(),
                }
            })
            .collect()
    }

    /// The report as a message to `to` (RFC 7489 7.2.1.1: subject,
    /// filename `receiver!policy-domain!begin!end.xml`), DKIM-signed when
    /// the reporter has keys.
    pub fn message(&self, report: &Report, to: &str, now: u64) -> Vec<u8> {
        self.sign(self.unsigned_message(report, to, now), now)
    }

    fn unsigned_message(&self, report: &Report, to: &str, now: u64) -> Vec<u8> {
        let filename = format!(
            "{}!{}!{}!{}.xml",
            self.org_name, report.policy_domain, report.begin, report.end
        );
        Builder::new()
            .from(Mailbox::new(Some("DMARC reports"), &self.email))
            .to(Mailbox::new(None, to))
            .subject(format!(
                "Report Domain: {} Submitter: {} Report-ID: <{}>",
                report.policy_domain, self.org_name, report.report_id
            ))
            .date(DateTime::from_unix_timestamp(
                i64::try_from(now).unwrap_or(i64::MAX),
            ))
            .message_id(format!("dmarc.{}@{}", report.report_id, self.org_name))
            .header("Auto-Submitted", "auto-generated")
            .multipart("mixed")
            .text(format!(
                "DMARC aggregate report for {} from {}: {} messages between {} and {} (Unix time).\r\n",
                report.policy_domain, self.org_name, report.messages, report.begin, report.end
            ))
            .attachment(filename, "application/xml", report.xml.clone().into_bytes())
            .build()
    }
}

/// `message` DKIM-signed with the `signers` of the domain of `from` (a
/// report's sender, so that it passes DMARC at the receiver); unsigned
/// when we hold no key of that domain (in one process; the signer
/// compartment signs otherwise) or signing fails.
pub(crate) fn signed(
    signers: &HashMap<String, Vec<scop_dkim::Signer>>,
    from: &str,
    message: Vec<u8>,
    now: u64,
) -> Vec<u8> {
    let domain = from.rsplit_once('@').map_or("", |(_, d)| d);
    let Some(signers) = signers.get(domain).filter(|s| !s.is_empty()) else {
        return message;
    };
    match scop_dkim::sign_message(signers, &message, now) {
        Ok(signed) => signed,
        Err(e) => {
            tracing::error!(error = %e, "DKIM signing of a report failed");
            message
        }
    }
}

/// Whether `rua_address` may receive reports about `policy_domain`: same
/// organizational domain, or the receiving domain agreed (RFC 7489 7.1)
/// according to `txt` (the TXT strings found at
/// `<policy_domain>._report._dmarc.<rua domain>`, `None` when the lookup
/// failed).
pub fn destination_allowed(
    policy_domain: &str,
    rua_address: &str,
    txt: impl FnOnce(&str) -> Option<Vec<Vec<u8>>>,
) -> bool {
    let Some((_, rua_domain)) = rua_address.rsplit_once('@') else {
        return false;
    };
    let rua_domain = rua_domain.trim_end_matches('.').to_ascii_lowercase();
    if scop_dmarc::organizational_domain(&rua_domain)
        == scop_dmarc::organizational_domain(&policy_domain.to_ascii_lowercase())
    {
        return true;
    }
    let name = format!("{policy_domain}._report._dmarc.{rua_domain}");
    txt(&name).is_some_and(|records| {
        records.iter().any(|r| {
            String::from_utf8_lossy(r)
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("v=dmarc1")
        })
    })
}

/// Where reports go: the outbound queue of this process, or the signer
/// compartment over the mesh (which signs them and hands them to the
/// relay).
#[derive(Debug, Clone)]
pub enum Outbox {
    /// Queued here (the reporter signs).
    Queue(crate::delivery::Delivery),
    /// Sent to the signer.
    Hop(crate::hop::NextHop),
}

impl Outbox {
    /// Sends `body` to `to` from the null sender; the queue id or why not.
    pub(crate) async fn send(&self, to: &str, body: Vec<u8>, now: i64) -> Result<String, String> {
        match self {
            Outbox::Queue(delivery) => {
                let message = scop_store::NewMessage {
                    sender: String::new(),
                    recipients: vec![to.to_string()],
                    body,
                    lifetime_secs: delivery.lifetime_secs,
                    dsn: scop_store::DsnParams::default(),
                };
                let id = delivery
                    .store
                    .enqueue(&message, now)
                    .await
                    .map_err(|e| e.to_string())?;
                delivery.queued.notify_one();
                Ok(id.to_string())
            }
            Outbox::Hop(next) => {
                let rcpt = scop_smtp::Mailbox::parse(to, true).map_err(|e| e.to_string())?;
                let rcpts = vec![(
                    scop_smtp::ForwardPath::Mailbox(rcpt),
                    scop_smtp::RcptParams::default(),
                )];
                next.send(
                    None,
                    &scop_smtp::ReversePath::Null,
                    &scop_smtp::MailParams::default(),
                    rcpts,
                    &body,
                )
                .await
                .map_err(|r| r.to_string())
            }
        }
    }
}

/// Sends the reports of `reporter` every `interval` until `stop`: each
/// report goes to each allowed `rua` address through the outbound queue
/// (null sender, so nothing bounces back to a report), a report over an
/// address's size limit is not sent to it. The interval's rows are sent
/// at stop too, so a graceful restart loses nothing.
pub async fn send_loop(
    reporter: std::sync::Arc<Reporter>,
    dns: crate::mxlookup::Dns,
    delivery: Outbox,
    interval: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut next = tokio::time::Instant::now() + interval;
    loop {
        let (stopping, due) = tokio::select! {
            _ = tokio::time::sleep_until(next) => (false, true),
            _ = reporter.failure_ready.notified() => (false, false),
            _ = stop.changed() => (true, true),
        };
        let now = crate::now();
        for failure in reporter.take_failures() {
            send_failure(&dns, &delivery, &failure, now).await;
        }
        if due {
            next = tokio::time::Instant::now() + interval;
            for report in reporter.take(now as u64) {
                send(&reporter, &dns, &delivery, &report, now).await;
            }
        }
        if stopping || *stop.borrow() {
            return;
        }
    }
}

/// Whether `address` agreed to reports about `policy_domain` (RFC 7489
/// 7.1), asking DNS when it is in another organizational domain.
async fn agreed(dns: &crate::mxlookup::Dns, policy_domain: &str, address: &str) -> bool {
    if destination_allowed(policy_domain, address, |_| None) {
        return true;
    }
    let name = format!(
        "{policy_domain}._report._dmarc.{}",
        address.rsplit_once('@').map_or("", |(_, d)| d)
    );
    let txt = match dns.txt(&name).await {
        crate::mxlookup::Answer::Records(v) => Some(v),
        _ => None,
    };
    destination_allowed(policy_domain, address, |_| txt)
}

async fn send_failure(
    dns: &crate::mxlookup::Dns,
    delivery: &Outbox,
    failure: &FailureReport,
    now: i64,
) {
    let domain = &failure.policy_domain;
    let address = &failure.to;
    if failure
        .max_size
        .is_some_and(|max| failure.message.len() as u64 > max)
    {
        tracing::info!(%domain, %address, "DMARC failure report over the size limit; not sent");
        return;
    }
    if !agreed(dns, domain, address).await {
        tracing::info!(%domain, %address, "DMARC failure report destination did not agree (RFC 7489 7.1); not sent");
        return;
    }
    match delivery.send(address, failure.message.clone(), now).await {
        Ok(id) => tracing::info!(%domain, %address, %id, "DMARC failure report queued"),
        Err(e) => {
            tracing::error!(%domain, %address, error = %e, "could not queue a DMARC failure report")
        }
    }
}

async fn send(
    reporter: &Reporter,
    dns: &crate::mxlookup::Dns,
    delivery: &Outbox,
    report: &Report,
    now: i64,
) {
    for (address, max_size) in &report.rua {
        if max_size.is_some_and(|max| report.xml.len() as u64 > max) {
            tracing::info!(domain = %report.policy_domain, %address, "DMARC report over the size limit; not sent");
            continue;
        }
        if !agreed(dns, &report.policy_domain, address).await {
            tracing::info!(domain = %report.policy_domain, %address, "DMARC report destination did not agree (RFC 7489 7.1); not sent");
            continue;
        }
        let body = reporter.message(report, address, now as u64);
        match delivery.send(address, body, now).await {
            Ok(id) => {
                tracing::info!(domain = %report.policy_domain, %address, %id, messages = report.messages, "DMARC aggregate report queued");
            }
            Err(e) => {
                tracing::error!(domain = %report.policy_domain, %address, error = %e, "could not queue a DMARC report")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dns(&'static str);

    impl scop_dmarc::Resolver for Dns {
        fn lookup(&self, q: &scop_dmarc::Query) -> scop_dmarc::DnsAnswer {
            if q.name == "_dmarc.alice.test" {
                scop_dmarc::DnsAnswer::Records(vec![self.0.as_bytes().to_vec()])
            } else {
                scop_dmarc::DnsAnswer::NxDomain
            }
        }
    }

    const FORGED: &[u8] =
        b"From: boss@alice.test\r\nTo: bob@bob.test\r\nSubject: pay now\r\n\r\nbody\r\n";

    fn evaluate(record: &'static str) -> (scop_dmarc::Input, scop_dmarc::DmarcOutput) {
        scop_dmarc::check_message(
            &Dns(record),
            FORGED,
            None,
            &[],
            scop_dmarc::Options::with_sample(0),
        )
    }

    #[test]
    fn failure_reports_follow_fo_and_ruf_within_the_hourly_limits() {
        let r = Reporter::new("mx.bob.test", "dmarc@bob.test", Arc::default(), 7200);
        let ip: IpAddr = "192.0.2.66".parse().unwrap();
        let reject = scop_dmarc::Disposition::Reject;
        // No ruf: nothing.
        let (input, out) = evaluate("v=DMARC1; p=reject; rua=mailto:a@alice.test");
        r.record_failure(ip, "x@forger.test", FORGED, &input, &out, reject, 7200);
        assert!(r.take_failures().is_empty());
        // fo=d (a DKIM signature failed): none failed here, nothing.
        let (input, out) = evaluate("v=DMARC1; p=reject; ruf=mailto:f@alice.test; fo=d");
        r.record_failure(ip, "x@forger.test", FORGED, &input, &out, reject, 7200);
        assert!(r.take_failures().is_empty());
        // The default fo=0 with nothing aligned: one report per address.
        let (input, out) =
            evaluate("v=DMARC1; p=reject; ruf=mailto:f@alice.test,mailto:g@alice.test!10k");
        r.record_failure(ip, "x@forger.test", FORGED, &input, &out, reject, 7200);
        let f = r.take_failures();
        assert_eq!(f.len(), 2, "{f:?}");
        assert_eq!((f[0].to.as_str(), f[0].max_size), ("f@alice.test", None));
        assert_eq!(f[1].max_size, Some(10 * 1024));
        let text = String::from_utf8_lossy(&f[0].message);
        assert!(text.contains("Feedback-Type: auth-failure"), "{text}");
        assert!(text.contains("Source-IP: 192.0.2.66"), "{text}");
        assert!(text.contains("Delivery-Result: reject"), "{text}");
        assert!(text.contains("Subject: pay now"), "{text}");
        assert!(text.contains("To: f@alice.test"), "{text}");
        // The hourly limit per domain, then a new hour.
        for _ in 1..FAILURES_PER_DOMAIN_HOUR + 5 {
            r.record_failure(ip, "x@forger.test", FORGED, &input, &out, reject, 7300);
        }
        assert_eq!(
            r.take_failures().len(),
            2 * (FAILURES_PER_DOMAIN_HOUR as usize - 1)
        );
        r.record_failure(
            ip,
            "x@forger.test",
            FORGED,
            &input,
            &out,
            reject,
            7200 + 3600,
        );
        assert_eq!(r.take_failures().len(), 2);
    }

    #[test]
    fn external_destinations_need_the_receivers_consent() {
        let none = |_: &str| None;
        assert!(destination_allowed("alice.test", "dmarc@alice.test", none));
        assert!(destination_allowed("mail.alice.test", "r@alice.test", none));
        assert!(!destination_allowed(
            "alice.test",
            "r@reports.example",
            none
        ));
        let mut asked = String::new();
        assert!(destination_allowed(
            "alice.test",
            "r@reports.example",
            |n| {
                asked = n.to_string();
                Some(vec![b"v=DMARC1".to_vec()])
            }
        ));
        assert_eq!(asked, "alice.test._report._dmarc.reports.example");
        assert!(!destination_allowed(
            "alice.test",
            "r@reports.example",
            |_| { Some(vec![b"v=spf1 -all".to_vec()]) }
        ));
        assert!(!destination_allowed("alice.test", "no-at-sign", none));
    }

    #[test]
    fn only_mailto_addresses_are_used() {
        let uris = [
            scop_dmarc::ReportUri {
                uri: "mailto:a@x.test".into(),
                max_size: Some(10_000_000),
            },
            scop_dmarc::ReportUri {
                uri: "https://x.test/r".into(),
                max_size: None,
            },
            scop_dmarc::ReportUri {
                uri: "MAILTO:b@x.test".into(),
                max_size: None,
            },
            scop_dmarc::ReportUri {
                uri: "mailto:c@x.test".into(),
                max_size: None,
            },
        ];
        assert_eq!(
            mailto_addresses(&uris),
            vec![
                ("a@x.test".to_string(), Some(10_000_000)),
                ("b@x.test".to_string(), None)
            ]
        );
        let bad = [scop_dmarc::ReportUri {
            uri: "mailto:a@x.test\r\nBcc: evil@x.test".into(),
            max_size: None,
        }];
        assert!(mailto_addresses(&bad).is_empty());
    }
}
