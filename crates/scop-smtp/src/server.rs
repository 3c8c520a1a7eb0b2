//! The server state machine (RFC 5321 3, 4.1.4 order of commands).
//!
//! Bytes go in through [`Server::feed`]; [`Event`]s for the application come
//! out of [`Server::poll_event`] and bytes to send out of
//! [`Server::take_output`]. Events that need an answer (MAIL, RCPT,
//! message complete, AUTH credentials, extension commands) stop the machine
//! until the application calls a decision method; the 250 after DATA/BDAT
//! LAST is only produced by [`Server::message_durable`].

use std::collections::VecDeque;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use crate::auth::{
    Mechanism, ScramCredentials, ScramCrypto, ScramServerStart, ScramServerWait, decode_plain,
    decode_response,
};
use crate::codec::{base64_decode, base64_encode, xtext_decode};
use crate::command::{Command, ForwardPath, Host, ReversePath, parse_command};
use crate::data::{BdatChecker, DataDecoder, DataStatus};
use crate::error::{ApiMisuse, Error, InvalidInput, PeerMisbehaved, PolicyRefusal};
use crate::extension::{Body, MailParams, RcptParams, Registry, SessionInfo};
use crate::limits::{
    AUTH_LINE_MAX, COMMAND_LINE_MAX, EXTENDED_COMMAND_LINE_MAX, INPUT_BUFFER_MAX, Limits,
};
use crate::line::{Input, LineRead};
use crate::reply::Reply;

/// Proof that the peer presented a certificate naming a mesh role allowed
/// to send XSCOP envelope facts. Only the mesh TLS layer should make one,
/// after verifying the peer certificate against the internal CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAuthorised {
    role: String,
}

impl PeerAuthorised {
    /// Make the proof for a peer whose verified certificate names `role`.
    /// Call this only from the code that verified the certificate chain.
    pub fn from_verified_certificate(role: &str) -> Self {
        PeerAuthorised {
            role: role.to_string(),
        }
    }

    /// The role the certificate names.
    pub fn role(&self) -> &str {
        &self.role
    }
}

/// What the TLS layer reports once STARTTLS completes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsInfo {
    /// Protocol version, e.g. `TLSv1.3`.
    pub protocol: String,
    /// Cipher suite name.
    pub cipher: String,
}

/// Envelope facts carried by XSCOP from an authorised mesh peer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EnvelopeFacts {
    /// Original client IP address (`ADDR`).
    pub addr: Option<IpAddr>,
    /// Original HELO/EHLO argument (`HELO`).
    pub helo: Option<String>,
    /// Authenticated user at the first hop (`LOGIN`).
    pub login: Option<String>,
    /// TLS description at the first hop (`TLS`).
    pub tls: Option<String>,
    /// Spam verdict (`SPAM`).
    pub spam: Option<String>,
}

/// Server configuration, shared by sessions.
#[derive(Debug)]
pub struct ServerConfig {
    /// Host name used in the greeting and EHLO reply.
    pub hostname: String,
    /// Offered extensions.
    pub registry: Registry,
    /// Limits.
    pub limits: Limits,
    /// Crypto for SCRAM-SHA-256; SCRAM is offered only when present and
    /// listed in the AUTH mechanisms.
    pub scram: Option<Arc<dyn ScramCrypto>>,
    /// MAIL requires prior AUTH (submission policy, RFC 6409 4.1).
    pub require_auth: bool,
}

impl ServerConfig {
    /// Defaults: all built-ins, AUTH PLAIN/LOGIN under TLS, default limits.
    pub fn new(hostname: &str) -> Self {
        ServerConfig {
            hostname: hostname.to_string(),
            registry: Registry::default(),
            limits: Limits::default(),
            scram: None,
            require_auth: false,
        }
    }
}

/// How the message body arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyTransfer {
    /// DATA (RFC 5321 4.1.1.4).
    Data,
    /// BDAT (RFC 3030).
    Bdat,
}

