//! Mesh hops: the compartments of one bottle talk SMTP to each other over
//! mutually authenticated TLS (scop-mesh), the next hop's certificate
//! naming its role, and pass what they learnt of the original client as
//! XSCOP envelope facts.
//!
//! - [`NextHop`] sends one message to the next compartment and returns its
//!   answer: the chain is synchronous up to the first durable store, so a
//!   250 here means the message is stored further down, and a refusal
//!   there (DMARC reject, spam over the threshold) becomes the answer to
//!   the original client.
//! - [`serve`] accepts mesh connections, completes the handshake in the
//!   connection's task and runs an SMTP session whose handler is one
//!   compartment's stage ([`SpamHop`], [`VerifyHop`], [`DeliveryHop`],
//!   [`SignerHop`], [`RelayHop`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use scop_mesh::{MeshConnector, MeshDir, MeshListener, Role};
use scop_smtp::{
    Client, ClientConfig, ClientEvent, EnvelopeFacts, ForwardPath, Host, MailParams, RcptParams,
    Reply, ReversePath, TlsPolicy,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::client;

use crate::delivery::Delivery;
use crate::mx::{SpamStage, reverse_path};
use crate::session::{self, Decision, Handler, Incoming, Peer, SessionConfig};
use crate::{now, queue_id, tempfail};

/// Longest wait for the next hop's answer to one command. The end of DATA
/// waits for the whole chain behind it (spam filter, DNS checks, fsync).
pub const HOP_REPLY_TIMEOUT: Duration = Duration::from_secs(120);

/// Idle mesh connections kept per next hop.
pub const HOP_IDLE_MAX: usize = 16;
/// How long an idle connection is kept (the next hop's sessions wait
/// [`HOP_REPLY_TIMEOUT`]).
pub const HOP_IDLE_TIME: Duration = Duration::from_secs(30);
/// Transactions on one connection before it is closed (well under the
/// server's command limit).
pub const HOP_USES_MAX: u32 = 500;
/// Age after which a connection is not reused (well under the hop
/// sessions' own limit, [`HOP_SESSION_TIME`]).
pub const HOP_CONN_AGE_MAX: Duration = Duration::from_secs(600);
/// Longest mesh session a hop serves.
pub const HOP_SESSION_TIME: Duration = Duration::from_secs(3600);

/// The compartment after this one, reached over the mesh. Connections are
/// kept open between messages (one TLS handshake per connection, not per
/// message) and reused one transaction at a time.
#[derive(Debug, Clone)]
pub struct NextHop {
    connector: MeshConnector,
    addr: SocketAddr,
    role: Role,
    helo: Host,
    idle: Arc<Mutex<Vec<Conn>>>,
}

struct Conn {
    stream: client::TlsStream<TcpStream>,
    client: Client,
    uses: u32,
    since: Instant,
    born: Instant,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("uses", &self.uses).finish()
    }
}

/// Why a transaction on a connection produced no result; `answered`
/// says whether the next hop had said anything about it (if not, on a
/// reused connection, it never saw the message and a retry is safe).
struct Failure {
    answered: bool,
    why: String,
}

impl NextHop {
    /// A hop from `me` to the `to` compartment at `addr`, with the
    /// certificates of `mesh`. Fails when the identity cannot be loaded;
    /// a hop the table forbids fails at the handshake.
    pub fn new(
        mesh: &MeshDir,
        me: Role,
        to: Role,
        addr: SocketAddr,
    ) -> Result<Self, scop_mesh::MeshError> {
        let identity = mesh.load_identity(me)?;
        let trust = mesh.load_trust()?;
        let helo = Host::parse(&me.mesh_dns_name(), false)
            .unwrap_or_else(|_| Host::parse("localhost", false).expect("valid host"));
        Ok(NextHop {
            connector: MeshConnector::new(&identity, &trust, to)?,
            addr,
            role: to,
            helo,
            idle: Arc::default(),
        })
    }

