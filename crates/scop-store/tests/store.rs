//! The store test suite, run once against SQLite (a file, WAL) and once
//! against PostgreSQL (a fresh database on a throw-away server).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use scop_store::{
    DsnParams, MAX_ENVID_BYTES, MessageId, NewMessage, Notify, Orcpt, Outcome, RecipientDsn,
    RecipientState, Resolution, Ret, SCHEMA_VERSION, SendingLimits, Store, StoreError,
};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A place for one test's database; the SQLite file is removed on drop.
struct Db {
    url: String,
    files: Vec<PathBuf>,
}

impl Drop for Db {
    fn drop(&mut self) {
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}

fn sqlite_db() -> Db {
    let path = std::env::temp_dir().join(format!(
        "scop-store-test-{}-{}.db",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let files = ["", "-wal", "-shm"]
        .iter()
        .map(|s| PathBuf::from(format!("{}{s}", path.display())))
        .collect();
    Db {
        url: format!("sqlite:{}", path.display()),
        files,
    }
}

fn postgres_db() -> Db {
    let server = scop_testkit::postgres::TestServer::shared();
    Db {
        url: server.create_database(),
        files: Vec::new(),
    }
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn msg(sender: &str, rcpts: &[&str], body: &[u8]) -> NewMessage {
    NewMessage {
        sender: sender.into(),
        recipients: s(rcpts),
        body: body.to_vec(),
        lifetime_secs: 5 * 86_400,
        dsn: DsnParams::default(),
    }
}

fn rcpts(p: &[scop_store::PendingRecipient]) -> Vec<String> {
    p.iter().map(|r| r.rcpt.clone()).collect()
}

async fn open_and_version(db: Db) {
    let store = Store::open(&db.url).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION);
    // Opening again is a no-op.
    let again = Store::open(&db.url).await.unwrap();
    assert_eq!(again.schema_version().await.unwrap(), SCHEMA_VERSION);
}

async fn domains(db: Db) {
    let store = Store::open(&db.url).await.unwrap();
    assert!(!store.is_local_domain("alice.test").await.unwrap());
    store.add_domain("Alice.TEST.").await.unwrap();
    store.add_domain("alice.test").await.unwrap(); // idempotent
    assert!(store.is_local_domain("ALICE.test").await.unwrap());
    assert!(store.is_local_domain("alice.test.").await.unwrap());
    assert!(!store.is_local_domain("bob.test").await.unwrap());
    assert!(!store.is_local_domain("not a domain").await.unwrap());
    store.add_user("bob@Bob.Test", "pw-bob").await.unwrap();
    assert_eq!(
        store.list_domains().await.unwrap(),
        s(&["alice.test", "bob.test"])
    );
    assert!(matches!(
        store.add_domain("bad domain").await,
        Err(StoreError::InvalidAddress { .. })
    ));
}

async fn users_and_passwords(db: Db) {
    let store = Store::open(&db.url).await.unwrap();
    store
        .add_user("Alice@Alice.Test", "correct horse")
        .await
        .unwrap();
    assert!(matches!(
        store.add_user("alice@alice.test", "x").await,
        Err(StoreError::AlreadyExists {
            what: "address",
            ..
        })
    ));
    assert!(matches!(
        store.add_user("no-at-sign", "x").await,
        Err(StoreError::InvalidAddress { .. })
    ));
    assert!(matches!(
        store.add_user("carol@c.test", "").await,
        Err(StoreError::InvalidArgument(_))
    ));
    assert!(
        store
            .verify_password("alice@alice.test", "correct horse")
            .await
            .unwrap()
    );
    assert!(
        store
            .verify_password("ALICE@ALICE.TEST", "correct horse")
            .await
            .unwrap()
    );
    assert!(
        !store
            .verify_password("alice@alice.test", "Correct horse")
            .await
            .unwrap()
    );
    assert!(
        !store
            .verify_password("nobody@alice.test", "correct horse")
            .await
            .unwrap()
    );
    assert!(
        !store
            .verify_password("garbage", "correct horse")
            .await
            .unwrap()
    );
    store
        .set_password("alice@alice.test", "battery staple")
        .await
        .unwrap();
    assert!(
        !store
            .verify_password("alice@alice.test", "correct horse")
            .await
            .unwrap()
    );
    assert!(
        store
            .verify_password("alice@alice.test", "battery staple")
            .await
            .unwrap()
    );
    assert!(matches!(
        store.set_password("nobody@alice.test", "x").await,
        Err(StoreError::NotFound { .. })
    ));
    let users = store.list_users().await.unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].login, "Alice@alice.test");
    assert_eq!(users[0].addresses, s(&["Alice@alice.test"]));
    store.delete_user("alice@ALICE.test").await.unwrap();
    assert!(store.list_users().await.unwrap().is_empty());
    assert!(matches!(
        store.delete_user("alice@alice.test").await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(
        !store
            .verify_password("alice@alice.test", "battery staple")
            .await
            .unwrap()
    );
    // the domain stays local after the last account goes
    assert!(store.is_local_domain("alice.test").await.unwrap());
}

async fn sending_limits(db: Db) {
    let store = Store::open(&db.url).await.unwrap();
    store.add_user("alice@a.test", "pw").await.unwrap();
    store.add_user("bob@a.test", "pw").await.unwrap();
    assert_eq!(
        store.sending_limits("Alice@A.test").await.unwrap(),
        Some(SendingLimits::default())
    );
    let own = SendingLimits {
        messages_per_hour: Some(3),
        messages_per_day: Some(20),
        recipients_per_hour: None,
        max_message_size: Some(u64::try_from(i64::MAX).unwrap()),
    };
    store.set_sending_limits("ALICE@a.test", own).await.unwrap();
    assert_eq!(
        store.sending_limits("alice@a.test").await.unwrap(),
        Some(own)
    );
    // Only that account's.
    assert_eq!(
        store.sending_limits("bob@a.test").await.unwrap(),
        Some(SendingLimits::default())
    );
    assert_eq!(store.sending_limits("nobody@a.test").await.unwrap(), None);
    assert_eq!(store.sending_limits("garbage").await.unwrap(), None);
    assert!(matches!(
        store
            .set_sending_limits("nobody@a.test", SendingLimits::default())
            .await,
        Err(StoreError::NotFound { .. })
    ));
    let too_large = SendingLimits {
        recipients_per_hour: Some(u64::MAX),
        ..own
    };
    assert!(matches!(
        store.set_sending_limits("alice@a.test", too_large).await,
        Err(StoreError::InvalidArgument(_))
    ));
    assert_eq!(
        store.sending_limits("alice@a.test").await.unwrap(),
        Some(own)
    );
    // Back to the defaults.
    store
        .set_sending_limits("alice@a.test", SendingLimits::default())
        .await
        .unwrap();
    assert_eq!(
        store.sending_limits("alice@a.test").await.unwrap(),
        Some(SendingLimits::default())
    );
    // A deleted and re-made account starts from the defaults.
    store.set_sending_limits("alice@a.test", own).await.unwrap();
    store.delete_user("alice@a.test").await.unwrap();
    store.add_user("alice@a.test", "pw").await.unwrap();
    assert_eq!(
        store.sending_limits("alice@a.test").await.unwrap(),
        Some(SendingLimits::default())
    );
}

async fn addresses_forwards_and_ownership(db: Db) {
    let store = Store::open(&db.url).await.unwrap();
    store.add_user("alice@alice.test", "pw").await.unwrap();
    store.add_user("bob@bob.test", "pw").await.unwrap();
    store
        .add_address("alice@alice.test", "Postmaster@Alice.test")
        .await
        .unwrap();
    store
        .add_address("alice@alice.test", "a@other.test")
        .await
        .unwrap();
    assert!(store.is_local_domain("other.test").await.unwrap());
    assert!(matches!(
        store
            .add_address("bob@bob.test", "postmaster@alice.test")
            .await,
        Err(StoreError::AlreadyExists { .. })
    ));
    assert!(matches!(
        store.add_address("bob@bob.test", "alice@alice.test").await,
        Err(StoreError::AlreadyExists { .. })
    ));
    assert!(matches!(
        store.add_address("zed@bob.test", "z2@bob.test").await,
        Err(StoreError::NotFound { .. })
    ));
    store
        .add_alias("sales@alice.test", "alice@alice.test")
        .await
        .unwrap();
    store
        .add_alias("@alice.test", "alice@alice.test")
        .await
        .unwrap();
    assert!(
        store
            .owns_address("alice@alice.test", "alice@alice.test")
            .await
            .unwrap()
    );
    assert!(
        store
            .owns_address("Alice@Alice.test", "POSTMASTER@alice.test")
            .await
            .unwrap()
    );
    assert!(
        store
            .owns_address("alice@alice.test", "a@other.test")
            .await
            .unwrap()
    );
    assert!(
        store
            .owns_address("alice@alice.test", "sales@alice.test")
            .await
            .unwrap()
    );
    // a catch-all does not grant sending rights
    assert!(
        !store
            .owns_address("alice@alice.test", "random@alice.test")
            .await
            .unwrap()
    );
    assert!(
        !store
            .owns_address("bob@bob.test", "alice@alice.test")
            .await
            .unwrap()
    );
    assert!(!store.owns_address("bob@bob.test", "").await.unwrap());
    store
        .set_forward(
            "bob@bob.test",
            &s(&["bob@ext.test", "BOB@ext.test", "b2@ext.test"]),
        )
        .await
        .unwrap();
    assert!(matches!(
        store
            .set_forward("bob@bob.test", &s(&["bob@bob.test"]))
            .await,
        Err(StoreError::InvalidArgument(_))
    ));
    assert!(matches!(
        store.set_forward("bob@bob.test", &s(&["bad"])).await,
        Err(StoreError::InvalidAddress { .. })
    ));
    let users = store.list_users().await.unwrap();
    assert_eq!(users.len(), 2);
    assert_eq!(users[0].login, "alice@alice.test");
    assert_eq!(
        users[0].addresses,
        s(&["alice@alice.test", "a@other.test", "Postmaster@alice.test"])
    );
    assert_eq!(users[1].forward, s(&["bob@ext.test", "b2@ext.test"]));
    store.set_forward("bob@bob.test", &[]).await.unwrap();
    assert!(store.list_users().await.unwrap()[1].forward.is_empty());
    // deleting alice removes her addresses and the aliases pointing at her
    store.delete_user("alice@alice.test").await.unwrap();
    assert!(store.list_aliases().await.unwrap().is_empty());
    store.add_user("x@bob.test", "pw").await.unwrap();
    store
        .add_address("x@bob.test", "postmaster@alice.test")
        .await
        .unwrap();
}

async fn aliases(db: Db) {
    let store = Store::open(&db.url).await.unwrap();
    store.add_user("alice@a.test", "pw").await.unwrap();
    store
        .add_alias("Team@A.test", "alice@a.test")
        .await
        .unwrap();
    store
        .add_alias("team@a.test", "carol@ext.test")
        .await
        .unwrap();
    assert!(matches!(
        store.add_alias("TEAM@a.test", "Alice@a.test").await,
        Err(StoreError::AlreadyExists { .. })
    ));
    assert!(matches!(
        store.add_alias("x@a.test", "X@A.test").await,
        Err(StoreError::InvalidArgument(_))
    ));
    assert!(matches!(
        store.add_alias("bad", "alice@a.test").await,
        Err(StoreError::InvalidAddress { .. })
    ));
    store.add_alias("@b.test", "alice@a.test").await.unwrap();
    assert!(store.is_local_domain("b.test").await.unwrap());
    assert_eq!(
        store.list_aliases().await.unwrap(),
        vec![
            ("@b.test".to_string(), "alice@a.test".to_string()),
            ("Team@a.test".to_string(), "alice@a.test".to_string()),
            ("team@a.test".to_string(), "carol@ext.test".to_string()),
        ]
    );
    store
        .delete_alias("team@a.test", "CAROL@ext.test")
        .await
        .unwrap();
    assert!(matches!(
        store.delete_alias("team@a.test", "carol@ext.test").await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.list_aliases().await.unwrap().len(), 2);
}

fn deliver(m: &[&str], f: &[&str]) -> Resolution {
    Resolution::Deliver {
        mailboxes: s(m),
        forward: s(f),
    }
}

async fn resolution(db: Db) {
    let store = Store::open(&db.url).await.unwrap();
    store.add_user("Alice@a.test", "pw").await.unwrap();
    store.add_user("bob@a.test", "pw").await.unwrap();
    store
        .set_forward("bob@a.test", &s(&["bob@ext.test"]))
        .await
        .unwrap();
    store
        .add_address("alice@a.test", "al@a.test")
        .await
        .unwrap();
    store
        .add_alias("team@a.test", "alice@a.test")
        .await
        .unwrap();
    store.add_alias("team@a.test", "bob@a.test").await.unwrap();
    store
        .add_alias("team@a.test", "carol@ext.test")
        .await
        .unwrap();
    store.add_alias("all@a.test", "team@a.test").await.unwrap();
    store.add_alias("all@a.test", "alice@a.test").await.unwrap();
    store
        .add_alias("loop1@a.test", "loop2@a.test")
        .await
        .unwrap();
    store
        .add_alias("loop2@a.test", "loop1@a.test")
        .await
        .unwrap();
    store
        .add_alias("dangling@a.test", "ghost@a.test")
        .await
        .unwrap();
    store.add_alias("@c.test", "bob@a.test").await.unwrap();
    store
        .add_alias("info@c.test", "alice@a.test")
        .await
        .unwrap();
    assert_eq!(
        store.resolve("x@ext.test").await.unwrap(),
        Resolution::NotLocal
    );
    assert_eq!(
        store.resolve("nobody@a.test").await.unwrap(),
        Resolution::Unknown
    );
    assert_eq!(
        store.resolve("ALICE@A.TEST").await.unwrap(),
        deliver(&["Alice@a.test"], &[])
    );
    assert_eq!(
        store.resolve("Al@a.test.").await.unwrap(),
        deliver(&["Alice@a.test"], &[])
    );
    assert_eq!(
        store.resolve("bob@a.test").await.unwrap(),
        deliver(&["bob@a.test"], &["bob@ext.test"])
    );
    assert_eq!(
        store.resolve("team@a.test").await.unwrap(),
        deliver(
            &["Alice@a.test", "bob@a.test"],
            &["bob@ext.test", "carol@ext.test"]
        )
    );
    assert_eq!(
        store.resolve("All@A.test").await.unwrap(),
        deliver(
            &["Alice@a.test", "bob@a.test"],
            &["bob@ext.test", "carol@ext.test"]
        )
    );
    assert_eq!(
        store.resolve("loop1@a.test").await.unwrap(),
        Resolution::Unknown
    );
    assert_eq!(
        store.resolve("dangling@a.test").await.unwrap(),
        Resolution::Unknown
    );
    // catch-all only when no exact match
    assert_eq!(
        store.resolve("info@c.test").await.unwrap(),
        deliver(&["Alice@a.test"], &[])
    );
    assert_eq!(
        store.resolve("whatever@C.test").await.unwrap(),
        deliver(&["bob@a.test"], &["bob@ext.test"])
    );
    assert!(matches!(
        store.resolve("bad address").await,
        Err(StoreError::InvalidAddress { .. })
    ));
    // a chain longer than the limit stops resolving
    let n = scop_store::MAX_ALIAS_DEPTH + 1;
    for i in 0..n {
        store
            .add_alias(&format!("l{i}@a.test"), &format!("l{}@a.test", i + 1))
            .await
            .unwrap();
    }
    store
        .add_alias(&format!("l{n}@a.test"), "alice@a.test")
        .await
        .unwrap();
    // l2 -> ... -> l9 -> alice is MAX_ALIAS_DEPTH hops; l1 is one too many
    assert_eq!(
        store.resolve("l2@a.test").await.unwrap(),
        deliver(&["Alice@a.test"], &[])
    );
    assert_eq!(
        store.resolve("l1@a.test").await.unwrap(),
        Resolution::Unknown
    );
}

/// A handle keeps resolved entries. Changes made through another handle
/// (another process: `scop user ...` while the MX runs): an address that
/// comes to exist is seen at once, other changes within
/// `DIRECTORY_RECHECK`; changes through the resolving handle at once.
async fn resolution_sees_changes_made_elsewhere(db: Db) {
    let mx = Store::open(&db.url).await.unwrap();
    let admin = Store::open(&db.url).await.unwrap();
    let recheck = || tokio::time::sleep(scop_store::DIRECTORY_RECHECK);
    admin.add_user("bob@a.test", "pw").await.unwrap();
    let bob = || mx.resolve("bob@a.test");
    assert_eq!(bob().await.unwrap(), deliver(&["bob@a.test"], &[]));
    assert_eq!(bob().await.unwrap(), deliver(&["bob@a.test"], &[]));
    assert_eq!(
        mx.resolve("x@new.test").await.unwrap(),
        Resolution::NotLocal
    );
    admin.add_domain("new.test").await.unwrap();
    assert_eq!(mx.resolve("x@new.test").await.unwrap(), Resolution::Unknown);
    admin.add_alias("@new.test", "bob@a.test").await.unwrap();
    assert_eq!(
        mx.resolve("x@new.test").await.unwrap(),
        deliver(&["bob@a.test"], &[])
    );
    admin
        .set_forward("bob@a.test", &s(&["bob@ext.test"]))
        .await
        .unwrap();
    recheck().await;
    assert_eq!(
        bob().await.unwrap(),
        deliver(&["bob@a.test"], &["bob@ext.test"])
    );
    admin.set_forward("bob@a.test", &[]).await.unwrap();
    admin
        .add_alias("bob@a.test", "carol@ext.test")
        .await
        .unwrap();
    recheck().await;
    assert_eq!(
        bob().await.unwrap(),
        deliver(&["bob@a.test"], &["carol@ext.test"])
    );
    // Through the resolving handle: at once.
    mx.delete_alias("bob@a.test", "carol@ext.test")
        .await
        .unwrap();
    assert_eq!(bob().await.unwrap(), deliver(&["bob@a.test"], &[]));
    admin.add_address("bob@a.test", "b@a.test").await.unwrap();
    assert_eq!(
        mx.resolve("b@a.test").await.unwrap(),
        deliver(&["bob@a.test"], &[])
    );
    admin.delete_user("bob@a.test").await.unwrap();
    recheck().await;
    assert_eq!(bob().await.unwrap(), Resolution::Unknown);
    assert_eq!(mx.resolve("b@a.test").await.unwrap(), Resolution::Unknown);
    // The catch-all's target is gone too: nothing receives there.
    assert_eq!(mx.resolve("x@new.test").await.unwrap(), Resolution::Unknown);
}

async fn queue_lifecycle(db: Db) {
    let store = Store::open(&db.url).await.unwrap();
    let now = 1_000_000;
    let id = store
        .enqueue(
            &msg(
                "alice@a.test",
                &["x@ext.test", "Y@ext.test", "X@EXT.test"],
                b"hello\r\n",
            ),
            now,
        )
        .await
        .unwrap();
    // not due before now
    assert!(store.due(now - 1, 10).await.unwrap().is_empty());
    let due = store.due(now, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    let m = &due[0];
    assert_eq!(m.id, id);
    assert_eq!(m.sender, "alice@a.test");
    assert_eq!(m.created, now);
    assert_eq!(m.expires, now + 5 * 86_400);
    assert_eq!(m.attempts, 0);
    assert_eq!(
        rcpts(&m.pending),
        s(&["x@ext.test", "Y@ext.test"]),
        "duplicates queued once"
    );
    assert!(
        m.pending
            .iter()
            .all(|p| p.dsn == RecipientDsn::default() && !p.delay_notified)
    );
    assert_eq!((m.ret, m.envid.as_deref()), (None, None));
    assert_eq!(m.body, b"hello\r\n");
    // lease: one worker only
    assert!(store.lease(id, now, now + 60, "relay-a").await.unwrap());
    assert!(!store.lease(id, now + 1, now + 61, "relay-a").await.unwrap());
    assert!(
        store.due(now + 1, 10).await.unwrap().is_empty(),
        "leased messages are not due"
    );
    // x delivered, y deferred
    store
        .record_delivered(id, "X@ext.test", now + 2, "250 ok")
        .await
        .unwrap();
    store
        .record_deferred(id, "y@ext.test", now + 2, now + 300, "451 later")
        .await
        .unwrap();
    assert!(matches!(
        store
            .record_delivered(id, "x@ext.test", now + 3, "250 again")
            .await,
        Err(StoreError::NotPending { .. })
    ));
    assert!(matches!(
        store.record_failed(id, "x@ext.test", now + 3, "550").await,
        Err(StoreError::NotPending { .. })
    ));
    assert!(matches!(
        store
            .record_delivered(id, "z@ext.test", now + 3, "250")
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(store.release(id).await.unwrap());
    assert!(store.due(now + 299, 10).await.unwrap().is_empty());
    let due = store.due(now + 300, 10).await.unwrap();
    assert_eq!(rcpts(&due[0].pending), s(&["Y@ext.test"]));
    assert_eq!(due[0].attempts, 1);
    let q = store.list_queue().await.unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].size, 7);
    assert_eq!(q[0].recipients.len(), 2);
    assert_eq!(q[0].recipients[0].state, RecipientState::Delivered);
    assert_eq!(q[0].recipients[1].state, RecipientState::Pending);
    assert_eq!(q[0].recipients[1].attempts, 1);
    assert_eq!(q[0].recipients[1].next_attempt, now + 300);
    assert_eq!(q[0].recipients[1].last_detail, "451 later");
    // retry now
    assert!(store.retry_now(id, now + 10).await.unwrap());
    assert_eq!(store.due(now + 10, 10).await.unwrap().len(), 1);
    // y fails permanently: the message leaves the queue, the log stays
    store
        .record_failed(id, "y@ext.test", now + 20, "550 no such user")
        .await
        .unwrap();
    assert!(store.list_queue().await.unwrap().is_empty());
    assert!(store.due(i64::MAX, 10).await.unwrap().is_empty());
    assert!(!store.retry_now(id, now).await.unwrap());
    assert!(
        !store
            .lease(id, now + 1000, now + 2000, "relay-a")
            .await
            .unwrap()
    );
    let log = store.delivery_log(id).await.unwrap();
    let summary: Vec<(String, Outcome, i64)> = log
        .iter()
        .map(|r| (r.rcpt.clone(), r.outcome, r.at))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("x@ext.test".to_string(), Outcome::Delivered, now + 2),
            ("Y@ext.test".to_string(), Outcome::Deferred, now + 2),
            ("Y@ext.test".to_string(), Outcome::Failed, now + 20),
        ]
    );
    assert_eq!(log[2].detail, "550 no such user");
    assert!(matches!(
        store
            .record_delivered(id, "y@ext.test", now + 30, "250")
            .await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn queue_order_limits_and_delete(db: Db) {
    let store = Store::open(&db.url).await.unwrap();
    let now = 5_000;
    let mut ids = Vec::new();
    for i in 0..5 {
        let body = vec![b'x'; i * 1000];
        ids.push(
            store
                .enqueue(&msg("", &["a@ext.test"], &body), now + i as i64)
                .await
                .unwrap(),
        );
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    let due = store.due(now + 10, 3).await.unwrap();
    assert_eq!(
        due.iter().map(|m| m.id).collect::<Vec<_>>(),
        ids[..3].to_vec()
    );
    assert_eq!(due[0].sender, "", "null sender kept");
    assert!(store.delete_message(ids[1], now + 11).await.unwrap());
    assert!(!store.delete_message(ids[1], now + 12).await.unwrap());
    assert!(!store.delete_message(MessageId(999_999), now).await.unwrap());
    let log = store.delivery_log(ids[1]).await.unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].outcome, Outcome::Deleted);
    assert_eq!(store.list_queue().await.unwrap().len(), 4);
    // a new message never reuses an id, even of a deleted one
    let last = store.delete_message(ids[4], now).await.unwrap();
    assert!(last);
    let next = store
        .enqueue(&msg("", &["a@ext.test"], b""), now)
        .await
        .unwrap();
    assert!(next > ids[4]);
    // invalid input
    assert!(matches!(
        store.enqueue(&msg("a@b.test", &[], b"x"), now).await,
        Err(StoreError::InvalidArgument(_))
    ));
    let mut m = msg("a@b.test", &["c@d.test"], b"x");
    m.lifetime_secs = 0;
    assert!(matches!(
        store.enqueue(&m, now).await,
        Err(StoreError::InvalidArgument(_))
    ));
    // an expired lease frees the message
    let id = ids[0];
    assert!(store.lease(id, now, now + 60, "relay-a").await.unwrap());
    assert!(
        !store
            .lease(id, now + 59, now + 120, "relay-a")
            .await
            .unwrap()
    );
    assert!(
        store
            .lease(id, now + 60, now + 120, "relay-a")
            .await
            .unwrap()
    );
    assert!(
        store
            .due(now + 100, 10)
            .await
            .unwrap()
            .iter()
            .all(|m| m.id != id)
    );
    assert!(
        store
            .due(now + 120, 10)
            .await
            .unwrap()
            .iter()
            .any(|m| m.id == id)
    );
}

/// 10,005 delivery records, at 400 and after, of message 999999.
const LOG_OF_10_005: &str = "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 10004) \
     INSERT INTO deliveries (message_id, rcpt, at, outcome, detail) \
     SELECT 999999, 'w@ext.test', 400 + i, 'deferred', '451 later' FROM n";

async fn the_delivery_log_is_pruned_by_age(db: Db) {
    let store = Store::open(&db.url).await.unwrap();
    let a = store
        .enqueue(
            &msg(
                "s@a.test",
                &["x@ext.test", "y@ext.test", "v@ext.test"],
                b"a",
            ),
            100,
        )
        .await
        .unwrap();
    let b = store
        .enqueue(&msg("s@a.test", &["z@ext.test"], b"b"), 100)
        .await
        .unwrap();
    store
        .record_deferred(a, "x@ext.test", 100, 200, "451 later")
        .await
        .unwrap();
    store
        .record_delivered(a, "x@ext.test", 200, "250 ok")
        .await
        .unwrap();
    store
        .record_failed(b, "z@ext.test", 250, "550 no")
        .await
        .unwrap();
    store
        .record_delivered(a, "y@ext.test", 300, "250 ok")
        .await
        .unwrap();
    let times = |log: Vec<scop_store::DeliveryRecord>| log.iter().map(|r| r.at).collect::<Vec<_>>();
    assert_eq!(times(store.delivery_log(a).await.unwrap()), [100, 200, 300]);
    // Nothing older than the first record.
    assert_eq!(store.prune_delivery_log(100).await.unwrap(), 0);
    // Strictly before: the record at 250 stays.
    assert_eq!(store.prune_delivery_log(250).await.unwrap(), 2);
    assert_eq!(times(store.delivery_log(a).await.unwrap()), [300]);
    assert_eq!(times(store.delivery_log(b).await.unwrap()), [250]);
    assert_eq!(store.prune_delivery_log(250).await.unwrap(), 0);
    // More than a batch (records of a message that left the queue).
    scop_store::testing::execute(&db.url, LOG_OF_10_005)
        .await
        .unwrap();
    let batch = u64::try_from(scop_store::PRUNE_BATCH).unwrap();
    assert_eq!(batch, 10_000);
    assert_eq!(store.prune_delivery_log(i64::MAX).await.unwrap(), batch + 7);
    assert!(store.delivery_log(a).await.unwrap().is_empty());
    assert!(
        store
            .delivery_log(MessageId(999_999))
            .await
            .unwrap()
            .is_empty()
    );
    // The queue itself is untouched.
    let queue = store.list_queue().await.unwrap();
    assert_eq!(queue.len(), 1);
    assert_eq!(queue[0].id, a);
}

async fn durable_across_reopen(db: Db) {
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let id = {
        let store = Store::open(&db.url).await.unwrap();
        store.add_user("alice@a.test", "pw").await.unwrap();
        let id = store
            .enqueue(&msg("alice@a.test", &["r@ext.test"], &big), 7)
            .await
            .unwrap();
        store.close().await;
        id
    };
    let store = Store::open(&db.url).await.unwrap();
    let due = store.due(7, 1).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].id, id);
    assert_eq!(due[0].body, big);
    assert!(store.verify_password("alice@a.test", "pw").await.unwrap());
}

async fn concurrent_workers_lease_once(db: Db) {
    let store = Store::open(&db.url).await.unwrap();
    let now = 100;
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(
            store
                .enqueue(&msg("s@a.test", &[&format!("r{i}@ext.test")], b"m"), now)
                .await
                .unwrap(),
        );
    }
    // four workers race to lease every message; each must be won exactly once
    let mut tasks = Vec::new();
    for w in 0..4 {
        let store = store.clone();
        let ids = ids.clone();
        tasks.push(tokio::spawn(async move {
            let mut won = Vec::new();
            for id in ids {
                if store.lease(id, now, now + 60, "relay-a").await.unwrap() {
                    won.push((w, id));
                }
            }
            won
        }));
    }
    let mut won = Vec::new();
    for t in tasks {
        won.extend(t.await.unwrap());
    }
    won.sort_by_key(|(_, id)| *id);
    assert_eq!(won.iter().map(|(_, id)| *id).collect::<Vec<_>>(), ids);
    // concurrent delivery records of distinct recipients all land
    let mut tasks = Vec::new();
    for (i, id) in ids.iter().copied().enumerate() {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .record_delivered(id, &format!("r{i}@ext.test"), now + 1, "250")
                .await
                .unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(store.list_queue().await.unwrap().is_empty());
    // the last recipients of one message finished concurrently: the message
    // still leaves the queue (no orphan without pending recipients)
    for round in 0..20 {
        let rcpts: Vec<String> = (0..16).map(|i| format!("m{round}-{i}@ext.test")).collect();
        let refs: Vec<&str> = rcpts.iter().map(String::as_str).collect();
        let id = store
            .enqueue(&msg("s@a.test", &refs, b"m"), now)
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for (i, r) in rcpts.into_iter().enumerate() {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                if i % 2 == 0 {
                    store
                        .record_delivered(id, &r, now + 1, "250")
                        .await
                        .unwrap();
                } else {
                    store.record_failed(id, &r, now + 1, "550").await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert!(
            store.list_queue().await.unwrap().is_empty(),
            "round {round}"
        );
        assert_eq!(store.delivery_log(id).await.unwrap().len(), 16);
    }
}

async fn migrates_older_schema(db: Db) {
    {
        let v1 = Store::open_at(&db.url, 1).await.unwrap();
        assert_eq!(v1.schema_version().await.unwrap(), 1);
        // the queue tables do not exist yet
        assert!(v1.list_queue().await.is_err());
        v1.close().await;
    }
    // An account made by a version-1 program (the hash in `users`).
    insert_v1_account(&db.url, "alice@a.test", "pw").await;
    let store = Store::open(&db.url).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION);
    assert!(store.verify_password("alice@a.test", "pw").await.unwrap());
    // Accounts from before version 7 take the server's sending limits.
    assert_eq!(
        store.sending_limits("alice@a.test").await.unwrap(),
        Some(SendingLimits::default())
    );
    let id = store
        .enqueue(&msg("alice@a.test", &["b@ext.test"], b"x"), 1)
        .await
        .unwrap();
    assert_eq!(store.due(1, 10).await.unwrap()[0].id, id);
}

/// Adds an account as a program at schema versions 1 to 3 did.
async fn insert_v1_account(url: &str, login: &str, password: &str) {
    let hash = scop_store::password::hash(password).unwrap();
    let sql = format!(
        "INSERT INTO users (login_key, login, password_hash) VALUES ('{login}', '{login}', '{hash}'); \
         INSERT INTO addresses (address_key, address, login_key) VALUES ('{login}', '{login}', '{login}'); \
         INSERT INTO domains (name) VALUES ('{}') ON CONFLICT DO NOTHING",
        login.split('@').nth(1).unwrap()
    );
    scop_store::testing::execute(url, Box::leak(sql.into_boxed_str()))
        .await
        .unwrap();
}

async fn refuses_newer_schema(db: Db) {
    {
        let store = Store::open(&db.url).await.unwrap();
        store.add_user("alice@a.test", "pw").await.unwrap();
        store.close().await;
    }
    // Pretend a newer SCoP wrote the database.
    scop_store::testing::set_schema_version(&db.url, SCHEMA_VERSION + 1)
        .await
        .unwrap();
    match Store::open(&db.url).await {
        Err(StoreError::SchemaTooNew { found, supported }) => {
            assert_eq!(found, SCHEMA_VERSION + 1);
            assert_eq!(supported, SCHEMA_VERSION);
            let text = StoreError::SchemaTooNew { found, supported }.to_string();
            assert!(text.contains("newer than this program supports"), "{text}");
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

async fn concurrent_open_migrates_once(db: Db) {
    // Several processes (here: tasks with their own pools) open a fresh
    // database at once: each migration runs once, every open succeeds.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let url = db.url.clone();
        tasks.push(tokio::spawn(async move {
            Store::open(&url).await.map(|s| s.backend())
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let store = Store::open(&db.url).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION);
    store.add_user("alice@a.test", "pw").await.unwrap();
}

async fn dsn_parameters_are_kept(db: Db) {
    let store = Store::open(&db.url).await.unwrap();
    let notify_sf = Notify::On {
        success: true,
        failure: true,
        delay: false,
    };
    let orcpt = Orcpt {
        addr_type: "rfc822".into(),
        address: "Original+tag@b.test".into(),
    };
    let mut m = msg(
        "alice@a.test",
        &["x@ext.test", "y@ext.test", "X@ext.test", "z@ext.test"],
        b"hi\r\n",
    );
    m.dsn = DsnParams {
        ret: Some(Ret::Hdrs),
        envid: Some("QQ314159".into()),
        recipients: vec![
            RecipientDsn {
                notify: Some(Notify::Never),
                orcpt: None,
            },
            RecipientDsn {
                notify: Some(notify_sf),
                orcpt: Some(orcpt.clone()),
            },
            // A duplicate keeps the first recipient's parameters.
            RecipientDsn {
                notify: Some(notify_sf),
                orcpt: None,
            },
        ],
        requiretls: true,
    };
    let id = store.enqueue(&m, 100).await.unwrap();
    let due = store.due(100, 10).await.unwrap();
    assert_eq!(due[0].id, id);
    assert_eq!(due[0].ret, Some(Ret::Hdrs));
    assert_eq!(due[0].envid.as_deref(), Some("QQ314159"));
    assert!(due[0].requiretls);
    // Without it, and through a leased enqueue.
    let plain = store
        .enqueue_leased(&msg("alice@a.test", &["w@ext.test"], b"x"), 100, 200, "r")
        .await
        .unwrap();
    assert!(!plain.requiretls);
    let p = &due[0].pending;
    assert_eq!(rcpts(p), s(&["x@ext.test", "y@ext.test", "z@ext.test"]));
    assert_eq!(p[0].dsn.notify, Some(Notify::Never));
    assert_eq!(p[0].dsn.orcpt, None);
    assert_eq!(p[1].dsn.notify, Some(notify_sf));
    assert_eq!(p[1].dsn.orcpt, Some(orcpt));
    assert_eq!(
        p[2].dsn,
        RecipientDsn::default(),
        "missing entries: none given"
    );

    // Limits: refused before anything is written.
    let mut bad = msg("alice@a.test", &["x@ext.test"], b"x");
    bad.dsn.envid = Some("e".repeat(MAX_ENVID_BYTES + 1));
    assert!(matches!(
        store.enqueue(&bad, 100).await,
        Err(StoreError::InvalidArgument(_))
    ));
    let mut bad = msg("alice@a.test", &["x@ext.test"], b"x");
    bad.dsn.recipients = vec![RecipientDsn::default(); 2];
    assert!(matches!(
        store.enqueue(&bad, 100).await,
        Err(StoreError::InvalidArgument(_))
    ));
    let mut bad = msg("alice@a.test", &["x@ext.test"], b"x");
    bad.dsn.recipients = vec![RecipientDsn {
        notify: None,
        orcpt: Some(Orcpt {
            addr_type: String::new(),
            address: "a@b".into(),
        }),
    }];
    assert!(matches!(
        store.enqueue(&bad, 100).await,
        Err(StoreError::InvalidArgument(_))
    ));
    assert_eq!(store.list_queue().await.unwrap().len(), 2);
}

async fn a_copy_is_queued_once(db: Db) {
    let store = Store::open(&db.url).await.unwrap();
    let fwd = msg("srs@a.test", &["x@ext.test"], b"hi\r\n");
    let first = store.enqueue_once(&fwd, "k1", 100).await.unwrap();
    assert!(first.is_some());
    // The same copy again (a hop's retry): not queued.
    assert_eq!(store.enqueue_once(&fwd, "k1", 150).await.unwrap(), None);
    // Another key is another copy.
    let other = store.enqueue_once(&fwd, "k2", 150).await.unwrap();
    assert!(other.is_some() && other != first);
    assert_eq!(store.list_queue().await.unwrap().len(), 2);
    // The key outlives the message and a restart...
    store
        .record_delivered(first.unwrap(), "x@ext.test", 200, "250 ok")
        .await
        .unwrap();
    store.close().await;
    let store = Store::open(&db.url).await.unwrap();
    assert_eq!(store.list_queue().await.unwrap().len(), 1);
    assert_eq!(store.enqueue_once(&fwd, "k1", 300).await.unwrap(), None);
    // ...until it is pruned with the delivery log (strictly before).
    store.prune_delivery_log(100).await.unwrap();
    assert_eq!(store.enqueue_once(&fwd, "k1", 300).await.unwrap(), None);
    store.prune_delivery_log(101).await.unwrap();
    assert!(store.enqueue_once(&fwd, "k1", 300).await.unwrap().is_some());
    assert_eq!(store.enqueue_once(&fwd, "k2", 300).await.unwrap(), None);
    // An over-long envelope refuses the message and leaves no key.
    let bad = msg("srs@a.test", &[], b"x");
    assert!(store.enqueue_once(&bad, "k3", 300).await.is_err());
    assert!(store.enqueue_once(&fwd, "k3", 300).await.unwrap().is_some());
}

async fn delay_report_is_queued_once(db: Db) {
    let store = Store::open(&db.url).await.unwrap();
    let id = store
        .enqueue(
            &msg("alice@a.test", &["x@ext.test", "y@ext.test"], b"hi\r\n"),
            100,
        )
        .await
        .unwrap();
    let report = msg("", &["alice@a.test"], b"delayed\r\n");
    let first = store
        .enqueue_delay_report(id, &s(&["X@ext.test"]), &report, 200)
        .await
        .unwrap();
    let Some(report_id) = first else {
        panic!("the first delay report is queued")
    };
    assert_ne!(report_id, id);
    // Never twice: not for the same recipient, not for an unknown one.
    assert_eq!(
        store
            .enqueue_delay_report(id, &s(&["x@ext.test", "nobody@ext.test"]), &report, 300)
            .await
            .unwrap(),
        None
    );
    // Not for a recipient that is no longer pending.
    store
        .record_delivered(id, "y@ext.test", 300, "250 ok")
        .await
        .unwrap();
    assert_eq!(
        store
            .enqueue_delay_report(id, &s(&["y@ext.test"]), &report, 300)
            .await
            .unwrap(),
        None
    );
    let q = store.list_queue().await.unwrap();
    assert_eq!(q.len(), 2, "the message and one report: {q:?}");
    assert!(q[0].recipients[0].delay_notified);
    assert!(!q[0].recipients[1].delay_notified);
    assert_eq!(q[1].id, report_id);
    assert_eq!(q[1].sender, "");
    store.close().await;
    // The mark survives a restart.
    let store = Store::open(&db.url).await.unwrap();
    let due = store.due(400, 10).await.unwrap();
    assert!(
        due.iter()
            .any(|m| m.id == id && m.pending[0].delay_notified)
    );
    assert_eq!(
        store
            .enqueue_delay_report(id, &s(&["x@ext.test"]), &report, 400)
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.list_queue().await.unwrap().len(), 2);
}

async fn migrates_a_queued_message_to_dsn_columns(db: Db) {
    {
        let v2 = Store::open_at(&db.url, 2).await.unwrap();
        assert_eq!(v2.schema_version().await.unwrap(), 2);
        v2.close().await;
    }
    // A message queued by a version-2 program.
    scop_store::testing::execute(
        &db.url,
        "INSERT INTO messages (sender, created, expires, dsn_requested, lease_until, size, body) \
         VALUES ('alice@a.test', 10, 1000, 0, 0, 2, 'hi'); \
         INSERT INTO recipients (message_id, position, rcpt, rcpt_key, state, attempts, next_attempt, last_detail) \
         SELECT id, 0, 'x@ext.test', 'x@ext.test', 'pending', 0, 10, '' FROM messages",
    )
    .await
    .unwrap();
    let store = Store::open(&db.url).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION);
    let due = store.due(10, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!((due[0].ret, due[0].envid.as_deref()), (None, None));
    assert!(!due[0].requiretls);
    assert_eq!(due[0].pending[0].dsn, RecipientDsn::default());
    assert!(!due[0].pending[0].delay_notified);
    let report = msg("", &["alice@a.test"], b"delayed\r\n");
    assert!(
        store
            .enqueue_delay_report(due[0].id, &s(&["x@ext.test"]), &report, 20)
            .await
            .unwrap()
            .is_some()
    );
}

/// The ids of the messages due at `now`.
async fn due_ids(store: &Store, now: i64) -> Vec<MessageId> {
    store
        .due(now, 10)
        .await
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect()
}

/// Several relays on one store: a relay that starts again releases the
/// leases it held before (a crash), not those of the others.
async fn a_restarted_relay_releases_only_its_own_leases(db: Db) {
    let store = Store::open(&db.url).await.unwrap();
    let now = 1_000;
    let a = store
        .enqueue(&msg("s@a.test", &["x@ext.test"], b"a"), now)
        .await
        .unwrap();
    let b = store
        .enqueue(&msg("s@a.test", &["y@ext.test"], b"b"), now)
        .await
        .unwrap();
    assert!(store.lease(a, now, now + 900, "relay-a").await.unwrap());
    assert!(store.lease(b, now, now + 900, "relay-b").await.unwrap());
    let c = store
        .enqueue_leased(
            &msg("s@a.test", &["z@ext.test"], b"c"),
            now,
            now + 900,
            "relay-a",
        )
        .await
        .unwrap()
        .id;
    assert!(store.due(now + 1, 10).await.unwrap().is_empty());
    // relay-a starts again: its two leases go, relay-b's stays.
    assert_eq!(store.release_leases_of("relay-a").await.unwrap(), 2);
    assert_eq!(due_ids(&store, now + 1).await, vec![a, c]);
    assert!(!store.lease(b, now + 1, now + 900, "relay-a").await.unwrap());
    assert_eq!(store.release_leases_of("relay-a").await.unwrap(), 0);
    // relay-b's lease ends on its own.
    assert_eq!(due_ids(&store, now + 900).await, vec![a, b, c]);
}

async fn enqueued_leased_is_held_until_the_lease_ends(db: Db) {
    let store = Store::open(&db.url).await.unwrap();
    let now = 1_000;
    let m = store
        .enqueue_leased(
            &msg(
                "s@a.test",
                &["x@ext.test", "X@EXT.test", "y@ext.test"],
                b"leased",
            ),
            now,
            now + 60,
            "relay-b",
        )
        .await
        .unwrap();
    // What the caller starts on: the message as stored, duplicates once.
    assert_eq!(m.sender, "s@a.test");
    assert_eq!(m.body, b"leased");
    assert_eq!(m.attempts, 0);
    assert_eq!(m.created, now);
    assert_eq!(rcpts(&m.pending), ["x@ext.test", "y@ext.test"]);
    // Nobody else gets it while the lease holds, nor can lease it.
    assert!(store.due(now, 10).await.unwrap().is_empty());
    assert!(store.due(now + 59, 10).await.unwrap().is_empty());
    assert!(
        !store
            .lease(m.id, now + 1, now + 100, "relay-a")
            .await
            .unwrap()
    );
    // Durable: a reopened store has it, and once the lease ends (or is
    // released by a restarted relay) it is due like any other.
    drop(store);
    let store = Store::open(&db.url).await.unwrap();
    let due = store.due(now + 60, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0], m);
    assert!(store.release(m.id).await.unwrap());
    assert_eq!(store.due(now, 10).await.unwrap(), vec![m]);
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::sqlite_db()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::postgres_db()).await;
                }
            )*
        }
    };
}

suite!(
    open_and_version,
    domains,
    users_and_passwords,
    sending_limits,
    addresses_forwards_and_ownership,
    aliases,
    resolution,
    resolution_sees_changes_made_elsewhere,
    queue_lifecycle,
    queue_order_limits_and_delete,
    durable_across_reopen,
    the_delivery_log_is_pruned_by_age,
    concurrent_workers_lease_once,
    migrates_older_schema,
    refuses_newer_schema,
    concurrent_open_migrates_once,
    dsn_parameters_are_kept,
    delay_report_is_queued_once,
    a_copy_is_queued_once,
    migrates_a_queued_message_to_dsn_columns,
    enqueued_leased_is_held_until_the_lease_ends,
    a_restarted_relay_releases_only_its_own_leases,
);

/// The credentials file beside an SQLite test database, and its
/// `-wal`/`-shm` files, removed on drop.
fn credentials_for(db: &mut Db) -> PathBuf {
    let path = PathBuf::from(format!(
        "{}.credentials",
        db.url.strip_prefix("sqlite:").unwrap()
    ));
    for suffix in ["", "-wal", "-shm"] {
        db.files
            .push(PathBuf::from(format!("{}{suffix}", path.display())));
    }
    path
}

/// Every byte of an SQLite database and its WAL.
fn database_bytes(path: &str) -> Vec<u8> {
    let mut out = std::fs::read(path).unwrap();
    out.extend(std::fs::read(format!("{path}-wal")).unwrap_or_default());
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn password_hashes_live_only_in_the_credentials_file() {
    let mut db = sqlite_db();
    let credentials = credentials_for(&mut db);
    let with = Store::open_with_credentials(&db.url, &credentials)
        .await
        .unwrap();
    with.add_user("alice@a.test", "alice-pw").await.unwrap();
    with.add_user("bob@a.test", "bob-pw").await.unwrap();
    with.set_password("bob@a.test", "bob-new").await.unwrap();
    assert!(
        with.verify_password("alice@a.test", "alice-pw")
            .await
            .unwrap()
    );
    assert!(with.verify_password("bob@a.test", "bob-new").await.unwrap());
    assert!(!with.verify_password("bob@a.test", "bob-pw").await.unwrap());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&credentials)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // A process opening the store alone (the MX, delivery, the relay)
    // sees the accounts but no hash, and may not write one where
    // submission would not look.
    let without = Store::open(&db.url).await.unwrap();
    assert_eq!(without.list_users().await.unwrap().len(), 2);
    assert!(
        without
            .owns_address("alice@a.test", "alice@a.test")
            .await
            .unwrap()
    );
    for result in [
        without
            .verify_password("alice@a.test", "alice-pw")
            .await
            .err(),
        without.add_user("carol@a.test", "pw").await.err(),
        without.set_password("alice@a.test", "x").await.err(),
    ] {
        match result {
            Some(e @ StoreError::PasswordsElsewhere) => {
                assert!(e.to_string().contains("--credentials"), "{e}")
            }
            other => panic!("expected PasswordsElsewhere, got {other:?}"),
        }
    }
    // A process that opens the store alone (the MX, say) and writes an
    // account with a hash into the store's table gets no login: after the
    // split such rows are deleted, never imported.
    let mallory = scop_store::password::hash("mallory-pw").unwrap();
    scop_store::testing::execute(
        &db.url,
        Box::leak(
            format!(
                "INSERT INTO users (login_key, login) VALUES ('mallory@a.test', 'mallory@a.test'); \
                 INSERT INTO passwords (login_key, password_hash) VALUES ('mallory@a.test', '{mallory}')"
            )
            .into_boxed_str(),
        ),
    )
    .await
    .unwrap();
    with.close().await;
    let with = Store::open_with_credentials(&db.url, &credentials)
        .await
        .unwrap();
    assert!(
        !with
            .verify_password("mallory@a.test", "mallory-pw")
            .await
            .unwrap()
    );
    assert!(
        with.verify_password("alice@a.test", "alice-pw")
            .await
            .unwrap()
    );
    // A wrong path to the credentials file is refused, not made anew.
    let wrong = credentials.with_extension("typo");
    match Store::open_with_credentials(&db.url, &wrong).await {
        Err(e @ StoreError::CredentialsMissing { .. }) => {
            assert!(e.to_string().contains("did not exist"), "{e}")
        }
        other => panic!("expected CredentialsMissing, got {other:?}"),
    }
    assert!(!wrong.exists());
    // Deleting an account without the file leaves an unusable hash.
    without.delete_user("bob@a.test").await.unwrap();
    assert!(!with.verify_password("bob@a.test", "bob-new").await.unwrap());
    with.close().await;
    without.close().await;
    let main = database_bytes(db.url.strip_prefix("sqlite:").unwrap());
    let apart = database_bytes(credentials.to_str().unwrap());
    assert!(!contains(&main, b"$argon2id$"), "a hash in the store");
    assert!(
        contains(&apart, b"$argon2id$"),
        "no hash in the credentials file"
    );
}

#[tokio::test]
async fn hashes_of_an_older_store_move_to_the_credentials_file() {
    let mut db = sqlite_db();
    let credentials = credentials_for(&mut db);
    Store::open_at(&db.url, 3).await.unwrap().close().await;
    insert_v1_account(&db.url, "alice@a.test", "pw").await;
    // Version 4 keeps the hash in the store's own table until a
    // credentials file is given.
    let store = Store::open(&db.url).await.unwrap();
    assert!(store.verify_password("alice@a.test", "pw").await.unwrap());
    store.close().await;
    let with = Store::open_with_credentials(&db.url, &credentials)
        .await
        .unwrap();
    assert!(with.verify_password("alice@a.test", "pw").await.unwrap());
    // Opening again (a restart) changes nothing.
    with.close().await;
    let with = Store::open_with_credentials(&db.url, &credentials)
        .await
        .unwrap();
    assert!(with.verify_password("alice@a.test", "pw").await.unwrap());
    with.close().await;
    assert!(matches!(
        Store::open(&db.url)
            .await
            .unwrap()
            .verify_password("alice@a.test", "pw")
            .await,
        Err(StoreError::PasswordsElsewhere)
    ));
    // The upgrade left no hash in the store's file or WAL (the dropped
    // column's cells and the moved rows were rewritten).
    let main = database_bytes(db.url.strip_prefix("sqlite:").unwrap());
    assert!(!contains(&main, b"$argon2id$"), "a hash left in the store");
    // PostgreSQL keeps them in its table (access is the server's).
    assert!(matches!(
        Store::open_with_credentials("postgres://u@h/db", &credentials).await,
        Err(StoreError::CredentialsNeedSqlite)
    ));
}

#[tokio::test]
async fn memory_store_works_and_is_private() {
    let a = Store::open("sqlite::memory:").await.unwrap();
    let b = Store::open("sqlite::memory:").await.unwrap();
    a.add_user("alice@a.test", "pw").await.unwrap();
    assert_eq!(a.list_users().await.unwrap().len(), 1);
    assert!(b.list_users().await.unwrap().is_empty());
    assert_eq!(a.backend(), "sqlite");
}

#[tokio::test]
async fn unsupported_url_is_refused() {
    assert!(matches!(
        Store::open("sqlite:").await,
        Err(StoreError::UnsupportedUrl { .. })
    ));
    assert!(matches!(
        Store::open("/var/lib/scop.db").await,
        Err(StoreError::UnsupportedUrl { .. })
    ));
    match Store::open("mysql://user:secret@host/db").await {
        Err(e @ StoreError::UnsupportedUrl { .. }) => {
            let text = e.to_string();
            assert!(!text.contains("secret"), "{text}");
        }
        other => panic!("expected UnsupportedUrl, got {other:?}"),
    }
}
