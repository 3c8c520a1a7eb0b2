//! The client state machine (RFC 5321 3; EHLO capabilities 4.1.1.1;
//! STARTTLS RFC 3207; AUTH RFC 4954; PIPELINING RFC 2920; CHUNKING
//! RFC 3030).
//!
//! Bytes received go in through [`Client::feed`]; bytes to send come out of
//! [`Client::take_output`]; results come out of [`Client::poll_event`].

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use crate::auth::{Mechanism, ScramClient, ScramCrypto, decode_response, encode_plain};
use crate::codec::base64_encode;
use crate::command::{Command, ForwardPath, Host, ReversePath};
use crate::data::{dot_stuff, normalize_crlf};
use crate::error::{ApiMisuse, Error, PeerIncompatible, PeerMisbehaved};
use crate::extension::{Body, MailParams, RcptParams};
use crate::limits::{BDAT_CHUNK_SIZE, INPUT_BUFFER_MAX};
use crate::reply::{Reply, ReplyParser};
use crate::server::EnvelopeFacts;

/// What the client does about STARTTLS (RFC 3207; RFC 8461/7672 policies
/// decide which applies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsPolicy {
    /// Never STARTTLS.
    Disabled,
    /// STARTTLS when offered, plaintext otherwise.
    Opportunistic,
    /// STARTTLS or give up.
    Required,
}

/// Client credentials.
#[derive(Clone)]
pub struct ClientAuth {
    /// Authentication identity.
    pub username: String,
    /// Password.
    pub password: String,
    /// Mechanisms in order of preference.
    pub mechanisms: Vec<Mechanism>,
    /// Crypto for SCRAM (needed only if SCRAM is listed).
    pub scram: Option<Arc<dyn ScramCrypto>>,
    /// Fresh client nonce for SCRAM (printable ASCII, no comma).
    pub client_nonce: String,
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientAuth")
            .field("username", &self.username)
            .field("mechanisms", &self.mechanisms)
            .finish_non_exhaustive()
    }
}

/// Client configuration.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// EHLO argument.
    pub helo: Host,
    /// STARTTLS policy.
    pub tls: TlsPolicy,
    /// Whether TLS is already active (implicit TLS, port 465).
    pub implicit_tls: bool,
    /// Credentials for AUTH, if any.
    pub auth: Option<ClientAuth>,
    /// Use PIPELINING when offered.
    pub pipelining: bool,
    /// Use BDAT when CHUNKING is offered.
    pub chunking: bool,
}

impl ClientConfig {
    /// Opportunistic TLS, no AUTH, pipelining and chunking when offered.
    pub fn new(helo: Host) -> Self {
        ClientConfig {
            helo,
            tls: TlsPolicy::Opportunistic,
            implicit_tls: false,
            auth: None,
            pipelining: true,
            chunking: true,
        }
    }
}

/// Capabilities parsed from an EHLO reply (RFC 5321 4.1.1.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// EHLO was accepted (else HELO: no extension).
    pub extended: bool,
    /// PIPELINING.
    pub pipelining: bool,
    /// SIZE, with its limit when given (0 or absent: no limit).
    pub size: Option<u64>,
    /// 8BITMIME.
    pub eightbitmime: bool,
    /// SMTPUTF8.
    pub smtputf8: bool,
    /// ENHANCEDSTATUSCODES.
    pub enhanced_status_codes: bool,
    /// STARTTLS.
    pub starttls: bool,
    /// AUTH mechanisms, upper-cased.
    pub auth: Vec<String>,
    /// CHUNKING.
    pub chunking: bool,
    /// DSN.
    pub dsn: bool,
    /// REQUIRETLS.
    pub requiretls: bool,
    /// Other keywords with their parameters.
    pub other: Vec<(String, Vec<String>)>,
}

