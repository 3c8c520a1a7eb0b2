#![forbid(unsafe_code)]
//! Sans-IO SMTP for SCoP: commands, replies, the extension registry, and
//! the server and client state machines (RFC 5321 and its extensions).
//!
//! No I/O, no clock, no randomness: bytes and decisions go in, bytes and
//! events come out; SCRAM nonces and crypto are passed in. The tokio
//! compartments (`scop-mail`) own sockets, TLS and storage and drive these
//! machines.
//!
//! # Server states (RFC 5321 4.1.4)
//!
//! ```text
//!              220 greeting
//!                   |
//!                   v                  tls_established
//!              ExpectHelo <----------------------------- AwaitTls
//!                   | EHLO / HELO                           ^
//!                   v                                       | STARTTLS: 220,
//!   +---------> ExpectMail ---------------------------------+ buffered input
//!   |            |  ^   ^                                     dropped
//!   |            |  |   +--- 235 / 5xx --- ExpectAuthResponse
//!   |            |  |                             ^
//!   |            |  +--- RSET, EHLO               | AUTH (334 ...)
//!   |            |  |                             |
//!   |   MAIL     |  |                         ExpectMail
//!   | (decision) v  |
//!   |         ExpectRcpt <--- RCPT (decision); BDAT n, not LAST: 250
//!   |          |       \
//!   | DATA 354 |        \ BDAT n [LAST]
//!   |          v         v
//!   |   ReadingData    ReadingBdat
//!   |          \         /
//!   | CRLF.CRLF \       / LAST
//!   |            v     v
//!   +--- MessageComplete (decision: message_durable -> 250,
//!                                   reject -> 4xx/5xx)
//!
//!   from any state: QUIT -> 221, error or command limit -> 421,
//!   improper pipelining -> 554: Closed
//! ```
//!
//! Every decision (MAIL, RCPT, end of message, AUTH credentials, SCRAM
//! lookup, extension verb) stops the machine until the application answers
//! through [`Server::accept`], [`Server::reject`],
//! [`Server::message_durable`], [`Server::scram_credentials`] or
//! [`Server::reply_extension`]. The 250 after a message exists only as the
//! output of [`Server::message_durable`]: **never lose mail**.
//!
//! # Wire strictness
//!
//! - Commands end with CRLF only; bare CR/LF and NUL are refused
//!   ([`InvalidInput`]). Command lines are limited to
//!   [`limits::COMMAND_LINE_MAX`] (512) octets, or
//!   [`limits::EXTENDED_COMMAND_LINE_MAX`] after EHLO when extensions add
//!   parameters; an over-long line is skipped without buffering it.
//! - DATA ends only at `CRLF "." CRLF`; any bare CR or LF in the body marks
//!   the message bad, the decoder keeps looking for the real end, and the
//!   message is **rejected with 554 5.6.0 at the real end** (the session
//!   stays open). This defeats SMTP smuggling (`\n.\n`, `\r.\r`,
//!   `\n.\r\n`, `\r\n.\n`, `\r\n.\r`, ...). See [`data`].
//! - Input after STARTTLS is discarded when TLS starts, by the machine
//!   (its buffer) and, as [`Event::StartTls`] asks, by the application.
//! - Without PIPELINING, and for DATA always, a command followed by more
//!   input before its reply is improper pipelining (554, session closed).
//! - 8-bit bodies need `BODY=8BITMIME` (or SMTPUTF8), non-ASCII addresses
//!   need `SMTPUTF8`; AUTH before TLS is refused when the policy says so;
//!   too many errors or commands close the session with 421.
//!
//! # Errors
//!
//! One enum, [`Error`], by who is at fault, and one mapping to the wire:
//! [`Error::reply`].
//!
//! # Client
//!
//! [`Client`] greets (EHLO, falling back to HELO), runs STARTTLS per
//! [`TlsPolicy`], authenticates (PLAIN, LOGIN, SCRAM-SHA-256), and sends
//! queued messages with DATA (dot-stuffed) or BDAT, pipelined when offered,
//! reporting per-recipient replies in [`TransactionResult`].

pub mod auth;
pub mod client;
pub mod codec;
pub mod command;
pub mod data;
pub mod error;
pub mod extension;
pub mod fuzz;
pub mod limits;
mod line;
pub mod reply;
pub mod server;

pub use auth::{Mechanism, ScramClient, ScramCredentials, ScramCrypto};
pub use client::{
    Capabilities, Client, ClientAuth, ClientConfig, ClientEvent, Envelope, TlsPolicy,
    TransactionResult,
};
pub use command::{
    Command, Domain, ForwardPath, Host, Mailbox, Parameter, ReversePath, parse_command,
};
pub use error::{ApiMisuse, Error, InvalidInput, PeerIncompatible, PeerMisbehaved, PolicyRefusal};
pub use extension::{Builtins, Extension, MailParams, RcptParams, Registry, SessionInfo};
pub use limits::Limits;
pub use reply::{EnhancedCode, Reply, ReplyParser};
pub use server::{
    BodyTransfer, EnvelopeFacts, Event, PeerAuthorised, Server, ServerConfig, TlsInfo,
};
