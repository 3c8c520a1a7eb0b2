//! SMTP TLS reports (RFC 8460), sending side: the relay counts, per
//! destination domain and per policy (DANE's TLSA records, an MTA-STS
//! policy, or none), the TLS sessions it opened and how each failed; at
//! the end of each reporting interval every domain that publishes a
//! `_smtp._tls` TXT record gets one JSON report (gzip'd,
//! [`scop_mta::tlsrpt`]) at each of its `mailto:` addresses, through the
//! outbound queue, and POSTed to each of its `https:` URLs (RFC 8460
//! 5.4; the server's certificate checked against the trust store, no
//! redirect followed, [`POST_TIMEOUT`] at most).
//!
//! ```text
//!  relay ──record(policy, outcome)──► TlsReporter (in memory)
//!  every interval ──take()──► per domain: _smtp._tls TXT ──► message ──► queue ──► rua
//! ```
//!
//! Counts live in memory (within [`scop_mta::tlsrpt::MAX_DOMAINS`]
//! domains): a restart loses those of the running interval, except at a
//! graceful stop, which sends them. Reports carry `TLS-Required: No`
//! (RFC 8689 5): they must reach a domain whose TLS is what they report
//! on as broken (RFC 8460 5.3).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use scop_mta::dane::HostSecurity;
use scop_mta::mta_sts::Policy as StsPolicy;
use scop_mta::tlsrpt::{self, Failure, Policy, Rua, Tally};

use crate::dmarc_reports::Outbox;
use crate::outbound::{TlsOutcome, certificate_failure};
use crate::tls::Verdict;

/// Collects session outcomes between reports.
pub struct TlsReporter {
    /// Who reports (our host name): the report's `organization-name` and
    /// the submitter of its file name and headers.
    pub submitter: String,
    /// The report's `contact-info` and the From of its message.
    pub email: String,
    /// DKIM signers per domain: reports are signed with those of the
    /// From domain (RFC 8460 5.3).
    pub signers: Arc<HashMap<String, Vec<scop_dkim::Signer>>>,
    /// How often reports go out (RFC 8460 4.1 suggests a day).
    pub interval: std::time::Duration,
    /// The TLS configuration for `https:` destinations (PKIX); none:
    /// those are skipped.
    pub https: Option<Arc<rustls::ClientConfig>>,
    state: Mutex<(u64, Tally)>,
}

impl std::fmt::Debug for TlsReporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsReporter")
            .field("submitter", &self.submitter)
            .finish()
    }
}

/// The policy a session to a host of `domain` was held to, as a report
/// names it: DANE's TLSA records, else an MTA-STS policy when one was
/// found (`enforce` or `testing`), or one was announced but could not be
/// had (`sts_failed`; no policy strings then), else none.
pub fn policy_of(
    domain: &str,
    host: &str,
    security: &HostSecurity,
    sts: Option<&StsPolicy>,
    sts_failed: bool,
) -> Policy {
    match (security, sts) {
        (HostSecurity::Authenticated(records), _) => Policy::tlsa(domain, host, records),
        (HostSecurity::Encrypted, _) => Policy::tlsa(domain, host, &[]),
        (_, Some(p)) if p.mode != scop_mta::mta_sts::Mode::None => Policy::sts(domain, p),
        (_, None) if sts_failed => Policy {
            kind: scop_mta::tlsrpt::PolicyType::Sts,
            ..Policy::none(domain)
        },
        _ => Policy::none(domain),
    }
}

/// How TLS reports judge a session that established TLS with the checks
/// its [`HostSecurity`] asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Judged {
    /// As it went.
    #[default]
    AsIs,
    /// By the certificate check an `enforce` policy would have made: the
    /// host is named by a policy in `testing` mode (RFC 8461 5).
    AsEnforced,
    /// Failed: the host is not named by a `testing` policy, or the
    /// domain's announced policy could not be had (`sts_failure`).
    Failed(tlsrpt::ResultType, String),
}