/// Events for the application.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// EHLO or HELO was accepted (informational).
    Helo {
        /// The client's argument.
        host: Host,
        /// EHLO (true) or HELO.
        extended: bool,
    },
    /// MAIL: answer with [`Server::accept`] or [`Server::reject`].
    Mail {
        /// Reverse-path.
        from: ReversePath,
        /// Validated parameters.
        params: MailParams,
    },
    /// RCPT: answer with [`Server::accept`] or [`Server::reject`].
    Rcpt {
        /// Forward-path.
        to: ForwardPath,
        /// Validated parameters.
        params: RcptParams,
    },
    /// The body starts (after 354, or with the first BDAT chunk).
    DataStart(BodyTransfer),
    /// A piece of the message (dot-unstuffed).
    DataChunk(Vec<u8>),
    /// The whole message was received: store it durably, then call
    /// [`Server::message_durable`], or [`Server::reject`].
    MessageComplete,
    /// The message being received is rejected (the reply follows at its
    /// end): drop what was stored of it.
    MessageAborted(Error),
    /// The transaction was reset (RSET, EHLO, or a failed BDAT).
    Reset,
    /// STARTTLS accepted: write out pending output, **drop any plaintext you
    /// have read but not fed** (the machine dropped `discarded` octets it
    /// held), run the handshake, then call [`Server::tls_established`].
    StartTls {
        /// Octets of pipelined plaintext the machine discarded.
        discarded: usize,
    },
    /// PLAIN or LOGIN credentials: verify, then [`Server::accept`] or
    /// [`Server::reject`].
    AuthCredentials {
        /// Mechanism used.
        mechanism: Mechanism,
        /// Authorization identity (empty: same as username).
        authzid: String,
        /// Authentication identity.
        username: String,
        /// Password.
        password: String,
    },
    /// SCRAM: look the user up, then [`Server::scram_credentials`].
    ScramLookup {
        /// Authentication identity.
        username: String,
        /// Authorization identity.
        authzid: Option<String>,
    },
    /// Authentication succeeded.
    Authenticated {
        /// Mechanism used.
        mechanism: Mechanism,
        /// Authenticated identity.
        username: String,
    },
    /// XSCOP facts from an authorised peer.
    Facts(EnvelopeFacts),
    /// A verb declared by a custom extension: answer with
    /// [`Server::reply_extension`].
    ExtensionCommand {
        /// Upper-cased verb.
        verb: String,
        /// Arguments.
        args: String,
    },
}

#[derive(Debug)]
struct Transaction {
    from: ReversePath,
    params: MailParams,
    rcpts: Vec<ForwardPath>,
    bdat: Option<BdatChecker>,
}

impl Transaction {
    fn allow_8bit(&self) -> bool {
        self.params.body == Some(Body::EightBitMime) || self.params.smtputf8
    }
}

#[derive(Debug)]
enum AuthStep {
    Plain,
    LoginUser,
    LoginPass(String),
    ScramFirst,
    ScramFinal(Box<ScramServerWait>),
    ScramAck(String),
}

/// The states of RFC 5321 4.1.4, as an enum of `Expect*` states.
#[derive(Debug)]
enum State {
    ExpectHelo,
    ExpectMail,
    ExpectRcpt(Box<Transaction>),
    ReadingData(Box<Transaction>, DataDecoder),
    ReadingBdat {
        txn: Option<Box<Transaction>>,
        remaining: u64,
        last: bool,
        failure: Option<Error>,
        greeted: bool,
        size: u64,
    },
    ExpectAuthResponse(Mechanism, AuthStep),
    AwaitTls,
    Closed,
}

#[derive(Debug)]
enum Pending {
    Mail(ReversePath, MailParams),
    Rcpt(ForwardPath),
    Message(Box<Transaction>),
    Auth(Mechanism, String),
    Scram(Box<ScramServerStart>),
    Extension,
}

/// A server session.
pub struct Server {
    config: Arc<ServerConfig>,
    state: State,
    pending: Option<Pending>,
    input: Input,
    out: Vec<u8>,
    events: VecDeque<Event>,
    queued_data: usize,
    extended: bool,
    tls: bool,
    authenticated: Option<String>,
    peer: Option<PeerAuthorised>,
    errors: u32,
    commands: u32,
    discarded: usize,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("state", &self.state)
            .field("pending", &self.pending)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A new session; `tls` is true for implicit TLS (port 465). The 220
    /// greeting is queued as output.
    pub fn new(config: Arc<ServerConfig>, tls: bool) -> Self {
        let mut s = Server {
            config,
            state: State::ExpectHelo,
            pending: None,
            input: Input::default(),
            out: Vec::new(),
            events: VecDeque::new(),
            queued_data: 0,
            extended: false,
            tls,
            authenticated: None,
            peer: None,
            errors: 0,
            commands: 0,
            discarded: 0,
        };
        let greet = Reply::plain(220, vec![format!("{} ESMTP", s.config.hostname)]);
        s.send(&greet);
        s
    }

    /// Mark the peer as an authorised mesh compartment, enabling XSCOP.
    pub fn authorise_peer(&mut self, proof: PeerAuthorised) {
        self.peer = Some(proof);
    }

