#![forbid(unsafe_code)]
//! Small codecs that several SCoP crates read with, kept here once:
//!
//! - [`der`]: one DER element (tag, length, contents), as the X.509
//!   certificates of the mesh, DANE's certificate matching and DKIM's
//!   public keys need.

pub mod der;
