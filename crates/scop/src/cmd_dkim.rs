//! `scop dkim keygen|sign|verify`: DKIM keys, signing and verification
//! (scop-dkim) from the command line.

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use scop_dkim::{
    Canonicalization, DkimResult, DnsAnswer, KeyKind, Signer, SigningKey, VerifyOptions,
    sign_message, verify_message,
};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// Largest message read from standard input.
const MAX_MESSAGE_BYTES: u64 = 256 << 20;

/// Longest character-string of a TXT record (RFC 1035 section 3.3.14).
const TXT_STRING_MAX: usize = 255;

#[derive(Debug, Subcommand)]
pub enum DkimCommand {
    /// Generate a private key (PKCS#8 PEM, mode 0600) and print the TXT
    /// record to publish.
    ///
    /// Example: scop dkim keygen --algorithm ed25519 --domain example.com
    /// --selector ed1 --out ed1.pem
    Keygen(KeygenArgs),
    /// Sign the message on standard input with one or more keys and write
    /// the signed message to standard output (the DKIM-Signature fields
    /// first). RSA keys sign rsa-sha256, Ed25519 keys ed25519-sha256.
    ///
    /// Example: scop dkim sign --domain example.com --selector rsa1 --key
    /// rsa1.pem --key ed1.pem < message.eml > signed.eml (with two keys,
    /// give --selector twice, in the same order)
    Sign(SignArgs),
    /// Verify every DKIM-Signature of the message on standard input, with
    /// the key records given on the command line, or else from the DNS
    /// through the validating resolver. Prints
    /// one line per signature: result, d=, s=, a=, then the reason. Exit
    /// status 0 when at least one signature passes.
    ///
    /// Example: scop dkim verify --dns-txt "rsa1._domainkey.example.com=v=DKIM1; k=rsa; p=..." < signed.eml
    Verify(VerifyArgs),
    /// Rotate the DKIM keys of a deployment made by `scop init`: new
    /// RSA-2048 and Ed25519 keys under fresh selectors, published to the
    /// domain's primary with the signer's TSIG key, then used for signing
    /// (a running `scop up` restarts the mail compartment at once). The
    /// old selectors stay published, so mail already sent still verifies;
    /// delete them later with `scop dns update ... delete SELECTOR._domainkey TXT`.
    ///
    /// Example: scop dkim rotate --dir scop
    Rotate(RotateArgs),
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    /// The deployment directory (from `scop init`).
    #[arg(long, default_value = "scop", env = "SCOP_DIR")]
    dir: PathBuf,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Algorithm {
    Rsa2048,
    Rsa3072,
    Rsa4096,
    Ed25519,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Key algorithm.
    #[arg(long, value_enum, default_value = "rsa2048")]
    algorithm: Algorithm,
    /// Signing domain (d=).
    #[arg(long)]
    domain: String,
    /// Selector (s=).
    #[arg(long)]
    selector: String,
    /// Where to write the private key; an existing file is not overwritten.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Args)]
pub struct SignArgs {
    /// Signing domain (d=).
    #[arg(long)]
    domain: String,
    /// Selector (s=); once, or once per --key.
    #[arg(long, required = true)]
    selector: Vec<String>,
    /// Private key file (PKCS#8 or PKCS#1 PEM); repeat to dual-sign.
    #[arg(long, required = true)]
    key: Vec<PathBuf>,
    /// Header/body canonicalization.
    #[arg(long, default_value = "relaxed/relaxed")]
    canonicalization: String,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A key record, `NAME=VALUE` (NAME is `selector._domainkey.domain`);
    /// repeat for several. Names not given are answered NXDOMAIN.
    #[arg(long = "dns-txt", value_name = "NAME=VALUE")]
    dns_txt: Vec<String>,
    /// An RFC 1035 master file to answer key queries from; repeat for
    /// several. `--dns-txt` records are consulted first.
    #[arg(long = "dns-zone", value_name = "FILE")]
    dns_zone: Vec<std::path::PathBuf>,
    /// Accept rsa-sha1 signatures as pass (they are `policy` otherwise).
    #[arg(long)]
    accept_rsa_sha1: bool,
    /// Without --dns-txt and --dns-zone, keys come from the DNS through
    /// the validating resolver.
    #[command(flatten)]
    dns: crate::cmd_mail::ResolverArgs,
}

pub fn run(cmd: DkimCommand) -> Result<ExitCode> {
    match cmd {
        DkimCommand::Keygen(args) => keygen(args),
        DkimCommand::Sign(args) => sign(args),
        DkimCommand::Verify(args) => verify(args),
        DkimCommand::Rotate(args) => rotate(args),
    }
}

fn read_stdin() -> Result<Vec<u8>> {
    let mut message = Vec::new();
    std::io::stdin()
        .take(MAX_MESSAGE_BYTES + 1)
        .read_to_end(&mut message)
        .context("read the message from standard input")?;
    if message.len() as u64 > MAX_MESSAGE_BYTES {
        bail!("message larger than {MAX_MESSAGE_BYTES} bytes");
    }
    Ok(message)
}

fn keygen(args: KeygenArgs) -> Result<ExitCode> {
    let kind = match args.algorithm {
        Algorithm::Rsa2048 => KeyKind::Rsa2048,
        Algorithm::Rsa3072 => KeyKind::Rsa3072,
        Algorithm::Rsa4096 => KeyKind::Rsa4096,
        Algorithm::Ed25519 => KeyKind::Ed25519,
    };
    let key = SigningKey::generate(kind)?;
    // Validates domain and selector before anything is written.
    let signer = Signer::new(key, &args.domain, &args.selector)?;
    let pem = signer.key().to_pkcs8_pem()?;
    write_private(&args.out, pem.as_bytes())?;
    let txt = signer.key().dns_txt()?;
    let strings: Vec<String> = txt
        .as_bytes()
        .chunks(TXT_STRING_MAX)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect();
    println!(
        "{}._domainkey.{}. IN TXT ( {} )",
        args.selector.to_ascii_lowercase(),
        args.domain.trim_end_matches('.').to_ascii_lowercase(),
        strings.join(" ")
    );
    Ok(ExitCode::SUCCESS)
}

fn write_private(path: &PathBuf, data: &[u8]) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("create {} (it must not exist)", path.display()))?;
    file.write_all(data)?;
    file.sync_all()?;
    Ok(())
}

