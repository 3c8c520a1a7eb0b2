//! The outbound queue and the delivery log.
//!
//! Each recipient moves `pending -> delivered` or `pending -> failed` once;
//! a deferral keeps it pending with a later `next_attempt`. When no recipient
//! of a message is pending any more, the message and its recipients are
//! removed; the delivery log keeps one record per attempt and outcome.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use sqlx::Row;

use crate::address::loose_key;
use crate::error::{Result, StoreError};
use crate::{Store, on_pool, write_tx};

/// Most recipients of one queued message (RFC 5321 section 4.5.3.1.8 asks for at least 100).
pub const MAX_RECIPIENTS: usize = 1000;
/// Longest recipient or sender address stored, in bytes.
pub const MAX_ADDRESS_BYTES: usize = 1024;
/// Longest stored detail text (an SMTP reply, usually), in bytes; longer ones are cut.
pub const MAX_DETAIL_BYTES: usize = 4096;

/// A queued message's identifier (never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub i64);

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Longest ENVID stored, in bytes after xtext decoding (RFC 3461 4.4
/// allows 100 characters).
pub const MAX_ENVID_BYTES: usize = 100;
/// Longest ORCPT address type (e.g. `rfc822`), in bytes.
pub const MAX_ADDR_TYPE_BYTES: usize = 64;

/// DSN `RET` (RFC 3461 4.3): what a failure DSN returns of the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ret {
    /// The full message.
    Full,
    /// The header section only.
    Hdrs,
}

impl Ret {
    fn as_str(self) -> &'static str {
        match self {
            Ret::Full => "FULL",
            Ret::Hdrs => "HDRS",
        }
    }

    fn parse(s: &str) -> Result<Ret> {
        match s {
            "FULL" => Ok(Ret::Full),
            "HDRS" => Ok(Ret::Hdrs),
            _ => Err(StoreError::Corrupt("unknown RET value")),
        }
    }
}

/// DSN `NOTIFY` (RFC 3461 4.1) of one recipient, when the client gave one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notify {
    /// `NEVER`: no DSN at all.
    Never,
    /// Any of SUCCESS, FAILURE, DELAY (at least one in a valid command).
    On {
        /// SUCCESS.
        success: bool,
        /// FAILURE.
        failure: bool,
        /// DELAY.
        delay: bool,
    },
}

impl Notify {
    fn to_db(self) -> String {
        match self {
            Notify::Never => "NEVER".into(),
            Notify::On {
                success,
                failure,
                delay,
            } => [(success, "SUCCESS"), (failure, "FAILURE"), (delay, "DELAY")]
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, k)| *k)
                .collect::<Vec<_>>()
                .join(","),
        }
    }

    fn parse(s: &str) -> Result<Notify> {
        if s == "NEVER" {
            return Ok(Notify::Never);
        }
        let (mut success, mut failure, mut delay) = (false, false, false);
        for k in s.split(',').filter(|k| !k.is_empty()) {
            match k {
                "SUCCESS" => success = true,
                "FAILURE" => failure = true,
                "DELAY" => delay = true,
                _ => return Err(StoreError::Corrupt("unknown NOTIFY value")),
            }
        }
        Ok(Notify::On {
            success,
            failure,
            delay,
        })
    }
}

/// DSN `ORCPT` (RFC 3461 4.2): the original recipient as the client gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orcpt {
    /// Address type, e.g. `rfc822`.
    pub addr_type: String,
    /// The address, xtext-decoded.
    pub address: String,
}

/// DSN parameters of one recipient (RFC 3461 4.1, 4.2); the default is
/// "none given".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecipientDsn {
    /// `NOTIFY`, if given.
    pub notify: Option<Notify>,
    /// `ORCPT`, if given.
    pub orcpt: Option<Orcpt>,
}

/// DSN parameters of a message (RFC 3461 4); the default is "none given",
/// which is also what a client that did not use the extension gets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DsnParams {
    /// `RET`, if given.
    pub ret: Option<Ret>,
    /// `ENVID` (xtext-decoded), if given; at most [`MAX_ENVID_BYTES`].
    pub envid: Option<String>,
    /// Per recipient, in the order of [`NewMessage::recipients`]; missing
    /// entries mean "none given".
    pub recipients: Vec<RecipientDsn>,
    /// `REQUIRETLS` (RFC 8689), kept with the DSN parameters because it
    /// travels with them: the message may only be relayed over TLS that
    /// DNSSEC authenticates, to servers that offer REQUIRETLS.
    pub requiretls: bool,
}

