//! Delivery status notifications (RFC 3464) built with scop-mime (sans-IO):
//! a `multipart/report; report-type=delivery-status` with a human-readable
//! part, the `message/delivery-status` part, and the original message
//! (`message/rfc822`) or its header section (`text/rfc822-headers`,
//! RFC 6522), sent from the null sender.
//!
//! Which DSN a recipient gets follows its `NOTIFY` (RFC 3461 4.1):
//! [`wants_failure`], [`wants_delay`] and [`wants_success`]. Without a
//! `NOTIFY`, RFC 3461 4.1 lets the MTA choose; we act as if
//! `NOTIFY=FAILURE,DELAY` had been given (what most MTAs do, and what a
//! sender without DSN support expects: bounces and a warning when mail is
//! stuck, never a receipt).

use scop_mime::{Builder, DateTime, Mailbox};
use scop_smtp::extension::Ret as SmtpRet;
use scop_smtp::extension::{MailParams, Notify as SmtpNotify, Orcpt as SmtpOrcpt, RcptParams};
use scop_store::{
    DsnParams, MAX_ADDR_TYPE_BYTES, MAX_ADDRESS_BYTES, MAX_ENVID_BYTES, Notify, Orcpt,
    RecipientDsn, Ret,
};

use crate::headers::header_end;

/// Largest original message returned whole in a failure DSN (RET=FULL or
/// no RET); a larger one is returned as its header section only.
pub const FULL_RETURN_MAX: usize = 256 * 1024;
/// Longest line copied from a diagnostic or address into a report, in
/// characters.
pub const REPORT_LINE_MAX: usize = 900;

/// What happened to a recipient (RFC 3464 2.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Permanent failure: the message was not delivered and will not be.
    Failed,
    /// Still trying.
    Delayed,
    /// Delivered into a mailbox here.
    Delivered,
    /// Handed to a next hop that does not speak DSN (RFC 3461 5.2.2): no
    /// further notification will come.
    Relayed,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
            Action::Delivered => "delivered",
            Action::Relayed => "relayed",
        }
    }
}

/// What of the original message a report carries (RFC 3461 4.3, RFC 3464 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    /// The header section, as `text/rfc822-headers`.
    Headers,
    /// The whole message, as `message/rfc822`, when it is at most
    /// [`FULL_RETURN_MAX`] bytes (else the header section).
    Full,
}

impl Returned {
    /// What a failure DSN returns for a message sent with `ret`: the full
    /// message unless the sender asked for headers only.
    pub fn for_failure(ret: Option<Ret>) -> Returned {
        match ret {
            Some(Ret::Hdrs) => Returned::Headers,
            Some(Ret::Full) | None => Returned::Full,
        }
    }
}

/// One recipient's status.
#[derive(Debug, Clone)]
pub struct RecipientStatus {
    /// The recipient address.
    pub recipient: String,
    /// The recipient as the client first gave it (ORCPT: address type and
    /// address), reported as Original-Recipient.
    pub original_recipient: Option<(String, String)>,
    /// What happened.
    pub action: Action,
    /// RFC 3463 status, e.g. `5.1.1` or `4.4.1`.
    pub status: String,
    /// The remote server's reply or our diagnostic.
    pub diagnostic: String,
    /// The host that answered, if any.
    pub remote_mta: Option<String>,
    /// Unix time of the last attempt.
    pub last_attempt: i64,
    /// For delayed recipients: until when we keep trying (Will-Retry-Until).
    pub will_retry_until: Option<i64>,
}

/// The report to build.
#[derive(Debug, Clone)]
pub struct Report<'a> {
    /// Our host name (Reporting-MTA, and the From of the report).
    pub reporting_mta: &'a str,
    /// Where the report goes (the original envelope sender).
    pub to: &'a str,
    /// Our queue id of the original message.
    pub queue_id: &'a str,
    /// The sender's envelope id (ENVID), echoed as Original-Envelope-Id.
    pub envid: Option<&'a str>,
    /// When the original arrived.
    pub arrival: i64,
    /// When the report is made.
    pub now: i64,
    /// Recipients reported on.
    pub recipients: Vec<RecipientStatus>,
    /// The original message.
    pub original: &'a [u8],
    /// How much of it to return.
    pub returned: Returned,
}

