//! SCoP's authoritative DNS primary.
//!
//! ```text
//!            bytes in (UDP/TCP)                      bytes out
//!  shell ──────────────────────► Engine::handle ──────────────────► shell
//!  (server, feature "server")        │  now (unix seconds) is an input
//!                                    ├─ queries:   Zone::lookup (RFC 1034 4.3.2, RFC 8482),
//!                                    │             RRSIGs and NSEC3/NSEC proofs when DO is set
//!                                    ├─ signing:   dnssec keys → Zone::sign, re-sign on update,
//!                                    │             Engine::refresh_signatures(now)
//!                                    ├─ UPDATE:    tsig::verify → policy → update::apply (RFC 2136)
//!                                    │             → JournalEntry (the shell fsyncs it, then replies)
//!                                    ├─ AXFR/IXFR: several messages, each TSIG-signed (RFC 8945 5.3.1)
//!                                    └─ NOTIFY:    names of changed zones (the shell sends them)
//! ```
//!
//! The core ([`Engine`], [`Zone`], [`tsig`], [`policy`], [`journal`],
//! [`client`], [`dnssec`], [`rrl`]) does no I/O: it never opens a socket or a file and never
//! reads the clock. The tokio shell lives in `server` behind the `server`
//! cargo feature; the validating resolver (hickory-resolver, DNSSEC
//! validation) in `resolver` behind the `resolver` feature. The wire format is hickory-proto's; the TSIG
//! computation, the zone logic, the update processing and the transfer
//! framing are ours, because each needs the exact bytes on the wire.
//!
//! Every limit is a named constant below; no input makes the core panic
//! (the `dns_message` fuzz target feeds it arbitrary bytes).
#![forbid(unsafe_code)]

pub mod client;
pub mod dnssec;
mod engine;
pub mod journal;
pub mod policy;
#[cfg(feature = "resolver")]
pub mod resolver;
pub mod rrl;
#[cfg(feature = "server")]
pub mod server;
mod sign;
pub mod tsig;
mod update;
mod wire;
mod zone;

pub use engine::{Engine, Outcome, Transport};
pub use hickory_proto;
pub use zone::{Lookup, Zone, ZoneDiff, parse_master, parse_master_with_ttl, serial_gt};

/// Largest DNS message accepted or produced (the TCP limit, RFC 1035 4.2.2).
pub const MAX_MESSAGE_BYTES: usize = 65_535;
/// Payload size we advertise and use over UDP when the client offers more
/// (EDNS(0), the 2020 DNS flag day value).
pub const DEFAULT_EDNS_PAYLOAD: u16 = 1232;
/// UDP payload without EDNS (RFC 1035 4.2.1).
pub const CLASSIC_UDP_PAYLOAD: u16 = 512;
/// Records in one RRset; an update that would exceed it is refused.
pub const MAX_RECORDS_PER_RRSET: usize = 1_000;
/// Records in one zone; loading or updating beyond it fails.
pub const MAX_RECORDS_PER_ZONE: usize = 1_000_000;
/// Records in the prerequisite plus update sections of one UPDATE.
pub const MAX_UPDATE_RECORDS: usize = 1_000;
/// CNAME links followed inside our own zones when answering.
pub const MAX_CNAME_CHAIN: usize = 8;
/// Journal entries kept in memory per zone for IXFR; older history falls
/// back to a full (AXFR-style) answer.
pub const MAX_HISTORY: usize = 10_000;
/// Target size of each message of a zone transfer (several records per
/// message, RFC 5936 2.2); well under [`MAX_MESSAGE_BYTES`] so a signed
/// message always fits.
pub const TRANSFER_MESSAGE_BYTES: usize = 16_000;
/// Largest master file read.
pub const MAX_ZONE_FILE_BYTES: usize = 64 << 20;

/// What went wrong, by who is at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A master file or journal could not be understood.
    #[error("{0}")]
    BadZoneData(String),
    /// A TSIG key file or secret could not be understood.
    #[error("bad TSIG key: {0}")]
    BadKey(String),
    /// A policy file could not be understood.
    #[error("bad policy: {0}")]
    BadPolicy(String),
    /// A message could not be encoded (a limit was hit).
    #[error("cannot encode message: {0}")]
    Encode(String),
    /// The server's reply could not be decoded or authenticated.
    #[error("bad reply: {0}")]
    BadReply(String),
    /// An argument given by the caller is unusable.
    #[error("{0}")]
    ApiMisuse(String),
}
