//! The relay compartment: works the durable outbound queue. Each due
//! message is leased (so one worker owns it; a crash frees it when the
//! lease runs out), its pending recipients grouped by domain, local
//! domains delivered in place, others sent to the domain's mail servers
//! with STARTTLS: opportunistic, or authenticated where DANE (RFC 7672)
//! or an enforced MTA-STS policy (RFC 8461, [`crate::mta_sts`]) asks for
//! it. Each recipient ends delivered or failed
//! exactly once; transient failures are retried with exponential backoff
//! until the message's lifetime runs out, then reported to the sender with
//! a DSN (RFC 3464).
//!
//! DSNs follow each recipient's NOTIFY (RFC 3461, see [`crate::dsn`]):
//! a failure DSN (Action: failed) for a permanent failure or at the end of
//! the lifetime; one delay DSN (Action: delayed, with Will-Retry-Until)
//! once a recipient has been pending for [`RetryPolicy::delay_warning_secs`],
//! recorded in the store together with the queued report so that it is
//! never sent twice; a success DSN only on NOTIFY=SUCCESS, for local
//! delivery (delivered) or a next hop without DSN (relayed). A next hop
//! that announces DSN gets NOTIFY, RET, ENVID and ORCPT instead and
//! reports itself. Nothing is ever reported for the null sender. A
//! failure DSN returns the message as RET asks (whole when RET=FULL or
//! absent, up to [`crate::dsn::FULL_RETURN_MAX`]); delay and success DSNs
//! return its header section only.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use scop_mta::dane::{self, HostSecurity};
use scop_mta::mta_sts::{Mode, Policy};
use scop_smtp::{ClientConfig, Envelope, ForwardPath, Host, Mailbox, Reply, ReversePath};
use scop_store::{DsnParams, NewMessage, PendingRecipient, QueuedMessage};
use tokio::sync::{Semaphore, watch};

use crate::delivery::{Delivery, RcptOutcome};
use crate::dsn;
use crate::now;
use crate::outbound::{self, Attempt, Timeouts};
use crate::tls_reports::{Judged, policy_of};

/// How long a worker owns a message it started on.
pub const LEASE_SECS: i64 = 15 * 60;

/// Where mail for a domain goes.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    /// Fixed routes per domain (lower case), e.g. for tests or a split
    /// horizon.
    pub fixed: HashMap<String, Vec<SocketAddr>>,
    /// Send everything else through these hosts.
    pub smarthost: Option<Vec<SocketAddr>>,
    /// Port for looked-up hosts (25).
    pub port: u16,
    /// MX lookups through the validating resolver; without it, the
    /// domain's own addresses from the system resolver are used.
    pub dns: Option<crate::mxlookup::Dns>,
    /// Local addresses outbound connections come from, at most one per
    /// address family (so SPF sees the address the domain publishes);
    /// empty: the system's choice.
    pub source: Vec<std::net::IpAddr>,
    /// MTA-STS (RFC 8461) for looked-up hosts without DANE; none: off.
    pub sts: Option<Arc<crate::mta_sts::Sts>>,
    /// Where the TLS sessions to looked-up hosts are counted for reports
    /// (RFC 8460); none: off.
    pub tls_reports: Option<Arc<crate::tls_reports::TlsReporter>>,
}

/// One server to try for a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Its host name (SNI, and DANE's TLSA base domain).
    pub name: String,
    /// Its address.
    pub addr: SocketAddr,
    /// What TLS must prove there (DANE, RFC 7672).
    pub security: HostSecurity,
    /// The policy its TLS sessions are reported under (RFC 8460); none
    /// for routes not looked up in DNS.
    pub report: Option<Arc<scop_mta::tlsrpt::Policy>>,
    /// How reports judge an established session there beyond its own
    /// TLS checks (nothing is refused for it).
    pub judged: Judged,
}

impl Target {
    fn opportunistic(name: &str, addr: SocketAddr) -> Self {
        Target {
            name: name.to_string(),
            addr,
            security: HostSecurity::Opportunistic,
            report: None,
            judged: Judged::AsIs,
        }
    }
}

/// The route for one domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Try these in order.
    Hosts(Vec<Target>),
    /// The domain accepts no mail (RFC 7505 null MX).
    NullMx,
    /// The domain does not exist.
    NoSuchDomain,
    /// Temporary lookup failure.
    Temp(String),
}

