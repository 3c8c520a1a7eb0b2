//! `scop`: the one binary of SCoP. Each subcommand is a thin shell over the
//! sans-IO libraries of the workspace.
#![forbid(unsafe_code)]

mod cmd_admin;
mod cmd_auth;
mod cmd_compartment;
mod cmd_dkim;
mod cmd_dns;
mod cmd_hamlet;
mod cmd_init;
mod cmd_mail;
mod cmd_mesh;
mod cmd_mime;
mod cmd_spam;
mod cmd_tls;
mod cmd_up;
mod config;
mod confine;
mod progress;
mod zonefile;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// SCoP: a secure-by-design mail stack.
///
/// `scop init` makes a deployment for a domain and `scop up` runs it; the
/// other subcommands run one service, administer accounts and the queue, or
/// use one protocol library (MIME, DKIM, SPF, DMARC, DNS, spam filter).
#[derive(Debug, Parser)]
#[command(name = "scop", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a deterministic corpus of varied emails (Hamlet), one file per message.
    ///
    /// Example: scop hamlet --count 10000 --seed 7 --out corpus/
    Hamlet(cmd_hamlet::HamletArgs),
    /// Generate Hamlet messages in memory and prove each one round-trips through
    /// the MIME parser and encoder (the project's main self-test).
    ///
    /// Example: scop selfcheck --count 100000
    Selfcheck(cmd_hamlet::SelfcheckArgs),
    /// Parse, inspect and round-trip-check email messages.
    #[command(subcommand)]
    Mime(cmd_mime::MimeCommand),
    /// Bayesian spam filter: train a model, classify messages, evaluate.
    ///
    /// Example: scop spam train --ham ham/ --spam spam/ --model spam.model
    #[command(subcommand)]
    Spam(cmd_spam::SpamCommand),
    /// DKIM (RFC 6376, RFC 8463): generate keys, sign and verify messages.
    ///
    /// Example: scop dkim sign --domain example.org --selector s1 --key s1.pem < msg > signed
    #[command(subcommand)]
    Dkim(cmd_dkim::DkimCommand),
    /// SPF (RFC 7208): evaluate a client IP / MAIL FROM / HELO against DNS data.
    ///
    /// Example: scop spf check --ip 192.0.2.1 --mail-from a@example.com --helo mx.example.com --dns-zone example.com.zone
    #[command(subcommand)]
    Spf(cmd_auth::SpfCommand),
    /// SPF, DKIM and DMARC together: print the Authentication-Results header.
    ///
    /// Example: scop auth check --ip 192.0.2.1 --mail-from a@example.com --helo mx.example.com --dns-zone example.com.zone < message.eml
    #[command(subcommand)]
    Auth(cmd_auth::AuthCommand),
    /// DNS: an authoritative primary with TSIG-signed updates, journal, AXFR/IXFR, NOTIFY.
    ///
    /// Example: scop dns serve --zone example.org.zone --listen 127.0.0.1:5353 --tsig-key dkim.key
    #[command(subcommand)]
    Dns(cmd_dns::DnsCommand),
    /// The mail service: MX, submission, relay queue and local delivery.
    ///
    /// Example: scop mail serve --hostname mail.example.org
    #[command(subcommand)]
    Mail(cmd_mail::MailCommand),
    /// Accounts: add, delete, change passwords, list (passwords come from stdin).
    ///
    /// Example: printf '%s\n' "$PASSWORD" | scop user add alice@example.org --password-stdin
    User(cmd_admin::UserArgs),
    /// Aliases and catch-alls: add, delete, list.
    ///
    /// Example: scop alias add sales@example.org alice@example.org
    Alias(cmd_admin::AliasArgs),
    /// The outbound queue: list, retry, delete, delivery log.
    ///
    /// Example: scop queue list
    Queue(cmd_admin::QueueArgs),
    /// Create a deployment for a domain: configuration, DKIM, TSIG and TLS
    /// keys, the zone, and the first account.
    ///
    /// Example: scop init --domain example.org --hostname mail.example.org --ip 192.0.2.10
    Init(cmd_init::InitArgs),
    /// Run a deployment made by `scop init`: each compartment in its own
    /// process, restarted when it exits, stopped by SIGTERM.
    ///
    /// Example: scop up --dir scop
    Up(cmd_up::UpArgs),
    /// TLS certificates of the public listeners: `scop tls acme` gets one
    /// from an ACME CA (Let's Encrypt by default) with DNS-01 challenges
    /// served by the deployment's own primary.
    ///
    /// Example: scop tls acme --dir scop --contact mailto:postmaster@example.org
    #[command(subcommand)]
    Tls(cmd_tls::TlsCommand),
    /// The internal CA and the compartments' mesh certificates of a
    /// deployment: show them, rotate them
    #[command(subcommand)]
    Mesh(cmd_mesh::MeshCommand),
    /// Show whether a deployment's supervisor and compartments run.
    ///
    /// Example: scop status --dir scop
    Status(cmd_up::StatusArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Hamlet(args) => cmd_hamlet::hamlet(args),
        Command::Selfcheck(args) => cmd_hamlet::selfcheck(args),
        Command::Mime(cmd) => cmd_mime::run(cmd),
        Command::Spam(cmd) => cmd_spam::run(cmd),
        Command::Dkim(cmd) => cmd_dkim::run(cmd),
        Command::Spf(cmd) => cmd_auth::run_spf(cmd),
        Command::Auth(cmd) => cmd_auth::run_auth(cmd),
        Command::Dns(cmd) => cmd_dns::run(cmd),
        Command::Mail(cmd) => cmd_mail::run(cmd),
        Command::User(args) => cmd_admin::run_user(args),
        Command::Alias(args) => cmd_admin::run_alias(args),
        Command::Queue(args) => cmd_admin::run_queue(args),
        Command::Init(args) => cmd_init::run(args),
        Command::Up(args) => cmd_up::up(args),
        Command::Tls(cmd) => cmd_tls::run(cmd),
        Command::Mesh(cmd) => cmd_mesh::run(cmd),
        Command::Status(args) => cmd_up::status(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("scop: error: {err:#}");
            ExitCode::from(2)
        }
    }
}
