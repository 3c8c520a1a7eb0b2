//! Test support: a software SHA-256/HMAC (tests only; production passes
//! aws-lc-rs through `ScramCrypto`), a scripted server application, and a
//! simulated network joining a client and a server (quinn's `Pair::drive`).
#![allow(dead_code)]

use std::sync::Arc;

use scop_smtp::{
    Client, ClientEvent, Event, ForwardPath, Mechanism, Reply, ReversePath, ScramCredentials,
    ScramCrypto, Server, TlsInfo,
};

const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

pub fn sha256(data: &[u8]) -> [u8; 32] {
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut msg = data.to_vec();
    let bits = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bits.to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 64];
        for i in 0..16 {
            w[i] = u32::from_be_bytes([
                block[4 * i],
                block[4 * i + 1],
                block[4 * i + 2],
                block[4 * i + 3],
            ]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 32];
    for (i, x) in h.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&sha256(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    inner.extend_from_slice(data);
    let mut outer: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    outer.extend_from_slice(&sha256(&inner));
    sha256(&outer)
}

#[derive(Debug)]
pub struct SoftCrypto;

impl ScramCrypto for SoftCrypto {
    fn sha256(&self, data: &[u8]) -> [u8; 32] {
        sha256(data)
    }
    fn hmac_sha256(&self, key: &[u8], data: &[u8]) -> [u8; 32] {
        hmac_sha256(key, data)
    }
}

pub fn crypto() -> Arc<dyn ScramCrypto> {
    Arc::new(SoftCrypto)
}

/// RFC 7677 section 3 test vector values.
pub const RFC7677_SALT_B64: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
pub const RFC7677_CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
pub const RFC7677_SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";

pub fn rfc7677_credentials() -> ScramCredentials {
    let salt = scop_smtp::codec::base64_decode(RFC7677_SALT_B64.as_bytes()).unwrap();
    ScramCredentials::derive(&SoftCrypto, "pencil", &salt, 4096)
}

/// A scripted server application: accepts everything except addresses
/// whose local part starts with `reject`, user `user` password `pencil`.
#[derive(Debug, Default)]
pub struct App {
    pub events: Vec<Event>,
    pub messages: Vec<Vec<u8>>,
    pub current: Vec<u8>,
    /// Do not answer MessageComplete (simulates a store that never acks).
    pub hold_messages: bool,
}

fn rejected_local(local: &str) -> bool {
    local.starts_with("reject")
}

impl App {
    /// Handle events and answer decisions until the server is quiet.
    pub fn drive(&mut self, s: &mut Server) {
        while let Some(e) = s.poll_event() {
            match &e {
                Event::Mail { from, .. } => {
                    let bad =
                        matches!(from, ReversePath::Mailbox(m) if rejected_local(m.local_part()));
                    if bad {
                        s.reject(
                            Reply::new(
                                550,
                                scop_smtp::EnhancedCode::new(5, 7, 1).ok(),
                                "Sender rejected",
                            )
                            .unwrap(),
                        )
                        .unwrap();
                    } else {
                        s.accept().unwrap();
                    }
                }
                Event::Rcpt { to, .. } => {
                    let bad =
                        matches!(to, ForwardPath::Mailbox(m) if rejected_local(m.local_part()));
                    if bad {
                        s.reject(
                            Reply::new(
                                550,
                                scop_smtp::EnhancedCode::new(5, 1, 1).ok(),
                                "No such user",
                            )
                            .unwrap(),
                        )
                        .unwrap();
                    } else {
                        s.accept().unwrap();
                    }
                }
                Event::DataChunk(c) => self.current.extend_from_slice(c),
                Event::MessageAborted(_) | Event::Reset => self.current.clear(),
                Event::MessageComplete => {
                    self.messages.push(std::mem::take(&mut self.current));
                    if !self.hold_messages {
                        let id = format!("Q{}", self.messages.len());
                        s.message_durable(&id).unwrap();
                    }
                }
                Event::AuthCredentials {
                    username, password, ..
                } => {
                    if username == "user" && password == "pencil" {
                        s.accept().unwrap();
                    } else {
                        s.reject(
                            Reply::new(
                                535,
                                scop_smtp::EnhancedCode::new(5, 7, 8).ok(),
                                "Bad credentials",
                            )
                            .unwrap(),
                        )
                        .unwrap();
                    }
                }
                Event::ScramLookup { username, .. } => {
                    let creds = (username == "user").then(rfc7677_credentials);
                    s.scram_credentials(creds, RFC7677_SERVER_NONCE).unwrap();
                }
                Event::ExtensionCommand { .. } => {
                    s.reply_extension(Reply::new(250, None, "extension OK").unwrap())
                        .unwrap();
                }
                _ => {}
            }
            self.events.push(e);
        }
    }
}

/// A client and a server joined by a simulated network.
#[derive(Debug)]
pub struct Pair {
    pub server: Server,
    pub client: Client,
    pub app: App,
    pub client_events: Vec<ClientEvent>,
    pub c2s: Vec<u8>,
    pub s2c: Vec<u8>,
    /// Deliver at most this many octets per hop (0: unlimited).
    pub mtu: usize,
}

impl Pair {
    pub fn new(server: Server, client: Client) -> Self {
        Pair {
            server,
            client,
            app: App::default(),
            client_events: Vec::new(),
            c2s: Vec::new(),
            s2c: Vec::new(),
            mtu: 0,
        }
    }

    /// Run until neither side has anything to say.
    pub fn drive(&mut self) {
        let mut to_client: Vec<u8> = Vec::new();
        let mut to_server: Vec<u8> = Vec::new();
        for _ in 0..100_000 {
            let mut progress = false;
            self.app.drive(&mut self.server);
            let out = self.server.take_output();
            self.s2c.extend_from_slice(&out);
            to_client.extend_from_slice(&out);
            if !to_client.is_empty() {
                let lim = if self.mtu == 0 {
                    to_client.len()
                } else {
                    self.mtu.min(to_client.len())
                };
                let n = self.client.feed(&to_client[..lim]);
                to_client.drain(..n);
                progress |= n > 0;
            }
            while let Some(e) = self.client.poll_event() {
                progress = true;
                if e == ClientEvent::StartTls {
                    // Both sides drop unread plaintext and run the handshake.
                    to_client.clear();
                    to_server.clear();
                    self.server.tls_established(TlsInfo::default()).unwrap();
                    self.client.tls_established().unwrap();
                }
                self.client_events.push(e);
            }
            let out = self.client.take_output();
            self.c2s.extend_from_slice(&out);
            to_server.extend_from_slice(&out);
            if !to_server.is_empty() {
                let lim = if self.mtu == 0 {
                    to_server.len()
                } else {
                    self.mtu.min(to_server.len())
                };
                let n = self.server.feed(&to_server[..lim]);
                to_server.drain(..n);
                progress |= n > 0;
            }
            if !progress && to_client.is_empty() && to_server.is_empty() {
                self.app.drive(&mut self.server);
                let out = self.server.take_output();
                if out.is_empty() {
                    return;
                }
                self.s2c.extend_from_slice(&out);
                to_client.extend_from_slice(&out);
            }
        }
        panic!("simulation did not settle");
    }

    pub fn transactions(&self) -> Vec<&scop_smtp::TransactionResult> {
        self.client_events
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Transaction(t) => Some(t),
                _ => None,
            })
            .collect()
    }

    pub fn authenticated(&self) -> Option<Mechanism> {
        self.client_events.iter().find_map(|e| match e {
            ClientEvent::Authenticated(m) => Some(*m),
            _ => None,
        })
    }
}

/// Feed each segment in one call (a segment is what a client sends before
/// waiting for replies), let the app decide, and collect the server output
/// per segment. A pending STARTTLS completes after its segment.
pub fn converse(s: &mut Server, app: &mut App, segments: &[&[u8]]) -> Vec<String> {
    let mut outs = Vec::new();
    app.drive(s);
    outs.push(String::from_utf8_lossy(&s.take_output()).into_owned());
    for seg in segments {
        let mut rest: &[u8] = seg;
        let mut guard = 0;
        loop {
            let n = s.feed(rest);
            rest = &rest[n..];
            app.drive(s);
            if rest.is_empty() {
                break;
            }
            guard += 1;
            assert!(guard < 1_000_000, "server stopped taking input");
        }
        outs.push(String::from_utf8_lossy(&s.take_output()).into_owned());
        if s.tls_pending() {
            s.tls_established(TlsInfo::default()).unwrap();
        }
    }
    outs
}

pub fn server_with(f: impl FnOnce(&mut scop_smtp::ServerConfig)) -> Server {
    let mut c = scop_smtp::ServerConfig::new("mx.example");
    c.scram = Some(crypto());
    f(&mut c);
    Server::new(Arc::new(c), false)
}