impl Routes {
    /// Routes mail for `domain`: a fixed route, an address literal, the
    /// smarthost, the MX records (with [`Routes::dns`]), or else the
    /// domain's own addresses (the implicit MX of RFC 5321 5.1).
    pub async fn route(&self, domain: &str) -> Route {
        let key = domain.to_ascii_lowercase();
        let all = |a: &[SocketAddr]| a.iter().map(|a| Target::opportunistic(&key, *a)).collect();
        if let Some(a) = self.fixed.get(&key) {
            return Route::Hosts(all(a));
        }
        if let Some(ip) = literal(&key) {
            return Route::Hosts(all(&[SocketAddr::new(ip, self.port)]));
        }
        if let Some(a) = &self.smarthost {
            return Route::Hosts(all(a));
        }
        if let Some(dns) = &self.dns {
            return self.route_mx(dns, &key).await;
        }
        match tokio::net::lookup_host((key.as_str(), self.port)).await {
            Ok(addrs) => {
                let v: Vec<_> = addrs.map(|a| Target::opportunistic(&key, a)).collect();
                if v.is_empty() {
                    Route::Temp(format!("{domain} has no address"))
                } else {
                    Route::Hosts(v)
                }
            }
            Err(e) => Route::Temp(format!("lookup of {domain}: {e}")),
        }
    }
}

impl Routes {
    /// The domain's MX hosts and their addresses, each with what TLS must
    /// prove there: DANE (RFC 7672) where the MX answer, the host's
    /// addresses and its TLSA records are all DNSSEC-validated. A host
    /// whose TLSA lookup fails is left out (as if unreachable), and
    /// counted as `dnssec-invalid` when TLS reports are kept.
    async fn route_mx(&self, dns: &crate::mxlookup::Dns, domain: &str) -> Route {
        use crate::mxlookup::{ADDRESSES_PER_HOST_MAX, Plan, plan};
        let (mx, mx_secure) = dns.mx_validated(domain).await;
        let hosts = match plan(domain, mx) {
            Plan::Hosts(h) => h,
            Plan::NullMx => return Route::NullMx,
            Plan::NoSuchDomain => return Route::NoSuchDomain,
            Plan::Temp(e) => return Route::Temp(format!("MX lookup of {domain}: {e}")),
        };
        let mut out = Vec::new();
        let mut last = String::new();
        for h in hosts {
            let (addrs, addrs_secure) = match dns.addresses_validated(&h).await {
                Ok(a) => a,
                Err(e) => {
                    last = format!("address lookup of {h}: {e}");
                    continue;
                }
            };
            if addrs.is_empty() {
                continue;
            }
            let security = if dane::wants_tlsa(mx_secure, addrs_secure) {
                dane::host_security(dns.tlsa(&h, self.port).await)
            } else {
                HostSecurity::Opportunistic
            };
            match &security {
                HostSecurity::Unreachable(e) => {
                    tracing::info!(host = %h, error = %e, "MX host skipped");
                    // No valid TLSA answer (RFC 8460 4.3.2.2).
                    if let Some(reporter) = &self.tls_reports {
                        let policy = scop_mta::tlsrpt::Policy::tlsa(domain, &h, &[]);
                        let failed = outbound::TlsOutcome::Failed(
                            scop_mta::tlsrpt::ResultType::DnssecInvalid,
                            e.clone(),
                        );
                        reporter.record(&policy, &failed, &h, addrs[0], None);
                    }
                    last = format!("{h}: {e}");
                    continue;
                }
                HostSecurity::Authenticated(r) => {
                    tracing::info!(host = %h, records = r.len(), "DANE: TLS must match the host's TLSA records");
                }
                HostSecurity::Encrypted => {
                    tracing::info!(host = %h, "DANE: TLS required (no usable TLSA record)");
                }
                HostSecurity::Opportunistic | HostSecurity::Pkix => {}
            }
            out.extend(
                addrs
                    .into_iter()
                    .take(ADDRESSES_PER_HOST_MAX)
                    .map(|ip| Target {
                        name: h.clone(),
                        addr: SocketAddr::new(ip, self.port),
                        security: security.clone(),
                        report: None,
                        judged: Judged::AsIs,
                    }),
            );
        }
        let (mut sts_policy, mut sts_failure) = (None, None);
        if let Some(sts) = &self.sts
            && out
                .iter()
                .any(|t| t.security == HostSecurity::Opportunistic)
        {
            (sts_policy, sts_failure) = sts.policy(dns, domain, crate::now()).await;
        }
        if let Some(policy) = &sts_policy {
            for h in apply_policy(policy, &mut out) {
                tracing::info!(%domain, host = %h, mode = %policy.mode, "MTA-STS: MX host not named by the policy");
            }
            if out.is_empty() {
                return Route::Temp(format!(
                    "MTA-STS: no MX host of {domain} is named by its policy (mx: {})",
                    policy.mx.join(", ")
                ));
            }
        }
        // What TLS reports need, only when they are kept.
        if self.tls_reports.is_some() {
            let (sts, failed) = (sts_policy.as_ref(), sts_failure.as_ref());
            for t in &mut out {
                let p = policy_of(domain, &t.name, &t.security, sts, failed.is_some());
                t.report = Some(Arc::new(p));
                t.judged = Judged::of(&t.name, &t.security, sts, failed);
            }
        }
        if out.is_empty() {
            Route::Temp(if last.is_empty() {
                format!("no address for the mail servers of {domain}")
            } else {
                last
            })
        } else {
            Route::Hosts(out)
        }
    }
}

