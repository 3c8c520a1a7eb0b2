//! The relay compartment: works the durable outbound queue. Each due
//! message is leased (so one worker owns it; a crash frees it when the
//! lease runs out), its pending recipients grouped by domain, local
//! domains delivered in place, others sent to the domain's mail servers
//! with opportunistic STARTTLS. Each recipient ends delivered or failed
//! exactly once; transient failures are retried with exponential backoff
//! until the message's lifetime runs out, then reported to the sender with
//! a DSN (RFC 3464).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use scop_smtp::{
    ClientConfig, Envelope, ForwardPath, Host, MailParams, Mailbox, RcptParams, Reply, ReversePath,
};
use scop_store::{NewMessage, QueuedMessage};
use tokio::sync::{Semaphore, watch};

use crate::delivery::{Delivery, RcptOutcome};
use crate::dsn;
use crate::now;
use crate::outbound::{self, Attempt, Timeouts};

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
    /// MX lookups through these resolvers; without them, the domain's own
    /// addresses from the system resolver are used.
    pub dns: Option<crate::mxlookup::Stub>,
}

/// The route for one domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Try these in order (host name for SNI, address).
    Hosts(Vec<(String, SocketAddr)>),
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
        if let Some(a) = self.fixed.get(&key) {
            return Route::Hosts(a.iter().map(|a| (key.clone(), *a)).collect());
        }
        if let Some(ip) = literal(&key) {
            return Route::Hosts(vec![(key.clone(), SocketAddr::new(ip, self.port))]);
        }
        if let Some(a) = &self.smarthost {
            return Route::Hosts(a.iter().map(|a| (key.clone(), *a)).collect());
        }
        if let Some(dns) = &self.dns {
            return self.route_mx(dns, &key).await;
        }
        match tokio::net::lookup_host((key.as_str(), self.port)).await {
            Ok(addrs) => {
                let v: Vec<_> = addrs.map(|a| (key.clone(), a)).collect();
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
    async fn route_mx(&self, dns: &crate::mxlookup::Stub, domain: &str) -> Route {
        use crate::mxlookup::{ADDRESSES_PER_HOST_MAX, Plan, plan};
        let hosts = match plan(domain, dns.mx(domain).await) {
            Plan::Hosts(h) => h,
            Plan::NullMx => return Route::NullMx,
            Plan::NoSuchDomain => return Route::NoSuchDomain,
            Plan::Temp(e) => return Route::Temp(format!("MX lookup of {domain}: {e}")),
        };
        let mut out = Vec::new();
        let mut last = String::new();
        for h in hosts {
            match dns.addresses(&h).await {
                Ok(addrs) => out.extend(
                    addrs
                        .into_iter()
                        .take(ADDRESSES_PER_HOST_MAX)
                        .map(|ip| (h.clone(), SocketAddr::new(ip, self.port))),
                ),
                Err(e) => last = format!("address lookup of {h}: {e}"),
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

fn literal(domain: &str) -> Option<IpAddr> {
    let inner = domain.strip_prefix('[')?.strip_suffix(']')?;
    let inner = inner.strip_prefix("ipv6:").unwrap_or(inner);
    inner.parse().ok()
}

/// Retry schedule.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// First retry after this many seconds.
    pub base_secs: i64,
    /// Longest gap between attempts.
    pub max_secs: i64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base_secs: 60,
            max_secs: 4 * 3600,
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
    /// Connections in flight per destination domain.
    pub per_domain: usize,
    /// How often the queue is polled when nothing wakes the relay.
    pub poll: Duration,
    domains: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// One recipient's fate in an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fate {
    Delivered(String),
    Deferred(String),
    Failed { status: String, detail: String },
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

impl Relay {
    /// A relay with default limits.
    pub fn new(delivery: Delivery, routes: Routes) -> Self {
        Relay {
            delivery,
            routes,
            tls: crate::tls::opportunistic_client(),
            retry: RetryPolicy::default(),
            timeouts: Timeouts::default(),
            concurrency: 32,
            per_domain: 4,
            poll: Duration::from_secs(5),
            domains: Mutex::new(HashMap::new()),
        }
    }

    /// Works the queue until `stop` turns true. Leases left by a relay
    /// that crashed are released first: one relay works a store.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        self.release_stale_leases().await;
        let slots = Arc::new(Semaphore::new(self.concurrency.max(1)));
        loop {
            let now = now();
            match self.delivery.store.due(now, 256).await {
                Ok(due) => {
                    for m in due {
                        match self.delivery.store.lease(m.id, now, now + LEASE_SECS).await {
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

    async fn release_stale_leases(&self) {
        let store = &self.delivery.store;
        match store.list_queue().await {
            Ok(entries) => {
                for e in entries.iter().filter(|e| e.lease_until > 0) {
                    if let Err(err) = store.release(e.id).await {
                        tracing::error!(id = %e.id, error = %err, "could not release a lease");
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "queue scan failed"),
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
        let mut by_domain: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for r in &m.pending {
            let d = r.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
            by_domain
                .entry(d.to_ascii_lowercase())
                .or_default()
                .push(r.clone());
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
        let mut failed = Vec::new();
        for (rcpt, fate) in fates {
            let res = match fate {
                Fate::Delivered(detail) => store.record_delivered(m.id, &rcpt, now, &detail).await,
                Fate::Deferred(detail) if expired => {
                    let detail = format!("lifetime expired; last error: {detail}");
                    failed.push((rcpt.clone(), "4.4.7".to_string(), detail.clone()));
                    store.record_failed(m.id, &rcpt, now, &detail).await
                }
                Fate::Deferred(detail) => {
                    store.record_deferred(m.id, &rcpt, now, next, &detail).await
                }
                Fate::Failed { status, detail } => {
                    failed.push((rcpt.clone(), status, detail.clone()));
                    store.record_failed(m.id, &rcpt, now, &detail).await
                }
            };
            if let Err(e) = res {
                tracing::error!(id = %m.id, rcpt, error = %e, "could not record a delivery result");
            }
        }
        if !failed.is_empty() && dsn::may_report(&m.sender) {
            self.bounce(&m, &failed, now).await;
        }
        if let Err(e) = store.release(m.id).await {
            tracing::error!(id = %m.id, error = %e, "could not release the lease");
        }
    }

    async fn bounce(&self, m: &QueuedMessage, failed: &[(String, String, String)], now: i64) {
        let id = m.id.to_string();
        let report = dsn::build(&dsn::Report {
            reporting_mta: &self.delivery.hostname,
            to: &m.sender,
            queue_id: &id,
            arrival: m.created,
            now,
            recipients: failed
                .iter()
                .map(|(r, status, detail)| dsn::RecipientStatus {
                    recipient: r.clone(),
                    action: dsn::Action::Failed,
                    status: status.clone(),
                    diagnostic: detail.clone(),
                    remote_mta: None,
                    last_attempt: now,
                })
                .collect(),
            original: &m.body,
        });
        let queued = self
            .delivery
            .store
            .enqueue(
                &NewMessage {
                    sender: String::new(),
                    recipients: vec![m.sender.clone()],
                    body: report,
                    lifetime_secs: self.delivery.lifetime_secs,
                    dsn_requested: false,
                },
                now,
            )
            .await;
        match queued {
            Ok(dsn_id) => {
                tracing::info!(id = %m.id, dsn = %dsn_id, "failure report queued");
                self.delivery.queued.notify_one();
            }
            Err(e) => tracing::error!(id = %m.id, error = %e, "could not queue a failure report"),
        }
    }

    async fn attempt_domain(
        &self,
        m: &QueuedMessage,
        domain: &str,
        rcpts: &[String],
        now: i64,
    ) -> Vec<(String, Fate)> {
        let all = |f: Fate| rcpts.iter().map(|r| (r.clone(), f.clone())).collect();
        match self.delivery.store.is_local_domain(domain).await {
            Ok(true) => return self.deliver_local(m, rcpts, now).await,
            Ok(false) => {}
            Err(e) => return all(Fate::Deferred(format!("store: {e}"))),
        }
        let hosts = match self.routes.route(domain).await {
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
            Route::Temp(e) => return all(Fate::Deferred(e)),
        };
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
            match Mailbox::parse(r, true) {
                Ok(mb) => {
                    envelope_rcpts.push((ForwardPath::Mailbox(mb), RcptParams::default()));
                    names.push(r.clone());
                }
                Err(_) => fates.push((
                    r.clone(),
                    Fate::Failed {
                        status: "5.1.3".into(),
                        detail: format!("invalid recipient address {r}"),
                    },
                )),
            }
        }
        if envelope_rcpts.is_empty() {
            return fates;
        }
        let envelope = Envelope {
            from,
            params: MailParams::default(),
            rcpts: envelope_rcpts,
        };
        let helo = Host::parse(&self.delivery.hostname, false)
            .unwrap_or_else(|_| Host::parse("localhost", false).expect("valid host"));
        let config = ClientConfig::new(helo);
        let slot = self.domain_slot(domain);
        let Ok(_permit) = slot.acquire().await else {
            return all(Fate::Deferred("shutting down".into()));
        };
        let mut last_error = String::from("no host to try");
        for (name, addr) in hosts {
            match outbound::send(
                addr,
                &name,
                &config,
                &self.tls,
                &envelope,
                &m.body,
                self.timeouts,
            )
            .await
            {
                Attempt::Failed(e) => {
                    tracing::info!(id = %m.id, %addr, error = %e, "attempt failed");
                    last_error = format!("{addr}: {e}");
                }
                Attempt::Done(result) => {
                    fates.extend(transaction_fates(&result, &names, addr));
                    return fates;
                }
            }
        }
        for r in names {
            fates.push((r, Fate::Deferred(last_error.clone())));
        }
        fates
    }

    async fn deliver_local(
        &self,
        m: &QueuedMessage,
        rcpts: &[String],
        now: i64,
    ) -> Vec<(String, Fate)> {
        match self.delivery.deliver(&m.sender, rcpts, &m.body, now).await {
            Ok(outcomes) => outcomes
                .into_iter()
                .map(|(r, o)| {
                    let f = match o {
                        RcptOutcome::Done => Fate::Delivered("delivered locally".into()),
                        RcptOutcome::Unknown | RcptOutcome::NotLocal => Fate::Failed {
                            status: "5.1.1".into(),
                            detail: "550 5.1.1 No such user here".into(),
                        },
                    };
                    (r, f)
                })
                .collect(),
            Err(e) => rcpts
                .iter()
                .map(|r| (r.clone(), Fate::Deferred(format!("local delivery: {e}"))))
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
) -> Vec<(String, Fate)> {
    let mut out = Vec::new();
    let classify = |reply: &Reply, default_status: &str| -> Fate {
        let text = format!("{addr}: {}", reply_text(reply));
        if reply.is_positive() {
            Fate::Delivered(text)
        } else if reply.is_permanent() {
            Fate::Failed {
                status: status_of(reply, default_status),
                detail: text,
            }
        } else {
            Fate::Deferred(text)
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
                    None => Fate::Deferred(format!(
                        "{addr}: {}",
                        r.error
                            .as_ref()
                            .map(|e| e.to_string())
                            .unwrap_or_else(|| "no reply to the message".into())
                    )),
                },
                None => Fate::Deferred(format!(
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
}
