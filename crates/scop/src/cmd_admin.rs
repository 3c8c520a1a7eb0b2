//! `scop user`, `scop alias`, `scop queue`: administration of the store.
//!
//! Every command opens the store named by `--store` (or `SCOP_STORE`), by
//! default `sqlite:DATA/scop.db` with `DATA` from `--data` (or `SCOP_DATA`,
//! default `./scop-data`), the same default as `scop mail serve`. Passwords
//! are read as one line from standard input, never from the command line
//! (which other local users can see in the process list and which lands in
//! shell history).

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use scop_store::{MessageId, Store};

/// Longest password line read from standard input, in bytes.
const MAX_PASSWORD_LINE: u64 = 4096;

/// Where the store is.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Store URL: sqlite:PATH (created if missing) or postgres://USER@HOST/DB.
    /// Default: sqlite:DATA/scop.db.
    #[arg(long, env = "SCOP_STORE", global = true, value_name = "URL")]
    store: Option<String>,
    /// Data directory holding the default SQLite store (scop.db).
    #[arg(
        long,
        env = "SCOP_DATA",
        default_value = "scop-data",
        global = true,
        value_name = "DIR"
    )]
    data: PathBuf,
    /// The SQLite file holding the password hashes apart from the store
    /// (a deployment made by `scop init` keeps them in
    /// credentials/passwords.db).
    #[arg(long, env = "SCOP_CREDENTIALS", global = true, value_name = "FILE")]
    credentials: Option<PathBuf>,
}

impl StoreArgs {
    fn url(&self) -> Result<String> {
        match &self.store {
            Some(url) => Ok(url.clone()),
            None => {
                std::fs::create_dir_all(&self.data).with_context(|| {
                    format!("create the data directory {}", self.data.display())
                })?;
                Ok(format!("sqlite:{}", self.data.join("scop.db").display()))
            }
        }
    }
}

const STORE_HELP: &str = "\
Store: --store URL, or SCOP_STORE, or by default sqlite:DATA/scop.db where
DATA is --data, or SCOP_DATA, or ./scop-data. postgres://... selects PostgreSQL.
Password hashes: in the store, or in the file --credentials (SCOP_CREDENTIALS)
names. For a deployment made by scop init in DIR:
  --data DIR/data --credentials DIR/credentials/passwords.db";

/// `scop user ...`
#[derive(Debug, Args)]
#[command(after_help = STORE_HELP)]
pub struct UserArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(subcommand)]
    command: UserCommand,
}

/// Account commands.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an account. Its login is an address; its domain becomes local.
    ///
    /// The password is read as one line from standard input (never from the
    /// command line, where other users and shell history would see it).
    ///
    /// Examples:
    ///   printf '%s\n' "$PASSWORD" | scop user add alice@example.org --password-stdin
    ///   scop user add alice@example.org --password-stdin < password.txt
    #[command(verbatim_doc_comment)]
    Add {
        /// The login, e.g. alice@example.org.
        login: String,
        /// Read the password from standard input (the default and only way;
        /// the flag makes scripts explicit).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Delete an account with its addresses, forwarding, and the aliases
    /// pointing at it. Queued mail is kept.
    ///
    /// Example: scop user del alice@example.org
    #[command(alias = "delete")]
    Del {
        /// The login.
        login: String,
    },
    /// Change an account's password (read as one line from standard input).
    ///
    /// Example: printf '%s\n' "$NEW" | scop user passwd alice@example.org --password-stdin
    Passwd {
        /// The login.
        login: String,
        /// Read the password from standard input (the default and only way).
        #[arg(long)]
        password_stdin: bool,
    },
    /// List accounts: login, addresses, forwarding targets (tab-separated).
    ///
    /// Example: scop user list
    List,
    /// Give an account another address it receives at and may send from.
    ///
    /// Example: scop user address alice@example.org postmaster@example.org
    Address {
        /// The login.
        login: String,
        /// The extra address.
        address: String,
    },
    /// Set where an account's mail is forwarded (a copy stays in its
    /// mailbox); no target clears forwarding.
    ///
    /// Example: scop user forward alice@example.org alice@elsewhere.example
    Forward {
        /// The login.
        login: String,
        /// Forwarding targets.
        targets: Vec<String>,
    },
    /// Show or set an account's own sending limits on submission. Each
    /// takes a number or `default` (the server's: `scop mail serve
    /// --user-hourly-limit`, `--user-daily-limit`, `--user-hourly-recipients`,
    /// `--user-message-size`); options not given stay as they are.
    ///
    /// Examples:
    ///   scop user limits alice@example.org
    ///   scop user limits news@example.org --recipients-per-hour 20000 --messages-per-day 5000
    ///   scop user limits bob@example.org --max-size 5000000 --messages-per-hour default
    #[command(verbatim_doc_comment)]
    Limits {
        /// The login.
        login: String,
        /// Messages per hour.
        #[arg(long, value_name = "N|default")]
        messages_per_hour: Option<Limit>,
        /// Messages per day (the last 24 hours).
        #[arg(long, value_name = "N|default")]
        messages_per_day: Option<Limit>,
        /// Recipients per hour, over all the account's messages.
        #[arg(long, value_name = "N|default")]
        recipients_per_hour: Option<Limit>,
        /// Largest message, in bytes.
        #[arg(long, value_name = "BYTES|default")]
        max_size: Option<Limit>,
    },
}