    /// Feed received bytes; returns how many were accepted (fewer than
    /// given when a decision is pending and the buffer is full: feed the
    /// rest later). Input after the session closed, or while a TLS
    /// handshake is pending, is discarded and counted as accepted.
    pub fn feed(&mut self, data: &[u8]) -> usize {
        match self.state {
            State::Closed => return data.len(),
            State::AwaitTls => {
                self.discarded += data.len();
                return data.len();
            }
            _ => {}
        }
        let room = INPUT_BUFFER_MAX.saturating_sub(self.input.len() + self.queued_data);
        let n = data.len().min(room);
        self.input.push(&data[..n]);
        self.process();
        n
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        let e = self.events.pop_front()?;
        if let Event::DataChunk(c) = &e {
            self.queued_data -= c.len();
        }
        Some(e)
    }

    /// Bytes to write to the client.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Whether the session is over (after writing the output, close).
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Whether a decision from the application is awaited.
    pub fn decision_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Whether the machine waits for [`Server::tls_established`].
    pub fn tls_pending(&self) -> bool {
        matches!(self.state, State::AwaitTls)
    }

    /// Whether TLS is active.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The authenticated identity, if any.
    pub fn authenticated(&self) -> Option<&str> {
        self.authenticated.as_deref()
    }

    /// The current transaction's reverse-path and accepted recipients
    /// (also while a completed message awaits its decision).
    pub fn envelope(&self) -> Option<(&ReversePath, &[ForwardPath])> {
        let t = match (&self.state, &self.pending) {
            (_, Some(Pending::Message(t))) => t,
            (State::ExpectRcpt(t) | State::ReadingData(t, _), _) => t,
            (State::ReadingBdat { txn: Some(t), .. }, _) => t,
            _ => return None,
        };
        Some((&t.from, &t.rcpts))
    }

    /// Octets of plaintext discarded because they followed STARTTLS.
    pub fn discarded_plaintext(&self) -> usize {
        self.discarded
    }

    /// The TLS handshake completed: the session restarts in the
    /// pre-EHLO state with everything learned in plaintext forgotten
    /// (RFC 3207 4.2).
    pub fn tls_established(&mut self, _info: TlsInfo) -> Result<(), Error> {
        if !matches!(self.state, State::AwaitTls) {
            return Err(ApiMisuse::NoTlsPending.into());
        }
        self.tls = true;
        self.extended = false;
        self.authenticated = None;
        self.state = State::ExpectHelo;
        Ok(())
    }

    /// Accept the pending MAIL, RCPT or AUTH credentials.
    pub fn accept(&mut self) -> Result<(), Error> {
        match self.pending.take() {
            Some(Pending::Mail(from, params)) => {
                self.state = State::ExpectRcpt(Box::new(Transaction {
                    from,
                    params,
                    rcpts: Vec::new(),
                    bdat: None,
                }));
                self.send(&Reply::with(250, (2, 1, 0), "Sender OK"));
            }
            Some(Pending::Rcpt(to)) => {
                if let State::ExpectRcpt(t) = &mut self.state {
                    t.rcpts.push(to);
                }
                self.send(&Reply::with(250, (2, 1, 5), "Recipient OK"));
            }
            Some(Pending::Auth(mechanism, username)) => {
                self.authenticated = Some(username.clone());
                self.events.push_back(Event::Authenticated {
                    mechanism,
                    username,
                });
                self.send(&Reply::with(235, (2, 7, 0), "Authentication successful"));
            }
            other => {
                self.pending = other;
                return Err(ApiMisuse::NoDecisionPending.into());
            }
        }
        self.process();
        Ok(())
    }

    /// Reject the pending request with `reply` (4xx or 5xx).
    pub fn reject(&mut self, reply: Reply) -> Result<(), Error> {
        if !(reply.is_transient() || reply.is_permanent()) {
            return Err(ApiMisuse::InvalidReplyCode.into());
        }
        let failed_auth = match self.pending.take() {
            None => return Err(ApiMisuse::NoDecisionPending.into()),
            Some(Pending::Auth(..) | Pending::Scram(_)) => {
                self.state = State::ExpectMail;
                true
            }
            Some(Pending::Message(_)) => {
                self.events.push_back(Event::Reset);
                false
            }
            Some(_) => false,
        };
        self.send(&reply);
        if failed_auth {
            // Failed authentications count towards the error limit.
            self.count_error();
        }
        self.process();
        Ok(())
    }

