//! Named limits (RFC 5321 section 4.5.3 and local policy).
//!
//! Every size, count and length the crate bounds is one of these constants;
//! the per-session values a server applies are in [`Limits`], whose defaults
//! are these constants.

/// Maximum length of a command line, CRLF included (RFC 5321 4.5.3.1.4).
pub const COMMAND_LINE_MAX: usize = 512;

/// Maximum length of a command line when service extensions that add
/// parameters or AUTH initial responses are offered (RFC 5321 4.5.3.1.4
/// allows extensions to raise the limit; RFC 4954 section 4 asks for more
/// room for AUTH).
pub const EXTENDED_COMMAND_LINE_MAX: usize = 4096;

/// Maximum length of one line of an AUTH exchange (RFC 4954 section 4:
/// 12288 octets, CRLF included).
pub const AUTH_LINE_MAX: usize = 12288;

/// Maximum length of a text line in DATA, CRLF included (RFC 5321 4.5.3.1.6).
pub const TEXT_LINE_MAX: usize = 1000;

/// Maximum length of a reply line, CRLF included, that the reply parser
/// accepts. RFC 5321 4.5.3.1.5 sets 512 as the size every implementation
/// must accept; real servers exceed it, so the parser accepts up to this.
pub const REPLY_LINE_MAX: usize = 2048;

/// Maximum number of lines in one (multi-line) reply.
pub const REPLY_LINES_MAX: usize = 128;

/// Maximum length of a local part (RFC 5321 4.5.3.1.1).
pub const LOCAL_PART_MAX: usize = 64;

/// Maximum length of a domain (RFC 5321 4.5.3.1.2).
pub const DOMAIN_MAX: usize = 255;

/// Maximum length of a reverse-path or forward-path, angle brackets
/// included (RFC 5321 4.5.3.1.3).
pub const PATH_MAX: usize = 256;

/// Default maximum number of recipients per message. RFC 5321 4.5.3.1.8
/// requires accepting at least 100.
pub const RECIPIENTS_MAX: usize = 100;

/// Default maximum message size in octets (after dot-unstuffing), also the
/// value advertised by SIZE (RFC 1870).
pub const MESSAGE_SIZE_MAX: u64 = 50 * 1024 * 1024;

/// Default number of client errors in one session after which the server
/// replies 421 and closes (RFC 5321 4.3.2 allows closing on 421).
pub const ERRORS_PER_SESSION_MAX: u32 = 10;

/// Default number of commands in one session after which the server replies
/// 421 and closes.
pub const COMMANDS_PER_SESSION_MAX: u32 = 10_000;

/// Maximum number of ESMTP parameters on one MAIL or RCPT command.
pub const PARAMETERS_MAX: usize = 16;

/// Maximum length of an ENVID parameter after xtext decoding (RFC 3461 4.4).
pub const ENVID_MAX: usize = 100;

/// Maximum number of octets a state machine holds in its input buffer plus
/// its undelivered data events; `feed` accepts no more than this.
pub const INPUT_BUFFER_MAX: usize = 64 * 1024;

/// Size of the chunks the client sends with BDAT (RFC 3030).
pub const BDAT_CHUNK_SIZE: usize = 64 * 1024;

/// Per-session limits a server applies; defaults are the constants above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Recipients per message ([`RECIPIENTS_MAX`]).
    pub recipients: usize,
    /// Message size in octets ([`MESSAGE_SIZE_MAX`]).
    pub message_size: u64,
    /// Client errors before 421 ([`ERRORS_PER_SESSION_MAX`]).
    pub errors: u32,
    /// Commands before 421 ([`COMMANDS_PER_SESSION_MAX`]).
    pub commands: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            recipients: RECIPIENTS_MAX,
            message_size: MESSAGE_SIZE_MAX,
            errors: ERRORS_PER_SESSION_MAX,
            commands: COMMANDS_PER_SESSION_MAX,
        }
    }
}
