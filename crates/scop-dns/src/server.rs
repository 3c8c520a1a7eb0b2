//! The tokio shell around [`Engine`]: a UDP socket and a TCP listener on
//! the same address, the journal files, and NOTIFY to secondaries.
//!
//! This is our own thin loop rather than hickory-server: hickory-server's
//! `RequestHandler` answers through a `ResponseHandler` that encodes (and
//! TSIG-signs) a `MessageResponse` itself, so it cannot send the exact
//! bytes our core produced, nor a zone transfer of several messages each
//! carrying a chained TSIG MAC (RFC 8945 5.3.1).
//!
//! Queries are answered by [`udp_workers`] threads reading one shared
//! blocking UDP socket, and by a task per TCP connection, all at once
//! under a read lock of the engine; an UPDATE takes the write lock. Each
//! UDP worker (and the TCP side) remembers the encoded reply to every
//! unsigned query it answered, keyed by the request's bytes after the ID,
//! until the zones change (a generation counter bumped under the write
//! lock): the core's answer depends only on those bytes and the zones.
//!
//! Durability: an accepted UPDATE is appended to the zone's journal and
//! fsync'd before the reply leaves; if the write fails the change is
//! reverted and the client gets SERVFAIL. UPDATEs go to one updater
//! thread, which applies every update waiting (up to
//! [`MAX_UPDATE_BATCH`]) one after the other, then appends their journal
//! entries with one fsync per zone, then replies to each (group commit).

use crate::journal;
use crate::rrl::{self, ResponseRateLimiter, RrlConfig, Verdict};
use crate::wire;
use crate::{Engine, MAX_MESSAGE_BYTES, Outcome, Transport};
use hickory_proto::rr::Name;
use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;

/// Simultaneous TCP connections; more wait in the kernel's backlog.
pub const MAX_TCP_CONNECTIONS: usize = 256;
/// A TCP connection idle this long is closed (RFC 7766 6.2.3).
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests answered on one TCP connection before it is closed (a
/// bound on how long one client can hold a connection slot, far above
/// what a busy resolver sends between idle periods). The requests
/// already received when it is reached are answered, then the
/// connection is closed gracefully: see [`TCP_CLOSE_DRAIN`].
pub const MAX_REQUESTS_PER_CONNECTION: usize = 1_000_000;
/// After the last reply of a connection closed by the server, how long
/// what the client still sends is read and discarded. Closing a socket
/// with unread input makes the kernel send a reset, and a reset makes
/// the client's kernel throw away replies it has not read yet; so the
/// server sends its FIN after the replies and waits for the client's.
pub const TCP_CLOSE_DRAIN: Duration = Duration::from_secs(2);
/// NOTIFY attempts per secondary (RFC 1996 3.6).
pub const NOTIFY_ATTEMPTS: usize = 5;
/// Wait for a NOTIFY answer before retrying.
pub const NOTIFY_TIMEOUT: Duration = Duration::from_secs(2);
/// Most UDP worker threads (one per available core up to this).
pub const MAX_UDP_WORKERS: usize = 8;
/// How long a UDP worker blocks in a read before it checks for shutdown.
pub const UDP_SHUTDOWN_POLL: Duration = Duration::from_millis(100);
/// Encoded replies remembered by each UDP worker and by the TCP side;
/// when full, the cache starts again empty.
pub const MAX_CACHED_REPLIES: usize = 50_000;
/// UPDATEs applied together before one journal fsync.
pub const MAX_UPDATE_BATCH: usize = 64;
/// Largest request whose reply is remembered.
pub const MAX_CACHED_REQUEST_BYTES: usize = 512;
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
    engine: RwLock<Engine>,
    config: Config,
    /// Response rate limiting of UDP replies; `None`: off.
    rrl: Option<Mutex<ResponseRateLimiter>>,
    /// Origin of the rate limiter's millisecond clock.
    start: Instant,
    /// Bumped, under the engine's write lock, whenever it may have
    /// changed: remembered replies of an older generation are stale.
    generation: AtomicU64,
    /// Replies remembered for TCP requests.
    tcp_cache: Mutex<ReplyCache>,
    /// Requests answered on one TCP connection before it is closed.
    max_requests_per_connection: usize,
}

/// Whether the request is an UPDATE (opcode 5): it needs the write lock.
fn is_update(request: &[u8]) -> bool {
    request.get(2).is_some_and(|b| (b >> 3) & 0x0F == 5)
}

/// An UPDATE waiting for the updater thread.
struct UpdateJob {
    request: Vec<u8>,
    reply_to: ReplyTo,
}