    /// The completed message is durably stored (fsync'd): send the 250.
    pub fn message_durable(&mut self, queue_id: &str) -> Result<(), Error> {
        match self.pending.take() {
            Some(Pending::Message(_)) => {
                let id: String = queue_id
                    .chars()
                    .filter(|c| c.is_ascii_graphic())
                    .take(64)
                    .collect();
                self.send(&Reply::with(250, (2, 0, 0), format!("OK queued as {id}")));
                self.process();
                Ok(())
            }
            other => {
                self.pending = other;
                Err(ApiMisuse::NoDecisionPending.into())
            }
        }
    }

    /// Answer a SCRAM lookup with the user's stored credentials and a fresh
    /// server nonce (printable ASCII, no comma). `None` fails the exchange;
    /// to avoid revealing unknown users, pass made-up credentials instead.
    pub fn scram_credentials(
        &mut self,
        creds: Option<ScramCredentials>,
        server_nonce: &str,
    ) -> Result<(), Error> {
        if !crate::auth::valid_nonce(server_nonce) {
            return Err(ApiMisuse::InvalidNonce.into());
        }
        let start = match self.pending.take() {
            Some(Pending::Scram(s)) => s,
            other => {
                self.pending = other;
                return Err(ApiMisuse::NoDecisionPending.into());
            }
        };
        match creds {
            None => {
                self.state = State::ExpectMail;
                self.client_error(PeerMisbehaved::AuthFailed.into());
            }
            Some(c) => {
                let (first, wait) = start.server_first(c, server_nonce)?;
                self.state = State::ExpectAuthResponse(
                    Mechanism::ScramSha256,
                    AuthStep::ScramFinal(Box::new(wait)),
                );
                self.send_continue(first.as_bytes());
            }
        }
        self.process();
        Ok(())
    }

    /// Answer a custom extension command.
    pub fn reply_extension(&mut self, reply: Reply) -> Result<(), Error> {
        match self.pending.take() {
            Some(Pending::Extension) => {
                self.send(&reply);
                self.process();
                Ok(())
            }
            other => {
                self.pending = other;
                Err(ApiMisuse::NoDecisionPending.into())
            }
        }
    }

    fn session_info(&self) -> SessionInfo {
        SessionInfo {
            tls: self.tls,
            authenticated: self.authenticated.is_some(),
            peer_authorised: self.peer.is_some() && self.config.registry.builtins.xscop,
        }
    }

    fn send(&mut self, r: &Reply) {
        let enh = self.config.registry.builtins.enhanced_status_codes;
        r.write_to(&mut self.out, enh);
    }

    fn send_continue(&mut self, data: &[u8]) {
        self.send(&Reply::plain(334, vec![base64_encode(data)]));
    }

    fn close(&mut self) {
        self.state = State::Closed;
        self.pending = None;
        self.input.clear();
    }

    fn count_error(&mut self) {
        self.errors += 1;
        if self.errors >= self.config.limits.errors {
            let e = Error::from(PeerMisbehaved::TooManyErrors);
            self.send(&e.reply());
            self.close();
        }
    }

    /// Send the reply for a client error, count it, close if needed.
    fn client_error(&mut self, e: Error) {
        self.send(&e.reply());
        if e.closes_session() {
            self.close();
            return;
        }
        if !matches!(
            e,
            Error::PeerMisbehaved(
                PeerMisbehaved::MessageTooBig | PeerMisbehaved::TooManyRecipients
            )
        ) {
            self.count_error();
        }
    }

    fn line_limit(&self) -> usize {
        if self.extended && self.config.registry.extended_lines() {
            EXTENDED_COMMAND_LINE_MAX
        } else {
            COMMAND_LINE_MAX
        }
    }

    fn pipelining(&self) -> bool {
        self.extended && self.config.registry.builtins.pipelining
    }

