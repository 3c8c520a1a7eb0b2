//! The resolver compartment's mesh hop: the relay and the verifier ask
//! the resolver compartment, which alone holds the validating resolver
//! and its trust anchors, over mesh mTLS in DNS messages (RFC 1035 4.2.2
//! TCP framing, one question each).
//!
//! The resolver validates; what it answers over the authenticated pipe is
//! final: data (the records of the asked type, with the AD bit when
//! DNSSEC proved them), NODATA, NXDOMAIN, or SERVFAIL for anything that
//! must not be used (bogus or unavailable). Its certificate must name the
//! resolver role, so nothing else on the host can feed the relay or the
//! verifier answers.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use scop_mesh::{MeshConnector, MeshDir, MeshListener, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::client;

use crate::mxlookup::{Answer, Dns};

/// Longest wait for the resolver compartment's answer (its own lookups
/// time out before this).
pub const DNS_HOP_TIMEOUT: Duration = Duration::from_secs(20);
/// Idle connections kept to the resolver compartment.
const IDLE_MAX: usize = 8;
/// How long the resolver compartment keeps an idle connection.
const SERVER_IDLE: Duration = Duration::from_secs(120);
/// TTL written on answers (the client does not cache; the resolver does).
const ANSWER_TTL: u32 = 60;

/// A client of the resolver compartment.
#[derive(Debug)]
pub struct MeshResolver {
    connector: MeshConnector,
    addr: SocketAddr,
    ids: AtomicU16,
    idle: Mutex<Vec<client::TlsStream<TcpStream>>>,
}

impl MeshResolver {
    /// A client for compartment `me` of the resolver at `addr`.
    pub fn new(mesh: &MeshDir, me: Role, addr: SocketAddr) -> Result<Self, String> {
        let identity = mesh.load_identity(me).map_err(|e| e.to_string())?;
        let trust = mesh.load_trust().map_err(|e| e.to_string())?;
        Ok(MeshResolver {
            connector: MeshConnector::new(&identity, &trust, Role::Resolver)
                .map_err(|e| e.to_string())?,
            addr,
            ids: AtomicU16::new(1),
            idle: Mutex::default(),
        })
    }

    /// Asks for `name`/`rtype`: the answer, and whether the resolver
    /// compartment validated it (the AD bit).
    pub async fn query(&self, name: &str, rtype: RecordType) -> (Answer<RData>, bool) {
        let Ok(qname) = Name::from_ascii(format!("{}.", name.trim_end_matches('.'))) else {
            return (Answer::NxDomain, false);
        };
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
        msg.metadata.recursion_desired = true;
        msg.queries.push(Query::query(qname, rtype));
        let Ok(request) = msg.to_vec() else {
            return (Answer::Temp("cannot encode the question".into()), false);
        };
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let reply = match pooled {
            Some(stream) => match exchange(stream, &request).await {
                Ok(x) => Ok(x),
                // A stale idle connection: ask again on a new one.
                Err(_) => self.fresh(&request).await,
            },
            None => self.fresh(&request).await,
        };
        let (bytes, stream) = match reply {
            Ok(x) => x,
            Err(e) => return (Answer::Temp(format!("resolver compartment: {e}")), false),
        };
        {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < IDLE_MAX {
                idle.push(stream);
            }
        }
        answer_from(&bytes, id, rtype)
    }

    async fn fresh(
        &self,
        request: &[u8],
    ) -> Result<(Vec<u8>, client::TlsStream<TcpStream>), String> {
        let mesh = self
            .connector
            .connect(self.addr)
            .await
            .map_err(|e| e.to_string())?;
        exchange(mesh.stream, request).await
    }
}