/// Applies an MTA-STS policy to the hosts DANE left opportunistic (RFC
/// 8461 4.1, 4.2; DANE takes precedence, 2): in `enforce` mode hosts the
/// policy does not name are removed and the others must present a
/// certificate the trust store validates for their name; in `testing`
/// mode nothing changes. The names of the hosts the policy does not name.
fn apply_policy(policy: &Policy, hosts: &mut Vec<Target>) -> Vec<String> {
    let mut refused: Vec<String> = Vec::new();
    let enforce = policy.mode == Mode::Enforce;
    hosts.retain_mut(|t| {
        if t.security != HostSecurity::Opportunistic || policy.mode == Mode::None {
            return true;
        }
        if !policy.mx_matches(&t.name) {
            if !refused.contains(&t.name) {
                refused.push(t.name.clone());
            }
            return !enforce;
        }
        if enforce {
            t.security = HostSecurity::Pkix;
        }
        true
    });
    refused
}

/// The fate of a REQUIRETLS message no server can take (RFC 8689 4.2.1,
/// status 5.7.30).
fn requiretls_failure(detail: &str) -> Fate {
    Fate::Failed {
        status: "5.7.30".into(),
        detail: format!("REQUIRETLS support required: {detail}"),
    }
}

fn literal(domain: &str) -> Option<IpAddr> {
    let inner = domain.strip_prefix('[')?.strip_suffix(']')?;
    let inner = inner.strip_prefix("ipv6:").unwrap_or(inner);
    inner.parse().ok()
}

/// Retry schedule, and when senders hear about delays.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// First retry after this many seconds.
    pub base_secs: i64,
    /// Longest gap between attempts.
    pub max_secs: i64,
    /// A recipient still pending this long after queueing gets one delay
    /// DSN (at its next attempt), if its NOTIFY allows; 0 disables delay
    /// DSNs.
    pub delay_warning_secs: i64,
}

/// Default of [`RetryPolicy::delay_warning_secs`]: 4 hours.
pub const DELAY_WARNING_SECS: i64 = 4 * 3600;

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base_secs: 60,
            max_secs: 4 * 3600,
            delay_warning_secs: DELAY_WARNING_SECS,
        }
    }
}

/// The relay.
#[derive(Debug)]
pub struct Relay {
    /// Local delivery (also gives the store and host name).
    pub delivery: Delivery,
    /// Routing.
    pub routes: Routes,
    /// TLS client configuration.
    pub tls: Arc<rustls::ClientConfig>,
    /// Retry schedule.
    pub retry: RetryPolicy,
    /// Timeouts per attempt.
    pub timeouts: Timeouts,
    /// Messages in flight at once.
    pub concurrency: usize,
    /// Connections in flight per destination domain (Postfix's default
    /// limit is 20; a large receiver may throttle many more).
    pub per_domain: usize,
    /// How often the queue is polled when nothing wakes the relay.
    pub poll: Duration,
    domains: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// Messages in flight (`concurrency` permits, made at first use).
    slots: std::sync::OnceLock<Arc<Semaphore>>,
    /// Whether stale leases were released.
    released: std::sync::atomic::AtomicBool,
    /// This relay's name on the leases it takes: a relay that starts
    /// again releases the leases it held before, and only those, so
    /// several relays (with different names) can work one store.
    pub owner: String,
    /// Sessions kept open for the next message to the same host.
    pub pool: outbound::Pool,
    /// How long delivery records are kept (`None`: for ever); older ones
    /// are removed at start and every [`PRUNE_EVERY`].
    pub log_retention: Option<Duration>,
}

/// The default of [`Relay::log_retention`]: 30 days.
pub const LOG_RETENTION: Duration = Duration::from_secs(30 * 86_400);
/// How often the delivery log is pruned.
pub const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// How a delivered recipient left our hands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handoff {
    /// Into a local mailbox.
    Local,
    /// To a next hop that announced DSN, or into our forward queue: the
    /// parameters went with the message.
    DsnPassedOn,
    /// To a next hop without DSN (RFC 3461 5.2.2 "relayed").
    Relayed,
}

/// One recipient's fate in an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fate {
    Delivered {
        detail: String,
        handoff: Handoff,
        remote: Option<String>,
    },
    Deferred {
        status: String,
        detail: String,
    },
    Failed {
        status: String,
        detail: String,
    },
}

impl Fate {
    fn deferred(detail: impl Into<String>) -> Fate {
        Fate::Deferred {
            status: "4.4.1".into(),
            detail: detail.into(),
        }
    }
}

/// Recipients to report on, by kind of DSN.
#[derive(Debug, Default)]
struct Reports {
    failed: Vec<crate::dsn::RecipientStatus>,
    delayed: Vec<crate::dsn::RecipientStatus>,
    succeeded: Vec<crate::dsn::RecipientStatus>,
}

