//! The I/O shell around [`scop_smtp::Server`]: reads and writes a TCP
//! connection (plain, STARTTLS or implicit TLS), enforces timeouts, turns
//! the machine's decisions into calls on a [`Handler`], and answers them.
//!
//! The machine owns the protocol; this loop owns only bytes, time and the
//! TLS handshake. After STARTTLS, plaintext that was read but not yet fed
//! is dropped here, as the machine drops what it buffered (the
//! CVE-2011-0411 class).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use scop_smtp::{
    ForwardPath, MailParams, RcptParams, Reply, ReversePath, Server, ServerConfig, TlsInfo,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// What the handler says about a MAIL, RCPT or AUTH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Go on.
    Accept,
    /// Refuse with this reply (4xx or 5xx).
    Reject(Reply),
}

/// Facts about the session that handlers decide on.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The client's address.
    pub addr: SocketAddr,
    /// The HELO/EHLO argument.
    pub helo: Option<String>,
    /// Whether EHLO was used.
    pub extended: bool,
    /// TLS version and cipher, once TLS is up.
    pub tls: Option<String>,
    /// The authenticated login.
    pub login: Option<String>,
    /// The spam verdict an earlier hop reported (XSCOP `SPAM`).
    pub spam: Option<String>,
    /// The mesh role of the peer, on a mesh hop.
    pub mesh_role: Option<&'static str>,
    /// Whether the client facts above came from XSCOP (an authorised
    /// mesh peer) rather than from this connection.
    pub facts: bool,
}

/// A received message and its envelope.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The reverse-path.
    pub from: ReversePath,
    /// The MAIL parameters.
    pub params: MailParams,
    /// Accepted recipients.
    pub rcpts: Vec<ForwardPath>,
    /// The RCPT parameters of each accepted recipient, in the order of
    /// `rcpts` (DSN NOTIFY and ORCPT, RFC 3461).
    pub rcpt_params: Vec<RcptParams>,
    /// The message as received (CRLF, dot-unstuffed).
    pub body: Vec<u8>,
}

/// The compartment-specific decisions. Every method may wait (store,
/// next hop); the session waits with it.
pub trait Handler: Send + Sync + 'static {
    /// MAIL FROM.
    fn mail(
        &self,
        peer: &Peer,
        from: &ReversePath,
        params: &MailParams,
    ) -> impl Future<Output = Decision> + Send;
    /// RCPT TO (with the reverse-path of the transaction).
    fn rcpt(
        &self,
        peer: &Peer,
        from: &ReversePath,
        to: &ForwardPath,
        params: &RcptParams,
    ) -> impl Future<Output = Decision> + Send;
    /// AUTH PLAIN/LOGIN credentials.
    fn auth(
        &self,
        peer: &Peer,
        username: &str,
        password: &str,
    ) -> impl Future<Output = Decision> + Send;
    /// The complete message: store it durably and return the queue id, or
    /// a rejection. Returning `Ok` sends the 250.
    fn message(
        &self,
        peer: &Peer,
        msg: Incoming,
    ) -> impl Future<Output = Result<String, Reply>> + Send;
}

/// Session settings of a listener.
#[derive(Clone)]
pub struct SessionConfig {
    /// The SMTP machine's configuration.
    pub smtp: Arc<ServerConfig>,
    /// TLS for STARTTLS or implicit TLS; without it STARTTLS is not
    /// offered.
    pub tls: Option<TlsAcceptor>,
    /// Port 465 style: TLS from the first byte.
    pub implicit_tls: bool,
    /// Longest wait for the client's next bytes.
    pub idle_timeout: Duration,
    /// Longest whole session.
    pub session_timeout: Duration,
    /// Wait this long before the greeting, and refuse clients that talk
    /// first (early talkers); zero disables the check.
    pub greeting_delay: Duration,
    /// Longest TLS handshake.
    pub handshake_timeout: Duration,
}

impl std::fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionConfig")
            .field("tls", &self.tls.is_some())
            .field("implicit_tls", &self.implicit_tls)
            .field("idle_timeout", &self.idle_timeout)
            .field("greeting_delay", &self.greeting_delay)
            .finish_non_exhaustive()
    }
}

