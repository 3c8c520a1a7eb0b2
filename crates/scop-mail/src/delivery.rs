//! Local delivery: recipients of local domains are resolved through the
//! store (accounts, aliases, catch-all, forwarding), written durably to
//! each account's Maildir, and forwarded through the outbound queue with
//! SRS. A bounce addressed to one of our SRS addresses goes back to the
//! original sender.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use scop_store::{DsnParams, NewMessage, Orcpt, Resolution, Store};
use tokio::sync::Notify;

use crate::journal::Journal;
use crate::maildir;
use crate::srs::Srs;

/// The outcome for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptOutcome {
    /// Written to at least one mailbox (and maybe queued for forwarding).
    Done,
    /// Only queued for forwarding (forwards and SRS bounces): the copy
    /// carries the DSN parameters on, so the next hop reports.
    Forwarded,
    /// No such address (permanent).
    Unknown,
    /// Not one of our domains (permanent, for this path).
    NotLocal,
}

/// Why a delivery must be retried.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] scop_store::StoreError),
    /// Writing a mailbox failed.
    #[error("mailbox: {0}")]
    Io(#[from] std::io::Error),
}

/// The local delivery agent shared by the MX and the relay.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The store.
    pub store: Store,
    /// Root of the mailboxes (`<root>/<login>/Maildir`).
    pub mail_root: PathBuf,
    /// Our host name (Maildir names).
    pub hostname: String,
    /// SRS rewriting for forwards.
    pub srs: Arc<Srs>,
    /// Queue lifetime of forwarded messages.
    pub lifetime_secs: i64,
    /// Woken when something is queued, so the relay starts at once.
    pub queued: Arc<Notify>,
    /// The delivery journal: when set, a mailbox copy is acknowledged
    /// once it is in the journal, and written into the Maildir just
    /// after ([`crate::journal`]).
    pub journal: Option<Arc<Journal>>,
}

/// What a recipient resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Local mailboxes and forwarding addresses.
    Deliver {
        /// Account logins.
        mailboxes: Vec<String>,
        /// External addresses.
        forward: Vec<String>,
    },
    /// A valid SRS bounce address: send back to this original sender.
    SrsBounce(String),
    /// No such address in a local domain.
    Unknown,
    /// Not a local domain.
    NotLocal,
}

impl Delivery {
    /// Resolves one recipient address (`local@domain`).
    pub async fn resolve(&self, rcpt: &str, now: i64) -> Result<Target, DeliveryError> {
        if let Some((local, domain)) = rcpt.rsplit_once('@')
            && Srs::is_srs(local)
            && self.store.is_local_domain(domain).await?
        {
            return Ok(match self.srs.reverse(local, now) {
                Ok(orig) => Target::SrsBounce(orig),
                Err(e) => {
                    tracing::info!(rcpt, error = %e, "SRS address refused");
                    Target::Unknown
                }
            });
        }
        Ok(match self.store.resolve(rcpt).await? {
            Resolution::NotLocal => Target::NotLocal,
            Resolution::Unknown => Target::Unknown,
            Resolution::Deliver { mailboxes, forward } => Target::Deliver { mailboxes, forward },
        })
    }

    /// Delivers `msg` (trace fields already added) from `sender` ("" for
    /// the null sender) to `rcpts`, whose DSN parameters are in `dsn` (in
    /// the order of `rcpts`; forwarded copies keep them, RFC 3461 5.2.1).
    /// Returns each recipient's outcome once every mailbox write is
    /// fsync'd and every forward is queued; an error means nothing may be
    /// acknowledged.
    pub async fn deliver(
        &self,
        sender: &str,
        rcpts: &[String],
        dsn: &DsnParams,
        msg: Arc<Vec<u8>>,
        now: i64,
    ) -> Result<Vec<(String, RcptOutcome)>, DeliveryError> {
        self.deliver_to(sender, rcpts, dsn, msg, now, None).await
    }

