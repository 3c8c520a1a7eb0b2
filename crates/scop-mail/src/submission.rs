//! The submission compartment (465 implicit TLS, 587 STARTTLS, RFC 6409 and
//! RFC 8314): AUTH is required and offered only under TLS; MAIL FROM must
//! be an address the user owns; limits per user and a growing delay after
//! failed logins; the message gets a Received field (and Message-ID and
//! Date when missing) and is queued durably before the 250.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use scop_smtp::{ForwardPath, Host, MailParams, RcptParams, Reply, ReversePath};
use scop_store::{NewMessage, SendingLimits, Store};
use tokio::sync::Notify;

use crate::headers::{self, Protocol, Received};
use crate::mx::reverse_path;
use crate::session::{Decision, Handler, Incoming, Peer};
use crate::{now, queue_id, tempfail};

/// Per-account limits: the server's defaults, which an account's own
/// ([`scop_store::SendingLimits`], `scop user limits`) replace.
#[derive(Debug, Clone, Copy)]
pub struct UserLimits {
    /// Messages per account per hour.
    pub messages_per_hour: u64,
    /// Messages per account in any 24 hours.
    pub messages_per_day: u64,
    /// Recipients per account per hour, over all its messages.
    pub recipients_per_hour: u64,
    /// Largest message an account may submit; `None`: the listener's
    /// limit only.
    pub max_message_size: Option<u64>,
    /// Longest delay imposed after failed logins from one address.
    pub max_login_delay: Duration,
}

impl Default for UserLimits {
    fn default() -> Self {
        UserLimits {
            messages_per_hour: 500,
            messages_per_day: 2000,
            recipients_per_hour: 1000,
            max_message_size: None,
            max_login_delay: Duration::from_secs(8),
        }
    }
}

impl UserLimits {
    /// These defaults with `own`'s values in their place.
    fn with(self, own: SendingLimits) -> UserLimits {
        UserLimits {
            messages_per_hour: own.messages_per_hour.unwrap_or(self.messages_per_hour),
            messages_per_day: own.messages_per_day.unwrap_or(self.messages_per_day),
            recipients_per_hour: own.recipients_per_hour.unwrap_or(self.recipients_per_hour),
            max_message_size: own.max_message_size.or(self.max_message_size),
            max_login_delay: self.max_login_delay,
        }
    }
}

/// Failed logins remembered per client address.
const FAILED_LOGIN_MEMORY: Duration = Duration::from_secs(15 * 60);
/// Client addresses remembered at most (the oldest are forgotten).
const TRACKED_ADDRESSES_MAX: usize = 100_000;
/// The window of the hourly limits.
const HOUR: Duration = Duration::from_secs(3600);
/// The window of the daily limit.
const DAY: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Default)]
struct Throttle {
    failures: HashMap<IpAddr, (u32, Instant)>,
    /// By account (the store's case-folded login).
    accounts: HashMap<String, Sending>,
}

/// What an account sent (messages in the last day, recipients in the
/// last hour), and its limits as read at its last MAIL.
#[derive(Debug)]
struct Sending {
    messages: VecDeque<Instant>,
    recipients: VecDeque<Instant>,
    limits: UserLimits,
}

/// Counts one more in `sent` (times, oldest first) unless one of
/// `limits` (a window and how many it allows) is reached; the window of
/// the limit reached. Times older than every window are forgotten.
fn take_slot(sent: &mut VecDeque<Instant>, limits: &[(Duration, u64)]) -> Result<(), Duration> {
    let longest = limits.iter().map(|&(w, _)| w).max().unwrap_or_default();
    while sent.front().is_some_and(|at| at.elapsed() > longest) {
        sent.pop_front();
    }
    for &(window, limit) in limits {
        let within = sent.len() - sent.partition_point(|at| at.elapsed() > window);
        if within as u64 >= limit {
            return Err(window);
        }
    }
    sent.push_back(Instant::now());
    Ok(())
}

/// The key an account's counts are kept under.
fn account_key(login: &str) -> String {
    scop_store::address::Address::parse(login)
        .map(|a| a.key())
        .unwrap_or_else(|_| login.to_owned())
}

/// The submission handler.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The store (accounts and the queue).
    pub store: Store,
    /// Our host name.
    pub hostname: String,
    /// Queue lifetime of submitted messages.
    pub lifetime_secs: i64,
    /// Limits.
    pub limits: UserLimits,
    /// Woken when a message is queued.
    pub queued: Arc<Notify>,
    /// DKIM signers per sender domain (lower case): every message from
    /// that domain is signed with each of them (RSA and Ed25519).
    pub dkim: Arc<HashMap<String, Vec<scop_dkim::Signer>>>,
    /// The signer compartment over the mesh; when set, messages go there
    /// (with the login as an envelope fact) instead of being signed and
    /// queued here.
    pub next: Option<crate::hop::NextHop>,
    throttle: Arc<Mutex<Throttle>>,
}