fn status_of(r: &Reply, default: &str) -> String {
    r.enhanced()
        .map(|c| format!("{}.{}.{}", c.class(), c.subject(), c.detail()))
        .unwrap_or_else(|| default.to_string())
}

fn reply_text(r: &Reply) -> String {
    let code = r.code();
    match r.enhanced() {
        Some(c) => format!(
            "{code} {}.{}.{} {}",
            c.class(),
            c.subject(),
            c.detail(),
            r.lines().join(" ")
        ),
        None => format!("{code} {}", r.lines().join(" ")),
    }
}

/// A relay's default name on its leases: our host name and the
/// mailboxes' root, the same from one start to the next.
pub fn default_owner(delivery: &Delivery) -> String {
    format!("{}:{}", delivery.hostname, delivery.mail_root.display())
}

impl Relay {
    /// A relay with default limits.
    pub fn new(delivery: Delivery, routes: Routes) -> Self {
        let owner = default_owner(&delivery);
        Relay {
            owner,
            delivery,
            routes,
            tls: crate::tls::opportunistic_client(),
            retry: RetryPolicy::default(),
            timeouts: Timeouts::default(),
            concurrency: 32,
            per_domain: 10,
            poll: Duration::from_secs(5),
            domains: Mutex::new(HashMap::new()),
            slots: std::sync::OnceLock::new(),
            released: std::sync::atomic::AtomicBool::new(false),
            pool: outbound::Pool::default(),
            log_retention: Some(LOG_RETENTION),
        }
    }