/// A message to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// Envelope sender; `""` for the null sender (bounces).
    pub sender: String,
    /// Envelope recipients (duplicates, compared case-insensitively, are
    /// queued once, with the DSN parameters of the first).
    pub recipients: Vec<String>,
    /// The whole message.
    pub body: Vec<u8>,
    /// Seconds after queueing at which undelivered recipients should fail.
    pub lifetime_secs: i64,
    /// The DSN parameters the client gave (RFC 3461).
    pub dsn: DsnParams,
}

/// A pending recipient of a due message, with what the relay needs to
/// decide on DSNs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRecipient {
    /// The address as queued.
    pub rcpt: String,
    /// Its DSN parameters.
    pub dsn: RecipientDsn,
    /// Whether a delay DSN was already queued for it.
    pub delay_notified: bool,
}

/// A message that is due for delivery, as returned by [`Store::due`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    /// Its identifier.
    pub id: MessageId,
    /// Envelope sender (`""` for the null sender).
    pub sender: String,
    /// When it was queued.
    pub created: i64,
    /// When undelivered recipients should fail (`created + lifetime_secs`).
    pub expires: i64,
    /// Failed attempts so far: the most of any recipient in `pending`.
    pub attempts: i64,
    /// `RET` as given.
    pub ret: Option<Ret>,
    /// `ENVID` as given (xtext-decoded).
    pub envid: Option<String>,
    /// `REQUIRETLS` was given (RFC 8689).
    pub requiretls: bool,
    /// The pending recipients that are due now, in queueing order.
    pub pending: Vec<PendingRecipient>,
    /// The whole message.
    pub body: Vec<u8>,
}

/// A recipient's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecipientState {
    /// Not delivered yet (maybe deferred).
    Pending,
    /// Accepted by the next hop.
    Delivered,
    /// Permanently failed.
    Failed,
}

