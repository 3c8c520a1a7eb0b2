//! The I/O shell around [`scop_smtp::Client`]: one message per
//! transaction, STARTTLS when offered (opportunistic, falling back to
//! plaintext on a new connection when the handshake fails), timeouts,
//! and a [`Pool`] of sessions kept open between messages to one host.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
pub use scop_mta::dane::HostSecurity;
use scop_mta::tlsrpt::ResultType;
use scop_smtp::client::Capabilities;
use scop_smtp::{
    Client, ClientConfig, ClientEvent, Envelope, MailParams, RcptParams, TlsPolicy,
    TransactionResult,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Timeouts of an outbound session.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// TCP connect.
    pub connect: Duration,
    /// Each wait for the server (RFC 5321 4.5.3.2 suggests minutes).
    pub reply: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(30),
            reply: Duration::from_secs(300),
        }
    }
}

/// What one attempt produced.
#[derive(Debug)]
pub enum Attempt {
    /// The server answered the transaction (per-recipient replies inside);
    /// with the capabilities it announced.
    Done(TransactionResult, Capabilities),
    /// No transaction result: connection, TLS or protocol trouble
    /// (transient).
    Failed(String),
    /// The server lacks an extension the message requires (REQUIRETLS):
    /// nothing was sent, and waiting will not change it.
    Unsuitable(String),
}

type Stream = crate::stream::Stream<TlsStream<TcpStream>>;

/// What one new connection's TLS came to, for TLS reporting (RFC 8460).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsOutcome {
    /// The handshake completed (the certificate passed the check asked).
    Established,
    /// The server offered no STARTTLS and TLS was not required: the
    /// session went on in cleartext.
    Cleartext,
    /// STARTTLS was refused, missing where required, or its handshake
    /// failed.
    Failed(ResultType, String),
}

/// The RFC 8460 result type of a failed handshake; `dane` when the
/// certificate was checked against TLSA records.
fn handshake_failure(e: &io::Error, dane: bool) -> ResultType {
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(e) => certificate_failure(e, dane),
        None => ResultType::ValidationFailure,
    }
}

/// The RFC 8460 result type of a TLS error; `dane` when the certificate
/// was checked against TLSA records.
pub fn certificate_failure(e: &rustls::Error, dane: bool) -> ResultType {
    use rustls::CertificateError as C;
    let rustls::Error::InvalidCertificate(cert) = e else {
        return ResultType::ValidationFailure;
    };
    match cert {
        _ if dane => ResultType::TlsaInvalid,
        C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. } => {
            ResultType::CertificateExpired
        }
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            ResultType::CertificateHostMismatch
        }
        _ => ResultType::CertificateNotTrusted,
    }
}

/// How long a session waits in a [`Pool`] for the next message, at most
/// (Postfix's connection cache keeps one 2 s by default; servers close
/// idle clients after minutes).
pub const POOL_IDLE: Duration = Duration::from_secs(5);
/// Messages sent over one pooled connection, at most.
pub const POOL_MESSAGES: usize = 100;
/// Idle sessions kept per host, at most.
pub const POOL_PER_HOST: usize = 8;

/// Sessions kept open after a transaction for the next message to the
/// same host (address and name): a message to a host we just sent to
/// skips the TCP and TLS handshakes, the greeting and EHLO. A session
/// idle for [`POOL_IDLE`] is closed (QUIT) by [`Pool::sweep`] or when
/// next looked at.
#[derive(Default)]
pub struct Pool {
    idle: Mutex<HashMap<PoolKey, Vec<Session>>>,
}

/// A pooled session serves only the same address, host name and TLS
/// requirement it was opened for.
type PoolKey = (SocketAddr, String, HostSecurity);

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("idle", &self.idle_count())
            .finish()
    }
}