    fn process(&mut self) {
        loop {
            if self.pending.is_some() {
                return;
            }
            match &mut self.state {
                State::Closed | State::AwaitTls => return,
                State::ReadingData(_, dec) => {
                    let had_error = dec.error().is_some();
                    // Decoding never lengthens: one allocation.
                    let mut chunk = Vec::with_capacity(self.input.bytes().len());
                    let (n, st) = dec.decode(self.input.bytes(), &mut chunk);
                    let new_error = if had_error {
                        None
                    } else {
                        dec.error().cloned()
                    };
                    self.input.consume(n);
                    self.push_chunk(chunk);
                    if let Some(e) = new_error {
                        self.events.push_back(Event::MessageAborted(e));
                    }
                    if st == DataStatus::NeedMore {
                        return;
                    }
                    let State::ReadingData(txn, dec) =
                        std::mem::replace(&mut self.state, State::ExpectMail)
                    else {
                        return;
                    };
                    match dec.error() {
                        Some(e) => self.client_error(e.clone()),
                        None => {
                            self.events.push_back(Event::MessageComplete);
                            self.pending = Some(Pending::Message(txn));
                        }
                    }
                }
                State::ReadingBdat {
                    txn,
                    remaining,
                    failure,
                    ..
                } => {
                    let take = (*remaining).min(self.input.len() as u64) as usize;
                    let mut chunk = Vec::new();
                    let mut new_error = None;
                    if let (Some(t), None) = (txn.as_mut(), failure.as_ref())
                        && let Some(c) = t.bdat.as_mut()
                    {
                        c.chunk(&self.input.bytes()[..take], &mut chunk);
                        new_error = c.error().cloned();
                    }
                    *remaining -= take as u64;
                    let done = *remaining == 0;
                    if let Some(e) = &new_error {
                        *failure = Some(e.clone());
                    }
                    self.input.consume(take);
                    self.push_chunk(chunk);
                    if let Some(e) = new_error {
                        self.events.push_back(Event::MessageAborted(e));
                    }
                    if !done {
                        return;
                    }
                    self.finish_bdat_chunk();
                }
                State::ExpectAuthResponse(..) => match self.input.read_line(AUTH_LINE_MAX) {
                    LineRead::NeedMore => return,
                    LineRead::Invalid(e) => {
                        self.state = State::ExpectMail;
                        self.client_error(e.into());
                    }
                    LineRead::Line(l) => self.auth_line(&l),
                },
                _ => {
                    let limit = self.line_limit();
                    match self.input.read_line(limit) {
                        LineRead::NeedMore => return,
                        LineRead::Invalid(e) => {
                            if self.count_command() {
                                self.client_error(e.into());
                            }
                        }
                        LineRead::Line(l) => {
                            if self.count_command() {
                                self.command_line(&l);
                            }
                        }
                    }
                }
            }
        }
    }

    fn push_chunk(&mut self, chunk: Vec<u8>) {
        if !chunk.is_empty() {
            self.queued_data += chunk.len();
            self.events.push_back(Event::DataChunk(chunk));
        }
    }

    fn count_command(&mut self) -> bool {
        self.commands += 1;
        if self.commands > self.config.limits.commands {
            let e = Error::from(PeerMisbehaved::TooManyCommands);
            self.send(&e.reply());
            self.close();
            return false;
        }
        true
    }

    fn finish_bdat_chunk(&mut self) {
        let State::ReadingBdat {
            txn,
            last,
            failure,
            greeted,
            size,
            ..
        } = std::mem::replace(&mut self.state, State::ExpectMail)
        else {
            return;
        };
        if !greeted {
            self.state = State::ExpectHelo;
        }
        let Some(mut txn) = txn else {
            // Chunk read for a BDAT that was refused up front.
            self.client_error(failure.unwrap_or(PeerMisbehaved::BadSequence.into()));
            return;
        };
        if let Some(e) = failure {
            self.events.push_back(Event::Reset);
            self.client_error(e);
            return;
        }
        if last {
            if let Some(c) = txn.bdat.as_mut() {
                c.finish();
                if let Some(e) = c.error().cloned() {
                    self.events.push_back(Event::MessageAborted(e.clone()));
                    self.events.push_back(Event::Reset);
                    self.client_error(e);
                    return;
                }
            }
            self.events.push_back(Event::MessageComplete);
            self.pending = Some(Pending::Message(txn));
        } else {
            self.state = State::ExpectRcpt(txn);
            self.send(&Reply::with(
                250,
                (2, 0, 0),
                format!("{size} octets received"),
            ));
        }
    }

    fn reset_transaction(&mut self) {
        if matches!(self.state, State::ExpectRcpt(_)) {
            self.events.push_back(Event::Reset);
        }
        if !matches!(self.state, State::ExpectHelo) {
            self.state = State::ExpectMail;
        }
    }

    fn command_line(&mut self, line: &[u8]) {
        let utf8 = self.extended && self.config.registry.builtins.smtputf8;
        let cmd = match parse_command(line, utf8) {
            Ok(c) => c,
            Err(e) => {
                self.client_error(e);
                return;
            }
        };
        // RFC 2920 3.1: without PIPELINING the client waits for each reply;
        // with it, commands that change state in ways the client must see
        // (DATA) may only end a group.
        // BDAT is followed by its chunk by design (RFC 3030 2).
        let must_be_last = (!self.pipelining() && !matches!(cmd, Command::Bdat { .. }))
            || matches!(cmd, Command::Data);
        let pipelined_early = must_be_last && !self.input.is_empty();
        if pipelined_early && !matches!(cmd, Command::Quit | Command::StartTls) {
            self.client_error(PeerMisbehaved::ImproperPipelining.into());
            return;
        }
        self.command(cmd);
    }

