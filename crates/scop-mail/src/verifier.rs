//! The verifier stage of the receiving side: SPF (from the envelope facts
//! of the session), DKIM and DMARC on each incoming message, an
//! `Authentication-Results` field (RFC 8601), and DMARC enforcement:
//! `p=reject` is refused at the end of data, `p=quarantine` goes to the
//! Junk folder.
//!
//! The protocol libraries are sans-IO with synchronous resolver traits;
//! this stage runs them on a blocking thread whose resolver asks the
//! async [`Dns`] (the validating resolver) and waits for the answer.

use std::net::IpAddr;

use hickory_proto::rr::{RData, RecordType};
use scop_dmarc::Disposition;
use tokio::runtime::Handle;

use crate::mxlookup::{Answer, Dns};

/// Verifier settings.
#[derive(Debug, Clone)]
pub struct Verifier {
    /// DNS for SPF, DKIM key and DMARC record lookups.
    pub dns: Dns,
    /// The `authserv-id` of the Authentication-Results field (our host).
    pub authserv_id: String,
    /// Apply the DMARC disposition (reject, quarantine); when false, only
    /// label.
    pub enforce: bool,
    /// Rows for DMARC aggregate reports, when they are sent.
    pub reports: Option<std::sync::Arc<crate::dmarc_reports::Reporter>>,
}

/// The outcome for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// `Authentication-Results: ...` with CRLF.
    pub field: String,
    /// What DMARC says to do (already `None` when not enforcing).
    pub disposition: Disposition,
    /// The DMARC result keyword (`pass`, `fail`, `none`, ...).
    pub dmarc: String,
}

/// The resolver seen through the synchronous resolver traits of scop-spf,
/// scop-dmarc and scop-dkim: each lookup waits on `handle` (a
/// multi-threaded runtime), so use it from a blocking thread or outside
/// any runtime.
#[derive(Debug)]
pub struct BlockingDns<'a> {
    dns: &'a Dns,
    handle: Handle,
}

impl<'a> BlockingDns<'a> {
    /// Lookups through `dns`, driven by `handle`.
    pub fn new(dns: &'a Dns, handle: Handle) -> Self {
        BlockingDns { dns, handle }
    }

    /// The DKIM key record lookup of `scop_dkim::verify_message`.
    pub fn dkim_txt(&self, name: &str) -> scop_dkim::DnsAnswer {
        match self.txt(name) {
            Answer::Records(v) => scop_dkim::DnsAnswer::Txt(v),
            Answer::NoData => scop_dkim::DnsAnswer::Txt(Vec::new()),
            Answer::NxDomain => scop_dkim::DnsAnswer::NxDomain,
            Answer::Temp(_) => scop_dkim::DnsAnswer::TempError,
        }
    }
}

impl BlockingDns<'_> {
    fn ask(&self, name: &str, t: RecordType) -> Answer<RData> {
        self.handle.block_on(self.dns.query(name, t))
    }

    fn txt(&self, name: &str) -> Answer<Vec<u8>> {
        self.handle.block_on(self.dns.txt(name))
    }
}

impl scop_spf::Resolver for BlockingDns<'_> {
    fn lookup(&self, q: &scop_spf::Query) -> scop_spf::DnsAnswer {
        use scop_spf::{DnsAnswer, QueryType, RData as S};
        let t = match q.qtype {
            QueryType::Txt => RecordType::TXT,
            QueryType::A => RecordType::A,
            QueryType::Aaaa => RecordType::AAAA,
            QueryType::Mx => RecordType::MX,
            QueryType::Ptr => RecordType::PTR,
        };
        if q.qtype == QueryType::Txt {
            // SPF wants the character-strings of each record apart.
            return match self.ask(&q.name, t) {
                Answer::Records(v) => DnsAnswer::Records(
                    v.into_iter()
                        .filter_map(|d| match d {
                            RData::TXT(t) => {
                                Some(S::Txt(t.txt_data.iter().map(|s| s.to_vec()).collect()))
                            }
                            _ => None,
                        })
                        .collect(),
                ),
                Answer::NoData => DnsAnswer::NoData,
                Answer::NxDomain => DnsAnswer::NxDomain,
                Answer::Temp(_) => DnsAnswer::TempFail,
            };
        }
        match self.ask(&q.name, t) {
            Answer::Records(v) => DnsAnswer::Records(
                v.into_iter()
                    .filter_map(|d| match d {
                        RData::A(a) => Some(S::A(a.0)),
                        RData::AAAA(a) => Some(S::Aaaa(a.0)),
                        RData::MX(mx) => Some(S::Mx {
                            preference: mx.preference,
                            exchange: mx.exchange.to_ascii(),
                        }),
                        RData::PTR(p) => Some(S::Ptr(p.0.to_ascii())),
                        _ => None,
                    })
                    .collect(),
            ),
            Answer::NoData => DnsAnswer::NoData,
            Answer::NxDomain => DnsAnswer::NxDomain,
            Answer::Temp(_) => DnsAnswer::TempFail,
        }
    }
}

impl scop_dmarc::Resolver for BlockingDns<'_> {
    fn lookup(&self, q: &scop_dmarc::Query) -> scop_dmarc::DnsAnswer {
        use scop_dmarc::{DnsAnswer, QueryType};
        let answer = match q.qtype {
            QueryType::Txt => self.txt(&q.name),
            QueryType::A => self
                .ask(&q.name, RecordType::A)
                .map_records(|v| vec![Vec::new(); v.len()]),
        };
        match answer {
            Answer::Records(v) => DnsAnswer::Records(v),
            Answer::NoData => DnsAnswer::NoData,
            Answer::NxDomain => DnsAnswer::NxDomain,
            Answer::Temp(_) => DnsAnswer::TempFail,
        }
    }
}