impl Judged {
    /// How sessions to `host` are judged, under the MTA-STS policy `sts`
    /// found for its domain or the reason `sts_failure` none was; only
    /// hosts DANE left opportunistic are judged so.
    pub fn of(
        host: &str,
        security: &HostSecurity,
        sts: Option<&StsPolicy>,
        sts_failure: Option<&(tlsrpt::ResultType, String)>,
    ) -> Judged {
        use scop_mta::mta_sts::Mode;
        if *security != HostSecurity::Opportunistic {
            return Judged::AsIs;
        }
        match (sts, sts_failure) {
            (Some(p), _) if p.mode == Mode::Testing && p.mx_matches(host) => Judged::AsEnforced,
            (Some(p), _) if p.mode == Mode::Testing => Judged::Failed(
                tlsrpt::ResultType::ValidationFailure,
                "MX host not named by the MTA-STS policy".into(),
            ),
            (None, Some((kind, why))) => Judged::Failed(*kind, why.clone()),
            _ => Judged::AsIs,
        }
    }

    /// `outcome` as judged; `verdict`: what the observing check of an
    /// [`Judged::AsEnforced`] session found.
    pub fn outcome(&self, outcome: TlsOutcome, verdict: Option<&Verdict>) -> TlsOutcome {
        match (outcome, self) {
            (TlsOutcome::Established, Judged::Failed(kind, why)) => {
                TlsOutcome::Failed(*kind, why.clone())
            }
            (TlsOutcome::Established, Judged::AsEnforced) => {
                match verdict.and_then(|v| v.lock().ok()?.take()) {
                    Some(e) => TlsOutcome::Failed(certificate_failure(&e, false), e.to_string()),
                    None => TlsOutcome::Established,
                }
            }
            (o, _) => o,
        }
    }
}

impl TlsReporter {
    /// A reporter sending every `interval`, the first starting at `now`.
    pub fn new(
        submitter: &str,
        email: &str,
        signers: Arc<HashMap<String, Vec<scop_dkim::Signer>>>,
        interval: std::time::Duration,
        now: u64,
    ) -> Self {
        TlsReporter {
            submitter: submitter.to_string(),
            email: email.to_string(),
            signers,
            interval,
            https: None,
            state: Mutex::new((now, Tally::default())),
        }
    }

    /// Counts one session to `mx` at `ip` (from `source`, when bound)
    /// under `policy`. A session that went on in cleartext counts as a
    /// `starttls-not-supported` failure.
    pub fn record(
        &self,
        policy: &Policy,
        outcome: &TlsOutcome,
        mx: &str,
        ip: IpAddr,
        source: Option<IpAddr>,
    ) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let failure = |result, detail: &str| Failure {
            result,
            sending_ip: source,
            receiving_mx: Some(mx.to_ascii_lowercase()),
            receiving_ip: Some(ip),
            detail: Some(detail.to_string()),
        };
        match outcome {
            TlsOutcome::Established => state.1.success(policy),
            TlsOutcome::Cleartext => {
                let f = failure(
                    tlsrpt::ResultType::StarttlsNotSupported,
                    "STARTTLS not offered",
                );
                state.1.failure(policy, f)
            }
            TlsOutcome::Failed(result, detail) => state.1.failure(policy, failure(*result, detail)),
        }
    }

    /// The interval's reports, one per domain, and the interval (start,
    /// end); the next interval starts at `now`.
    pub fn take(&self, now: u64) -> (u64, u64, Vec<tlsrpt::DomainReport>) {
        let Ok(mut state) = self.state.lock() else {
            return (now, now, Vec::new());
        };
        let since = std::mem::replace(&mut state.0, now);
        let dropped = state.1.dropped();
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "TLS reports: sessions past the counting bounds were not counted"
            );
        }
        (since, now, state.1.take())
    }

    /// What a report on the interval `(start, end)` says about itself.
    fn meta<'a>(&'a self, report_id: &'a str, interval: (u64, u64)) -> tlsrpt::ReportMeta<'a> {
        tlsrpt::ReportMeta {
            organization: &self.submitter,
            contact: &self.email,
            report_id,
            start: interval.0,
            end: interval.1,
        }
    }

    /// The report on `report` as a message to `to`, DKIM-signed when we
    /// hold keys of the From domain.
    pub fn message(
        &self,
        report: &tlsrpt::DomainReport,
        interval: (u64, u64),
        report_id: &str,
        to: &str,
        now: u64,
    ) -> Vec<u8> {
        let meta = self.meta(report_id, interval);
        let message_id = format!("tlsrpt.{report_id}@{}", self.submitter);
        let unsigned = tlsrpt::message(
            &tlsrpt::MessageMeta {
                from: &self.email,
                to,
                submitter: &self.submitter,
                date: now,
                message_id: &message_id,
            },
            &meta,
            report,
        );
        // RFC 8689 5: deliver even where TLS fails (what the report is
        // about); the header goes before the signature covers the rest.
        let mut message = b"TLS-Required: No\r\n".to_vec();
        message.extend_from_slice(&unsigned);
        crate::dmarc_reports::signed(&self.signers, &self.email, message, now)
    }
}