impl Pool {
    /// Sessions waiting in the pool.
    fn idle_count(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PoolKey, Vec<Session>>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A live idle session to `key`, if one waits (expired ones found on
    /// the way are closed).
    async fn take(&self, key: &PoolKey) -> Option<Session> {
        loop {
            let s = {
                let mut idle = self.lock();
                let list = idle.get_mut(key)?;
                let s = list.pop();
                if list.is_empty() {
                    idle.remove(key);
                }
                s?
            };
            if s.since.elapsed() < POOL_IDLE {
                if let Some(s) = s.still_open().await {
                    return Some(s);
                }
            } else {
                s.close().await;
            }
        }
    }

    /// Keeps `s` for the next message to `key`, or closes it when it has
    /// carried enough or the host has enough waiting.
    async fn put(&self, key: PoolKey, mut s: Session) {
        if s.messages < POOL_MESSAGES && !s.client.is_closed() {
            let mut idle = self.lock();
            let list = idle.entry(key).or_default();
            if list.len() < POOL_PER_HOST {
                s.since = Instant::now();
                list.push(s);
                return;
            }
        }
        s.close().await;
    }

    /// Closes the sessions idle for [`POOL_IDLE`] or more.
    pub async fn sweep(&self) {
        let expired: Vec<Session> = {
            let mut idle = self.lock();
            let mut out = Vec::new();
            idle.retain(|_, list| {
                let (old, keep): (Vec<_>, Vec<_>) =
                    list.drain(..).partition(|s| s.since.elapsed() >= POOL_IDLE);
                out.extend(old);
                *list = keep;
                !list.is_empty()
            });
            out
        };
        for s in expired {
            s.close().await;
        }
    }
}

/// An open SMTP session.
struct Session {
    /// Its certificate is checked against TLSA records.
    dane: bool,
    /// It was to use STARTTLS where offered.
    tls_asked: bool,
    stream: Stream,
    client: Client,
    caps: Capabilities,
    /// Transactions it carried.
    messages: usize,
    /// When it last went idle.
    since: Instant,
    buf: Vec<u8>,
    timeouts: Timeouts,
}

impl Session {
    /// `self` unless the server spoke or closed while it was idle (a
    /// 421 before closing, say): such a session is closed.
    async fn still_open(mut self) -> Option<Session> {
        let mut probe = [0u8; 512];
        match tokio::time::timeout(Duration::ZERO, self.stream.read(&mut probe)).await {
            Err(_) => Some(self),
            Ok(_) => {
                self.stream.shutdown().await.ok();
                None
            }
        }
    }

    /// QUIT, the reply awaited briefly, then the connection closed.
    async fn close(mut self) {
        self.client.quit();
        let limit = self.timeouts.reply.min(Duration::from_secs(10));
        let _ = tokio::time::timeout(limit, async {
            while !self.client.is_closed() {
                let out = self.client.take_output();
                if !out.is_empty() && self.stream.write_all(&out).await.is_err() {
                    break;
                }
                while self.client.poll_event().is_some() {}
                match self.stream.read(&mut self.buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        self.client.feed(&self.buf[..n]);
                    }
                }
            }
        })
        .await;
        self.stream.shutdown().await.ok();
    }
}

/// Sends one message to `addr`. `server_name` is the MX host name (for
/// SNI); `tls` is the client configuration for STARTTLS, which checks
/// what `security` asks of the certificate; when `security` requires TLS
/// a server without STARTTLS, or a failed handshake, gets nothing (no
/// cleartext retry). The envelope's
/// DSN parameters (RFC 3461) are sent only to a server that announces
/// DSN (RFC 3461 5.2.2: otherwise they are dropped, and the caller may
/// report the message as relayed). With a `pool`, a session it holds
/// for that host is used first (a new connection when that one fails
/// before a transaction result), and the session is left there after.
#[allow(clippy::too_many_arguments)]
pub async fn send(
    addr: SocketAddr,
    server_name: &str,
    config: &ClientConfig,
    tls: &Arc<rustls::ClientConfig>,
    security: &HostSecurity,
    envelope: &Envelope,
    message: &[u8],
    timeouts: Timeouts,
    source: &[std::net::IpAddr],
    pool: Option<&Pool>,
    seen: &mut Vec<TlsOutcome>,
) -> Attempt {
    let key = (addr, server_name.to_string(), security.clone());
    let mut config = config.clone();
    if security.requires_tls() {
        config.tls = TlsPolicy::Required;
    }
    if let Some(mut s) = match pool {
        Some(p) => p.take(&key).await,
        None => None,
    }
    .filter(|s| !lacks_requiretls(envelope, &s.caps))
    {
        let sent = s
            .client
            .send_message(for_server(envelope, &s.caps), message)
            .map_err(|e| AttemptError::Protocol(e.to_string()));
        let outcome = match sent {
            Ok(()) => s.transaction(None, addr, server_name, tls, seen).await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(r) => return finish(s, r, pool, key).await,
            // A failed reused session is worth no retry schedule: a new
            // connection goes at once (a lost reply makes a second copy
            // possible, as the retry later would).
            Err(e) => tracing::info!(%addr, error = %e, "reused session failed, connecting again"),
        }
    }
    let source = source
        .iter()
        .copied()
        .find(|ip| ip.is_ipv4() == addr.is_ipv4());
    let dane = matches!(security, HostSecurity::Authenticated(_));
    let mut fresh = async |config: ClientConfig| {
        attempt(
            addr,
            server_name,
            config,
            tls,
            envelope,
            message,
            timeouts,
            source,
            pool.is_some(),
            dane,
            seen,
        )
        .await
    };
    let outcome = match fresh(config.clone()).await {
        Err(AttemptError::Tls(e)) if config.tls == TlsPolicy::Opportunistic => {
            tracing::info!(%addr, error = %e, "TLS handshake failed, retrying without TLS");
            let mut plain = config.clone();
            plain.tls = TlsPolicy::Disabled;
            fresh(plain).await
        }
        other => other,
    };
    match outcome {
        Ok((s, r)) => finish(s, r, pool, key).await,
        Err(AttemptError::NoRequireTls) => {
            Attempt::Unsuitable(AttemptError::NoRequireTls.to_string())
        }
        Err(e) => Attempt::Failed(e.to_string()),
    }
}

/// The attempt's answer; the session goes to the pool or is closed.
async fn finish(
    mut s: Session,
    r: TransactionResult,
    pool: Option<&Pool>,
    key: PoolKey,
) -> Attempt {
    s.messages += 1;
    let caps = s.caps.clone();
    match pool {
        Some(p) => p.put(key, s).await,
        None => s.close().await,
    }
    Attempt::Done(r, caps)
}

#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("TLS handshake: {0}")]
    Tls(io::Error),
    #[error("{0}")]
    Protocol(String),
    #[error("timed out waiting for the server")]
    Timeout,
    #[error("the server does not offer REQUIRETLS")]
    NoRequireTls,
}

