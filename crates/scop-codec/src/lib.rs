#![forbid(unsafe_code)]
//! Small codecs that several SCoP crates read with, kept here once:
//!
//! - [`der`]: one DER element (tag, length, contents), as the X.509
//!   certificates of the mesh, DANE's certificate matching and DKIM's
//!   public keys need.
//! - [`base64`]: the padded RFC 4648 encoding of SMTP AUTH, DKIM, MIME
//!   and PEM. (The Hamlet generator keeps its own encoder, so that a bug
//!   here cannot hide in both sides of the MIME round trip.)

pub mod base64;
pub mod der;
