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
        // One name per message content and recipients (for a message
        // with a Message-ID): a copy handed on again after a crash finds
        // the first one and is not delivered, nor queued, twice. Without
        // a Message-ID, identical messages (alerts from one device, say)
        // are different messages: each gets its own name.
        let content_named = scop_mta::headers::has_field(&msg, "Message-ID");
        // (envelope sender, recipients, their DSN parameters, the key that
        // queues them once) of forwarded copies.
        let mut forwards: Vec<(String, Vec<String>, DsnParams, Option<String>)> = Vec::new();
        let once = |rcpt: &str| {
            content_named.then(|| {
                let key = scop_mta::headers::content_key(&msg, [rcpt]);
                let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
                format!("forward {hex}")
            })
        };
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
                        forwards.push((rewritten, forward, params, once(rcpt)));
                    }
                    outcome
                }
                Target::SrsBounce(orig) => {
                    // The bounce keeps its (normally null) sender.
                    forwards.push((
                        sender.to_string(),
                        vec![orig],
                        DsnParams::default(),
                        once(rcpt),
                    ));
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
        for (sender, recipients, dsn, key) in forwards {
            let copy = NewMessage {
                sender,
                recipients,
                body: msg.to_vec(),
                lifetime_secs: self.lifetime_secs,
                dsn,
            };
            match key {
                Some(key) => {
                    if self.store.enqueue_once(&copy, &key, now).await?.is_none() {
                        tracing::info!(to = ?copy.recipients, "forward already queued: not again");
                        continue;
                    }
                }
                None => {
                    self.store.enqueue(&copy, now).await?;
                }
            }
            self.queued.notify_one();
        }
        Ok(outcomes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_forward_handed_on_again_is_queued_once() {
        let store = Store::open("sqlite::memory:").await.unwrap();
        store.add_domain("a.test").await.unwrap();
        store.add_user("bob@a.test", "pw").await.unwrap();
        store
            .set_forward("bob@a.test", &["bob@elsewhere.test".to_string()])
            .await
            .unwrap();
        let root = std::env::temp_dir().join(format!("scop-delivery-{}", std::process::id()));
        let delivery = Delivery {
            store: store.clone(),
            mail_root: root.clone(),
            hostname: "mail.a.test".into(),
            srs: Arc::new(Srs::new(b"test srs key")),
            lifetime_secs: 86_400,
            queued: Arc::new(Notify::new()),
            journal: None,
        };
        let rcpts = ["bob@a.test".to_string()];
        let send = |msg: &str, now: i64| {
            let msg = Arc::new(msg.as_bytes().to_vec());
            let delivery = delivery.clone();
            let rcpts = rcpts.clone();
            async move {
                let out = delivery
                    .deliver("s@x.test", &rcpts, &DsnParams::default(), msg, now)
                    .await
                    .unwrap();
                assert_eq!(out[0].1, RcptOutcome::Done, "a copy kept, one forwarded");
            }
        };
        let queued = || async { store.list_queue().await.unwrap().len() };
        let msg = "Message-ID: <1@x.test>\r\nSubject: hi\r\n\r\nbody\r\n";
        send(msg, 100).await;
        // Handed on again with other trace fields, a day later (another
        // SRS address): the forward is already queued.
        send(&format!("Received: from hop; later\r\n{msg}"), 86_500).await;
        assert_eq!(queued().await, 1);
        // Another body is another message.
        send("Message-ID: <1@x.test>\r\nSubject: hi\r\n\r\nBODY\r\n", 100).await;
        assert_eq!(queued().await, 2);
        // Without a Message-ID, the same bytes are each a message.
        let plain = "Subject: alert\r\n\r\ndisk full\r\n";
        send(plain, 100).await;
        send(plain, 100).await;
        assert_eq!(queued().await, 4);
        std::fs::remove_dir_all(&root).ok();
    }
}
