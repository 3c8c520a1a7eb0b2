//! Two mail domains on loopback, each with its own store, mailboxes, MX,
//! submission listeners and relay, and the swaks peer.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use scop_mail::relay::{RetryPolicy, Routes};
use scop_mail::service::{self, MailConfig, Running};
use scop_store::Store;

pub struct Domain {
    pub name: String,
    pub dir: PathBuf,
    pub store: Store,
    pub running: Running,
    /// The MX's certificate (PEM).
    pub cert: String,
}

impl Domain {
    pub fn mx(&self) -> SocketAddr {
        self.running.mx.unwrap()
    }
    pub fn submission(&self) -> SocketAddr {
        self.running.submission.unwrap()
    }
    pub fn submissions(&self) -> SocketAddr {
        self.running.submissions.unwrap()
    }
    pub fn maildir(&self, login: &str) -> PathBuf {
        self.dir
            .join("mail")
            .join(login)
            .join("Maildir")
            .join("new")
    }
    /// Messages in `login`'s Maildir (once every message acknowledged
    /// so far has left the delivery journal).
    pub fn messages(&self, login: &str) -> Vec<Vec<u8>> {
        assert!(self.running.drain(Duration::from_secs(30)));
        read_all(&self.maildir(login))
    }
    /// Messages in `login`'s Junk folder.
    pub fn junk(&self, login: &str) -> Vec<Vec<u8>> {
        assert!(self.running.drain(Duration::from_secs(30)));
        let dir = self.dir.join("mail").join(login).join("Maildir");
        read_all(&dir.join(".Junk").join("new"))
    }

    /// Waits until `login` has `n` messages (or fails after `secs`).
    pub async fn wait_messages(&self, login: &str, n: usize, secs: u64) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let m = self.messages(login);
            if m.len() >= n {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "{login} has {} messages, expected {n}",
                m.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn read_all(dir: &Path) -> Vec<Vec<u8>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "scop-mail-{tag}-{}-{}",
        std::process::id(),
        scop_mail::queue_id()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub struct Setup {
    pub routes: Routes,
    pub greeting_delay: Duration,
    pub lifetime_secs: i64,
    pub retry: RetryPolicy,
    pub per_ip: usize,
    pub idle_timeout: Duration,
    pub message_size: u64,
    pub spam: Option<scop_mail::service::SpamConfig>,
    pub verifier: Option<scop_mail::verifier::Verifier>,
    pub dkim: Vec<(String, scop_dkim::Signer)>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            routes: Routes::default(),
            greeting_delay: Duration::ZERO,
            lifetime_secs: 5 * 86_400,
            retry: RetryPolicy::default(),
            per_ip: 50,
            idle_timeout: Duration::from_secs(20),
            message_size: 10 * 1024 * 1024,
            spam: None,
            verifier: None,
            dkim: Vec::new(),
        }
    }
}

/// A domain `name` with users `(login, password)`.
pub async fn domain(name: &str, users: &[(&str, &str)], setup: Setup) -> Domain {
    let dir = temp_dir(name);
    let store = Store::open(&format!("sqlite:{}", dir.join("scop.db").display()))
        .await
        .unwrap();
    store.add_domain(name).await.unwrap();
    for (login, pw) in users {
        store.add_user(login, pw).await.unwrap();
    }
    let hostname = format!("mail.{name}");
    let (cert, key) = scop_mail::tls::self_signed(std::slice::from_ref(&hostname)).unwrap();
    let tls = scop_mail::tls::server_config(cert.as_bytes(), key.as_bytes()).unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let running = service::start(MailConfig {
        hostname,
        store: store.clone(),
        mail_root: dir.join("mail"),
        tls,
        mx: Some(any),
        submission: Some(any),
        submissions: Some(any),
        relay: true,
        relay_id: None,
        routes: setup.routes,
        lifetime_secs: setup.lifetime_secs,
        retry: setup.retry,
        delivery_log_retention: Some(scop_mail::relay::LOG_RETENTION),
        greeting_delay: setup.greeting_delay,
        user_limits: Default::default(),
        idle_timeout: setup.idle_timeout,
        conn_limits: scop_mail::listener::ConnLimits {
            per_ip: setup.per_ip,
            total: 1000,
        },
        message_size: setup.message_size,
        srs_key: b"test srs key".to_vec(),
        spam: setup.spam,
        verifier: setup.verifier,
        dmarc_report_interval: Duration::from_secs(86_400),
        dkim: {
            let mut m: std::collections::HashMap<String, Vec<scop_dkim::Signer>> =
                std::collections::HashMap::new();
            for (d, s) in setup.dkim {
                m.entry(d).or_default().push(s);
            }
            std::sync::Arc::new(m)
        },
        journal: Some(dir.join("mail").join(".journal")),
        journal_segment_bytes: scop_mail::journal::SEGMENT_BYTES,
    })
    .await
    .unwrap();
    Domain {
        name: name.to_string(),
        dir,
        store,
        running,
        cert,
    }
}

/// The swaks command (Perl script from Debian, with the TLS modules).
pub fn swaks() -> Command {
    scop_testkit::swaks()
}

/// Runs swaks off the async runtime; returns (exit success, transcript).
pub async fn run_swaks(args: Vec<String>) -> (bool, String) {
    let mut cmd = swaks();
    cmd.args(&args);
    run(cmd).await
}

/// Runs `cmd` off the async runtime; returns (exit success, its
/// standard output then its standard error).
pub async fn run(mut cmd: Command) -> (bool, String) {
    let out: Output = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

pub fn file_with(dir: &Path, name: &str, content: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p.display().to_string()
}

/// alice@a.test submits `data` (a file) to `rcpt` on `d`'s port 465 with
/// AUTH PLAIN, through swaks.
pub async fn submit_as_alice(d: &Domain, rcpt: &str, data: &str) -> (bool, String) {
    let port = d.submissions().port().to_string();
    let args = [
        "--server",
        "127.0.0.1",
        "--port",
        &port,
        "--tls-on-connect",
        "--auth",
        "PLAIN",
        "--auth-user",
        "alice@a.test",
        "--auth-password",
        "alice-password",
        "--from",
        "alice@a.test",
        "--to",
        rcpt,
        "--data",
        data,
    ];
    run_swaks(args.iter().map(|s| s.to_string()).collect()).await
}

/// A fresh mesh directory with every role.
pub fn mesh_dir(tag: &str) -> scop_mesh::MeshDir {
    let dir = std::env::temp_dir().join(format!(
        "scop-mail-dnshop-{tag}-{}-{}",
        std::process::id(),
        scop_mail::queue_id()
    ));
    let v = scop_mesh::Validity::starting(
        std::time::SystemTime::now() - Duration::from_secs(60),
        Duration::from_secs(86_400),
    )
    .unwrap();
    let roles: Vec<_> = scop_mesh::Role::ALL
        .iter()
        .map(|r| (*r, scop_mesh::ExtraNames::none()))
        .collect();
    scop_mesh::MeshDir::init(dir, v, v, &roles).unwrap()
}

/// SCoP's authoritative DNS server for `engine`'s zones on loopback; its
/// address.
pub async fn serve_engine(engine: scop_dns::Engine) -> SocketAddr {
    let server = scop_dns::server::Server::bind(
        engine,
        "127.0.0.1:0".parse().unwrap(),
        scop_dns::server::Config {
            journal_dir: None,
            notify: Vec::new(),
        },
    )
    .await
    .unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.run(std::future::pending()));
    addr
}
