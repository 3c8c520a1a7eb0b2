#![forbid(unsafe_code)]
//! The mail compartments of SCoP, as tokio shells over the sans-IO
//! `scop-smtp` machines:
//!
//! - [`submission`]: 587 (STARTTLS) and 465 (implicit TLS), AUTH required
//!   and offered only under TLS, sender ownership, per-user limits.
//! - [`mx`]: port 25, recipients checked at RCPT, never an open relay,
//!   early-talker and per-address limits, durable delivery before 250.
//! - [`relay`]: the durable outbound queue, retries with backoff, DSNs.
//! - [`delivery`]: Maildir per account, aliases and catch-all, forwarding
//!   with [`srs`].
//!
//! The sans-IO parts (trace fields, DSNs, SRS, the SMTP machines) are
//! tested with data; the shells ([`session`], [`outbound`], [`listener`])
//! own sockets, TLS, time and files. Each compartment's hand-off is an
//! SMTP hop or a durable store, so the mesh of issue 7 can insert its
//! signer, spam filter and verifier hops between them.

pub mod delivery;
pub mod dmarc_reports;
pub mod dns_hop;
pub mod dsn;
pub use scop_mta::headers;
pub mod hop;
pub mod journal;
pub mod listener;
pub mod maildir;
pub mod mta_sts;
pub mod mx;
pub mod mxlookup;
pub mod outbound;
pub mod private_file;
pub mod relay;
pub mod service;
pub mod session;
pub mod spamfilter;
pub use scop_mta::srs;
mod stream;
pub mod submission;
pub mod tls;
pub mod tls_reports;
pub mod verifier;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The current Unix time in seconds (the shells' only clock).
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A fresh identifier for log lines and trace fields: time, process and a
/// counter, so that it is unique on this host without coordination.
pub fn queue_id() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    format!("{nanos:x}{:x}{n:x}", std::process::id())
}

/// 451 4.3.0: a local problem the client should retry.
pub(crate) fn tempfail() -> scop_smtp::Reply {
    reply(451, (4, 3, 0), "Temporary local problem, try again later")
}

/// A reply with an enhanced status code (RFC 3463). The codes used here
/// are constants; an invalid one would be a programming error, reported
/// as a generic transient failure rather than a panic.
pub(crate) fn reply(
    code: u16,
    enhanced: (u8, u16, u16),
    text: impl AsRef<str>,
) -> scop_smtp::Reply {
    let e = scop_smtp::EnhancedCode::new(enhanced.0, enhanced.1, enhanced.2).ok();
    scop_smtp::Reply::new(code, e, text.as_ref()).unwrap_or_else(|_| {
        scop_smtp::Reply::new(451, None, "Local error").expect("451 is a valid reply code")
    })
}
