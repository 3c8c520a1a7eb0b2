//! `scop mail serve`: the mail compartments (MX, submission, relay and
//! local delivery) in one process, on one data directory.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use scop_mail::relay::{RetryPolicy, Routes};
use scop_mail::service::{self, MailConfig};

/// Mail service commands.
#[derive(Debug, Subcommand)]
pub enum MailCommand {
    /// Run the MX (port 25), submission (587 STARTTLS, 465 TLS), the relay
    /// queue and local delivery until SIGINT or SIGTERM.
    ///
    /// Accounts, aliases and the queue live in the store (see `scop user`,
    /// `scop alias`, `scop queue`); mailboxes are Maildirs under
    /// DATA/mail/<login>/Maildir. A self-signed TLS certificate is created
    /// in DATA/tls on first start unless --tls-cert/--tls-key are given.
    ///
    /// Example (unprivileged ports, one local domain):
    ///   scop user add alice@example.org --password-stdin <<< 'secret'
    ///   scop mail serve --hostname mail.example.org --mx 127.0.0.1:2525 --submission 127.0.0.1:5587 --submissions 127.0.0.1:5465
    #[command(verbatim_doc_comment)]
    Serve(Box<ServeArgs>),
}

/// Options of `scop mail serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Data directory (store, mailboxes, TLS files, SRS key).
    #[arg(long, default_value = "scop-data", env = "SCOP_DATA")]
    pub(crate) data: PathBuf,
    /// Store URL (default: sqlite:DATA/scop.db); postgres://... for PostgreSQL.
    #[arg(long, env = "SCOP_STORE")]
    pub(crate) store: Option<String>,
    /// Keep password hashes in this separate SQLite file (created, mode
    /// 0600, in an existing directory) instead of the store, so that only
    /// submission can read them; once used, the store refuses password
    /// changes made without it. Not for a PostgreSQL store.
    #[arg(long, env = "SCOP_CREDENTIALS", value_name = "FILE")]
    pub(crate) credentials: Option<PathBuf>,
    /// The mailboxes' root (default: DATA/mail): `<login>/Maildir` below
    /// it. Outside DATA, the compartments that open the store but do not
    /// deliver (mx, submission) cannot reach it.
    #[arg(long, env = "SCOP_MAILBOXES", value_name = "DIR")]
    pub(crate) mailboxes: Option<PathBuf>,
    /// Our host name, used in greetings, trace fields and bounces
    /// (default: the system host name).
    #[arg(long)]
    pub(crate) hostname: Option<String>,
    /// MX listener; "off" disables it.
    #[arg(long, default_value = "[::]:25")]
    pub(crate) mx: String,
    /// Submission listener with STARTTLS; "off" disables it.
    #[arg(long, default_value = "[::]:587")]
    pub(crate) submission: String,
    /// Submission listener with implicit TLS; "off" disables it.
    #[arg(long, default_value = "[::]:465")]
    pub(crate) submissions: String,
    /// Do not run the relay (outbound queue).
    #[arg(long)]
    pub(crate) no_relay: bool,
    /// The relay's name on the queue entries it leases (default: the host
    /// name and the mailboxes' root). A relay that starts again frees
    /// the leases it held before a crash, and only those: relays sharing
    /// one store (PostgreSQL) need different names, and each must keep
    /// its own across restarts.
    #[arg(long, value_name = "ID")]
    pub(crate) relay_id: Option<String>,
    /// Write every mailbox copy into its Maildir (file and directory
    /// fsync'd) before the 250. By default a copy is acknowledged once it
    /// is in the delivery journal (MAILBOXES/.journal, fdatasync'd for
    /// all sessions at once) and written into the Maildir just after;
    /// copies a crash leaves there are written at the next start.
    #[arg(long)]
    pub(crate) no_delivery_journal: bool,
    /// Size in bytes past which the delivery journal starts a new
    /// segment file; spent ones are kept (8 at most) and written over.
    #[arg(long, value_name = "BYTES", default_value_t = scop_mail::journal::SEGMENT_BYTES, value_parser = clap::value_parser!(u64).range(4096..))]
    pub(crate) journal_segment_size: u64,
    /// Send mail for DOMAIN to HOST:PORT (repeatable), e.g. b.test=127.0.0.3:25.
    #[arg(long, value_name = "DOMAIN=ADDR")]
    pub(crate) route: Vec<String>,
    #[command(flatten)]
    pub(crate) dns: ResolverArgs,
    /// Local address outbound SMTP connections come from (repeatable, one
    /// per address family), e.g. the address the SPF record names.
    #[arg(long, value_name = "IP")]
    pub(crate) source_ip: Vec<std::net::IpAddr>,
    /// Port of the mail servers found by MX lookup (25; another value only
    /// for a test network).
    #[arg(long, value_name = "PORT", default_value_t = 25)]
    pub(crate) remote_port: u16,
    /// Do not apply MTA-STS policies (RFC 8461). By default, for a
    /// domain whose MX hosts DANE does not cover, the relay fetches the
    /// policy that `_mta-sts.DOMAIN` announces, keeps it in
    /// DATA/mta-sts, and in enforce mode sends only to the MX hosts it
    /// names, over TLS whose certificate the trust store validates.
    #[arg(long)]
    pub(crate) no_mta_sts: bool,
    /// Certificate authorities (PEM) trusted for MTA-STS besides the
    /// system's, e.g. a private CA.
    #[arg(long, value_name = "FILE")]
    pub(crate) tls_roots: Option<PathBuf>,
    /// Port of MTA-STS policy servers (443; another value only for a
    /// test network).
    #[arg(long, value_name = "PORT", default_value_t = 443)]
    pub(crate) mta_sts_port: u16,
    /// Send all other outbound mail through this host.
    #[arg(long, value_name = "ADDR")]
    pub(crate) smarthost: Option<SocketAddr>,
    /// TLS certificate chain (PEM) for STARTTLS and port 465.
    #[arg(long, requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// How long a message may stay queued before it bounces.
    #[arg(long, default_value_t = 5 * 86_400, value_name = "SECONDS")]
    pub(crate) queue_lifetime: i64,
    /// First retry delay; it doubles up to 4 hours.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub(crate) retry_base: i64,
    /// Send the sender one delay notice (RFC 3464 "delayed" DSN) for a
    /// recipient still undelivered after this long, unless its NOTIFY
    /// excludes DELAY; e.g. 4h, 30m, 90s, 1d; 0 disables delay notices.
    #[arg(long, default_value = "4h", value_name = "DURATION", value_parser = parse_duration_secs)]
    pub(crate) delay_warning: i64,
    /// With --verify: send DMARC aggregate reports (RFC 7489 7.2) to the
    /// rua addresses of the domains seen, this often; e.g. 1d, 6h; 0
    /// sends none. Rows are kept in memory and sent at a graceful stop.
    #[arg(long, default_value = "1d", value_name = "DURATION", value_parser = parse_duration_secs)]
    pub(crate) dmarc_reports: i64,
    /// Send SMTP TLS reports (RFC 8460) this often to the domains the
    /// relay delivered to that publish a `_smtp._tls` record (by mail, or
    /// HTTPS unless --no-mta-sts), counting the TLS sessions to their MX hosts under
    /// DANE, MTA-STS or no policy; e.g. 1d, 6h; 0 sends none. Needs the
    /// resolver and a --dkim key: reports come from tlsrpt-noreply@ the
    /// first --dkim domain, signed with its key. Counts are kept in memory
    /// and sent at a graceful stop.
    #[arg(long, default_value = "1d", value_name = "DURATION", value_parser = parse_duration_secs)]
    pub(crate) tls_reports: i64,
    /// MX greeting delay to catch clients that talk first (0 disables).
    #[arg(long, default_value_t = 1000, value_name = "MILLISECONDS")]
    pub(crate) greeting_delay: u64,
    /// Concurrent connections per client address on each listener.
    #[arg(long, default_value_t = 10)]
    pub(crate) per_ip: usize,
    /// Messages each account may submit per hour (submission); more are
    /// refused with a temporary error until the hour has passed. An
    /// account's own limit (`scop user limits`) replaces it.
    #[arg(long, default_value_t = 500, value_name = "N")]
    pub(crate) user_hourly_limit: u64,
    /// Messages each account may submit in any 24 hours (submission);
    /// more are refused with a temporary error. An account's own limit
    /// (`scop user limits`) replaces it. Counts start again when the
    /// submission compartment restarts.
    #[arg(long, default_value_t = 2000, value_name = "N")]
    pub(crate) user_daily_limit: u64,
    /// Recipients each account may submit to per hour, over all its
    /// messages; more are refused at RCPT with a temporary error (452).
    /// An account's own limit (`scop user limits`) replaces it.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub(crate) user_hourly_recipients: u64,
    /// Largest message an account may submit, in bytes (default: the
    /// --message-size of every message). An account's own limit
    /// (`scop user limits`) replaces it.
    #[arg(long, value_name = "BYTES")]
    pub(crate) user_message_size: Option<u64>,
    /// Days the relay keeps each delivery record (`scop queue log`);
    /// older ones are removed every hour; 0 keeps them for ever.
    #[arg(long, default_value_t = 30, value_name = "DAYS")]
    pub(crate) delivery_log_days: u64,
    /// Largest message accepted, in bytes.
    #[arg(long, default_value_t = 50 * 1024 * 1024)]
    pub(crate) message_size: u64,
    /// Spam model (from `scop spam train`): the MX labels every message
    /// (X-Spam-Score, X-Spam-Verdict, X-Spam-Clues) and delivers spam and
    /// dangerous attachments into the Junk folder.
    #[arg(long, value_name = "FILE")]
    pub(crate) spam_model: Option<PathBuf>,
    /// Refuse messages scoring at or above this (0 to 1); default: never.
    #[arg(long, value_name = "SCORE", requires = "spam_model")]
    pub(crate) spam_reject_at: Option<f64>,
    /// Sign mail submitted from DOMAIN with the key in KEYFILE (from `scop
    /// dkim keygen`) under SELECTOR; repeat for the RSA and Ed25519 pair
    /// and for each domain.
    #[arg(long, value_name = "DOMAIN:SELECTOR:KEYFILE")]
    pub(crate) dkim: Vec<String>,
    /// Publish the TXT record of each --dkim key at start, in a
    /// TSIG-signed UPDATE to this DNS primary (retried for a minute while
    /// the primary starts).
    #[arg(long, value_name = "ADDR:PORT", requires = "dkim_tsig_key")]
    pub(crate) dkim_publish: Option<SocketAddr>,
    /// The TSIG key file (BIND syntax) for --dkim-publish; the primary's
    /// policy should let it touch only `*._domainkey` TXT records.
    #[arg(long, value_name = "FILE", requires = "dkim_publish")]
    pub(crate) dkim_tsig_key: Option<PathBuf>,
    /// Check SPF, DKIM and DMARC on the MX through the resolver, add
    /// Authentication-Results, and apply DMARC policies (reject,
    /// quarantine into Junk).
    #[arg(long)]
    pub(crate) verify: bool,
    /// With --verify: label only, never reject or quarantine on DMARC.
    #[arg(long, requires = "verify")]
    pub(crate) no_dmarc_enforce: bool,
    /// Refuse a client address at MAIL after this many spam messages in an
    /// hour (0: never).
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub(crate) spam_block_after: u32,
    /// Run one compartment of the bottle instead of all of them in this
    /// process: mx, spamfilter, verifier, delivery, submission, signer or
    /// relay. Compartments talk SMTP to each other over mutually
    /// authenticated TLS with the certificates of --mesh, and each loads
    /// only what its role needs (the signer alone reads the DKIM and TSIG
    /// keys). `scop up` starts them all.
    #[arg(long, value_name = "ROLE", requires = "mesh")]
    pub(crate) compartment: Option<scop_mesh::Role>,
    /// The mesh directory made by `scop init` (internal CA and one
    /// certificate per compartment).
    #[arg(long, value_name = "DIR")]
    pub(crate) mesh: Option<PathBuf>,
    /// Address of the first mesh listener: the signer listens on this
    /// port, the relay on the next, then the spam filter, the verifier,
    /// delivery and the resolver.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:7401")]
    pub(crate) mesh_base: SocketAddr,
    /// With --compartment: do not confine the process with Landlock (by
    /// default it keeps access only to the files its role needs).
    #[arg(long, requires = "compartment")]
    pub(crate) no_landlock: bool,
    /// With --compartment: apply the confinement, then report whether
    /// PATH can be read (or, for `tcp:ADDR:PORT`, connected to), and exit
    /// (for tests of the confinement).
    #[arg(long, value_name = "PATH", hide = true, requires = "compartment")]
    pub(crate) confine_probe: Option<PathBuf>,
}

