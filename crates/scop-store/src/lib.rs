//! SCoP store: accounts, domains, aliases, the outbound queue and delivery
//! records.
//!
//! ```text
//!             +-----------------------------+
//!  callers -> | Store (Clone + Send + Sync) |   time is passed in (unix seconds)
//!             +--------------+--------------+
//!     sans-IO: address, alias, retry, password
//!                            |
//!           sql: migrate, accounts, queue (one SQL text, two backends)
//!                            |
//!              SqlitePool (embedded)  |  PgPool (scale-out)
//! ```
//!
//! SQLite is the embedded default: WAL journal with `synchronous=FULL`, so a
//! returned [`Store::enqueue`] is on disk (DESIGN invariant 1, "never lose
//! mail"). PostgreSQL commits are durable by default. The schema is
//! versioned ([`SCHEMA_VERSION`]); [`Store::open`] migrates an older database
//! and refuses a newer one ([`StoreError::SchemaTooNew`]).
//!
//! Addresses are matched case-insensitively (see [`address`]); passwords are
//! argon2id PHC strings with a random salt from the OS (see [`password`]).
#![forbid(unsafe_code)]

pub mod address;
pub mod alias;
mod error;
pub mod password;
pub mod retry;
mod sql;

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use alias::{MAX_ALIAS_DEPTH, MAX_ALIAS_EXPANSION, Resolution};
pub use error::{Result, StoreError};
pub use retry::next_retry;
pub use sql::accounts::{DIRECTORY_RECHECK, MAX_FORWARD_TARGETS, SendingLimits, User};
pub use sql::migrate::SCHEMA_VERSION;
pub use sql::queue::{
    DeliveryRecord, DsnParams, MAX_ADDR_TYPE_BYTES, MAX_ADDRESS_BYTES, MAX_DETAIL_BYTES,
    MAX_ENVID_BYTES, MAX_RECIPIENTS, MessageId, NewMessage, Notify, Orcpt, Outcome, PRUNE_BATCH,
    PendingRecipient, QueueEntry, QueuedMessage, RecipientDsn, RecipientState, RecipientStatus,
    Ret,
};

/// How long a SQLite connection waits for a lock held by another writer.
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections in a file-backed SQLite pool (one writer at a time, readers in parallel).
pub const SQLITE_MAX_CONNECTIONS: u32 = 4;
/// Connections in a PostgreSQL pool.
pub const PG_MAX_CONNECTIONS: u32 = 16;
/// How long to wait for a pooled connection before failing.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Pg(PgPool),
}

/// Where a store's password hashes are, as this handle sees them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Passwords {
    /// In the store's own `passwords` table.
    InStore,
    /// In the credentials file attached as the `credentials` schema.
    Attached,
    /// In a credentials file this handle was not given: no password
    /// operation is possible.
    Elsewhere,
}

impl Passwords {
    /// The statements on the table holding the hashes, if this handle
    /// reaches it.
    pub(crate) fn sql(self) -> Result<&'static sql::accounts::PasswordSql> {
        match self {
            Passwords::InStore => Ok(&sql::accounts::IN_STORE),
            Passwords::Attached => Ok(&sql::accounts::ATTACHED),
            Passwords::Elsewhere => Err(StoreError::PasswordsElsewhere),
        }
    }
}

/// The `settings` row recording that the hashes live in a credentials file.
pub(crate) const SEPARATE_PASSWORDS: &str = "passwords";

/// The store: a cheap-to-clone handle on a connection pool.
#[derive(Clone)]
pub struct Store {
    pub(crate) pool: Pool,
    pub(crate) passwords: Passwords,
    /// Directory entries of earlier resolutions (shared by clones), or
    /// `None` for a schema without the directory version (before 5).
    pub(crate) directory: Option<Arc<Mutex<alias::DirectoryCache>>>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let backend = match &self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Pg(_) => "postgres",
        };
        f.debug_struct("Store").field("backend", &backend).finish()
    }
}

/// Runs `$body` with `$p` bound to the concrete pool (the same code, compiled
/// once per backend).
macro_rules! on_pool {
    ($store:expr, $p:ident => $body:expr) => {
        match &$store.pool {
            $crate::Pool::Sqlite($p) => $body,
            $crate::Pool::Pg($p) => $body,
        }
    };
}
pub(crate) use on_pool;

/// Runs `$body` (an expression of type `Result<T>`) inside a write
/// transaction bound to `$tx`; commits when it returns `Ok`, rolls back
/// otherwise. SQLite transactions start with `BEGIN IMMEDIATE` so two
/// writers never deadlock on a lock upgrade.
macro_rules! write_tx {
    ($store:expr, $tx:ident => $body:expr) => {
        match &$store.pool {
            $crate::Pool::Sqlite(p) => {
                #[allow(unused_mut)]
                let mut $tx = p.begin_with("BEGIN IMMEDIATE").await?;
                let result = $body;
                if result.is_ok() {
                    $tx.commit().await?;
                }
                result
            }
            $crate::Pool::Pg(p) => {
                #[allow(unused_mut)]
                let mut $tx = p.begin().await?;
                let result = $body;
                if result.is_ok() {
                    $tx.commit().await?;
                }
                result
            }
        }
    };
}
pub(crate) use write_tx;