    /// Removes the delivery records older than [`Relay::log_retention`].
    async fn prune_log(&self) {
        let Some(keep) = self.log_retention else {
            return;
        };
        let before = now().saturating_sub(i64::try_from(keep.as_secs()).unwrap_or(i64::MAX));
        match self.delivery.store.prune_delivery_log(before).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "old delivery records removed"),
            Err(e) => tracing::warn!(error = %e, "pruning the delivery log failed"),
        }
    }

    /// Works the queue until `stop` turns true. Leases this relay left
    /// when it last stopped (a crash) are released first.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        self.release_stale_leases().await;
        let slots = self.slots().clone();
        // Until the relay stops: idle pooled sessions are closed once
        // they have waited long enough, and the delivery log is pruned.
        {
            let me = self.clone();
            let mut stop = stop.clone();
            tokio::spawn(async move {
                let mut pruned: Option<Instant> = None;
                loop {
                    if pruned.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
                        me.prune_log().await;
                        pruned = Some(Instant::now());
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => me.pool.sweep().await,
                        _ = stop.changed() => return,
                    }
                }
            });
        }
        loop {
            let now = now();
            match self.delivery.store.due(now, 256).await {
                Ok(due) => {
                    for m in due {
                        let until = now + LEASE_SECS;
                        match self
                            .delivery
                            .store
                            .lease(m.id, now, until, &self.owner)
                            .await
                        {
                            Ok(true) => {}
                            Ok(false) => continue,
                            Err(e) => {
                                tracing::error!(error = %e, "lease failed");
                                continue;
                            }
                        }
                        let Ok(permit) = slots.clone().acquire_owned().await else {
                            return;
                        };
                        let me = self.clone();
                        tokio::spawn(async move {
                            me.process(m).await;
                            drop(permit);
                        });
                    }
                }
                Err(e) => tracing::error!(error = %e, "queue scan failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.poll) => {}
                _ = self.delivery.queued.notified() => {}
                _ = stop.changed() => return,
            }
        }
    }

    fn slots(&self) -> &Arc<Semaphore> {
        self.slots
            .get_or_init(|| Arc::new(Semaphore::new(self.concurrency.max(1))))
    }

    /// Starts on a message this relay queued and leased itself
    /// ([`scop_store::Store::enqueue_leased`], from the mesh hop) without
    /// waiting for a queue scan; it shares the `concurrency` slots with
    /// the queue runner. A crash before the attempt ends leaves the lease,
    /// which the next start releases.
    pub fn hand_over(self: &Arc<Self>, m: QueuedMessage) {
        let me = self.clone();
        tokio::spawn(async move {
            let Ok(permit) = me.slots().clone().acquire_owned().await else {
                return;
            };
            me.process(m).await;
            drop(permit);
        });
    }

    /// Releases the leases this relay's previous process left (it died
    /// during an attempt), once per relay: [`Relay::run`] does it first,
    /// and a caller that hands messages over ([`Relay::hand_over`])
    /// before the runner starts must await it before the first, or its
    /// fresh lease would be released under it. Other relays' leases stay.
    pub async fn release_stale_leases(&self) {
        if self
            .released
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return;
        }
        match self.delivery.store.release_leases_of(&self.owner).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(owner = %self.owner, released = n, "leases of the previous run released")
            }
            Err(e) => tracing::error!(error = %e, "could not release the previous run's leases"),
        }
    }

    fn domain_slot(&self, domain: &str) -> Arc<Semaphore> {
        let mut d = self.domains.lock().unwrap_or_else(|p| p.into_inner());
        d.entry(domain.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_domain.max(1))))
            .clone()
    }

    /// One pass over a leased message.
    pub async fn process(&self, m: QueuedMessage) {
        let now = now();
        let mut by_domain: BTreeMap<String, Vec<&PendingRecipient>> = BTreeMap::new();
        for r in &m.pending {
            let d = r.rcpt.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
            by_domain.entry(d.to_ascii_lowercase()).or_default().push(r);
        }
        let mut fates: Vec<(String, Fate)> = Vec::new();
        for (domain, rcpts) in by_domain {
            let f = self.attempt_domain(&m, &domain, &rcpts, now).await;
            fates.extend(f);
        }

        let store = &self.delivery.store;
        let expired = now >= m.expires;
        let attempts = u32::try_from(m.attempts.max(0)).unwrap_or(u32::MAX);
        let next = now
            + scop_store::next_retry(
                attempts.saturating_add(1),
                self.retry.base_secs,
                self.retry.max_secs,
            );
        let warn = self.retry.delay_warning_secs > 0
            && now.saturating_sub(m.created) >= self.retry.delay_warning_secs;
        let mut reports = Reports::default();
        for (rcpt, fate) in fates {
            let info = m.pending.iter().find(|p| p.rcpt == rcpt);
            let notify = info.and_then(|p| p.dsn.notify);
            let status =
                |action: dsn::Action, status: &str, diagnostic: &str| dsn::RecipientStatus {
                    recipient: rcpt.clone(),
                    original_recipient: info
                        .and_then(|p| p.dsn.orcpt.as_ref())
                        .map(|o| (o.addr_type.clone(), o.address.clone())),
                    action,
                    status: status.to_string(),
                    diagnostic: diagnostic.to_string(),
                    remote_mta: None,
                    last_attempt: now,
                    will_retry_until: None,
                };
            let res = match fate {
                Fate::Delivered {
                    detail,
                    handoff,
                    remote,
                } => {
                    if dsn::wants_success(notify) && handoff != Handoff::DsnPassedOn {
                        let (action, code) = match handoff {
                            Handoff::Relayed => (dsn::Action::Relayed, "2.0.0"),
                            _ => (dsn::Action::Delivered, "2.0.0"),
                        };
                        let mut st = status(action, code, &detail);
                        st.remote_mta = remote;
                        reports.succeeded.push(st);
                    }
                    store.record_delivered(m.id, &rcpt, now, &detail).await
                }
                Fate::Deferred { detail, .. } if expired => {
                    let detail = format!("lifetime expired; last error: {detail}");
                    if dsn::wants_failure(notify) {
                        reports
                            .failed
                            .push(status(dsn::Action::Failed, "4.4.7", &detail));
                    }
                    store.record_failed(m.id, &rcpt, now, &detail).await
                }
                Fate::Deferred {
                    status: code,
                    detail,
                } => {
                    let notified = info.is_none_or(|p| p.delay_notified);
                    if warn && !notified && dsn::wants_delay(notify) {
                        let mut st = status(dsn::Action::Delayed, &code, &detail);
                        st.will_retry_until = Some(m.expires);
                        reports.delayed.push(st);
                    }
                    store.record_deferred(m.id, &rcpt, now, next, &detail).await
                }
                Fate::Failed {
                    status: code,
                    detail,
                } => {
                    if dsn::wants_failure(notify) {
                        reports
                            .failed
                            .push(status(dsn::Action::Failed, &code, &detail));
                    }
                    store.record_failed(m.id, &rcpt, now, &detail).await
                }
            };
            if let Err(e) = res {
                tracing::error!(id = %m.id, rcpt, error = %e, "could not record a delivery result");
            }
        }
        if dsn::may_report(&m.sender) {
            if !reports.failed.is_empty() {
                // RFC 8689 5: as if RET=HDRS for a REQUIRETLS message.
                let returned = match m.requiretls {
                    true => dsn::Returned::Headers,
                    false => dsn::Returned::for_failure(m.ret),
                };
                self.report(&m, reports.failed, returned, now, "failure")
                    .await;
            }
            if !reports.succeeded.is_empty() {
                self.report(
                    &m,
                    reports.succeeded,
                    dsn::Returned::Headers,
                    now,
                    "success",
                )
                .await;
            }
            if !reports.delayed.is_empty() {
                self.delay_report(&m, reports.delayed, now).await;
            }
        }
        if let Err(e) = store.release(m.id).await {
            tracing::error!(id = %m.id, error = %e, "could not release the lease");
        }
    }

    /// A report to the sender of `m`, queued from the null sender.
    fn report_message(
        &self,
        m: &QueuedMessage,
        recipients: Vec<dsn::RecipientStatus>,
        returned: dsn::Returned,
        now: i64,
    ) -> NewMessage {
        let id = m.id.to_string();
        let body = dsn::build(&dsn::Report {
            reporting_mta: &self.delivery.hostname,
            to: &m.sender,
            queue_id: &id,
            envid: m.envid.as_deref(),
            arrival: m.created,
            now,
            recipients,
            original: &m.body,
            returned,
        });
        NewMessage {
            sender: String::new(),
            recipients: vec![m.sender.clone()],
            body,
            lifetime_secs: self.delivery.lifetime_secs,
            // RFC 8689 5: the report of a REQUIRETLS message asks for it
            // too (it returns the header only, see `process`).
            dsn: DsnParams {
                requiretls: m.requiretls,
                ..DsnParams::default()
            },
        }
    }

    async fn report(
        &self,
        m: &QueuedMessage,
        recipients: Vec<dsn::RecipientStatus>,
        returned: dsn::Returned,
        now: i64,
        kind: &str,
    ) {
        let msg = self.report_message(m, recipients, returned, now);
        match self.delivery.store.enqueue(&msg, now).await {
            Ok(dsn_id) => {
                tracing::info!(id = %m.id, dsn = %dsn_id, kind, "delivery report queued");
                self.delivery.queued.notify_one();
            }
            Err(e) => {
                tracing::error!(id = %m.id, error = %e, kind, "could not queue a delivery report")
            }
        }
    }

    /// Queues one delay DSN for `recipients` and marks them notified, in
    /// one store transaction (never twice, also across a restart).
    async fn delay_report(
        &self,
        m: &QueuedMessage,
        recipients: Vec<dsn::RecipientStatus>,
        now: i64,
    ) {
        let rcpts: Vec<String> = recipients.iter().map(|r| r.recipient.clone()).collect();
        let msg = self.report_message(m, recipients, dsn::Returned::Headers, now);
        match self
            .delivery
            .store
            .enqueue_delay_report(m.id, &rcpts, &msg, now)
            .await
        {
            Ok(Some(dsn_id)) => {
                tracing::info!(id = %m.id, dsn = %dsn_id, "delay report queued");
                self.delivery.queued.notify_one();
            }
            Ok(None) => {}
            Err(e) => tracing::error!(id = %m.id, error = %e, "could not queue a delay report"),
        }
    }

    async fn attempt_domain(
        &self,
        m: &QueuedMessage,
        domain: &str,
        rcpts: &[&PendingRecipient],
        now: i64,
    ) -> Vec<(String, Fate)> {
        let all = |f: Fate| rcpts.iter().map(|r| (r.rcpt.clone(), f.clone())).collect();
        match self.delivery.store.is_local_domain(domain).await {
            Ok(true) => return self.deliver_local(m, rcpts, now).await,
            Ok(false) => {}
            Err(e) => return all(Fate::deferred(format!("store: {e}"))),
        }
        let mut hosts = match self.routes.route(domain).await {
            Route::Hosts(h) => h,
            Route::NullMx => {
                return all(Fate::Failed {
                    status: "5.1.10".into(),
                    detail: format!("{domain} accepts no mail (null MX)"),
                });
            }
            Route::NoSuchDomain => {
                return all(Fate::Failed {
                    status: "5.1.2".into(),
                    detail: format!("{domain} does not exist"),
                });
            }
            Route::Temp(e) => {
                return all(Fate::Deferred {
                    status: "4.4.3".into(),
                    detail: e,
                });
            }
        };
        if !m.requiretls && dane::tls_not_required(&m.body) {
            // RFC 8689 4.2.2: the sender asked that TLS policy not stop
            // the message (STARTTLS is still used when offered).
            // Such as our TLS reports, whose sessions are not reported
            // on (RFC 8460 5.3).
            for t in &mut hosts {
                t.security = HostSecurity::Opportunistic;
                t.report = None;
                t.judged = Judged::AsIs;
            }
        }
        if m.requiretls {
            // RFC 8689 4.2.1: only servers whose TLS is authenticated, by
            // DANE or an enforced MTA-STS policy.
            hosts.retain(|t| {
                matches!(
                    t.security,
                    HostSecurity::Authenticated(_) | HostSecurity::Pkix
                )
            });
            if hosts.is_empty() {
                return all(requiretls_failure(&format!(
                    "no mail server of {domain} is authenticated by DANE or MTA-STS"
                )));
            }
        }
        let from = if m.sender.is_empty() {
            ReversePath::Null
        } else {
            match Mailbox::parse(&m.sender, true) {
                Ok(mb) => ReversePath::Mailbox(mb),
                Err(_) => {
                    return all(Fate::Failed {
                        status: "5.1.7".into(),
                        detail: format!("invalid sender address {}", m.sender),
                    });
                }
            }
        };
        let mut fates = Vec::new();
        let mut envelope_rcpts = Vec::new();
        let mut names = Vec::new();
        for r in rcpts {
            match Mailbox::parse(&r.rcpt, true) {
                Ok(mb) => {
                    envelope_rcpts.push((ForwardPath::Mailbox(mb), dsn::rcpt_params(&r.dsn)));
                    names.push(r.rcpt.clone());
                }
                Err(_) => fates.push((
                    r.rcpt.clone(),
                    Fate::Failed {
                        status: "5.1.3".into(),
                        detail: format!("invalid recipient address {}", r.rcpt),
                    },
                )),
            }
        }
        if envelope_rcpts.is_empty() {
            return fates;
        }
        let envelope = Envelope {
            facts: None,
            from,
            params: dsn::mail_params(m.ret, m.envid.as_deref(), m.requiretls),
            rcpts: envelope_rcpts,
        };
        let helo = Host::parse(&self.delivery.hostname, false)
            .unwrap_or_else(|_| Host::parse("localhost", false).expect("valid host"));
        let config = ClientConfig::new(helo);
        let slot = self.domain_slot(domain);
        let Ok(_permit) = slot.acquire().await else {
            return all(Fate::deferred("shutting down"));
        };
        let mut last_error = String::from("no host to try");
        // Whether every server lacked what the message requires.
        let mut all_unsuitable = !hosts.is_empty();
        for Target {
            name,
            addr,
            security,
            report,
            judged,
        } in hosts
        {
            // A `testing` policy's checks, for the report.
            let mut verdict = None;
            let mut seen = Vec::new();
            let tls = match &security {
                // RFC 7672 3.2.2: the MX host name, and the domain it
                // serves, are the names a DANE-TA chain may be issued for.
                HostSecurity::Authenticated(records) => {
                    crate::tls::dane_client(records.clone(), vec![name.clone(), domain.to_string()])
                }
                HostSecurity::Pkix => match &self.routes.sts {
                    Some(sts) => sts.smtp_client(),
                    None => continue,
                },
                // (Judged only while TLS reports are kept.)
                _ => match (&self.routes.sts, &judged) {
                    (Some(sts), Judged::AsEnforced) => {
                        let (tls, v) = sts.observing_client();
                        verdict = Some(v);
                        tls
                    }
                    _ => self.tls.clone(),
                },
            };
            let attempt = outbound::send(
                addr,
                &name,
                &config,
                &tls,
                &security,
                &envelope,
                &m.body,
                self.timeouts,
                &self.routes.source,
                Some(&self.pool),
                &mut seen,
            )
            .await;
            if let (Some(reporter), Some(policy)) = (&self.routes.tls_reports, &report) {
                let source = self
                    .routes
                    .source
                    .iter()
                    .copied()
                    .find(|ip| ip.is_ipv4() == addr.is_ipv4());
                for o in seen {
                    let o = judged.outcome(o, verdict.as_ref());
                    reporter.record(policy, &o, &name, addr.ip(), source);
                }
            }
            let (e, unsuitable) = match attempt {
                Attempt::Done(result, caps) => {
                    let handoff = if caps.dsn {
                        Handoff::DsnPassedOn
                    } else {
                        Handoff::Relayed
                    };
                    fates.extend(transaction_fates(&result, &names, addr, &name, handoff));
                    return fates;
                }
                Attempt::Failed(e) => (e, false),
                Attempt::Unsuitable(e) => (e, true),
            };
            all_unsuitable &= unsuitable;
            tracing::info!(id = %m.id, %addr, error = %e, unsuitable, "attempt failed");
            last_error = format!("{addr}: {e}");
        }
        // That will not change by waiting (RFC 8689 4.2.1: a non-delivery
        // report).
        let fate = match all_unsuitable {
            true => requiretls_failure(&last_error),
            false => Fate::deferred(last_error),
        };
        for r in names {
            fates.push((r, fate.clone()));
        }
        fates
    }

    async fn deliver_local(
        &self,
        m: &QueuedMessage,
        rcpts: &[&PendingRecipient],
        now: i64,
    ) -> Vec<(String, Fate)> {
        let names: Vec<String> = rcpts.iter().map(|r| r.rcpt.clone()).collect();
        let params = DsnParams {
            ret: m.ret,
            envid: m.envid.clone(),
            recipients: rcpts.iter().map(|r| r.dsn.clone()).collect(),
            requiretls: m.requiretls,
        };
        match self
            .delivery
            .deliver(&m.sender, &names, &params, Arc::new(m.body.clone()), now)
            .await
        {
            Ok(outcomes) => outcomes
                .into_iter()
                .map(|(r, o)| {
                    let f = match o {
                        RcptOutcome::Done => Fate::Delivered {
                            detail: "delivered locally".into(),
                            handoff: Handoff::Local,
                            remote: None,
                        },
                        // The forwarded copy carries NOTIFY on.
                        RcptOutcome::Forwarded => Fate::Delivered {
                            detail: "forwarded".into(),
                            handoff: Handoff::DsnPassedOn,
                            remote: None,
                        },
                        RcptOutcome::Unknown | RcptOutcome::NotLocal => Fate::Failed {
                            status: "5.1.1".into(),
                            detail: "550 5.1.1 No such user here".into(),
                        },
                    };
                    (r, f)
                })
                .collect(),
            Err(e) => names
                .into_iter()
                .map(|r| {
                    (
                        r,
                        Fate::Deferred {
                            status: "4.3.0".into(),
                            detail: format!("local delivery: {e}"),
                        },
                    )
                })
                .collect(),
        }
    }
}