impl Submission {
    /// A handler over `store`.
    pub fn new(store: Store, hostname: &str, lifetime_secs: i64, queued: Arc<Notify>) -> Self {
        Submission {
            store,
            hostname: hostname.to_string(),
            lifetime_secs,
            limits: UserLimits::default(),
            queued,
            dkim: Arc::default(),
            next: None,
            throttle: Arc::default(),
        }
    }

    fn login_delay(&self, ip: IpAddr) -> Duration {
        let t = self.throttle();
        match t.failures.get(&ip) {
            Some((n, at)) if at.elapsed() < FAILED_LOGIN_MEMORY && *n > 0 => {
                let ms = 250u64.saturating_mul(1 << (*n - 1).min(16));
                Duration::from_millis(ms).min(self.limits.max_login_delay)
            }
            _ => Duration::ZERO,
        }
    }

    fn record_login(&self, ip: IpAddr, ok: bool) {
        let mut t = self.throttle();
        if ok {
            t.failures.remove(&ip);
            return;
        }
        if t.failures.len() >= TRACKED_ADDRESSES_MAX {
            t.failures
                .retain(|_, (_, at)| at.elapsed() < FAILED_LOGIN_MEMORY);
            if t.failures.len() >= TRACKED_ADDRESSES_MAX {
                t.failures.clear();
            }
        }
        let e = t.failures.entry(ip).or_insert((0, Instant::now()));
        e.0 = e.0.saturating_add(1);
        e.1 = Instant::now();
    }

    fn throttle(&self) -> std::sync::MutexGuard<'_, Throttle> {
        self.throttle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `login`'s limits: the defaults with the account's own, read from
    /// the store.
    async fn limits_of(&self, login: &str) -> Result<UserLimits, Reply> {
        match self.store.sending_limits(login).await {
            Ok(own) => Ok(self.limits.with(own.unwrap_or_default())),
            Err(e) => {
                tracing::error!(error = %e, "reading the sending limits failed");
                Err(tempfail())
            }
        }
    }

    /// Counts a message for `login` under `limits`, which stay in force
    /// for its transaction; the window of the limit it would exceed.
    fn take_message_slot(&self, login: &str, limits: UserLimits) -> Result<(), Duration> {
        let mut t = self.throttle();
        let a = t.accounts.entry(account_key(login)).or_insert(Sending {
            messages: VecDeque::new(),
            recipients: VecDeque::new(),
            limits,
        });
        a.limits = limits;
        take_slot(
            &mut a.messages,
            &[
                (HOUR, limits.messages_per_hour),
                (DAY, limits.messages_per_day),
            ],
        )
    }

    /// Counts a recipient for `login`; false when over the hourly limit.
    fn take_recipient_slot(&self, login: &str) -> bool {
        let mut t = self.throttle();
        match t.accounts.get_mut(&account_key(login)) {
            Some(a) => {
                take_slot(&mut a.recipients, &[(HOUR, a.limits.recipients_per_hour)]).is_ok()
            }
            // RCPT comes after a MAIL that counted the account.
            None => false,
        }
    }

    /// The largest message `login` may submit now.
    fn max_message_size(&self, login: &str) -> Option<u64> {
        let t = self.throttle();
        t.accounts
            .get(&account_key(login))
            .map_or(self.limits.max_message_size, |a| a.limits.max_message_size)
    }
}

impl Handler for Submission {
    async fn auth(&self, peer: &Peer, username: &str, password: &str) -> Decision {
        let delay = self.login_delay(peer.addr.ip());
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        match self.store.verify_password(username, password).await {
            Ok(true) => {
                self.record_login(peer.addr.ip(), true);
                tracing::info!(peer = %peer.addr, login = username, "authenticated");
                Decision::Accept
            }
            Ok(false) => {
                self.record_login(peer.addr.ip(), false);
                tracing::info!(peer = %peer.addr, login = username, "authentication failed");
                Decision::Reject(crate::reply(
                    535,
                    (5, 7, 8),
                    "Authentication credentials invalid",
                ))
            }
            Err(e) => {
                tracing::error!(error = %e, "password check failed");
                Decision::Reject(crate::reply(
                    454,
                    (4, 7, 0),
                    "Temporary authentication failure",
                ))
            }
        }
    }