impl RecipientState {
    fn as_str(self) -> &'static str {
        match self {
            RecipientState::Pending => "pending",
            RecipientState::Delivered => "delivered",
            RecipientState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<RecipientState> {
        match s {
            "pending" => Ok(RecipientState::Pending),
            "delivered" => Ok(RecipientState::Delivered),
            "failed" => Ok(RecipientState::Failed),
            _ => Err(StoreError::Corrupt("unknown recipient state")),
        }
    }
}

impl fmt::Display for RecipientState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One recipient of a queued message, as listed by [`Store::list_queue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientStatus {
    /// The address as queued.
    pub rcpt: String,
    /// Its state.
    pub state: RecipientState,
    /// Attempts recorded so far.
    pub attempts: i64,
    /// When the next attempt is due (meaningful while pending).
    pub next_attempt: i64,
    /// The last detail recorded (an SMTP reply, an error), or `""`.
    pub last_detail: String,
    /// Whether a delay DSN was queued for it.
    pub delay_notified: bool,
}

/// A queued message, as listed by [`Store::list_queue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    /// Its identifier.
    pub id: MessageId,
    /// Envelope sender.
    pub sender: String,
    /// When it was queued.
    pub created: i64,
    /// When it expires.
    pub expires: i64,
    /// Until when a relay worker holds it (0 or past: nobody).
    pub lease_until: i64,
    /// Body size in bytes.
    pub size: i64,
    /// Every recipient (delivered and failed ones too, while any is pending).
    pub recipients: Vec<RecipientStatus>,
}

/// What happened to a recipient, as logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted by the next hop.
    Delivered,
    /// Temporarily failed; retried later.
    Deferred,
    /// Permanently failed.
    Failed,
    /// Removed from the queue by an administrator while pending.
    Deleted,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Deferred => "deferred",
            Outcome::Failed => "failed",
            Outcome::Deleted => "deleted",
        }
    }

    fn parse(s: &str) -> Result<Outcome> {
        match s {
            "delivered" => Ok(Outcome::Delivered),
            "deferred" => Ok(Outcome::Deferred),
            "failed" => Ok(Outcome::Failed),
            "deleted" => Ok(Outcome::Deleted),
            _ => Err(StoreError::Corrupt("unknown delivery outcome")),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of the delivery log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    /// The message.
    pub id: MessageId,
    /// The recipient.
    pub rcpt: String,
    /// When (unix seconds, as passed in by the caller).
    pub at: i64,
    /// What happened.
    pub outcome: Outcome,
    /// The detail given (an SMTP reply, an error).
    pub detail: String,
}

/// A recipient's DSN parameters from its stored columns.
fn recipient_dsn(
    notify: Option<String>,
    orcpt_type: Option<String>,
    orcpt: Option<String>,
) -> Result<RecipientDsn> {
    Ok(RecipientDsn {
        notify: notify.as_deref().map(Notify::parse).transpose()?,
        orcpt: match (orcpt_type, orcpt) {
            (Some(addr_type), Some(address)) => Some(Orcpt { addr_type, address }),
            _ => None,
        },
    })
}

fn cut(detail: &str) -> &str {
    if detail.len() <= MAX_DETAIL_BYTES {
        return detail;
    }
    let mut end = MAX_DETAIL_BYTES;
    while !detail.is_char_boundary(end) {
        end -= 1;
    }
    &detail[..end]
}

/// Serialises writers of one message. A no-op update takes the row lock on
/// PostgreSQL (READ COMMITTED would otherwise let two transactions that
/// finish the last two recipients each see the other's still pending, and
/// neither remove the message); SQLite writers are serialised already.
const LOCK_MESSAGE: &str = "UPDATE messages SET lease_until = lease_until WHERE id = $1";

/// Delivery records removed per transaction by [`Store::prune_delivery_log`].
pub const PRUNE_BATCH: i64 = 10_000;

const INSERT_LOG: &str =
    "INSERT INTO deliveries (message_id, rcpt, at, outcome, detail) VALUES ($1, $2, $3, $4, $5)";

/// A validated [`NewMessage`], ready to insert.
struct Prepared<'a> {
    msg: &'a NewMessage,
    /// (key, address as given, NOTIFY for the database, ORCPT) per unique recipient.
    recipients: Vec<(String, &'a str, Option<String>, Option<&'a Orcpt>)>,
    size: i64,
    now: i64,
    expires: i64,
}

