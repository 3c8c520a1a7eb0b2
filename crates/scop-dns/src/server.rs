//! The tokio shell around [`Engine`]: a UDP socket and a TCP listener on
//! the same address, the journal files, and NOTIFY to secondaries.
//!
//! This is our own thin loop rather than hickory-server: hickory-server's
//! `RequestHandler` answers through a `ResponseHandler` that encodes (and
//! TSIG-signs) a `MessageResponse` itself, so it cannot send the exact
//! bytes our core produced, nor a zone transfer of several messages each
//! carrying a chained TSIG MAC (RFC 8945 5.3.1).
//!
//! Durability: an accepted UPDATE is appended to the zone's journal and
//! fsync'd before the reply leaves; if the write fails the change is
//! reverted and the client gets SERVFAIL.

use crate::journal;
use crate::rrl::{self, ResponseRateLimiter, RrlConfig, Verdict};
use crate::{Engine, MAX_MESSAGE_BYTES, Outcome, Transport};
use hickory_proto::rr::Name;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;

/// Simultaneous TCP connections; more wait in the kernel's backlog.
pub const MAX_TCP_CONNECTIONS: usize = 256;
/// A TCP connection idle this long is closed (RFC 7766 6.2.3).
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests answered on one TCP connection before it is closed.
pub const MAX_REQUESTS_PER_CONNECTION: usize = 10_000;
/// NOTIFY attempts per secondary (RFC 1996 3.6).
pub const NOTIFY_ATTEMPTS: usize = 5;
/// Wait for a NOTIFY answer before retrying.
pub const NOTIFY_TIMEOUT: Duration = Duration::from_secs(2);
/// How often signed zones are checked for signatures to renew
/// ([`Engine::refresh_signatures`]); far shorter than the refresh window.
pub const SIGNATURE_CHECK_INTERVAL: Duration = Duration::from_secs(3_600);

/// Where the shell keeps state and whom it notifies.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Directory of the journal files (`<zone>.journal`); `None`: changes
    /// live in memory only.
    pub journal_dir: Option<PathBuf>,
    /// Secondaries to NOTIFY when a zone changes.
    pub notify: Vec<SocketAddr>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The journal file of a zone inside `dir`.
pub fn journal_path(dir: &Path, origin: &Name) -> PathBuf {
    let mut name = origin.to_ascii().trim_end_matches('.').to_ascii_lowercase();
    if name.is_empty() {
        name = "root".into();
    }
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join(format!("{safe}.journal"))
}

/// Replays every zone's journal over the engine (at start-up) and cuts a
/// torn last entry. Returns the number of entries applied.
pub fn replay_journals(engine: &mut Engine, dir: &Path) -> io::Result<usize> {
    let origins: Vec<Name> = engine.zones().map(|z| z.origin().clone()).collect();
    let mut total = 0;
    for origin in origins {
        let path = journal_path(dir, &origin);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let decoded = journal::decode(&bytes).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })?;
        if decoded.valid_len < bytes.len() {
            let f = std::fs::OpenOptions::new().write(true).open(&path)?;
            f.set_len(decoded.valid_len as u64)?;
            f.sync_all()?;
        }
        total += engine.replay(&origin, &decoded.entries).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })?;
    }
    Ok(total)
}

/// Appends one change to a zone's journal in `dir` and fsyncs it (the
/// serial change of [`Engine::sign_zone`] at start-up, for instance).
pub fn write_journal(dir: &Path, origin: &Name, diff: &crate::ZoneDiff) -> io::Result<()> {
    journal::encode(diff)
        .map_err(|e| io::Error::other(e.to_string()))
        .and_then(|entry| append_journal(dir, origin, &entry))
}

fn append_journal(dir: &Path, origin: &Name, entry: &[u8]) -> io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(journal_path(dir, origin))?;
    f.write_all(entry)?;
    f.sync_data()
}

struct Shared {
    engine: Mutex<Engine>,
    config: Config,
    /// Response rate limiting of UDP replies; `None`: off.
    rrl: Mutex<Option<ResponseRateLimiter>>,
    /// Origin of the rate limiter's millisecond clock.
    start: Instant,
}

impl Shared {
    /// Runs the core, persists the change, returns what to send.
    fn handle(&self, request: &[u8], transport: Transport) -> Outcome {
        let Ok(mut engine) = self.engine.lock() else {
            return Outcome::default();
        };
        let mut outcome = engine.handle(request, transport, now());
        if let Some((origin, diff)) = &outcome.journal
            && let Err(e) = self.persist(origin, diff)
        {
            eprintln!("scop-dns: journal write for {origin} failed, change reverted: {e}");
            let _ = engine.revert(origin, diff);
            outcome.replies = outcome.failure_reply.take().into_iter().collect();
            outcome.notify.clear();
        }
        outcome
    }