    async fn mail(&self, peer: &Peer, from: &ReversePath, params: &MailParams) -> Decision {
        let Some(login) = &peer.login else {
            return Decision::Reject(crate::reply(530, (5, 7, 0), "Authentication required"));
        };
        let ReversePath::Mailbox(m) = from else {
            return Decision::Reject(crate::reply(
                553,
                (5, 7, 1),
                "The null sender is not for submission",
            ));
        };
        let Host::Domain(_) = m.host() else {
            return Decision::Reject(crate::reply(
                553,
                (5, 7, 1),
                "Sender must be a domain address",
            ));
        };
        match self.store.owns_address(login, &reverse_path(from)).await {
            Ok(true) => {}
            Ok(false) => {
                return Decision::Reject(crate::reply(
                    553,
                    (5, 7, 1),
                    format!("Sender address not owned by {login}"),
                ));
            }
            Err(e) => {
                tracing::error!(error = %e, "ownership check failed");
                return Decision::Reject(tempfail());
            }
        }
        let limits = match self.limits_of(login).await {
            Ok(l) => l,
            Err(r) => return Decision::Reject(r),
        };
        if let (Some(declared), Some(max)) = (params.size, limits.max_message_size)
            && declared > max
        {
            return Decision::Reject(too_big(max));
        }
        if let Err(window) = self.take_message_slot(login, limits) {
            let why = match window {
                DAY => "Daily message limit exceeded, try again tomorrow",
                _ => "Message rate limit exceeded, try again later",
            };
            return Decision::Reject(crate::reply(450, (4, 7, 1), why));
        }
        Decision::Accept
    }

    async fn rcpt(
        &self,
        peer: &Peer,
        _from: &ReversePath,
        to: &ForwardPath,
        _params: &RcptParams,
    ) -> Decision {
        match to {
            ForwardPath::Mailbox(m) if matches!(m.host(), Host::Domain(_)) => {}
            ForwardPath::Mailbox(_) => {
                return Decision::Reject(crate::reply(
                    550,
                    (5, 1, 3),
                    "Recipient must be a domain address",
                ));
            }
            ForwardPath::Postmaster => {
                return Decision::Reject(crate::reply(
                    550,
                    (5, 1, 3),
                    "Give the postmaster's domain",
                ));
            }
        }
        let Some(login) = &peer.login else {
            return Decision::Reject(crate::reply(530, (5, 7, 0), "Authentication required"));
        };
        if !self.take_recipient_slot(login) {
            // RFC 5321 4.5.3.1.10: the client sends the others later.
            return Decision::Reject(crate::reply(
                452,
                (4, 5, 3),
                "Recipient rate limit exceeded, send to the others later",
            ));
        }
        Decision::Accept
    }

    async fn message(&self, peer: &Peer, msg: Incoming) -> Result<String, Reply> {
        if let Some(max) = peer.login.as_deref().and_then(|l| self.max_message_size(l))
            && msg.body.len() as u64 > max
        {
            return Err(too_big(max));
        }
        let now = now();
        let id = queue_id();
        let single = match msg.rcpts.as_slice() {
            [ForwardPath::Mailbox(m)] => crate::mx::address(m),
            _ => None,
        };
        let trace = Received {
            helo: peer.helo.as_deref(),
            addr: peer.addr.ip(),
            by: &self.hostname,
            protocol: Protocol::for_session(peer.extended, peer.tls.is_some(), true),
            tls: peer.tls.as_deref(),
            id: &id,
            for_rcpt: single.as_deref(),
            now,
        }
        .to_field();
        let mid = headers::message_id(&id, &self.hostname);
        let body = headers::with_trace(&msg.body, &trace, Some((&mid, now)));
        let msg = Incoming { body, ..msg };
        if let Some(next) = &self.next {
            let facts = crate::hop::facts_of(peer);
            let done = next.pass_on(facts, &msg, &msg.body).await?;
            tracing::info!(queue_id = %id, login = peer.login.as_deref().unwrap_or(""), from = %reverse_path(&msg.from), rcpts = msg.rcpts.len(), stored_as = %done, "passed to the signer");
            return Ok(id);
        }
        let sender = reverse_path(&msg.from);
        let body = sign(&self.dkim, &sender, &msg.body, now)?;
        let msg = Incoming { body, ..msg };
        let qid = enqueue(
            &self.store,
            &msg,
            self.lifetime_secs,
            peer.login.as_deref(),
            now,
        )
        .await?;
        self.queued.notify_one();
        Ok(qid)
    }
}

/// The refusal of a message over an account's size limit.
fn too_big(max: u64) -> Reply {
    crate::reply(
        552,
        (5, 3, 4),
        format!("Message larger than this account's limit of {max} bytes"),
    )
}

