//! `scop user|alias|queue` run as the built binary against a SQLite store
//! and a PostgreSQL store (a throw-away server from scop-testkit).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use scop_store::{NewMessage, Store};

static COUNTER: AtomicU32 = AtomicU32::new(0);

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "scop-admin-cli-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `scop ARGS` with `stdin` as standard input and the store in the
/// environment (SCOP_STORE), so the URL never appears on the command line.
fn scop(store: &str, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_scop"))
        .args(args)
        .env("SCOP_STORE", store)
        .env_remove("SCOP_DATA")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run scop");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn ok(store: &str, args: &[&str], stdin: &str) -> String {
    let out = scop(store, args, stdin);
    assert!(
        out.status.success(),
        "scop {args:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fails(store: &str, args: &[&str], stdin: &str, message: &str) {
    let out = scop(store, args, stdin);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "scop {args:?} should fail");
    assert!(
        stderr.contains(message),
        "scop {args:?}: want {message:?} in stderr, got {stderr:?}"
    );
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The whole admin surface against one store URL.
fn admin_round_trip(url: &str) {
    // users
    assert_eq!(
        ok(
            url,
            &["user", "add", "alice@alice.test", "--password-stdin"],
            "s3cret pass\n"
        ),
        "added alice@alice.test\n"
    );
    ok(url, &["user", "add", "bob@bob.test"], "bob-pw\r\n");
    fails(
        url,
        &["user", "add", "alice@alice.test", "--password-stdin"],
        "x\n",
        "already exists",
    );
    fails(
        url,
        &["user", "add", "carol@c.test", "--password-stdin"],
        "",
        "no password on standard input",
    );
    fails(
        url,
        &["user", "add", "not-an-address", "--password-stdin"],
        "pw\n",
        "invalid login",
    );
    // a password on the command line is refused by the parser
    fails(
        url,
        &["user", "add", "dave@d.test", "hunter2"],
        "",
        "unexpected argument",
    );
    ok(
        url,
        &[
            "user",
            "address",
            "alice@alice.test",
            "postmaster@alice.test",
        ],
        "",
    );
    ok(
        url,
        &["user", "forward", "bob@bob.test", "bob@elsewhere.test"],
        "",
    );
    assert_eq!(
        ok(url, &["user", "list"], ""),
        "alice@alice.test\talice@alice.test,postmaster@alice.test\t-\nbob@bob.test\tbob@bob.test\tbob@elsewhere.test\n"
    );
    // sending limits: shown, set one at a time, back to the default
    assert_eq!(
        ok(url, &["user", "limits", "bob@bob.test"], ""),
        "bob@bob.test\tmessages-per-hour=default\tmessages-per-day=default\trecipients-per-hour=default\tmax-size=default\n"
    );
    ok(
        url,
        &[
            "user",
            "limits",
            "bob@bob.test",
            "--recipients-per-hour",
            "20000",
            "--messages-per-day",
            "100",
        ],
        "",
    );
    assert_eq!(
        ok(
            url,
            &[
                "user",
                "limits",
                "BOB@bob.test",
                "--max-size",
                "5000000",
                "--messages-per-hour",
                "7"
            ],
            ""
        ),
        "BOB@bob.test\tmessages-per-hour=7\tmessages-per-day=100\trecipients-per-hour=20000\tmax-size=5000000\n"
    );
    assert_eq!(
        ok(
            url,
            &[
                "user",
                "limits",
                "bob@bob.test",
                "--messages-per-hour",
                "default"
            ],
            ""
        ),
        "bob@bob.test\tmessages-per-hour=default\tmessages-per-day=100\trecipients-per-hour=20000\tmax-size=5000000\n"
    );
    fails(
        url,
        &["user", "limits", "bob@bob.test", "--max-size", "5M"],
        "",
        "neither a number",
    );
    fails(
        url,
        &["user", "limits", "zed@bob.test"],
        "",
        "no account zed@bob.test",
    );
    ok(
        url,
        &["user", "passwd", "bob@bob.test", "--password-stdin"],
        "new-bob-pw\n",
    );
    fails(
        url,
        &["user", "passwd", "zed@bob.test", "--password-stdin"],
        "pw\n",
        "not found",
    );
    // One runtime for every library call: pooled connections belong to it.
    let rt = rt();
    let store = rt.block_on(Store::open(url)).unwrap();
    assert!(
        rt.block_on(store.verify_password("alice@alice.test", "s3cret pass"))
            .unwrap()
    );
    assert!(
        rt.block_on(store.verify_password("bob@bob.test", "new-bob-pw"))
            .unwrap()
    );
    assert_eq!(
        rt.block_on(store.sending_limits("bob@bob.test")).unwrap(),
        Some(scop_store::SendingLimits {
            messages_per_hour: None,
            messages_per_day: Some(100),
            recipients_per_hour: Some(20_000),
            max_message_size: Some(5_000_000),
        })
    );
    assert!(
        !rt.block_on(store.verify_password("bob@bob.test", "bob-pw"))
            .unwrap()
    );

    // aliases
    ok(
        url,
        &["alias", "add", "sales@alice.test", "alice@alice.test"],
        "",
    );
    ok(
        url,
        &["alias", "add", "@alice.test", "alice@alice.test"],
        "",
    );
    fails(
        url,
        &["alias", "add", "sales@alice.test", "alice@alice.test"],
        "",
        "already exists",
    );
    assert_eq!(
        ok(url, &["alias", "list"], ""),
        "@alice.test\talice@alice.test\nsales@alice.test\talice@alice.test\n"
    );
    ok(
        url,
        &["alias", "del", "@alice.test", "alice@alice.test"],
        "",
    );
    fails(
        url,
        &["alias", "del", "@alice.test", "alice@alice.test"],
        "",
        "not found",
    );
    assert_eq!(
        ok(url, &["alias", "list"], ""),
        "sales@alice.test\talice@alice.test\n"
    );

    // queue: fill it through the library, then drive it with the CLI
    assert_eq!(ok(url, &["queue", "list"], ""), "0 message(s) queued\n");
    let msg = NewMessage {
        sender: "alice@alice.test".into(),
        recipients: vec!["x@ext.test".into(), "y@ext.test".into()],
        body: b"Subject: hi\r\n\r\nhello\r\n".to_vec(),
        lifetime_secs: 86_400,
        dsn: Default::default(),
    };
    let id = rt.block_on(store.enqueue(&msg, 1_700_000_000)).unwrap();
    rt.block_on(store.record_deferred(
        id,
        "y@ext.test",
        1_700_000_000,
        1_700_000_600,
        "451 4.7.1 try later",
    ))
    .unwrap();
    let listing = ok(url, &["queue", "list"], "");
    assert!(
        listing.starts_with(&format!(
            "{id}  from alice@alice.test  22 bytes  queued 2023-11-14 22:13:20Z"
        )),
        "{listing}"
    );
    assert!(
        listing.contains("  x@ext.test  pending  attempts 0  next 2023-11-14 22:13:20Z\n"),
        "{listing}"
    );
    assert!(
        listing.contains(
            "  y@ext.test  pending  attempts 1  next 2023-11-14 22:23:20Z  451 4.7.1 try later\n"
        ),
        "{listing}"
    );
    assert!(listing.ends_with("1 message(s) queued\n"), "{listing}");
    let id_s = id.to_string();
    ok(url, &["queue", "retry", &id_s], "");
    assert!(
        !ok(url, &["queue", "list"], "").contains("2023-11-14 22:23:20Z"),
        "retry made y due now"
    );
    fails(url, &["queue", "retry", "999999"], "", "no message 999999");
    ok(url, &["queue", "delete", &id_s], "");
    fails(url, &["queue", "delete", &id_s], "", "no message");
    assert_eq!(ok(url, &["queue", "list"], ""), "0 message(s) queued\n");
    let log = ok(url, &["queue", "log", &id_s], "");
    assert_eq!(log.lines().count(), 3, "{log}");
    assert!(
        log.contains("y@ext.test  deferred  451 4.7.1 try later"),
        "{log}"
    );
    assert!(
        log.contains("x@ext.test  deleted  deleted by administrator"),
        "{log}"
    );

    // deleting a user removes the aliases pointing at it
    ok(url, &["user", "del", "alice@alice.test"], "");
    fails(url, &["user", "del", "alice@alice.test"], "", "not found");
    assert_eq!(ok(url, &["alias", "list"], ""), "");
    rt.block_on(store.close());
}

#[test]
fn admin_commands_on_sqlite() {
    let dir = TempDir::new();
    let url = format!("sqlite:{}", dir.0.join("scop.db").display());
    admin_round_trip(&url);
}

#[test]
fn admin_commands_on_postgres() {
    let server = scop_testkit::postgres::TestServer::start();
    let url = server.create_database();
    admin_round_trip(&url);
}

#[test]
fn default_store_is_in_the_data_directory() {
    let dir = TempDir::new();
    let data = dir.0.join("data");
    let out = Command::new(env!("CARGO_BIN_EXE_scop"))
        .args(["alias", "add", "a@x.test", "b@y.test", "--data"])
        .arg(&data)
        .env_remove("SCOP_STORE")
        .env_remove("SCOP_DATA")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(data.join("scop.db").exists());
    // SCOP_DATA works the same way
    let out = Command::new(env!("CARGO_BIN_EXE_scop"))
        .args(["alias", "list"])
        .env_remove("SCOP_STORE")
        .env("SCOP_DATA", &data)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a@x.test\tb@y.test\n");
}

#[test]
fn bad_store_urls_fail_clearly() {
    fails(
        "mysql://u:topsecret@h/db",
        &["user", "list"],
        "",
        "unsupported store URL",
    );
    let out = scop("mysql://u:topsecret@h/db", &["user", "list"], "");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("topsecret"));
}

