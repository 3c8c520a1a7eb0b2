//! Starting the compartments: binds the configured listeners, starts the
//! relay, and stops them together.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use scop_smtp::extension::Builtins;
use scop_smtp::{Registry, ServerConfig};
use scop_store::Store;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::delivery::Delivery;
use crate::journal::{Journal, Recovered};
use crate::listener::{self, ConnLimits};
use crate::mx::Mx;
use crate::relay::{Relay, Routes};
use crate::session::SessionConfig;
use crate::srs::Srs;
use crate::submission::Submission;

/// What to run.
#[derive(Debug, Clone)]
pub struct MailConfig {
    /// Our host name (greeting, Received, Message-ID, DSNs).
    pub hostname: String,
    /// The store.
    pub store: Store,
    /// Root of the mailboxes.
    pub mail_root: PathBuf,
    /// TLS for STARTTLS and implicit TLS.
    pub tls: Arc<rustls::ServerConfig>,
    /// MX listener (port 25).
    pub mx: Option<SocketAddr>,
    /// Submission with STARTTLS (port 587).
    pub submission: Option<SocketAddr>,
    /// Submission with implicit TLS (port 465).
    pub submissions: Option<SocketAddr>,
    /// Run the relay (outbound queue).
    pub relay: bool,
    /// The relay's name on its leases (see [`Relay::owner`]); `None`:
    /// [`crate::relay::default_owner`].
    pub relay_id: Option<String>,
    /// Relay routing.
    pub routes: Routes,
    /// Queue lifetime.
    pub lifetime_secs: i64,
    /// Relay retry schedule.
    pub retry: crate::relay::RetryPolicy,
    /// How long the relay keeps delivery records (`None`: for ever).
    pub delivery_log_retention: Option<Duration>,
    /// MX greeting delay (early-talker check); zero disables it.
    pub greeting_delay: Duration,
    /// Idle timeout of sessions.
    pub idle_timeout: Duration,
    /// Per-address and total connection limits of each listener.
    pub conn_limits: ConnLimits,
    /// Per-account limits of submission.
    pub user_limits: crate::submission::UserLimits,
    /// Largest message accepted.
    pub message_size: u64,
    /// The SRS secret.
    pub srs_key: Vec<u8>,
    /// The spam filter of the MX, if any.
    pub spam: Option<SpamConfig>,
    /// SPF/DKIM/DMARC checks on the MX, if any.
    pub verifier: Option<crate::verifier::Verifier>,
    /// How often DMARC aggregate reports are sent (when the verifier
    /// collects them).
    pub dmarc_report_interval: Duration,
    /// DKIM signers of submitted mail, per sender domain (lower case).
    pub dkim: Arc<std::collections::HashMap<String, Vec<scop_dkim::Signer>>>,
    /// The delivery journal's directory: mailbox copies are acknowledged
    /// once logged there and written into the Maildir just after
    /// ([`crate::journal`]); `None` writes them before the reply.
    pub journal: Option<PathBuf>,
    /// The size of the journal's segments
    /// ([`crate::journal::SEGMENT_BYTES`] unless tuned).
    pub journal_segment_bytes: u64,
}

/// The MX's spam filter.
#[derive(Debug, Clone)]
pub struct SpamConfig {
    /// The trained model.
    pub model: scop_spam::Model,
    /// What to do per verdict.
    pub policy: crate::spamfilter::Policy,
    /// Refuse a client address at MAIL after this many spams in an hour
    /// (0: never).
    pub block_after: u32,
}

/// Running compartments.
#[derive(Debug)]
pub struct Running {
    /// Where the MX listens.
    pub mx: Option<SocketAddr>,
    /// Where submission (STARTTLS) listens.
    pub submission: Option<SocketAddr>,
    /// Where submission (implicit TLS) listens.
    pub submissions: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    journal: Option<Arc<Journal>>,
}

impl Running {
    /// Stops accepting and waits for the listeners and relay to finish.
    pub async fn stop(self) {
        self.stop.send(true).ok();
        for t in self.tasks {
            t.await.ok();
        }
        if let Some(j) = self.journal {
            tokio::task::spawn_blocking(move || j.close()).await.ok();
        }
    }

    /// Waits until every mailbox copy acknowledged so far is in its
    /// Maildir (at most `limit`); whether it is. Blocking (the journal's
    /// threads are not tokio's).
    pub fn drain(&self, limit: Duration) -> bool {
        self.journal.as_ref().is_none_or(|j| j.drain(limit))
    }
}

/// SMTP settings of a public listener: AUTH offered on submission only,
/// no XSCOP. REQUIRETLS (RFC 8689) is offered under TLS: the flag is
/// queued with the message, and the relay sends such a message only to
/// servers that DANE authenticates and that offer REQUIRETLS, or else
/// reports it undeliverable (5.7.30).
pub fn smtp_config(hostname: &str, submission: bool, message_size: u64) -> Arc<ServerConfig> {
    let mut builtins = Builtins::default();
    if !submission {
        builtins.auth = Vec::new();
    }
    builtins.xscop = false;
    let mut c = ServerConfig::new(hostname);
    c.registry = Registry::new(builtins);
    c.limits.message_size = message_size;
    c.require_auth = submission;
    Arc::new(c)
}

