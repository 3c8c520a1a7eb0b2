//! `scop tls acme`: a certificate for the public listeners (MX,
//! submission) from an ACME CA (RFC 8555), proved with DNS-01 challenges
//! that the deployment's own primary serves.
//!
//! ```text
//!  scop tls acme ──(1) order──────────────────────────────▶ ACME CA
//!       │        ◀─(2) one DNS-01 challenge per name ─────     │
//!       ├─(3) TSIG UPDATE: _acme-challenge.NAME TXT ─▶ primary  │
//!       ├─(4) TXT served? ────────────────────────────▶ primary │
//!       ├─(5) ready ─────────────────────────────────────────▶ │ ─(6) TXT? ─▶ primary
//!       ├─(7) poll, then finalize with a CSR for the listeners' key ▶ │
//!       ├─(8) TSIG UPDATE: delete the TXT records (also on failure)
//!       └─(9) write chain + key (temp file + rename), restart mx and submission
//! ```
//!
//! The UPDATEs are signed with the ACME TSIG key (`keys/tsig/acme.key`),
//! which the primary's policy confines to `_acme-challenge` TXT records.
//! The decision "renew now?" is [`renewal_due`], a pure function of the
//! certificate's facts ([`CertFacts`]) and the clock; `scop up` runs the
//! same issuance when the deployment's `scop.toml` has an `[acme]` section.

use crate::config::{self, Config};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use scop_dns::client::Change;
use scop_dns::hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use scop_dns::hickory_proto::rr::{Name, RData, RecordType};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The ACME client's TSIG key, relative to the deployment directory.
pub(crate) const ACME_TSIG_KEY: &str = "keys/tsig/acme.key";
/// Where ACME account credentials are kept (one file per directory URL).
const ACCOUNT_DIR: &str = "keys/acme";
/// Let's Encrypt's production directory, the default CA.
pub(crate) const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// A certificate that expires within this many seconds is renewed.
pub(crate) const RENEW_BEFORE_SECS: u64 = 30 * 86_400;
/// TTL of the challenge records.
const CHALLENGE_TTL: u32 = 60;
/// How long the primary gets to start answering, then to serve a record.
const PRIMARY_WAIT: Duration = Duration::from_secs(30);
/// Default limit of one whole issuance.
const DEFAULT_TIMEOUT_SECS: u64 = 300;
/// Largest certificate or key file read.
const MAX_PEM_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// Get a certificate for the public listeners from an ACME CA, with
    /// DNS-01 challenges published through the deployment's own primary.
    ///
    /// The flow: load the ACME account from keys/acme/ (or register one,
    /// stored there with mode 0600); order a certificate for --names (by
    /// default the host name in scop.toml); for each name, add the TXT
    /// record _acme-challenge.NAME with an UPDATE signed by the ACME TSIG
    /// key (keys/tsig/acme.key, which dns.policy confines to those records)
    /// to the primary at `dns.listen`, wait until the primary serves it,
    /// and ask the CA to validate; poll the order with backoff until it is
    /// ready; finalize it with a CSR for the key in `mail.tls_key` (kept,
    /// so a TLSA 3 1 1 record published for it stays valid; a fresh
    /// ECDSA P-256 key when there is none); delete
    /// the TXT records (also when something failed); write the chain and
    /// the key (mode 0600) over `mail.tls_cert` and `mail.tls_key`, each
    /// through a temporary file and a rename; and ask a running `scop up`
    /// to restart the mx and submission compartments so they serve it.
    /// The old certificate stays in place when anything fails.
    ///
    /// The primary must be the zone's authoritative server the CA asks
    /// (the registrar's delegation points to it). To try without rate
    /// limits, use Let's Encrypt's staging CA:
    /// --directory https://acme-staging-v02.api.letsencrypt.org/directory
    ///
    /// Example: scop tls acme --dir scop --contact mailto:postmaster@example.org
    Acme(AcmeArgs),
    /// Print the DANE record (RFC 7672) of the public listeners'
    /// certificate: `_PORT._tcp.HOST. IN TLSA 3 1 1 <SHA-256 of its key>`,
    /// with the host name and MX port of scop.toml.
    ///
    /// `scop init` puts this record in the zone it writes, and `scop tls
    /// acme` keeps the key, so it stays valid. A deployment made before
    /// either, or a certificate installed by hand with another key, needs
    /// it added to the (DNSSEC-signed) zone of the MX host name; publish
    /// the new record beside the old one before a new key is served.
    ///
    /// Example: scop tls tlsa --dir scop
    Tlsa(TlsaArgs),
}

