//! `scop dns`: the authoritative primary (`serve`), TSIG keys
//! (`tsig-keygen`), our own RFC 2136 update client (`update`), and the
//! DNSSEC keys of signed zones (`keygen`, `ds`, `rollover`).

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use scop_dns::client::{self, Change};
use scop_dns::dnssec::{self, Denial, Settings, SigningKey};
use scop_dns::hickory_proto::op::ResponseCode;
use scop_dns::hickory_proto::rr::{Name, RecordType};
use scop_dns::policy::Policy;
use scop_dns::server::{self, Config, Server};
use scop_dns::tsig::{self, Algorithm, Key, KeyRing};
use scop_dns::{Engine, Zone};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Largest reply read by `scop dns update`.
const MAX_REPLY_BYTES: usize = 65_535;
/// Time allowed for the update server to answer.
const UPDATE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Subcommand)]
pub enum DnsCommand {
    /// Run an authoritative primary for one or more zones (UDP and TCP).
    ///
    /// Answers queries, accepts RFC 2136 updates signed with a TSIG key
    /// (each key limited by the policy file), appends every accepted
    /// change to a journal (fsync'd before the reply; replayed at start),
    /// serves AXFR/IXFR to keys allowed to transfer and sends NOTIFY to
    /// the secondaries given with --notify. With --dnssec-keys, zones whose
    /// keys are in that directory are signed online (`scop dns keygen`).
    ///
    /// Zone files are RFC 1035 master files with an `$ORIGIN` line or
    /// absolute names; the zone is the owner of the SOA record.
    ///
    /// Policy file (one rule per line; without --policy every key may
    /// change and transfer everything):
    ///
    ///   update dkim-signer. *._domainkey.@ TXT   # only DKIM keys
    ///   update admin. * *                        # everything
    ///   transfer secondary.                      # AXFR/IXFR
    ///
    /// Example: scop dns serve --zone example.org.zone --listen 127.0.0.1:5353 --tsig-key dkim.key --policy dns.policy --journal /var/lib/scop/dns
    Serve(ServeArgs),
    /// Generate a TSIG key in BIND's key-file syntax (read by nsupdate -k,
    /// named and `scop dns serve --tsig-key`).
    ///
    /// Example: scop dns tsig-keygen dkim-signer --out dkim.key
    TsigKeygen(KeygenArgs),
    /// Send one signed RFC 2136 update (over TCP) and report the result.
    ///
    /// Actions: `add NAME TTL TYPE DATA...`, `replace NAME TTL TYPE DATA...`
    /// (the RRset becomes exactly this record), `delete NAME [TYPE [DATA...]]`
    /// (a record, an RRset, or every RRset of the name). NAME is relative
    /// to --zone unless it ends with a dot.
    ///
    /// Example: scop dns update --server 127.0.0.1:5353 --key dkim.key --zone example.org add s1._domainkey 300 TXT '"v=DKIM1; k=ed25519; p=..."'
    Update(UpdateArgs),
    /// Generate a DNSSEC signing key for a zone, as BIND key files
    /// `K<zone>.+<alg>+<tag>.key` (the DNSKEY record) and `.private`
    /// (mode 0600). The default is a combined signing key (flags 257,
    /// signs everything); --zsk makes a zone-signing key (flags 256) for
    /// a KSK/ZSK split. `scop dns serve --dnssec-keys DIR` signs the zone
    /// with the keys found in DIR.
    ///
    /// Example: scop dns keygen example.org --algorithm ecdsap256 --dir /var/lib/scop/dnssec
    Keygen(DnssecKeygenArgs),
    /// Print the DS record (SHA-256 digest) of the zone's key-signing
    /// keys: give it to the parent zone's operator or registrar.
    ///
    /// Example: scop dns ds example.org --dir /var/lib/scop/dnssec
    Ds(DsArgs),
    /// Roll the zone's keys over, in two steps (double-signature
    /// rollover, RFC 6781 4.1): first a new key of the same kind is made
    /// and the current keys move to DIR/retiring; `serve` publishes and
    /// signs with both, so validators holding either key (or either DS)
    /// succeed. The new DS is printed: publish it at the parent. Once the
    /// parent serves only the new DS and the largest TTL has passed,
    /// `rollover --finish` moves the retiring keys to DIR/retired. A
    /// running server picks the keys up at its next start.
    ///
    /// Example: scop dns rollover example.org --dir /var/lib/scop/dnssec
    Rollover(RolloverArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A zone master file (repeatable).
    #[arg(long = "zone", required = true, value_name = "FILE")]
    zones: Vec<PathBuf>,
    /// Address for both UDP and TCP (port 0 picks a free port; the chosen
    /// address is printed as `listening on ADDR`).
    #[arg(long, value_name = "ADDR:PORT")]
    listen: SocketAddr,
    /// A TSIG key file in BIND syntax (repeatable; a file may hold several keys).
    #[arg(long = "tsig-key", value_name = "FILE")]
    tsig_keys: Vec<PathBuf>,
    /// The policy file: which key may update which names and types, and transfer.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Directory of the journals (created if missing); without it, changes
    /// are lost at exit.
    #[arg(long, value_name = "DIR")]
    journal: Option<PathBuf>,
    /// A secondary to NOTIFY when a zone changes (repeatable).
    #[arg(long, value_name = "ADDR:PORT")]
    notify: Vec<SocketAddr>,
    /// Directory of DNSSEC key files (`scop dns keygen`): every zone with
    /// keys there is signed online (DNSKEY, RRSIG, NSEC3), re-signed on
    /// update, its signatures renewed before they expire.
    #[arg(long, value_name = "DIR")]
    dnssec_keys: Option<PathBuf>,
    /// Prove non-existence with NSEC instead of NSEC3 (NSEC lets anyone
    /// list the zone's names).
    #[arg(long, requires = "dnssec_keys")]
    nsec: bool,
    /// Response rate limiting: identical UDP responses per second to one
    /// client /24 (IPv4) or /56 (IPv6); over it they are dropped
    /// (0 turns limiting off). TCP is never limited.
    #[arg(long, value_name = "N", default_value_t = scop_dns::rrl::DEFAULT_RRL_RATE)]
    rrl_rate: u32,
    /// Every N-th rate-limited UDP response is sent truncated instead of
    /// dropped, so a real client retries over TCP (0 drops them all).
    #[arg(long, value_name = "N", default_value_t = scop_dns::rrl::DEFAULT_RRL_SLIP)]
    rrl_slip: u32,
    /// Never rate-limit these clients (repeatable), e.g. 127.0.0.0/8 for
    /// our own mail compartments asking over loopback.
    #[arg(long, value_name = "ADDR[/LEN]")]
    rrl_exempt: Vec<scop_dns::rrl::Prefix>,
    /// Once the zones and keys are read, confine this process with
    /// Landlock: the journal directory stays reachable and no other file,
    /// and TCP only to listen on the --listen port (`scop up` sets it; on
    /// a kernel without Landlock the server runs unconfined and says so).
    #[arg(long)]
    landlock: bool,
    /// After confining, try to read this file and say whether it could,
    /// then exit (for tests of the confinement).
    #[arg(long, hide = true, requires = "landlock", value_name = "PATH")]
    confine_probe: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DnssecAlgorithmArg {
    /// ECDSA P-256 with SHA-256 (algorithm 13).
    Ecdsap256,
    /// Ed25519 (algorithm 15).
    Ed25519,
}

#[derive(Debug, Args)]
pub struct DnssecKeygenArgs {
    /// The zone (e.g. example.org).
    zone: String,
    /// The signing algorithm.
    #[arg(long, value_enum, default_value = "ecdsap256")]
    algorithm: DnssecAlgorithmArg,
    /// Directory for the key files.
    #[arg(long, value_name = "DIR", default_value = ".")]
    dir: PathBuf,
    /// A zone-signing key (flags 256) instead of a combined signing key.
    #[arg(long)]
    zsk: bool,
}

#[derive(Debug, Args)]
pub struct DsArgs {
    /// The zone.
    zone: String,
    /// Directory of the key files.
    #[arg(long, value_name = "DIR", default_value = ".")]
    dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct RolloverArgs {
    /// The zone.
    zone: String,
    /// Directory of the key files.
    #[arg(long, value_name = "DIR", default_value = ".")]
    dir: PathBuf,
    /// Second step: retire the keys of the first step.
    #[arg(long)]
    finish: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AlgorithmArg {
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// The key's name (e.g. dkim-signer).
    name: String,
    /// The HMAC algorithm.
    #[arg(long, value_enum, default_value = "hmac-sha256")]
    algorithm: AlgorithmArg,
    /// Write the key here (mode 0600) instead of standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Action {
    Add,
    Replace,
    Delete,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The primary's address.
    #[arg(long, value_name = "ADDR:PORT")]
    server: SocketAddr,
    /// The TSIG key file (BIND syntax; the first key is used).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// The zone to update.
    #[arg(long, value_name = "ZONE")]
    zone: String,
    /// add, replace or delete.
    #[arg(value_enum)]
    action: Action,
    /// NAME [TTL TYPE DATA...] (see above).
    #[arg(required = true, num_args = 1.., allow_hyphen_values = true)]
    record: Vec<String>,
}

pub fn run(cmd: DnsCommand) -> Result<ExitCode> {
    match cmd {
        DnsCommand::Serve(args) => serve(args),
        DnsCommand::TsigKeygen(args) => keygen(args),
        DnsCommand::Update(args) => update(args),
        DnsCommand::Keygen(args) => dnssec_keygen(args),
        DnsCommand::Ds(args) => ds(args),
        DnsCommand::Rollover(args) => rollover(args),
    }
}

pub(crate) fn zone_name(text: &str) -> Result<Name> {
    let mut name = Name::from_ascii(text).with_context(|| format!("bad zone name {text:?}"))?;
    name.set_fqdn(true);
    Ok(name.to_lowercase())
}

/// Reads a key file, bounded in size.
fn read_small(path: &Path) -> Result<String> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("read {}", path.display()))?
        .len();
    if len > dnssec::MAX_KEY_FILE_BYTES as u64 {
        bail!("{} is too large for a key file", path.display());
    }
    std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))
}

