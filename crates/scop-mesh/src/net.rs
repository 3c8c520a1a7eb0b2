//! tokio helpers: a listener that completes the mTLS handshake and reports
//! the peer's verified role, and a connector for a given server role. Both
//! bound the handshake with a timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConfig, ServerConfig};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio_rustls::{TlsAcceptor, TlsConnector, client, server};

use crate::tls::{client_config, peer_role, server_config, server_name};
use crate::{Identity, MeshError, PeerRole, Role, TrustBundle};

/// Default limit for TCP connect plus TLS handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// An established mesh connection and its peer's verified role.
#[derive(Debug)]
pub struct MeshStream<S> {
    /// The TLS stream.
    pub stream: S,
    /// The peer's role, checked against the CA and the hop policy.
    pub peer: PeerRole,
    /// The peer's socket address (for logs only: it grants nothing).
    pub peer_addr: SocketAddr,
}

/// A TCP listener whose connections must complete mesh mTLS.
#[derive(Debug)]
pub struct MeshListener {
    tcp: TcpListener,
    config: Arc<ServerConfig>,
    accepted: Arc<[Role]>,
    timeout: Duration,
}

impl MeshListener {
    /// Bind `addr` as `identity`'s role, accepting clients whose
    /// certificates chain to `trust` and name one of `accepted`.
    pub async fn bind(
        addr: impl ToSocketAddrs,
        identity: &Identity,
        trust: &TrustBundle,
        accepted: &[Role],
    ) -> Result<Self, MeshError> {
        let config = server_config(identity, trust, accepted)?;
        let tcp = TcpListener::bind(addr).await.map_err(MeshError::Net)?;
        Ok(MeshListener {
            tcp,
            config,
            accepted: accepted.into(),
            timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        })
    }

    /// Bind as `identity`'s role accepting exactly the roles the hop policy
    /// lets connect to it.
    pub async fn bind_policy(
        addr: impl ToSocketAddrs,
        identity: &Identity,
        trust: &TrustBundle,
    ) -> Result<Self, MeshError> {
        let accepted = identity.role().accepted_clients();
        MeshListener::bind(addr, identity, trust, &accepted).await
    }

    /// Change the handshake timeout.
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The bound address.
    pub fn local_addr(&self) -> Result<SocketAddr, MeshError> {
        self.tcp.local_addr().map_err(MeshError::Net)
    }

    /// Accept the next TCP connection. The handshake is left to
    /// [`Incoming::handshake`], so the caller can run it in its own task and
    /// one slow peer cannot hold up the accept loop.
    pub async fn accept(&self) -> Result<Incoming, MeshError> {
        let (tcp, peer_addr) = self.tcp.accept().await.map_err(MeshError::Net)?;
        Ok(Incoming {
            tcp,
            peer_addr,
            config: self.config.clone(),
            accepted: self.accepted.clone(),
            timeout: self.timeout,
        })
    }
}

/// A TCP connection accepted by a [`MeshListener`], before its handshake.
#[derive(Debug)]
pub struct Incoming {
    tcp: TcpStream,
    peer_addr: SocketAddr,
    config: Arc<ServerConfig>,
    accepted: Arc<[Role]>,
    timeout: Duration,
}

impl Incoming {
    /// The peer's address (for logs only).
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// Complete the mTLS handshake within the listener's timeout.
    pub async fn handshake(self) -> Result<MeshStream<server::TlsStream<TcpStream>>, MeshError> {
        let accept = TlsAcceptor::from(self.config).accept(self.tcp);
        let stream = tokio::time::timeout(self.timeout, accept)
            .await
            .map_err(|_| MeshError::HandshakeTimeout {
                after: self.timeout,
            })?
            .map_err(MeshError::Handshake)?;
        let peer = peer_role(stream.get_ref().1, &self.accepted)?;
        Ok(MeshStream {
            stream,
            peer,
            peer_addr: self.peer_addr,
        })
    }
}

/// Opens mesh connections to servers of one role.
#[derive(Debug, Clone)]
pub struct MeshConnector {
    config: Arc<ClientConfig>,
    server: Role,
    timeout: Duration,
}

impl MeshConnector {
    /// A connector presenting `identity` to servers of role `server`.
    pub fn new(identity: &Identity, trust: &TrustBundle, server: Role) -> Result<Self, MeshError> {
        Ok(MeshConnector {
            config: client_config(identity, trust, server)?,
            server,
            timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        })
    }

    /// Change the connect-plus-handshake timeout.
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Connect to `addr` and complete the handshake within the timeout.
    ///
    /// In TLS 1.3 the server checks the client certificate after the
    /// client's handshake is complete: a server that refuses this client's
    /// role shows up as an error on the first read, not here.
    pub async fn connect(
        &self,
        addr: SocketAddr,
    ) -> Result<MeshStream<client::TlsStream<TcpStream>>, MeshError> {
        let name = server_name(self.server)?;
        let work = async {
            let tcp = TcpStream::connect(addr).await.map_err(MeshError::Net)?;
            TlsConnector::from(self.config.clone())
                .connect(name, tcp)
                .await
                .map_err(MeshError::Handshake)
        };
        let stream = tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| MeshError::HandshakeTimeout {
                after: self.timeout,
            })??;
        let peer = peer_role(stream.get_ref().1, &[self.server])?;
        Ok(MeshStream {
            stream,
            peer,
            peer_addr: addr,
        })
    }
}

/// Connect once to a server of role `server` at `addr` as `identity`.
pub async fn connect(
    addr: SocketAddr,
    identity: &Identity,
    trust: &TrustBundle,
    server: Role,
) -> Result<MeshStream<client::TlsStream<TcpStream>>, MeshError> {
    MeshConnector::new(identity, trust, server)?
        .connect(addr)
        .await
}