impl Capabilities {
    /// Parse a 250 reply to EHLO (first line is the greeting).
    pub fn from_ehlo(reply: &Reply) -> Self {
        let mut c = Capabilities {
            extended: true,
            ..Default::default()
        };
        for line in reply.lines().iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(kw) = words.next() else { continue };
            let mut kw = kw.to_ascii_uppercase();
            let mut params: Vec<String> = words.map(str::to_string).collect();
            // Pre-RFC 4954 servers advertise "AUTH=MECH ...".
            if let Some(first) = kw.strip_prefix("AUTH=") {
                params.insert(0, first.to_string());
                kw = "AUTH".into();
            }
            match kw.as_str() {
                "PIPELINING" => c.pipelining = true,
                "SIZE" => c.size = Some(params.first().and_then(|p| p.parse().ok()).unwrap_or(0)),
                "8BITMIME" => c.eightbitmime = true,
                "SMTPUTF8" => c.smtputf8 = true,
                "ENHANCEDSTATUSCODES" => c.enhanced_status_codes = true,
                "STARTTLS" => c.starttls = true,
                "AUTH" => {
                    for p in params {
                        let p = p.to_ascii_uppercase();
                        if !c.auth.contains(&p) {
                            c.auth.push(p);
                        }
                    }
                }
                "CHUNKING" => c.chunking = true,
                "DSN" => c.dsn = true,
                "REQUIRETLS" => c.requiretls = true,
                _ => c.other.push((kw, params)),
            }
        }
        c
    }
}

/// One message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Reverse-path.
    pub from: ReversePath,
    /// MAIL parameters (SIZE, BODY and SMTPUTF8 are filled in as needed).
    pub params: MailParams,
    /// Recipients with their parameters.
    pub rcpts: Vec<(ForwardPath, RcptParams)>,
    /// Envelope facts to send with XSCOP before MAIL (mesh hops only: the
    /// server must announce XSCOP, or the transaction fails locally).
    pub facts: Option<EnvelopeFacts>,
}

/// The outcome of one transaction, with per-recipient replies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionResult {
    /// Reply to MAIL (None if never sent).
    pub mail: Option<Reply>,
    /// Each recipient with its RCPT reply (None if never sent).
    pub rcpts: Vec<(ForwardPath, Option<Reply>)>,
    /// Reply after the body (DATA end or BDAT LAST).
    pub data: Option<Reply>,
    /// A local error that stopped the transaction.
    pub error: Option<Error>,
}

impl TransactionResult {
    /// Whether the server took responsibility for the message (for the
    /// recipients whose RCPT reply was positive).
    pub fn delivered(&self) -> bool {
        self.data.as_ref().is_some_and(Reply::is_positive)
    }

    /// Recipients accepted by RCPT.
    pub fn accepted(&self) -> impl Iterator<Item = &ForwardPath> {
        self.rcpts
            .iter()
            .filter(|(_, r)| r.as_ref().is_some_and(Reply::is_positive))
            .map(|(f, _)| f)
    }
}

/// Events for the application.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// Greeted (and TLS/AUTH done as configured): messages can be sent.
    Ready(Capabilities),
    /// The server accepted STARTTLS: write out pending output, **drop any
    /// unread plaintext**, run the handshake, then call
    /// [`Client::tls_established`].
    StartTls,
    /// AUTH succeeded.
    Authenticated(Mechanism),
    /// A transaction finished.
    Transaction(TransactionResult),
    /// The session ended (None: after QUIT/221).
    Closed(Option<Error>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Greeting,
    Ehlo,
    Helo,
    StartTls,
    Auth,
    Facts,
    Mail,
    Rcpt(usize),
    Data,
    DataEnd,
    Bdat { last: bool },
    Rset,
    Quit,
}

#[derive(Debug)]
enum AuthState {
    None,
    Plain,
    Login(u8),
    Scram(Box<ScramClient>, u8),
}

#[derive(Debug)]
struct Txn {
    env: Envelope,
    body: Vec<u8>,
    result: TransactionResult,
    pipelined: bool,
    bdat: bool,
    next_rcpt: usize,
    bdat_offset: usize,
    /// A sender check: MAIL (after its facts), then RSET; no recipient,
    /// no body.
    probe: bool,
}

