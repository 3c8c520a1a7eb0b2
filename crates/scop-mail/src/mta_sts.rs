//! MTA-STS (RFC 8461) for the relay: the I/O around
//! [`scop_mta::mta_sts`]. For a domain without DANE, [`Sts::policy`]
//! looks up `_mta-sts.DOMAIN` TXT, fetches the policy from
//! `https://mta-sts.DOMAIN/.well-known/mta-sts.txt` when its id is new
//! (the server's certificate checked against the trust store, no
//! redirect followed) and keeps it, in memory and in a file per domain
//! (read back at the next start), until its `max_age` runs out. A failed lookup or fetch falls back to
//! the kept policy while it is valid (RFC 8461 5.1); a failed fetch is
//! not tried again for the same TXT id for
//! [`scop_mta::mta_sts::FETCH_RETRY_SECS`]. Messages that want the same
//! policy while it is being fetched wait for that one fetch. A policy in
//! use is fetched again in the background once it is a day old (or half
//! its `max_age`, [`scop_mta::mta_sts::REFRESH_SECS`]).
//!
//! In `enforce` mode the relay sends only to MX hosts the policy names,
//! over TLS whose certificate chains to the trust store and names the
//! host ([`scop_mta::dane::HostSecurity::Pkix`]); in `testing` mode it
//! logs what enforcement would have refused and delivers as before.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::ServerName;
use scop_mta::mta_sts::{self, Cached, FailedFetch, Next, Policy, Response};
use scop_mta::tlsrpt::ResultType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::mxlookup::{Answer, Dns};

/// A policy fetch gives up after this long.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(20);

/// The relay's MTA-STS state: trust store, HTTPS port and policy cache.
#[derive(Debug)]
pub struct Sts {
    /// TLS for the policy fetch (HTTP/1.1 over PKIX-checked TLS).
    https: Arc<rustls::ClientConfig>,
    /// TLS for MX hosts an enforced policy names.
    smtp: Arc<rustls::ClientConfig>,
    /// The trust store.
    roots: Arc<rustls::RootCertStore>,
    /// Port of the policy servers (443).
    port: u16,
    /// One file per domain, or none (memory only).
    cache_dir: Option<PathBuf>,
    cache: Mutex<HashMap<String, Cached>>,
    /// Fetches that failed lately, per domain, with why: the next waits
    /// ([`mta_sts::FETCH_RETRY_SECS`]).
    failed: Mutex<HashMap<String, Failure>>,
    /// Fetches under way, by domain and policy id: what each comes to.
    fetching: Mutex<HashMap<String, Arc<Fetching>>>,
}

/// The outcome of one fetch, shared by every message waiting for it.
type Fetching = tokio::sync::OnceCell<Result<Policy, (ResultType, String)>>;

/// A failed fetch and why it failed, as a TLS report names it.
type Failure = (FailedFetch, (ResultType, String));

/// At most this many failed fetches are remembered (one per domain).
const MAX_FAILED: usize = 10_000;

impl Sts {
    /// MTA-STS checked against `roots`, policies fetched from `port`
    /// (443 but in tests) and kept in `cache_dir`, whose policies are
    /// read once, here.
    pub fn new(roots: rustls::RootCertStore, port: u16, cache_dir: Option<PathBuf>) -> Sts {
        let roots = Arc::new(roots);
        let client = |alpn: Vec<Vec<u8>>| {
            let mut cfg = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
                .with_safe_default_protocol_versions()
                .expect("the default provider supports the default versions")
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
            cfg.alpn_protocols = alpn;
            Arc::new(cfg)
        };
        let kept = cache_dir.as_deref().map(read_kept).unwrap_or_default();
        Sts {
            https: client(vec![b"http/1.1".to_vec()]),
            smtp: client(Vec::new()),
            roots,
            port,
            cache_dir,
            cache: Mutex::new(kept),
            failed: Mutex::default(),
            fetching: Mutex::default(),
        }
    }

    /// The TLS configuration for MX hosts of an enforced policy: the
    /// certificate must chain to the trust store and name the host
    /// (RFC 8461 4.2).
    pub fn smtp_client(&self) -> Arc<rustls::ClientConfig> {
        self.smtp.clone()
    }

    /// A TLS configuration for one session to an MX host a `testing`
    /// policy names: the certificate checked as [`Sts::smtp_client`]
    /// does, a failure only noted (see [`crate::tls::observing_client`]).
    pub fn observing_client(&self) -> (Arc<rustls::ClientConfig>, crate::tls::Verdict) {
        crate::tls::observing_client(self.roots.clone())
    }

    /// The TLS configuration for HTTPS to hosts named in DNS (PKIX, the
    /// same trust store), e.g. TLS report uploads (RFC 8460 5.4).
    pub fn https_client(&self) -> Arc<rustls::ClientConfig> {
        self.https.clone()
    }