/// A new connection carrying the message (QUIT pipelined behind it when
/// the session will not be kept).
#[allow(clippy::too_many_arguments)]
async fn attempt(
    addr: SocketAddr,
    server_name: &str,
    config: ClientConfig,
    tls: &Arc<rustls::ClientConfig>,
    envelope: &Envelope,
    message: &[u8],
    timeouts: Timeouts,
    source: Option<std::net::IpAddr>,
    keep: bool,
    dane: bool,
    seen: &mut Vec<TlsOutcome>,
) -> Result<(Session, TransactionResult), AttemptError> {
    let connect = async {
        match source {
            None => TcpStream::connect(addr).await,
            Some(ip) => {
                let socket = if ip.is_ipv4() {
                    tokio::net::TcpSocket::new_v4()?
                } else {
                    tokio::net::TcpSocket::new_v6()?
                };
                socket.bind(SocketAddr::new(ip, 0))?;
                socket.connect(addr).await
            }
        }
    };
    let tcp = tokio::time::timeout(timeouts.connect, connect)
        .await
        .map_err(|_| AttemptError::Timeout)??;
    tcp.set_nodelay(true).ok();
    let tls_asked = config.tls != TlsPolicy::Disabled;
    let mut s = Session {
        dane,
        tls_asked,
        stream: Stream::Plain(tcp),
        client: Client::new(config),
        caps: Capabilities::default(),
        messages: 0,
        since: Instant::now(),
        buf: vec![0u8; 16 * 1024],
        timeouts,
    };
    // The message is handed to the machine once the server's capabilities
    // are known (they decide the DSN parameters).
    let pending = Some((envelope, message, keep));
    let r = s.transaction(pending, addr, server_name, tls, seen).await?;
    Ok((s, r))
}