/// The DNSSEC keys of `zone` in `dir` (`K<zone>.+*.key` with its
/// `.private`), ordered by file name.
fn load_dnssec_keys(dir: &Path, zone: &Name) -> Result<Vec<(PathBuf, SigningKey)>> {
    let prefix = format!("k{}+", zone.to_ascii()).to_ascii_lowercase();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("read key directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.to_ascii_lowercase().starts_with(&prefix) && n.ends_with(".key"))
        })
        .collect();
    paths.sort();
    let mut keys = Vec::new();
    for public in paths {
        let private = public.with_extension("private");
        let key = SigningKey::from_bind(&read_small(&public)?, &read_small(&private)?)
            .with_context(|| format!("DNSSEC key {}", public.display()))?;
        if key.zone() != zone {
            bail!(
                "{} is a key for {}, not {zone}",
                public.display(),
                key.zone()
            );
        }
        keys.push((public, key));
    }
    Ok(keys)
}

fn write_new(path: &Path, text: &str, mode: u32) -> Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = opts
        .open(path)
        .with_context(|| format!("create {} (it must not exist)", path.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// A new key from fresh random bytes (drawn again in the rare case they
/// are not a valid P-256 scalar).
pub(crate) fn new_key(zone: &Name, algorithm: dnssec::Algorithm, sep: bool) -> Result<SigningKey> {
    for _ in 0..8 {
        let mut secret = [0u8; dnssec::SECRET_BYTES];
        aws_lc_rs::rand::fill(&mut secret)
            .map_err(|_| anyhow::anyhow!("no randomness available"))?;
        if let Ok(key) = SigningKey::from_secret(zone, algorithm, sep, &secret) {
            return Ok(key);
        }
    }
    bail!("could not make a key")
}

pub(crate) fn write_key(dir: &Path, key: &SigningKey) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let stem = key.file_stem();
    let public = dir.join(format!("{stem}.key"));
    write_new(
        &dir.join(format!("{stem}.private")),
        &key.private_file(),
        0o600,
    )?;
    write_new(&public, &key.public_file(), 0o644)?;
    Ok(public)
}

fn dnssec_keygen(args: DnssecKeygenArgs) -> Result<ExitCode> {
    let zone = zone_name(&args.zone)?;
    let algorithm = match args.algorithm {
        DnssecAlgorithmArg::Ecdsap256 => dnssec::Algorithm::EcdsaP256Sha256,
        DnssecAlgorithmArg::Ed25519 => dnssec::Algorithm::Ed25519,
    };
    let key = new_key(&zone, algorithm, !args.zsk)?;
    let public = write_key(&args.dir, &key)?;
    eprintln!(
        "wrote DNSSEC key {} (tag {}, {}) to {}",
        key.file_stem(),
        key.tag(),
        key.algorithm().mnemonic(),
        public.display()
    );
    println!("{}", key.file_stem());
    Ok(ExitCode::SUCCESS)
}

fn ds(args: DsArgs) -> Result<ExitCode> {
    let zone = zone_name(&args.zone)?;
    let keys = load_dnssec_keys(&args.dir, &zone)?;
    let mut printed = 0;
    for (_, key) in &keys {
        if key.is_sep() {
            println!("{}", key.ds_text());
            printed += 1;
        }
    }
    if printed == 0 {
        bail!(
            "no key-signing key for {zone} in {} (scop dns keygen {zone} --dir ...)",
            args.dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn move_key(public: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("create {}", to.display()))?;
    for path in [public.to_path_buf(), public.with_extension("private")] {
        let name = path.file_name().map(ToOwned::to_owned).unwrap_or_default();
        std::fs::rename(&path, to.join(name))
            .with_context(|| format!("move {} to {}", path.display(), to.display()))?;
    }
    Ok(())
}

fn rollover(args: RolloverArgs) -> Result<ExitCode> {
    let zone = zone_name(&args.zone)?;
    let retiring = args.dir.join("retiring");
    if args.finish {
        let old = if retiring.is_dir() {
            load_dnssec_keys(&retiring, &zone)?
        } else {
            Vec::new()
        };
        if old.is_empty() {
            bail!(
                "no rollover of {zone} in progress in {}",
                args.dir.display()
            );
        }
        for (public, key) in old {
            move_key(&public, &args.dir.join("retired"))?;
            eprintln!("key {} (tag {}) retired", key.file_stem(), key.tag());
        }
        return Ok(ExitCode::SUCCESS);
    }
    if retiring.is_dir() && !load_dnssec_keys(&retiring, &zone)?.is_empty() {
        bail!("a rollover of {zone} is in progress: finish it first (--finish)");
    }
    let keys = load_dnssec_keys(&args.dir, &zone)?;
    if keys.is_empty() {
        bail!("no key for {zone} in {}", args.dir.display());
    }
    for (public, old) in keys {
        let new = new_key(&zone, old.algorithm(), old.is_sep())?;
        write_key(&args.dir, &new)?;
        move_key(&public, &retiring)?;
        eprintln!(
            "key {} (tag {}) retiring, {} (tag {}) added",
            old.file_stem(),
            old.tag(),
            new.file_stem(),
            new.tag()
        );
        if new.is_sep() {
            println!("{}", new.ds_text());
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn read_keys(path: &Path) -> Result<Vec<Key>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("read TSIG key file {}", path.display()))?;
    Key::parse_bind(&text).with_context(|| format!("TSIG key file {}", path.display()))
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn serve(args: ServeArgs) -> Result<ExitCode> {
    let mut zones = Vec::new();
    for path in &args.zones {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read zone file {}", path.display()))?;
        let zone = Zone::from_master(&text, None)
            .with_context(|| format!("zone file {}", path.display()))?;
        eprintln!(
            "scop dns: zone {} serial {} ({} records)",
            zone.origin(),
            zone.serial(),
            zone.len()
        );
        zones.push(zone);
    }
    let mut keys = KeyRing::default();
    for path in &args.tsig_keys {
        for key in read_keys(path)? {
            keys.insert(key);
        }
    }
    let policy = match &args.policy {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("read policy file {}", path.display()))?;
            Policy::parse(&text).with_context(|| format!("policy file {}", path.display()))?
        }
        None => {
            if !keys.is_empty() {
                eprintln!(
                    "scop dns: warning: no --policy: every TSIG key may update and transfer every zone"
                );
            }
            Policy::allow_all()
        }
    };
    let mut engine = Engine::new(zones, keys, policy)?;
    if let Some(dir) = &args.journal {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("create journal directory {}", dir.display()))?;
        let n = server::replay_journals(&mut engine, dir)
            .with_context(|| format!("replay journals in {}", dir.display()))?;
        if n > 0 {
            for z in engine.zones() {
                eprintln!(
                    "scop dns: zone {} serial {} after journal",
                    z.origin(),
                    z.serial()
                );
            }
        }
    }
    if let Some(dir) = &args.dnssec_keys {
        let origins: Vec<Name> = engine.zones().map(|z| z.origin().clone()).collect();
        for origin in origins {
            // Keys of a rollover in progress sign too (double signature).
            let retiring = dir.join("retiring");
            let mut found = load_dnssec_keys(dir, &origin)?;
            if retiring.is_dir() {
                found.extend(load_dnssec_keys(&retiring, &origin)?);
            }
            let keys: Vec<SigningKey> = found.into_iter().map(|(_, k)| k).collect();
            if keys.is_empty() {
                eprintln!(
                    "scop dns: zone {origin}: no DNSSEC key in {}, not signed",
                    dir.display()
                );
                continue;
            }
            let tags: Vec<String> = keys.iter().map(|k| k.tag().to_string()).collect();
            let mut settings = Settings::new(keys);
            settings.denial = if args.nsec {
                Denial::Nsec
            } else {
                Denial::Nsec3
            };
            let serial = engine
                .sign_zone(&origin, settings, now())
                .with_context(|| format!("sign zone {origin}"))?;
            if let Some(journal) = &args.journal {
                server::write_journal(journal, &origin, &serial)
                    .with_context(|| format!("journal of {origin}"))?;
            }
            eprintln!(
                "scop dns: zone {origin} signed ({}, keys {}), serial {}",
                if args.nsec { "NSEC" } else { "NSEC3" },
                tags.join(", "),
                serial.new_serial()
            );
        }
    }
    if args.landlock {
        // Everything it needs from the disk is in memory now.
        let plan = crate::confine::Plan {
            write: args.journal.iter().cloned().collect(),
            bind: vec![args.listen.port()],
            ..crate::confine::Plan::default()
        };
        let status = crate::confine::apply(&plan)?;
        eprintln!(
            "scop dns: landlock=\"{}\": only the journal directory is reachable",
            crate::confine::describe(&status)
        );
        if let Some(path) = &args.confine_probe {
            crate::confine::probe_read(path);
            return Ok(ExitCode::SUCCESS);
        }
    }
    let config = Config {
        journal_dir: args.journal.clone(),
        notify: args.notify.clone(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("start the async runtime")?;
    runtime.block_on(async move {
        let server = Server::bind(engine, args.listen, config)
            .await
            .with_context(|| format!("listen on {}", args.listen))?
            .with_rate_limit_exempting(
                scop_dns::rrl::RrlConfig {
                    responses_per_second: args.rrl_rate,
                    slip: args.rrl_slip,
                    ..scop_dns::rrl::RrlConfig::default()
                },
                args.rrl_exempt.clone(),
            );
        println!("listening on {}", server.local_addr()?);
        std::io::stdout().flush()?;
        server
            .run(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn keygen(args: KeygenArgs) -> Result<ExitCode> {
    let algorithm = match args.algorithm {
        AlgorithmArg::HmacSha256 => Algorithm::HmacSha256,
        AlgorithmArg::HmacSha384 => Algorithm::HmacSha384,
        AlgorithmArg::HmacSha512 => Algorithm::HmacSha512,
    };
    let mut secret = vec![0u8; algorithm.mac_len()];
    aws_lc_rs::rand::fill(&mut secret).map_err(|_| anyhow::anyhow!("no randomness available"))?;
    let key = Key::new(&args.name, algorithm, secret)?;
    let text = key.to_bind();
    match &args.out {
        Some(path) => {
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts
                .open(path)
                .with_context(|| format!("create {} (it must not exist)", path.display()))?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            eprintln!(
                "wrote TSIG key {} ({}) to {}",
                key.name(),
                key.algorithm().as_str(),
                path.display()
            );
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn update(args: UpdateArgs) -> Result<ExitCode> {
    let key = read_keys(&args.key)?
        .into_iter()
        .next()
        .context("no key in the key file")?;
    let zone = tsig::parse_name(&args.zone)?;
    let rec = &args.record;
    let name = &rec[0];
    let record = |what: &str| -> Result<_> {
        if rec.len() < 4 {
            bail!("{what} needs NAME TTL TYPE DATA");
        }
        let ttl: u32 = rec[1]
            .parse()
            .with_context(|| format!("bad TTL {:?}", rec[1]))?;
        Ok(client::parse_record(
            &zone,
            name,
            ttl,
            &rec[2],
            &rec[3..].join(" "),
        )?)
    };
    let change = match args.action {
        Action::Add => Change::Add(record("add")?),
        Action::Replace => Change::Replace(record("replace")?),
        Action::Delete => {
            let owner = client::parse_record(&zone, name, 0, "A", "127.0.0.1")?.name;
            match rec.len() {
                1 => Change::DeleteName(owner),
                2 => Change::DeleteRrset(
                    owner,
                    RecordType::from_str(&rec[1].to_ascii_uppercase())
                        .map_err(|_| anyhow::anyhow!("unknown record type {:?}", rec[1]))?,
                ),
                _ => Change::DeleteRecord(client::parse_record(
                    &zone,
                    name,
                    0,
                    &rec[1],
                    &rec[2..].join(" "),
                )?),
            }
        }
    };
    let verdict = send_update(args.server, &zone, &[change], &key)?;
    let tsig_note = tsig_note(verdict.tsig_error);
    if verdict.rcode == ResponseCode::NoError && verdict.tsig_error == 0 {
        println!("update: NOERROR");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("update: {}{tsig_note}", verdict.rcode);
        if verdict.rcode == ResponseCode::Refused {
            eprintln!(
                "the server refused: the key's policy does not allow this change, or the update was unsigned"
            );
        }
        Ok(ExitCode::from(1))
    }
}

/// Sends `changes` to `zone` on `server` (TCP) in an UPDATE signed with
/// `key`, and checks the reply's signature; returns the server's verdict.
pub(crate) fn send_update(
    server: SocketAddr,
    zone: &Name,
    changes: &[Change],
    key: &tsig::Key,
) -> Result<client::Reply> {
    let id = random_id()?;
    let (bytes, mut chain) = client::signed_update(zone, id, changes, key, now())?;
    let reply =
        exchange_tcp(server, &bytes).with_context(|| format!("send the update to {server}"))?;
    Ok(client::check_reply(&mut chain, id, &reply, now())?)
}

/// What a TSIG error code means, as a suffix for messages ("" for none).
pub(crate) fn tsig_note(error: u16) -> String {
    match error {
        0 => String::new(),
        tsig::error_code::BADSIG => " (TSIG: BADSIG, wrong secret)".into(),
        tsig::error_code::BADKEY => " (TSIG: BADKEY, unknown key or algorithm)".into(),
        tsig::error_code::BADTIME => " (TSIG: BADTIME, clocks differ)".into(),
        other => format!(" (TSIG error {other})"),
    }
}

/// The UPDATE change that makes `<selector>._domainkey.<zone>` exactly the
/// key record `txt` (what the DKIM signer publishes).
pub(crate) fn dkim_key_change(zone: &Name, selector: &str, txt: &str) -> Result<Change> {
    Ok(Change::Replace(client::parse_record(
        zone,
        &format!("{selector}._domainkey"),
        3600,
        "TXT",
        &txt_strings(txt),
    )?))
}

/// TXT data in master-file syntax: quoted character-strings of at most
/// 255 bytes each (RFC 1035 3.3.14), separated by spaces.
pub(crate) fn txt_strings(text: &str) -> String {
    text.as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A random DNS message id.
pub(crate) fn random_id() -> Result<u16> {
    let mut id = [0u8; 2];
    aws_lc_rs::rand::fill(&mut id).map_err(|_| anyhow::anyhow!("no randomness available"))?;
    Ok(u16::from_be_bytes(id))
}

/// One DNS message exchange over TCP (RFC 1035 4.2.2 framing).
pub(crate) fn exchange_tcp(server: SocketAddr, request: &[u8]) -> Result<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(&server, UPDATE_TIMEOUT)?;
    stream.set_read_timeout(Some(UPDATE_TIMEOUT))?;
    stream.set_write_timeout(Some(UPDATE_TIMEOUT))?;
    let len = u16::try_from(request.len()).context("DNS message too long")?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(request);
    stream.write_all(&framed)?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len)?;
    let n = usize::from(u16::from_be_bytes(len)).min(MAX_REPLY_BYTES);
    let mut reply = vec![0u8; n];
    stream.read_exact(&mut reply)?;
    Ok(reply)
}