/// Longest duration accepted on the command line (a year), in seconds.
const DURATION_MAX_SECS: i64 = 366 * 86_400;

/// Parses `N` (seconds) or `N` followed by `s`, `m`, `h` or `d`.
fn parse_duration_secs(s: &str) -> std::result::Result<i64, String> {
    let s = s.trim();
    let (digits, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c.to_ascii_lowercase()),
        _ => (s, 's'),
    };
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(format!("unknown unit in {s:?} (use s, m, h or d)")),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("not a duration: {s:?} (e.g. 4h, 30m, 90s, 1d)"));
    }
    let n: i64 = digits
        .parse()
        .map_err(|_| format!("not a duration: {s:?}"))?;
    n.checked_mul(scale)
        .filter(|v| *v <= DURATION_MAX_SECS)
        .ok_or_else(|| format!("duration {s:?} is longer than a year"))
}

/// Runs a mail command.
pub fn run(cmd: MailCommand) -> Result<ExitCode> {
    match cmd {
        MailCommand::Serve(a) => serve(*a),
    }
}

pub(crate) fn listen(what: &str, s: &str) -> Result<Option<SocketAddr>> {
    if s == "off" {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .with_context(|| format!("--{what} {s:?}: expected ADDRESS:PORT or \"off\""))
}

pub(crate) fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The SRS key file in `data`.
pub(crate) fn srs_key_path(data: &Path) -> PathBuf {
    data.join("srs.key")
}

/// The SRS key, made on first use. Compartments starting together may
/// all make one: each writes its own under a temporary name and links it
/// into place, the first link wins, and everyone reads the winner's.
pub(crate) fn srs_key(data: &Path) -> Result<Vec<u8>> {
    let path = srs_key_path(data);
    if let Ok(k) = std::fs::read(&path)
        && k.len() >= 16
    {
        return Ok(k);
    }
    let mut key = vec![0u8; 32];
    aws_lc_rs::rand::fill(&mut key).map_err(|_| anyhow::anyhow!("no system randomness"))?;
    // A key lost to a power cut would break bounces of forwards already
    // sent: `publish_once` syncs the directory.
    if scop_mail::private_file::publish_once(&path, &key)
        .with_context(|| format!("write {}", path.display()))?
    {
        return Ok(key);
    }
    let k = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
    if k.len() < 16 {
        bail!("{} holds no key (under 16 bytes)", path.display());
    }
    Ok(k)
}

pub(crate) fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SCOP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: under `scop up` the log is a file.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// The relay's routes (fixed routes, smarthost, MX lookup).
pub(crate) fn routes(a: &ServeArgs, dns: Option<scop_mail::mxlookup::Dns>) -> Result<Routes> {
    let mut fixed = HashMap::new();
    for r in &a.route {
        let Some((d, addr)) = r.split_once('=') else {
            bail!("--route {r:?}: expected DOMAIN=ADDRESS:PORT");
        };
        let addr: SocketAddr = addr
            .parse()
            .with_context(|| format!("--route {r:?}: bad address"))?;
        fixed
            .entry(d.to_ascii_lowercase())
            .or_insert_with(Vec::new)
            .push(addr);
    }
    // MTA-STS applies to looked-up MX hosts, so only with the resolver.
    let sts = match (&dns, a.no_mta_sts) {
        (Some(_), false) => {
            let roots = scop_mail::mta_sts::roots(a.tls_roots.as_deref())
                .map_err(|e| anyhow::anyhow!("--tls-roots: {e}"))?;
            Some(std::sync::Arc::new(scop_mail::mta_sts::Sts::new(
                roots,
                a.mta_sts_port,
                Some(mta_sts_dir(a)),
            )))
        }
        _ => None,
    };
    Ok(Routes {
        fixed,
        smarthost: a.smarthost.map(|s| vec![s]),
        port: a.remote_port,
        dns,
        source: a.source_ip.clone(),
        sts,
        tls_reports: None,
    })
}

/// Where the relay keeps MTA-STS policies.
pub(crate) fn mta_sts_dir(a: &ServeArgs) -> PathBuf {
    a.data.join("mta-sts")
}

/// The public TLS configuration (given, or self-signed in DATA/tls).
pub(crate) fn public_tls(
    a: &ServeArgs,
    hostname: &str,
) -> Result<std::sync::Arc<rustls::ServerConfig>> {
    match (&a.tls_cert, &a.tls_key) {
        (Some(c), Some(k)) => {
            let cert = std::fs::read(c).with_context(|| format!("read {}", c.display()))?;
            let key = std::fs::read(k).with_context(|| format!("read {}", k.display()))?;
            Ok(scop_mail::tls::server_config(&cert, &key)?)
        }
        _ => Ok(scop_mail::tls::load_or_create(
            &a.data.join("tls"),
            hostname,
        )?),
    }
}

/// The mailboxes' root.
pub(crate) fn mail_root(a: &ServeArgs) -> PathBuf {
    a.mailboxes.clone().unwrap_or_else(|| a.data.join("mail"))
}

/// The delivery journal of the process named `name` (one per process
/// that writes mailboxes), unless --no-delivery-journal.
pub(crate) fn journal_dir(a: &ServeArgs, name: &str) -> Option<PathBuf> {
    (!a.no_delivery_journal).then(|| mail_root(a).join(".journal").join(name))
}

pub(crate) fn store_url(a: &ServeArgs) -> String {
    a.store
        .clone()
        .unwrap_or_else(|| format!("sqlite:{}", a.data.join("scop.db").display()))
}

pub(crate) async fn open_store(url: &str) -> Result<scop_store::Store> {
    scop_store::Store::open(url)
        .await
        .with_context(|| format!("open the store {url}"))
}

/// Opens the store with the password hashes: in the credentials file when
/// `--credentials` names one, else in the store.
pub(crate) async fn open_store_with_passwords(a: &ServeArgs) -> Result<scop_store::Store> {
    let url = store_url(a);
    match &a.credentials {
        None => open_store(&url).await,
        Some(file) => scop_store::Store::open_with_credentials(&url, file)
            .await
            .with_context(|| {
                format!(
                    "open the store {url} with the credentials file {}",
                    file.display()
                )
            }),
    }
}

pub(crate) fn spam_config(a: &ServeArgs) -> Result<Option<service::SpamConfig>> {
    let Some(path) = &a.spam_model else {
        return Ok(None);
    };
    let bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    let model = scop_spam::Model::from_bytes(&bytes)
        .with_context(|| format!("load the spam model {}", path.display()))?;
    if let Some(t) = a.spam_reject_at
        && !(0.0..=1.0).contains(&t)
    {
        bail!("--spam-reject-at {t}: expected a score from 0 to 1");
    }
    Ok(Some(service::SpamConfig {
        model,
        policy: scop_mail::spamfilter::Policy {
            reject_at: a.spam_reject_at,
            ..Default::default()
        },
        block_after: a.spam_block_after,
    }))
}

/// The verifier of `--verify`. Its DMARC reports are signed with `dkim`
/// (empty in the verifier compartment: the signer signs them there).
pub(crate) fn verifier(
    a: &ServeArgs,
    dns: Option<scop_mail::mxlookup::Dns>,
    dkim: &std::sync::Arc<HashMap<String, Vec<scop_dkim::Signer>>>,
    report_domains: &[String],
) -> Result<Option<scop_mail::verifier::Verifier>> {
    if !a.verify {
        return Ok(None);
    }
    let Some(dns) = dns else {
        bail!(
            "--verify needs a resolver: give --resolver ADDR:PORT or --stub-zone (none in /etc/resolv.conf)"
        );
    };
    let authserv_id = a.hostname.clone().unwrap_or_else(system_hostname);
    // Reports come from the first domain we sign for (signed, so they
    // pass DMARC), else from the host name.
    let from_domain = report_domains.iter().min().unwrap_or(&authserv_id).clone();
    let reports = (a.dmarc_reports > 0).then(|| {
        std::sync::Arc::new(scop_mail::dmarc_reports::Reporter::new(
            &authserv_id,
            &format!("dmarc-noreply@{from_domain}"),
            dkim.clone(),
            crate::cmd_dns::now(),
        ))
    });
    Ok(Some(scop_mail::verifier::Verifier {
        dns,
        authserv_id,
        enforce: !a.no_dmarc_enforce,
        reports,
    }))
}

/// The domains of the `--dkim` options, without reading the keys.
pub(crate) fn dkim_domains(specs: &[String]) -> Vec<String> {
    let mut v: Vec<String> = specs
        .iter()
        .filter_map(|s| s.split(':').next())
        .map(str::to_ascii_lowercase)
        .collect();
    v.sort();
    v.dedup();
    v
}

pub(crate) fn retry(a: &ServeArgs) -> RetryPolicy {
    RetryPolicy {
        base_secs: a.retry_base.max(1),
        max_secs: 4 * 3600,
        delay_warning_secs: a.delay_warning,
    }
}

pub(crate) fn conn_limits(a: &ServeArgs) -> scop_mail::listener::ConnLimits {
    scop_mail::listener::ConnLimits {
        per_ip: a.per_ip.max(1),
        total: 1000,
    }
}

/// How long the relay keeps delivery records.
pub(crate) fn delivery_log_retention(a: &ServeArgs) -> Option<Duration> {
    (a.delivery_log_days > 0)
        .then(|| Duration::from_secs(a.delivery_log_days.saturating_mul(86_400)))
}

/// Submission's per-account limits.
pub(crate) fn user_limits(a: &ServeArgs) -> scop_mail::submission::UserLimits {
    scop_mail::submission::UserLimits {
        messages_per_hour: a.user_hourly_limit,
        messages_per_day: a.user_daily_limit,
        recipients_per_hour: a.user_hourly_recipients,
        max_message_size: a.user_message_size,
        ..Default::default()
    }
}

/// Waits for SIGINT or SIGTERM.
pub(crate) async fn until_stopped() -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("install the SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("stopping");
    Ok(())
}

fn serve(a: ServeArgs) -> Result<ExitCode> {
    init_logs();
    std::fs::create_dir_all(&a.data)
        .with_context(|| format!("create data directory {}", a.data.display()))?;
    if let Some(role) = a.compartment {
        return crate::cmd_compartment::run(&a, role);
    }
    let hostname = a.hostname.clone().unwrap_or_else(system_hostname);
    let dns = resolver(&a.dns)?;
    let mut routes = routes(&a, dns.clone())?;
    let tls = public_tls(&a, &hostname)?;
    let srs_key = srs_key(&a.data)?;
    let spam = spam_config(&a)?;
    let dkim = std::sync::Arc::new(dkim_signers(&a.dkim)?);
    // RFC 8460 5.3: reports are DKIM-signed, so only with a key.
    if routes.dns.is_some()
        && a.tls_reports > 0
        && let Some(from_domain) = dkim.keys().min().cloned()
    {
        let mut reporter = scop_mail::tls_reports::TlsReporter::new(
            &hostname,
            &format!("tlsrpt-noreply@{from_domain}"),
            dkim.clone(),
            Duration::from_secs(a.tls_reports as u64),
            crate::cmd_dns::now(),
        );
        reporter.https = routes.sts.as_ref().map(|s| s.https_client());
        routes.tls_reports = Some(std::sync::Arc::new(reporter));
    }
    let domains: Vec<String> = dkim.keys().cloned().collect();
    let verifier = verifier(&a, dns, &dkim, &domains)?;
    if let (Some(server), Some(key_file)) = (a.dkim_publish, &a.dkim_tsig_key) {
        publish_dkim(server, key_file, &dkim)?;
    }
    let mx = listen("mx", &a.mx)?;
    let submission = listen("submission", &a.submission)?;
    let submissions = listen("submissions", &a.submissions)?;

    let rt = tokio::runtime::Runtime::new().context("start the async runtime")?;
    rt.block_on(async move {
        let store = open_store_with_passwords(&a).await?;
        let running = service::start(MailConfig {
            hostname: hostname.clone(),
            store,
            mail_root: mail_root(&a),
            tls,
            mx,
            submission,
            submissions,
            relay: !a.no_relay,
            relay_id: a.relay_id.clone(),
            routes,
            lifetime_secs: a.queue_lifetime,
            retry: retry(&a),
            delivery_log_retention: delivery_log_retention(&a),
            greeting_delay: Duration::from_millis(a.greeting_delay),
            idle_timeout: Duration::from_secs(300),
            conn_limits: conn_limits(&a),
            user_limits: user_limits(&a),
            message_size: a.message_size,
            srs_key,
            spam,
            verifier,
            dmarc_report_interval: Duration::from_secs(a.dmarc_reports.max(1) as u64),
            dkim,
            journal: journal_dir(&a, "mail"),
            journal_segment_bytes: a.journal_segment_size,
        })
        .await
        .context("bind the listeners (ports below 1024 need privileges; see --help for other ports)")?;
        for (what, addr) in [
            ("mx", running.mx),
            ("submission (STARTTLS)", running.submission),
            ("submission (TLS)", running.submissions),
        ] {
            if let Some(addr) = addr {
                tracing::info!(%addr, "{what} listening");
            }
        }
        tracing::info!(%hostname, relay = !a.no_relay, "scop mail is running; SIGINT or SIGTERM stops it");
        until_stopped().await?;
        running.stop().await;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::parse_duration_secs;

    #[test]
    fn anchors_include_the_keys_of_a_rollover_in_progress() {
        let dir = std::env::temp_dir().join(format!("scop-anchors-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("retiring")).unwrap();
        let key = |tag: u8| {
            // MIME's encoder folds lines; a DNSKEY line is one line.
            let b64: String = String::from_utf8(scop_mime::codec::base64_encode(&[tag; 64]))
                .unwrap()
                .split_whitespace()
                .collect();
            format!("example.org. 3600 IN DNSKEY 257 3 13 {b64}\n")
        };
        std::fs::write(dir.join("Kexample.org.+013+00001.key"), key(1)).unwrap();
        std::fs::write(dir.join("retiring/Kexample.org.+013+00002.key"), key(2)).unwrap();
        std::fs::write(dir.join("notes.txt"), "not a key").unwrap();
        assert_eq!(super::read_anchors(&dir).unwrap().len(), 2);
        std::fs::remove_dir_all(dir.join("retiring")).unwrap();
        assert_eq!(super::read_anchors(&dir).unwrap().len(), 1);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_secs("4h"), Ok(4 * 3600));
        assert_eq!(parse_duration_secs("30m"), Ok(1800));
        assert_eq!(parse_duration_secs("90"), Ok(90));
        assert_eq!(parse_duration_secs("90s"), Ok(90));
        assert_eq!(parse_duration_secs("1D"), Ok(86_400));
        assert_eq!(parse_duration_secs("0"), Ok(0));
        for bad in ["", "h", "-1h", "4w", "1.5h", "99999999999999999999", "400d"] {
            assert!(parse_duration_secs(bad).is_err(), "{bad}");
        }
    }
}

/// Where DNS answers come from: the validating resolver's options.
#[derive(Debug, Clone, Args)]
pub(crate) struct ResolverArgs {
    /// Recursive resolver for MX, SPF, DKIM and DMARC lookups (repeatable;
    /// default: the nameservers of /etc/resolv.conf). Answers are
    /// DNSSEC-validated from the root's keys (IANA's, or root keys given
    /// with --trust-anchor).
    #[arg(long, value_name = "ADDR:PORT")]
    pub(crate) resolver: Vec<SocketAddr>,
    /// Ask these authoritative servers directly for ZONE (repeatable), e.g.
    /// alice.test=127.0.0.2:53. Validated when a --trust-anchor names the
    /// zone, else used as insecure.
    #[arg(long, value_name = "ZONE=ADDR:PORT[,ADDR:PORT]")]
    pub(crate) stub_zone: Vec<scop_dns::resolver::Stub>,
    /// Trusted DNSKEY records (repeatable): a file of DNSKEY lines, as in
    /// the `.key` files of `scop dns keygen`, or a directory whose `*.key`
    /// files are read.
    #[arg(long, value_name = "FILE|DIR")]
    pub(crate) trust_anchor: Vec<PathBuf>,
    /// Do not validate DNSSEC (every answer is used as insecure).
    #[arg(long)]
    pub(crate) no_dnssec: bool,
}

/// The validating resolver of `--resolver`, `--stub-zone`,
/// `--trust-anchor` and `--no-dnssec`; `None` without any server.
pub(crate) fn resolver(a: &ResolverArgs) -> Result<Option<scop_mail::mxlookup::Dns>> {
    let forwarders = if a.resolver.is_empty() {
        scop_dns::resolver::Config::forwarders_from_resolv_conf(
            &std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        )
    } else {
        a.resolver.clone()
    };
    if forwarders.is_empty() && a.stub_zone.is_empty() {
        return Ok(None);
    }
    let mut anchors = Vec::new();
    for path in &a.trust_anchor {
        anchors.extend(read_anchors(path)?);
    }
    let config = scop_dns::resolver::Config {
        forwarders,
        stubs: a.stub_zone.clone(),
        anchors,
        validate: !a.no_dnssec,
        timeout: Duration::from_secs(5),
    };
    scop_mail::mxlookup::Dns::new(&config)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("resolver: {e}"))
}

/// Runs `f` in a synchronous command with the validating resolver of
/// `args` behind the libraries' resolver traits (one runtime thread drives
/// it while `f` waits); `otherwise` names the offline alternative in the
/// error when no DNS server is known.
pub(crate) fn with_resolver<T>(
    args: &ResolverArgs,
    otherwise: &str,
    f: impl FnOnce(&scop_mail::verifier::BlockingDns<'_>) -> T,
) -> Result<T> {
    let Some(dns) = resolver(args)? else {
        bail!(
            "no DNS: give --resolver ADDR:PORT or --stub-zone ZONE=ADDR:PORT (none in \
             /etc/resolv.conf), or {otherwise}"
        );
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("start the async runtime")?;
    Ok(f(&scop_mail::verifier::BlockingDns::new(
        &dns,
        runtime.handle().clone(),
    )))
}

/// Trust anchors from a file, or from the `*.key` files of a directory
/// and of its `retiring/` subdirectory: during a `scop dns rollover` the
/// old keys are still published beside the new ones, and the validator
/// trusts a zone's DNSKEY set only when every key in it is an anchor.
pub(crate) fn read_anchors(path: &Path) -> Result<Vec<scop_dns::resolver::Anchor>> {
    let files = if path.is_dir() {
        let keys_in = |dir: &Path| -> Result<Vec<PathBuf>> {
            Ok(std::fs::read_dir(dir)
                .with_context(|| format!("read {}", dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "key"))
                .collect())
        };
        let mut v = keys_in(path)?;
        let retiring = path.join("retiring");
        if retiring.is_dir() {
            v.extend(keys_in(&retiring)?);
        }
        v.sort();
        if v.is_empty() {
            bail!("--trust-anchor {}: no .key file in it", path.display());
        }
        v
    } else {
        vec![path.to_path_buf()]
    };
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).with_context(|| format!("read {}", f.display()))?;
        out.extend(
            scop_dns::resolver::parse_anchors(&text)
                .with_context(|| format!("trust anchor {}", f.display()))?,
        );
    }
    Ok(out)
}

/// Publishing DKIM keys gives up after this long.
const DKIM_PUBLISH_PATIENCE: Duration = Duration::from_secs(60);

/// Replaces `<selector>._domainkey.<domain>` TXT with each signer's key
/// record on the primary `server`, in the background: the primary may
/// still be starting. A refusal (policy, TSIG) is logged and not retried.
pub(crate) fn publish_dkim(
    server: SocketAddr,
    key_file: &Path,
    signers: &HashMap<String, Vec<scop_dkim::Signer>>,
) -> Result<()> {
    let key = crate::cmd_dns::read_keys(key_file)?
        .into_iter()
        .next()
        .with_context(|| format!("no key in {}", key_file.display()))?;
    let mut updates = Vec::new();
    for (domain, list) in signers {
        let zone = scop_dns::tsig::parse_name(domain)?;
        let mut changes = Vec::new();
        for signer in list {
            let txt = signer.key().dns_txt()?;
            changes.push(crate::cmd_dns::dkim_key_change(
                &zone,
                signer.selector(),
                &txt,
            )?);
        }
        updates.push((zone, changes));
    }
    std::thread::spawn(move || {
        for (zone, changes) in updates {
            let start = std::time::Instant::now();
            let mut wait = Duration::from_millis(250);
            loop {
                match crate::cmd_dns::send_update(server, &zone, &changes, &key) {
                    Ok(r)
                        if r.rcode == scop_dns::hickory_proto::op::ResponseCode::NoError
                            && r.tsig_error == 0 =>
                    {
                        tracing::info!(%zone, %server, keys = changes.len(), "DKIM keys published");
                        break;
                    }
                    Ok(r) => {
                        tracing::error!(
                            %zone, %server,
                            "DKIM key publication refused: {}{}",
                            r.rcode,
                            crate::cmd_dns::tsig_note(r.tsig_error)
                        );
                        break;
                    }
                    Err(e) if start.elapsed() < DKIM_PUBLISH_PATIENCE => {
                        tracing::debug!(%zone, %server, "DKIM key publication: {e:#}; retrying");
                        std::thread::sleep(wait);
                        wait = (wait * 2).min(Duration::from_secs(5));
                    }
                    Err(e) => {
                        tracing::error!(%zone, %server, "DKIM key publication failed: {e:#}");
                        break;
                    }
                }
            }
        }
    });
    Ok(())
}

/// The signers of `--dkim DOMAIN:SELECTOR:KEYFILE` options, per domain
/// (lower case).
pub(crate) fn dkim_signers(specs: &[String]) -> Result<HashMap<String, Vec<scop_dkim::Signer>>> {
    let mut dkim: HashMap<String, Vec<scop_dkim::Signer>> = HashMap::new();
    for spec in specs {
        let mut parts = spec.splitn(3, ':');
        let (Some(domain), Some(selector), Some(file)) = (parts.next(), parts.next(), parts.next())
        else {
            bail!("--dkim {spec:?}: expected DOMAIN:SELECTOR:KEYFILE");
        };
        let pem = std::fs::read_to_string(file).with_context(|| format!("read {file}"))?;
        let key = scop_dkim::SigningKey::from_pem(&pem).with_context(|| format!("key {file}"))?;
        let signer = scop_dkim::Signer::new(key, domain, selector)
            .with_context(|| format!("--dkim {spec:?}"))?;
        dkim.entry(domain.to_ascii_lowercase())
            .or_default()
            .push(signer);
    }
    Ok(dkim)
}
