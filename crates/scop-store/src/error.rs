//! The store's error type.

use crate::address::AddressError;

/// Everything a store operation can fail with, by who is at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The caller gave a URL the store cannot open (not `sqlite:` or `postgres://`).
    #[error("unsupported store URL {url:?}: use sqlite:PATH, sqlite::memory: or postgres://...")]
    UnsupportedUrl {
        /// The URL as given (any password removed).
        url: String,
    },
    /// The caller gave an invalid address, login, domain or alias source.
    #[error("invalid {what} {input:?}: {reason}")]
    InvalidAddress {
        /// What the input was meant to be ("login", "address", "domain", ...).
        what: &'static str,
        /// The input.
        input: String,
        /// Why it was refused.
        reason: AddressError,
    },
    /// The caller gave an invalid argument (empty recipient list, negative lifetime, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// The object to create already exists.
    #[error("{what} {key} already exists")]
    AlreadyExists {
        /// The kind of object.
        what: &'static str,
        /// Its name.
        key: String,
    },
    /// The object to change or delete does not exist.
    #[error("{what} {key} not found")]
    NotFound {
        /// The kind of object.
        what: &'static str,
        /// Its name.
        key: String,
    },
    /// A recipient's outcome was already recorded (pending -> delivered|failed happens once).
    #[error("recipient {rcpt} of message {id} is already {state}")]
    NotPending {
        /// The message.
        id: i64,
        /// The recipient.
        rcpt: String,
        /// Its final state.
        state: String,
    },
    /// The database was written by a newer SCoP: refuse rather than damage it.
    #[error(
        "the database schema is version {found}, newer than this program supports ({supported}): upgrade SCoP, or restore a backup"
    )]
    SchemaTooNew {
        /// The version found in the database.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// A stored value is not what this program wrote (a corrupt or foreign database).
    #[error("corrupt store: {0}")]
    Corrupt(&'static str),
    /// Hashing a password failed (should not happen with the built-in parameters).
    /// A password operation on a handle opened without the credentials
    /// file that holds the hashes.
    #[error(
        "password hashes are kept in a separate credentials file, which this store was opened without (give its path, e.g. --credentials)"
    )]
    PasswordsElsewhere,

    /// The credentials file could not be created.
    #[error("cannot create the credentials file {path}: {source}")]
    Credentials {
        /// Its path.
        path: String,
        /// Why.
        source: std::io::Error,
    },

    /// The store keeps its hashes in a credentials file, and the one given
    /// did not exist.
    #[error(
        "the store keeps its password hashes in a credentials file, and {path} did not exist (a wrong --credentials path?); nothing was created"
    )]
    CredentialsMissing {
        /// The path given.
        path: String,
    },

    /// A credentials file was given for a PostgreSQL store.
    #[error(
        "a separate credentials file needs an SQLite store; PostgreSQL keeps them in its passwords table"
    )]
    CredentialsNeedSqlite,

    #[error("password hashing failed: {0}")]
    PasswordHash(String),
    /// The database driver failed (I/O, connection, constraint, ...).
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl StoreError {
    /// Whether this is SQLite's SQLITE_BUSY (any extended code): another
    /// connection held a lock it would not wait for.
    pub(crate) fn is_sqlite_busy(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(e)) => e
                .code()
                .and_then(|c| c.parse::<i32>().ok())
                .is_some_and(|c| c & 0xff == 5),
            _ => false,
        }
    }
}

/// Results of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

pub(crate) fn invalid(what: &'static str, input: &str, reason: AddressError) -> StoreError {
    StoreError::InvalidAddress {
        what,
        input: input.to_owned(),
        reason,
    }
}