impl<'a> Prepared<'a> {
    fn new(msg: &'a NewMessage, now: i64) -> Result<Prepared<'a>> {
        if msg.recipients.is_empty() {
            return Err(StoreError::InvalidArgument(
                "a message needs at least one recipient",
            ));
        }
        if msg.recipients.len() > MAX_RECIPIENTS {
            return Err(StoreError::InvalidArgument("more than 1000 recipients"));
        }
        if msg.lifetime_secs <= 0 {
            return Err(StoreError::InvalidArgument("lifetime must be positive"));
        }
        if msg.sender.len() > MAX_ADDRESS_BYTES
            || msg
                .recipients
                .iter()
                .any(|r| r.is_empty() || r.len() > MAX_ADDRESS_BYTES)
        {
            return Err(StoreError::InvalidArgument("empty or over-long address"));
        }
        if msg.dsn.recipients.len() > msg.recipients.len() {
            return Err(StoreError::InvalidArgument(
                "more DSN parameter sets than recipients",
            ));
        }
        if msg
            .dsn
            .envid
            .as_ref()
            .is_some_and(|e| e.len() > MAX_ENVID_BYTES)
        {
            return Err(StoreError::InvalidArgument("over-long ENVID"));
        }
        if msg
            .dsn
            .recipients
            .iter()
            .filter_map(|d| d.orcpt.as_ref())
            .any(|o| {
                o.addr_type.is_empty()
                    || o.addr_type.len() > MAX_ADDR_TYPE_BYTES
                    || o.address.len() > MAX_ADDRESS_BYTES
            })
        {
            return Err(StoreError::InvalidArgument("empty or over-long ORCPT"));
        }
        let mut seen = HashSet::new();
        let recipients = msg
            .recipients
            .iter()
            .enumerate()
            .map(|(i, r)| (loose_key(r), r.as_str(), msg.dsn.recipients.get(i)))
            .filter(|(k, _, _)| seen.insert(k.clone()))
            .map(|(k, r, d)| {
                let notify = d.and_then(|d| d.notify).map(Notify::to_db);
                (k, r, notify, d.and_then(|d| d.orcpt.as_ref()))
            })
            .collect();
        let size = i64::try_from(msg.body.len())
            .map_err(|_| StoreError::InvalidArgument("message too large"))?;
        Ok(Prepared {
            msg,
            recipients,
            size,
            now,
            expires: now.saturating_add(msg.lifetime_secs),
        })
    }
}

/// Inserts a [`Prepared`] message inside the transaction `$tx`; evaluates
/// to `Result<MessageId>`.
macro_rules! insert_message {
    ($tx:ident, $p:expr) => {
        insert_message!($tx, $p, 0i64, "")
    };
    ($tx:ident, $p:expr, $lease_until:expr, $owner:expr) => {{
        let p = &$p;
        let row = sqlx::query(
            "INSERT INTO messages (sender, created, expires, dsn_requested, lease_until, size, body, envid, ret, lease_owner, requiretls) \
             VALUES ($1, $2, $3, $4, $9, $5, $6, $7, $8, $10, $11) RETURNING id",
        )
        .bind(&p.msg.sender)
        .bind(p.now)
        .bind(p.expires)
        .bind(i64::from(
            p.msg.dsn.ret.is_some() || p.msg.dsn.envid.is_some() || !p.msg.dsn.recipients.is_empty(),
        ))
        .bind(p.size)
        .bind(&p.msg.body)
        .bind(p.msg.dsn.envid.as_deref())
        .bind(p.msg.dsn.ret.map(Ret::as_str))
        .bind($lease_until)
        .bind($owner)
        .bind(i64::from(p.msg.dsn.requiretls))
        .fetch_one(&mut *$tx)
        .await?;
        let id: i64 = row.try_get(0)?;
        for (position, (key, rcpt, notify, orcpt)) in (0i64..).zip(&p.recipients) {
            sqlx::query(
                "INSERT INTO recipients (message_id, position, rcpt, rcpt_key, state, attempts, next_attempt, last_detail, \
                 notify, orcpt_type, orcpt, delay_notified) \
                 VALUES ($1, $2, $3, $4, 'pending', 0, $5, '', $6, $7, $8, 0)",
            )
            .bind(id)
            .bind(position)
            .bind(*rcpt)
            .bind(key)
            .bind(p.now)
            .bind(notify.as_deref())
            .bind(orcpt.map(|o| o.addr_type.as_str()))
            .bind(orcpt.map(|o| o.address.as_str()))
            .execute(&mut *$tx)
            .await?;
        }
        Ok::<MessageId, StoreError>(MessageId(id))
    }};
}

/// The [`QueuedMessage`]s of `rows` (id, sender, created, expires, envid,
/// ret, body, requiretls), each with its pending recipients due at `now`; messages
/// without any are left out.
macro_rules! load_queued {
    ($p:ident, $rows:expr, $now:expr) => {{
        let (rows, now) = ($rows, $now);
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let id: i64 = row.try_get(0)?;
            let rcpts = sqlx::query(
                "SELECT rcpt, attempts, notify, orcpt_type, orcpt, delay_notified FROM recipients \
                     WHERE message_id = $1 AND state = 'pending' \
                     AND next_attempt <= $2 ORDER BY position",
            )
            .bind(id)
            .bind(now)
            .fetch_all($p)
            .await?;
            let mut pending = Vec::with_capacity(rcpts.len());
            let mut attempts = 0i64;
            for r in &rcpts {
                pending.push(PendingRecipient {
                    rcpt: r.try_get(0)?,
                    dsn: recipient_dsn(r.try_get(2)?, r.try_get(3)?, r.try_get(4)?)?,
                    delay_notified: r.try_get::<i64, _>(5)? != 0,
                });
                attempts = attempts.max(r.try_get::<i64, _>(1)?);
            }
            if pending.is_empty() {
                continue; // delivered in between
            }
            out.push(QueuedMessage {
                id: MessageId(id),
                sender: row.try_get(1)?,
                created: row.try_get(2)?,
                expires: row.try_get(3)?,
                attempts,
                envid: row.try_get(4)?,
                ret: row
                    .try_get::<Option<String>, _>(5)?
                    .as_deref()
                    .map(Ret::parse)
                    .transpose()?,
                requiretls: row.try_get::<i64, _>(7)? != 0,
                pending,
                body: row.try_get(6)?,
            });
        }
        Ok::<Vec<QueuedMessage>, StoreError>(out)
    }};
}