#[derive(Debug, Args)]
pub struct TlsaArgs {
    /// The deployment directory (from `scop init`).
    #[arg(long, default_value = "scop", env = "SCOP_DIR")]
    dir: PathBuf,
    /// A PEM certificate to use instead of `mail.tls_cert`.
    #[arg(long, value_name = "PEM")]
    cert: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct AcmeArgs {
    /// The deployment directory (from `scop init`).
    #[arg(long, default_value = "scop", env = "SCOP_DIR")]
    dir: PathBuf,
    /// The CA's ACME directory URL (default: the `[acme]` section of
    /// scop.toml, else Let's Encrypt production,
    /// https://acme-v02.api.letsencrypt.org/directory; staging is
    /// https://acme-staging-v02.api.letsencrypt.org/directory).
    #[arg(long, value_name = "URL")]
    directory: Option<String>,
    /// The account's contact when it is registered (mailto:ADDR).
    #[arg(long, value_name = "mailto:ADDR")]
    contact: Option<String>,
    /// A PEM root certificate that alone is trusted for the CA's HTTPS
    /// (a private or test CA such as pebble); default: the system's roots.
    #[arg(long, value_name = "PEM")]
    ca_cert: Option<PathBuf>,
    /// The names of the certificate (default: the host name in scop.toml);
    /// each must be in the deployment's zone.
    #[arg(long, value_name = "NAME", num_args = 1..)]
    names: Vec<String>,
    /// The TSIG key file of the challenge updates (relative to the
    /// deployment directory).
    #[arg(long, value_name = "FILE", default_value = ACME_TSIG_KEY)]
    tsig_key: PathBuf,
    /// Give up after this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_TIMEOUT_SECS)]
    timeout: u64,
}

pub fn run(cmd: TlsCommand) -> Result<ExitCode> {
    match cmd {
        TlsCommand::Acme(args) => acme(args),
        TlsCommand::Tlsa(args) => tlsa(args),
    }
}

fn tlsa(args: TlsaArgs) -> Result<ExitCode> {
    let config = Config::load(&args.dir)?;
    let cert = args
        .cert
        .unwrap_or_else(|| config::resolve(&args.dir, &config.mail.tls_cert));
    let pem = read_limited(&cert)?;
    let record =
        scop_mail::tls::dane_ee_record(&pem).with_context(|| format!("{}", cert.display()))?;
    let Some(port) = config::mx_port(&config.mail.mx) else {
        bail!("the MX listener is off in scop.toml: no TLSA record to publish");
    };
    println!("_{port}._tcp.{}. IN TLSA {record}", config.hostname);
    Ok(ExitCode::SUCCESS)
}

fn acme(args: AcmeArgs) -> Result<ExitCode> {
    let dir = std::path::absolute(&args.dir)
        .with_context(|| format!("resolve {}", args.dir.display()))?;
    let config = Config::load(&dir)?;
    let section = config.acme.as_ref();
    let request = Request {
        directory: args
            .directory
            .or_else(|| section.map(|a| a.directory.clone()))
            .unwrap_or_else(|| LETS_ENCRYPT.to_string()),
        contact: args
            .contact
            .or_else(|| section.and_then(|a| a.contact.clone())),
        ca_cert: args
            .ca_cert
            .map(|p| std::path::absolute(&p).unwrap_or(p))
            .or_else(|| section.and_then(|a| a.ca_cert.as_ref().map(|p| config::resolve(&dir, p)))),
        names: args.names,
        tsig_key: config::resolve(&dir, &args.tsig_key),
        timeout: Duration::from_secs(args.timeout),
    };
    let issued = obtain(&dir, &config, &request, &mut |line| println!("{line}"))?;
    println!(
        "wrote {} and {} ({}, valid until {})",
        config::resolve(&dir, &config.mail.tls_cert).display(),
        config::resolve(&dir, &config.mail.tls_key).display(),
        issued.names.join(", "),
        utc_date(issued.not_after)
    );
    let restarted = restart_public(&dir, &config);
    if restarted.is_empty() {
        println!("no running supervisor: the certificate is served from the next `scop up`");
    } else {
        println!(
            "the supervisor is restarting {} to serve it",
            restarted.join(" and ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// What one issuance needs besides the deployment.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    /// The ACME directory URL.
    pub directory: String,
    /// `mailto:` contact for a new account.
    pub contact: Option<String>,
    /// The only root trusted for the CA's HTTPS.
    pub ca_cert: Option<PathBuf>,
    /// The certificate's names (empty: the deployment's host name).
    pub names: Vec<String>,
    /// The TSIG key file of the challenge updates.
    pub tsig_key: PathBuf,
    /// Limit of the whole issuance.
    pub timeout: Duration,
}

impl Request {
    /// The issuance `scop up` runs for the `[acme]` section of `config`.
    pub(crate) fn renewal(dir: &Path, section: &config::AcmeSection) -> Request {
        Request {
            directory: section.directory.clone(),
            contact: section.contact.clone(),
            ca_cert: section.ca_cert.as_ref().map(|p| config::resolve(dir, p)),
            names: Vec::new(),
            tsig_key: dir.join(ACME_TSIG_KEY),
            timeout: Duration::from_secs(DEFAULT_TIMEOUT_SECS),
        }
    }
}

/// A certificate written by [`obtain`].
#[derive(Debug, Clone)]
pub(crate) struct Issued {
    /// Its names.
    pub names: Vec<String>,
    /// Its expiry (Unix time).
    pub not_after: u64,
}

/// Asks the running supervisor of `dir` to restart the compartments that
/// serve the public certificate; returns those it restarts.
pub(crate) fn restart_public(dir: &Path, config: &Config) -> Vec<&'static str> {
    let roles: &[&'static str] = if config.mail.mesh.is_some() {
        &["mx", "submission"]
    } else {
        &["mail"]
    };
    roles
        .iter()
        .copied()
        .filter(|role| crate::cmd_up::restart_compartment(dir, role))
        .collect()
}

/// The names a request covers: `--names`, else the host name; each
/// lower-cased without trailing dot and inside `domain`.
fn certificate_names(requested: &[String], hostname: &str, domain: &str) -> Result<Vec<String>> {
    let mut names = Vec::new();
    let wanted: Vec<&str> = if requested.is_empty() {
        vec![hostname]
    } else {
        requested.iter().map(String::as_str).collect()
    };
    for name in wanted {
        let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
        let base = name.strip_prefix("*.").unwrap_or(&name);
        if !config::in_zone(base, domain) {
            bail!(
                "{name} is not in the zone {domain}: its DNS-01 challenge cannot be published through this deployment's primary"
            );
        }
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(names)
}

/// The DNS-01 record name of `name` (RFC 8555 section 8.4; a wildcard's
/// is its base name's).
fn challenge_name(name: &str) -> String {
    format!(
        "_acme-challenge.{}",
        name.strip_prefix("*.").unwrap_or(name)
    )
}

/// The file of the account credentials for `directory`.
fn account_path(dir: &Path, directory: &str) -> PathBuf {
    let stem: String = directory
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join(ACCOUNT_DIR).join(format!("{stem}.json"))
}

/// Where `dns.listen` is reached (a wildcard address on loopback).
fn primary_addr(config: &Config) -> Result<SocketAddr> {
    let dns = config.dns.as_ref().context(
        "scop.toml has no [dns] section: the zone is served elsewhere, so DNS-01 challenges cannot be published through this deployment",
    )?;
    let mut addr: SocketAddr = dns
        .listen
        .parse()
        .with_context(|| format!("dns.listen {:?} in scop.toml", dns.listen))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    Ok(addr)
}

/// Runs one issuance for the deployment in `dir` and writes the result
/// over its public certificate and key; `log` gets a line per step. The
/// compartments are not restarted (see [`restart_public`]).
pub(crate) fn obtain(
    dir: &Path,
    config: &Config,
    request: &Request,
    log: &mut dyn FnMut(&str),
) -> Result<Issued> {
    let names = certificate_names(&request.names, &config.hostname, &config.domain)?;
    let primary = primary_addr(config)?;
    if !request.tsig_key.exists() {
        bail!(
            "no ACME TSIG key at {} (deployments made before `scop tls acme` lack it: make one with \
             `scop dns tsig-keygen acme.{domain} --out {}`, add it to dns.tsig_keys in scop.toml, \
             and add `update acme.{domain}. _acme-challenge.@ TXT` and \
             `update acme.{domain}. _acme-challenge.*.@ TXT` to dns.policy)",
            request.tsig_key.display(),
            request.tsig_key.display(),
            domain = config.domain
        );
    }
    let key = crate::cmd_dns::read_keys(&request.tsig_key)?
        .into_iter()
        .next()
        .with_context(|| format!("no key in {}", request.tsig_key.display()))?;
    let zone = scop_dns::tsig::parse_name(&config.domain)?;
    let dns = Primary {
        addr: primary,
        zone,
        key,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let cert_path = config::resolve(dir, &config.mail.tls_cert);
    let key_path = config::resolve(dir, &config.mail.tls_key);
    // The listeners' key is kept, so that a TLSA `3 1 1` record
    // published for it (as `scop init` does) stays valid.
    let key = match std::fs::read_to_string(&key_path)
        .ok()
        .and_then(|pem| rcgen::KeyPair::from_pem(&pem).ok())
    {
        Some(k) => k,
        None => rcgen::KeyPair::generate().context("generate the certificate's key")?,
    };
    let (chain, key_pem) = runtime.block_on(async {
        let mut published = Vec::new();
        let result = tokio::time::timeout(
            request.timeout,
            issue(dir, request, &names, key, &dns, &mut published, log),
        )
        .await
        .unwrap_or_else(|_| {
            Err(anyhow::anyhow!(
                "gave up after {} s (--timeout)",
                request.timeout.as_secs()
            ))
        });
        // The challenge records go, whatever happened.
        if !published.is_empty() {
            let changes: Vec<Change> = published.into_iter().map(Change::DeleteRecord).collect();
            match dns.update(&changes) {
                Ok(()) => log("deleted the challenge records"),
                Err(e) => log(&format!(
                    "warning: could not delete the challenge records: {e:#}"
                )),
            }
        }
        result
    })?;
    let facts = CertFacts::from_pem(chain.as_bytes())
        .context("the CA's certificate chain cannot be read")?;
    for name in &names {
        if !facts.covers(name) {
            bail!("the CA's certificate does not name {name} (nothing was written)");
        }
    }
    // Both files are complete on disk before either replaces the old one.
    let key_tmp = crate::cmd_init::write_tmp(&key_path, key_pem.as_bytes(), 0o600)?;
    let cert_tmp = crate::cmd_init::write_tmp(&cert_path, chain.as_bytes(), 0o644)?;
    std::fs::rename(&key_tmp, &key_path)
        .with_context(|| format!("rename to {}", key_path.display()))?;
    std::fs::rename(&cert_tmp, &cert_path)
        .with_context(|| format!("rename to {}", cert_path.display()))?;
    Ok(Issued {
        names,
        not_after: facts.not_after,
    })
}

/// The ACME steps up to the certificate chain for `key` and the key
/// (PEM); each challenge record added to the primary is pushed to
/// `published`.
async fn issue(
    dir: &Path,
    request: &Request,
    names: &[String],
    key: rcgen::KeyPair,
    dns: &Primary,
    published: &mut Vec<scop_dns::hickory_proto::rr::Record>,
    log: &mut dyn FnMut(&str),
) -> Result<(String, String)> {
    let account = account(dir, request, log).await?;
    let identifiers: Vec<Identifier> = names.iter().cloned().map(Identifier::Dns).collect();
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .with_context(|| format!("the CA refused the order for {}", names.join(", ")))?;
    log(&format!("ordered a certificate for {}", names.join(", ")));

    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz.context("fetch an authorization from the CA")?;
        match authz.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => bail!("the CA's authorization is {other:?}, not pending"),
        }
        let mut challenge = authz
            .challenge(ChallengeType::Dns01)
            .context("the CA offers no dns-01 challenge")?;
        let Identifier::Dns(domain) = challenge.identifier().identifier else {
            bail!("the CA asks to validate a non-DNS identifier");
        };
        let owner = challenge_name(domain);
        let value = challenge.key_authorization().dns_value();
        let record = scop_dns::client::parse_record(
            &dns.zone,
            &format!("{owner}."),
            CHALLENGE_TTL,
            "TXT",
            &format!("\"{value}\""),
        )?;
        dns.update_when_up(&[Change::Add(record.clone())]).await?;
        published.push(record);
        dns.wait_served(&owner, &value).await?;
        log(&format!("{owner} TXT is served by {}", dns.addr));
        challenge
            .set_ready()
            .await
            .with_context(|| format!("tell the CA that {owner} is ready"))?;
    }

    let retries = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .backoff(1.5)
        .timeout(request.timeout);
    let status = order
        .poll_ready(&retries)
        .await
        .context("wait for the CA to validate the challenges")?;
    if status != OrderStatus::Ready {
        let mut reasons = Vec::new();
        let mut authorizations = order.authorizations();
        while let Some(Ok(mut authz)) = authorizations.next().await {
            if authz.refresh().await.is_err() {
                continue;
            }
            let name = authz.identifier().to_string();
            for c in &authz.challenges {
                if let Some(problem) = &c.error {
                    reasons.push(format!("{name}: {problem}"));
                }
            }
        }
        bail!(
            "the CA did not validate the order ({status:?}){}",
            if reasons.is_empty() {
                String::new()
            } else {
                format!(": {}", reasons.join("; "))
            }
        );
    }
    log("the CA validated every name");

    let mut params =
        rcgen::CertificateParams::new(names.to_vec()).context("the certificate's names")?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params
        .serialize_request(&key)
        .context("make the certificate request")?;
    order
        .finalize_csr(csr.der())
        .await
        .context("the CA refused to finalize the order")?;
    let chain = order
        .poll_certificate(&retries)
        .await
        .context("fetch the certificate from the CA")?;
    log("the CA issued the certificate");
    Ok((chain, key.serialize_pem()))
}

/// Loads the account for the request's directory, or registers one.
async fn account(dir: &Path, request: &Request, log: &mut dyn FnMut(&str)) -> Result<Account> {
    // instant-acme's HTTPS client uses the process's default provider.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let builder = || match &request.ca_cert {
        Some(pem) => {
            Account::builder_with_root(pem).with_context(|| format!("--ca-cert {}", pem.display()))
        }
        None => Account::builder().context("load the system's root certificates"),
    };
    let path = account_path(dir, &request.directory);
    if path.exists() {
        let text = read_limited(&path)?;
        let credentials: AccountCredentials = serde_json::from_slice(&text)
            .with_context(|| format!("parse the ACME account {}", path.display()))?;
        return builder()?
            .from_credentials(credentials)
            .await
            .with_context(|| format!("reach the ACME directory {}", request.directory));
    }
    if let Some(contact) = &request.contact
        && !contact.starts_with("mailto:")
    {
        bail!("the ACME contact {contact:?} must be a mailto: URL (mailto:ADDR)");
    }
    let contact: Vec<&str> = request.contact.iter().map(String::as_str).collect();
    let (account, credentials) = builder()?
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            request.directory.clone(),
            None,
        )
        .await
        .with_context(|| format!("register an account at {}", request.directory))?;
    let parent = dir.join(ACCOUNT_DIR);
    std::fs::create_dir_all(&parent).with_context(|| format!("create {}", parent.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o700))?;
    }
    crate::cmd_init::write_file(&path, &serde_json::to_vec_pretty(&credentials)?, 0o600)?;
    log(&format!(
        "registered ACME account {} (kept in {})",
        account.id(),
        path.display()
    ));
    Ok(account)
}

