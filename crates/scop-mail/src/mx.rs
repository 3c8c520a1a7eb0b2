//! The MX compartment (port 25): mail from the Internet for our domains.
//! Recipients are checked at RCPT (unknown users and foreign domains are
//! refused there: never an open relay); the message is delivered durably
//! before the 250.

use std::sync::{Arc, Mutex};

use scop_smtp::{ForwardPath, Host, MailParams, RcptParams, Reply, ReversePath};

use crate::delivery::{Delivery, RcptOutcome, Target};
use crate::dsn;
use crate::headers::{Protocol, Received};
use crate::session::{Decision, Handler, Incoming, Peer};
use crate::spamfilter;
use crate::{now, queue_id, tempfail};

/// The MX handler.
#[derive(Debug, Clone)]
pub struct Mx {
    /// Local delivery.
    pub delivery: Delivery,
    /// Our host name.
    pub hostname: String,
    /// The spam-filter stage, when a model is configured.
    pub spam: Option<Arc<SpamStage>>,
    /// The SPF/DKIM/DMARC stage, when configured.
    pub verifier: Option<Arc<crate::verifier::Verifier>>,
}

/// The spam-filter stage the MX runs before delivery.
#[derive(Debug)]
pub struct SpamStage {
    /// The trained model.
    pub model: scop_spam::Model,
    /// What to do per verdict.
    pub policy: spamfilter::Policy,
    /// The sources that sent the most spam.
    pub sources: Mutex<spamfilter::SourceList>,
}

/// `local@domain` of a mailbox, with the local part unquoted.
pub fn address(m: &scop_smtp::Mailbox) -> Option<String> {
    match m.host() {
        Host::Domain(d) => Some(format!("{}@{}", m.local_part_unquoted(), d.as_str())),
        _ => None,
    }
}

pub(crate) fn reverse_path(from: &ReversePath) -> String {
    match from {
        ReversePath::Null => String::new(),
        ReversePath::Mailbox(m) => format!("{}@{}", m.local_part_unquoted(), m.host()),
    }
}

impl Mx {
    async fn postmaster(&self) -> Option<String> {
        let domains = self.delivery.store.list_domains().await.ok()?;
        domains.first().map(|d| format!("postmaster@{d}"))
    }

    async fn target(&self, to: &ForwardPath) -> Result<(String, Target), Reply> {
        let rcpt = match to {
            ForwardPath::Postmaster => self.postmaster().await.ok_or_else(tempfail)?,
            ForwardPath::Mailbox(m) => match address(m) {
                Some(a) => a,
                None => {
                    return Err(crate::reply(
                        550,
                        (5, 7, 1),
                        "Address literals are not accepted here",
                    ));
                }
            },
        };
        match self.delivery.resolve(&rcpt, now()).await {
            Ok(t) => Ok((rcpt, t)),
            Err(e) => {
                tracing::error!(error = %e, "recipient lookup failed");
                Err(tempfail())
            }
        }
    }
}

impl Handler for Mx {
    async fn mail(&self, peer: &Peer, _from: &ReversePath, _params: &MailParams) -> Decision {
        let blocked = self.spam.as_ref().is_some_and(|s| {
            s.sources
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_blocked(peer.addr.ip(), now())
        });
        if blocked {
            return Decision::Reject(crate::reply(
                554,
                (5, 7, 1),
                "Your address sent too much spam recently",
            ));
        }
        Decision::Accept
    }

    async fn rcpt(
        &self,
        _peer: &Peer,
        _from: &ReversePath,
        to: &ForwardPath,
        _params: &RcptParams,
    ) -> Decision {
        match self.target(to).await {
            Err(r) => Decision::Reject(r),
            Ok((_, Target::Deliver { .. } | Target::SrsBounce(_))) => Decision::Accept,
            Ok((_, Target::Unknown)) => {
                Decision::Reject(crate::reply(550, (5, 1, 1), "No such user here"))
            }
            Ok((_, Target::NotLocal)) => {
                Decision::Reject(crate::reply(554, (5, 7, 1), "Relay access denied"))
            }
        }
    }

    async fn auth(&self, _peer: &Peer, _u: &str, _p: &str) -> Decision {
        Decision::Reject(crate::reply(
            503,
            (5, 5, 1),
            "No authentication on this port",
        ))
    }