/// A client session.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    parser: ReplyParser,
    out: Vec<u8>,
    events: VecDeque<ClientEvent>,
    expect: VecDeque<Expect>,
    caps: Capabilities,
    tls: bool,
    tls_pending: bool,
    authenticated: bool,
    auth: AuthState,
    auth_mech: Option<Mechanism>,
    ready: bool,
    queue: VecDeque<(Envelope, Vec<u8>)>,
    txn: Option<Txn>,
    quit_requested: bool,
    closed: bool,
}

impl Client {
    /// A new session, waiting for the server greeting.
    pub fn new(config: ClientConfig) -> Self {
        let tls = config.implicit_tls;
        Client {
            config,
            parser: ReplyParser::new(),
            out: Vec::new(),
            events: VecDeque::new(),
            expect: VecDeque::from([Expect::Greeting]),
            caps: Capabilities::default(),
            tls,
            tls_pending: false,
            authenticated: false,
            auth: AuthState::None,
            auth_mech: None,
            ready: false,
            queue: VecDeque::new(),
            txn: None,
            quit_requested: false,
            closed: false,
        }
    }

    /// Feed bytes received from the server; returns how many were taken.
    pub fn feed(&mut self, data: &[u8]) -> usize {
        if self.closed || self.tls_pending {
            return data.len();
        }
        let n = data
            .len()
            .min(INPUT_BUFFER_MAX.saturating_sub(self.parser.buffered()));
        self.parser.push(&data[..n]);
        self.process();
        n
    }

    /// Bytes to send to the server.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// Whether the session is over.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Whether TLS is active.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Whether the machine waits for [`Client::tls_established`].
    pub fn tls_pending(&self) -> bool {
        self.tls_pending
    }

    /// Queue a message. `message` is normalised to CRLF line endings and
    /// dot-stuffed (DATA) or chunked (BDAT).
    pub fn send_message(&mut self, envelope: Envelope, message: &[u8]) -> Result<(), Error> {
        if self.closed || self.quit_requested {
            return Err(ApiMisuse::Closed.into());
        }
        if envelope.rcpts.is_empty() {
            return Err(ApiMisuse::InvalidEnvelope.into());
        }
        self.queue.push_back((envelope, message.to_vec()));
        self.maybe_start();
        Ok(())
    }

    /// Queue a sender check: XSCOP facts (if any) and MAIL, then RSET.
    /// The [`ClientEvent::Transaction`] carries the MAIL reply; no
    /// recipient is given, so nothing can be delivered. A next hop uses
    /// it to ask, before taking a message, whether it would refuse the
    /// sender or the client the facts describe.
    pub fn check_sender(&mut self, mut envelope: Envelope) -> Result<(), Error> {
        if self.closed || self.quit_requested {
            return Err(ApiMisuse::Closed.into());
        }
        envelope.rcpts.clear();
        self.queue.push_back((envelope, Vec::new()));
        self.maybe_start();
        Ok(())
    }

    /// Send QUIT once queued messages are done.
    pub fn quit(&mut self) {
        if self.closed {
            return;
        }
        self.quit_requested = true;
        self.maybe_start();
    }

    /// The TLS handshake completed: send EHLO again (RFC 3207 4.2).
    pub fn tls_established(&mut self) -> Result<(), Error> {
        if !self.tls_pending {
            return Err(ApiMisuse::NoTlsPending.into());
        }
        self.tls_pending = false;
        self.tls = true;
        self.parser.clear();
        self.caps = Capabilities::default();
        self.send_cmd(&Command::Ehlo(self.config.helo.clone()));
        self.expect.push_back(Expect::Ehlo);
        Ok(())
    }

    fn send_cmd(&mut self, c: &Command) {
        c.write_to(&mut self.out);
    }