/// Whether a DSN may be sent for a message from `sender`: never for the
/// null sender (RFC 5321 6.1, RFC 3461 5.2.2; avoids bounce loops).
pub fn may_report(sender: &str) -> bool {
    !sender.is_empty() && sender != "<>"
}

/// Whether a failure DSN is wanted (no NOTIFY counts as FAILURE).
pub fn wants_failure(notify: Option<Notify>) -> bool {
    match notify {
        None => true,
        Some(Notify::Never) => false,
        Some(Notify::On { failure, .. }) => failure,
    }
}

/// Whether a delay DSN is wanted (no NOTIFY counts as DELAY).
pub fn wants_delay(notify: Option<Notify>) -> bool {
    match notify {
        None => true,
        Some(Notify::Never) => false,
        Some(Notify::On { delay, .. }) => delay,
    }
}

/// Whether a success DSN is wanted: only on an explicit SUCCESS.
pub fn wants_success(notify: Option<Notify>) -> bool {
    matches!(notify, Some(Notify::On { success: true, .. }))
}

/// The DSN parameters of an SMTP transaction, as the store keeps them
/// (`rcpts` in the order of the queued recipients).
pub fn params_from_smtp(mail: &MailParams, rcpts: &[RcptParams]) -> DsnParams {
    DsnParams {
        ret: mail.ret.map(|r| match r {
            SmtpRet::Full => Ret::Full,
            SmtpRet::Hdrs => Ret::Hdrs,
        }),
        envid: mail.envid.clone().filter(|e| e.len() <= MAX_ENVID_BYTES),
        recipients: rcpts.iter().map(recipient_from_smtp).collect(),
        requiretls: mail.requiretls,
    }
}

/// One recipient's DSN parameters, as the store keeps them.
pub fn recipient_from_smtp(p: &RcptParams) -> RecipientDsn {
    RecipientDsn {
        notify: p.notify.map(|n| match n {
            SmtpNotify::Never => Notify::Never,
            SmtpNotify::On {
                success,
                failure,
                delay,
            } => Notify::On {
                success,
                failure,
                delay,
            },
        }),
        // An ORCPT the store could not keep is dropped, not the message.
        orcpt: p
            .orcpt
            .as_ref()
            .filter(|o| {
                o.address.len() <= MAX_ADDRESS_BYTES && o.addr_type.len() <= MAX_ADDR_TYPE_BYTES
            })
            .map(|o| Orcpt {
                addr_type: o.addr_type.clone(),
                address: o.address.clone(),
            }),
    }
}

/// MAIL parameters that pass RET and ENVID on to a next hop (RFC 3461 5.2.1).
pub fn mail_params(ret: Option<Ret>, envid: Option<&str>, requiretls: bool) -> MailParams {
    MailParams {
        ret: ret.map(|r| match r {
            Ret::Full => SmtpRet::Full,
            Ret::Hdrs => SmtpRet::Hdrs,
        }),
        envid: envid.map(str::to_string),
        requiretls,
        ..MailParams::default()
    }
}

/// RCPT parameters that pass NOTIFY and ORCPT on to a next hop
/// (RFC 3461 5.2.1).
pub fn rcpt_params(d: &RecipientDsn) -> RcptParams {
    RcptParams {
        notify: d.notify.map(|n| match n {
            Notify::Never => SmtpNotify::Never,
            Notify::On {
                success,
                failure,
                delay,
            } => SmtpNotify::On {
                success,
                failure,
                delay,
            },
        }),
        orcpt: d.orcpt.as_ref().map(|o| SmtpOrcpt {
            addr_type: o.addr_type.clone(),
            address: o.address.clone(),
        }),
        other: Vec::new(),
    }
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(REPORT_LINE_MAX)
        .collect()
}

