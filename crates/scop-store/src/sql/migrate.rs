//! Versioned schema migrations, embedded, one ordered list per backend.
//!
//! The `schema_version` table holds one row per applied version. Opening a
//! store applies every missing migration in one transaction (under an
//! advisory lock on PostgreSQL, `BEGIN IMMEDIATE` on SQLite, so two
//! processes opening together do not race) and refuses a database whose
//! version is newer than [`SCHEMA_VERSION`].

use sqlx::Row;

use crate::error::{Result, StoreError};
use crate::{Pool, Store, write_tx};

/// A migration: the version it brings the schema to, and its SQL.
struct Migration {
    version: i64,
    sql: &'static str,
}

/// The migrations of both backends from one list of versions and file
/// names (`migrations/sqlite/` and `migrations/postgres/`).
macro_rules! migrations {
    ($($version:literal => $file:literal),* $(,)?) => {
        const SQLITE: &[Migration] = &[$(Migration {
            version: $version,
            sql: include_str!(concat!("../../migrations/sqlite/", $file)),
        }),*];
        const POSTGRES: &[Migration] = &[$(Migration {
            version: $version,
            sql: include_str!(concat!("../../migrations/postgres/", $file)),
        }),*];
    };
}

migrations! {
    1 => "0001_accounts.sql",
    2 => "0002_queue.sql",
    3 => "0003_dsn.sql",
    4 => "0004_passwords.sql",
    5 => "0005_directory_version.sql",
    6 => "0006_lease_owner.sql",
    7 => "0007_limits_and_log_age.sql",
    8 => "0008_requiretls.sql",
    9 => "0009_daily_limit.sql",
    10 => "0010_queued_once.sql",
}

/// The schema version this build writes (the last migration).
pub const SCHEMA_VERSION: i64 = SQLITE[SQLITE.len() - 1].version;

/// Key of the PostgreSQL advisory lock held while migrating.
const PG_MIGRATION_LOCK: i64 = 0x5C0F_5702;

const CREATE_VERSION_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT PRIMARY KEY NOT NULL)";
const SELECT_VERSION: &str = "SELECT COALESCE(MAX(version), 0) FROM schema_version";
const INSERT_VERSION: &str = "INSERT INTO schema_version (version) VALUES ($1)";

fn migrations(pool: &Pool) -> &'static [Migration] {
    match pool {
        Pool::Sqlite(_) => SQLITE,
        Pool::Pg(_) => POSTGRES,
    }
}

/// Brings the schema up to `target` (at most [`SCHEMA_VERSION`]).
pub(crate) async fn migrate(store: &Store, target: i64) -> Result<()> {
    let list = migrations(&store.pool);
    let is_pg = matches!(store.pool, Pool::Pg(_));
    write_tx!(store, tx => {
        async {
            if is_pg {
                sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(PG_MIGRATION_LOCK).execute(&mut *tx).await?;
            }
            sqlx::query(CREATE_VERSION_TABLE).execute(&mut *tx).await?;
            let found: i64 = sqlx::query(SELECT_VERSION).fetch_one(&mut *tx).await?.try_get(0)?;
            if found > SCHEMA_VERSION {
                return Err(StoreError::SchemaTooNew { found, supported: SCHEMA_VERSION });
            }
            for m in list.iter().filter(|m| m.version > found && m.version <= target) {
                sqlx::raw_sql(m.sql).execute(&mut *tx).await?;
                sqlx::query(INSERT_VERSION).bind(m.version).execute(&mut *tx).await?;
            }
            Ok(())
        }
        .await
    })
}

/// The highest applied version.
pub(crate) async fn current_version(store: &Store) -> Result<i64> {
    crate::on_pool!(store, p => {
        let row = sqlx::query(SELECT_VERSION).fetch_one(p).await?;
        Ok(row.try_get(0)?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_ordered_and_complete() {
        for list in [SQLITE, POSTGRES] {
            let versions: Vec<i64> = list.iter().map(|m| m.version).collect();
            let want: Vec<i64> = (1..=SCHEMA_VERSION).collect();
            assert_eq!(versions, want);
        }
    }
}