/// A limit given on the command line: a number, or the server's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// This many.
    Set(u64),
    /// The server's default.
    Default,
}

impl std::str::FromStr for Limit {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Limit, String> {
        if s.eq_ignore_ascii_case("default") {
            return Ok(Limit::Default);
        }
        match s.parse::<u64>() {
            Ok(n) if i64::try_from(n).is_ok() => Ok(Limit::Set(n)),
            _ => Err(format!(
                "`{s}` is neither a number (0 to {}) nor `default`",
                i64::MAX
            )),
        }
    }
}

impl Limit {
    /// The stored value, `old` when not given.
    fn apply(given: Option<Limit>, old: Option<u64>) -> Option<u64> {
        match given {
            None => old,
            Some(Limit::Default) => None,
            Some(Limit::Set(n)) => Some(n),
        }
    }

    fn shown(v: Option<u64>) -> String {
        v.map_or_else(|| "default".to_owned(), |n| n.to_string())
    }
}

/// `scop alias ...`
#[derive(Debug, Args)]
#[command(after_help = STORE_HELP)]
pub struct AliasArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(subcommand)]
    command: AliasCommand,
}

/// Alias commands.
#[derive(Debug, Subcommand)]
pub enum AliasCommand {
    /// Add an alias. SOURCE is an address or @domain (a catch-all, used only
    /// when no account or alias matches exactly); TARGET is a local login or
    /// address, or an external address. A source with several targets
    /// delivers to all of them.
    ///
    /// Examples:
    ///   scop alias add sales@example.org alice@example.org
    ///   scop alias add @example.org alice@example.org
    ///   scop alias add team@example.org bob@elsewhere.example
    #[command(verbatim_doc_comment)]
    Add {
        /// `local@domain` or `@domain`.
        source: String,
        /// Where mail goes.
        target: String,
    },
    /// Remove an alias.
    ///
    /// Example: scop alias del sales@example.org alice@example.org
    #[command(alias = "delete")]
    Del {
        /// `local@domain` or `@domain`.
        source: String,
        /// The target to remove.
        target: String,
    },
    /// List aliases: source and target (tab-separated).
    ///
    /// Example: scop alias list
    List,
}

/// `scop queue ...`
#[derive(Debug, Args)]
#[command(after_help = STORE_HELP)]
pub struct QueueArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(subcommand)]
    command: QueueCommand,
}