fn read_limited(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut data = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut data)
        .with_context(|| format!("read {}", path.display()))?;
    if data.len() as u64 > MAX_PEM_BYTES {
        bail!("{} is larger than {MAX_PEM_BYTES} bytes", path.display());
    }
    Ok(data)
}

/// The deployment's primary and the key that may change challenge records.
struct Primary {
    addr: SocketAddr,
    zone: Name,
    key: scop_dns::tsig::Key,
}

impl Primary {
    /// Sends one signed UPDATE; an error names the primary and its verdict.
    fn update(&self, changes: &[Change]) -> Result<()> {
        let verdict = crate::cmd_dns::send_update(self.addr, &self.zone, changes, &self.key)?;
        if verdict.rcode != ResponseCode::NoError || verdict.tsig_error != 0 {
            let hint = if verdict.rcode == ResponseCode::Refused {
                format!(
                    " (the policy must let the key {} change _acme-challenge TXT records)",
                    self.key.name()
                )
            } else {
                String::new()
            };
            bail!(
                "the DNS primary at {} refused the update: {}{}{hint}",
                self.addr,
                verdict.rcode,
                crate::cmd_dns::tsig_note(verdict.tsig_error)
            );
        }
        Ok(())
    }

    /// [`Primary::update`], retried while the primary does not accept
    /// connections yet (it may be starting beside us).
    async fn update_when_up(&self, changes: &[Change]) -> Result<()> {
        let deadline = Instant::now() + PRIMARY_WAIT;
        loop {
            match self.update(changes) {
                Err(e) if !is_refused_connection(&e) || Instant::now() >= deadline => {
                    return Err(e);
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                Ok(()) => return Ok(()),
            }
        }
    }

    /// Waits until the primary answers `owner` TXT with `value`.
    async fn wait_served(&self, owner: &str, value: &str) -> Result<()> {
        let name = Name::from_ascii(format!("{owner}."))?;
        let deadline = Instant::now() + PRIMARY_WAIT;
        loop {
            let last = match self.txt(&name) {
                Ok(values) if values.iter().any(|v| v == value) => return Ok(()),
                Ok(values) => format!("it answered {values:?}"),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() >= deadline {
                bail!(
                    "the DNS primary at {} does not serve the new {owner} TXT record after {} s ({last})",
                    self.addr,
                    PRIMARY_WAIT.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The TXT strings (each record's strings joined) at `name`.
    fn txt(&self, name: &Name) -> Result<Vec<String>> {
        let id = crate::cmd_dns::random_id()?;
        let mut query = Message::new(id, MessageType::Query, OpCode::Query);
        query.add_query(Query::query(name.clone(), RecordType::TXT));
        let bytes = query.to_vec()?;
        let reply = crate::cmd_dns::exchange_tcp(self.addr, &bytes)
            .with_context(|| format!("ask {} for {name} TXT", self.addr))?;
        let reply = Message::from_vec(&reply)?;
        if reply.id != id {
            bail!("a reply to another query");
        }
        Ok(reply
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::TXT(txt) => Some(
                    txt.txt_data
                        .iter()
                        .map(|s| String::from_utf8_lossy(s).into_owned())
                        .collect::<String>(),
                ),
                _ => None,
            })
            .collect())
    }
}

/// Whether `e` is a refused (or reset) TCP connection.
fn is_refused_connection(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset
            )
        })
    })
}