    /// The policy in force for `domain` at `now` (unix seconds), if any,
    /// and, when `domain` announces a policy but none could be had, why
    /// (as a TLS report names it, RFC 8460 4.3.2.2).
    pub async fn policy(
        self: &Arc<Self>,
        dns: &Dns,
        domain: &str,
        now: i64,
    ) -> (Option<Policy>, Option<(ResultType, String)>) {
        let txt = match dns.txt(&format!("_mta-sts.{domain}")).await {
            Answer::Records(strings) => {
                let strings: Vec<&[u8]> = strings.iter().map(Vec::as_slice).collect();
                Ok(mta_sts::txt_record(&strings))
            }
            Answer::NoData | Answer::NxDomain => Ok(None),
            Answer::Temp(_) => Err(()),
        };
        let cached = lock(&self.cache).get(domain).cloned();
        let failed = lock(&self.failed).get(domain).cloned();
        let record = txt.as_ref().map(Option::as_ref).map_err(|_| ());
        let id = record.ok().flatten().map(|r| r.id.clone());
        // After a failed fetch: the cached policy while it is valid, else
        // none, and why.
        let fall_back = |why| match mta_sts::after_failed_fetch(cached.as_ref(), now) {
            Some(c) => (Some(c.policy.clone()), None),
            None => (None, why),
        };
        match mta_sts::next(record, cached.as_ref(), failed.as_ref().map(|f| &f.0), now) {
            Next::UseCached => (cached.map(|c| c.policy), None),
            Next::UseCachedAndRefresh => {
                // One refresh at a time: the messages meanwhile start none.
                let idle = |id: &String| !lock(&self.fetching).contains_key(&fetch_key(domain, id));
                if let Some(id) = id.filter(idle) {
                    let (sts, dns, domain) = (self.clone(), dns.clone(), domain.to_string());
                    tokio::spawn(async move {
                        // Kept, or noted as failed, by fetch_once.
                        let _ = sts.fetch_once(&dns, &domain, &id, now).await;
                    });
                }
                (cached.map(|c| c.policy), None)
            }
            Next::NoPolicy => (None, None),
            Next::FetchFailedLately => fall_back(failed.map(|f| f.1)),
            Next::Fetch => match id {
                Some(id) => match self.fetch_once(dns, domain, &id, now).await {
                    Ok(policy) => (Some(policy), None),
                    Err(why) => fall_back(Some(why)),
                },
                None => (None, None),
            },
        }
    }

    /// Fetches the policy `id` of `domain`, or waits for the fetch of
    /// another message that is under way, and keeps the policy or notes
    /// the failure.
    async fn fetch_once(
        &self,
        dns: &Dns,
        domain: &str,
        id: &str,
        now: i64,
    ) -> Result<Policy, (ResultType, String)> {
        let key = fetch_key(domain, id);
        let shared = lock(&self.fetching).entry(key.clone()).or_default().clone();
        let outcome = shared
            .get_or_init(|| async {
                let fetched = self.fetch(dns, domain).await;
                match &fetched {
                    Ok(policy) => {
                        tracing::info!(%domain, %id, mode = ?policy.mode, "MTA-STS: policy fetched");
                        lock(&self.failed).remove(domain);
                        let fresh = Cached {
                            id: id.to_string(),
                            fetched: now,
                            policy: policy.clone(),
                        };
                        self.keep(domain, &fresh);
                    }
                    Err((kind, e)) => {
                        tracing::warn!(
                            %domain,
                            error = %e,
                            retry_secs = mta_sts::FETCH_RETRY_SECS,
                            "MTA-STS: policy fetch failed"
                        );
                        let at = FailedFetch {
                            id: id.to_string(),
                            at: now,
                        };
                        self.note_failure(domain, at, (*kind, e.clone()));
                    }
                }
                fetched
            })
            .await
            .clone();
        // The next message decides afresh from the cache (or the pause).
        let mut fetching = lock(&self.fetching);
        if fetching.get(&key).is_some_and(|f| Arc::ptr_eq(f, &shared)) {
            fetching.remove(&key);
        }
        outcome
    }

    /// Remembers a failed fetch, past ones whose pause ended making room.
    fn note_failure(&self, domain: &str, fetch: FailedFetch, why: (ResultType, String)) {
        let mut failed = lock(&self.failed);
        if failed.len() >= MAX_FAILED {
            failed.retain(|_, (f, _)| f.pausing(fetch.at));
        }
        if failed.len() < MAX_FAILED || failed.contains_key(domain) {
            failed.insert(domain.to_string(), (fetch, why));
        }
    }

    fn keep(&self, domain: &str, c: &Cached) {
        lock(&self.cache).insert(domain.to_string(), c.clone());
        if let Some(path) = self.cache_file(domain)
            && let Err(e) = crate::private_file::write(&path, c.to_text().as_bytes())
        {
            tracing::warn!(file = %path.display(), error = %e, "MTA-STS: cannot keep the policy");
        }
    }

    fn cache_file(&self, domain: &str) -> Option<PathBuf> {
        self.cache_dir
            .as_ref()
            .filter(|_| file_name_ok(domain))
            .map(|d| d.join(domain))
    }