impl SessionConfig {
    /// Defaults: 5 minute idle timeout (RFC 5321 4.5.3.2), 30 minute
    /// session cap, no greeting delay, 30 s handshakes.
    pub fn new(smtp: Arc<ServerConfig>, tls: Option<TlsAcceptor>) -> Self {
        SessionConfig {
            smtp,
            tls,
            implicit_tls: false,
            idle_timeout: Duration::from_secs(300),
            session_timeout: Duration::from_secs(1800),
            greeting_delay: Duration::ZERO,
            handshake_timeout: Duration::from_secs(30),
        }
    }
}

type Stream = crate::stream::Stream<TlsStream<TcpStream>>;

fn tls_info(s: &TlsStream<TcpStream>) -> TlsInfo {
    let (_, conn) = s.get_ref();
    TlsInfo {
        protocol: conn
            .protocol_version()
            .and_then(|v| v.as_str())
            .unwrap_or("TLS")
            .replace("TLSv1_", "TLSv1.")
            .to_string(),
        cipher: conn
            .negotiated_cipher_suite()
            .and_then(|c| c.suite().as_str())
            .unwrap_or("unknown")
            .to_string(),
    }
}

/// How a session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// QUIT, or the machine closed the session.
    Closed,
    /// The client went away.
    Disconnected,
    /// Idle or session timeout (421 sent).
    TimedOut,
    /// The client spoke before the greeting (554 sent).
    EarlyTalker,
    /// The TLS handshake failed.
    TlsFailed,
}

const READ_CHUNK: usize = 16 * 1024;
/// Bytes a message body is given room for at once when its client
/// declared a size (RFC 1870), at most.
const DECLARED_SIZE_ROOM: usize = 1 << 20;
/// Input held back while the machine's buffer is full; a client that
/// pipelines more than this without reading replies is cut off.
const UNFED_MAX: usize = 1024 * 1024;

/// Runs one SMTP session on `tcp` until it ends.
pub async fn serve<H: Handler>(
    tcp: TcpStream,
    addr: SocketAddr,
    cfg: &SessionConfig,
    handler: &H,
) -> io::Result<Outcome> {
    let started = Instant::now();
    let mut peer = Peer {
        addr,
        helo: None,
        extended: false,
        tls: None,
        login: None,
        spam: None,
        mesh_role: None,
        facts: false,
    };

    if !cfg.greeting_delay.is_zero() && !cfg.implicit_tls {
        let mut probe = [0u8; 1];
        let early = tokio::time::timeout(cfg.greeting_delay, tcp.peek(&mut probe)).await;
        if let Ok(Ok(n)) = early {
            if n > 0 {
                let mut tcp = tcp;
                tcp.write_all(b"554 5.5.1 Protocol error: talked before the greeting\r\n")
                    .await
                    .ok();
                return Ok(Outcome::EarlyTalker);
            }
            return Ok(Outcome::Disconnected);
        }
    }

    let stream = if cfg.implicit_tls {
        let Some(acceptor) = &cfg.tls else {
            return Err(io::Error::other("implicit TLS without a certificate"));
        };
        match tokio::time::timeout(cfg.handshake_timeout, acceptor.accept(tcp)).await {
            Ok(Ok(s)) => {
                let i = tls_info(&s);
                peer.tls = Some(format!("{} {}", i.protocol, i.cipher));
                Stream::Tls(Box::new(s))
            }
            _ => return Ok(Outcome::TlsFailed),
        }
    } else {
        Stream::Plain(tcp)
    };
    let server = Server::new(cfg.smtp.clone(), cfg.implicit_tls);
    run(stream, server, peer, started, cfg, handler).await
}

/// Runs one SMTP session on an established mesh connection: TLS from the
/// first byte, the peer's role verified by its certificate. XSCOP envelope
/// facts are taken only when the hop table lets that role send them, and
/// then replace what the session knows of the client.
pub async fn serve_mesh<H: Handler>(
    mesh: scop_mesh::MeshStream<TlsStream<TcpStream>>,
    me: scop_mesh::Role,
    cfg: &SessionConfig,
    handler: &H,
) -> io::Result<Outcome> {
    let started = Instant::now();
    let info = tls_info(&mesh.stream);
    let peer = Peer {
        addr: mesh.peer_addr,
        helo: None,
        extended: false,
        tls: Some(format!("{} {}", info.protocol, info.cipher)),
        login: None,
        spam: None,
        mesh_role: Some(mesh.peer.role().name()),
        facts: false,
    };
    let mut server = Server::new(cfg.smtp.clone(), true);
    if scop_mesh::may_send_envelope_facts(mesh.peer.role(), me) {
        server.authorise_peer(scop_smtp::PeerAuthorised::from_verified_certificate(
            mesh.peer.role().name(),
        ));
    }
    let stream = Stream::Tls(Box::new(mesh.stream));
    run(stream, server, peer, started, cfg, handler).await
}

