//! The crate's one error enum, by who is at fault, and the one mapping from
//! error to wire reply ([`Error::reply`]).

use crate::reply::{EnhancedCode, Reply};

/// Every failure this crate reports, grouped by who is at fault
/// (the rustls `Error` layout).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The peer sent bytes that do not parse (RFC 5321 section 4.1 syntax).
    #[error("invalid input: {0}")]
    InvalidInput(#[from] InvalidInput),
    /// The peer sent well-formed input at the wrong time or beyond a limit.
    #[error("peer misbehaved: {0}")]
    PeerMisbehaved(#[from] PeerMisbehaved),
    /// The peer lacks something this side requires.
    #[error("peer incompatible: {0}")]
    PeerIncompatible(#[from] PeerIncompatible),
    /// A local policy refused an otherwise valid request.
    #[error("refused by policy: {0}")]
    Policy(#[from] PolicyRefusal),
    /// The application called the state machine wrongly.
    #[error("API misuse: {0}")]
    ApiMisuse(#[from] ApiMisuse),
}

/// Malformed input from the peer.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidInput {
    /// A command line exceeded its limit (RFC 5321 4.5.3.1.4).
    #[error("line too long")]
    LineTooLong,
    /// A line ended with LF alone (RFC 5321 2.3.8: CRLF only).
    #[error("bare LF")]
    BareLf,
    /// A CR not followed by LF (RFC 5321 2.3.8).
    #[error("bare CR")]
    BareCr,
    /// A NUL octet.
    #[error("NUL octet")]
    Nul,
    /// Bytes that are not UTF-8 where UTF-8 is allowed, or not ASCII
    /// where only ASCII is.
    #[error("invalid character encoding")]
    Encoding,
    /// A verb this server does not know (RFC 5321 4.2.4, reply 500).
    #[error("unknown command")]
    UnknownCommand,
    /// A known verb with malformed arguments (reply 501).
    #[error("syntax error in arguments")]
    Arguments,
    /// A malformed reverse-path (RFC 5321 4.1.2).
    #[error("bad reverse-path")]
    ReversePath,
    /// A malformed forward-path (RFC 5321 4.1.2).
    #[error("bad forward-path")]
    ForwardPath,
    /// A malformed domain or address literal (RFC 5321 4.1.2, 4.1.3).
    #[error("bad domain")]
    Domain,
    /// A local part, domain or path beyond RFC 5321 4.5.3.1 sizes.
    #[error("address too long")]
    AddressTooLong,
    /// A malformed ESMTP parameter (RFC 5321 4.1.2 `esmtp-param`).
    #[error("bad parameter")]
    Parameter,
    /// A known ESMTP parameter with an invalid value (e.g. `SIZE=x`).
    #[error("bad parameter value")]
    ParameterValue,
    /// Malformed base64 in an AUTH exchange (RFC 4954 4).
    #[error("bad base64")]
    Base64,
    /// Malformed SASL message (RFC 4616, RFC 5802 7).
    #[error("bad SASL message")]
    Sasl,
    /// Malformed reply line (RFC 5321 4.2).
    #[error("bad reply")]
    Reply,
    /// A DATA line beyond 1000 octets (RFC 5321 4.5.3.1.6).
    #[error("text line too long")]
    TextLineTooLong,
    /// Bare CR or LF in message data: the SMTP smuggling class.
    #[error("bare CR or LF in message data")]
    DataBareNewline,
    /// NUL in message data.
    #[error("NUL in message data")]
    DataNul,
}

/// Well-formed input out of sequence or beyond a limit.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PeerMisbehaved {
    /// A command not allowed in the current state (RFC 5321 4.1.4, 503).
    #[error("bad sequence of commands")]
    BadSequence,
    /// Commands sent before the reply they must wait for (RFC 2920 3.1).
    #[error("improper command pipelining")]
    ImproperPipelining,
    /// An ESMTP parameter no offered extension declares (555 5.5.4).
    #[error("unknown parameter")]
    UnknownParameter,
    /// The same parameter twice on one command.
    #[error("duplicate parameter")]
    DuplicateParameter,
    /// More recipients than allowed (RFC 5321 4.5.3.1.10, 452 4.5.3).
    #[error("too many recipients")]
    TooManyRecipients,
    /// Message larger than allowed (RFC 1870, 552 5.3.4).
    #[error("message too big")]
    MessageTooBig,
    /// DATA or BDAT with no accepted recipient (RFC 2920 3.1, 554).
    #[error("no valid recipients")]
    NoValidRecipients,
    /// 8-bit octets in a body not declared `BODY=8BITMIME` (RFC 6152 3).
    #[error("8-bit data without BODY=8BITMIME")]
    EightBitData,
    /// A non-ASCII address without `SMTPUTF8` (RFC 6531 3.4).
    #[error("UTF-8 address without SMTPUTF8")]
    Utf8Address,
    /// Too many errors in one session.
    #[error("too many errors")]
    TooManyErrors,
    /// Too many commands in one session.
    #[error("too many commands")]
    TooManyCommands,
    /// The client cancelled an AUTH exchange with `*` (RFC 4954 4).
    #[error("authentication cancelled")]
    AuthCancelled,
    /// Credentials were refused (RFC 4954 6, 535 5.7.8).
    #[error("authentication failed")]
    AuthFailed,
    /// A reply did not match what the command expects.
    #[error("unexpected reply")]
    UnexpectedReply,
    /// The server's SCRAM signature did not verify (RFC 5802 9).
    #[error("server signature mismatch")]
    ServerSignature,
    /// The server closed the session (421 or an unsolicited close).
    #[error("service closing")]
    Closing,
}

/// The peer lacks something this side requires.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PeerIncompatible {
    /// STARTTLS required by policy but not offered (RFC 3207).
    #[error("STARTTLS not offered")]
    StartTlsUnavailable,
    /// No AUTH mechanism in common (RFC 4954).
    #[error("no common AUTH mechanism")]
    NoAuthMechanism,
    /// The message needs SMTPUTF8 and the server lacks it (RFC 6531).
    #[error("SMTPUTF8 not offered")]
    SmtpUtf8Unavailable,
    /// The message is larger than the server's SIZE (RFC 1870).
    #[error("message exceeds the server's SIZE")]
    SizeExceeded,
    /// Neither EHLO nor HELO was accepted.
    #[error("greeting refused")]
    GreetingRefused,
    /// Envelope facts to send, and the server does not take XSCOP from us.
    #[error("XSCOP not offered")]
    FactsUnavailable,
}

/// Local policy refusals.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PolicyRefusal {
    /// AUTH before STARTTLS where policy requires TLS (RFC 3207 4, 530 5.7.0).
    #[error("AUTH requires TLS")]
    AuthRequiresTls,
    /// MAIL before AUTH where policy requires authentication (530 5.7.0).
    #[error("authentication required")]
    AuthRequired,
    /// The application rejected a request.
    #[error("rejected by the application")]
    Rejected,
}