fn redact(url: &str) -> String {
    // Drop anything between "://" and "@" (user:password).
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***{}", &url[..s], &url[at..]),
        _ => url.to_owned(),
    }
}

impl Store {
    /// Opens (creating if needed) and migrates the store at `url`:
    /// `sqlite:PATH` (the file is created if missing), `sqlite::memory:` (a
    /// private in-memory database, for tests), or `postgres://...` /
    /// `postgresql://...` (the database must exist).
    pub async fn open(url: &str) -> Result<Store> {
        Self::open_at(url, SCHEMA_VERSION).await
    }

    /// Like [`Store::open`] for an SQLite store whose password hashes live
    /// in the separate database file `credentials` (created, mode 0600,
    /// if missing; its directory must exist), so that processes opening
    /// the store without it (the MX, delivery, the relay) cannot read
    /// them. Hashes still in the store's own table are moved there, and
    /// the store records that they are kept apart: from then on a handle
    /// opened with [`Store::open`] refuses password operations
    /// ([`StoreError::PasswordsElsewhere`]) instead of writing hashes
    /// where submission does not look.
    pub async fn open_with_credentials(url: &str, credentials: &Path) -> Result<Store> {
        if !url.starts_with("sqlite:") {
            return Err(StoreError::CredentialsNeedSqlite);
        }
        let created = create_private_file(credentials)?;
        retry_while_busy(|| async {
            let mut store = Self::connect_with(url, Some(credentials)).await?;
            sql::migrate::migrate(&store, SCHEMA_VERSION).await?;
            let apart = store.passwords_kept_apart().await?;
            if created && apart {
                // The hashes are in a file elsewhere: a wrong path must
                // not quietly become a second, empty credentials file.
                store.close().await;
                for suffix in ["", "-wal", "-shm"] {
                    let mut p = credentials.as_os_str().to_owned();
                    p.push(suffix);
                    let _ = std::fs::remove_file(p);
                }
                return Err(StoreError::CredentialsMissing {
                    path: credentials.display().to_string(),
                });
            }
            sql::accounts::move_passwords_to_credentials(&store, apart).await?;
            store.passwords = Passwords::Attached;
            Ok(store)
        })
        .await
    }

    /// Like [`Store::open`] but migrates only up to `version`: for testing
    /// the upgrade path. Not for production use.
    #[doc(hidden)]
    pub async fn open_at(url: &str, version: i64) -> Result<Store> {
        retry_while_busy(|| async {
            let mut store = Self::connect(url).await?;
            sql::migrate::migrate(&store, version).await?;
            if version < 5 {
                store.directory = None;
            }
            if version >= 4 && store.passwords_kept_apart().await? {
                store.passwords = Passwords::Elsewhere;
            }
            Ok(store)
        })
        .await
    }

    /// Whether the store records that its password hashes live in a
    /// credentials file.
    async fn passwords_kept_apart(&self) -> Result<bool> {
        on_pool!(self, p => {
            let row = sqlx::query("SELECT 1 FROM settings WHERE name = $1")
                .bind(SEPARATE_PASSWORDS)
                .fetch_optional(p)
                .await?;
            Ok(row.is_some())
        })
    }

    async fn connect(url: &str) -> Result<Store> {
        Self::connect_with(url, None).await
    }

