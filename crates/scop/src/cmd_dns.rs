//! `scop dns`: the authoritative primary (`serve`), TSIG keys
//! (`tsig-keygen`) and our own RFC 2136 update client (`update`).

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use scop_dns::client::{self, Change};
use scop_dns::hickory_proto::op::ResponseCode;
use scop_dns::hickory_proto::rr::RecordType;
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
    /// the secondaries given with --notify.
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
    }
}

fn read_keys(path: &Path) -> Result<Vec<Key>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("read TSIG key file {}", path.display()))?;
    Key::parse_bind(&text).with_context(|| format!("TSIG key file {}", path.display()))
}

fn now() -> u64 {
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
            .with_context(|| format!("listen on {}", args.listen))?;
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
    let mut id = [0u8; 2];
    aws_lc_rs::rand::fill(&mut id).map_err(|_| anyhow::anyhow!("no randomness available"))?;
    let id = u16::from_be_bytes(id);
    let (bytes, mut chain) = client::signed_update(&zone, id, &[change], &key, now())?;
    let reply = exchange_tcp(args.server, &bytes)
        .with_context(|| format!("send the update to {}", args.server))?;
    let verdict = client::check_reply(&mut chain, id, &reply, now())?;
    let tsig_note = match verdict.tsig_error {
        0 => String::new(),
        tsig::error_code::BADSIG => " (TSIG: BADSIG, wrong secret)".into(),
        tsig::error_code::BADKEY => " (TSIG: BADKEY, unknown key or algorithm)".into(),
        tsig::error_code::BADTIME => " (TSIG: BADTIME, clocks differ)".into(),
        other => format!(" (TSIG error {other})"),
    };
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

fn exchange_tcp(server: SocketAddr, request: &[u8]) -> Result<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(&server, UPDATE_TIMEOUT)?;
    stream.set_read_timeout(Some(UPDATE_TIMEOUT))?;
    stream.set_write_timeout(Some(UPDATE_TIMEOUT))?;
    let mut framed = (request.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(request);
    stream.write_all(&framed)?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len)?;
    let n = usize::from(u16::from_be_bytes(len)).min(MAX_REPLY_BYTES);
    let mut reply = vec![0u8; n];
    stream.read_exact(&mut reply)?;
    Ok(reply)
}