impl Session {
    /// Runs the session until the transaction queued in the machine (or
    /// `pending`, queued once the server is ready, with QUIT behind it
    /// unless the session is to be kept) has its result.
    async fn transaction(
        &mut self,
        mut pending: Option<(&Envelope, &[u8], bool)>,
        addr: SocketAddr,
        server_name: &str,
        tls: &Arc<rustls::ClientConfig>,
        seen: &mut Vec<TlsOutcome>,
    ) -> Result<TransactionResult, AttemptError> {
        loop {
            while let Some(ev) = self.client.poll_event() {
                match ev {
                    ClientEvent::Ready(c) => {
                        if self.tls_asked && matches!(self.stream, Stream::Plain(_)) {
                            seen.push(TlsOutcome::Cleartext);
                        }
                        // RFC 8689 4.2.1: a REQUIRETLS message goes only to
                        // a server that offers it (after STARTTLS).
                        if pending.is_some_and(|(e, _, _)| lacks_requiretls(e, &c)) {
                            self.client.quit();
                            return Err(AttemptError::NoRequireTls);
                        }
                        if let Some((envelope, message, keep)) = pending.take() {
                            self.client
                                .send_message(for_server(envelope, &c), message)
                                .map_err(|e| AttemptError::Protocol(e.to_string()))?;
                            if !keep {
                                self.client.quit();
                            }
                        }
                        self.caps = c;
                    }
                    ClientEvent::Transaction(r) => return Ok(r),
                    ClientEvent::Closed(err) => {
                        if let Some(scop_smtp::Error::PeerIncompatible(
                            scop_smtp::PeerIncompatible::StartTlsUnavailable,
                        )) = err
                        {
                            seen.push(TlsOutcome::Failed(
                                ResultType::StarttlsNotSupported,
                                "STARTTLS not offered".into(),
                            ));
                        }
                        return Err(AttemptError::Protocol(match err {
                            Some(e) => e.to_string(),
                            None => "the server closed the session before the transaction".into(),
                        }));
                    }
                    _ => {}
                }
            }
            let out = self.client.take_output();
            if !out.is_empty() {
                self.stream.write_all(&out).await?;
                self.stream.flush().await?;
            }
            if self.client.tls_pending() {
                let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
                    return Err(AttemptError::Protocol("STARTTLS twice".into()));
                };
                let name = ServerName::try_from(server_name.to_string())
                    .unwrap_or_else(|_| ServerName::IpAddress(addr.ip().into()));
                let connector = TlsConnector::from(tls.clone());
                let s =
                    match tokio::time::timeout(self.timeouts.reply, connector.connect(name, tcp))
                        .await
                        .map_err(|_| AttemptError::Timeout)?
                    {
                        Ok(s) => s,
                        Err(e) => {
                            let kind = handshake_failure(&e, self.dane);
                            seen.push(TlsOutcome::Failed(kind, e.to_string()));
                            return Err(AttemptError::Tls(e));
                        }
                    };
                seen.push(TlsOutcome::Established);
                self.stream = Stream::Tls(Box::new(s));
                self.client
                    .tls_established()
                    .map_err(|e| AttemptError::Protocol(e.to_string()))?;
                continue;
            }
            if self.client.is_closed() {
                return Err(AttemptError::Protocol("session closed".into()));
            }
            let n = tokio::time::timeout(self.timeouts.reply, self.stream.read(&mut self.buf))
                .await
                .map_err(|_| AttemptError::Timeout)??;
            if n == 0 {
                return Err(AttemptError::Protocol(
                    "connection closed by the server".into(),
                ));
            }
            let mut fed = 0;
            while fed < n {
                let k = self.client.feed(&self.buf[fed..n]);
                if k == 0 {
                    return Err(AttemptError::Protocol("reply buffer overflow".into()));
                }
                fed += k;
            }
        }
    }
}