impl Store {
    /// Queues a message; when this returns, it is durably stored. Every
    /// recipient is pending and due at `now`.
    pub async fn enqueue(&self, msg: &NewMessage, now: i64) -> Result<MessageId> {
        let prepared = Prepared::new(msg, now)?;
        write_tx!(self, tx => async {
            insert_message!(tx, prepared)
        }.await)
    }

    /// Queues a message unless one was queued under `copy_key` before
    /// (and the key not yet pruned, [`Store::prune_delivery_log`]): the
    /// same copy handed on again after a crash or a lost reply is queued
    /// once. The key and the message are written in one transaction;
    /// `None` when the key was there.
    pub async fn enqueue_once(
        &self,
        msg: &NewMessage,
        copy_key: &str,
        now: i64,
    ) -> Result<Option<MessageId>> {
        let prepared = Prepared::new(msg, now)?;
        write_tx!(self, tx => async {
            let fresh = sqlx::query(
                "INSERT INTO queued_once (copy_key, at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(copy_key)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if fresh.rows_affected() == 0 {
                return Ok(None);
            }
            insert_message!(tx, prepared).map(Some)
        }.await)
    }

    /// Queues `report` (a delay DSN about message `id`) and records that
    /// `rcpts` were notified, in one transaction, so that a recipient gets
    /// at most one delay DSN even across a crash. Recipients already
    /// notified, no longer pending or unknown are left out; when none is
    /// left, nothing is queued and `None` is returned.
    pub async fn enqueue_delay_report(
        &self,
        id: MessageId,
        rcpts: &[String],
        report: &NewMessage,
        now: i64,
    ) -> Result<Option<MessageId>> {
        let prepared = Prepared::new(report, now)?;
        write_tx!(self, tx => async {
            sqlx::query(LOCK_MESSAGE).bind(id.0).execute(&mut *tx).await?;
            let mut marked = 0u64;
            for rcpt in rcpts {
                let done = sqlx::query(
                    "UPDATE recipients SET delay_notified = 1 WHERE message_id = $1 AND rcpt_key = $2 \
                     AND state = 'pending' AND delay_notified = 0",
                )
                .bind(id.0)
                .bind(loose_key(rcpt))
                .execute(&mut *tx)
                .await?;
                marked += done.rows_affected();
            }
            if marked == 0 {
                return Ok(None);
            }
            insert_message!(tx, prepared).map(Some)
        }.await)
    }

    /// Up to `limit` messages, oldest first, that are not leased at `now`
    /// and have at least one pending recipient due at `now`. Each lists only
    /// its due recipients.
    pub async fn due(&self, now: i64, limit: usize) -> Result<Vec<QueuedMessage>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        on_pool!(self, p => {
            let rows = sqlx::query(
                "SELECT id, sender, created, expires, envid, ret, body, requiretls FROM messages m \
                 WHERE m.lease_until <= $1 AND EXISTS (SELECT 1 FROM recipients r \
                   WHERE r.message_id = m.id AND r.state = 'pending' AND r.next_attempt <= $1) \
                 ORDER BY m.id LIMIT $2",
            )
            .bind(now)
            .bind(limit)
            .fetch_all(p)
            .await?;
            load_queued!(p, rows, now)
        })
    }

    /// Queues a message already leased until `lease_until` by the relay
    /// `owner` (which queues what it is handed and starts on it at once,
    /// without a queue scan or a second commit); durable when this
    /// returns, like [`Store::enqueue`]. A relay that dies before the
    /// lease ends leaves it to itself when it starts again
    /// ([`Store::release_leases_of`]), or to any relay once it expires
    /// ([`Store::due`]).
    pub async fn enqueue_leased(
        &self,
        msg: &NewMessage,
        now: i64,
        lease_until: i64,
        owner: &str,
    ) -> Result<QueuedMessage> {
        let prepared = Prepared::new(msg, now)?;
        let id = write_tx!(self, tx => async {
            insert_message!(tx, prepared, lease_until, owner)
        }.await)?;
        on_pool!(self, p => {
            let rows = sqlx::query(
                "SELECT id, sender, created, expires, envid, ret, body, requiretls FROM messages WHERE id = $1",
            )
            .bind(id.0)
            .fetch_all(p)
            .await?;
            load_queued!(p, rows, now)
        })?
        .pop()
        .ok_or(StoreError::Corrupt("a message just queued is missing"))
    }
}