    async fn connect_with(url: &str, credentials: Option<&Path>) -> Result<Store> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let opts = PgConnectOptions::from_str(url)?;
            let pool = PgPoolOptions::new()
                .max_connections(PG_MAX_CONNECTIONS)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(opts)
                .await?;
            return Ok(Store {
                pool: Pool::Pg(pool),
                passwords: Passwords::InStore,
                directory: Some(Arc::default()),
            });
        }
        let Some(rest) = url.strip_prefix("sqlite:") else {
            return Err(StoreError::UnsupportedUrl { url: redact(url) });
        };
        if rest.is_empty() {
            return Err(StoreError::UnsupportedUrl { url: redact(url) });
        }
        let memory = rest == ":memory:";
        let opts = if memory {
            SqliteConnectOptions::from_str("sqlite::memory:")?
        } else {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
        };
        let opts = opts
            .journal_mode(if memory {
                SqliteJournalMode::Memory
            } else {
                SqliteJournalMode::Wal
            })
            .synchronous(SqliteSynchronous::Full)
            // Temporary tables and sorts in memory: no files outside the
            // store's directory (the compartments are confined to it).
            .pragma("temp_store", "memory")
            .foreign_keys(true)
            .busy_timeout(SQLITE_BUSY_TIMEOUT);
        // A connection to a local file needs no check before each use:
        // that check is a round trip to the connection's thread per query.
        let pool_opts = SqlitePoolOptions::new()
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .test_before_acquire(false);
        let pool_opts = if memory {
            // One connection that never closes: the database lives as long as it does.
            pool_opts
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            pool_opts.max_connections(SQLITE_MAX_CONNECTIONS)
        };
        let pool_opts = match credentials {
            None => pool_opts,
            Some(path) => {
                let path = path.to_string_lossy().into_owned();
                // Every connection of the pool sees the credentials file as
                // the `credentials` schema, with the store's durability.
                pool_opts.after_connect(move |conn, _| {
                    let path = path.clone();
                    Box::pin(async move {
                        sqlx::query("ATTACH DATABASE $1 AS credentials")
                            .bind(path)
                            .execute(&mut *conn)
                            .await?;
                        sqlx::raw_sql(
                            "PRAGMA credentials.journal_mode = WAL; \
                             PRAGMA credentials.synchronous = FULL;",
                        )
                        .execute(&mut *conn)
                        .await?;
                        Ok(())
                    })
                })
            }
        };
        let pool = pool_opts.connect_with(opts).await?;
        Ok(Store {
            pool: Pool::Sqlite(pool),
            passwords: Passwords::InStore,
            directory: Some(Arc::default()),
        })
    }

    /// The schema version of the open database.
    pub async fn schema_version(&self) -> Result<i64> {
        sql::migrate::current_version(self).await
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        match &self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Pg(_) => "postgres",
        }
    }

    /// Closes every connection (pending operations finish first).
    pub async fn close(&self) {
        on_pool!(self, p => p.close().await)
    }
}

/// Runs `open` again while it fails with SQLITE_BUSY, briefly, until the
/// busy timeout. Switching a fresh SQLite file to WAL takes an exclusive
/// lock that SQLite does not wait for (the busy timeout does not apply),
/// so processes opening one database together may see SQLITE_BUSY there.
async fn retry_while_busy<F, Fut>(mut open: F) -> Result<Store>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Store>>,
{
    let deadline = tokio::time::Instant::now() + SQLITE_BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(10);
    loop {
        match open().await {
            Err(e) if e.is_sqlite_busy() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(250));
            }
            other => return other,
        }
    }
}

/// Creates `path` with mode 0600 when it does not exist (SQLite would
/// create it with the umask's mode; its `-wal` and `-shm` files take the
/// mode of the database file); whether it did.
fn create_private_file(path: &Path) -> Result<bool> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    match o.open(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(source) => Err(StoreError::Credentials {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// Hooks for tests of the upgrade path; not for production use.
#[doc(hidden)]
pub mod testing {
    use crate::{Result, Store};

    /// Records `version` as applied without running anything, as a newer
    /// SCoP would have.
    pub async fn set_schema_version(url: &str, version: i64) -> Result<()> {
        let store = Store::connect(url).await?;
        crate::on_pool!(store, p => {
            sqlx::query("INSERT INTO schema_version (version) VALUES ($1)").bind(version).execute(p).await?;
        });
        store.close().await;
        Ok(())
    }

    /// Runs raw SQL statements without migrating, e.g. to fill a database
    /// kept at an older schema version.
    pub async fn execute(url: &str, sql: &'static str) -> Result<()> {
        let store = Store::connect(url).await?;
        crate::on_pool!(store, p => {
            sqlx::raw_sql(sql).execute(p).await?;
        });
        store.close().await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Row;

    #[tokio::test]
    async fn sqlite_file_store_is_wal_and_synchronous_full() {
        let path =
            std::env::temp_dir().join(format!("scop-store-pragma-{}.db", std::process::id()));
        let store = Store::open(&format!("sqlite:{}", path.display()))
            .await
            .unwrap();
        let Pool::Sqlite(p) = &store.pool else {
            panic!("not sqlite")
        };
        let mode: String = sqlx::query("PRAGMA journal_mode")
            .fetch_one(p)
            .await
            .unwrap()
            .get(0);
        let sync: i64 = sqlx::query("PRAGMA synchronous")
            .fetch_one(p)
            .await
            .unwrap()
            .get(0);
        let fk: i64 = sqlx::query("PRAGMA foreign_keys")
            .fetch_one(p)
            .await
            .unwrap()
            .get(0);
        store.close().await;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        assert_eq!(mode, "wal");
        assert_eq!(sync, 2, "synchronous=FULL: a committed enqueue is on disk");
        assert_eq!(fk, 1);
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(super::redact("mysql://u:pw@h/db"), "mysql://***@h/db");
        assert_eq!(super::redact("nope"), "nope");
    }
}