/// Where the outcome of an UPDATE goes.
enum ReplyTo {
    /// Its first reply, over the UDP socket to this client.
    Udp(SocketAddr),
    /// The whole outcome, to the TCP connection's task.
    Tcp(tokio::sync::oneshot::Sender<Outcome>),
}

/// Whether the request asks for a zone transfer (its first question is
/// AXFR or IXFR): it may take long, so TCP runs it off the async workers.
fn is_transfer(request: &[u8]) -> bool {
    let mut pos = wire::HEADER;
    while let Some(&len) = request.get(pos) {
        if len == 0 {
            return matches!(wire::u16_at(request, pos + 1), Some(251 | 252));
        }
        if len & 0xC0 != 0 {
            return false;
        }
        pos += 1 + usize::from(len);
    }
    false
}

/// Encoded replies to unsigned queries, keyed by the request's bytes after
/// the ID, valid for one generation of the zones.
#[derive(Default)]
struct ReplyCache {
    generation: u64,
    replies: HashMap<Box<[u8]>, Box<[u8]>>,
}

impl ReplyCache {
    /// The remembered reply (its ID still the first asker's) to `request`
    /// at `generation`.
    fn get(&mut self, generation: u64, request: &[u8]) -> Option<&[u8]> {
        if self.generation != generation {
            self.replies.clear();
            self.generation = generation;
        }
        self.replies.get(request.get(2..)?).map(|r| &r[..])
    }

    /// Remembers the reply of `outcome` to `request` when it can be sent
    /// again to the same bytes: an unsigned query with one reply that
    /// changed nothing, computed from zones at least as new as
    /// `generation`.
    fn put(&mut self, generation: u64, request: &[u8], outcome: &Outcome) {
        let [reply] = outcome.replies.as_slice() else {
            return;
        };
        let query = request.get(2).is_some_and(|b| (b >> 3) & 0x0F == 0);
        if self.generation != generation
            || !query
            || request.len() > MAX_CACHED_REQUEST_BYTES
            || reply.len() < 2
            || outcome.journal.is_some()
            || !outcome.notify.is_empty()
            || !unsigned(request)
        {
            return;
        }
        if self.replies.len() >= MAX_CACHED_REPLIES {
            self.replies.clear();
        }
        self.replies.insert(request[2..].into(), reply[..].into());
    }
}

/// Whether the request carries no TSIG record.
fn unsigned(request: &[u8]) -> bool {
    if wire::u16_at(request, 10) == Some(0) {
        return true;
    }
    wire::split_tsig(request).is_some_and(|s| s.tsig.is_none())
}

/// `reply` with the ID of `request`, into `out`.
fn with_id<'a>(out: &'a mut Vec<u8>, reply: &[u8], request: &[u8]) -> &'a [u8] {
    out.clear();
    out.extend_from_slice(reply);
    out[..2].copy_from_slice(&request[..2]);
    out
}

impl Shared {
    /// Runs the core, persists the change, returns what to send.
    fn handle(&self, request: &[u8], transport: Transport) -> Outcome {
        if !is_update(request) {
            match self.engine.read() {
                Ok(engine) => {
                    if let Some(outcome) = engine.handle_read_only(request, transport, now()) {
                        return outcome;
                    }
                }
                Err(_) => return Outcome::default(),
            }
        }
        let Ok(mut engine) = self.engine.write() else {
            return Outcome::default();
        };
        let mut outcome = engine.handle(request, transport, now());
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Some((origin, diff)) = &outcome.journal
            && let Err(e) = self.persist(origin, diff)
        {
            eprintln!("scop-dns: journal write for {origin} failed, change reverted: {e}");
            let _ = engine.revert(origin, diff);
            self.generation.fetch_add(1, Ordering::AcqRel);
            outcome.replies = outcome.failure_reply.take().into_iter().collect();
            outcome.notify.clear();
        }
        outcome
    }

