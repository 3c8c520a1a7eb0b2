//! Domains, accounts, addresses, forwarding and aliases.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sqlx::Row;

use crate::address::{Address, AliasSource, Domain};
use crate::alias::{
    self, AddressEntry, Directory, DirectoryCache, DomainEntry, Expansion, Need, Owner, Resolution,
};
use crate::error::{Result, StoreError, invalid};
use crate::{Store, on_pool, password, write_tx};

/// How long a directory version read by [`Store::resolve`] is trusted
/// for resolutions that find someone to deliver to.
pub const DIRECTORY_RECHECK: Duration = Duration::from_secs(1);

/// Most forwarding targets per account.
pub const MAX_FORWARD_TARGETS: usize = 32;

/// An account as listed by [`Store::list_users`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The login (an address, domain normalised).
    pub login: String,
    /// Every address the account receives at: its own first, then the extra ones.
    pub addresses: Vec<String>,
    /// Forwarding targets, in the order set.
    pub forward: Vec<String>,
}

/// An account's own sending limits for submission; `None` takes the
/// server's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendingLimits {
    /// Messages per hour.
    pub messages_per_hour: Option<u64>,
    /// Messages per day (the last 24 hours).
    pub messages_per_day: Option<u64>,
    /// Recipients per hour, over all its messages.
    pub recipients_per_hour: Option<u64>,
    /// Largest message, in bytes.
    pub max_message_size: Option<u64>,
}

const SELECT_LIMITS: &str = "SELECT messages_per_hour, recipients_per_hour, max_message_size, \
                             messages_per_day FROM users WHERE login_key = $1";
const UPDATE_LIMITS: &str = "UPDATE users SET messages_per_hour = $2, recipients_per_hour = $3, \
                             max_message_size = $4, messages_per_day = $5 WHERE login_key = $1";

/// A limit as stored (SQL integers are signed).
fn limit_column(v: Option<u64>) -> Result<Option<i64>> {
    v.map(|n| i64::try_from(n).map_err(|_| StoreError::InvalidArgument("limit too large")))
        .transpose()
}

/// A stored limit (never negative: only [`limit_column`] writes them).
fn limit_value(v: Option<i64>) -> Option<u64> {
    v.map(|n| u64::try_from(n).unwrap_or(0))
}

fn parse_login(login: &str) -> Result<Address> {
    Address::parse(login).map_err(|e| invalid("login", login, e))
}

fn parse_address(address: &str) -> Result<Address> {
    Address::parse(address).map_err(|e| invalid("address", address, e))
}

async fn hash_blocking(password: &str) -> Result<String> {
    let password = password.to_owned();
    password::off_thread(move || password::hash(&password)).await
}

const INSERT_DOMAIN: &str = "INSERT INTO domains (name) VALUES ($1) ON CONFLICT DO NOTHING";
const SELECT_DOMAIN: &str = "SELECT 1 FROM domains WHERE name = $1";
const USER_EXISTS: &str = "SELECT 1 FROM users WHERE login_key = $1";
const INSERT_USER: &str =
    "INSERT INTO users (login_key, login) VALUES ($1, $2) ON CONFLICT DO NOTHING";
const INSERT_ADDRESS: &str = "INSERT INTO addresses (address_key, address, login_key) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
const ADDRESS_EXISTS: &str = "SELECT 1 FROM addresses WHERE address_key = $1";

/// The statements on one place of the password hashes.
pub(crate) struct PasswordSql {
    /// Sets an account's hash ($1 login key, $2 hash).
    upsert: &'static str,
    /// An account's hash, if the account exists ($1 login key).
    select: &'static str,
    /// Removes an account's hash ($1 login key).
    delete: &'static str,
}

/// The store's own `passwords` table.
pub(crate) const IN_STORE: PasswordSql = PasswordSql {
    upsert: "INSERT INTO passwords (login_key, password_hash) VALUES ($1, $2) \
             ON CONFLICT (login_key) DO UPDATE SET password_hash = excluded.password_hash",
    select: "SELECT p.password_hash FROM passwords p JOIN users u ON u.login_key = p.login_key \
             WHERE p.login_key = $1",
    delete: "DELETE FROM passwords WHERE login_key = $1",
};