#[test]
fn help_says_passwords_come_from_stdin() {
    let out = Command::new(env!("CARGO_BIN_EXE_scop"))
        .args(["user", "add", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("never from the"), "{help}");
    assert!(help.contains("SCOP_STORE"), "{help}");
    assert!(help.contains("Examples:"), "{help}");
}

#[test]
fn passwords_in_a_credentials_file() {
    let dir = TempDir::new();
    let store = format!("sqlite:{}", dir.0.join("scop.db").display());
    let credentials = dir.0.join("passwords.db");
    let with = ["--credentials", credentials.to_str().unwrap()];
    let args = |a: &[&'static str]| -> Vec<&str> { a.iter().copied().chain(with).collect() };
    ok(
        &store,
        &args(&["user", "add", "alice@alice.test", "--password-stdin"]),
        "alice-pw\n",
    );
    ok(
        &store,
        &args(&["user", "passwd", "alice@alice.test", "--password-stdin"]),
        "alice-new\n",
    );
    rt().block_on(async {
        let s = scop_store::Store::open_with_credentials(&store, &credentials)
            .await
            .unwrap();
        assert!(
            s.verify_password("alice@alice.test", "alice-new")
                .await
                .unwrap()
        );
    });
    // Without the file: listing works, setting a password says what is
    // missing instead of writing a hash submission would never read.
    assert!(ok(&store, &["user", "list"], "").contains("alice@alice.test"));
    fails(
        &store,
        &["user", "add", "bob@alice.test", "--password-stdin"],
        "bob-pw\n",
        "--credentials",
    );
    fails(
        &store,
        &["user", "passwd", "alice@alice.test", "--password-stdin"],
        "x\n",
        "separate credentials file",
    );
}