    fn fail(&mut self, e: Error, send_quit: bool) {
        if let Some(mut t) = self.txn.take() {
            t.result.error = Some(e.clone());
            self.events.push_back(ClientEvent::Transaction(t.result));
        }
        if send_quit {
            self.send_cmd(&Command::Quit);
        }
        self.closed = true;
        self.expect.clear();
        self.events.push_back(ClientEvent::Closed(Some(e)));
    }

    fn process(&mut self) {
        while !self.closed && !self.tls_pending {
            let reply = match self.parser.next_reply() {
                Ok(Some(r)) => r,
                Ok(None) => return,
                Err(e) => return self.fail(e, true),
            };
            if reply.code() == 421 {
                return self.fail(PeerMisbehaved::Closing.into(), false);
            }
            let Some(exp) = self.expect.pop_front() else {
                return self.fail(PeerMisbehaved::UnexpectedReply.into(), true);
            };
            self.on_reply(exp, reply);
        }
    }

    fn on_reply(&mut self, exp: Expect, r: Reply) {
        match exp {
            Expect::Greeting => {
                if r.code() != 220 {
                    return self.fail(PeerIncompatible::GreetingRefused.into(), true);
                }
                self.send_cmd(&Command::Ehlo(self.config.helo.clone()));
                self.expect.push_back(Expect::Ehlo);
            }
            Expect::Ehlo => {
                if r.is_positive() {
                    self.caps = Capabilities::from_ehlo(&r);
                    self.after_ehlo();
                } else if r.is_permanent() && !self.tls {
                    self.send_cmd(&Command::Helo(self.config.helo.clone()));
                    self.expect.push_back(Expect::Helo);
                } else {
                    self.fail(PeerIncompatible::GreetingRefused.into(), true);
                }
            }
            Expect::Helo => {
                if r.is_positive() {
                    self.caps = Capabilities::default();
                    self.after_ehlo();
                } else {
                    self.fail(PeerIncompatible::GreetingRefused.into(), true);
                }
            }
            Expect::StartTls => {
                if r.code() == 220 {
                    self.tls_pending = true;
                    self.parser.clear();
                    self.events.push_back(ClientEvent::StartTls);
                } else if self.config.tls == TlsPolicy::Required {
                    self.fail(PeerIncompatible::StartTlsUnavailable.into(), true);
                } else {
                    self.after_tls();
                }
            }
            Expect::Auth => self.auth_reply(r),
            Expect::Quit => {
                self.closed = true;
                self.events.push_back(ClientEvent::Closed(None));
            }
            Expect::Rset => self.finish_txn(),
            Expect::Facts
            | Expect::Mail
            | Expect::Rcpt(_)
            | Expect::Data
            | Expect::DataEnd
            | Expect::Bdat { .. } => self.txn_reply(exp, r),
        }
    }

    fn after_ehlo(&mut self) {
        if !self.tls && self.config.tls != TlsPolicy::Disabled && self.caps.starttls {
            self.send_cmd(&Command::StartTls);
            self.expect.push_back(Expect::StartTls);
        } else if !self.tls && self.config.tls == TlsPolicy::Required {
            self.fail(PeerIncompatible::StartTlsUnavailable.into(), true);
        } else {
            self.after_tls();
        }
    }

    fn after_tls(&mut self) {
        let Some(auth) = self.config.auth.clone().filter(|_| !self.authenticated) else {
            return self.become_ready();
        };
        let mech = auth.mechanisms.iter().copied().find(|m| {
            self.caps.auth.iter().any(|a| a == m.name())
                && (*m != Mechanism::ScramSha256 || auth.scram.is_some())
        });
        let Some(mech) = mech else {
            return self.fail(PeerIncompatible::NoAuthMechanism.into(), true);
        };
        self.auth_mech = Some(mech);
        let initial = match mech {
            Mechanism::Plain => {
                self.auth = AuthState::Plain;
                Some(encode_plain("", &auth.username, &auth.password))
            }
            Mechanism::Login => {
                self.auth = AuthState::Login(0);
                None
            }
            Mechanism::ScramSha256 => {
                let (c, first) =
                    ScramClient::new(&auth.username, &auth.password, &auth.client_nonce);
                self.auth = AuthState::Scram(Box::new(c), 0);
                Some(base64_encode(first.as_bytes()))
            }
        };
        self.send_cmd(&Command::Auth {
            mechanism: mech.name().to_string(),
            initial,
        });
        self.expect.push_back(Expect::Auth);
    }