    /// As [`Delivery::deliver`], into the Maildir++ sub-folder `folder`
    /// (e.g. `Junk`) when given; forwarding is skipped for such messages
    /// (quarantined mail is not sent on).
    pub async fn deliver_to(
        &self,
        sender: &str,
        rcpts: &[String],
        dsn: &DsnParams,
        msg: Arc<Vec<u8>>,
        now: i64,
        folder: Option<&str>,
    ) -> Result<Vec<(String, RcptOutcome)>, DeliveryError> {
        // Each mailbox, with the recipients that led to it.
        let mut mailboxes: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
        // (envelope sender, recipients, their DSN parameters) of forwarded copies.
        let mut forwards: Vec<(String, Vec<String>, DsnParams)> = Vec::new();
        let mut outcomes = Vec::with_capacity(rcpts.len());
        for (i, rcpt) in rcpts.iter().enumerate() {
            let outcome = match self.resolve(rcpt, now).await? {
                Target::Deliver {
                    mailboxes: m,
                    forward,
                } => {
                    let outcome = if m.is_empty() {
                        RcptOutcome::Forwarded
                    } else {
                        RcptOutcome::Done
                    };
                    for login in m {
                        mailboxes.entry(login).or_default().insert(rcpt);
                    }
                    if !forward.is_empty() && folder.is_none() {
                        let domain = rcpt.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
                        let rewritten = self.srs.forward(sender, domain, now).unwrap_or_default();
                        // Each copy keeps the recipient's NOTIFY, and its
                        // ORCPT or else the address it was sent to.
                        let mut d = dsn.recipients.get(i).cloned().unwrap_or_default();
                        if d.orcpt.is_none() {
                            d.orcpt = Some(Orcpt {
                                addr_type: "rfc822".into(),
                                address: rcpt.clone(),
                            });
                        }
                        let params = DsnParams {
                            ret: dsn.ret,
                            envid: dsn.envid.clone(),
                            recipients: vec![d; forward.len()],
                            requiretls: dsn.requiretls,
                        };
                        forwards.push((rewritten, forward, params));
                    }
                    outcome
                }
                Target::SrsBounce(orig) => {
                    // The bounce keeps its (normally null) sender.
                    forwards.push((sender.to_string(), vec![orig], DsnParams::default()));
                    RcptOutcome::Forwarded
                }
                Target::Unknown => RcptOutcome::Unknown,
                Target::NotLocal => RcptOutcome::NotLocal,
            };
            outcomes.push((rcpt.clone(), outcome));
        }

        // The final delivery records the envelope sender (RFC 5321 4.4),
        // written before the message.
        let return_path = format!(
            "Return-Path: <{}>\r\n",
            sender.replace(['\r', '\n', '>'], "")
        )
        .into_bytes();
        // One name per message content and recipients (for a message
        // with a Message-ID): a copy handed on again after a crash finds
        // the first one and is not delivered twice. Without a Message-ID,
        // identical messages (alerts from one device, say) are different
        // messages: each gets its own name.
        let content_named = scop_mta::headers::has_field(&msg, "Message-ID");
        let mut logged = Vec::new();
        for (login, rcpts) in mailboxes {
            let mut dir = maildir::mailbox_dir(&self.mail_root, &login)?;
            if let Some(f) = folder {
                dir = dir.join(format!(".{f}"));
            }
            let naming = if content_named {
                maildir::Naming::Content {
                    recipients: rcpts.into_iter().map(str::to_string).collect(),
                    host: self.hostname.clone(),
                }
            } else {
                maildir::Naming::Fixed(maildir::unique_name(now, &self.hostname))
            };
            let body = msg.clone();
            let prefix = return_path.clone();
            match &self.journal {
                Some(journal) => {
                    maildir::prepare(&dir)?;
                    logged.push(journal.submit(dir, naming, prefix, body));
                }
                None => {
                    tokio::task::spawn_blocking(move || {
                        maildir::deliver_parts(&dir, &naming.name(&body), &[&prefix, &body])
                    })
                    .await
                    .map_err(|e| std::io::Error::other(e.to_string()))??;
                }
            }
        }
        for durable in logged {
            durable
                .await
                .map_err(|_| std::io::Error::other("the delivery journal is closed"))??;
        }
        for (sender, recipients, dsn) in forwards {
            self.store
                .enqueue(
                    &NewMessage {
                        sender,
                        recipients,
                        body: msg.to_vec(),
                        lifetime_secs: self.lifetime_secs,
                        dsn,
                    },
                    now,
                )
                .await?;
            self.queued.notify_one();
        }
        Ok(outcomes)
    }
}
