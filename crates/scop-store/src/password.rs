//! Password hashing: argon2id, PHC strings, a random salt from the OS.
//!
//! These functions are CPU-bound (tens of milliseconds); the store runs them
//! on tokio's blocking pool. Verifying against an unknown login runs the same
//! computation against [`dummy_hash`] so timing does not reveal which logins
//! exist.

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use crate::error::{Result, StoreError};

/// Longest password accepted, in bytes (argon2 itself has no practical
/// limit; this bounds the work an attacker can ask for).
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Hashes `password` with argon2id (the crate's default parameters, version
/// 0x13) and a fresh random salt; returns the PHC string.
pub fn hash(password: &str) -> Result<String> {
    if password.is_empty() {
        return Err(StoreError::InvalidArgument("empty password"));
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(StoreError::InvalidArgument(
            "password longer than 1024 bytes",
        ));
    }
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| StoreError::PasswordHash(e.to_string()))
}

/// Checks `password` against a PHC string. A malformed stored hash is an
/// error (a corrupt store), a wrong password is `Ok(false)`.
pub fn verify(password: &str, phc: &str) -> Result<bool> {
    let parsed =
        PasswordHash::new(phc).map_err(|_| StoreError::Corrupt("malformed password hash"))?;
    if password.len() > MAX_PASSWORD_LEN {
        // Same work as a real check, then refuse.
        let _ = Argon2::default().verify_password(b"", &parsed);
        return Ok(false);
    }
    Ok(Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok())
}

/// A hash of a random password, computed once per process with the same
/// parameters as [`hash`], to verify against when a login does not exist.
pub fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        Argon2::default()
            .hash_password(b"scop dummy password: never matches a login")
            .map(|h| h.to_string())
            .unwrap_or_else(|_| {
                // Fall back to a fixed valid PHC string with the default parameters.
                "$argon2id$v=19$m=19456,t=2,p=1$c2NvcGR1bW15c2FsdA$9sTbSlTio3Biev89thdrlKKiCaYsjjYVJxGAL3swxpQ".to_owned()
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = hash("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$v=19$"), "{h}");
        assert!(verify("correct horse", &h).unwrap());
        assert!(!verify("Correct horse", &h).unwrap());
        assert!(!verify("", &h).unwrap());
        let h2 = hash("correct horse").unwrap();
        assert_ne!(h, h2, "salt must be random");
        assert!(matches!(hash(""), Err(StoreError::InvalidArgument(_))));
        assert!(matches!(
            hash(&"x".repeat(MAX_PASSWORD_LEN + 1)),
            Err(StoreError::InvalidArgument(_))
        ));
        assert!(!verify(&"x".repeat(MAX_PASSWORD_LEN + 1), &h).unwrap());
        assert!(matches!(
            verify("x", "not a phc"),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn dummy_hash_is_valid_and_matches_nothing() {
        let d = dummy_hash();
        assert!(d.starts_with("$argon2id$"));
        assert!(!verify("", d).unwrap());
        assert!(!verify("password", d).unwrap());
    }
}
