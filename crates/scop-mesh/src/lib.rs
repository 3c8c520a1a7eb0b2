//! SCoP mesh: the internal certificate authority, one certificate per
//! compartment naming its role, and mutually-authenticated TLS 1.3 between
//! compartments.
//!
//! ```text
//!   scop init ──> Ca::create ──> Ca::issue(role) ──> MeshDir (mesh/*.pem, *.key 0600)
//!                                                       │
//!   compartment ── MeshDir::load_identity + load_trust ─┤
//!                                                       v
//!   client role ── client_config(expected server) ══ mTLS ══ server_config(accepted) ── server role
//!                                                              │
//!                                          PeerRole (verified) ┘──> XSCOP permission (HOPS)
//! ```
//!
//! A certificate names its role twice: a URI SAN `scop:role:<name>` (what
//! the verifiers read) and a DNS SAN `<name>.mesh.scop.invalid` (what the
//! TLS server name matches). Trust is cryptographic: a server accepts a
//! client only if its certificate chains to a trusted mesh CA and names one
//! of the roles it accepts (the [`HOPS`] table, with
//! [`MeshListener::bind_policy`]); a client accepts a server only if its
//! certificate chains to a trusted mesh CA and names the expected role.
//! Where a connection comes from (an address) never matters.
//!
//! Key generation uses aws-lc-rs' system randomness; validity periods are
//! passed in by the caller, so nothing in certificate issuance reads a clock.
//! Certificate verification during a handshake uses the current time, as
//! rustls does.
#![forbid(unsafe_code)]

mod ca;
pub mod der;
mod error;
mod net;
mod role;
mod store;
mod tls;

pub use ca::{Ca, ExtraNames, Identity, MAX_EXTRA_NAMES, TrustBundle, Validity};
pub use error::MeshError;
pub use net::{
    DEFAULT_HANDSHAKE_TIMEOUT, Incoming, MeshConnector, MeshListener, MeshStream, connect,
};
pub use role::{
    HOPS, Hop, MESH_DNS_SUFFIX, ROLE_URI_PREFIX, Role, may_connect, may_send_envelope_facts,
};
pub use store::{MAX_PEM_FILE, MeshDir};
pub use tls::{PeerRole, client_config, peer_role, provider, role_of_certificate, server_config};