/// What the renewal decision needs to know about a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertFacts {
    /// Issuer and subject are the same name.
    pub self_signed: bool,
    /// Expiry, Unix time.
    pub not_after: u64,
    /// Its DNS names (subjectAltName), lower-case.
    pub names: Vec<String>,
}

impl CertFacts {
    /// The facts of the first certificate of a PEM chain.
    pub(crate) fn from_pem(pem: &[u8]) -> Result<CertFacts> {
        let der = CertificateDer::pem_slice_iter(pem)
            .next()
            .context("no certificate in the PEM data")?
            .map_err(|e| anyhow::anyhow!("PEM: {e}"))?;
        let (_, cert) =
            x509_parser::parse_x509_certificate(&der).map_err(|e| anyhow::anyhow!("X.509: {e}"))?;
        let mut names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                if let x509_parser::extensions::GeneralName::DNSName(n) = name {
                    names.push(n.to_ascii_lowercase());
                }
            }
        }
        Ok(CertFacts {
            self_signed: cert.issuer().as_raw() == cert.subject().as_raw(),
            not_after: u64::try_from(cert.validity().not_after.timestamp()).unwrap_or(0),
            names,
        })
    }

    /// Whether the certificate names `name` (exactly, or by a wildcard
    /// one label deep).
    pub(crate) fn covers(&self, name: &str) -> bool {
        self.names.iter().any(|n| {
            n == name
                || n.strip_prefix("*.").is_some_and(|base| {
                    name.split_once('.')
                        .is_some_and(|(label, rest)| !label.is_empty() && rest == base)
                })
        })
    }
}