impl Store {
    /// Takes the message for the relay `owner` until `until`, if nobody
    /// holds it at `now`. A relay that crashes frees it when the lease
    /// expires, or when it starts again ([`Store::release_leases_of`]).
    /// `false`: leased by another worker, or no such message.
    pub async fn lease(&self, id: MessageId, now: i64, until: i64, owner: &str) -> Result<bool> {
        on_pool!(self, p => {
            let done = sqlx::query(
                "UPDATE messages SET lease_until = $3, lease_owner = $4 WHERE id = $1 AND lease_until <= $2",
            )
            .bind(id.0)
            .bind(now)
            .bind(until)
            .bind(owner)
            .execute(p)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Releases the leases `owner` holds (and those of no owner, from
    /// before schema version 6): what a relay left when it died, released
    /// when it starts again. Other relays' leases stay. The leases
    /// released.
    pub async fn release_leases_of(&self, owner: &str) -> Result<u64> {
        on_pool!(self, p => {
            let done = sqlx::query(
                "UPDATE messages SET lease_until = 0, lease_owner = '' \
                 WHERE lease_until > 0 AND lease_owner IN ($1, '')",
            )
            .bind(owner)
            .execute(p)
            .await?;
            Ok(done.rows_affected())
        })
    }

    /// Gives up a lease early (after an attempt). `false`: no such message.
    pub async fn release(&self, id: MessageId) -> Result<bool> {
        on_pool!(self, p => {
            let done = sqlx::query("UPDATE messages SET lease_until = 0, lease_owner = '' WHERE id = $1")
                .bind(id.0)
                .execute(p)
                .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Records that `rcpt` was accepted by the next hop (final).
    pub async fn record_delivered(
        &self,
        id: MessageId,
        rcpt: &str,
        now: i64,
        detail: &str,
    ) -> Result<()> {
        self.record(id, rcpt, now, Outcome::Delivered, None, detail)
            .await
    }

    /// Records a temporary failure; `rcpt` stays pending until `next_attempt`.
    pub async fn record_deferred(
        &self,
        id: MessageId,
        rcpt: &str,
        now: i64,
        next_attempt: i64,
        detail: &str,
    ) -> Result<()> {
        self.record(id, rcpt, now, Outcome::Deferred, Some(next_attempt), detail)
            .await
    }

    /// Records a permanent failure of `rcpt` (final).
    pub async fn record_failed(
        &self,
        id: MessageId,
        rcpt: &str,
        now: i64,
        detail: &str,
    ) -> Result<()> {
        self.record(id, rcpt, now, Outcome::Failed, None, detail)
            .await
    }

    async fn record(
        &self,
        id: MessageId,
        rcpt: &str,
        now: i64,
        outcome: Outcome,
        next_attempt: Option<i64>,
        detail: &str,
    ) -> Result<()> {
        let key = loose_key(rcpt);
        let detail = cut(detail);
        write_tx!(self, tx => async {
            sqlx::query(LOCK_MESSAGE).bind(id.0).execute(&mut *tx).await?;
            let row = sqlx::query("SELECT state, rcpt FROM recipients WHERE message_id = $1 AND rcpt_key = $2")
                .bind(id.0)
                .bind(&key)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(row) = row else {
                return Err(StoreError::NotFound { what: "queued recipient", key: format!("{id} {rcpt}") });
            };
            let state = RecipientState::parse(&row.try_get::<String, _>(0)?)?;
            let stored_rcpt: String = row.try_get(1)?;
            if state != RecipientState::Pending {
                return Err(StoreError::NotPending { id: id.0, rcpt: stored_rcpt, state: state.to_string() });
            }
            match next_attempt {
                Some(next) => {
                    sqlx::query(
                        "UPDATE recipients SET attempts = attempts + 1, next_attempt = $3, last_detail = $4 \
                         WHERE message_id = $1 AND rcpt_key = $2",
                    )
                    .bind(id.0)
                    .bind(&key)
                    .bind(next)
                    .bind(detail)
                    .execute(&mut *tx)
                    .await?;
                }
                None => {
                    let new_state = match outcome {
                        Outcome::Delivered => RecipientState::Delivered,
                        _ => RecipientState::Failed,
                    };
                    sqlx::query(
                        "UPDATE recipients SET state = $3, attempts = attempts + 1, last_detail = $4 \
                         WHERE message_id = $1 AND rcpt_key = $2",
                    )
                    .bind(id.0)
                    .bind(&key)
                    .bind(new_state.as_str())
                    .bind(detail)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            sqlx::query(INSERT_LOG)
                .bind(id.0)
                .bind(&stored_rcpt)
                .bind(now)
                .bind(outcome.as_str())
                .bind(detail)
                .execute(&mut *tx)
                .await?;
            if next_attempt.is_none() {
                let left: i64 = sqlx::query(
                    "SELECT COUNT(*) FROM recipients WHERE message_id = $1 AND state = 'pending'",
                )
                .bind(id.0)
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
                if left == 0 {
                    sqlx::query("DELETE FROM recipients WHERE message_id = $1").bind(id.0).execute(&mut *tx).await?;
                    sqlx::query("DELETE FROM messages WHERE id = $1").bind(id.0).execute(&mut *tx).await?;
                }
            }
            Ok(())
        }.await)
    }

    /// Every queued message with all its recipients, oldest first.
    pub async fn list_queue(&self) -> Result<Vec<QueueEntry>> {
        on_pool!(self, p => {
            let msgs = sqlx::query("SELECT id, sender, created, expires, lease_until, size FROM messages ORDER BY id")
                .fetch_all(p)
                .await?;
            let rcpts = sqlx::query(
                "SELECT message_id, rcpt, state, attempts, next_attempt, last_detail, delay_notified FROM recipients \
                 ORDER BY message_id, position",
            )
            .fetch_all(p)
            .await?;
            let mut entries: BTreeMap<i64, QueueEntry> = BTreeMap::new();
            for m in &msgs {
                let id: i64 = m.try_get(0)?;
                entries.insert(id, QueueEntry {
                    id: MessageId(id),
                    sender: m.try_get(1)?,
                    created: m.try_get(2)?,
                    expires: m.try_get(3)?,
                    lease_until: m.try_get(4)?,
                    size: m.try_get(5)?,
                    recipients: Vec::new(),
                });
            }
            for r in &rcpts {
                let id: i64 = r.try_get(0)?;
                if let Some(e) = entries.get_mut(&id) {
                    e.recipients.push(RecipientStatus {
                        rcpt: r.try_get(1)?,
                        state: RecipientState::parse(&r.try_get::<String, _>(2)?)?,
                        attempts: r.try_get(3)?,
                        next_attempt: r.try_get(4)?,
                        last_detail: r.try_get(5)?,
                        delay_notified: r.try_get::<i64, _>(6)? != 0,
                    });
                }
            }
            Ok(entries.into_values().collect())
        })
    }

    /// Makes every pending recipient of the message due at `now`.
    /// `false`: no such message (or nothing pending).
    pub async fn retry_now(&self, id: MessageId, now: i64) -> Result<bool> {
        on_pool!(self, p => {
            let done = sqlx::query("UPDATE recipients SET next_attempt = $2 WHERE message_id = $1 AND state = 'pending'")
                .bind(id.0)
                .bind(now)
                .execute(p)
                .await?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// Removes a message from the queue; its pending recipients are logged
    /// as [`Outcome::Deleted`] at `now`. `false`: no such message.
    pub async fn delete_message(&self, id: MessageId, now: i64) -> Result<bool> {
        write_tx!(self, tx => async {
            sqlx::query(LOCK_MESSAGE).bind(id.0).execute(&mut *tx).await?;
            let rows = sqlx::query("SELECT rcpt FROM recipients WHERE message_id = $1 AND state = 'pending' ORDER BY position")
                .bind(id.0)
                .fetch_all(&mut *tx)
                .await?;
            for r in &rows {
                sqlx::query(INSERT_LOG)
                    .bind(id.0)
                    .bind(r.try_get::<String, _>(0)?)
                    .bind(now)
                    .bind(Outcome::Deleted.as_str())
                    .bind("deleted by administrator")
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query("DELETE FROM recipients WHERE message_id = $1").bind(id.0).execute(&mut *tx).await?;
            let done = sqlx::query("DELETE FROM messages WHERE id = $1").bind(id.0).execute(&mut *tx).await?;
            Ok(done.rows_affected() == 1)
        }.await)
    }

    /// Removes the delivery records made before `before` (unix seconds),
    /// and the keys of [`Store::enqueue_once`] written before it,
    /// [`PRUNE_BATCH`] per transaction so writers never wait long; how
    /// many delivery records went.
    pub async fn prune_delivery_log(&self, before: i64) -> Result<u64> {
        self.prune(
            "DELETE FROM queued_once WHERE copy_key IN \
             (SELECT copy_key FROM queued_once WHERE at < $1 LIMIT $2)",
            before,
        )
        .await?;
        self.prune(
            "DELETE FROM deliveries WHERE id IN \
             (SELECT id FROM deliveries WHERE at < $1 LIMIT $2)",
            before,
        )
        .await
    }

    /// Runs `delete` (binding `before` and [`PRUNE_BATCH`]) until it
    /// removes less than a batch; how many rows went.
    async fn prune(&self, delete: &'static str, before: i64) -> Result<u64> {
        let mut removed = 0;
        loop {
            let done = write_tx!(self, tx => async {
                Ok::<u64, StoreError>(sqlx::query(delete)
                .bind(before)
                .bind(PRUNE_BATCH)
                .execute(&mut *tx)
                .await?
                .rows_affected())
            }.await)?;
            removed += done;
            if done < PRUNE_BATCH as u64 {
                return Ok(removed);
            }
        }
    }

    /// The delivery log of a message (also after it left the queue), oldest first.
    pub async fn delivery_log(&self, id: MessageId) -> Result<Vec<DeliveryRecord>> {
        on_pool!(self, p => {
            let rows = sqlx::query("SELECT rcpt, at, outcome, detail FROM deliveries WHERE message_id = $1 ORDER BY id")
                .bind(id.0)
                .fetch_all(p)
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(DeliveryRecord {
                        id,
                        rcpt: r.try_get(0)?,
                        at: r.try_get(1)?,
                        outcome: Outcome::parse(&r.try_get::<String, _>(2)?)?,
                        detail: r.try_get(3)?,
                    })
                })
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_respects_char_boundaries() {
        let s = "é".repeat(MAX_DETAIL_BYTES);
        let c = cut(&s);
        assert!(c.len() <= MAX_DETAIL_BYTES);
        assert!(c.len() >= MAX_DETAIL_BYTES - 1);
        assert_eq!(cut("short"), "short");
    }

    #[test]
    fn states_round_trip() {
        for s in [
            RecipientState::Pending,
            RecipientState::Delivered,
            RecipientState::Failed,
        ] {
            assert_eq!(RecipientState::parse(s.as_str()).unwrap(), s);
        }
        for o in [
            Outcome::Delivered,
            Outcome::Deferred,
            Outcome::Failed,
            Outcome::Deleted,
        ] {
            assert_eq!(Outcome::parse(o.as_str()).unwrap(), o);
        }
        assert!(RecipientState::parse("bogus").is_err());
    }

    #[test]
    fn dsn_values_round_trip() {
        for r in [Ret::Full, Ret::Hdrs] {
            assert_eq!(Ret::parse(r.as_str()).unwrap(), r);
        }
        assert!(Ret::parse("full").is_err());
        let mut all = vec![Notify::Never];
        for bits in 1u8..8 {
            all.push(Notify::On {
                success: bits & 1 != 0,
                failure: bits & 2 != 0,
                delay: bits & 4 != 0,
            });
        }
        for n in all {
            assert_eq!(Notify::parse(&n.to_db()).unwrap(), n);
        }
        assert_eq!(
            Notify::On {
                success: true,
                failure: false,
                delay: true
            }
            .to_db(),
            "SUCCESS,DELAY"
        );
        assert!(Notify::parse("SUCCESS,SOMETIMES").is_err());
    }
}