fn parse_canon(s: &str) -> Result<(Canonicalization, Canonicalization)> {
    let one = |s: &str| match s {
        "simple" => Ok(Canonicalization::Simple),
        "relaxed" => Ok(Canonicalization::Relaxed),
        other => bail!("unknown canonicalization {other:?} (simple or relaxed)"),
    };
    match s.split_once('/') {
        Some((h, b)) => Ok((one(h)?, one(b)?)),
        None => Ok((one(s)?, Canonicalization::Simple)),
    }
}

fn sign(args: SignArgs) -> Result<ExitCode> {
    let (h, b) = parse_canon(&args.canonicalization)?;
    if args.selector.len() != 1 && args.selector.len() != args.key.len() {
        bail!("give one --selector, or one per --key");
    }
    let mut signers = Vec::new();
    for (i, path) in args.key.iter().enumerate() {
        let pem =
            std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        let key = SigningKey::from_pem(&pem).with_context(|| format!("{}", path.display()))?;
        let selector = args.selector.get(i).unwrap_or(&args.selector[0]);
        signers.push(Signer::new(key, &args.domain, selector)?.with_canonicalization(h, b));
    }
    let message = read_stdin()?;
    let signed = sign_message(&signers, &message, crate::cmd_dns::now())?;
    let mut out = std::io::stdout().lock();
    out.write_all(&signed)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn verify(args: VerifyArgs) -> Result<ExitCode> {
    let mut records: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for entry in &args.dns_txt {
        let (name, value) = entry
            .split_once('=')
            .with_context(|| format!("--dns-txt {entry:?}: expected NAME=VALUE"))?;
        records
            .entry(name.trim().trim_end_matches('.').to_ascii_lowercase())
            .or_default()
            .push(value.as_bytes().to_vec());
    }
    let mut zone = crate::zonefile::Zone::default();
    for path in &args.dns_zone {
        zone.load(path)?;
    }
    let message = read_stdin()?;
    let mut options = VerifyOptions::at(crate::cmd_dns::now());
    options.accept_rsa_sha1 = args.accept_rsa_sha1;
    let results = if args.dns_txt.is_empty() && args.dns_zone.is_empty() {
        crate::cmd_mail::with_resolver(&args.dns, "the keys with --dns-txt / --dns-zone", |live| {
            verify_message(&message, options, |name| live.dkim_txt(name))
        })?
    } else {
        verify_message(&message, options, |name| match records.get(name) {
            Some(txt) => DnsAnswer::Txt(txt.clone()),
            None if !args.dns_zone.is_empty() => zone.dkim(name),
            None => DnsAnswer::NxDomain,
        })
    };
    let mut any_pass = false;
    for r in &results {
        any_pass |= r.result == DkimResult::Pass;
        let mut flags = Vec::new();
        if r.flags.weak_rsa_sha1 {
            flags.push("weak-rsa-sha1");
        }
        if r.flags.unsigned_trailing_content {
            flags.push("unsigned-trailing-content");
        } else if r.flags.body_length_limited {
            flags.push("body-length-limited");
        }
        if r.flags.testing {
            flags.push("testing");
        }
        println!(
            "{} d={} s={} a={} ({}){}",
            r.result,
            r.domain.as_deref().unwrap_or("-"),
            r.selector.as_deref().unwrap_or("-"),
            r.algorithm.map_or("-", |a| a.as_str()),
            r.reason,
            if flags.is_empty() {
                String::new()
            } else {
                format!(" [{}]", flags.join(","))
            }
        );
    }
    Ok(if any_pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn rotate(args: RotateArgs) -> Result<ExitCode> {
    let dir = std::path::absolute(&args.dir)
        .with_context(|| format!("resolve {}", args.dir.display()))?;
    let mut config = crate::config::Config::load(&dir)?;
    let (year, month, _) = crate::cmd_init::civil_date(crate::cmd_dns::now());
    let (keys, records) = crate::cmd_init::new_dkim_keys(&dir, &config.domain, year, month)?;
    let names: Vec<String> = keys.iter().map(|k| k.selector.clone()).collect();
    match (&config.mail.dkim_publish, &config.mail.dkim_tsig_key) {
        (Some(server), Some(key_file)) => {
            let server: std::net::SocketAddr = server
                .parse()
                .with_context(|| format!("dkim_publish {server:?} in scop.toml"))?;
            let key = crate::cmd_dns::read_keys(&crate::config::resolve(&dir, key_file))?
                .into_iter()
                .next()
                .context("no key in the signer's TSIG key file")?;
            let zone = scop_dns::tsig::parse_name(&config.domain)?;
            let mut changes = Vec::new();
            for (selector, txt) in &records {
                changes.push(crate::cmd_dns::dkim_key_change(&zone, selector, txt)?);
            }
            let verdict = crate::cmd_dns::send_update(server, &zone, &changes, &key)
                .context("publish the new keys (the configuration is unchanged)")?;
            if verdict.rcode != scop_dns::hickory_proto::op::ResponseCode::NoError
                || verdict.tsig_error != 0
            {
                bail!(
                    "the primary refused the new keys: {}{} (the configuration is unchanged)",
                    verdict.rcode,
                    crate::cmd_dns::tsig_note(verdict.tsig_error)
                );
            }
            println!("published {} to {server}", names.join(", "));
        }
        _ => {
            println!("publish these records before the mail compartment restarts:");
            for (selector, txt) in &records {
                println!(
                    "{selector}._domainkey.{}. IN TXT ( {} )",
                    config.domain,
                    crate::cmd_dns::txt_strings(txt)
                );
            }
        }
    }
    let old: Vec<String> = config
        .mail
        .dkim
        .iter()
        .map(|k| k.selector.clone())
        .collect();
    config.mail.dkim = keys;
    crate::cmd_init::write_file(
        &crate::config::Config::path(&dir),
        config.file_text()?.as_bytes(),
        0o644,
    )?;
    println!(
        "signing with {} from now on; {} stay published for mail in transit",
        names.join(", "),
        old.join(", ")
    );
    // The signer holds the keys (or, in one process, the mail service).
    let holder = if config.mail.mesh.is_some() {
        "signer"
    } else {
        "mail"
    };
    if crate::cmd_up::restart_compartment(&dir, holder) {
        println!("the supervisor is restarting the {holder} compartment");
    } else {
        println!("no running supervisor: the keys take effect at the next `scop up`");
    }
    Ok(ExitCode::SUCCESS)
}