/// `msg` without Authentication-Results fields that claim to come from
/// `authserv_id` (RFC 8601 5: a sender must not be able to forge ours).
pub fn strip_forged_results(msg: &[u8], authserv_id: &str) -> Vec<u8> {
    crate::headers::remove_fields(msg, |line| {
        crate::headers::field_value(line, "Authentication-Results").is_some_and(|v| {
            let v = String::from_utf8_lossy(v);
            let id = v
                .trim_start()
                .split(|c: char| c == ';' || c.is_whitespace())
                .next()
                .unwrap_or("");
            id.eq_ignore_ascii_case(authserv_id)
        })
    })
}

impl Verifier {
    /// The verifier as a stage of the inbound chain: removes results that
    /// claim to be ours, checks `body` from `ip`, and returns the message
    /// with its Authentication-Results field and whether DMARC asks for
    /// quarantine (Junk); a DMARC reject becomes a 550.
    pub async fn stage(
        &self,
        ip: IpAddr,
        helo: &str,
        sender: &str,
        body: &[u8],
        id: &str,
        now: i64,
    ) -> Result<(Vec<u8>, bool), scop_smtp::Reply> {
        let body = strip_forged_results(body, &self.authserv_id);
        let mut sample = [0u8; 1];
        aws_lc_rs::rand::fill(&mut sample).ok();
        let result = self
            .verify(ip, helo, sender, &body, now, sample[0] % 100)
            .await;
        tracing::info!(queue_id = %id, dmarc = %result.dmarc, "verified");
        let junk = match result.disposition {
            Disposition::Reject => {
                return Err(crate::reply(
                    550,
                    (5, 7, 1),
                    "Rejected by the DMARC policy of the From domain",
                ));
            }
            Disposition::Quarantine => true,
            Disposition::None => false,
        };
        let mut out = result.field.into_bytes();
        out.extend_from_slice(&body);
        Ok((out, junk))
    }

    /// Checks `message` received from `ip` (HELO `helo`, MAIL FROM
    /// `mail_from`, empty for the null sender) at Unix time `now`.
    pub async fn verify(
        &self,
        ip: IpAddr,
        helo: &str,
        mail_from: &str,
        message: &[u8],
        now: i64,
        dmarc_sample: u8,
    ) -> Verification {
        let this = self.clone();
        let (helo, mail_from, message) =
            (helo.to_string(), mail_from.to_string(), message.to_vec());
        let handle = Handle::current();
        let done = tokio::task::spawn_blocking(move || {
            this.verify_blocking(handle, ip, &helo, &mail_from, &message, now, dmarc_sample)
        })
        .await;
        done.unwrap_or_else(|e| Verification {
            field: format!(
                "Authentication-Results: {}; none (verifier failed: {e})\r\n",
                self.authserv_id
            ),
            disposition: Disposition::None,
            dmarc: "temperror".into(),
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn verify_blocking(
        &self,
        handle: Handle,
        ip: IpAddr,
        helo: &str,
        mail_from: &str,
        message: &[u8],
        now: i64,
        dmarc_sample: u8,
    ) -> Verification {
        let r = BlockingDns::new(&self.dns, handle);
        let request = scop_spf::Request::mail_from(ip, mail_from, helo);
        let spf = scop_spf::check_host_with(&r, request.clone(), scop_spf::Options::default());
        let now_u = u64::try_from(now).unwrap_or(0);
        let dkim =
            scop_dkim::verify_message(message, scop_dkim::VerifyOptions::at(now_u), |name| {
                r.dkim_txt(name)
            });
        let (input, dmarc) = scop_dmarc::check_message(
            &r,
            message,
            Some(scop_dmarc::SpfAuth::from_spf(&request, &spf)),
            &dkim,
            scop_dmarc::Options::with_sample(dmarc_sample),
        );
        let disposition = if self.enforce {
            dmarc.disposition
        } else {
            Disposition::None
        };
        if let Some(reports) = &self.reports {
            reports.record(ip, &dmarc, &input);
            reports.record_failure(ip, mail_from, message, &input, &dmarc, disposition, now_u);
        }
        let mut ar = scop_dmarc::AuthenticationResults::new(&self.authserv_id)
            .push(scop_dmarc::MethodResult::spf(&request, &spf));
        if dkim.iter().all(|d| d.result == scop_dkim::DkimResult::None) {
            ar = ar.push(scop_dmarc::MethodResult::new("dkim", "none"));
        } else {
            let bs = scop_dkim::signature_b_values(message);
            for (i, d) in dkim.iter().enumerate() {
                let b = bs.get(i).and_then(|b| b.as_deref());
                ar = ar.push(scop_dmarc::MethodResult::dkim(d, b));
            }
        }
        ar = ar.push(scop_dmarc::MethodResult::dmarc(&dmarc));
        let mut field = ar.to_string();
        if !field.ends_with("\r\n") {
            field = field
                .trim_end_matches('\n')
                .trim_end_matches('\r')
                .to_string();
            field.push_str("\r\n");
        }
        Verification {
            field,
            disposition,
            dmarc: dmarc.result.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_results_are_stripped() {
        let msg = b"Authentication-Results: mx.b.test; dmarc=pass\r\nAuthentication-Results: other.test;\r\n spf=pass\r\nauthentication-results:  MX.B.TEST ;\r\n\tdkim=pass\r\nSubject: x\r\n\r\nAuthentication-Results: mx.b.test; body\r\n";
        let out = strip_forged_results(msg, "mx.b.test");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Authentication-Results: other.test;\r\n spf=pass\r\nSubject: x\r\n\r\nAuthentication-Results: mx.b.test; body\r\n"
        );
    }
}