async fn run<H: Handler>(
    mut stream: Stream,
    mut server: Server,
    mut peer: Peer,
    started: Instant,
    cfg: &SessionConfig,
    handler: &H,
) -> io::Result<Outcome> {
    let mut buf = vec![0u8; READ_CHUNK];
    let mut unfed: Vec<u8> = Vec::new();
    let mut body: Vec<u8> = Vec::new();
    let mut oversize = false;
    let mut mail: Option<(ReversePath, MailParams)> = None;
    let mut rcpt_params: Vec<RcptParams> = Vec::new();
    let size_cap = usize::try_from(cfg.smtp.limits.message_size).unwrap_or(usize::MAX);

    loop {
        while let Some(ev) = server.poll_event() {
            use scop_smtp::Event as E;
            match ev {
                E::Helo { host, extended } => {
                    peer.helo = Some(host.to_string());
                    peer.extended = extended;
                }
                E::Mail { from, params } => match handler.mail(&peer, &from, &params).await {
                    Decision::Accept => {
                        mail = Some((from, params));
                        rcpt_params.clear();
                        answer(server.accept())
                    }
                    Decision::Reject(r) => answer(server.reject(r)),
                },
                E::Rcpt { to, params } => {
                    let from = mail
                        .as_ref()
                        .map(|(f, _)| f.clone())
                        .unwrap_or(ReversePath::Null);
                    match handler.rcpt(&peer, &from, &to, &params).await {
                        Decision::Accept => {
                            let r = server.accept();
                            if r.is_ok() {
                                rcpt_params.push(params);
                            }
                            answer(r)
                        }
                        Decision::Reject(r) => answer(server.reject(r)),
                    }
                }
                E::DataStart(_) | E::MessageAborted(_) => {
                    body.clear();
                    oversize = false;
                }
                E::Reset => {
                    body.clear();
                    oversize = false;
                    rcpt_params.clear();
                }
                E::DataChunk(_) if oversize => {}
                E::DataChunk(c) if body.len() + c.len() > size_cap => {
                    body = Vec::new();
                    oversize = true;
                }
                E::DataChunk(c) if body.is_empty() => {
                    // The first chunk becomes the body, uncopied, with
                    // room for the size the client declared (RFC 1870) so
                    // that it grows without copies; a bounded promise, as
                    // the client may lie.
                    body = c;
                    let declared = mail.as_ref().and_then(|(_, p)| p.size);
                    if let Some(size) = declared.and_then(|s| usize::try_from(s).ok()) {
                        let room = size.min(size_cap).min(DECLARED_SIZE_ROOM);
                        body.reserve(room.saturating_sub(body.len()));
                    }
                }
                E::DataChunk(c) => body.extend_from_slice(&c),
                E::MessageComplete if oversize => {
                    body.clear();
                    oversize = false;
                    answer(server.reject(crate::reply(
                        552,
                        (5, 3, 4),
                        "Message size exceeds fixed maximum message size",
                    )));
                }
                E::MessageComplete => {
                    let (from, rcpts) = match server.envelope() {
                        Some((f, r)) => (f.clone(), r.to_vec()),
                        None => (ReversePath::Null, Vec::new()),
                    };
                    let params = mail.take().map(|(_, p)| p).unwrap_or_default();
                    let mut per_rcpt = std::mem::take(&mut rcpt_params);
                    // Lockstep with the machine's list; if it ever differed,
                    // no parameters is the safe reading.
                    if per_rcpt.len() != rcpts.len() {
                        per_rcpt = vec![RcptParams::default(); rcpts.len()];
                    }
                    let msg = Incoming {
                        from,
                        params,
                        rcpts,
                        rcpt_params: per_rcpt,
                        body: std::mem::take(&mut body),
                    };
                    match handler.message(&peer, msg).await {
                        Ok(id) => answer(server.message_durable(&id)),
                        Err(r) => answer(server.reject(r)),
                    }
                }
                E::AuthCredentials {
                    authzid,
                    username,
                    password,
                    ..
                } => {
                    let d = if !authzid.is_empty() && authzid != username {
                        Decision::Reject(crate::reply(
                            535,
                            (5, 7, 8),
                            "Authorization identity must be the login",
                        ))
                    } else {
                        handler.auth(&peer, &username, &password).await
                    };
                    match d {
                        Decision::Accept => answer(server.accept()),
                        Decision::Reject(r) => answer(server.reject(r)),
                    }
                }
                E::ScramLookup { .. } => {
                    // SCRAM is not offered by the compartments (no SCRAM
                    // verifiers are stored); refuse like a failed login.
                    answer(server.scram_credentials(None, "unused"));
                }
                E::Authenticated { username, .. } => peer.login = Some(username),
                E::ExtensionCommand { .. } => {
                    answer(server.reply_extension(crate::reply(
                        502,
                        (5, 5, 1),
                        "Command not implemented",
                    )));
                }
                E::Facts(f) => {
                    // Only an authorised mesh peer gets here (the machine
                    // refuses XSCOP otherwise): the facts describe the
                    // original client, for this transaction on.
                    if let Some(ip) = f.addr {
                        peer.addr = SocketAddr::new(ip, 0);
                    }
                    peer.helo = f.helo;
                    peer.login = f.login;
                    peer.tls = f.tls;
                    peer.spam = f.spam;
                    peer.facts = true;
                }
                E::StartTls { .. } => {}
                _ => {}
            }
        }

        let out = server.take_output();
        if !out.is_empty() {
            stream.write_all(&out).await?;
            stream.flush().await?;
        }
        if server.is_closed() {
            stream.shutdown().await.ok();
            return Ok(Outcome::Closed);
        }

        if server.tls_pending() {
            // Plaintext read after STARTTLS and not yet fed is discarded.
            unfed.clear();
            let (Stream::Plain(tcp), Some(acceptor)) = (
                std::mem::replace(&mut stream, Stream::Gone),
                cfg.tls.as_ref(),
            ) else {
                return Err(io::Error::other("STARTTLS offered without TLS"));
            };
            match tokio::time::timeout(cfg.handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => {
                    let info = tls_info(&s);
                    peer.tls = Some(format!("{} {}", info.protocol, info.cipher));
                    peer.helo = None;
                    peer.login = None;
                    peer.extended = false;
                    mail = None;
                    stream = Stream::Tls(Box::new(s));
                    answer(server.tls_established(info));
                    continue;
                }
                _ => return Ok(Outcome::TlsFailed),
            }
        }

        if !unfed.is_empty() {
            let n = server.feed(&unfed);
            unfed.drain(..n);
            if n > 0 {
                continue;
            }
        }

        let remaining = cfg.session_timeout.saturating_sub(started.elapsed());
        let wait = cfg.idle_timeout.min(remaining);
        let n = match tokio::time::timeout(wait, stream.read(&mut buf)).await {
            Ok(Ok(0)) => return Ok(Outcome::Disconnected),
            Ok(Ok(n)) => n,
            Ok(Err(e)) if is_disconnect(&e) => return Ok(Outcome::Disconnected),
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                stream
                    .write_all(b"421 4.4.2 Timeout, closing the connection\r\n")
                    .await
                    .ok();
                stream.shutdown().await.ok();
                return Ok(Outcome::TimedOut);
            }
        };
        let used = server.feed(&buf[..n]);
        if used < n {
            unfed.extend_from_slice(&buf[used..n]);
            if unfed.len() > UNFED_MAX {
                stream
                    .write_all(b"421 4.7.0 Too much input, closing the connection\r\n")
                    .await
                    .ok();
                return Ok(Outcome::Closed);
            }
        }
    }
}

fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}

/// A decision call can fail only through misuse of the machine's API,
/// which this loop avoids by construction; log it rather than panic.
fn answer(r: Result<(), scop_smtp::Error>) {
    if let Err(e) = r {
        tracing::error!(error = %e, "SMTP machine refused a decision");
    }
}