/// One framed request and its framed reply.
async fn exchange<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut stream: S,
    request: &[u8],
) -> Result<(Vec<u8>, S), String> {
    let len = u16::try_from(request.len()).map_err(|_| "question too long".to_string())?;
    let work = async {
        let mut framed = Vec::with_capacity(request.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(request);
        stream.write_all(&framed).await?;
        stream.flush().await?;
        let mut l = [0u8; 2];
        stream.read_exact(&mut l).await?;
        let mut reply = vec![0u8; usize::from(u16::from_be_bytes(l))];
        stream.read_exact(&mut reply).await?;
        Ok::<_, std::io::Error>(reply)
    };
    match tokio::time::timeout(DNS_HOP_TIMEOUT, work).await {
        Ok(Ok(reply)) => Ok((reply, stream)),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

/// Reads the resolver compartment's reply to question `id` for `rtype`,
/// and whether it was validated (the AD bit).
fn answer_from(bytes: &[u8], id: u16, rtype: RecordType) -> (Answer<RData>, bool) {
    let Ok(msg) = Message::from_vec(bytes) else {
        return (
            Answer::Temp("resolver compartment: unreadable reply".into()),
            false,
        );
    };
    if msg.metadata.id != id || msg.metadata.message_type != MessageType::Response {
        return (
            Answer::Temp("resolver compartment: reply to another question".into()),
            false,
        );
    }
    let secure = msg.metadata.authentic_data;
    let answer = match msg.metadata.response_code {
        ResponseCode::NoError => {
            let data: Vec<RData> = msg
                .answers
                .into_iter()
                .filter(|r| r.record_type() == rtype)
                .map(|r| r.data)
                .collect();
            if data.is_empty() {
                Answer::NoData
            } else {
                Answer::Records(data)
            }
        }
        ResponseCode::NXDomain => Answer::NxDomain,
        other => {
            return (
                Answer::Temp(format!("resolver compartment: {other}")),
                false,
            );
        }
    };
    (answer, secure)
}

/// The reply of the resolver compartment to `request`, answered by `dns`.
pub async fn reply_to(dns: &Dns, request: &[u8]) -> Vec<u8> {
    let fail = |id: u16, code: ResponseCode| {
        let mut m = Message::new(id, MessageType::Response, OpCode::Query);
        m.metadata.response_code = code;
        m.to_vec().unwrap_or_default()
    };
    let Ok(req) = Message::from_vec(request) else {
        let id = request
            .get(..2)
            .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
        return fail(id, ResponseCode::FormErr);
    };
    let id = req.metadata.id;
    if req.metadata.message_type != MessageType::Query
        || req.metadata.op_code != OpCode::Query
        || req.queries.len() != 1
    {
        return fail(id, ResponseCode::FormErr);
    }
    let q = &req.queries[0];
    let mut resp = Message::new(id, MessageType::Response, OpCode::Query);
    resp.metadata.recursion_desired = req.metadata.recursion_desired;
    resp.metadata.recursion_available = true;
    resp.queries.push(q.clone());
    let (answer, secure) = dns.query_validated(&q.name.to_ascii(), q.query_type).await;
    resp.metadata.authentic_data = secure;
    match answer {
        Answer::Records(v) => {
            for data in v {
                resp.answers
                    .push(Record::from_rdata(q.name.clone(), ANSWER_TTL, data));
            }
        }
        Answer::NoData => {}
        Answer::NxDomain => resp.metadata.response_code = ResponseCode::NXDomain,
        Answer::Temp(e) => {
            tracing::info!(name = %q.name, rtype = %q.query_type, error = %e, "no usable answer");
            resp.metadata.response_code = ResponseCode::ServFail;
        }
    }
    match resp.to_vec() {
        Ok(bytes) if bytes.len() <= usize::from(u16::MAX) => bytes,
        _ => fail(id, ResponseCode::ServFail),
    }
}

/// Serves the resolver compartment's mesh listener with `dns` until
/// `stop` turns true.
pub async fn serve(listener: MeshListener, dns: Dns, stop: watch::Receiver<bool>) {
    let dns = Arc::new(dns);
    crate::hop::accept_each(Role::Resolver, listener, stop, move |mut mesh| {
        let dns = dns.clone();
        async move {
            loop {
                let mut l = [0u8; 2];
                match tokio::time::timeout(SERVER_IDLE, mesh.stream.read_exact(&mut l)).await {
                    Ok(Ok(_)) => {}
                    _ => return,
                }
                let mut request = vec![0u8; usize::from(u16::from_be_bytes(l))];
                if mesh.stream.read_exact(&mut request).await.is_err() {
                    return;
                }
                let reply = reply_to(&dns, &request).await;
                let Ok(len) = u16::try_from(reply.len()) else {
                    return;
                };
                let mut framed = Vec::with_capacity(reply.len() + 2);
                framed.extend_from_slice(&len.to_be_bytes());
                framed.extend_from_slice(&reply);
                if mesh.stream.write_all(&framed).await.is_err()
                    || mesh.stream.flush().await.is_err()
                {
                    return;
                }
            }
        }
    })
    .await
}
