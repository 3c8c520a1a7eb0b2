//! Password hashing: argon2id, PHC strings, a random salt from the OS.
//!
//! These functions are CPU-bound (tens of milliseconds); the store runs them
//! on tokio's blocking pool. Verifying against an unknown login runs the same
//! computation against [`dummy_hash`] so timing does not reveal which logins
//! exist.

use std::sync::{Mutex, OnceLock};

use argon2::password_hash::PasswordHasher;
use argon2::password_hash::phc::{Output, PasswordHash};
use argon2::{Algorithm, Argon2, Block, Params, Version};

use crate::error::{Result, StoreError};

/// Runs a hash computation on tokio's blocking pool, at most as many at
/// once as the machine has cores. Each argon2 computation is CPU-bound and
/// takes 19 MiB: more at once only adds memory (the allocator keeps it
/// per thread), and a flood of logins could otherwise take it all.
pub(crate) async fn off_thread<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    static GATE: OnceLock<tokio::sync::Semaphore> = OnceLock::new();
    let gate = GATE.get_or_init(|| {
        tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    });
    let _permit = gate
        .acquire()
        .await
        .map_err(|e| StoreError::PasswordHash(e.to_string()))?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::PasswordHash(e.to_string()))?
}

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
///
/// The argon2 working memory (19 MiB with the default parameters) comes
/// from a pool and goes back to it: allocating it per check leaves it in
/// the allocator's per-thread arenas, and the login path of a busy
/// submission server grew by hundreds of megabytes that way.
pub fn verify(password: &str, phc: &str) -> Result<bool> {
    fn corrupt<E>(_: E) -> StoreError {
        StoreError::Corrupt("malformed password hash")
    }
    let parsed = PasswordHash::new(phc).map_err(corrupt)?;
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return Err(StoreError::Corrupt("password hash without salt or output"));
    };
    let algorithm = Algorithm::try_from(parsed.algorithm.as_str()).map_err(corrupt)?;
    let version = match parsed.version {
        Some(v) => Version::try_from(v).map_err(corrupt)?,
        None => Version::default(),
    };
    let params = Params::try_from(&parsed).map_err(corrupt)?;
    let blocks = params.block_count();
    let argon2 = Argon2::new(algorithm, version, params);
    // An over-long password costs the same work (on the empty one), then
    // is refused.
    let too_long = password.len() > MAX_PASSWORD_LEN;
    let input = if too_long {
        &b""[..]
    } else {
        password.as_bytes()
    };
    let mut out = vec![0u8; expected.len()];
    with_memory(blocks, |memory| {
        argon2.hash_password_into_with_memory(input, salt.as_ref(), &mut out, memory)
    })
    .map_err(|e| StoreError::PasswordHash(e.to_string()))?;
    let matches = Output::new(&out).map_err(corrupt)? == *expected;
    Ok(matches && !too_long)
}

/// Runs `f` on `blocks` argon2 blocks from the pool (at most one buffer
/// per computation that [`off_thread`] lets run at once stays there).
fn with_memory<T>(blocks: usize, f: impl FnOnce(&mut [Block]) -> T) -> T {
    static POOL: Mutex<Vec<Vec<Block>>> = Mutex::new(Vec::new());
    let taken = POOL.lock().unwrap_or_else(|p| p.into_inner()).pop();
    let mut memory = taken.unwrap_or_default();
    if memory.len() < blocks {
        memory.resize(blocks, Block::new());
    }
    let result = f(&mut memory[..blocks]);
    let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
    // A stored hash with unusual parameters does not leave a huge
    // buffer behind, nor does the pool outgrow the machine's cores.
    if memory.len() <= DEFAULT_BLOCKS && pool.len() < MAX_POOLED {
        pool.push(memory);
    }
    result
}

/// Blocks of argon2's default parameters (m = 19 MiB).
const DEFAULT_BLOCKS: usize = Params::DEFAULT_M_COST as usize;
/// Buffers kept in the pool at most.
const MAX_POOLED: usize = 16;

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
    fn verifies_hashes_of_other_parameters_and_variants() {
        // Hashes made by the argon2 crate's own hasher with other
        // variants, versions and costs: the pooled verifier reads every
        // parameter from the PHC string, and buffers of several sizes
        // pass through the pool.
        for (algorithm, version, m, t, p) in [
            (Algorithm::Argon2id, Version::V0x13, 4096, 3, 2),
            (Algorithm::Argon2i, Version::V0x13, 8, 1, 1),
            (Algorithm::Argon2d, Version::V0x10, 1024, 2, 4),
            (
                Algorithm::Argon2id,
                Version::V0x13,
                Params::DEFAULT_M_COST,
                2,
                1,
            ),
            (Algorithm::Argon2id, Version::V0x13, 4096, 3, 2),
        ] {
            let params = Params::new(m, t, p, Some(24)).unwrap();
            let phc = Argon2::new(algorithm, version, params)
                .hash_password(b"pass phrase")
                .unwrap()
                .to_string();
            assert!(verify("pass phrase", &phc).unwrap(), "{phc}");
            assert!(!verify("pass phrasE", &phc).unwrap(), "{phc}");
        }
    }

    #[test]
    fn dummy_hash_is_valid_and_matches_nothing() {
        let d = dummy_hash();
        assert!(d.starts_with("$argon2id$"));
        assert!(!verify("", d).unwrap());
        assert!(!verify("password", d).unwrap());
    }
}