    fn greeted(&self) -> bool {
        !matches!(self.state, State::ExpectHelo)
    }

    fn command(&mut self, cmd: Command) {
        let seq = || Error::from(PeerMisbehaved::BadSequence);
        match cmd {
            Command::Ehlo(host) => {
                self.reset_transaction();
                self.state = State::ExpectMail;
                self.extended = true;
                let mut lines = vec![format!("{} greets {host}", self.config.hostname)];
                lines.extend(
                    self.config
                        .registry
                        .ehlo_lines(&self.session_info(), self.config.limits.message_size),
                );
                self.send(&Reply::plain(250, lines));
                self.events.push_back(Event::Helo {
                    host,
                    extended: true,
                });
            }
            Command::Helo(host) => {
                self.reset_transaction();
                self.state = State::ExpectMail;
                self.extended = false;
                self.send(&Reply::plain(250, vec![self.config.hostname.clone()]));
                self.events.push_back(Event::Helo {
                    host,
                    extended: false,
                });
            }
            Command::Mail { from, params } => {
                if !matches!(self.state, State::ExpectMail) {
                    return self.client_error(seq());
                }
                if self.config.require_auth && self.authenticated.is_none() {
                    return self.client_error(PolicyRefusal::AuthRequired.into());
                }
                let params = if self.extended {
                    self.config.registry.mail_params(
                        &params,
                        &self.session_info(),
                        self.config.limits.message_size,
                    )
                } else if params.is_empty() {
                    Ok(MailParams::default())
                } else {
                    Err(PeerMisbehaved::UnknownParameter.into())
                };
                let params = match params {
                    Ok(p) => p,
                    Err(e) => return self.client_error(e),
                };
                if !from.is_ascii() && !params.smtputf8 {
                    return self.client_error(PeerMisbehaved::Utf8Address.into());
                }
                self.pending = Some(Pending::Mail(from.clone(), params.clone()));
                self.events.push_back(Event::Mail { from, params });
            }
            Command::Rcpt { to, params } => {
                let (n, smtputf8, bdat) = match &self.state {
                    State::ExpectRcpt(t) => (t.rcpts.len(), t.params.smtputf8, t.bdat.is_some()),
                    _ => return self.client_error(seq()),
                };
                if bdat {
                    return self.client_error(seq());
                }
                if n >= self.config.limits.recipients {
                    return self.client_error(PeerMisbehaved::TooManyRecipients.into());
                }
                let params = if self.extended {
                    self.config
                        .registry
                        .rcpt_params(&params, &self.session_info())
                } else if params.is_empty() {
                    Ok(RcptParams::default())
                } else {
                    Err(PeerMisbehaved::UnknownParameter.into())
                };
                let params = match params {
                    Ok(p) => p,
                    Err(e) => return self.client_error(e),
                };
                if !to.is_ascii() && !smtputf8 {
                    return self.client_error(PeerMisbehaved::Utf8Address.into());
                }
                self.pending = Some(Pending::Rcpt(to.clone()));
                self.events.push_back(Event::Rcpt { to, params });
            }
            Command::Data => {
                let State::ExpectRcpt(t) = std::mem::replace(&mut self.state, State::ExpectMail)
                else {
                    return self.client_error(seq());
                };
                if t.bdat.is_some() {
                    self.state = State::ExpectRcpt(t);
                    return self.client_error(seq());
                }
                if t.rcpts.is_empty() {
                    self.state = State::ExpectRcpt(t);
                    return self.client_error(PeerMisbehaved::NoValidRecipients.into());
                }
                let dec = DataDecoder::new(self.config.limits.message_size, t.allow_8bit());
                self.state = State::ReadingData(t, dec);
                self.send(&Reply::plain(
                    354,
                    vec!["End data with <CR><LF>.<CR><LF>".into()],
                ));
                self.events.push_back(Event::DataStart(BodyTransfer::Data));
            }
            Command::Bdat { size, last } if self.config.registry.builtins.chunking => {
                // RFC 3030 2: the chunk is always read, even when refused.
                let greeted = self.greeted();
                let state = std::mem::replace(&mut self.state, State::ExpectMail);
                let (txn, failure) = match state {
                    State::ExpectRcpt(mut t) if !t.rcpts.is_empty() => {
                        if t.bdat.is_none() {
                            t.bdat = Some(BdatChecker::new(
                                self.config.limits.message_size,
                                t.allow_8bit(),
                            ));
                            self.events.push_back(Event::DataStart(BodyTransfer::Bdat));
                        }
                        (Some(t), None)
                    }
                    State::ExpectRcpt(_) => {
                        self.events.push_back(Event::Reset);
                        (None, Some(Error::from(PeerMisbehaved::NoValidRecipients)))
                    }
                    _ => (None, Some(seq())),
                };
                self.state = State::ReadingBdat {
                    txn,
                    remaining: size,
                    last,
                    failure,
                    greeted,
                    size,
                };
                if size == 0 {
                    self.finish_bdat_chunk();
                }
            }
            Command::Rset => {
                if !matches!(self.state, State::ExpectHelo) {
                    self.reset_transaction();
                }
                self.send(&Reply::with(250, (2, 0, 0), "Reset OK"));
            }
            Command::Noop => self.send(&Reply::with(250, (2, 0, 0), "OK")),
            Command::Quit => {
                self.send(&Reply::with(221, (2, 0, 0), "Bye"));
                self.close();
            }
            Command::Help(_) => self.send(&Reply::with(
                214,
                (2, 0, 0),
                "See RFC 5321 https://www.rfc-editor.org/rfc/rfc5321",
            )),
            Command::Vrfy(_) => self.send(&Reply::with(
                252,
                (2, 5, 0),
                "Cannot VRFY user, but will accept message and attempt delivery",
            )),
            Command::Expn(_) => self.send(&Reply::with(502, (5, 5, 1), "EXPN not implemented")),
            Command::StartTls if self.config.registry.builtins.starttls && !self.tls => {
                if !matches!(self.state, State::ExpectMail) || !self.extended {
                    return self.client_error(seq());
                }
                self.send(&Reply::with(220, (2, 0, 0), "Ready to start TLS"));
                let discarded = self.input.clear();
                self.discarded += discarded;
                self.state = State::AwaitTls;
                self.events.push_back(Event::StartTls { discarded });
            }
            Command::Auth { mechanism, initial }
                if !self.config.registry.builtins.auth.is_empty() =>
            {
                self.auth_command(&mechanism, initial)
            }
            Command::Other { verb, args }
                if verb == "XSCOP" && self.session_info().peer_authorised =>
            {
                if !matches!(self.state, State::ExpectMail) {
                    return self.client_error(seq());
                }
                match parse_xscop(&args) {
                    Ok(f) => {
                        self.events.push_back(Event::Facts(f));
                        self.send(&Reply::with(250, (2, 0, 0), "Facts accepted"));
                    }
                    Err(e) => self.client_error(e),
                }
            }
            Command::Other { verb, args }
                if self.extended
                    && self
                        .config
                        .registry
                        .verb(&verb, &self.session_info())
                        .is_some() =>
            {
                self.pending = Some(Pending::Extension);
                self.events
                    .push_back(Event::ExtensionCommand { verb, args });
            }
            _ => self.client_error(InvalidInput::UnknownCommand.into()),
        }
    }
}

