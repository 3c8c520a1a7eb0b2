//! `scop spf check` and `scop auth check`: SPF (scop-spf), DKIM
//! (scop-dkim) and DMARC (scop-dmarc) from the command line, with DNS data
//! from RFC 1035 master files (`--dns-zone`, see [`crate::zonefile`]) or,
//! without them, from the validating resolver.

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use std::hash::{BuildHasher, Hasher};
use std::io::Read;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::zonefile::Zone;

/// Largest message read from standard input.
const MAX_MESSAGE_BYTES: u64 = 256 << 20;

#[derive(Debug, Subcommand)]
pub enum SpfCommand {
    /// Evaluate SPF (RFC 7208) for a client IP, MAIL FROM and HELO. The
    /// first word printed is the result, then the Received-SPF header.
    ///
    /// Example: scop spf check --ip 192.0.2.1 --mail-from a@example.com
    /// --helo mx.example.com --dns-zone example.com.zone
    Check(SpfCheckArgs),
}

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Check SPF, every DKIM signature and DMARC for the message on
    /// standard input and print the Authentication-Results header (the
    /// DMARC disposition is in the dmarc result's comment, `dis=`).
    ///
    /// Example: scop auth check --ip 192.0.2.1 --mail-from a@example.com
    /// --helo mx.example.com --dns-zone example.com.zone < message.eml
    Check(AuthCheckArgs),
}

#[derive(Debug, Args)]
pub struct SpfCheckArgs {
    #[command(flatten)]
    envelope: Envelope,
}

#[derive(Debug, Args)]
pub struct AuthCheckArgs {
    #[command(flatten)]
    envelope: Envelope,
    /// The authserv-id written in Authentication-Results.
    #[arg(long, default_value = "scop")]
    authserv_id: String,
    /// DMARC policy discovery by the DMARCbis DNS tree walk.
    #[arg(long)]
    dmarcbis: bool,
    /// The pct sample, 0-99 (random when not given): the policy applies
    /// when the sample is below the record's pct.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..100))]
    pct_sample: Option<u8>,
}

#[derive(Debug, Args)]
struct Envelope {
    /// The SMTP client's IP address.
    #[arg(long)]
    ip: IpAddr,
    /// The MAIL FROM address (empty for a bounce).
    #[arg(long, default_value = "")]
    mail_from: String,
    /// The HELO/EHLO name.
    #[arg(long)]
    helo: String,
    /// An RFC 1035 master file with the DNS data to use (repeatable);
    /// without it, the validating resolver asks the DNS.
    #[arg(long = "dns-zone", value_name = "FILE")]
    dns_zone: Vec<PathBuf>,
    #[command(flatten)]
    dns: crate::cmd_mail::ResolverArgs,
    /// The receiving host's name (Received-SPF `receiver=`, the `%{r}`
    /// macro).
    #[arg(long, default_value = "localhost")]
    receiver: String,
    /// The current time as Unix seconds (default: the clock), for DKIM
    /// `t=`/`x=` and the SPF `%{t}` macro.
    #[arg(long)]
    now: Option<u64>,
}

/// DNS data for the three checks: what the SPF, DMARC and DKIM libraries
/// ask.
trait Dns: scop_spf::Resolver + scop_dmarc::Resolver {
    fn dkim_txt(&self, name: &str) -> scop_dkim::DnsAnswer;
}

impl Dns for Zone {
    fn dkim_txt(&self, name: &str) -> scop_dkim::DnsAnswer {
        self.dkim(name)
    }
}

impl Dns for scop_mail::verifier::BlockingDns<'_> {
    fn dkim_txt(&self, name: &str) -> scop_dkim::DnsAnswer {
        scop_mail::verifier::BlockingDns::dkim_txt(self, name)
    }
}

impl Envelope {
    /// Runs `f` with the master files' data, or with the resolver.
    fn with_dns<T>(&self, f: impl FnOnce(&dyn Dns) -> T) -> Result<T> {
        if !self.dns_zone.is_empty() {
            let mut zone = Zone::default();
            for path in &self.dns_zone {
                zone.load(path)?;
            }
            for w in &zone.warnings {
                eprintln!("scop: warning: {w}");
            }
            return Ok(f(&zone));
        }
        crate::cmd_mail::with_resolver(&self.dns, "the data with --dns-zone FILE", |dns| f(dns))
    }