    /// [`Shared::handle`] through `cache`: the first reply to send, and the
    /// outcome when the core ran (for NOTIFY).
    fn cached<'a>(
        &self,
        cache: &mut ReplyCache,
        request: &[u8],
        transport: Transport,
        out: &'a mut Vec<u8>,
    ) -> (Option<&'a [u8]>, Option<Outcome>) {
        let generation = self.generation.load(Ordering::Acquire);
        if let Some(reply) = cache.get(generation, request) {
            return (Some(with_id(out, reply, request)), None);
        }
        let outcome = self.handle(request, transport);
        cache.put(generation, request, &outcome);
        let reply = outcome.replies.first().map(|r| {
            out.clear();
            out.extend_from_slice(r);
            &out[..]
        });
        (reply, Some(outcome))
    }

    /// Applies a batch of UPDATEs under one write lock, journals every
    /// accepted change with one fsync per zone, and reverts them all (each
    /// client then gets its SERVFAIL) if that fails. Outcomes in order.
    fn handle_updates(&self, requests: &[(Transport, &[u8])]) -> Vec<Outcome> {
        let Ok(mut engine) = self.engine.write() else {
            return requests.iter().map(|_| Outcome::default()).collect();
        };
        let mut outcomes: Vec<Outcome> = requests
            .iter()
            .map(|(transport, request)| engine.handle(request, *transport, now()))
            .collect();
        self.generation.fetch_add(1, Ordering::AcqRel);
        // Per zone: its entries, or why they cannot be written.
        let mut entries: Vec<(Name, io::Result<Vec<u8>>)> = Vec::new();
        for (origin, diff) in outcomes.iter().filter_map(|o| o.journal.as_ref()) {
            let encoded = journal::encode(diff).map_err(|e| io::Error::other(e.to_string()));
            match (entries.iter_mut().find(|(o, _)| o == origin), encoded) {
                (Some((_, Ok(all))), Ok(bytes)) => all.extend_from_slice(&bytes),
                (Some((_, entry)), Err(e)) => *entry = Err(e),
                (Some((_, Err(_))), Ok(_)) => {}
                (None, encoded) => entries.push((origin.clone(), encoded)),
            }
        }
        if let Some(dir) = &self.config.journal_dir {
            for (origin, entry) in &mut entries {
                if let Ok(bytes) = entry
                    && let Err(e) = append_journal(dir, origin, bytes)
                {
                    *entry = Err(e);
                }
            }
        }
        let mut reverted = false;
        for outcome in outcomes.iter_mut().rev() {
            let Some((origin, diff)) = &outcome.journal else {
                continue;
            };
            let Some((_, Err(e))) = entries.iter().find(|(o, _)| o == origin) else {
                continue;
            };
            eprintln!("scop-dns: journal write for {origin} failed, change reverted: {e}");
            let _ = engine.revert(origin, diff);
            outcome.replies = outcome.failure_reply.take().into_iter().collect();
            outcome.notify.clear();
            reverted = true;
        }
        if reverted {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        outcomes
    }

    /// What to send over UDP to `client` instead of `reply`: the reply
    /// itself, its truncated form, or nothing (response rate limiting).
    fn rate_limit<'a>(&self, client: IpAddr, reply: &'a [u8]) -> Option<Cow<'a, [u8]>> {
        let Some(rrl) = &self.rrl else {
            return Some(Cow::Borrowed(reply));
        };
        let Ok(mut limiter) = rrl.lock() else {
            return Some(Cow::Borrowed(reply));
        };
        let now_ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        match limiter.check_reply(client, Transport::Udp, reply, now_ms) {
            Verdict::Send => Some(Cow::Borrowed(reply)),
            Verdict::Slip => rrl::truncated(reply).map(Cow::Owned),
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
        let Ok(mut engine) = self.engine.write() else {
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
        self.generation.fetch_add(1, Ordering::AcqRel);
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
                engine: RwLock::new(engine),
                config,
                rrl: None,
                start: Instant::now(),
                generation: AtomicU64::new(0),
                tcp_cache: Mutex::new(ReplyCache::default()),
                max_requests_per_connection: MAX_REQUESTS_PER_CONNECTION,
            })),
        })
    }

    /// Turns on response rate limiting of UDP replies (off unless called;
    /// a rate of 0 leaves it off).
    pub fn with_rate_limit(self, config: RrlConfig) -> Self {
        self.with_rate_limit_exempting(config, Vec::new())
    }

    /// [`Server::with_rate_limit`], never limiting clients inside
    /// `exempt`.
    pub fn with_rate_limit_exempting(
        mut self,
        config: RrlConfig,
        exempt: Vec<rrl::Prefix>,
    ) -> Self {
        // The handle is not shared before `run`.
        if config.responses_per_second > 0
            && let Some(shared) = Arc::get_mut(&mut self.shared)
        {
            shared.0.rrl = Some(Mutex::new(
                ResponseRateLimiter::new(config).with_exempt(exempt),
            ));
        }
        self
    }

    /// Closes TCP connections after `n` requests (at least 1) instead
    /// of [`MAX_REQUESTS_PER_CONNECTION`].
    pub fn with_max_requests_per_connection(mut self, n: usize) -> Self {
        // The handle is not shared before `run`.
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.0.max_requests_per_connection = n.max(1);
        }
        self
    }

    /// The address both sockets listen on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// Serves until `shutdown` completes.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) -> io::Result<()> {
        let udp = self.udp.into_std()?;
        udp.set_nonblocking(false)?;
        udp.set_read_timeout(Some(UDP_SHUTDOWN_POLL))?;
        let shared = self.shared;
        let stop = Arc::new(AtomicBool::new(false));
        let runtime = tokio::runtime::Handle::current();
        let (updates, queue) = std::sync::mpsc::channel::<UpdateJob>();
        let mut workers = Vec::new();
        let mut spawn =
            |name: String, work: Box<dyn FnOnce() + Send>| match std::thread::Builder::new()
                .name(name)
                .spawn(work)
            {
                Ok(w) => {
                    workers.push(w);
                    Ok(())
                }
                Err(e) => {
                    stop.store(true, Ordering::Release);
                    Err(e)
                }
            };
        {
            let sock = udp.try_clone()?;
            let (shared, stop, runtime) = (shared.clone(), stop.clone(), runtime.clone());
            spawn(
                "scop-dns-update".into(),
                Box::new(move || updater(&queue, &sock, &shared, &stop, &runtime)),
            )?;
        }
        for i in 0..udp_workers() {
            let sock = udp.try_clone()?;
            let (shared, stop, runtime) = (shared.clone(), stop.clone(), runtime.clone());
            let updates = updates.clone();
            spawn(
                format!("scop-dns-udp-{i}"),
                Box::new(move || udp_worker(&sock, &shared, &stop, &runtime, &updates)),
            )?;
        }
        drop(udp);
        let refresh_task = tokio::spawn(refresh_loop(shared.clone()));
        let tcp_task = tokio::spawn(tcp_loop(self.tcp, shared, updates));
        shutdown.await;
        stop.store(true, Ordering::Release);
        tcp_task.abort();
        refresh_task.abort();
        let _ = tokio::task::spawn_blocking(move || {
            for w in workers {
                let _ = w.join();
            }
        })
        .await;
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
            .read()
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

