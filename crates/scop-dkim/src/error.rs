//! Errors of the signing side. Verification never errs: its outcomes are
//! [`crate::DkimOutput`] values.

/// Why signing, or loading a key, failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The key file is not a usable private key (caller's input).
    #[error("invalid private key: {0}")]
    InvalidKey(String),
    /// An RSA key outside 2048..=4096 bits (caller's input).
    #[error("unsupported RSA key size: {0} bits")]
    UnsupportedKeySize(usize),
    /// The signing domain is not a domain name (caller's input).
    #[error("invalid signing domain {0:?}")]
    InvalidDomain(String),
    /// The selector is not a sequence of DNS labels (caller's input).
    #[error("invalid selector {0:?}")]
    InvalidSelector(String),
    /// `i=` is malformed or not under the signing domain (caller's input).
    #[error("invalid identity {0:?}")]
    InvalidIdentity(String),
    /// The message has no From field, which must be signed (RFC 6376
    /// section 5.4).
    #[error("the message has no From header field")]
    NoFromHeader,
    /// The cryptographic library failed (should not happen).
    #[error("cryptographic operation failed")]
    Crypto,
}