    fn auth_reply(&mut self, r: Reply) {
        let Some(auth) = self.config.auth.clone() else {
            return self.fail(PeerMisbehaved::UnexpectedReply.into(), true);
        };
        if r.code() == 235 {
            if let AuthState::Scram(_, step) = &self.auth
                && *step < 2
            {
                // RFC 5802 9: success without a verified server signature.
                return self.fail(PeerMisbehaved::ServerSignature.into(), true);
            }
            self.authenticated = true;
            self.auth = AuthState::None;
            if let Some(m) = self.auth_mech {
                self.events.push_back(ClientEvent::Authenticated(m));
            }
            return self.become_ready();
        }
        if r.code() != 334 {
            return self.fail(PeerMisbehaved::AuthFailed.into(), true);
        }
        let challenge = match decode_response(r.lines()[0].as_bytes()) {
            Ok(c) => c,
            Err(e) => return self.fail(e, true),
        };
        let response: Vec<u8> = match &mut self.auth {
            AuthState::Login(step @ 0) => {
                *step = 1;
                auth.username.into_bytes()
            }
            AuthState::Login(step @ 1) => {
                *step = 2;
                auth.password.into_bytes()
            }
            AuthState::Scram(c, step @ 0) => {
                let Some(crypto) = auth.scram.as_deref() else {
                    return self.fail(ApiMisuse::NoCrypto.into(), true);
                };
                match c.server_first(crypto, &challenge) {
                    Ok(f) => {
                        *step = 1;
                        f.into_bytes()
                    }
                    Err(e) => return self.fail(e, true),
                }
            }
            AuthState::Scram(c, step @ 1) => match c.server_final(&challenge) {
                Ok(()) => {
                    *step = 2;
                    Vec::new()
                }
                Err(e) => return self.fail(e, true),
            },
            _ => return self.fail(PeerMisbehaved::UnexpectedReply.into(), true),
        };
        self.out
            .extend_from_slice(base64_encode(&response).as_bytes());
        self.out.extend_from_slice(b"\r\n");
        self.expect.push_back(Expect::Auth);
    }

    fn become_ready(&mut self) {
        if !self.ready {
            self.ready = true;
            self.events.push_back(ClientEvent::Ready(self.caps.clone()));
        }
        self.maybe_start();
    }

    fn maybe_start(&mut self) {
        while self.ready && !self.closed && self.txn.is_none() && self.expect.is_empty() {
            let Some((env, msg)) = self.queue.pop_front() else {
                if self.quit_requested {
                    self.send_cmd(&Command::Quit);
                    self.expect.push_back(Expect::Quit);
                }
                return;
            };
            self.start_txn(env, msg);
        }
    }