/// Sends the reports of `reporter` every its interval until `stop` (and
/// once more at stop, so that a graceful restart loses nothing): each
/// domain's report goes to the destinations of its `_smtp._tls` record
/// (mail from the null sender, or an HTTPS POST); domains without a
/// record get none.
pub async fn send_loop(
    reporter: Arc<TlsReporter>,
    dns: crate::mxlookup::Dns,
    outbox: Outbox,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let interval = reporter.interval;
    let mut next = tokio::time::Instant::now() + interval;
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep_until(next) => false,
            _ = stop.changed() => true,
        };
        next = tokio::time::Instant::now() + interval;
        let now = crate::now();
        let (start, end, reports) = reporter.take(now as u64);
        for report in reports {
            send(&reporter, &dns, &outbox, &report, (start, end), now).await;
        }
        if stopping || *stop.borrow() {
            return;
        }
    }
}

/// How long an upload to an `https:` destination may take, at most.
pub const POST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The destinations of `domain`'s TLSRPT record; none when it has no
/// valid one.
async fn rua(dns: &crate::mxlookup::Dns, domain: &str) -> Vec<Rua> {
    let txts = match dns.txt(&format!("_smtp._tls.{domain}")).await {
        crate::mxlookup::Answer::Records(v) => v,
        _ => return Vec::new(),
    };
    let txts: Vec<String> = txts
        .iter()
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .collect();
    let refs: Vec<&str> = txts.iter().map(String::as_str).collect();
    match tlsrpt::record(&refs) {
        Ok(r) => r.rua,
        Err(e) => {
            tracing::debug!(%domain, error = %e, "no TLS report destination");
            Vec::new()
        }
    }
}

async fn send(
    reporter: &TlsReporter,
    dns: &crate::mxlookup::Dns,
    outbox: &Outbox,
    report: &tlsrpt::DomainReport,
    interval: (u64, u64),
    now: i64,
) {
    let domain = &report.domain;
    let destinations = rua(dns, domain).await;
    if destinations.is_empty() {
        return;
    }
    let report_id = format!("{}.{}", crate::queue_id(), reporter.submitter);
    for destination in destinations {
        match destination {
            Rua::Mailto(address) => {
                let body = reporter.message(report, interval, &report_id, &address, now as u64);
                match outbox.send(&address, body, now).await {
                    Ok(id) => tracing::info!(%domain, %address, %id, "TLS report queued"),
                    Err(e) => {
                        tracing::error!(%domain, %address, error = %e, "could not queue a TLS report")
                    }
                }
            }
            Rua::Https(url) => {
                let Some(https) = &reporter.https else {
                    tracing::info!(%domain, %url, "TLS report: no HTTPS trust store (MTA-STS off); not sent");
                    continue;
                };
                let meta = reporter.meta(&report_id, interval);
                let body = tlsrpt::gzip(tlsrpt::to_json(&meta, report).as_bytes());
                match tokio::time::timeout(POST_TIMEOUT, post(https, dns, &url, &body)).await {
                    Ok(Ok(())) => tracing::info!(%domain, %url, "TLS report uploaded"),
                    Ok(Err(e)) => {
                        tracing::warn!(%domain, %url, error = %e, "TLS report upload failed")
                    }
                    Err(_) => tracing::warn!(%domain, %url, "TLS report upload timed out"),
                }
            }
        }
    }
}