    /// What to send over UDP to `client` instead of `reply`: the reply
    /// itself, its truncated form, or nothing (response rate limiting).
    fn rate_limit(&self, client: IpAddr, reply: &[u8]) -> Option<Vec<u8>> {
        let Ok(mut guard) = self.rrl.lock() else {
            return Some(reply.to_vec());
        };
        let Some(limiter) = guard.as_mut() else {
            return Some(reply.to_vec());
        };
        let now_ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        match limiter.check_reply(client, Transport::Udp, reply, now_ms) {
            Verdict::Send => Some(reply.to_vec()),
            Verdict::Slip => rrl::truncated(reply),
            Verdict::Drop => None,
        }
    }

    /// Appends a change to the zone's journal (when there is one).
    fn persist(&self, origin: &Name, diff: &crate::ZoneDiff) -> io::Result<()> {
        match &self.config.journal_dir {
            Some(dir) => write_journal(dir, origin, diff),
            None => Ok(()),
        }
    }

    /// Renews signatures that are due; returns the zones that changed.
    fn refresh(&self) -> Vec<Name> {
        let Ok(mut engine) = self.engine.lock() else {
            return Vec::new();
        };
        let mut changed = Vec::new();
        for (origin, result) in engine.refresh_signatures(now()) {
            match result {
                Ok(diff) => match self.persist(&origin, &diff) {
                    Ok(()) => changed.push(origin),
                    Err(e) => {
                        eprintln!(
                            "scop-dns: journal write for {origin} failed, refresh reverted: {e}"
                        );
                        let _ = engine.revert(&origin, &diff);
                    }
                },
                Err(e) => eprintln!("scop-dns: re-signing {origin} failed: {e}"),
            }
        }
        changed
    }
}

/// A bound server, ready to run.
#[derive(Debug)]
pub struct Server {
    udp: UdpSocket,
    tcp: TcpListener,
    shared: Arc<SharedHandle>,
}

/// The engine shared by the server's tasks.
pub struct SharedHandle(Shared);

impl std::fmt::Debug for SharedHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedHandle").finish_non_exhaustive()
    }
}

impl Server {
    /// Binds UDP and TCP on `addr` (port 0: the same ephemeral port for
    /// both).
    pub async fn bind(engine: Engine, addr: SocketAddr, config: Config) -> io::Result<Self> {
        let (udp, tcp) = if addr.port() == 0 {
            let mut tries = 0;
            loop {
                let tcp = TcpListener::bind(addr).await?;
                let port = tcp.local_addr()?.port();
                match UdpSocket::bind(SocketAddr::new(addr.ip(), port)).await {
                    Ok(udp) => break (udp, tcp),
                    Err(e) if tries < 20 => {
                        tries += 1;
                        let _ = e;
                    }
                    Err(e) => return Err(e),
                }
            }
        } else {
            (UdpSocket::bind(addr).await?, TcpListener::bind(addr).await?)
        };
        Ok(Server {
            udp,
            tcp,
            shared: Arc::new(SharedHandle(Shared {
                engine: Mutex::new(engine),
                config,
                rrl: Mutex::new(None),
                start: Instant::now(),
            })),
        })
    }

    /// Turns on response rate limiting of UDP replies (off unless called;
    /// a rate of 0 leaves it off).
    pub fn with_rate_limit(self, config: RrlConfig) -> Self {
        if config.responses_per_second > 0
            && let Ok(mut rrl) = self.shared.0.rrl.lock()
        {
            *rrl = Some(ResponseRateLimiter::new(config));
        }
        self
    }

    /// The address both sockets listen on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// Serves until `shutdown` completes.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) -> io::Result<()> {
        let udp = Arc::new(self.udp);
        let shared = self.shared;
        let udp_task = tokio::spawn(udp_loop(udp.clone(), shared.clone()));
        let refresh_task = tokio::spawn(refresh_loop(shared.clone()));
        let tcp_task = tokio::spawn(tcp_loop(self.tcp, shared));
        shutdown.await;
        udp_task.abort();
        tcp_task.abort();
        refresh_task.abort();
        Ok(())
    }
}