    fn start_txn(&mut self, mut env: Envelope, msg: Vec<u8>) {
        let body = normalize_crlf(&msg);
        let mut result = TransactionResult {
            mail: None,
            rcpts: env.rcpts.iter().map(|(f, _)| (f.clone(), None)).collect(),
            data: None,
            error: None,
        };
        let ascii = env.from.is_ascii() && env.rcpts.iter().all(|(r, _)| r.is_ascii());
        let local_error = if !ascii && !self.caps.smtputf8 {
            Some(PeerIncompatible::SmtpUtf8Unavailable.into())
        } else if env.facts.is_some() && !self.caps.other.iter().any(|(k, _)| k == "XSCOP") {
            Some(PeerIncompatible::FactsUnavailable.into())
        } else if matches!(self.caps.size, Some(max) if max > 0 && body.len() as u64 > max) {
            Some(PeerIncompatible::SizeExceeded.into())
        } else {
            None
        };
        if let Some(e) = local_error {
            result.error = Some(e);
            self.events.push_back(ClientEvent::Transaction(result));
            return;
        }
        if !ascii {
            env.params.smtputf8 = true;
        }
        if self.caps.size.is_some() {
            env.params.size = Some(body.len() as u64);
        }
        if self.caps.eightbitmime && body.iter().any(|&b| b >= 0x80) {
            env.params.body = Some(Body::EightBitMime);
        }
        if !self.caps.extended {
            env.params = MailParams::default();
            for r in &mut env.rcpts {
                r.1 = RcptParams::default();
            }
        }
        let pipelined = self.config.pipelining && self.caps.pipelining;
        let bdat = self.config.chunking && self.caps.chunking;
        let facts = env.facts.take();
        let probe = env.rcpts.is_empty();
        let mut t = Txn {
            env,
            body,
            result,
            pipelined,
            bdat,
            next_rcpt: 0,
            bdat_offset: 0,
            probe,
        };
        match facts {
            Some(f) => {
                // XSCOP is answered before MAIL goes out, so refused facts
                // never let a transaction start without them.
                self.out.extend_from_slice(xscop_line(&f).as_bytes());
                self.expect.push_back(Expect::Facts);
            }
            None => self.send_mail(&mut t),
        }
        self.txn = Some(t);
    }

    fn send_mail(&mut self, t: &mut Txn) {
        self.send_cmd(&Command::Mail {
            from: t.env.from.clone(),
            params: t.env.params.to_params(),
        });
        self.expect.push_back(Expect::Mail);
        if t.probe {
            if t.pipelined {
                self.send_cmd(&Command::Rset);
                self.expect.push_back(Expect::Rset);
            }
            return;
        }
        if t.pipelined {
            while t.next_rcpt < t.env.rcpts.len() {
                self.send_rcpt(t);
            }
            self.send_body_command(t);
        }
    }

    fn send_rcpt(&mut self, t: &mut Txn) {
        let (to, params) = &t.env.rcpts[t.next_rcpt];
        let c = Command::Rcpt {
            to: to.clone(),
            params: params.to_params(),
        };
        self.send_cmd(&c);
        self.expect.push_back(Expect::Rcpt(t.next_rcpt));
        t.next_rcpt += 1;
    }

    fn send_body_command(&mut self, t: &mut Txn) {
        if t.bdat {
            // RFC 3030 4.2: without PIPELINING, one chunk per round trip.
            loop {
                let end = (t.bdat_offset + BDAT_CHUNK_SIZE).min(t.body.len());
                let last = end == t.body.len();
                Command::Bdat {
                    size: (end - t.bdat_offset) as u64,
                    last,
                }
                .write_to(&mut self.out);
                self.out.extend_from_slice(&t.body[t.bdat_offset..end]);
                t.bdat_offset = end;
                self.expect.push_back(Expect::Bdat { last });
                if last || !t.pipelined {
                    break;
                }
            }
        } else {
            self.send_cmd(&Command::Data);
            self.expect.push_back(Expect::Data);
        }
    }