    /// The next hop's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Sends one message; `Ok` carries the queue id in the final 250
    /// (the id given by the store at the end of the chain), `Err` the
    /// reply to give the client: the next hop's own refusal (MAIL, every
    /// RCPT, or the end of data), or 451 when it cannot be reached or
    /// took only some recipients.
    pub async fn send(
        &self,
        facts: Option<EnvelopeFacts>,
        from: &ReversePath,
        params: &MailParams,
        rcpts: Vec<(ForwardPath, RcptParams)>,
        body: &[u8],
    ) -> Result<String, Reply> {
        let n = rcpts.len();
        let envelope = scop_smtp::Envelope {
            from: from.clone(),
            params: params.clone(),
            rcpts,
            facts,
        };
        let (result, mut conn) = self.transaction(Work::Send, envelope, body).await?;
        conn.uses += 1;
        // Only a connection whose last transaction went through is kept.
        if result.data.as_ref().is_some_and(Reply::is_positive) && result.error.is_none() {
            self.put_idle(conn);
        }
        if let Some(r) = result.mail.as_ref().filter(|r| !r.is_positive()) {
            return Err(r.clone());
        }
        let accepted = result.accepted().count();
        if accepted == 0 {
            let refusal = result.rcpts.iter().find_map(|(_, r)| r.clone());
            if let Some(e) = &result.error {
                tracing::warn!(hop = %self.role, error = %e, "next hop transaction failed");
            }
            return Err(refusal.unwrap_or_else(hop_down));
        }
        match result.data {
            Some(r) if r.is_positive() && accepted == n => Ok(r
                .lines()
                .last()
                .and_then(|l| l.split_ascii_whitespace().last())
                .unwrap_or("")
                .to_string()),
            Some(r) if r.is_positive() => {
                // Delivered for some recipients only: the client cannot be
                // told per recipient after DATA, and the hops behind accept
                // every recipient the first hop checked, so this is a
                // change between the two checks. Ask for a retry of all.
                tracing::error!(hop = %self.role, accepted, of = n, "next hop took only some recipients");
                Err(tempfail())
            }
            Some(r) => Err(r),
            None => {
                if let Some(e) = result.error {
                    tracing::warn!(hop = %self.role, error = %e, "next hop transaction failed");
                }
                Err(hop_down())
            }
        }
    }

    /// Passes on `msg` with `body` (the message as this hop changed it)
    /// and `facts`: [`NextHop::send`] with the envelope as received.
    pub async fn pass_on(
        &self,
        facts: EnvelopeFacts,
        msg: &Incoming,
        body: &[u8],
    ) -> Result<String, Reply> {
        self.send(Some(facts), &msg.from, &msg.params, rcpts_of(msg), body)
            .await
    }

    /// Asks the next hop whether it would take mail from `from` for the
    /// client `facts` describe (XSCOP and MAIL, then RSET): `Err` is its
    /// refusal, or 451 when it cannot be asked.
    pub async fn check_sender(
        &self,
        facts: EnvelopeFacts,
        from: &ReversePath,
        params: &MailParams,
    ) -> Result<(), Reply> {
        let envelope = scop_smtp::Envelope {
            from: from.clone(),
            params: params.clone(),
            rcpts: Vec::new(),
            facts: Some(facts),
        };
        let (result, mut conn) = self.transaction(Work::Check, envelope, &[]).await?;
        conn.uses += 1;
        match result.mail {
            Some(r) if r.is_positive() && result.error.is_none() => {
                self.put_idle(conn);
                Ok(())
            }
            Some(r) if !r.is_positive() => Err(r),
            _ => Err(hop_down()),
        }
    }

    /// One transaction on an idle connection, or on a new one when there
    /// is none or the idle one turns out closed before the next hop said
    /// anything about it (then it never saw the message); 451 when the
    /// next hop cannot be reached.
    async fn transaction(
        &self,
        work: Work,
        envelope: scop_smtp::Envelope,
        body: &[u8],
    ) -> Result<(scop_smtp::TransactionResult, Conn), Reply> {
        let attempt = match self.take_idle() {
            Some(conn) => match transact(conn, work, envelope.clone(), body).await {
                Err(f) if !f.answered => {
                    tracing::debug!(hop = %self.role, why = %f.why, "stale mesh connection");
                    self.fresh(work, envelope, body).await
                }
                other => other,
            },
            None => self.fresh(work, envelope, body).await,
        };
        attempt.map_err(|f| {
            tracing::warn!(hop = %self.role, addr = %self.addr, error = %f.why, "next hop failed");
            hop_down()
        })
    }

    fn take_idle(&self) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(c) = idle.pop() {
            if c.since.elapsed() < HOP_IDLE_TIME && !c.client.is_closed() {
                return Some(c);
            }
        }
        None
    }

    fn put_idle(&self, mut conn: Conn) {
        if conn.uses >= HOP_USES_MAX
            || conn.born.elapsed() >= HOP_CONN_AGE_MAX
            || conn.client.is_closed()
        {
            return;
        }
        conn.since = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.retain(|c| c.since.elapsed() < HOP_IDLE_TIME);
        if idle.len() < HOP_IDLE_MAX {
            idle.push(conn);
        }
    }

    async fn fresh(
        &self,
        work: Work,
        envelope: scop_smtp::Envelope,
        body: &[u8],
    ) -> Result<(scop_smtp::TransactionResult, Conn), Failure> {
        let mesh = self
            .connector
            .connect(self.addr)
            .await
            .map_err(|e| Failure {
                answered: false,
                why: format!("unreachable: {e}"),
            })?;
        mesh.stream.get_ref().0.set_nodelay(true).ok();
        let mut config = ClientConfig::new(self.helo.clone());
        config.tls = TlsPolicy::Disabled;
        config.implicit_tls = true;
        let conn = Conn {
            stream: mesh.stream,
            client: Client::new(config),
            uses: 0,
            since: Instant::now(),
            born: Instant::now(),
        };
        transact(conn, work, envelope, body).await
    }
}