impl Server {
    fn auth_command(&mut self, mechanism: &str, initial: Option<String>) {
        let info = self.session_info();
        if !self.config.registry.auth_offered(&info) {
            return self.client_error(PolicyRefusal::AuthRequiresTls.into());
        }
        if !self.extended
            || self.authenticated.is_some()
            || !matches!(self.state, State::ExpectMail)
        {
            return self.client_error(PeerMisbehaved::BadSequence.into());
        }
        let mech = Mechanism::from_name(mechanism)
            .filter(|m| self.config.registry.builtins.auth.contains(m))
            .filter(|m| *m != Mechanism::ScramSha256 || self.config.scram.is_some());
        let Some(mech) = mech else {
            return self.client_error(crate::error::PeerIncompatible::NoAuthMechanism.into());
        };
        let initial = match initial {
            None => None,
            Some(i) if i == "=" => Some(Vec::new()),
            Some(i) => match base64_decode(i.as_bytes()) {
                Ok(v) => Some(v),
                Err(e) => return self.client_error(e),
            },
        };
        match (mech, initial) {
            (Mechanism::Plain, Some(msg)) => self.auth_plain(&msg),
            (Mechanism::Plain, None) => {
                self.state = State::ExpectAuthResponse(mech, AuthStep::Plain);
                self.send(&Reply::plain(334, vec![String::new()]));
            }
            (Mechanism::Login, Some(user)) => self.login_user(user),
            (Mechanism::Login, None) => {
                self.state = State::ExpectAuthResponse(mech, AuthStep::LoginUser);
                self.send_continue(b"Username:");
            }
            (Mechanism::ScramSha256, Some(msg)) => self.scram_first(&msg),
            (Mechanism::ScramSha256, None) => {
                self.state = State::ExpectAuthResponse(mech, AuthStep::ScramFirst);
                self.send(&Reply::plain(334, vec![String::new()]));
            }
        }
        // RFC 4954 4: a client waits for a 334 before answering.
        if matches!(self.state, State::ExpectAuthResponse(..)) && !self.input.is_empty() {
            self.state = State::ExpectMail;
            self.client_error(PeerMisbehaved::ImproperPipelining.into());
        }
    }

