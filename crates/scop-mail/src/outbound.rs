//! The I/O shell around [`scop_smtp::Client`]: one connection, one
//! message, STARTTLS when offered (opportunistic, falling back to
//! plaintext on a new connection when the handshake fails), timeouts.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
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
}

type Stream = crate::stream::Stream<TlsStream<TcpStream>>;

/// Sends one message to `addr`. `server_name` is the MX host name (for
/// SNI); `tls` is the client configuration for STARTTLS. The envelope's
/// DSN parameters (RFC 3461) are sent only to a server that announces
/// DSN (RFC 3461 5.2.2: otherwise they are dropped, and the caller may
/// report the message as relayed).
#[allow(clippy::too_many_arguments)]
pub async fn send(
    addr: SocketAddr,
    server_name: &str,
    config: &ClientConfig,
    tls: &Arc<rustls::ClientConfig>,
    envelope: &Envelope,
    message: &[u8],
    timeouts: Timeouts,
    source: &[std::net::IpAddr],
) -> Attempt {
    let source = source
        .iter()
        .copied()
        .find(|ip| ip.is_ipv4() == addr.is_ipv4());
    match attempt(
        addr,
        server_name,
        config,
        tls,
        envelope,
        message,
        timeouts,
        source,
    )
    .await
    {
        Err(AttemptError::Tls(e)) if config.tls == TlsPolicy::Opportunistic => {
            tracing::info!(%addr, error = %e, "TLS handshake failed, retrying without TLS");
            let mut plain = config.clone();
            plain.tls = TlsPolicy::Disabled;
            match attempt(
                addr,
                server_name,
                &plain,
                tls,
                envelope,
                message,
                timeouts,
                source,
            )
            .await
            {
                Ok((r, caps)) => Attempt::Done(r, caps),
                Err(e) => Attempt::Failed(e.to_string()),
            }
        }
        Ok((r, caps)) => Attempt::Done(r, caps),
        Err(e) => Attempt::Failed(e.to_string()),
    }
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
}

#[allow(clippy::too_many_arguments)]
async fn attempt(
    addr: SocketAddr,
    server_name: &str,
    config: &ClientConfig,
    tls: &Arc<rustls::ClientConfig>,
    envelope: &Envelope,
    message: &[u8],
    timeouts: Timeouts,
    source: Option<std::net::IpAddr>,
) -> Result<(TransactionResult, Capabilities), AttemptError> {
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
    let mut stream = Stream::Plain(tcp);
    let mut client = Client::new(config.clone());
    // The message is handed to the machine once the server's capabilities
    // are known (they decide the DSN parameters).
    let mut caps: Option<Capabilities> = None;
    let mut result = None;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        while let Some(ev) = client.poll_event() {
            match ev {
                ClientEvent::Ready(c) if caps.is_none() => {
                    client
                        .send_message(for_server(envelope, &c), message)
                        .map_err(|e| AttemptError::Protocol(e.to_string()))?;
                    client.quit();
                    caps = Some(c);
                }
                ClientEvent::Transaction(r) => result = Some(r),
                ClientEvent::Closed(err) => {
                    let out = client.take_output();
                    if !out.is_empty() {
                        stream.write_all(&out).await.ok();
                    }
                    stream.shutdown().await.ok();
                    return match (result, err) {
                        (Some(r), _) => Ok((r, caps.unwrap_or_default())),
                        (None, Some(e)) => Err(AttemptError::Protocol(e.to_string())),
                        (None, None) => Err(AttemptError::Protocol(
                            "the server closed the session before the transaction".into(),
                        )),
                    };
                }
                _ => {}
            }
        }
        let out = client.take_output();
        if !out.is_empty() {
            stream.write_all(&out).await?;
            stream.flush().await?;
        }
        if client.tls_pending() {
            let Stream::Plain(tcp) = std::mem::replace(&mut stream, Stream::Gone) else {
                return Err(AttemptError::Protocol("STARTTLS twice".into()));
            };
            let name = ServerName::try_from(server_name.to_string())
                .unwrap_or_else(|_| ServerName::IpAddress(addr.ip().into()));
            let connector = TlsConnector::from(tls.clone());
            let s = tokio::time::timeout(timeouts.reply, connector.connect(name, tcp))
                .await
                .map_err(|_| AttemptError::Timeout)?
                .map_err(AttemptError::Tls)?;
            stream = Stream::Tls(Box::new(s));
            client
                .tls_established()
                .map_err(|e| AttemptError::Protocol(e.to_string()))?;
            continue;
        }
        if client.is_closed() {
            return result
                .map(|r| (r, caps.clone().unwrap_or_default()))
                .ok_or_else(|| AttemptError::Protocol("session closed".into()));
        }
        let n = tokio::time::timeout(timeouts.reply, stream.read(&mut buf))
            .await
            .map_err(|_| AttemptError::Timeout)??;
        if n == 0 {
            return result
                .map(|r| (r, caps.clone().unwrap_or_default()))
                .ok_or_else(|| AttemptError::Protocol("connection closed by the server".into()));
        }
        let mut fed = 0;
        while fed < n {
            let k = client.feed(&buf[fed..n]);
            if k == 0 {
                return Err(AttemptError::Protocol("reply buffer overflow".into()));
            }
            fed += k;
        }
    }
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
}