/// What a transaction does.
#[derive(Debug, Clone, Copy)]
enum Work {
    /// Sends the message.
    Send,
    /// Only asks about the sender (MAIL, then RSET).
    Check,
}

fn hop_down() -> Reply {
    crate::reply(451, (4, 4, 1), "Next hop unavailable, try again later")
}

/// Runs one transaction on `conn` until its result.
async fn transact(
    mut conn: Conn,
    work: Work,
    envelope: scop_smtp::Envelope,
    body: &[u8],
) -> Result<(scop_smtp::TransactionResult, Conn), Failure> {
    let mut answered = false;
    let fail = |answered, why: String| Failure { answered, why };
    match work {
        Work::Send => conn.client.send_message(envelope, body),
        Work::Check => conn.client.check_sender(envelope),
    }
    .map_err(|e| fail(false, e.to_string()))?;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        while let Some(ev) = conn.client.poll_event() {
            match ev {
                ClientEvent::Transaction(r) => return Ok((r, conn)),
                ClientEvent::Closed(err) => {
                    let why = err.map_or("closed".to_string(), |e| e.to_string());
                    return Err(fail(answered, why));
                }
                _ => {}
            }
        }
        let out = conn.client.take_output();
        if !out.is_empty() {
            conn.stream
                .write_all(&out)
                .await
                .map_err(|e| fail(answered, e.to_string()))?;
            conn.stream
                .flush()
                .await
                .map_err(|e| fail(answered, e.to_string()))?;
        }
        let n = tokio::time::timeout(HOP_REPLY_TIMEOUT, conn.stream.read(&mut buf))
            .await
            .map_err(|_| fail(true, "timed out waiting for the next hop".into()))?
            .map_err(|e| fail(answered, e.to_string()))?;
        if n == 0 {
            return Err(fail(answered, "connection closed by the next hop".into()));
        }
        // On a reused connection any byte is an answer about this
        // transaction (on a fresh one the greeting comes first, but a fresh
        // connection is never retried).
        answered = true;
        let mut fed = 0;
        while fed < n {
            let k = conn.client.feed(&buf[fed..n]);
            if k == 0 {
                return Err(fail(true, "reply buffer overflow".into()));
            }
            fed += k;
        }
    }
}

/// The facts a hop passes on about its session's client.
pub fn facts_of(peer: &Peer) -> EnvelopeFacts {
    EnvelopeFacts {
        addr: Some(peer.addr.ip()),
        helo: peer.helo.clone(),
        login: peer.login.clone(),
        tls: peer.tls.clone(),
        spam: peer.spam.clone(),
    }
}

/// The envelope of `msg` as the next hop gets it (same parameters).
fn rcpts_of(msg: &Incoming) -> Vec<(ForwardPath, RcptParams)> {
    msg.rcpts
        .iter()
        .cloned()
        .zip(
            msg.rcpt_params
                .iter()
                .cloned()
                .chain(std::iter::repeat(RcptParams::default())),
        )
        .collect()
}

/// The word in the SPAM fact by which a stage asks delivery to file the
/// message in the Junk folder.
pub const JUNK: &str = "junk";

/// Whether the SPAM fact asks for the Junk folder.
pub fn wants_junk(spam: Option<&str>) -> bool {
    spam.is_some_and(|s| s.split(' ').any(|w| w == JUNK))
}

fn add_junk(spam: Option<String>) -> Option<String> {
    match spam {
        Some(s) if wants_junk(Some(&s)) => Some(s),
        Some(s) => Some(format!("{s} {JUNK}")),
        None => Some(JUNK.into()),
    }
}

/// An established mesh connection to a compartment's listener.
pub type MeshConn = scop_mesh::MeshStream<tokio_rustls::server::TlsStream<TcpStream>>;