/// Why a certificate must be replaced now, or `None` when it may stay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RenewReason {
    /// Made by `scop init`, not by a CA.
    SelfSigned,
    /// Expired or expiring within [`RENEW_BEFORE_SECS`].
    Expiring,
    /// A wanted name is missing.
    MissingName,
}

/// Whether the certificate with `facts` must be renewed at `now` (Unix
/// time) to serve `names`.
pub(crate) fn renewal_due(facts: &CertFacts, names: &[String], now: u64) -> Option<RenewReason> {
    if facts.self_signed {
        Some(RenewReason::SelfSigned)
    } else if facts.not_after <= now.saturating_add(RENEW_BEFORE_SECS) {
        Some(RenewReason::Expiring)
    } else if names.iter().any(|n| !facts.covers(n)) {
        Some(RenewReason::MissingName)
    } else {
        None
    }
}

/// Whether the deployment's certificate must be renewed now: it cannot be
/// read, or [`renewal_due`] says so.
pub(crate) fn deployment_due(dir: &Path, config: &Config, now: u64) -> Option<String> {
    let path = config::resolve(dir, &config.mail.tls_cert);
    let facts = match read_limited(&path).and_then(|pem| CertFacts::from_pem(&pem)) {
        Ok(facts) => facts,
        Err(e) => return Some(format!("{e:#}")),
    };
    let names = certificate_names(&[], &config.hostname, &config.domain).unwrap_or_default();
    renewal_due(&facts, &names, now).map(|reason| match reason {
        RenewReason::SelfSigned => "the certificate is self-signed".to_string(),
        RenewReason::Expiring => format!("the certificate expires {}", utc_date(facts.not_after)),
        RenewReason::MissingName => format!("the certificate does not name {}", config.hostname),
    })
}