    fn txn_reply(&mut self, exp: Expect, r: Reply) {
        let Some(mut t) = self.txn.take() else {
            return self.fail(PeerMisbehaved::UnexpectedReply.into(), true);
        };
        let mut done = false;
        match exp {
            Expect::Facts => {
                if r.is_positive() {
                    self.send_mail(&mut t);
                } else {
                    t.result.mail = Some(r);
                    done = true;
                }
            }
            Expect::Mail if t.probe => {
                t.result.mail = Some(r);
                if !t.pipelined {
                    self.send_cmd(&Command::Rset);
                    self.expect.push_back(Expect::Rset);
                }
            }
            Expect::Mail => {
                let ok = r.is_positive();
                t.result.mail = Some(r);
                if !t.pipelined {
                    if ok {
                        self.send_rcpt(&mut t);
                    } else {
                        done = true;
                    }
                }
            }
            Expect::Rcpt(i) => {
                if let Some(slot) = t.result.rcpts.get_mut(i) {
                    slot.1 = Some(r);
                }
                if !t.pipelined {
                    if t.next_rcpt < t.env.rcpts.len() {
                        self.send_rcpt(&mut t);
                    } else if t.result.accepted().next().is_some() {
                        self.send_body_command(&mut t);
                    } else {
                        self.send_cmd(&Command::Rset);
                        self.expect.push_back(Expect::Rset);
                    }
                }
            }
            Expect::Data => {
                if r.code() == 354 {
                    if t.result.accepted().next().is_some() {
                        let wire = dot_stuff(&t.body);
                        self.out.extend_from_slice(&wire);
                    } else {
                        // RFC 2920 3.1: end the empty message at once.
                        self.out.extend_from_slice(b".\r\n");
                    }
                    self.expect.push_back(Expect::DataEnd);
                } else {
                    t.result.data = Some(r);
                    done = true;
                }
            }
            Expect::DataEnd => {
                t.result.data = Some(r);
                done = true;
            }
            Expect::Bdat { last } => {
                let ok = r.is_positive();
                if (last || !ok) && t.result.data.is_none() {
                    t.result.data = Some(r);
                }
                if last || (!ok && !t.pipelined) {
                    done = true;
                } else if !t.pipelined {
                    self.send_body_command(&mut t);
                }
            }
            _ => {}
        }
        if done {
            // Replies still expected for this transaction (pipelined
            // commands after a failure) are consumed before finishing.
            if self.expect.iter().any(|e| {
                matches!(
                    e,
                    Expect::Rcpt(_) | Expect::Data | Expect::DataEnd | Expect::Bdat { .. }
                )
            }) {
                self.txn = Some(t);
                return;
            }
            self.events.push_back(ClientEvent::Transaction(t.result));
            self.maybe_start();
        } else {
            self.txn = Some(t);
            if self.expect.is_empty() {
                self.finish_txn();
            }
        }
    }

    fn finish_txn(&mut self) {
        if let Some(t) = self.txn.take() {
            self.events.push_back(ClientEvent::Transaction(t.result));
        }
        self.maybe_start();
    }
}

/// The XSCOP command line carrying `f` (xtext values, RFC 3461 4).
fn xscop_line(f: &EnvelopeFacts) -> String {
    let mut line = String::from("XSCOP");
    let addr = f.addr.map(|a| a.to_string());
    for (k, v) in [
        ("ADDR", addr.as_deref()),
        ("HELO", f.helo.as_deref()),
        ("LOGIN", f.login.as_deref()),
        ("TLS", f.tls.as_deref()),
        ("SPAM", f.spam.as_deref()),
    ] {
        if let Some(v) = v {
            line.push(' ');
            line.push_str(k);
            line.push('=');
            line.push_str(&crate::codec::xtext_encode(v));
        }
    }
    line.push_str("\r\n");
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::ReplyParser;

    #[test]
    fn capabilities_parse() {
        let mut p = ReplyParser::new();
        p.push(b"250-mx.example hi\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-AUTH PLAIN LOGIN\r\n250-AUTH=LOGIN CRAM-MD5\r\n250-XFOO a b\r\n250 CHUNKING\r\n");
        let c = Capabilities::from_ehlo(&p.next_reply().unwrap().unwrap());
        assert!(c.pipelining && c.chunking && !c.starttls);
        assert_eq!(c.size, Some(1000));
        assert_eq!(c.auth, ["PLAIN", "LOGIN", "CRAM-MD5"]);
        assert_eq!(
            c.other,
            [("XFOO".to_string(), vec!["a".to_string(), "b".to_string()])]
        );
    }
}
