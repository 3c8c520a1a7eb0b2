//! The crate's one error type, grouped by who is at fault.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::Role;
use crate::der::DerError;

/// Everything that can go wrong in the mesh.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MeshError {
    // --- caller or configuration ---
    /// A role name that is not one of [`Role::ALL`].
    #[error("unknown role {name:?}")]
    UnknownRole {
        /// The name, truncated.
        name: String,
    },
    /// A server configuration that accepts no client role would refuse
    /// every connection.
    #[error("role {server} accepts no mesh clients")]
    NoAcceptedRoles {
        /// The server's role.
        server: Role,
    },
    /// A validity period that ends before it starts or starts before 1970.
    #[error("invalid validity period")]
    InvalidValidity,
    /// An extra DNS name that is not a plain host name, or that lies under
    /// the reserved mesh suffix.
    #[error("invalid extra DNS name {name:?}")]
    InvalidExtraName {
        /// The name, truncated.
        name: String,
    },
    /// More extra names than [`crate::MAX_EXTRA_NAMES`].
    #[error("too many extra names")]
    TooManyExtraNames,
    /// A trust bundle with no CA certificate.
    #[error("trust bundle is empty")]
    EmptyTrust,
    /// A CA rotation was begun while one is already in progress, or
    /// finished when none was begun.
    #[error("CA rotation {0}")]
    Rotation(&'static str),
    /// `init` over a directory that already holds a CA key.
    #[error("{path} already exists")]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },

    // --- certificate content ---
    /// A certificate that the DER walk could not read.
    #[error("certificate: {0}")]
    Certificate(#[from] DerError),
    /// A certificate naming no role.
    #[error("certificate names no mesh role")]
    NoRole,
    /// A certificate naming more than one role, or a mesh DNS name that
    /// disagrees with its role URI.
    #[error("certificate names more than one mesh role")]
    AmbiguousRole,
    /// A certificate naming another role than the one required.
    #[error("certificate names role {found}, expected {expected}")]
    WrongRole {
        /// The role required.
        expected: Role,
        /// The role the certificate names.
        found: Role,
    },
    /// A peer whose role the hop policy does not let connect here.
    #[error("role {client} may not connect to {server}")]
    RoleNotAccepted {
        /// The peer's role.
        client: Role,
        /// This server's role.
        server: Role,
    },
    /// A completed connection whose peer names a role outside the set the
    /// caller permits.
    #[error("peer role {found} is not permitted here")]
    PeerNotPermitted {
        /// The peer's role.
        found: Role,
    },
    /// A private key that does not belong to the certificate beside it.
    #[error("private key does not match certificate {path}")]
    KeyMismatch {
        /// The certificate file (or a description when not from a file).
        path: PathBuf,
    },
    /// A CA whose certificate and key disagree, or whose issued certificates
    /// would not chain to it.
    #[error("CA certificate and key are inconsistent")]
    CaMismatch,
    /// rcgen refused to build a certificate or read a key.
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),

    // --- files ---
    /// A required file is absent.
    #[error("missing file {path}")]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// A private key readable or writable by group or others, or not a
    /// regular file: refused rather than used.
    #[error("{path} has mode {mode:o}; a private key must be 0600 (owner only)")]
    InsecurePermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A file larger than [`crate::MAX_PEM_FILE`].
    #[error("{path} is larger than the limit")]
    FileTooLarge {
        /// The file.
        path: PathBuf,
    },
    /// A PEM file without the expected object.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: &'static str,
    },
    /// An I/O error on a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },

    // --- TLS and network ---
    /// rustls refused a configuration or a handshake.
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// The TLS handshake did not finish in time.
    #[error("TLS handshake not finished after {after:?}")]
    HandshakeTimeout {
        /// The limit.
        after: Duration,
    },
    /// The handshake failed (including the peer's certificate being refused).
    #[error("TLS handshake: {0}")]
    Handshake(io::Error),
    /// A network error outside the handshake.
    #[error("network: {0}")]
    Net(io::Error),
    /// A completed connection with no peer certificate (not a mesh
    /// connection).
    #[error("peer presented no certificate")]
    NoPeerCertificate,
}