/// Outbound queue commands.
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// List queued messages and the state of each recipient.
    ///
    /// Example: scop queue list
    List,
    /// Make every pending recipient of a message due now (the relay picks
    /// it up on its next pass).
    ///
    /// Example: scop queue retry 42
    Retry {
        /// The message id (from `scop queue list`).
        id: i64,
    },
    /// Remove a message from the queue; its pending recipients get no
    /// delivery and no bounce. The delivery log records the deletion.
    ///
    /// Example: scop queue delete 42
    #[command(alias = "del")]
    Delete {
        /// The message id.
        id: i64,
    },
    /// Show the delivery log of a message (also after it left the queue;
    /// the relay keeps records for `scop mail serve --delivery-log-days`,
    /// 30 by default).
    ///
    /// Example: scop queue log 42
    Log {
        /// The message id.
        id: i64,
    },
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Reads one password line from standard input, without its line ending.
pub(crate) fn read_password() -> Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("password (one line; it will be shown as you type): ");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    let mut limited = std::io::Read::take(stdin.lock(), MAX_PASSWORD_LINE);
    limited
        .read_line(&mut line)
        .context("read the password from standard input")?;
    if !line.ends_with('\n') && line.len() as u64 >= MAX_PASSWORD_LINE {
        bail!("password line longer than {MAX_PASSWORD_LINE} bytes");
    }
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        bail!(
            "no password on standard input (give it as one line, e.g. printf '%s\\n' \"$PASSWORD\" | scop user add ...)"
        );
    }
    Ok(password.to_owned())
}

pub(crate) fn block_on<T>(f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?
        .block_on(f)
}

async fn open(args: &StoreArgs) -> Result<Store> {
    let url = args.url()?;
    match &args.credentials {
        None => Store::open(&url).await,
        Some(file) => Store::open_with_credentials(&url, file).await,
    }
    .with_context(|| format!("open the store {}", shown_url(&url)))
}