/// UDP worker threads: one per available core, at most [`MAX_UDP_WORKERS`].
pub fn udp_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, MAX_UDP_WORKERS))
}

/// One UDP worker: blocking reads on the shared socket until `stop`.
fn udp_worker(
    sock: &std::net::UdpSocket,
    shared: &Arc<SharedHandle>,
    stop: &AtomicBool,
    runtime: &tokio::runtime::Handle,
    updates: &std::sync::mpsc::Sender<UpdateJob>,
) {
    let mut buf = vec![0u8; MAX_MESSAGE_BYTES];
    let mut out = Vec::with_capacity(MAX_MESSAGE_BYTES);
    let mut cache = ReplyCache::default();
    while !stop.load(Ordering::Acquire) {
        let Ok((n, peer)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let request = &buf[..n];
        if is_update(request) {
            let _ = updates.send(UpdateJob {
                request: request.to_vec(),
                reply_to: ReplyTo::Udp(peer),
            });
            continue;
        }
        let (reply, outcome) = shared
            .0
            .cached(&mut cache, request, Transport::Udp, &mut out);
        if let Some(reply) = reply
            && let Some(reply) = shared.0.rate_limit(peer.ip(), reply)
        {
            let _ = sock.send_to(&reply, peer);
        }
        if let Some(outcome) = outcome
            && !outcome.notify.is_empty()
        {
            let shared = shared.clone();
            runtime.spawn(async move { after(&shared, &outcome).await });
        }
    }
}

/// The updater thread: takes every UPDATE waiting (up to
/// [`MAX_UPDATE_BATCH`]), applies and journals them together, replies.
fn updater(
    queue: &std::sync::mpsc::Receiver<UpdateJob>,
    sock: &std::net::UdpSocket,
    shared: &Arc<SharedHandle>,
    stop: &AtomicBool,
    runtime: &tokio::runtime::Handle,
) {
    while !stop.load(Ordering::Acquire) {
        let Ok(first) = queue.recv_timeout(UDP_SHUTDOWN_POLL) else {
            continue;
        };
        let mut jobs = vec![first];
        jobs.extend(queue.try_iter().take(MAX_UPDATE_BATCH - 1));
        let requests: Vec<(Transport, &[u8])> = jobs
            .iter()
            .map(|j| match j.reply_to {
                ReplyTo::Udp(_) => (Transport::Udp, &j.request[..]),
                ReplyTo::Tcp(_) => (Transport::Tcp, &j.request[..]),
            })
            .collect();
        let outcomes = shared.0.handle_updates(&requests);
        drop(requests);
        for (job, outcome) in jobs.into_iter().zip(outcomes) {
            let notify = !outcome.notify.is_empty();
            let outcome = match job.reply_to {
                ReplyTo::Udp(peer) => {
                    if let Some(reply) = outcome.replies.first()
                        && let Some(reply) = shared.0.rate_limit(peer.ip(), reply)
                    {
                        let _ = sock.send_to(&reply, peer);
                    }
                    Some(outcome)
                }
                ReplyTo::Tcp(tx) => tx.send(outcome).err(),
            };
            if notify && let Some(outcome) = outcome {
                let shared = shared.clone();
                runtime.spawn(async move { after(&shared, &outcome).await });
            }
        }
    }
}

async fn tcp_loop(
    listener: TcpListener,
    shared: Arc<SharedHandle>,
    updates: std::sync::mpsc::Sender<UpdateJob>,
) {
    let limit = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        let updates = updates.clone();
        tokio::spawn(async move {
            let _ = tcp_connection(stream, shared, updates).await;
            drop(permit);
        });
    }
}