/// The application used a state machine wrongly.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ApiMisuse {
    /// A decision method was called with no (or another) decision pending.
    #[error("no such decision pending")]
    NoDecisionPending,
    /// A rejection used a code that is not 4xx/5xx, or a bad reply code.
    #[error("invalid reply code")]
    InvalidReplyCode,
    /// `tls_established` without a STARTTLS in progress.
    #[error("no TLS handshake pending")]
    NoTlsPending,
    /// The session is closed.
    #[error("session closed")]
    Closed,
    /// An envelope with no recipient or a malformed address.
    #[error("invalid envelope")]
    InvalidEnvelope,
    /// A SCRAM nonce that is empty or not printable ASCII without comma.
    #[error("invalid nonce")]
    InvalidNonce,
    /// SCRAM needs a [`crate::ScramCrypto`] and none was configured.
    #[error("no SCRAM crypto provider")]
    NoCrypto,
}

impl Error {
    /// The reply a server sends for this error: the crate's single mapping
    /// from error to (code, enhanced status code, text)
    /// (RFC 5321 4.2.2, RFC 3463, RFC 2034).
    pub fn reply(&self) -> Reply {
        let (code, (c, s, d), text) = self.parts();
        Reply::from_static(code, EnhancedCode::new_const(c, s, d), text)
    }

    /// Whether a server closes the session after sending [`Error::reply`].
    pub fn closes_session(&self) -> bool {
        matches!(
            self,
            Error::PeerMisbehaved(
                PeerMisbehaved::TooManyErrors
                    | PeerMisbehaved::TooManyCommands
                    | PeerMisbehaved::ImproperPipelining
                    | PeerMisbehaved::Closing
            )
        )
    }

