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
    /// The spam filter compartment over the mesh; when set, the message
    /// goes there instead of through the stages above.
    pub next: Option<crate::hop::NextHop>,
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

impl SpamStage {
    /// A stage with an empty source list refusing a source after
    /// `block_after` spams in an hour (0: never).
    pub fn new(model: scop_spam::Model, policy: spamfilter::Policy, block_after: u32) -> Self {
        SpamStage {
            model,
            policy,
            sources: Mutex::new(spamfilter::SourceList::new(block_after, 3600)),
        }
    }

    /// Whether `ip` sent too much spam recently.
    pub fn is_blocked(&self, ip: std::net::IpAddr, now: i64) -> bool {
        self.sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_blocked(ip, now)
    }

    /// Classifies `body` from `ip`: the message with our labels (labels
    /// the client wrote removed), whether it goes to Junk, and the label;
    /// or the refusal when the policy rejects it.
    pub fn filter(
        &self,
        ip: std::net::IpAddr,
        body: &[u8],
        id: &str,
        now: i64,
    ) -> Result<(Vec<u8>, bool, &'static str), Reply> {
        let clean = spamfilter::strip_own_fields(body);
        let inspection = spamfilter::inspect(&self.model, &self.policy, &clean);
        self.sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(ip, inspection.label, now);
        tracing::info!(queue_id = %id, score = inspection.score, verdict = inspection.label.as_str(), "classified");
        let junk = match &inspection.action {
            spamfilter::Action::Reject(text) => {
                return Err(crate::reply(550, (5, 7, 1), text));
            }
            spamfilter::Action::Quarantine => true,
            spamfilter::Action::Deliver => false,
        };
        Ok((
            crate::headers::with_trace(&clean, &inspection.fields, None),
            junk,
            inspection.label.as_str(),
        ))
    }
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

/// Queues a report about message `id` to `sender` from the null sender.
#[allow(clippy::too_many_arguments)]
async fn report(
    delivery: &Delivery,
    hostname: &str,
    sender: &str,
    id: &str,
    params: &scop_store::DsnParams,
    recipients: Vec<dsn::RecipientStatus>,
    body: &[u8],
    returned: dsn::Returned,
    now: i64,
) -> Result<(), scop_store::StoreError> {
    let report = dsn::build(&dsn::Report {
        reporting_mta: hostname,
        to: sender,
        queue_id: id,
        envid: params.envid.as_deref(),
        arrival: now,
        now,
        recipients,
        original: body,
        returned,
    });
    delivery
        .store
        .enqueue(
            &scop_store::NewMessage {
                sender: String::new(),
                recipients: vec![sender.to_string()],
                body: report,
                lifetime_secs: delivery.lifetime_secs,
                dsn: scop_store::DsnParams::default(),
            },
            now,
        )
        .await?;
    delivery.queued.notify_one();
    Ok(())
}

async fn postmaster(delivery: &Delivery) -> Option<String> {
    let domains = delivery.store.list_domains().await.ok()?;
    domains.first().map(|d| format!("postmaster@{d}"))
}

/// The address a forward-path names (the first local domain's
/// postmaster for `<Postmaster>`).
async fn rcpt_address(delivery: &Delivery, to: &ForwardPath) -> Result<String, Reply> {
    match to {
        ForwardPath::Postmaster => postmaster(delivery).await.ok_or_else(tempfail),
        ForwardPath::Mailbox(m) => address(m)
            .ok_or_else(|| crate::reply(550, (5, 7, 1), "Address literals are not accepted here")),
    }
}

/// What a forward-path resolves to.
async fn target(delivery: &Delivery, to: &ForwardPath) -> Result<Target, Reply> {
    let rcpt = rcpt_address(delivery, to).await?;
    delivery.resolve(&rcpt, now()).await.map_err(|e| {
        tracing::error!(error = %e, "recipient lookup failed");
        tempfail()
    })
}

impl Handler for Mx {
    async fn mail(&self, peer: &Peer, from: &ReversePath, params: &MailParams) -> Decision {
        if let Some(next) = &self.next {
            // The spam filter keeps the list of sources that sent the most
            // spam: ask it before taking the message.
            return match next
                .check_sender(crate::hop::facts_of(peer), from, params)
                .await
            {
                Ok(()) => Decision::Accept,
                Err(r) => Decision::Reject(r),
            };
        }
        let blocked = self
            .spam
            .as_ref()
            .is_some_and(|s| s.is_blocked(peer.addr.ip(), now()));
        if blocked {
            return Decision::Reject(spamfilter::blocked_reply());
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
        match target(&self.delivery, to).await {
            Err(r) => Decision::Reject(r),
            Ok(Target::Deliver { .. } | Target::SrsBounce(_)) => Decision::Accept,
            Ok(Target::Unknown) => {
                Decision::Reject(crate::reply(550, (5, 1, 1), "No such user here"))
            }
            Ok(Target::NotLocal) => {
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
        let single = match msg.rcpts.as_slice() {
            [one] => Some(rcpt_address(&self.delivery, one).await?),
            _ => None,
        };
        let trace = Received {
            helo: peer.helo.as_deref(),
            addr: peer.addr.ip(),
            by: &self.hostname,
            protocol: Protocol::for_session(peer.extended, peer.tls.is_some(), false),
            tls: peer.tls.as_deref(),
            id: &id,
            for_rcpt: single.as_deref(),
            now,
        }
        .to_field();
        if let Some(next) = &self.next {
            // The spam filter, verifier and delivery compartments follow;
            // their answer is ours.
            let body = crate::headers::with_trace(&msg.body, &trace, None);
            let done = next
                .pass_on(crate::hop::facts_of(peer), &msg, &body)
                .await?;
            tracing::info!(queue_id = %id, from = %reverse_path(&msg.from), rcpts = msg.rcpts.len(), size = body.len(), stored_as = %done, "passed on");
            return Ok(id);
        }
        let mut junk = false;
        let body = match &self.spam {
            None => crate::headers::with_trace(&msg.body, &trace, None),
            Some(stage) => {
                let (labelled, j, _) = stage.filter(peer.addr.ip(), &msg.body, &id, now)?;
                junk |= j;
                crate::headers::with_trace(&labelled, &trace, None)
            }
        };
        let sender = reverse_path(&msg.from);
        let body = match &self.verifier {
            None => body,
            Some(v) => {
                let helo = peer.helo.as_deref().unwrap_or("");
                let (verified, j) = v
                    .stage(peer.addr.ip(), helo, &sender, &body, &id, now)
                    .await?;
                junk |= j;
                verified
            }
        };
        let msg = Incoming { body, ..msg };
        deliver_and_report(&self.delivery, &self.hostname, msg, junk.then_some("Junk")).await
    }
}

/// Delivers `msg` (already labelled and verified) into `folder` of each
/// recipient's mailbox, or forwards it; reports recipients that vanished
/// since RCPT with a DSN and, on NOTIFY=SUCCESS, deliveries. The end of
/// the inbound chain: `Ok` means the message is durable.
pub async fn deliver_and_report(
    delivery: &Delivery,
    hostname: &str,
    msg: Incoming,
    folder: Option<&str>,
) -> Result<String, Reply> {
    let now = now();
    let id = queue_id();
    let mut rcpts = Vec::with_capacity(msg.rcpts.len());
    for to in &msg.rcpts {
        rcpts.push(rcpt_address(delivery, to).await?);
    }
    let dsn_params = dsn::params_from_smtp(&msg.params, &msg.rcpt_params);
    let sender = reverse_path(&msg.from);
    let body = Arc::new(msg.body);
    let outcomes = match delivery
        .deliver_to(&sender, &rcpts, &dsn_params, body.clone(), now, folder)
        .await
    {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(queue_id = %id, error = %e, "delivery failed");
            return Err(tempfail());
        }
    };
    // A recipient removed between RCPT and the end of data: we accepted
    // it, so the sender learns through a DSN. Delivery into a mailbox
    // is reported on NOTIFY=SUCCESS (RFC 3461 5.3: we are the final
    // MTA); forwarded copies carry NOTIFY on instead.
    let mut lost = Vec::new();
    let mut delivered = Vec::new();
    for (i, (r, o)) in outcomes.iter().enumerate() {
        let d = dsn_params.recipients.get(i).cloned().unwrap_or_default();
        let status = |action, status: &str, diagnostic: &str| dsn::RecipientStatus {
            recipient: r.clone(),
            original_recipient: d
                .orcpt
                .as_ref()
                .map(|o| (o.addr_type.clone(), o.address.clone())),
            action,
            status: status.into(),
            diagnostic: diagnostic.into(),
            remote_mta: None,
            last_attempt: now,
            will_retry_until: None,
        };
        match o {
            RcptOutcome::Unknown | RcptOutcome::NotLocal if dsn::wants_failure(d.notify) => {
                lost.push(status(
                    dsn::Action::Failed,
                    "5.1.1",
                    "550 5.1.1 No such user here",
                ));
            }
            RcptOutcome::Done if dsn::wants_success(d.notify) => {
                delivered.push(status(
                    dsn::Action::Delivered,
                    "2.0.0",
                    "250 2.0.0 delivered to the mailbox",
                ));
            }
            _ => {}
        }
    }
    if dsn::may_report(&sender) {
        if !lost.is_empty() {
            let returned = dsn::Returned::for_failure(dsn_params.ret);
            let queued = report(
                delivery,
                hostname,
                &sender,
                &id,
                &dsn_params,
                lost,
                &body,
                returned,
                now,
            )
            .await;
            if let Err(e) = queued {
                tracing::error!(queue_id = %id, error = %e, "could not queue a DSN");
                return Err(tempfail());
            }
        }
        if !delivered.is_empty() {
            let queued = report(
                delivery,
                hostname,
                &sender,
                &id,
                &dsn_params,
                delivered,
                &body,
                dsn::Returned::Headers,
                now,
            )
            .await;
            // The message is delivered: a lost receipt is not worth a
            // second delivery.
            if let Err(e) = queued {
                tracing::error!(queue_id = %id, error = %e, "could not queue a success DSN");
            }
        }
    }
    tracing::info!(queue_id = %id, from = %sender, rcpts = rcpts.len(), size = body.len(), folder = folder.unwrap_or("INBOX"), "delivered");
    Ok(id)
}