/// The URL without a password.
fn shown_url(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}://{}@{}", &url[..s], user, &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// `scop user ...`
pub fn run_user(args: UserArgs) -> Result<ExitCode> {
    // Read the password before touching the store, so a missing one fails fast.
    let password = match &args.command {
        UserCommand::Add { .. } | UserCommand::Passwd { .. } => Some(read_password()?),
        _ => None,
    };
    block_on(async move {
        let store = open(&args.store).await?;
        let mut out = std::io::stdout().lock();
        match args.command {
            UserCommand::Add { login, .. } => {
                store
                    .add_user(&login, password.as_deref().unwrap_or_default())
                    .await?;
                writeln!(out, "added {login}")?;
            }
            UserCommand::Del { login } => {
                store.delete_user(&login).await?;
                writeln!(out, "deleted {login}")?;
            }
            UserCommand::Passwd { login, .. } => {
                store
                    .set_password(&login, password.as_deref().unwrap_or_default())
                    .await?;
                writeln!(out, "password changed for {login}")?;
            }
            UserCommand::List => {
                for u in store.list_users().await? {
                    let forward = if u.forward.is_empty() {
                        "-".to_owned()
                    } else {
                        u.forward.join(",")
                    };
                    writeln!(out, "{}\t{}\t{}", u.login, u.addresses.join(","), forward)?;
                }
            }
            UserCommand::Address { login, address } => {
                store.add_address(&login, &address).await?;
                writeln!(out, "{login} now has {address}")?;
            }
            UserCommand::Forward { login, targets } => {
                store.set_forward(&login, &targets).await?;
                if targets.is_empty() {
                    writeln!(out, "forwarding cleared for {login}")?;
                } else {
                    writeln!(out, "{login} forwards to {}", targets.join(", "))?;
                }
            }
            UserCommand::Limits {
                login,
                messages_per_hour,
                messages_per_day,
                recipients_per_hour,
                max_size,
            } => {
                let Some(old) = store.sending_limits(&login).await? else {
                    bail!("no account {login}");
                };
                let new = scop_store::SendingLimits {
                    messages_per_hour: Limit::apply(messages_per_hour, old.messages_per_hour),
                    messages_per_day: Limit::apply(messages_per_day, old.messages_per_day),
                    recipients_per_hour: Limit::apply(recipients_per_hour, old.recipients_per_hour),
                    max_message_size: Limit::apply(max_size, old.max_message_size),
                };
                if new != old {
                    store.set_sending_limits(&login, new).await?;
                }
                writeln!(
                    out,
                    "{login}\tmessages-per-hour={}\tmessages-per-day={}\trecipients-per-hour={}\tmax-size={}",
                    Limit::shown(new.messages_per_hour),
                    Limit::shown(new.messages_per_day),
                    Limit::shown(new.recipients_per_hour),
                    Limit::shown(new.max_message_size)
                )?;
            }
        }
        store.close().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// `scop alias ...`
pub fn run_alias(args: AliasArgs) -> Result<ExitCode> {
    block_on(async move {
        let store = open(&args.store).await?;
        let mut out = std::io::stdout().lock();
        match args.command {
            AliasCommand::Add { source, target } => {
                store.add_alias(&source, &target).await?;
                writeln!(out, "added {source} -> {target}")?;
            }
            AliasCommand::Del { source, target } => {
                store.delete_alias(&source, &target).await?;
                writeln!(out, "deleted {source} -> {target}")?;
            }
            AliasCommand::List => {
                for (source, target) in store.list_aliases().await? {
                    writeln!(out, "{source}\t{target}")?;
                }
            }
        }
        store.close().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// `scop queue ...`
pub fn run_queue(args: QueueArgs) -> Result<ExitCode> {
    block_on(async move {
        let store = open(&args.store).await?;
        let mut out = std::io::stdout().lock();
        let now = now();
        match args.command {
            QueueCommand::List => {
                let queue = store.list_queue().await?;
                for m in &queue {
                    let sender = if m.sender.is_empty() { "<>" } else { &m.sender };
                    let lease = if m.lease_until > now {
                        format!("  leased until {}", utc(m.lease_until))
                    } else {
                        String::new()
                    };
                    writeln!(
                        out,
                        "{}  from {}  {} bytes  queued {}  expires {}{}",
                        m.id,
                        sender,
                        m.size,
                        utc(m.created),
                        utc(m.expires),
                        lease
                    )?;
                    for r in &m.recipients {
                        let next = match r.state {
                            scop_store::RecipientState::Pending => {
                                format!("  next {}", utc(r.next_attempt))
                            }
                            _ => String::new(),
                        };
                        let next = if r.delay_notified {
                            format!("{next}  delay notice sent")
                        } else {
                            next
                        };
                        let detail = if r.last_detail.is_empty() {
                            String::new()
                        } else {
                            format!("  {}", one_line(&r.last_detail))
                        };
                        writeln!(
                            out,
                            "  {}  {}  attempts {}{}{}",
                            r.rcpt, r.state, r.attempts, next, detail
                        )?;
                    }
                }
                writeln!(out, "{} message(s) queued", queue.len())?;
            }
            QueueCommand::Retry { id } => {
                if !store.retry_now(MessageId(id), now).await? {
                    bail!("no message {id} with pending recipients in the queue");
                }
                writeln!(out, "message {id} is due now")?;
            }
            QueueCommand::Delete { id } => {
                if !store.delete_message(MessageId(id), now).await? {
                    bail!("no message {id} in the queue");
                }
                writeln!(out, "deleted message {id}")?;
            }
            QueueCommand::Log { id } => {
                let log = store.delivery_log(MessageId(id)).await?;
                if log.is_empty() {
                    bail!("no delivery records for message {id}");
                }
                for r in log {
                    writeln!(
                        out,
                        "{}  {}  {}  {}",
                        utc(r.at),
                        r.rcpt,
                        r.outcome,
                        one_line(&r.detail)
                    )?;
                }
            }
        }
        store.close().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// A detail text on one line (control characters shown as spaces).
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SSZ` (proleptic Gregorian, UTC).
fn utc(t: i64) -> String {
    let d = scop_mime::DateTime::from_unix_timestamp(t);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z",
        d.year, d.month, d.day, d.hour, d.minute, d.second
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats() {
        assert_eq!(utc(0), "1970-01-01 00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00Z");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20Z");
        assert_eq!(utc(-1), "1969-12-31 23:59:59Z");
    }

    #[test]
    fn urls_lose_their_password() {
        assert_eq!(shown_url("postgres://u:secret@h/db"), "postgres://u@h/db");
        assert_eq!(shown_url("sqlite:x.db"), "sqlite:x.db");
    }
}
