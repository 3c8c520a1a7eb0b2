//! Delivery status notifications (RFC 3464) built with scop-mime (sans-IO):
//! a `multipart/report; report-type=delivery-status` with a human-readable
//! part, the `message/delivery-status` part, and the original header
//! (`text/rfc822-headers`, RFC 6522), sent from the null sender.

use scop_mime::{Builder, DateTime, Mailbox};

use crate::headers::header_end;

/// What happened to a recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Permanent failure: the message was not delivered and will not be.
    Failed,
    /// Still trying.
    Delayed,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
        }
    }
}

/// One recipient's status.
#[derive(Debug, Clone)]
pub struct RecipientStatus {
    /// The recipient address.
    pub recipient: String,
    /// Failed or delayed.
    pub action: Action,
    /// RFC 3463 status, e.g. `5.1.1` or `4.4.1`.
    pub status: String,
    /// The remote server's reply or our diagnostic.
    pub diagnostic: String,
    /// The host that answered, if any.
    pub remote_mta: Option<String>,
    /// Unix time of the last attempt.
    pub last_attempt: i64,
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
    /// When the original arrived.
    pub arrival: i64,
    /// When the report is made.
    pub now: i64,
    /// Recipients reported on.
    pub recipients: Vec<RecipientStatus>,
    /// The original message (only its header is included).
    pub original: &'a [u8],
}

/// Whether a DSN may be sent for a message from `sender`: never for the
/// null sender (RFC 5321 6.1, avoids bounce loops).
pub fn may_report(sender: &str) -> bool {
    !sender.is_empty() && sender != "<>"
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(900)
        .collect()
}

/// The report message (CRLF), ready to enqueue from the null sender.
pub fn build(r: &Report<'_>) -> Vec<u8> {
    let any_failed = r.recipients.iter().any(|s| s.action == Action::Failed);
    let subject = if any_failed {
        "Undelivered Mail Returned to Sender"
    } else {
        "Delayed Mail (still being retried)"
    };
    let mut human = String::new();
    human.push_str(&format!(
        "This is the mail system at host {}.\n\n",
        r.reporting_mta
    ));
    if any_failed {
        human.push_str(
            "Your message could not be delivered to one or more recipients.\n\
             It is attached below.\n\n",
        );
    } else {
        human.push_str(
            "Your message has not been delivered yet to one or more recipients.\n\
             The mail system will keep trying; you do not need to send it again.\n\n",
        );
    }
    for s in &r.recipients {
        human.push_str(&format!(
            "<{}>: {}\n",
            one_line(&s.recipient),
            one_line(&s.diagnostic)
        ));
    }

    let mut status = format!(
        "Reporting-MTA: dns; {}\r\nX-Queue-ID: {}\r\nArrival-Date: {}\r\n",
        one_line(r.reporting_mta),
        one_line(r.queue_id),
        DateTime::from_unix_timestamp(r.arrival).to_rfc5322()
    );
    for s in &r.recipients {
        status.push_str(&format!(
            "\r\nFinal-Recipient: rfc822; {}\r\nAction: {}\r\nStatus: {}\r\n",
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
    }

    let head = &r.original[..header_end(r.original)];
    Builder::new()
        .from(Mailbox::new(
            Some("Mail Delivery System"),
            &format!("MAILER-DAEMON@{}", r.reporting_mta),
        ))
        .to(Mailbox::new(None, r.to))
        .subject(subject)
        .date(DateTime::from_unix_timestamp(r.now))
        .message_id(format!("dsn.{}@{}", r.queue_id, r.reporting_mta))
        .header("Auto-Submitted", "auto-replied")
        .multipart("report")
        .multipart_param("report-type", "delivery-status")
        .text(human)
        .mime_part("message/delivery-status", status.into_bytes())
        .mime_part("text/rfc822-headers", head.to_vec())
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_report_has_the_three_parts() {
        let original = b"From: alice@a.test\r\nSubject: hello\r\n\r\nsecret body\r\n";
        let r = Report {
            reporting_mta: "mail.a.test",
            to: "alice@a.test",
            queue_id: "Q1",
            arrival: 1_700_000_000,
            now: 1_700_400_000,
            recipients: vec![RecipientStatus {
                recipient: "bob@gone.test".into(),
                action: Action::Failed,
                status: "4.4.1".into(),
                diagnostic: "connection refused\r\nInjected: x".into(),
                remote_mta: None,
                last_attempt: 1_700_399_000,
            }],
            original,
        };
        let msg = build(&r);
        let parsed = scop_mime::parse(&msg).unwrap();
        let m = &parsed.message;
        assert_eq!(
            m.header("Subject").unwrap().text(),
            "Undelivered Mail Returned to Sender"
        );
        let text = String::from_utf8_lossy(&msg);
        assert!(text.contains("multipart/report"), "{text}");
        assert!(text.contains("report-type=delivery-status"), "{text}");
        assert!(text.contains("Content-Type: message/delivery-status"));
        assert!(text.contains("Action: failed"));
        assert!(text.contains("Final-Recipient: rfc822; bob@gone.test"));
        assert!(text.contains("Subject: hello"));
        assert!(!text.contains("secret body"), "only the header is returned");
        assert!(!text.contains("\nInjected: x"));
    }

    #[test]
    fn null_sender_gets_no_report() {
        assert!(!may_report(""));
        assert!(!may_report("<>"));
        assert!(may_report("a@b.test"));
    }
}
