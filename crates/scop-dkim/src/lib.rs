//! DKIM signing and verification (RFC 6376, RFC 8463 Ed25519, RFC 8301
//! algorithm updates), sans-IO.
//!
//! The crate does no I/O: it reads no clock, opens no socket and resolves no
//! name. The caller passes the message bytes, the current time and the DNS
//! answers; verdicts come back as data ([`DkimOutput`]) in the vocabulary of
//! RFC 8601 section 2.7.1 ([`DkimResult`]).
//!
//! ```text
//!                 raw message bytes (lossless; CRLF or bare LF)
//!                               |
//!                     header::split_header            RFC 5322 2.2
//!                  /                           \
//!     header fields (name, raw bytes)        body bytes, in chunks
//!            |                                      |
//!  canon_header (simple | relaxed)   BodyHasher (simple | relaxed, l=)
//!        RFC 6376 3.4.1 / 3.4.2          RFC 6376 3.4.3 / 3.4.4, 3.7
//!            |                                      |
//!   header hash input (h= order,                body hash (bh=)
//!   then DKIM-Signature with b= empty)              |
//!            \______________   ______________________/
//!                           \ /
//!   Signer: RSA-SHA256 / Ed25519-SHA256 sign -> folded DKIM-Signature field
//!   Verifier: key queries -> caller's TXT answers -> key record checks
//!             (RFC 6376 3.6.1) -> RSA / Ed25519 verify -> DkimOutput
//! ```
//!
//! # Signing
//!
//! [`Signer`] defaults to `c=relaxed/relaxed`, signs a fixed list of header
//! fields ([`DEFAULT_SIGNED_HEADERS`]) and over-signs the important ones
//! ([`DEFAULT_OVERSIGNED_HEADERS`], RFC 6376 section 8.15), never writes
//! `l=`, and returns a folded `DKIM-Signature` field to prepend.
//! [`sign_message`] applies several signers (the usual RSA-2048 plus Ed25519
//! dual signature: Ed25519 alone is not verified by the large mailbox
//! providers).
//!
//! # Verifying
//!
//! [`Verifier`] is a small state machine: build it from the header block,
//! ask it for [`Verifier::key_queries`], feed the body in chunks and the DNS
//! answers, then [`Verifier::finish`]. [`verify_message`] does all of that
//! with a DNS callback. `rsa-sha1` verifies but yields
//! [`DkimResult::Policy`] with the weak flag (RFC 8301 section 3.1); RSA keys
//! under 1024 bits are a `permerror` (RFC 8301 section 3.2); `l=` is honoured
//! and content after the signed length is flagged (RFC 6376 section 8.2).
//!
//! # Limits
//!
//! Parsers never panic and bound their work: [`header::MAX_HEADER_FIELDS`],
//! [`header::MAX_HEADER_BYTES`], [`tags::MAX_TAGS`],
//! [`signature::MAX_SIGNED_HEADERS`], [`MAX_SIGNATURES`],
//! [`verify::MAX_KEY_RECORDS`].
#![forbid(unsafe_code)]

pub mod base64;
pub mod canon;
mod error;
pub mod header;
pub mod key;
pub mod sign;
pub mod signature;
pub mod tags;
pub mod verify;

pub use canon::{BodyHash, BodyHasher, Canonicalization, HashAlgorithm};
pub use error::Error;
pub use key::{KeyRecord, KeyRecordError, parse_key_record};
pub use sign::{
    DEFAULT_OVERSIGNED_HEADERS, DEFAULT_SIGNED_HEADERS, KeyKind, Signer, SigningKey, sign_message,
};
pub use signature::{Algorithm, KeyType, Signature, SignatureError, parse_signature};
pub use verify::{
    DkimOutput, DkimResult, DnsAnswer, Flags, MAX_SIGNATURES, Reason, Verifier, VerifyOptions,
    signature_b_values, verify_message,
};

/// Entry points for fuzz targets (`fuzz/`): they must never panic.
pub mod fuzz {
    use super::*;

    /// Parses arbitrary bytes as a `DKIM-Signature` value and as a key
    /// record.
    pub fn parse_signature(data: &[u8]) {
        let _ = crate::parse_signature(data);
        let _ = crate::parse_key_record(data);
        let _ = crate::tags::parse_tags(data);
        let _ = crate::base64::decode(data);
    }

    /// Verifies arbitrary bytes as a message, every key query answered
    /// with the same key record (a fixed Ed25519 key), and canonicalizes
    /// the body both ways.
    pub fn verify_message(data: &[u8]) {
        let txt = b"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=".to_vec();
        let _ = crate::verify_message(data, VerifyOptions::at(1_700_000_000), |_| {
            DnsAnswer::Txt(vec![txt.clone(), data.to_vec()])
        });
        for c in [Canonicalization::Simple, Canonicalization::Relaxed] {
            let mut h = BodyHasher::new(c, HashAlgorithm::Sha256, Some(100));
            h.update(data);
            let _ = h.finish();
        }
    }
}