    async fn message(&self, peer: &Peer, msg: Incoming) -> Result<String, Reply> {
        let now = now();
        let id = queue_id();
        let mut rcpts = Vec::with_capacity(msg.rcpts.len());
        for to in &msg.rcpts {
            rcpts.push(self.target(to).await?.0);
        }
        let single = (rcpts.len() == 1).then(|| rcpts[0].as_str());
        let trace = Received {
            helo: peer.helo.as_deref(),
            addr: peer.addr.ip(),
            by: &self.hostname,
            protocol: Protocol::for_session(peer.extended, peer.tls.is_some(), false),
            tls: peer.tls.as_deref(),
            id: &id,
            for_rcpt: single,
            now,
        }
        .to_field();
        let mut folder = None;
        let body = match &self.spam {
            None => crate::headers::with_trace(&msg.body, &trace, None),
            Some(stage) => {
                let clean = spamfilter::strip_own_fields(&msg.body);
                let inspection = spamfilter::inspect(&stage.model, &stage.policy, &clean);
                stage
                    .sources
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .record(peer.addr.ip(), inspection.label, now);
                tracing::info!(queue_id = %id, score = inspection.score, verdict = inspection.label.as_str(), "classified");
                match &inspection.action {
                    spamfilter::Action::Reject(text) => {
                        return Err(crate::reply(550, (5, 7, 1), text));
                    }
                    spamfilter::Action::Quarantine => folder = Some("Junk"),
                    spamfilter::Action::Deliver => {}
                }
                let fields = format!("{trace}{}", inspection.fields);
                crate::headers::with_trace(&clean, &fields, None)
            }
        };
        let sender = reverse_path(&msg.from);
        let body = match &self.verifier {
            None => body,
            Some(v) => {
                let body = crate::verifier::strip_forged_results(&body, &v.authserv_id);
                let mut sample = [0u8; 1];
                aws_lc_rs::rand::fill(&mut sample).ok();
                let result = v
                    .verify(
                        peer.addr.ip(),
                        peer.helo.as_deref().unwrap_or(""),
                        &sender,
                        &body,
                        now,
                        sample[0] % 100,
                    )
                    .await;
                tracing::info!(queue_id = %id, dmarc = %result.dmarc, "verified");
                match result.disposition {
                    scop_dmarc::Disposition::Reject => {
                        return Err(crate::reply(
                            550,
                            (5, 7, 1),
                            "Rejected by the DMARC policy of the From domain",
                        ));
                    }
                    scop_dmarc::Disposition::Quarantine => folder = Some("Junk"),
                    scop_dmarc::Disposition::None => {}
                }
                let mut out = result.field.into_bytes();
                out.extend_from_slice(&body);
                out
            }
        };
        let outcomes = match self
            .delivery
            .deliver_to(&sender, &rcpts, &body, now, folder)
            .await
        {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(queue_id = %id, error = %e, "delivery failed");
                return Err(tempfail());
            }
        };
        // A recipient removed between RCPT and the end of data: we accepted
        // it, so the sender learns through a DSN.
        let lost: Vec<_> = outcomes
            .iter()
            .filter(|(_, o)| *o != RcptOutcome::Done)
            .map(|(r, _)| r.clone())
            .collect();
        if !lost.is_empty() && dsn::may_report(&sender) {
            let report = dsn::build(&dsn::Report {
                reporting_mta: &self.hostname,
                to: &sender,
                queue_id: &id,
                arrival: now,
                now,
                recipients: lost
                    .iter()
                    .map(|r| dsn::RecipientStatus {
                        recipient: r.clone(),
                        action: dsn::Action::Failed,
                        status: "5.1.1".into(),
                        diagnostic: "550 5.1.1 No such user here".into(),
                        remote_mta: None,
                        last_attempt: now,
                    })
                    .collect(),
                original: &body,
            });
            let queued = self
                .delivery
                .store
                .enqueue(
                    &scop_store::NewMessage {
                        sender: String::new(),
                        recipients: vec![sender.clone()],
                        body: report,
                        lifetime_secs: self.delivery.lifetime_secs,
                        dsn_requested: false,
                    },
                    now,
                )
                .await;
            if let Err(e) = queued {
                tracing::error!(queue_id = %id, error = %e, "could not queue a DSN");
                return Err(tempfail());
            }
            self.delivery.queued.notify_one();
        }
        tracing::info!(queue_id = %id, from = %sender, rcpts = rcpts.len(), size = body.len(), "delivered");
        Ok(id)
    }
}