    /// Fetches and parses the policy of `domain` over HTTPS; what went
    /// wrong, as a TLS report names it (RFC 8460 4.3.2.2), and why.
    async fn fetch(&self, dns: &Dns, domain: &str) -> Result<Policy, (ResultType, String)> {
        let host = mta_sts::policy_host(domain);
        let fetch_error = |e: String| (ResultType::StsPolicyFetchError, e);
        let addrs = dns.addresses(&host).await.map_err(fetch_error)?;
        let mut last = fetch_error(format!("{host} has no address"));
        for ip in addrs {
            let at = format!("https://{host}:{} ({ip})", self.port);
            match tokio::time::timeout(FETCH_TIMEOUT, self.fetch_from(ip, &host, domain)).await {
                Ok(Ok(body)) => {
                    return Policy::parse(&body).map_err(|e| {
                        (
                            ResultType::StsPolicyInvalid,
                            format!("policy of {domain}: {e}"),
                        )
                    });
                }
                Ok(Err(HttpsError::Tls(e))) => {
                    last = (ResultType::StsWebpkiInvalid, format!("{at}: TLS: {e}"))
                }
                Ok(Err(HttpsError::Other(e))) => last = fetch_error(format!("{at}: {e}")),
                Err(_) => last = fetch_error(format!("{at}: timed out")),
            }
        }
        Err(last)
    }

    async fn fetch_from(
        &self,
        ip: std::net::IpAddr,
        host: &str,
        domain: &str,
    ) -> Result<Vec<u8>, HttpsError> {
        let name =
            ServerName::try_from(host.to_string()).map_err(|e| HttpsError::Other(e.to_string()))?;
        let request = mta_sts::request(domain);
        https_exchange(
            &self.https,
            ip,
            self.port,
            name,
            &request,
            |received, closed| match mta_sts::response(received, closed) {
                Response::Body(body) => Some(Ok(body)),
                Response::Failed(e) => Some(Err(e)),
                Response::Incomplete => None,
            },
        )
        .await
    }
}

/// The key of a fetch under way in [`Sts`]'s `fetching`.
fn fetch_key(domain: &str, id: &str) -> String {
    format!("{domain} {id}")
}

/// Why an HTTPS exchange with one address failed.
pub(crate) enum HttpsError {
    /// The TLS handshake (the certificate, most often).
    Tls(String),
    /// Anything else.
    Other(String),
}

/// One HTTP/1.1 exchange over TLS (`config`) with `name` at `ip:port`:
/// sends `request`, then hands what came back, and whether the server
/// has closed, to `decide` until it settles it. A server that closes
/// without TLS close_notify ends the answer as a close does; one that
/// closes before `decide` settles cut it short.
pub(crate) async fn https_exchange<T>(
    config: &Arc<rustls::ClientConfig>,
    ip: std::net::IpAddr,
    port: u16,
    name: ServerName<'static>,
    request: &[u8],
    mut decide: impl FnMut(&[u8], bool) -> Option<Result<T, String>>,
) -> Result<T, HttpsError> {
    let other = |e: std::io::Error| HttpsError::Other(e.to_string());
    let tcp = tokio::net::TcpStream::connect((ip, port))
        .await
        .map_err(other)?;
    let mut tls = tokio_rustls::TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| HttpsError::Tls(e.to_string()))?;
    tls.write_all(request).await.map_err(other)?;
    let mut received = Vec::new();
    let mut chunk = vec![0; 16 << 10];
    loop {
        let n = tls.read(&mut chunk).await.unwrap_or(0);
        received.extend_from_slice(&chunk[..n]);
        match decide(&received, n == 0) {
            Some(settled) => return settled.map_err(HttpsError::Other),
            None if n == 0 => return Err(HttpsError::Other("response cut short".into())),
            None => {}
        }
    }
}

/// Whether a domain name can be a cache file's name. Domain names from
/// the queue are addresses' domains (no '/'), but never trusted to be.
fn file_name_ok(domain: &str) -> bool {
    !domain.is_empty()
        && !domain.starts_with('.')
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// The policies kept in `dir`, by domain (unreadable files are skipped:
/// those domains fetch again).
fn read_kept(dir: &Path) -> HashMap<String, Cached> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return HashMap::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let domain = e
                .file_name()
                .into_string()
                .ok()
                .filter(|d| file_name_ok(d))?;
            let text = std::fs::read_to_string(e.path()).ok()?;
            Some((domain, Cached::parse(&text)?))
        })
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The trust store for MTA-STS: the system's certificate authorities,
/// and those of `extra` (a PEM file, for a private CA).
pub fn roots(extra: Option<&Path>) -> Result<rustls::RootCertStore, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let system = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(system.certs);
    if let Some(file) = extra {
        let pem = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let certs: Vec<CertificateDer<'_>> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: {e}", file.display()))?;
        if certs.is_empty() {
            return Err(format!("{}: no certificate", file.display()));
        }
        for c in certs {
            roots
                .add(c)
                .map_err(|e| format!("{}: {e}", file.display()))?;
        }
    } else if added == 0 {
        tracing::warn!("MTA-STS: no system certificate authority found; no policy can be fetched");
    }
    Ok(roots)
}