/// The credentials file, attached as the `credentials` schema.
pub(crate) const ATTACHED: PasswordSql = PasswordSql {
    upsert: "INSERT INTO credentials.passwords (login_key, password_hash) VALUES ($1, $2) \
             ON CONFLICT (login_key) DO UPDATE SET password_hash = excluded.password_hash",
    select: "SELECT p.password_hash FROM credentials.passwords p \
             JOIN main.users u ON u.login_key = p.login_key WHERE p.login_key = $1",
    delete: "DELETE FROM credentials.passwords WHERE login_key = $1",
};

/// Creates the credentials file's table; the first time (`apart` false:
/// the store does not yet record that its hashes are kept apart), moves
/// the hashes of the
/// store's own table there, records that they are kept apart, and
/// rewrites the store so no hash stays in its free pages or WAL. Later,
/// rows found in the store's table are deleted, never imported: the
/// compartments that open the store without the credentials file could
/// have written them. Two commits, the copy first: a crash in between
/// leaves the hashes in both places, and the next open finishes the move.
pub(crate) async fn move_passwords_to_credentials(store: &Store, apart: bool) -> Result<()> {
    write_tx!(store, tx => async {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS credentials.passwords (\
             login_key TEXT PRIMARY KEY NOT NULL, password_hash TEXT NOT NULL)",
        )
        .execute(&mut *tx)
        .await?;
        if !apart {
            // A hash already in the credentials file is the newer one.
            sqlx::query(
                "INSERT INTO credentials.passwords (login_key, password_hash) \
                 SELECT login_key, password_hash FROM main.passwords WHERE true \
                 ON CONFLICT (login_key) DO NOTHING",
            )
            .execute(&mut *tx)
            .await?;
        }
        Ok::<(), StoreError>(())
    }.await)?;
    write_tx!(store, tx => async {
        // Overwritten, not just unlinked: no hash stays in free pages.
        sqlx::query("PRAGMA main.secure_delete = ON").execute(&mut *tx).await?;
        sqlx::query("DELETE FROM main.passwords").execute(&mut *tx).await?;
        sqlx::query("PRAGMA main.secure_delete = OFF").execute(&mut *tx).await?;
        sqlx::query("INSERT INTO settings (name, value) VALUES ($1, 'credentials file') ON CONFLICT DO NOTHING")
            .bind(crate::SEPARATE_PASSWORDS)
            .execute(&mut *tx)
            .await?;
        Ok::<(), StoreError>(())
    }.await)?;
    if !apart {
        // The version-4 migration dropped `users.password_hash` without
        // overwriting the old cells: rewrite the whole file, then empty
        // the WAL, which still holds the old pages.
        on_pool!(store, p => {
            sqlx::query("VACUUM main").execute(p).await?;
            sqlx::query("PRAGMA main.wal_checkpoint(TRUNCATE)").execute(p).await?;
        });
    }
    Ok(())
}

impl Store {
    /// Makes `domain` local (idempotent).
    pub async fn add_domain(&self, domain: &str) -> Result<()> {
        let _changed = self.changing_directory();
        let d = Domain::parse(domain).map_err(|e| invalid("domain", domain, e))?;
        on_pool!(self, p => {
            sqlx::query(INSERT_DOMAIN).bind(d.as_str()).execute(p).await?;
            Ok(())
        })
    }

    /// Whether `domain` is local (case-insensitive, trailing dot ignored).
    /// An invalid domain is not local.
    pub async fn is_local_domain(&self, domain: &str) -> Result<bool> {
        let Ok(d) = Domain::parse(domain) else {
            return Ok(false);
        };
        on_pool!(self, p => {
            Ok(sqlx::query(SELECT_DOMAIN).bind(d.as_str()).fetch_optional(p).await?.is_some())
        })
    }

    /// The local domains, sorted.
    pub async fn list_domains(&self) -> Result<Vec<String>> {
        on_pool!(self, p => {
            let rows = sqlx::query("SELECT name FROM domains ORDER BY name").fetch_all(p).await?;
            rows.iter().map(|r| Ok(r.try_get::<String, _>(0)?)).collect()
        })
    }