/// Accepts connections on compartment `me`'s mesh listener until `stop`
/// turns true; each completes its handshake (a refused one is logged:
/// unknown CA, wrong role, no certificate) and is then served by `conn`
/// in a task of its own.
pub async fn accept_each<F, Fut>(
    me: Role,
    listener: MeshListener,
    mut stop: watch::Receiver<bool>,
    conn: F,
) where
    F: Fn(MeshConn) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let incoming = match accepted {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(compartment = %me, error = %e, "mesh accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let conn = conn.clone();
        tokio::spawn(async move {
            let from = incoming.peer_addr();
            match incoming.handshake().await {
                Ok(mesh) => {
                    mesh.stream.get_ref().0.set_nodelay(true).ok();
                    conn(mesh).await;
                }
                Err(e) => {
                    tracing::warn!(compartment = %me, peer = %from, error = %e, "mesh handshake refused");
                }
            }
        });
    }
}

/// Serves a mesh listener as compartment `me` until `stop` turns true.
pub async fn serve<H: Handler>(
    me: Role,
    listener: MeshListener,
    cfg: Arc<SessionConfig>,
    handler: Arc<H>,
    stop: watch::Receiver<bool>,
) {
    accept_each(me, listener, stop, move |mesh| {
        let (cfg, handler) = (cfg.clone(), handler.clone());
        async move {
            match session::serve_mesh(mesh, me, &cfg, handler.as_ref()).await {
                Ok(outcome) => tracing::debug!(compartment = %me, ?outcome, "hop session ended"),
                Err(e) => tracing::info!(compartment = %me, error = %e, "hop session failed"),
            }
        }
    })
    .await
}

/// SMTP settings of a mesh listener: no AUTH, no STARTTLS (the session is
/// TLS already), DSN and REQUIRETLS parameters carried, XSCOP for
/// authorised peers.
pub fn session_config(hostname: &str, message_size: u64) -> Arc<SessionConfig> {
    let builtins = scop_smtp::extension::Builtins {
        auth: Vec::new(),
        starttls: false,
        xscop: true,
        ..Default::default()
    };
    let mut c = scop_smtp::ServerConfig::new(hostname);
    c.registry = scop_smtp::Registry::new(builtins);
    // The first hop checked the size; headers added on the way in
    // (trace, labels, results) need some room.
    c.limits.message_size = message_size.saturating_add(64 * 1024);
    let mut s = SessionConfig::new(Arc::new(c), None);
    s.implicit_tls = true;
    s.idle_timeout = HOP_REPLY_TIMEOUT;
    s.session_timeout = HOP_SESSION_TIME;
    Arc::new(s)
}

/// The decisions every hop makes alike: each recipient was checked by the
/// first hop (one removed since is reported with a DSN after the data, as
/// in one process), and there is no AUTH on the mesh; `mail` adds taking
/// every sender.
macro_rules! hop_decisions {
    () => {
        async fn rcpt(
            &self,
            _: &Peer,
            _: &ReversePath,
            _: &ForwardPath,
            _: &RcptParams,
        ) -> Decision {
            Decision::Accept
        }
        async fn auth(&self, _: &Peer, _: &str, _: &str) -> Decision {
            Decision::Reject(crate::reply(
                503,
                (5, 5, 1),
                "No authentication on a mesh hop",
            ))
        }
    };
    (mail) => {
        async fn mail(&self, _: &Peer, _: &ReversePath, _: &MailParams) -> Decision {
            Decision::Accept
        }
        hop_decisions!();
    };
}

/// Requires the facts a stage decides on: a hop that got no client
/// address from its upstream refuses rather than judging the mesh peer.
fn require_facts(peer: &Peer) -> Result<(), Reply> {
    if peer.facts {
        Ok(())
    } else {
        Err(crate::reply(
            554,
            (5, 7, 0),
            "Envelope facts required on this hop",
        ))
    }
}

/// The spam filter compartment: labels, quarantines or refuses, then
/// passes the message to the verifier.
#[derive(Debug)]
pub struct SpamHop {
    /// The model, policy and source list; without one, messages pass
    /// unlabelled.
    pub stage: Option<SpamStage>,
    /// The verifier.
    pub next: NextHop,
}