    fn parts(&self) -> (u16, (u8, u16, u16), &'static str) {
        use InvalidInput as I;
        use PeerMisbehaved as M;
        match self {
            Error::InvalidInput(e) => match e {
                I::LineTooLong => (500, (5, 5, 2), "Line too long"),
                I::BareLf => (500, (5, 5, 2), "Bare LF not allowed, lines end with CRLF"),
                I::BareCr => (500, (5, 5, 2), "Bare CR not allowed, lines end with CRLF"),
                I::Nul => (500, (5, 5, 2), "NUL not allowed"),
                I::Encoding => (500, (5, 5, 2), "Invalid character encoding"),
                I::UnknownCommand => (500, (5, 5, 1), "Command unrecognized"),
                I::Arguments => (501, (5, 5, 4), "Syntax error in parameters or arguments"),
                I::ReversePath => (501, (5, 1, 7), "Bad sender address syntax"),
                I::ForwardPath => (501, (5, 1, 3), "Bad recipient address syntax"),
                I::Domain => (501, (5, 5, 4), "Bad domain or address literal"),
                I::AddressTooLong => (501, (5, 1, 3), "Address too long"),
                I::Parameter => (501, (5, 5, 4), "Bad parameter syntax"),
                I::ParameterValue => (501, (5, 5, 4), "Bad parameter value"),
                I::Base64 => (501, (5, 5, 2), "Cannot decode base64"),
                I::Sasl => (501, (5, 5, 2), "Bad SASL message"),
                I::Reply => (500, (5, 5, 2), "Bad reply"),
                I::TextLineTooLong => (554, (5, 6, 0), "Message line too long"),
                I::DataBareNewline => (
                    554,
                    (5, 6, 0),
                    "Bare CR or LF in message data, lines end with CRLF",
                ),
                I::DataNul => (554, (5, 6, 0), "NUL in message data"),
            },
            Error::PeerMisbehaved(e) => match e {
                M::BadSequence => (503, (5, 5, 1), "Bad sequence of commands"),
                M::ImproperPipelining => (554, (5, 5, 0), "Improper command pipelining"),
                M::UnknownParameter => (555, (5, 5, 4), "Parameter not recognized"),
                M::DuplicateParameter => (501, (5, 5, 4), "Duplicate parameter"),
                M::TooManyRecipients => (452, (4, 5, 3), "Too many recipients"),
                M::MessageTooBig => (552, (5, 3, 4), "Message size exceeds fixed limit"),
                M::NoValidRecipients => (554, (5, 5, 1), "No valid recipients"),
                M::EightBitData => (554, (5, 6, 0), "8-bit data requires BODY=8BITMIME"),
                M::Utf8Address => (553, (5, 6, 7), "Non-ASCII address requires SMTPUTF8"),
                M::TooManyErrors => (421, (4, 7, 0), "Too many errors, closing connection"),
                M::TooManyCommands => (421, (4, 7, 0), "Too many commands, closing connection"),
                M::AuthCancelled => (501, (5, 0, 0), "Authentication cancelled"),
                M::AuthFailed => (535, (5, 7, 8), "Authentication credentials invalid"),
                M::UnexpectedReply => (500, (5, 5, 2), "Unexpected reply"),
                M::ServerSignature => (535, (5, 7, 8), "Server signature mismatch"),
                M::Closing => (421, (4, 3, 0), "Service closing transmission channel"),
            },
            Error::PeerIncompatible(e) => match e {
                PeerIncompatible::StartTlsUnavailable => (530, (5, 7, 0), "TLS required"),
                PeerIncompatible::NoAuthMechanism => {
                    (504, (5, 5, 4), "Unrecognized authentication type")
                }
                PeerIncompatible::SmtpUtf8Unavailable => (553, (5, 6, 7), "SMTPUTF8 required"),
                PeerIncompatible::SizeExceeded => (552, (5, 3, 4), "Message too big"),
                PeerIncompatible::GreetingRefused => (550, (5, 5, 0), "Greeting refused"),
                PeerIncompatible::FactsUnavailable => {
                    (451, (4, 3, 0), "Next hop does not take envelope facts")
                }
            },
            Error::Policy(e) => match e {
                PolicyRefusal::AuthRequiresTls => {
                    (530, (5, 7, 0), "Must issue a STARTTLS command first")
                }
                PolicyRefusal::AuthRequired => (530, (5, 7, 0), "Authentication required"),
                PolicyRefusal::Rejected => (550, (5, 7, 1), "Rejected"),
            },
            Error::ApiMisuse(_) => (451, (4, 3, 0), "Local error in processing"),
        }
    }
}