/// A Unix time as a UTC date and time.
fn utc_date(unix: u64) -> String {
    let d = scop_mime::DateTime::from_unix_timestamp(i64::try_from(unix).unwrap_or(i64::MAX));
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        d.year, d.month, d.day, d.hour, d.minute
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(self_signed: bool, not_after: u64, names: &[&str]) -> CertFacts {
        CertFacts {
            self_signed,
            not_after,
            names: names.iter().map(|n| n.to_string()).collect(),
        }
    }

    const DAY: u64 = 86_400;
    const NOW: u64 = 1_795_651_200;

    #[test]
    fn renewal_decision() {
        let names = vec!["mail.example.org".to_string()];
        let ok = facts(false, NOW + 60 * DAY, &["mail.example.org"]);
        assert_eq!(renewal_due(&ok, &names, NOW), None);
        assert_eq!(
            renewal_due(&ok, &names, NOW + 30 * DAY),
            Some(RenewReason::Expiring)
        );
        assert_eq!(renewal_due(&ok, &names, NOW + 29 * DAY), None);
        assert_eq!(
            renewal_due(&ok, &names, NOW + 90 * DAY),
            Some(RenewReason::Expiring)
        );
        let own = facts(true, NOW + 3650 * DAY, &["mail.example.org"]);
        assert_eq!(
            renewal_due(&own, &names, NOW),
            Some(RenewReason::SelfSigned)
        );
        let other = facts(false, NOW + 60 * DAY, &["www.example.org"]);
        assert_eq!(
            renewal_due(&other, &names, NOW),
            Some(RenewReason::MissingName)
        );
        let wild = facts(false, NOW + 60 * DAY, &["*.example.org"]);
        assert_eq!(renewal_due(&wild, &names, NOW), None);
        assert!(!wild.covers("a.mail.example.org"));
        assert!(!wild.covers("example.org"));
    }

    #[test]
    fn facts_of_a_self_signed_certificate() {
        let names = vec!["mail.example.org".to_string()];
        let (cert, _) = scop_mail::tls::self_signed(&names).unwrap();
        let f = CertFacts::from_pem(cert.as_bytes()).unwrap();
        assert!(f.self_signed);
        assert_eq!(f.names, names);
        assert!(f.not_after > NOW);
        assert!(CertFacts::from_pem(b"not pem").is_err());
    }

    #[test]
    fn names_must_be_in_the_zone() {
        assert_eq!(
            certificate_names(&[], "Mail.Example.org.", "example.org").unwrap(),
            ["mail.example.org"]
        );
        let both = ["example.org".to_string(), "*.example.org".to_string()];
        assert_eq!(
            certificate_names(&both, "mail.example.org", "example.org").unwrap(),
            both
        );
        let err = certificate_names(&["mail.example.net".into()], "x", "example.org").unwrap_err();
        assert!(err.to_string().contains("not in the zone example.org"));
        assert!(certificate_names(&["badexample.org".into()], "x", "example.org").is_err());
        assert_eq!(
            challenge_name("*.example.org"),
            "_acme-challenge.example.org"
        );
        assert_eq!(
            challenge_name("mail.example.org"),
            "_acme-challenge.mail.example.org"
        );
    }

    #[test]
    fn account_files_are_named_by_directory() {
        let p = account_path(Path::new("/d"), "https://127.0.0.1:14000/dir");
        assert_eq!(p, Path::new("/d/keys/acme/127.0.0.1_14000_dir.json"));
        let le = account_path(Path::new("/d"), LETS_ENCRYPT);
        assert_eq!(
            le,
            Path::new("/d/keys/acme/acme-v02.api.letsencrypt.org_directory.json")
        );
    }
}