    fn now(&self) -> u64 {
        self.now.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        })
    }

    fn spf(&self, dns: &dyn Dns) -> (scop_spf::Request, scop_spf::Output) {
        let request =
            scop_spf::Request::mail_from(self.ip, self.mail_from.clone(), self.helo.clone());
        let options = scop_spf::Options {
            now_unix: self.now(),
            receiver_host: self.receiver.clone(),
            ..scop_spf::Options::default()
        };
        let output = scop_spf::check_host_with(&Spf(dns), request.clone(), options);
        (request, output)
    }
}

pub fn run_spf(cmd: SpfCommand) -> Result<ExitCode> {
    match cmd {
        SpfCommand::Check(args) => {
            let (request, output) = args.envelope.with_dns(|dns| args.envelope.spf(dns))?;
            println!("{}", output.result);
            println!(
                "{}",
                scop_spf::ReceivedSpf::new(&request, &output, &args.envelope.receiver)
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub fn run_auth(cmd: AuthCommand) -> Result<ExitCode> {
    match cmd {
        AuthCommand::Check(args) => auth_check(args),
    }
}

/// A number in 0..100 from the standard library's per-process random
/// hash keys (no RNG crate needed for one sample).
fn random_sample() -> u8 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos().into()),
    );
    (h.finish() % 100) as u8
}

fn auth_check(args: AuthCheckArgs) -> Result<ExitCode> {
    let env = &args.envelope;
    let mut message = Vec::new();
    std::io::stdin()
        .take(MAX_MESSAGE_BYTES + 1)
        .read_to_end(&mut message)
        .context("read the message from standard input")?;
    if message.len() as u64 > MAX_MESSAGE_BYTES {
        bail!("message larger than {MAX_MESSAGE_BYTES} bytes");
    }
    let sample = args.pct_sample.unwrap_or_else(random_sample);
    let options = scop_dmarc::Options::with_sample(sample).tree_walk(args.dmarcbis);
    let (request, spf, dkim, dmarc) = env.with_dns(|dns| {
        let (request, spf) = env.spf(dns);
        let dkim =
            scop_dkim::verify_message(&message, scop_dkim::VerifyOptions::at(env.now()), |name| {
                dns.dkim_txt(name)
            });
        let (_, dmarc) = scop_dmarc::check_message(
            &Dmarc(dns),
            &message,
            Some(scop_dmarc::SpfAuth::from_spf(&request, &spf)),
            &dkim,
            options,
        );
        (request, spf, dkim, dmarc)
    })?;
    let mut ar = scop_dmarc::AuthenticationResults::new(&args.authserv_id)
        .push(scop_dmarc::MethodResult::spf(&request, &spf));
    if dkim.iter().all(|d| d.result == scop_dkim::DkimResult::None) {
        ar = ar.push(scop_dmarc::MethodResult::new("dkim", "none"));
    } else {
        let bs = scop_dkim::signature_b_values(&message);
        for (i, d) in dkim.iter().enumerate() {
            let b = bs.get(i).and_then(|b| b.as_deref());
            ar = ar.push(scop_dmarc::MethodResult::dkim(d, b));
        }
    }
    ar = ar.push(scop_dmarc::MethodResult::dmarc(&dmarc));
    println!("{ar}");
    Ok(ExitCode::SUCCESS)
}

/// `&dyn Dns` seen as the SPF library's resolver.
struct Spf<'a>(&'a dyn Dns);

impl scop_spf::Resolver for Spf<'_> {
    fn lookup(&self, q: &scop_spf::Query) -> scop_spf::DnsAnswer {
        scop_spf::Resolver::lookup(self.0, q)
    }
}

/// `&dyn Dns` seen as the DMARC library's resolver.
struct Dmarc<'a>(&'a dyn Dns);

impl scop_dmarc::Resolver for Dmarc<'_> {
    fn lookup(&self, q: &scop_dmarc::Query) -> scop_dmarc::DnsAnswer {
        scop_dmarc::Resolver::lookup(self.0, q)
    }
}