impl Handler for SpamHop {
    async fn mail(&self, peer: &Peer, _from: &ReversePath, _params: &MailParams) -> Decision {
        // The facts came before MAIL: refuse the sources that sent the
        // most spam (the MX learns it at the end of its data).
        let blocked = self
            .stage
            .as_ref()
            .is_some_and(|s| s.is_blocked(peer.addr.ip(), now()));
        if peer.facts && blocked {
            return Decision::Reject(crate::spamfilter::blocked_reply());
        }
        Decision::Accept
    }
    hop_decisions!();
    async fn message(&self, peer: &Peer, msg: Incoming) -> Result<String, Reply> {
        require_facts(peer)?;
        let mut facts = facts_of(peer);
        let Some(stage) = &self.stage else {
            return self.next.pass_on(facts, &msg, &msg.body).await;
        };
        let id = queue_id();
        let (body, junk, label) = stage.filter(peer.addr.ip(), &msg.body, &id, now())?;
        facts.spam = Some(label.to_string());
        if junk {
            facts.spam = add_junk(facts.spam);
        }
        self.next.pass_on(facts, &msg, &body).await
    }
}

/// The verifier compartment: SPF (from the facts), DKIM and DMARC, an
/// Authentication-Results field, DMARC policy; then delivery.
#[derive(Debug)]
pub struct VerifyHop {
    /// The checks; without them, messages pass unchecked.
    pub verifier: Option<crate::verifier::Verifier>,
    /// Delivery.
    pub next: NextHop,
}

impl Handler for VerifyHop {
    hop_decisions!(mail);
    async fn message(&self, peer: &Peer, msg: Incoming) -> Result<String, Reply> {
        require_facts(peer)?;
        let Some(verifier) = &self.verifier else {
            return self.next.pass_on(facts_of(peer), &msg, &msg.body).await;
        };
        let id = queue_id();
        let sender = reverse_path(&msg.from);
        let (body, junk) = verifier
            .stage(
                peer.addr.ip(),
                peer.helo.as_deref().unwrap_or(""),
                &sender,
                &msg.body,
                &id,
                now(),
            )
            .await?;
        let mut facts = facts_of(peer);
        if junk {
            facts.spam = add_junk(facts.spam);
        }
        self.next.pass_on(facts, &msg, &body).await
    }
}

/// The delivery compartment: mailboxes, aliases, forwarding; the end of
/// the inbound chain (the message is durable before its 250).
#[derive(Debug)]
pub struct DeliveryHop {
    /// Local delivery.
    pub delivery: Delivery,
    /// Our host name (DSNs).
    pub hostname: String,
}

impl Handler for DeliveryHop {
    hop_decisions!(mail);
    async fn message(&self, peer: &Peer, msg: Incoming) -> Result<String, Reply> {
        require_facts(peer)?;
        let folder = wants_junk(peer.spam.as_deref()).then_some("Junk");
        crate::mx::deliver_and_report(&self.delivery, &self.hostname, msg, folder).await
    }
}

/// The DKIM signer compartment, sole holder of the private keys: signs
/// for the sender's domain (the From domain for null-sender reports) and
/// passes the message to the relay.
#[derive(Debug)]
pub struct SignerHop {
    /// Signers per domain (lower case).
    pub dkim: Arc<HashMap<String, Vec<scop_dkim::Signer>>>,
    /// The relay.
    pub next: NextHop,
}

impl Handler for SignerHop {
    hop_decisions!(mail);
    async fn message(&self, peer: &Peer, msg: Incoming) -> Result<String, Reply> {
        let sender = reverse_path(&msg.from);
        let body = crate::submission::sign(&self.dkim, &sender, &msg.body, now())?;
        self.next.pass_on(facts_of(peer), &msg, &body).await
    }
}

/// The relay's mesh side: queues what the signer hands over (durably,
/// before the 250); the relay's queue runner sends it on.
#[derive(Debug)]
pub struct RelayHop {
    /// The store holding the queue.
    pub store: scop_store::Store,
    /// Queue lifetime of each message.
    pub lifetime_secs: i64,
    /// Wakes the queue runner.
    pub queued: Arc<tokio::sync::Notify>,
    /// The relay of this process: each message is queued leased to it and
    /// handed over at once (no queue scan, no second commit). Without it,
    /// messages wait for the queue runner.
    pub relay: Option<Arc<crate::relay::Relay>>,
}

impl Handler for RelayHop {
    hop_decisions!(mail);
    async fn message(&self, peer: &Peer, msg: Incoming) -> Result<String, Reply> {
        let login = peer.login.as_deref();
        let now = now();
        let Some(relay) = &self.relay else {
            let queued =
                crate::submission::enqueue(&self.store, &msg, self.lifetime_secs, login, now)
                    .await?;
            self.queued.notify_one();
            return Ok(queued);
        };
        let lease_until = now + crate::relay::LEASE_SECS;
        let m = crate::submission::enqueue_leased(
            &self.store,
            &msg,
            self.lifetime_secs,
            login,
            now,
            (lease_until, &relay.owner),
        )
        .await?;
        let id = m.id.to_string();
        relay.hand_over(m);
        Ok(id)
    }
}