/// POSTs `body` to `url` (RFC 8460 5.4): taken on a 2xx answer.
async fn post(
    https: &Arc<rustls::ClientConfig>,
    dns: &crate::mxlookup::Dns,
    url: &str,
    body: &[u8],
) -> Result<(), String> {
    let (host, port, request) = tlsrpt::https_request(url, body).map_err(|e| e.to_string())?;
    let addrs = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => dns.addresses(&host).await?,
    };
    let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
    let mut last = format!("{host} has no address");
    for ip in addrs {
        let attempt =
            crate::mta_sts::https_exchange(https, ip, port, name.clone(), &request, |head, _| {
                match tlsrpt::https_accepted(head)? {
                    true => Some(Ok(())),
                    false => {
                        let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
                        Some(Err(format!("refused: {}", String::from_utf8_lossy(line))))
                    }
                }
            });
        match attempt.await {
            Ok(()) => return Ok(()),
            Err(crate::mta_sts::HttpsError::Tls(e)) => last = format!("{ip}: TLS: {e}"),
            Err(crate::mta_sts::HttpsError::Other(e)) => last = format!("{ip}: {e}"),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use scop_mta::dane::Tlsa;
    use scop_mta::tlsrpt::{PolicyType, ResultType};

    fn sts(mode: &str) -> StsPolicy {
        let text =
            format!("version: STSv1\r\nmode: {mode}\r\nmx: *.example.net\r\nmax_age: 86400\r\n");
        StsPolicy::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn a_session_is_reported_under_the_policy_that_applied_to_it() {
        let tlsa = Tlsa {
            usage: 3,
            selector: 1,
            matching: 1,
            data: vec![0xab; 32],
        };
        let dane = policy_of(
            "Example.NET.",
            "mx.example.net",
            &HostSecurity::Authenticated(vec![tlsa.clone()]),
            Some(&sts("enforce")),
            false,
        );
        assert_eq!(dane.kind, PolicyType::Tlsa, "DANE takes precedence");
        assert_eq!(dane.domain, "example.net");
        assert_eq!(dane.strings, vec![tlsa.to_text()]);
        assert_eq!(dane.mx_host, vec!["mx.example.net".to_string()]);
        let unusable = policy_of(
            "example.net",
            "mx.example.net",
            &HostSecurity::Encrypted,
            None,
            false,
        );
        assert_eq!(
            (unusable.kind, unusable.strings.len()),
            (PolicyType::Tlsa, 0)
        );
        for (security, mode) in [
            (HostSecurity::Pkix, "enforce"),
            (HostSecurity::Opportunistic, "testing"),
        ] {
            let p = policy_of(
                "example.net",
                "mx.example.net",
                &security,
                Some(&sts(mode)),
                false,
            );
            assert_eq!(p.kind, PolicyType::Sts, "{mode}");
            assert!(
                p.strings.contains(&format!("mode: {mode}")),
                "{:?}",
                p.strings
            );
            assert_eq!(p.mx_host, vec!["*.example.net".to_string()]);
        }
        for sts in [Some(sts("none")), None] {
            let p = policy_of(
                "example.net",
                "mx.example.net",
                &HostSecurity::Opportunistic,
                sts.as_ref(),
                false,
            );
            assert_eq!(p.kind, PolicyType::NoPolicyFound);
        }
        // Announced but not had: an MTA-STS policy without its text.
        let p = policy_of(
            "example.net",
            "mx.example.net",
            &HostSecurity::Opportunistic,
            None,
            true,
        );
        assert_eq!(
            (p.kind, p.strings.len(), p.mx_host.len()),
            (PolicyType::Sts, 0, 0)
        );
    }

    #[test]
    fn sessions_are_judged_as_the_mta_sts_policy_would() {
        let host = "mx.example.net";
        let open = HostSecurity::Opportunistic;
        let fetch = (ResultType::StsWebpkiInvalid, "bad certificate".to_string());
        assert_eq!(
            Judged::of(host, &open, Some(&sts("testing")), None),
            Judged::AsEnforced
        );
        let unnamed = Judged::of("mx.other.test", &open, Some(&sts("testing")), None);
        assert!(matches!(
            unnamed,
            Judged::Failed(ResultType::ValidationFailure, _)
        ));
        assert_eq!(
            Judged::of(host, &open, None, Some(&fetch)),
            Judged::Failed(fetch.0, fetch.1.clone())
        );
        for (security, policy) in [
            (HostSecurity::Pkix, Some(sts("enforce"))),
            (HostSecurity::Encrypted, Some(sts("testing"))),
            (HostSecurity::Opportunistic, None),
        ] {
            assert_eq!(
                Judged::of(host, &security, policy.as_ref(), None),
                Judged::AsIs
            );
        }

        // What the observing check found replaces the success.
        let verdict = crate::tls::Verdict::default();
        let established = || TlsOutcome::Established;
        assert_eq!(
            Judged::AsEnforced.outcome(established(), Some(&verdict)),
            established()
        );
        *verdict.lock().unwrap() = Some(rustls::Error::InvalidCertificate(
            rustls::CertificateError::NotValidForName,
        ));
        assert!(matches!(
            Judged::AsEnforced.outcome(established(), Some(&verdict)),
            TlsOutcome::Failed(ResultType::CertificateHostMismatch, _)
        ));
        let failed = Judged::Failed(fetch.0, fetch.1.clone());
        assert_eq!(
            failed.outcome(established(), None),
            TlsOutcome::Failed(fetch.0, fetch.1)
        );
        // A session that failed on its own stays as it failed.
        assert_eq!(
            failed.outcome(TlsOutcome::Cleartext, None),
            TlsOutcome::Cleartext
        );
    }

    /// A reporter for relay.a.test from `email`, its interval from 1000.
    fn reporter(email: &str, signers: HashMap<String, Vec<scop_dkim::Signer>>) -> TlsReporter {
        let day = std::time::Duration::from_secs(86_400);
        TlsReporter::new("relay.a.test", email, Arc::new(signers), day, 1000)
    }

    #[test]
    fn outcomes_become_counts_and_the_interval_restarts() {
        let r = reporter("tlsrpt@a.test", HashMap::new());
        let policy = Policy::none("example.net");
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let source: IpAddr = "198.51.100.1".parse().unwrap();
        r.record(
            &policy,
            &TlsOutcome::Established,
            "MX.example.net",
            ip,
            None,
        );
        r.record(
            &policy,
            &TlsOutcome::Established,
            "mx.example.net",
            ip,
            None,
        );
        r.record(
            &policy,
            &TlsOutcome::Cleartext,
            "mx.example.net",
            ip,
            Some(source),
        );
        let expired = TlsOutcome::Failed(ResultType::CertificateExpired, "expired".into());
        r.record(&policy, &expired, "MX.example.net", ip, Some(source));
        r.record(&policy, &expired, "mx.example.net", ip, Some(source));
        let (start, end, reports) = r.take(2000);
        assert_eq!((start, end), (1000, 2000));
        assert_eq!(reports.len(), 1);
        let p = &reports[0].policies[0];
        assert_eq!((p.successes, p.failures), (2, 3));
        let rows: Vec<_> = p
            .details
            .iter()
            .map(|(f, n)| {
                let f = (
                    f.result,
                    f.receiving_mx.as_deref(),
                    f.receiving_ip,
                    f.sending_ip,
                );
                (f, *n)
            })
            .collect();
        let mx = Some("mx.example.net");
        for (result, n) in [
            (ResultType::StarttlsNotSupported, 1),
            (ResultType::CertificateExpired, 2),
        ] {
            let row = ((result, mx, Some(ip), Some(source)), n);
            assert!(rows.contains(&row), "{rows:?}");
        }
        let (start, _, reports) = r.take(3000);
        assert_eq!(start, 2000);
        assert!(reports.is_empty());
    }

    #[test]
    fn a_report_message_asks_for_no_tls_policy_and_is_signed() {
        use scop_dkim::{KeyKind, Signer, SigningKey};
        let signer = Signer::new(
            SigningKey::generate(KeyKind::Ed25519).unwrap(),
            "a.test",
            "rpt",
        )
        .unwrap();
        let r = reporter(
            "tlsrpt@a.test",
            HashMap::from([("a.test".to_string(), vec![signer])]),
        );
        let policy = Policy::none("example.net");
        r.record(
            &policy,
            &TlsOutcome::Established,
            "mx.example.net",
            "192.0.2.7".parse().unwrap(),
            None,
        );
        let (start, end, reports) = r.take(2000);
        let m = r.message(&reports[0], (start, end), "id1", "rua@example.net", 2000);
        let text = String::from_utf8_lossy(&m);
        assert!(text.starts_with("DKIM-Signature:"), "{text}");
        let headers = &text[..text.find("\r\n\r\n").unwrap()];
        assert!(headers.contains("\r\nTLS-Required: No\r\n"), "{headers}");
        assert!(
            headers.contains("TLS-Report-Domain: example.net"),
            "{headers}"
        );
        // Without a key of the From domain: unsigned.
        let r = reporter("tlsrpt@b.test", HashMap::new());
        let m = r.message(&reports[0], (start, end), "id1", "rua@example.net", 2000);
        assert!(m.starts_with(b"TLS-Required: No\r\n"));
    }
}