/// Signs `body` with the signers of the sender's domain, or of the From
/// domain when the sender is null (reports); unsigned when we hold no key
/// for that domain.
pub fn sign(
    dkim: &HashMap<String, Vec<scop_dkim::Signer>>,
    sender: &str,
    body: &[u8],
    now: i64,
) -> Result<Vec<u8>, Reply> {
    let domain = match sender.rsplit_once('@') {
        Some((_, d)) => d.to_ascii_lowercase(),
        None => from_domain(body).unwrap_or_default(),
    };
    match dkim.get(&domain) {
        Some(signers) if !signers.is_empty() => {
            let at = u64::try_from(now).unwrap_or(0);
            scop_dkim::sign_message(signers, body, at).map_err(|e| {
                tracing::error!(error = %e, domain, "DKIM signing failed");
                tempfail()
            })
        }
        _ => Ok(body.to_vec()),
    }
}

/// The domain of the From field when it names exactly one, lower case.
fn from_domain(body: &[u8]) -> Option<String> {
    scop_dmarc::author_domain(body).domain().map(str::to_owned)
}

/// Queues `msg` durably for the relay; the queue id, or 451.
pub async fn enqueue(
    store: &Store,
    msg: &Incoming,
    lifetime_secs: i64,
    login: Option<&str>,
    now: i64,
) -> Result<String, Reply> {
    let new = new_message(msg, lifetime_secs);
    let id = store.enqueue(&new, now).await.map_err(enqueue_failed)?;
    log_queued(id, &new, login);
    Ok(id.to_string())
}

/// Queues `msg` durably, leased (until when, by whom) by the relay that
/// starts on it at once; the message as queued, or 451.
pub async fn enqueue_leased(
    store: &Store,
    msg: &Incoming,
    lifetime_secs: i64,
    login: Option<&str>,
    now: i64,
    (lease_until, owner): (i64, &str),
) -> Result<scop_store::QueuedMessage, Reply> {
    let new = new_message(msg, lifetime_secs);
    let m = store
        .enqueue_leased(&new, now, lease_until, owner)
        .await
        .map_err(enqueue_failed)?;
    log_queued(m.id, &new, login);
    Ok(m)
}

/// The queue entry of an accepted transaction: its mailbox recipients
/// (the postmaster without a domain is not relayed) with their DSN
/// parameters.
fn new_message(msg: &Incoming, lifetime_secs: i64) -> NewMessage {
    let (rcpts, rcpt_dsn): (Vec<String>, Vec<scop_store::RecipientDsn>) = msg
        .rcpts
        .iter()
        .zip(&msg.rcpt_params)
        .filter_map(|(f, p)| match f {
            ForwardPath::Mailbox(m) => {
                crate::mx::address(m).map(|a| (a, crate::dsn::recipient_from_smtp(p)))
            }
            ForwardPath::Postmaster => None,
        })
        .unzip();
    let mut dsn = crate::dsn::params_from_smtp(&msg.params, &[]);
    dsn.recipients = rcpt_dsn;
    NewMessage {
        sender: reverse_path(&msg.from),
        recipients: rcpts,
        body: msg.body.clone(),
        lifetime_secs,
        dsn,
    }
}

fn log_queued(id: scop_store::MessageId, new: &NewMessage, login: Option<&str>) {
    tracing::info!(queue_id = %id, login = login.unwrap_or(""), from = %new.sender, rcpts = new.recipients.len(), "queued");
}

/// A failed enqueue: logged, and 451 to the client.
fn enqueue_failed(e: scop_store::StoreError) -> Reply {
    tracing::error!(error = %e, "enqueue failed");
    tempfail()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_taken_only_within_every_window() {
        let now = Instant::now();
        let ago = |s| now.checked_sub(Duration::from_secs(s)).unwrap();
        let (short, long) = (Duration::from_secs(10), Duration::from_secs(100));
        // One beyond both windows (forgotten), one in the long window,
        // one in both.
        let mut sent: VecDeque<Instant> = [ago(200), ago(50), ago(5)].into();
        assert_eq!(take_slot(&mut sent, &[(short, 1), (long, 5)]), Err(short));
        assert_eq!(sent.len(), 2);
        assert_eq!(take_slot(&mut sent, &[(short, 2), (long, 2)]), Err(long));
        assert_eq!(take_slot(&mut sent, &[(short, 2), (long, 3)]), Ok(()));
        assert_eq!(sent.len(), 3);
        // A refused slot counts nothing.
        assert_eq!(take_slot(&mut sent, &[(short, 2), (long, 9)]), Err(short));
        assert_eq!(sent.len(), 3);
    }
}