/// The report message (CRLF), ready to enqueue from the null sender.
pub fn build(r: &Report<'_>) -> Vec<u8> {
    let has = |a: Action| r.recipients.iter().any(|s| s.action == a);
    let (subject, kind) = if has(Action::Failed) {
        ("Undelivered Mail Returned to Sender", "failed")
    } else if has(Action::Delayed) {
        ("Delayed Mail (still being retried)", "delayed")
    } else {
        ("Successful Mail Delivery Report", "success")
    };
    let mut human = String::new();
    human.push_str(&format!(
        "This is the mail system at host {}.\n\n",
        one_line(r.reporting_mta)
    ));
    if has(Action::Failed) {
        human.push_str(
            "Your message could not be delivered to one or more recipients.\n\
             It is attached below.\n\n",
        );
    } else if has(Action::Delayed) {
        let until = r
            .recipients
            .iter()
            .filter_map(|s| s.will_retry_until)
            .max()
            .map(|t| format!(" until {}", DateTime::from_unix_timestamp(t).to_rfc5322()))
            .unwrap_or_default();
        human.push_str(&format!(
            "Your message has not been delivered yet to one or more recipients.\n\
             The mail system will keep trying{until}; you do not need to send it again.\n\n",
        ));
    } else {
        human.push_str(
            "Your message was delivered, or handed on to a system that sends no\n\
             further notifications, for the recipients below.\n\n",
        );
    }
    for s in &r.recipients {
        human.push_str(&format!(
            "<{}>: {}: {}\n",
            one_line(&s.recipient),
            s.action.as_str(),
            one_line(&s.diagnostic)
        ));
    }

    let mut status = String::new();
    if let Some(envid) = r.envid {
        status.push_str(&format!("Original-Envelope-Id: {}\r\n", one_line(envid)));
    }
    status.push_str(&format!(
        "Reporting-MTA: dns; {}\r\nX-Queue-ID: {}\r\nArrival-Date: {}\r\n",
        one_line(r.reporting_mta),
        one_line(r.queue_id),
        DateTime::from_unix_timestamp(r.arrival).to_rfc5322()
    ));
    for s in &r.recipients {
        status.push_str("\r\n");
        if let Some((t, a)) = &s.original_recipient {
            status.push_str(&format!(
                "Original-Recipient: {}; {}\r\n",
                one_line(t),
                one_line(a)
            ));
        }
        status.push_str(&format!(
            "Final-Recipient: rfc822; {}\r\nAction: {}\r\nStatus: {}\r\n",
            one_line(&s.recipient),
            s.action.as_str(),
            one_line(&s.status)
        ));
        if let Some(m) = &s.remote_mta {
            status.push_str(&format!("Remote-MTA: dns; {}\r\n", one_line(m)));
        }
        status.push_str(&format!(
            "Diagnostic-Code: smtp; {}\r\nLast-Attempt-Date: {}\r\n",
            one_line(&s.diagnostic),
            DateTime::from_unix_timestamp(s.last_attempt).to_rfc5322()
        ));
        if let Some(t) = s.will_retry_until {
            status.push_str(&format!(
                "Will-Retry-Until: {}\r\n",
                DateTime::from_unix_timestamp(t).to_rfc5322()
            ));
        }
    }

    let b = Builder::new()
        .from(Mailbox::new(
            Some("Mail Delivery System"),
            &format!("MAILER-DAEMON@{}", r.reporting_mta),
        ))
        .to(Mailbox::new(None, r.to))
        .subject(subject)
        .date(DateTime::from_unix_timestamp(r.now))
        .message_id(format!(
            "dsn.{kind}.{}.{}@{}",
            r.queue_id, r.now, r.reporting_mta
        ))
        .header("Auto-Submitted", "auto-replied")
        .multipart("report")
        .multipart_param("report-type", "delivery-status")
        .text(human)
        .mime_part("message/delivery-status", status.into_bytes());
    let full = r.returned == Returned::Full && r.original.len() <= FULL_RETURN_MAX;
    let b = if full {
        b.message_rfc822(r.original.to_vec())
    } else {
        b.mime_part(
            "text/rfc822-headers",
            r.original[..header_end(r.original)].to_vec(),
        )
    };
    b.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGINAL: &[u8] = b"From: alice@a.test\r\nSubject: hello\r\n\r\nsecret body\r\n";

    fn status(action: Action, status: &str) -> RecipientStatus {
        RecipientStatus {
            recipient: "bob@gone.test".into(),
            original_recipient: None,
            action,
            status: status.into(),
            diagnostic: "connection refused\r\nInjected: x".into(),
            remote_mta: None,
            last_attempt: 1_700_399_000,
            will_retry_until: None,
        }
    }

    fn report(recipients: Vec<RecipientStatus>, returned: Returned) -> Report<'static> {
        Report {
            reporting_mta: "mail.a.test",
            to: "alice@a.test",
            queue_id: "Q1",
            envid: None,
            arrival: 1_700_000_000,
            now: 1_700_400_000,
            recipients,
            original: ORIGINAL,
            returned,
        }
    }

    /// The content types of the report's parts, and the parsed message.
    fn parts(msg: &[u8]) -> (Vec<String>, scop_mime::Message<'_>) {
        let parsed = scop_mime::parse(msg).unwrap();
        assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
        let m = parsed.message;
        assert_eq!(m.content_type().mime_type, "multipart/report");
        let types = match m.body() {
            scop_mime::Body::Multipart(mp) => mp
                .parts()
                .iter()
                .map(|p| p.content_type().mime_type)
                .collect(),
            other => panic!("not multipart: {other:?}"),
        };
        (types, m)
    }

    #[test]
    fn failure_report_returns_the_full_message() {
        let msg = build(&report(
            vec![status(Action::Failed, "4.4.1")],
            Returned::Full,
        ));
        let (types, m) = parts(&msg);
        assert_eq!(
            m.header("Subject").unwrap().text(),
            "Undelivered Mail Returned to Sender"
        );
        assert_eq!(
            types,
            ["text/plain", "message/delivery-status", "message/rfc822"]
        );
        let text = String::from_utf8_lossy(&msg);
        assert!(text.contains("multipart/report"), "{text}");
        assert!(text.contains("report-type=delivery-status"), "{text}");
        assert!(text.contains("Action: failed"));
        assert!(text.contains("Final-Recipient: rfc822; bob@gone.test"));
        assert!(text.contains("Subject: hello"));
        assert!(text.contains("secret body"), "RET=FULL returns the body");
        assert!(!text.contains("\nInjected: x"), "no header injection");
        assert!(!text.contains("Original-Envelope-Id"));
        assert!(!text.contains("Will-Retry-Until"));
    }

    #[test]
    fn hdrs_returns_only_the_header_section() {
        assert_eq!(Returned::for_failure(Some(Ret::Hdrs)), Returned::Headers);
        assert_eq!(Returned::for_failure(Some(Ret::Full)), Returned::Full);
        assert_eq!(Returned::for_failure(None), Returned::Full);
        let msg = build(&report(
            vec![status(Action::Failed, "5.1.1")],
            Returned::Headers,
        ));
        let (types, _) = parts(&msg);
        assert_eq!(
            types,
            [
                "text/plain",
                "message/delivery-status",
                "text/rfc822-headers"
            ]
        );
        let text = String::from_utf8_lossy(&msg);
        assert!(text.contains("Subject: hello"));
        assert!(!text.contains("secret body"));
    }

    #[test]
    fn a_large_message_is_returned_as_headers() {
        let mut big = b"Subject: big\r\n\r\n".to_vec();
        big.extend(std::iter::repeat_n(b'x', FULL_RETURN_MAX));
        let mut r = report(vec![status(Action::Failed, "5.0.0")], Returned::Full);
        r.original = &big;
        let (types, _) = parts(&build(&r));
        assert_eq!(types[2], "text/rfc822-headers");
    }

    #[test]
    fn delay_report_has_will_retry_until_and_ids() {
        let mut st = status(Action::Delayed, "4.4.1");
        st.will_retry_until = Some(1_700_432_000);
        st.original_recipient = Some(("rfc822".into(), "Bob+list@gone.test".into()));
        let mut r = report(vec![st], Returned::Headers);
        r.envid = Some("QQ314159");
        let msg = build(&r);
        let (types, m) = parts(&msg);
        assert_eq!(
            m.header("Subject").unwrap().text(),
            "Delayed Mail (still being retried)"
        );
        assert_eq!(types[2], "text/rfc822-headers");
        let text = String::from_utf8_lossy(&msg);
        assert!(text.contains("Action: delayed"), "{text}");
        assert!(text.contains("Status: 4.4.1"), "{text}");
        assert!(
            text.contains("Original-Envelope-Id: QQ314159\r\n"),
            "{text}"
        );
        assert!(
            text.contains("Original-Recipient: rfc822; Bob+list@gone.test\r\n"),
            "{text}"
        );
        let until = DateTime::from_unix_timestamp(1_700_432_000).to_rfc5322();
        assert!(
            text.contains(&format!("Will-Retry-Until: {until}\r\n")),
            "{text}"
        );
    }

    #[test]
    fn success_report_says_relayed() {
        let msg = build(&report(
            vec![status(Action::Relayed, "2.0.0")],
            Returned::Headers,
        ));
        let text = String::from_utf8_lossy(&msg);
        assert!(text.contains("Successful Mail Delivery Report"), "{text}");
        assert!(text.contains("Action: relayed"), "{text}");
    }

    #[test]
    fn notify_decides_which_reports_go_out() {
        let never = Some(Notify::Never);
        let success = Some(Notify::On {
            success: true,
            failure: false,
            delay: false,
        });
        let fd = Some(Notify::On {
            success: false,
            failure: true,
            delay: true,
        });
        // Unspecified: failure and delay, no success (our choice under
        // RFC 3461 4.1).
        assert!(wants_failure(None) && wants_delay(None) && !wants_success(None));
        assert!(!wants_failure(never) && !wants_delay(never) && !wants_success(never));
        assert!(!wants_failure(success) && !wants_delay(success) && wants_success(success));
        assert!(wants_failure(fd) && wants_delay(fd) && !wants_success(fd));
    }

    #[test]
    fn smtp_parameters_convert_both_ways() {
        let mail = MailParams {
            ret: Some(SmtpRet::Hdrs),
            envid: Some("id-1".into()),
            requiretls: true,
            ..MailParams::default()
        };
        let rcpt = RcptParams {
            notify: Some(SmtpNotify::On {
                success: true,
                failure: false,
                delay: true,
            }),
            orcpt: Some(SmtpOrcpt {
                addr_type: "rfc822".into(),
                address: "a+b@c.test".into(),
            }),
            other: Vec::new(),
        };
        let too_long = RcptParams {
            orcpt: Some(SmtpOrcpt {
                addr_type: "rfc822".into(),
                address: "a".repeat(MAX_ADDRESS_BYTES + 1),
            }),
            ..RcptParams::default()
        };
        let p = params_from_smtp(&mail, &[rcpt.clone(), too_long]);
        assert_eq!(p.ret, Some(Ret::Hdrs));
        assert_eq!(p.envid.as_deref(), Some("id-1"));
        assert_eq!(p.recipients[1].orcpt, None, "an over-long ORCPT is dropped");
        let back = rcpt_params(&p.recipients[0]);
        assert_eq!(back, rcpt);
        assert!(p.requiretls);
        let m = mail_params(p.ret, p.envid.as_deref(), p.requiretls);
        assert_eq!((m.ret, m.envid, m.requiretls), (mail.ret, mail.envid, true));
    }

    #[test]
    fn null_sender_gets_no_report() {
        assert!(!may_report(""));
        assert!(!may_report("<>"));
        assert!(may_report("a@b.test"));
    }
}