/// Whether `envelope` asks for REQUIRETLS (RFC 8689) and a server with
/// capabilities `caps` does not offer it: it must not get the message.
fn lacks_requiretls(envelope: &Envelope, caps: &Capabilities) -> bool {
    envelope.params.requiretls && !caps.requiretls
}

/// The envelope as sent to a server with capabilities `caps`: without DSN
/// support, the DSN parameters are left out (RFC 3461 5.2.2).
pub fn for_server(envelope: &Envelope, caps: &Capabilities) -> Envelope {
    let mut e = envelope.clone();
    if !caps.dsn {
        e.params = MailParams {
            ret: None,
            envid: None,
            ..e.params
        };
        for (_, p) in &mut e.rcpts {
            *p = RcptParams {
                notify: None,
                orcpt: None,
                other: std::mem::take(&mut p.other),
            };
        }
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use scop_smtp::extension::{Notify, Ret};
    use scop_smtp::{ForwardPath, Mailbox, ReversePath};

    fn envelope() -> Envelope {
        Envelope {
            facts: None,
            from: ReversePath::Mailbox(Mailbox::parse("a@a.test", true).unwrap()),
            params: MailParams {
                ret: Some(Ret::Hdrs),
                envid: Some("id".into()),
                ..MailParams::default()
            },
            rcpts: vec![(
                ForwardPath::Mailbox(Mailbox::parse("b@b.test", true).unwrap()),
                RcptParams {
                    notify: Some(Notify::Never),
                    ..RcptParams::default()
                },
            )],
        }
    }

    #[test]
    fn dsn_parameters_go_only_to_a_server_that_announces_dsn() {
        let with = Capabilities {
            extended: true,
            dsn: true,
            ..Capabilities::default()
        };
        assert_eq!(for_server(&envelope(), &with), envelope());
        let without = Capabilities {
            extended: true,
            ..Capabilities::default()
        };
        let e = for_server(&envelope(), &without);
        assert_eq!((e.params.ret, e.params.envid), (None, None));
        assert_eq!(e.rcpts[0].1, RcptParams::default());
        assert_eq!(e.from, envelope().from);
    }

    #[test]
    fn handshake_failures_get_their_report_result_type() {
        use rustls::CertificateError as C;
        let failed = |c: C| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                rustls::Error::InvalidCertificate(c),
            )
        };
        for (c, want) in [
            (C::Expired, ResultType::CertificateExpired),
            (C::NotValidYet, ResultType::CertificateExpired),
            (C::NotValidForName, ResultType::CertificateHostMismatch),
            (C::UnknownIssuer, ResultType::CertificateNotTrusted),
            (C::BadSignature, ResultType::CertificateNotTrusted),
        ] {
            assert_eq!(handshake_failure(&failed(c.clone()), false), want, "{c:?}");
            // Checked against TLSA records, any certificate error is DANE's.
            assert_eq!(handshake_failure(&failed(c), true), ResultType::TlsaInvalid);
        }
        let other = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::HandshakeNotComplete,
        );
        assert_eq!(
            handshake_failure(&other, false),
            ResultType::ValidationFailure
        );
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(
            handshake_failure(&reset, true),
            ResultType::ValidationFailure
        );
    }
}