    fn auth_plain(&mut self, msg: &[u8]) {
        self.state = State::ExpectMail;
        match decode_plain(msg) {
            Ok((authzid, username, password)) => {
                self.pending = Some(Pending::Auth(Mechanism::Plain, username.clone()));
                self.events.push_back(Event::AuthCredentials {
                    mechanism: Mechanism::Plain,
                    authzid,
                    username,
                    password,
                });
            }
            Err(e) => self.client_error(e),
        }
    }

    fn login_user(&mut self, user: Vec<u8>) {
        match String::from_utf8(user) {
            Ok(u) if !u.is_empty() => {
                self.state = State::ExpectAuthResponse(Mechanism::Login, AuthStep::LoginPass(u));
                self.send_continue(b"Password:");
            }
            _ => {
                self.state = State::ExpectMail;
                self.client_error(InvalidInput::Sasl.into());
            }
        }
    }

    fn scram_first(&mut self, msg: &[u8]) {
        self.state = State::ExpectMail;
        match ScramServerStart::parse(msg) {
            Ok(start) => {
                self.events.push_back(Event::ScramLookup {
                    username: start.username.clone(),
                    authzid: start.authzid.clone(),
                });
                self.pending = Some(Pending::Scram(Box::new(start)));
            }
            Err(e) => self.client_error(e),
        }
    }

    fn auth_line(&mut self, line: &[u8]) {
        let State::ExpectAuthResponse(mech, step) =
            std::mem::replace(&mut self.state, State::ExpectMail)
        else {
            return;
        };
        let msg = match decode_response(line) {
            Ok(m) => m,
            Err(e) => return self.client_error(e),
        };
        match step {
            AuthStep::Plain => self.auth_plain(&msg),
            AuthStep::LoginUser => self.login_user(msg),
            AuthStep::LoginPass(username) => match String::from_utf8(msg) {
                Ok(password) if !password.is_empty() => {
                    self.pending = Some(Pending::Auth(mech, username.clone()));
                    self.events.push_back(Event::AuthCredentials {
                        mechanism: mech,
                        authzid: String::new(),
                        username,
                        password,
                    });
                }
                _ => self.client_error(InvalidInput::Sasl.into()),
            },
            AuthStep::ScramFirst => self.scram_first(&msg),
            AuthStep::ScramFinal(wait) => {
                let Some(crypto) = self.config.scram.clone() else {
                    return self.client_error(ApiMisuse::NoCrypto.into());
                };
                match wait.client_final(&*crypto, &msg) {
                    Ok(server_final) => {
                        self.state = State::ExpectAuthResponse(
                            mech,
                            AuthStep::ScramAck(wait.username().to_string()),
                        );
                        self.send_continue(server_final.as_bytes());
                    }
                    Err(e) => self.client_error(e),
                }
            }
            AuthStep::ScramAck(username) => {
                if !msg.is_empty() {
                    return self.client_error(InvalidInput::Sasl.into());
                }
                self.authenticated = Some(username.clone());
                self.events.push_back(Event::Authenticated {
                    mechanism: mech,
                    username,
                });
                self.send(&Reply::with(235, (2, 7, 0), "Authentication successful"));
            }
        }
    }
}

fn parse_xscop(args: &str) -> Result<EnvelopeFacts, Error> {
    let mut f = EnvelopeFacts::default();
    if args.trim().is_empty() {
        return Err(InvalidInput::Arguments.into());
    }
    for item in args.split(' ').filter(|s| !s.is_empty()) {
        let (k, v) = item.split_once('=').ok_or(InvalidInput::Parameter)?;
        let v = xtext_decode(v)?;
        if v.is_empty() || v.len() > 255 || v.chars().any(char::is_control) {
            return Err(InvalidInput::ParameterValue.into());
        }
        let slot = match k.to_ascii_uppercase().as_str() {
            "ADDR" => {
                f.addr = Some(v.parse().map_err(|_| InvalidInput::ParameterValue)?);
                continue;
            }
            "HELO" => &mut f.helo,
            "LOGIN" => &mut f.login,
            "TLS" => &mut f.tls,
            "SPAM" => &mut f.spam,
            _ => return Err(PeerMisbehaved::UnknownParameter.into()),
        };
        *slot = Some(v);
    }
    Ok(f)
}