/// Whether a whole length-prefixed request is already buffered: then
/// the replies so far can wait for the next one's before being flushed.
fn next_request_buffered(buffered: &[u8]) -> bool {
    wire::u16_at(buffered, 0).is_some_and(|n| buffered.len() >= 2 + usize::from(n))
}

async fn tcp_connection(
    stream: TcpStream,
    shared: Arc<SharedHandle>,
    updates: std::sync::mpsc::Sender<UpdateJob>,
) -> io::Result<()> {
    let (reader, writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    let mut writer = BufWriter::new(writer);
    let mut buf = vec![0u8; MAX_MESSAGE_BYTES];
    let mut out = Vec::new();
    let mut served = 0usize;
    loop {
        // At the bound, only the requests already received are answered.
        if served >= shared.0.max_requests_per_connection && !next_request_buffered(reader.buffer())
        {
            break;
        }
        served += 1;
        let mut len = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE_TIMEOUT, reader.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        let n = usize::from(u16::from_be_bytes(len));
        tokio::time::timeout(TCP_IDLE_TIMEOUT, reader.read_exact(&mut buf[..n]))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "slow client"))??;
        let request = &buf[..n];
        let outcome = if is_update(request) {
            let (tx, rx) = tokio::sync::oneshot::channel();
            updates
                .send(UpdateJob {
                    request: request.to_vec(),
                    reply_to: ReplyTo::Tcp(tx),
                })
                .map_err(|_| io::Error::other("the updater has stopped"))?;
            rx.await.map_err(io::Error::other)?
        } else if is_transfer(request) {
            // A whole zone: keep it off the async workers.
            let request = request.to_vec();
            let s = shared.clone();
            tokio::task::spawn_blocking(move || s.0.handle(&request, Transport::Tcp))
                .await
                .map_err(io::Error::other)?
        } else {
            let cached = match shared.0.tcp_cache.lock() {
                Ok(mut cache) => {
                    let generation = shared.0.generation.load(Ordering::Acquire);
                    cache
                        .get(generation, request)
                        .map(|reply| with_id(&mut out, reply, request).len())
                }
                Err(_) => None,
            };
            if let Some(len) = cached {
                writer.write_all(&(len as u16).to_be_bytes()).await?;
                writer.write_all(&out).await?;
                if !next_request_buffered(reader.buffer()) {
                    writer.flush().await?;
                }
                continue;
            }
            let generation = shared.0.generation.load(Ordering::Acquire);
            let outcome = shared.0.handle(request, Transport::Tcp);
            if let Ok(mut cache) = shared.0.tcp_cache.lock() {
                cache.put(generation, request, &outcome);
            }
            outcome
        };
        for reply in &outcome.replies {
            writer
                .write_all(&(reply.len() as u16).to_be_bytes())
                .await?;
            writer.write_all(reply).await?;
        }
        // Pipelined requests already read are answered before the flush.
        if !next_request_buffered(reader.buffer()) || outcome.replies.len() > 1 {
            writer.flush().await?;
        }
        after(&shared, &outcome).await;
    }
    // Every reply out and our FIN after them, then the client's leftover
    // input read until its FIN, so that no reset discards the replies.
    writer.shutdown().await?;
    let _ = tokio::time::timeout(TCP_CLOSE_DRAIN, async {
        while let Ok(1..) = reader.read(&mut buf).await {}
    })
    .await;
    Ok(())
}