    /// Creates an account. The login is an address; the account receives
    /// mail at it, and its domain becomes local.
    pub async fn add_user(&self, login: &str, password: &str) -> Result<()> {
        let _changed = self.changing_directory();
        let login = parse_login(login)?;
        let sql = self.passwords.sql()?;
        let hash = hash_blocking(password).await?;
        let key = login.key();
        let shown = login.to_string();
        // With a credentials file the two writes go to two database files:
        // a crash between their commits leaves at most an account without
        // a hash (no login) or a hash without an account (never used).
        write_tx!(self, tx => async {
            sqlx::query(INSERT_DOMAIN).bind(login.domain().as_str()).execute(&mut *tx).await?;
            if sqlx::query(ADDRESS_EXISTS).bind(&key).fetch_optional(&mut *tx).await?.is_some() {
                return Err(StoreError::AlreadyExists { what: "address", key: shown.clone() });
            }
            let done = sqlx::query(INSERT_USER).bind(&key).bind(&shown).execute(&mut *tx).await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::AlreadyExists { what: "user", key: shown.clone() });
            }
            sqlx::query(sql.upsert).bind(&key).bind(&hash).execute(&mut *tx).await?;
            sqlx::query(INSERT_ADDRESS).bind(&key).bind(&shown).bind(&key).execute(&mut *tx).await?;
            Ok(())
        }.await)
    }

    /// Deletes an account, its addresses, its forwarding targets, and the
    /// aliases that point at any of its addresses.
    pub async fn delete_user(&self, login: &str) -> Result<()> {
        let _changed = self.changing_directory();
        let login = parse_login(login)?;
        let key = login.key();
        write_tx!(self, tx => async {
            sqlx::query(
                "DELETE FROM aliases WHERE target_key IN (SELECT address_key FROM addresses WHERE login_key = $1)",
            )
            .bind(&key)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM forwards WHERE login_key = $1").bind(&key).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM addresses WHERE login_key = $1").bind(&key).execute(&mut *tx).await?;
            let done = sqlx::query("DELETE FROM users WHERE login_key = $1").bind(&key).execute(&mut *tx).await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound { what: "user", key: login.to_string() });
            }
            // Without the credentials file the hash stays there, unused:
            // a login needs the account too.
            if let Ok(sql) = self.passwords.sql() {
                sqlx::query(sql.delete).bind(&key).execute(&mut *tx).await?;
            }
            Ok(())
        }.await)
    }

    /// Replaces an account's password.
    pub async fn set_password(&self, login: &str, password: &str) -> Result<()> {
        let login = parse_login(login)?;
        let sql = self.passwords.sql()?;
        let hash = hash_blocking(password).await?;
        let key = login.key();
        write_tx!(self, tx => async {
            if sqlx::query(USER_EXISTS).bind(&key).fetch_optional(&mut *tx).await?.is_none() {
                return Err(StoreError::NotFound { what: "user", key: login.to_string() });
            }
            sqlx::query(sql.upsert).bind(&key).bind(&hash).execute(&mut *tx).await?;
            Ok(())
        }.await)
    }

    /// Every account, sorted by login.
    pub async fn list_users(&self) -> Result<Vec<User>> {
        let (users, addresses, forwards) = on_pool!(self, p => {
            let users = sqlx::query("SELECT login_key, login FROM users ORDER BY login_key").fetch_all(p).await?;
            let addresses = sqlx::query("SELECT login_key, address, address_key FROM addresses ORDER BY address_key")
                .fetch_all(p)
                .await?;
            let forwards = sqlx::query("SELECT login_key, target FROM forwards ORDER BY login_key, position")
                .fetch_all(p)
                .await?;
            let users: Vec<(String, String)> =
                users.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect::<Result<_>>()?;
            let addresses: Vec<(String, String, String)> = addresses
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
                .collect::<Result<_>>()?;
            let forwards: Vec<(String, String)> =
                forwards.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect::<Result<_>>()?;
            (users, addresses, forwards)
        });
        let mut by_key: BTreeMap<String, User> = users
            .into_iter()
            .map(|(key, login)| {
                (
                    key,
                    User {
                        login,
                        addresses: Vec::new(),
                        forward: Vec::new(),
                    },
                )
            })
            .collect();
        for (login_key, address, address_key) in addresses {
            if let Some(u) = by_key.get_mut(&login_key) {
                if address_key == login_key {
                    u.addresses.insert(0, address);
                } else {
                    u.addresses.push(address);
                }
            }
        }
        for (login_key, target) in forwards {
            if let Some(u) = by_key.get_mut(&login_key) {
                u.forward.push(target);
            }
        }
        Ok(by_key.into_values().collect())
    }

    /// An account's own sending limits; `None` when there is no such
    /// account (or the login is invalid).
    pub async fn sending_limits(&self, login: &str) -> Result<Option<SendingLimits>> {
        let Ok(login) = Address::parse(login) else {
            return Ok(None);
        };
        let row: Option<[Option<i64>; 4]> = on_pool!(self, p => {
            match sqlx::query(SELECT_LIMITS).bind(login.key()).fetch_optional(p).await? {
                Some(r) => Some([r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?]),
                None => None,
            }
        });
        Ok(row.map(|[m, r, s, d]| SendingLimits {
            messages_per_hour: limit_value(m),
            messages_per_day: limit_value(d),
            recipients_per_hour: limit_value(r),
            max_message_size: limit_value(s),
        }))
    }

    /// Replaces an account's own sending limits (`None` fields take the
    /// server's default again).
    pub async fn set_sending_limits(&self, login: &str, limits: SendingLimits) -> Result<()> {
        let login = parse_login(login)?;
        let key = login.key();
        let m = limit_column(limits.messages_per_hour)?;
        let r = limit_column(limits.recipients_per_hour)?;
        let s = limit_column(limits.max_message_size)?;
        let d = limit_column(limits.messages_per_day)?;
        write_tx!(self, tx => async {
            let done = sqlx::query(UPDATE_LIMITS).bind(&key).bind(m).bind(r).bind(s).bind(d).execute(&mut *tx).await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound { what: "user", key: login.to_string() });
            }
            Ok(())
        }.await)
    }

    /// Checks a password. An unknown (or invalid) login costs the same
    /// argon2 work as a known one and answers `false`.
    pub async fn verify_password(&self, login: &str, password: &str) -> Result<bool> {
        let sql = self.passwords.sql()?;
        let stored: Option<String> = match Address::parse(login) {
            Err(_) => None,
            Ok(login) => on_pool!(self, p => {
                let row = sqlx::query(sql.select)
                    .bind(login.key())
                    .fetch_optional(p)
                    .await?;
                match row {
                    Some(r) => Some(r.try_get::<String, _>(0)?),
                    None => None,
                }
            }),
        };
        let password = password.to_owned();
        password::off_thread(move || match stored {
            Some(phc) => password::verify(&password, &phc),
            None => {
                let _ = password::verify(&password, password::dummy_hash());
                Ok(false)
            }
        })
        .await
    }

    /// Whether the account `login` may use `address` (as a sender): its own
    /// address, an extra address added with [`Store::add_address`], or the
    /// source of an exact alias whose target is one of those. A catch-all
    /// alias does not grant sending rights. Invalid input answers `false`.
    pub async fn owns_address(&self, login: &str, address: &str) -> Result<bool> {
        let (Ok(login), Ok(address)) = (Address::parse(login), Address::parse(address)) else {
            return Ok(false);
        };
        on_pool!(self, p => {
            let row = sqlx::query(
                "SELECT 1 FROM addresses WHERE address_key = $2 AND login_key = $1 \
                 UNION ALL \
                 SELECT 1 FROM aliases WHERE source_key = $2 AND target_key IN \
                   (SELECT address_key FROM addresses WHERE login_key = $1)",
            )
            .bind(login.key())
            .bind(address.key())
            .fetch_optional(p)
            .await?;
            Ok(row.is_some())
        })
    }

    /// Gives the account `login` another address (it receives mail there and
    /// may send from it). The address's domain becomes local.
    pub async fn add_address(&self, login: &str, address: &str) -> Result<()> {
        let _changed = self.changing_directory();
        let login = parse_login(login)?;
        let address = parse_address(address)?;
        let login_key = login.key();
        let key = address.key();
        write_tx!(self, tx => async {
            if sqlx::query(USER_EXISTS).bind(&login_key).fetch_optional(&mut *tx).await?.is_none() {
                return Err(StoreError::NotFound { what: "user", key: login.to_string() });
            }
            sqlx::query(INSERT_DOMAIN).bind(address.domain().as_str()).execute(&mut *tx).await?;
            let done = sqlx::query(INSERT_ADDRESS)
                .bind(&key)
                .bind(address.to_string())
                .bind(&login_key)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::AlreadyExists { what: "address", key: address.to_string() });
            }
            Ok(())
        }.await)
    }

    /// Replaces the account's forwarding targets (empty: no forwarding).
    /// Mail to the account is forwarded there and also kept in its mailbox.
    pub async fn set_forward(&self, login: &str, targets: &[String]) -> Result<()> {
        let _changed = self.changing_directory();
        let login = parse_login(login)?;
        if targets.len() > MAX_FORWARD_TARGETS {
            return Err(StoreError::InvalidArgument(
                "more than 32 forwarding targets",
            ));
        }
        let mut seen = HashSet::new();
        let mut parsed = Vec::new();
        for t in targets {
            let a = parse_address(t)?;
            if a.key() == login.key() {
                return Err(StoreError::InvalidArgument(
                    "an account cannot forward to itself",
                ));
            }
            if seen.insert(a.key()) {
                parsed.push(a.to_string());
            }
        }
        let key = login.key();
        write_tx!(self, tx => async {
            if sqlx::query(USER_EXISTS).bind(&key).fetch_optional(&mut *tx).await?.is_none() {
                return Err(StoreError::NotFound { what: "user", key: login.to_string() });
            }
            sqlx::query("DELETE FROM forwards WHERE login_key = $1").bind(&key).execute(&mut *tx).await?;
            for (position, target) in (0i64..).zip(&parsed) {
                sqlx::query("INSERT INTO forwards (login_key, position, target) VALUES ($1, $2, $3)")
                    .bind(&key)
                    .bind(position)
                    .bind(target)
                    .execute(&mut *tx)
                    .await?;
            }
            Ok(())
        }.await)
    }

    /// Adds an alias from `source` (`x@d`, or `@d` for a catch-all) to
    /// `target` (a local login or address, or an external address). The
    /// source's domain becomes local.
    pub async fn add_alias(&self, source: &str, target: &str) -> Result<()> {
        let _changed = self.changing_directory();
        let src = AliasSource::parse(source).map_err(|e| invalid("alias source", source, e))?;
        let dst = parse_address(target)?;
        if src.key() == dst.key() {
            return Err(StoreError::InvalidArgument(
                "an alias cannot point at itself",
            ));
        }
        write_tx!(self, tx => async {
            sqlx::query(INSERT_DOMAIN).bind(src.domain().as_str()).execute(&mut *tx).await?;
            let done = sqlx::query(
                "INSERT INTO aliases (source_key, source, target_key, target) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(src.key())
            .bind(src.to_string())
            .bind(dst.key())
            .bind(dst.to_string())
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::AlreadyExists { what: "alias", key: format!("{src} -> {dst}") });
            }
            Ok(())
        }.await)
    }

    /// Removes one alias.
    pub async fn delete_alias(&self, source: &str, target: &str) -> Result<()> {
        let _changed = self.changing_directory();
        let src = AliasSource::parse(source).map_err(|e| invalid("alias source", source, e))?;
        let dst = parse_address(target)?;
        on_pool!(self, p => {
            let done = sqlx::query("DELETE FROM aliases WHERE source_key = $1 AND target_key = $2")
                .bind(src.key())
                .bind(dst.key())
                .execute(p)
                .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound { what: "alias", key: format!("{src} -> {dst}") });
            }
            Ok(())
        })
    }

    /// Every alias as `(source, target)`, sorted.
    pub async fn list_aliases(&self) -> Result<Vec<(String, String)>> {
        on_pool!(self, p => {
            let rows = sqlx::query("SELECT source, target FROM aliases ORDER BY source_key, target_key")
                .fetch_all(p)
                .await?;
            rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
        })
    }

    /// Resolves a recipient address (see [`crate::alias`] for the rules).
    ///
    /// Entries loaded from the store are kept (shared by clones of this
    /// handle) while the store's directory version stays the same, and
    /// the version itself is read at most once per
    /// [`DIRECTORY_RECHECK`] while resolutions find someone to deliver
    /// to: a resolution costs no query when nothing changed. A change
    /// made through this handle is seen by the next resolution; one made
    /// by another process is seen at once when it makes an address
    /// exist (a "no such address" always reads the version again), and
    /// within [`DIRECTORY_RECHECK`] otherwise.
    pub async fn resolve(&self, address: &str) -> Result<Resolution> {
        let addr = parse_address(address)?;
        let Some(c) = &self.directory else {
            return self.expand(&addr, None).await;
        };
        let recent = lock(c).recent_version(Instant::now(), DIRECTORY_RECHECK);
        if let Some(v) = recent {
            let r = self.expand(&addr, Some((c, v))).await?;
            if matches!(r, Resolution::Deliver { .. }) {
                return Ok(r);
            }
        }
        let at = Instant::now();
        let v = self.directory_version().await?;
        lock(c).read_version(v, at);
        self.expand(&addr, Some((c, v))).await
    }

    /// Expands `addr` with entries cached under the directory version
    /// `cache.1` (loading and caching the missing ones), or all loaded.
    async fn expand(
        &self,
        addr: &Address,
        cache: Option<(&Mutex<DirectoryCache>, i64)>,
    ) -> Result<Resolution> {
        let mut dir = Directory::default();
        // Each round loads (or finds cached) at least one level of the alias tree.
        for _ in 0..(alias::MAX_ALIAS_DEPTH + 3) {
            let mut needs = match alias::expand(&dir, addr) {
                Expansion::Done(r) => return Ok(r),
                Expansion::Need(needs) => needs,
            };
            if let Some((c, v)) = cache {
                needs = lock(c).fill(v, &mut dir, needs);
            }
            for need in needs {
                match need {
                    Need::Domain(d) => {
                        let entry = self.load_domain(&d).await?;
                        if let Some((c, v)) = cache {
                            lock(c).remember_domain(v, &d, &entry);
                        }
                        dir.domains.insert(d, entry);
                    }
                    Need::Address(k) => {
                        let entry = self.load_address(&k).await?;
                        if let Some((c, v)) = cache {
                            lock(c).remember_address(v, &k, &entry);
                        }
                        dir.addresses.insert(k, entry);
                    }
                }
            }
        }
        Err(StoreError::Corrupt("alias expansion did not converge"))
    }

    /// The directory version: incremented by every change to domains,
    /// accounts, addresses, forwarding targets and aliases (triggers of
    /// schema version 5).
    async fn directory_version(&self) -> Result<i64> {
        on_pool!(self, p => {
            let row = sqlx::query("SELECT version FROM directory_version WHERE id = 1")
                .fetch_one(p)
                .await?;
            Ok(row.try_get(0)?)
        })
    }

    async fn load_domain(&self, domain: &str) -> Result<DomainEntry> {
        on_pool!(self, p => {
            if sqlx::query(SELECT_DOMAIN).bind(domain).fetch_optional(p).await?.is_none() {
                return Ok(DomainEntry::Foreign);
            }
            let rows = sqlx::query("SELECT target FROM aliases WHERE source_key = $1 ORDER BY target_key")
                .bind(format!("@{domain}"))
                .fetch_all(p)
                .await?;
            let catch_all = rows.iter().map(|r| r.try_get::<String, _>(0)).collect::<Result<_, _>>()?;
            Ok(DomainEntry::Local { catch_all })
        })
    }

    async fn load_address(&self, key: &str) -> Result<AddressEntry> {
        on_pool!(self, p => {
            let owner = sqlx::query(
                "SELECT u.login, u.login_key FROM addresses a JOIN users u ON u.login_key = a.login_key WHERE a.address_key = $1",
            )
            .bind(key)
            .fetch_optional(p)
            .await?;
            let owner = match owner {
                None => None,
                Some(row) => {
                    let login: String = row.try_get(0)?;
                    let login_key: String = row.try_get(1)?;
                    let rows = sqlx::query("SELECT target FROM forwards WHERE login_key = $1 ORDER BY position")
                        .bind(&login_key)
                        .fetch_all(p)
                        .await?;
                    let forward = rows.iter().map(|r| r.try_get::<String, _>(0)).collect::<Result<_, _>>()?;
                    Some(Owner { login, forward })
                }
            };
            let rows = sqlx::query("SELECT target FROM aliases WHERE source_key = $1 ORDER BY target_key")
                .bind(key)
                .fetch_all(p)
                .await?;
            let aliases = rows.iter().map(|r| r.try_get::<String, _>(0)).collect::<Result<_, _>>()?;
            Ok(AddressEntry { owner, aliases })
        })
    }
}

/// Marks the directory changed through a handle when dropped: at the end
/// of the change, whether it committed or not.
struct DirectoryChange<'a>(&'a Store);

impl Drop for DirectoryChange<'_> {
    fn drop(&mut self) {
        if let Some(c) = &self.0.directory {
            lock(c).changed(Instant::now());
        }
    }
}

impl Store {
    /// Held across a change of the directory, so that the next
    /// resolution through this handle reads the version again.
    fn changing_directory(&self) -> DirectoryChange<'_> {
        DirectoryChange(self)
    }
}

/// The cache, even after a panic elsewhere (its entries are whole).
fn lock(cache: &Mutex<DirectoryCache>) -> MutexGuard<'_, DirectoryCache> {
    cache.lock().unwrap_or_else(|e| e.into_inner())
}