/// Per-recipient fates from the server's replies (`names` are the queued
/// recipient addresses, in envelope order).
fn transaction_fates(
    r: &scop_smtp::TransactionResult,
    names: &[String],
    addr: SocketAddr,
    host: &str,
    handoff: Handoff,
) -> Vec<(String, Fate)> {
    let mut out = Vec::new();
    let classify = |reply: &Reply, default_status: &str| -> Fate {
        let text = format!("{addr}: {}", reply_text(reply));
        if reply.is_positive() {
            Fate::Delivered {
                detail: text,
                handoff,
                remote: Some(host.to_string()),
            }
        } else if reply.is_permanent() {
            Fate::Failed {
                status: status_of(reply, default_status),
                detail: text,
            }
        } else {
            let fallback = format!("4{}", &default_status[1..]);
            Fate::Deferred {
                status: status_of(reply, &fallback),
                detail: text,
            }
        }
    };
    let mail_refused = r.mail.as_ref().filter(|m| !m.is_positive());
    for (i, rcpt) in names.iter().enumerate() {
        let rr = r.rcpts.get(i).and_then(|(_, rr)| rr.as_ref());
        let fate = if let Some(m) = mail_refused {
            classify(m, "5.0.0")
        } else {
            match rr {
                Some(rr) if !rr.is_positive() => classify(rr, "5.1.1"),
                Some(_) => match &r.data {
                    Some(d) => classify(d, "5.0.0"),
                    None => Fate::deferred(format!(
                        "{addr}: {}",
                        r.error
                            .as_ref()
                            .map(|e| e.to_string())
                            .unwrap_or_else(|| "no reply to the message".into())
                    )),
                },
                None => Fate::deferred(format!(
                    "{addr}: {}",
                    r.error
                        .as_ref()
                        .map(|e| e.to_string())
                        .unwrap_or_else(|| "recipient not attempted".into())
                )),
            }
        };
        out.push((rcpt.clone(), fate));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_literals_route_directly() {
        assert_eq!(literal("[127.0.0.1]"), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(literal("[ipv6:::1]"), Some("::1".parse().unwrap()));
        assert_eq!(literal("example.org"), None);
    }

    /// RFC 8461 4.1, 4.2 and 2: what a policy does to each host.
    #[test]
    fn an_mta_sts_policy_keeps_the_hosts_it_names_and_leaves_dane_alone() {
        let target = |name: &str, security: HostSecurity| Target {
            name: name.into(),
            addr: "192.0.2.1:25".parse().unwrap(),
            security,
            report: None,
            judged: Judged::AsIs,
        };
        let hosts = vec![
            target("mx1.example.net", HostSecurity::Opportunistic),
            target("backup.other.test", HostSecurity::Opportunistic),
            target("dane.other.test", HostSecurity::Encrypted),
            target("MX2.Example.Net.", HostSecurity::Opportunistic),
        ];
        let policy = |mode: Mode| Policy {
            mode,
            mx: vec!["*.example.net".into()],
            max_age: 86_400,
        };
        // Enforce: unnamed hosts go (once each in the report), named ones
        // need PKIX; a DANE host keeps DANE's requirement.
        let mut enforced = hosts.clone();
        assert_eq!(
            apply_policy(&policy(Mode::Enforce), &mut enforced),
            vec!["backup.other.test".to_string()]
        );
        let kept: Vec<_> = enforced
            .iter()
            .map(|t| (t.name.as_str(), t.security.clone()))
            .collect();
        assert_eq!(
            kept,
            vec![
                ("mx1.example.net", HostSecurity::Pkix),
                ("dane.other.test", HostSecurity::Encrypted),
                ("MX2.Example.Net.", HostSecurity::Pkix),
            ]
        );
        // Testing reports the same host and changes nothing; none neither.
        let mut tested = hosts.clone();
        assert_eq!(
            apply_policy(&policy(Mode::Testing), &mut tested),
            vec!["backup.other.test".to_string()]
        );
        assert_eq!(tested, hosts);
        let mut none = hosts.clone();
        assert!(apply_policy(&policy(Mode::None), &mut none).is_empty());
        assert_eq!(none, hosts);
    }
}