/// Binds the listeners and starts everything configured.
pub async fn start(cfg: MailConfig) -> io::Result<Running> {
    let queued = Arc::new(Notify::new());
    let journal = match cfg.journal.clone() {
        None => None,
        Some(dir) => Some(open_journal(dir, cfg.journal_segment_bytes).await?),
    };
    let delivery = Delivery {
        store: cfg.store.clone(),
        mail_root: cfg.mail_root.clone(),
        hostname: cfg.hostname.clone(),
        srs: Arc::new(Srs::new(&cfg.srs_key)),
        lifetime_secs: cfg.lifetime_secs,
        queued: queued.clone(),
        journal: journal.clone(),
    };
    let acceptor = TlsAcceptor::from(cfg.tls.clone());
    let (stop, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    let mut running = Running {
        mx: None,
        submission: None,
        submissions: None,
        stop,
        tasks: Vec::new(),
        journal,
    };

    if let Some(addr) = cfg.mx {
        let l = TcpListener::bind(addr).await?;
        running.mx = Some(l.local_addr()?);
        let mut s = SessionConfig::new(
            smtp_config(&cfg.hostname, false, cfg.message_size),
            Some(acceptor.clone()),
        );
        s.greeting_delay = cfg.greeting_delay;
        s.idle_timeout = cfg.idle_timeout;
        let mx = Arc::new(Mx {
            delivery: delivery.clone(),
            hostname: cfg.hostname.clone(),
            verifier: cfg.verifier.clone().map(Arc::new),
            spam: cfg
                .spam
                .clone()
                .map(|s| Arc::new(crate::mx::SpamStage::new(s.model, s.policy, s.block_after))),
            next: None,
        });
        tasks.push(tokio::spawn(listener::run(
            "mx",
            l,
            Arc::new(s),
            mx,
            cfg.conn_limits,
            stop_rx.clone(),
        )));
    }
    let mut submission = Submission::new(
        cfg.store.clone(),
        &cfg.hostname,
        cfg.lifetime_secs,
        queued.clone(),
    );
    submission.dkim = cfg.dkim.clone();
    submission.limits = cfg.user_limits;
    let submission = Arc::new(submission);
    for (addr, implicit) in [(cfg.submission, false), (cfg.submissions, true)] {
        let Some(addr) = addr else { continue };
        let l = TcpListener::bind(addr).await?;
        let local = l.local_addr()?;
        if implicit {
            running.submissions = Some(local);
        } else {
            running.submission = Some(local);
        }
        let mut s = SessionConfig::new(
            smtp_config(&cfg.hostname, true, cfg.message_size),
            Some(acceptor.clone()),
        );
        s.implicit_tls = implicit;
        s.idle_timeout = cfg.idle_timeout;
        tasks.push(tokio::spawn(listener::run(
            if implicit {
                "submissions"
            } else {
                "submission"
            },
            l,
            Arc::new(s),
            submission.clone(),
            cfg.conn_limits,
            stop_rx.clone(),
        )));
    }
    if let Some(v) = &cfg.verifier
        && let Some(reporter) = &v.reports
    {
        tasks.push(tokio::spawn(crate::dmarc_reports::send_loop(
            reporter.clone(),
            v.dns.clone(),
            crate::dmarc_reports::Outbox::Queue(delivery.clone()),
            cfg.dmarc_report_interval,
            stop_rx.clone(),
        )));
    }
    if cfg.relay
        && let (Some(reporter), Some(dns)) = (&cfg.routes.tls_reports, &cfg.routes.dns)
    {
        tasks.push(tokio::spawn(crate::tls_reports::send_loop(
            reporter.clone(),
            dns.clone(),
            crate::dmarc_reports::Outbox::Queue(delivery.clone()),
            stop_rx.clone(),
        )));
    }
    if cfg.relay {
        let mut relay = Relay::new(delivery, cfg.routes.clone());
        relay.retry = cfg.retry;
        relay.log_retention = cfg.delivery_log_retention;
        if let Some(id) = &cfg.relay_id {
            relay.owner = id.clone();
        }
        let relay = Arc::new(relay);
        tasks.push(tokio::spawn(relay.run(stop_rx.clone())));
    }
    running.tasks = tasks;
    Ok(running)
}

/// Opens the delivery journal in `dir` (segments of about
/// `segment_bytes`), writing what an earlier run left there into the
/// mailboxes first.
pub async fn open_journal(dir: PathBuf, segment_bytes: u64) -> io::Result<Arc<Journal>> {
    let (journal, found) =
        tokio::task::spawn_blocking(move || Journal::open_sized(&dir, segment_bytes))
            .await
            .map_err(io::Error::other)??;
    if found != Recovered::default() {
        tracing::warn!(
            written = found.written,
            present = found.present,
            torn_bytes = found.torn_bytes,
            renamed = found.renamed,
            "delivery journal recovered: copies a crash left there are in their mailboxes"
        );
    }
    Ok(Arc::new(journal))
}
