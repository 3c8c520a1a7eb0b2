//! The library half of the `scop` binary: the pieces its commands share and
//! its integration tests use.
#![forbid(unsafe_code)]

pub mod check;
pub mod files;
pub mod mbox;
