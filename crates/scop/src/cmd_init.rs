//! `scop init`: makes a deployment directory for one mail domain.
//!
//! Everything the bottle needs is written once, with private keys readable
//! by their owner only: the configuration (`scop.toml`), DKIM keys (RSA-2048
//! and Ed25519 under dated selectors), a TSIG key for the DKIM signer and
//! one for the ACME client, with the policy that confines them to
//! `*._domainkey` and `_acme-challenge` TXT records, the zone
//! (SOA, NS, A/AAAA, MX, SPF, DMARC with aggregate reports to a local
//! mailbox, the DKIM records) and the DNSSEC key that signs it online, the
//! DS record for the parent, the mesh's internal CA with one certificate
//! per compartment role, a self-signed TLS certificate for the public
//! listeners, and the first account. Nothing is overwritten: an existing
//! `scop.toml` stops the command before anything is written.

use crate::config::{self, Config, DkimKey, DnsSection, MailSection};
use anyhow::{Context, Result, bail};
use clap::Args;
use scop_dkim::{KeyKind, Signer, SigningKey};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Options of `scop init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The mail domain (e.g. example.org).
    #[arg(long)]
    domain: String,
    /// The host name of the mail server (default: mail.DOMAIN).
    #[arg(long)]
    hostname: Option<String>,
    /// A public address of the host, published as A/AAAA (repeatable).
    #[arg(long = "ip", value_name = "ADDR")]
    ips: Vec<std::net::IpAddr>,
    /// The deployment directory to create.
    #[arg(long, default_value = "scop", env = "SCOP_DIR")]
    dir: PathBuf,
    /// Local part of the first account (its login is LOCAL@DOMAIN).
    #[arg(long, default_value = "postmaster", value_name = "LOCAL")]
    user: String,
    /// Read the first account's password from stdin (one line); without
    /// it, a random password is made and printed once.
    #[arg(long)]
    password_stdin: bool,
    /// MX listener ("off" to disable).
    #[arg(long, default_value = "[::]:25")]
    mx: String,
    /// Submission listener with STARTTLS ("off" to disable).
    #[arg(long, default_value = "[::]:587")]
    submission: String,
    /// Submission listener with implicit TLS ("off" to disable).
    #[arg(long, default_value = "[::]:465")]
    submissions: String,
    /// Listener of the authoritative DNS primary for the domain ("off" when
    /// another server serves the zone).
    #[arg(long, default_value = "[::]:53")]
    dns: String,
    /// Recursive resolver for the relay and the verifier (repeatable;
    /// default: the system's).
    #[arg(long, value_name = "ADDR:PORT")]
    resolver: Vec<String>,
    /// The DMARC policy published for the domain: what receivers do with
    /// mail that fails authentication under its name.
    #[arg(long, value_enum, default_value_t = DmarcPolicy::Quarantine)]
    dmarc_policy: DmarcPolicy,
    /// Fixed route DOMAIN=HOST:PORT for outbound mail (repeatable).
    #[arg(long, value_name = "DOMAIN=ADDR")]
    route: Vec<String>,
    /// First port of the compartments' internal mesh listeners (six
    /// consecutive ports; default: 7401 on the first loopback --ip, else
    /// on 127.0.0.1).
    #[arg(long, value_name = "ADDR:PORT")]
    mesh_base: Option<std::net::SocketAddr>,
    /// Get the public TLS certificate from this ACME CA (directory URL)
    /// and let `scop up` renew it (DNS-01 through the deployment's own
    /// primary): e.g. https://acme-v02.api.letsencrypt.org/directory, or
    /// https://acme-staging-v02.api.letsencrypt.org/directory to try.
    /// Without it, the self-signed certificate stays until `scop tls acme`.
    #[arg(long, value_name = "URL")]
    acme_directory: Option<String>,
    /// The ACME account's contact (mailto:ADDR), with --acme-directory.
    #[arg(long, value_name = "mailto:ADDR", requires = "acme_directory")]
    acme_contact: Option<String>,
    /// The only root trusted for the ACME CA's HTTPS (a private or test
    /// CA), with --acme-directory.
    #[arg(long, value_name = "PEM", requires = "acme_directory")]
    acme_ca_cert: Option<PathBuf>,
    /// The first account's password when the caller chose it.
    #[arg(skip)]
    password: Option<String>,
}

/// The local test deployment of `scop up --local`.
pub(crate) mod local {
    /// Its domain.
    pub const DOMAIN: &str = "scop.test";
    /// The account's local part.
    pub const USER: &str = "you";
    /// Loopback listeners: MX, submission, submissions, DNS.
    pub const MX: &str = "127.0.0.1:2525";
    /// Submission with STARTTLS.
    pub const SUBMISSION: &str = "127.0.0.1:2587";
    /// Submission with implicit TLS.
    pub const SUBMISSIONS: &str = "127.0.0.1:2465";
    /// The signed zone's primary.
    pub const DNS: &str = "127.0.0.1:2053";
    /// The file (0600) that keeps the account's password for the banner.
    pub const PASSWORD_FILE: &str = "local-password";
}

/// Makes the local test deployment in `dir` (see [`local`]), quietly; its
/// password is kept in `dir/local-password`.
pub(crate) fn init_local(dir: &Path) -> Result<()> {
    let password = random_password()?;
    let args = InitArgs {
        domain: local::DOMAIN.into(),
        hostname: Some(format!("mx.{}", local::DOMAIN)),
        ips: vec![std::net::Ipv4Addr::LOCALHOST.into()],
        dir: dir.to_path_buf(),
        user: local::USER.into(),
        password_stdin: false,
        mx: local::MX.into(),
        submission: local::SUBMISSION.into(),
        submissions: local::SUBMISSIONS.into(),
        dns: local::DNS.into(),
        resolver: vec![],
        dmarc_policy: DmarcPolicy::Quarantine,
        route: vec![],
        mesh_base: None,
        acme_directory: None,
        acme_contact: None,
        acme_ca_cert: None,
        password: Some(password.clone()),
    };
    create(args, &mut std::io::sink())?;
    write_file(
        &dir.join(local::PASSWORD_FILE),
        format!("{password}\n").as_bytes(),
        0o600,
    )
}

/// Lifetime of the mesh CA.
pub(crate) const MESH_CA_DAYS: u64 = 10 * 365;
/// Lifetime of each compartment's mesh certificate.
pub(crate) const MESH_LEAF_DAYS: u64 = 365;

pub fn run(args: InitArgs) -> Result<ExitCode> {
    create(args, &mut std::io::stdout().lock())
}

/// Makes the deployment and reports to `out`.
fn create(args: InitArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let domain = host_name(&args.domain).context("--domain")?;
    let hostname = match &args.hostname {
        Some(h) => host_name(h).context("--hostname")?,
        None => format!("mail.{domain}"),
    };
    let local = args.user.trim().to_ascii_lowercase();
    if local.is_empty()
        || !local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c))
    {
        bail!(
            "--user {:?}: use letters, digits, '.', '_', '-' or '+'",
            args.user
        );
    }
    let login = format!("{local}@{domain}");
    if let Some(contact) = &args.acme_contact
        && !contact.starts_with("mailto:")
    {
        bail!("--acme-contact {contact:?}: expected mailto:ADDR");
    }
    let dir = &args.dir;
    let config_path = dir.join(config::FILE_NAME);
    if config_path.exists() {
        bail!(
            "{} exists: {} is already a deployment (nothing was changed)",
            config_path.display(),
            dir.display()
        );
    }
    let password = match (&args.password, args.password_stdin) {
        (Some(p), _) => p.clone(),
        (None, true) => crate::cmd_admin::read_password()?,
        (None, false) => random_password()?,
    };

    let now = crate::cmd_dns::now();
    let (year, month, day) = civil_date(now);
    for sub in [
        "",
        "keys",
        "keys/dkim",
        "keys/tsig",
        "tls",
        "zones",
        "data",
        "logs",
        "credentials",
        "mail",
    ] {
        let path = dir.join(sub);
        std::fs::create_dir_all(&path).with_context(|| format!("create {}", path.display()))?;
    }
    for private in ["keys", "keys/dkim", "keys/tsig", "credentials", "mail"] {
        set_mode(&dir.join(private), 0o700)?;
    }

    // DKIM: RSA-2048 and Ed25519 under selectors dated by month, so that a
    // rotation gets fresh names.
    let (dkim, dkim_records) = new_dkim_keys(dir, &domain, year, month)?;

    // The signer's TSIG key, allowed to touch the DKIM records only.
    let tsig_name = format!("signer.{domain}.");
    let algorithm = scop_dns::tsig::Algorithm::HmacSha256;
    let mut secret = vec![0u8; algorithm.mac_len()];
    aws_lc_rs::rand::fill(&mut secret).map_err(|_| anyhow::anyhow!("no randomness available"))?;
    let tsig = scop_dns::tsig::Key::new(&tsig_name, algorithm, secret)?;
    let tsig_rel = PathBuf::from("keys/tsig/signer.key");
    write_file(&dir.join(&tsig_rel), tsig.to_bind().as_bytes(), 0o600)?;
    // The ACME client's TSIG key, allowed to touch the DNS-01 challenge
    // records only.
    let acme_name = format!("acme.{domain}.");
    let mut secret = vec![0u8; algorithm.mac_len()];
    aws_lc_rs::rand::fill(&mut secret).map_err(|_| anyhow::anyhow!("no randomness available"))?;
    let acme_tsig = scop_dns::tsig::Key::new(&acme_name, algorithm, secret)?;
    let acme_rel = PathBuf::from(crate::cmd_tls::ACME_TSIG_KEY);
    write_file(&dir.join(&acme_rel), acme_tsig.to_bind().as_bytes(), 0o600)?;
    let policy_rel = PathBuf::from("dns.policy");
    write_file(
        &dir.join(&policy_rel),
        format!(
            "# Written by `scop init`. The DKIM signer may change DKIM records only.\n\
             update {tsig_name} *._domainkey.@ TXT\n\
             # The ACME client may change DNS-01 challenge records only.\n\
             update {acme_name} _acme-challenge.@ TXT\n\
             update {acme_name} _acme-challenge.*.@ TXT\n"
        )
        .as_bytes(),
        0o644,
    )?;

    // DNSSEC: one ECDSA P-256 key signing the whole zone (a CSK); its DS
    // goes to the parent.
    let dnssec_rel = PathBuf::from("keys/dnssec");
    let zone_name = crate::cmd_dns::zone_name(&domain)?;
    let csk = crate::cmd_dns::new_key(
        &zone_name,
        scop_dns::dnssec::Algorithm::EcdsaP256Sha256,
        true,
    )?;
    crate::cmd_dns::write_key(&dir.join(&dnssec_rel), &csk)?;
    set_mode(&dir.join(&dnssec_rel), 0o700)?;

    // The mesh: an internal CA and one certificate per compartment naming
    // its role, for the mutually-authenticated pipes between compartments.
    let start = std::time::SystemTime::now();
    let mesh_validity = |days: u64| {
        scop_mesh::Validity::starting(start, std::time::Duration::from_secs(days * 86_400))
    };
    let roles: Vec<_> = scop_mesh::Role::ALL
        .iter()
        .map(|r| (*r, scop_mesh::ExtraNames::none()))
        .collect();
    scop_mesh::MeshDir::init(
        dir.join("mesh"),
        mesh_validity(MESH_CA_DAYS)?,
        mesh_validity(MESH_LEAF_DAYS)?,
        &roles,
    )
    .context("create the mesh CA and certificates")?;

    // TLS for the public listeners, and its DANE record (RFC 7672): the
    // signed zone publishes the key, so DANE senders authenticate the MX
    // even with this self-signed certificate.
    let (cert, key) = scop_mail::tls::self_signed(std::slice::from_ref(&hostname))?;
    write_file(&dir.join("tls/key.pem"), key.as_bytes(), 0o600)?;
    write_file(&dir.join("tls/cert.pem"), cert.as_bytes(), 0o644)?;
    let tlsa = match crate::config::mx_port(&args.mx) {
        Some(port) => Some((port, scop_mail::tls::dane_ee_record(cert.as_bytes())?)),
        None => None,
    };

    // The zone.
    let zone_rel = PathBuf::from(format!("zones/{domain}.zone"));
    let serial = u64::from(year) * 1_000_000 + u64::from(month) * 10_000 + u64::from(day) * 100 + 1;
    let zone = zone_text(
        &domain,
        &hostname,
        &args.ips,
        serial,
        &dkim_records,
        args.dmarc_policy,
        tlsa.as_ref(),
    );
    write_file(&dir.join(&zone_rel), zone.as_bytes(), 0o644)?;

    // The first account; DMARC and TLS reports and postmaster mail reach
    // it.
    // Its password hash goes to the credentials file, which only the
    // submission compartment opens.
    let store_url = format!("sqlite:{}", dir.join("data/scop.db").display());
    let credentials_rel = PathBuf::from("credentials/passwords.db");
    let credentials = dir.join(&credentials_rel);
    let reports = format!("dmarc-reports@{domain}");
    let tls_reports = format!("tls-reports@{domain}");
    let postmaster = format!("postmaster@{domain}");
    crate::cmd_admin::block_on(async {
        let store = scop_store::Store::open_with_credentials(&store_url, &credentials)
            .await
            .with_context(|| format!("open the store {store_url}"))?;
        store.add_user(&login, &password).await?;
        store.add_alias(&reports, &login).await?;
        store.add_alias(&tls_reports, &login).await?;
        if postmaster != login {
            store.add_alias(&postmaster, &login).await?;
        }
        store.close().await;
        Ok(())
    })?;

    // Our own primary, where the resolver takes the domain's zone and the
    // signer publishes its keys ("off": another server serves the zone).
    let own = own_dns(&args.dns)?;
    let config = Config {
        domain: domain.clone(),
        hostname: hostname.clone(),
        addresses: args.ips.iter().map(|ip| ip.to_string()).collect(),
        mail: MailSection {
            data: "data".into(),
            store: None,
            credentials: Some(credentials_rel),
            // Outside data/: mx and submission open the store there.
            mailboxes: Some("mail".into()),
            mx: args.mx.clone(),
            submission: args.submission.clone(),
            submissions: args.submissions.clone(),
            tls_cert: "tls/cert.pem".into(),
            tls_key: "tls/key.pem".into(),
            verify: true,
            resolvers: args.resolver.clone(),
            // The domain's own zone comes from its own primary, validated
            // with its own keys (the directory, so a rollover's new key is
            // trusted too).
            stub_zones: own.iter().map(|addr| format!("{domain}={addr}")).collect(),
            trust_anchors: own.iter().map(|_| dnssec_rel.clone()).collect(),
            routes: args.route.clone(),
            dkim,
            // The signer publishes its keys to our primary at each start.
            dkim_publish: own.map(|a| a.to_string()),
            dkim_tsig_key: own.map(|_| tsig_rel.clone()),
            // The mail compartments run as separate processes, linked by
            // the mesh made above.
            mesh: Some("mesh".into()),
            mesh_base: Some(mesh_base(&args).to_string()),
            extra_args: vec![],
        },
        dns: own.map(|_| DnsSection {
            listen: args.dns.clone(),
            zones: vec![zone_rel.clone()],
            // Outside data/, which the store's compartments may write:
            // the primary replays its journal at start.
            journal: "dns-journal".into(),
            tsig_keys: vec![tsig_rel.clone(), acme_rel.clone()],
            policy: Some(policy_rel.clone()),
            notify: vec![],
            dnssec_keys: Some(dnssec_rel.clone()),
            // Our own relay and verifier ask this primary over loopback:
            // response rate limiting is for the Internet.
            extra_args: ["--rrl-exempt", "127.0.0.0/8", "--rrl-exempt", "::1"]
                .map(String::from)
                .to_vec(),
        }),
        acme: args
            .acme_directory
            .as_ref()
            .map(|directory| config::AcmeSection {
                directory: directory.clone(),
                contact: args.acme_contact.clone(),
                ca_cert: args
                    .acme_ca_cert
                    .as_ref()
                    .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone())),
            }),
    };
    write_file(&config_path, config.file_text()?.as_bytes(), 0o644)?;

    writeln!(out, "created {} for {domain}", dir.display())?;
    writeln!(out, "  config        {}", config_path.display())?;
    writeln!(out, "  zone          {}", dir.join(&zone_rel).display())?;
    writeln!(out, "  DKIM keys     {}", dir.join("keys/dkim").display())?;
    writeln!(out, "  TSIG keys     {}", dir.join(&tsig_rel).display())?;
    writeln!(out, "                {}", dir.join(&acme_rel).display())?;
    writeln!(
        out,
        "  DNSSEC key    {} (tag {})",
        dir.join(&dnssec_rel).display(),
        csk.tag()
    )?;
    writeln!(
        out,
        "  TLS           {} (self-signed)",
        dir.join("tls/cert.pem").display()
    )?;
    writeln!(out, "  mesh CA       {}", dir.join("mesh").display())?;
    writeln!(out, "  account       {login}")?;
    if !args.password_stdin && args.password.is_none() {
        writeln!(out, "  password      {password}   (shown once)")?;
    }
    writeln!(
        out,
        "  hashes        {} (read by submission alone)",
        credentials.display()
    )?;
    writeln!(
        out,
        "Accounts: scop user add|passwd|list ... --data {} --credentials {}",
        dir.join("data").display(),
        credentials.display()
    )?;
    writeln!(out)?;
    writeln!(out, "At your registrar, delegate {domain} to this host:")?;
    writeln!(out, "  {domain}. NS {hostname}.")?;
    if hostname.ends_with(&format!(".{domain}")) {
        for ip in &args.ips {
            let kind = if ip.is_ipv4() { "A" } else { "AAAA" };
            writeln!(out, "  {hostname}. {kind} {ip}   (glue)")?;
        }
    }
    writeln!(out, "  {}", csk.ds_text())?;
    if let Some((port, record)) = &tlsa
        && !crate::config::in_zone(&hostname, &domain)
    {
        writeln!(
            out,
            "For DANE (RFC 7672), publish in {hostname}'s own signed zone:\n  _{port}._tcp.{hostname}. TLSA {record}"
        )?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "Then start everything with: scop up --dir {}",
        dir.display()
    )?;
    if let Some(directory) = &args.acme_directory {
        writeln!(
            out,
            "Once the delegation is live, `scop up` gets the TLS certificate from {directory} and renews it."
        )?;
    } else {
        writeln!(
            out,
            "For a CA-signed TLS certificate, once the delegation is live: scop tls acme --dir {}",
            dir.display()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `p=` of the published DMARC record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum DmarcPolicy {
    /// Only reports.
    None,
    /// Failing mail goes to the spam folder.
    Quarantine,
    /// Failing mail is refused.
    Reject,
}

impl DmarcPolicy {
    fn keyword(self) -> &'static str {
        match self {
            DmarcPolicy::None => "none",
            DmarcPolicy::Quarantine => "quarantine",
            DmarcPolicy::Reject => "reject",
        }
    }
}

/// The zone's master file.
fn zone_text(
    domain: &str,
    hostname: &str,
    ips: &[std::net::IpAddr],
    serial: u64,
    dkim: &[(String, String)],
    dmarc: DmarcPolicy,
    tlsa: Option<&(u16, String)>,
) -> String {
    let mut z = String::new();
    z.push_str(&format!("; {domain}, written by `scop init`.\n"));
    z.push_str(&format!("$ORIGIN {domain}.\n$TTL 3600\n"));
    z.push_str(&format!(
        "@ IN SOA {hostname}. hostmaster.{domain}. ( {serial} 3600 900 1209600 300 )\n"
    ));
    z.push_str(&format!("@ IN NS {hostname}.\n"));
    z.push_str(&format!("@ IN MX 10 {hostname}.\n"));
    z.push_str("@ IN TXT \"v=spf1 mx -all\"\n");
    z.push_str(&format!(
        "_dmarc IN TXT \"v=DMARC1; p={}; rua=mailto:dmarc-reports@{domain}; ruf=mailto:dmarc-reports@{domain}\"\n",
        dmarc.keyword()
    ));
    // Other senders' TLS reports on our MX (RFC 8460).
    z.push_str(&format!(
        "_smtp._tls IN TXT \"v=TLSRPTv1; rua=mailto:tls-reports@{domain}\"\n"
    ));
    if crate::config::in_zone(hostname, domain) {
        for ip in ips {
            let kind = if ip.is_ipv4() { "A" } else { "AAAA" };
            z.push_str(&format!("{hostname}. IN {kind} {ip}\n"));
        }
        if let Some((port, record)) = tlsa {
            z.push_str(&format!("_{port}._tcp.{hostname}. IN TLSA {record}\n"));
        }
    }
    for (selector, txt) in dkim {
        z.push_str(&format!(
            "{selector}._domainkey IN TXT ( {} )\n",
            crate::cmd_dns::txt_strings(txt)
        ));
    }
    z
}

/// A lower-cased host name without trailing dot, or an error saying why not.
fn host_name(text: &str) -> Result<String> {
    let name = text.trim().trim_end_matches('.').to_ascii_lowercase();
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.contains('.')
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !ok {
        bail!("{text:?} is not a domain name with at least two labels");
    }
    Ok(name)
}

/// 20 characters from a 32-letter alphabet without look-alikes (100 bits).
fn random_password() -> Result<String> {
    const ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let mut bytes = [0u8; 20];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| anyhow::anyhow!("no randomness available"))?;
    Ok(bytes
        .iter()
        .map(|b| ALPHABET[usize::from(b & 31)] as char)
        .collect())
}

/// Writes a new file durably with `mode` (tmp, fsync, rename).
pub(crate) fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let tmp = write_tmp(path, data, mode)?;
    std::fs::rename(&tmp, path).with_context(|| format!("rename to {}", path.display()))?;
    Ok(())
}

/// Writes `data` to a temporary file beside `path` (`mode`, also when
/// a stale one was there; fsync'd) and returns its path: the caller
/// renames it over `path`, possibly together with others.
pub(crate) fn write_tmp(path: &Path, data: &[u8], mode: u32) -> Result<PathBuf> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    let mut file = options
        .open(&tmp)
        .with_context(|| format!("create {}", tmp.display()))?;
    set_mode(&tmp, mode)?;
    file.write_all(data)?;
    file.sync_all()?;
    Ok(tmp)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("chmod {}", path.display()))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

/// The UTC calendar date of a Unix time (proleptic Gregorian).
pub(crate) fn civil_date(unix: u64) -> (u32, u32, u32) {
    let d = scop_mime::DateTime::from_unix_timestamp(i64::try_from(unix).unwrap_or(i64::MAX));
    (d.year.into(), d.month.into(), d.day.into())
}

/// Where our own primary listening on `listen` is reached ("off": none);
/// a wildcard listener is reached on loopback.
fn own_dns(listen: &str) -> Result<Option<std::net::SocketAddr>> {
    if listen == "off" {
        return Ok(None);
    }
    let mut addr: std::net::SocketAddr = listen
        .parse()
        .with_context(|| format!("--dns {listen:?}: expected ADDR:PORT or off"))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    Ok(Some(addr))
}

/// `(selector, TXT data)` of each DKIM key.
pub(crate) type KeyRecords = Vec<(String, String)>;

/// A new RSA-2048 and Ed25519 key pair for `domain` under selectors dated
/// `year`/`month` (`r202611`, `e202611`; a letter is added when those are
/// taken), written to `dir/keys/dkim/<selector>.pem` (0600). Returns the
/// keys and their TXT records.
pub(crate) fn new_dkim_keys(
    dir: &Path,
    domain: &str,
    year: u32,
    month: u32,
) -> Result<(Vec<DkimKey>, KeyRecords)> {
    let taken = |suffix: &str| {
        ["r", "e"].iter().any(|p| {
            dir.join(format!("keys/dkim/{p}{year:04}{month:02}{suffix}.pem"))
                .exists()
        })
    };
    let suffix = std::iter::once(String::new())
        .chain(('b'..='z').map(String::from))
        .find(|s| !taken(s))
        .context("every selector of this month is taken")?;
    let mut keys = Vec::new();
    let mut records = Vec::new();
    for (prefix, kind) in [("r", KeyKind::Rsa2048), ("e", KeyKind::Ed25519)] {
        let selector = format!("{prefix}{year:04}{month:02}{suffix}");
        let key = SigningKey::generate(kind)?;
        let signer = Signer::new(key, domain, &selector)?;
        let rel = PathBuf::from(format!("keys/dkim/{selector}.pem"));
        write_file(
            &dir.join(&rel),
            signer.key().to_pkcs8_pem()?.as_bytes(),
            0o600,
        )?;
        records.push((selector.clone(), signer.key().dns_txt()?));
        keys.push(DkimKey { selector, key: rel });
    }
    Ok((keys, records))
}

/// Default first port of the mesh listeners.
const MESH_PORT: u16 = 7401;

/// Where the mesh listeners go: `--mesh-base`, else port 7401 on the
/// first loopback address given with --ip (so two deployments on one host
/// keep apart), else on 127.0.0.1.
fn mesh_base(args: &InitArgs) -> std::net::SocketAddr {
    args.mesh_base.unwrap_or_else(|| {
        let ip = args
            .ips
            .iter()
            .copied()
            .find(std::net::IpAddr::is_loopback)
            .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into());
        std::net::SocketAddr::new(ip, MESH_PORT)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(951_782_400), (2000, 2, 29));
        assert_eq!(civil_date(1_795_651_200), (2026, 11, 26));
    }

    #[test]
    fn host_names() {
        assert_eq!(host_name("Example.ORG.").unwrap(), "example.org");
        assert!(host_name("localhost").is_err());
        assert!(host_name("a..b").is_err());
        assert!(host_name("-a.b").is_err());
        assert!(host_name("a b.c").is_err());
    }

    #[test]
    fn zone_parses_with_our_reader() {
        let dkim = vec![(
            "r202611".to_string(),
            format!("v=DKIM1; k=rsa; p={}", "A".repeat(400)),
        )];
        let text = zone_text(
            "example.org",
            "mail.example.org",
            &["192.0.2.1".parse().unwrap(), "2001:db8::1".parse().unwrap()],
            2026112601,
            &dkim,
            DmarcPolicy::Reject,
            Some(&(25, format!("3 1 1 {}", "ab".repeat(32)))),
        );
        let zone = scop_dns::Zone::from_master(&text, None).expect("zone parses");
        let _ = zone;
        assert!(text.contains(
            "v=DMARC1; p=reject; rua=mailto:dmarc-reports@example.org; \
             ruf=mailto:dmarc-reports@example.org"
        ));
        assert!(text.contains("mail.example.org. IN AAAA 2001:db8::1"));
        assert!(
            text.contains("_smtp._tls IN TXT \"v=TLSRPTv1; rua=mailto:tls-reports@example.org\"")
        );
        assert!(text.contains("r202611._domainkey IN TXT ( \""));
        assert!(text.contains(&format!(
            "_25._tcp.mail.example.org. IN TLSA 3 1 1 {}",
            "ab".repeat(32)
        )));
    }

    #[test]
    fn passwords_are_random_and_long() {
        let a = random_password().unwrap();
        let b = random_password().unwrap();
        assert_eq!(a.len(), 20);
        assert_ne!(a, b);
    }
}