async fn after(shared: &Arc<SharedHandle>, outcome: &Outcome) {
    if outcome.notify.is_empty() || shared.0.config.notify.is_empty() {
        return;
    }
    for origin in &outcome.notify {
        for target in &shared.0.config.notify {
            let shared = shared.clone();
            let origin = origin.clone();
            let target = *target;
            tokio::spawn(async move {
                if let Err(e) = send_notify(&shared, &origin, target).await {
                    eprintln!("scop-dns: NOTIFY {origin} to {target}: {e}");
                }
            });
        }
    }
}

async fn send_notify(
    shared: &Arc<SharedHandle>,
    origin: &Name,
    target: SocketAddr,
) -> io::Result<()> {
    let mut id = [0u8; 2];
    aws_lc_rs::rand::fill(&mut id).map_err(|_| io::Error::other("no randomness"))?;
    let id = u16::from_be_bytes(id);
    let msg = {
        let engine = shared
            .0
            .engine
            .lock()
            .map_err(|_| io::Error::other("poisoned"))?;
        engine.notify_message(origin, id)
    };
    let Some(msg) = msg else { return Ok(()) };
    let bind: SocketAddr = if target.is_ipv4() {
        "0.0.0.0:0".parse().map_err(io::Error::other)?
    } else {
        "[::]:0".parse().map_err(io::Error::other)?
    };
    let sock = UdpSocket::bind(bind).await?;
    sock.connect(target).await?;
    let mut buf = vec![0u8; 512];
    for _ in 0..NOTIFY_ATTEMPTS {
        sock.send(&msg).await?;
        if let Ok(Ok(n)) = tokio::time::timeout(NOTIFY_TIMEOUT, sock.recv(&mut buf)).await
            && n >= 4
            && buf[..2] == id.to_be_bytes()
            && buf[2] & 0x80 != 0
        {
            return Ok(());
        }
    }
    Err(io::Error::new(io::ErrorKind::TimedOut, "no answer"))
}

async fn refresh_loop(shared: Arc<SharedHandle>) {
    let mut tick = tokio::time::interval(SIGNATURE_CHECK_INTERVAL);
    loop {
        tick.tick().await;
        let s = shared.clone();
        let Ok(changed) = tokio::task::spawn_blocking(move || s.0.refresh()).await else {
            continue;
        };
        let outcome = Outcome {
            notify: changed,
            ..Outcome::default()
        };
        after(&shared, &outcome).await;
    }
}

async fn udp_loop(sock: Arc<UdpSocket>, shared: Arc<SharedHandle>) {
    let mut buf = vec![0u8; MAX_MESSAGE_BYTES];
    loop {
        let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
            continue;
        };
        let request = buf[..n].to_vec();
        let is_update = request.get(2).is_some_and(|b| (b >> 3) & 0x0F == 5);
        let outcome = if is_update {
            // Journal fsync: keep it off the async workers.
            let s = shared.clone();
            match tokio::task::spawn_blocking(move || s.0.handle(&request, Transport::Udp)).await {
                Ok(o) => o,
                Err(_) => continue,
            }
        } else {
            shared.0.handle(&request, Transport::Udp)
        };
        if let Some(reply) = outcome.replies.first()
            && let Some(reply) = shared.0.rate_limit(peer.ip(), reply)
        {
            let _ = sock.send_to(&reply, peer).await;
        }
        after(&shared, &outcome).await;
    }
}

async fn tcp_loop(listener: TcpListener, shared: Arc<SharedHandle>) {
    let limit = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _ = tcp_connection(stream, shared).await;
            drop(permit);
        });
    }
}

async fn tcp_connection(mut stream: TcpStream, shared: Arc<SharedHandle>) -> io::Result<()> {
    let mut buf = vec![0u8; MAX_MESSAGE_BYTES];
    for _ in 0..MAX_REQUESTS_PER_CONNECTION {
        let mut len = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE_TIMEOUT, stream.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        let n = usize::from(u16::from_be_bytes(len));
        tokio::time::timeout(TCP_IDLE_TIMEOUT, stream.read_exact(&mut buf[..n]))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "slow client"))??;
        let request = buf[..n].to_vec();
        let s = shared.clone();
        let outcome = tokio::task::spawn_blocking(move || s.0.handle(&request, Transport::Tcp))
            .await
            .map_err(io::Error::other)?;
        for reply in &outcome.replies {
            let mut framed = Vec::with_capacity(reply.len() + 2);
            framed.extend_from_slice(&(reply.len() as u16).to_be_bytes());
            framed.extend_from_slice(reply);
            stream.write_all(&framed).await?;
        }
        stream.flush().await?;
        after(&shared, &outcome).await;
    }
    Ok(())
}
