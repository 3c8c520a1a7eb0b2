//! A throw-away PostgreSQL server for tests.
//!
//! Uses the PostgreSQL 15 server binaries that `cargo xtask peers` unpacks
//! from Debian's packages under `target/peers/debian`. The server runs as the
//! unprivileged `nobody` user when the tests run as root (PostgreSQL refuses
//! root), with its data directory and Unix socket in a fresh temporary
//! directory, and no TCP listener at all (`listen_addresses=''`).
//!
//! ```no_run
//! let server = scop_testkit::postgres::TestServer::shared();
//! let url = server.create_database(); // postgres://postgres@localhost/t..?host=/tmp/...
//! ```
//!
//! The server is a child of a small `sh` supervisor whose standard input is
//! a pipe held by this process: when the [`TestServer`] is dropped, or when
//! the test process exits in any way (even a panic or a kill), the pipe
//! closes and the supervisor stops PostgreSQL and removes the directory.
//! Missing binaries are a test failure with a clear message, never a skip.

use std::io::Write as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::peers_dir;

/// How long to wait for the server to accept connections.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections the server accepts (tests run in parallel, each with a pool).
pub const MAX_CONNECTIONS: u32 = 400;
/// The unprivileged user and group id the server runs as when we are root.
const NOBODY: u32 = 65534;

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn debian_root() -> PathBuf {
    peers_dir().join("debian")
}

/// The directory holding `initdb`, `postgres`, `psql`, `pg_isready`.
pub fn bin_dir() -> PathBuf {
    debian_root().join("usr/lib/postgresql/15/bin")
}

fn lib_dir() -> PathBuf {
    debian_root().join("usr/lib/x86_64-linux-gnu")
}

fn share_dir() -> PathBuf {
    debian_root().join("usr/share/postgresql/15")
}

fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "PostgreSQL binary {} is missing: run `cargo xtask peers` (it unpacks postgresql-15 from Debian)",
        path.display()
    );
    path
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// A command run as `nobody` when we are root (PostgreSQL refuses root),
/// with the unpacked libraries on the library path.
fn server_command(program: &Path) -> Command {
    let mut cmd = if running_as_root() {
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={NOBODY}"))
            .arg(format!("--regid={NOBODY}"))
            .arg("--clear-groups")
            .arg("--")
            .arg(program);
        c
    } else {
        Command::new(program)
    };
    cmd.env("LD_LIBRARY_PATH", lib_dir());
    cmd
}

fn client_command(name: &str) -> Command {
    let mut cmd = Command::new(binary(name));
    cmd.env("LD_LIBRARY_PATH", lib_dir());
    cmd
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// A running PostgreSQL server, stopped (and its files removed) on drop.
#[derive(Debug)]
pub struct TestServer {
    dir: PathBuf,
    socket_dir: PathBuf,
    supervisor: Mutex<Option<(Child, ChildStdin)>>,
}

impl TestServer {
    /// Starts a fresh server (initdb + postgres), panicking with the reason
    /// when that fails.
    pub fn start() -> TestServer {
        let initdb = binary("initdb");
        let postgres = binary("postgres");
        let dir = std::env::temp_dir().join(format!(
            "scop-pg-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let data = dir.join("data");
        let socket_dir = dir.join("sock");
        std::fs::create_dir_all(&socket_dir).expect("create the PostgreSQL temp directory");
        if running_as_root() {
            let status = Command::new("chown")
                .arg("-R")
                .arg(format!("{NOBODY}:{NOBODY}"))
                .arg(&dir)
                .status()
                .expect("run chown");
            assert!(status.success(), "chown of {} failed", dir.display());
        }
        let out = server_command(&initdb)
            .arg("-D")
            .arg(&data)
            .arg("-L")
            .arg(share_dir())
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // The supervisor: starts postgres, waits for its stdin to close, stops it.
        let start = server_command(&postgres);
        let mut line = String::new();
        for (k, v) in start.get_envs() {
            if let (k, Some(v)) = (k.to_string_lossy(), v) {
                line.push_str(&format!("{}={} ", k, shell_quote(&v.to_string_lossy())));
            }
        }
        line.push_str(&shell_quote(&start.get_program().to_string_lossy()));
        for a in start.get_args() {
            line.push(' ');
            line.push_str(&shell_quote(&a.to_string_lossy()));
        }
        let settings = [
            "listen_addresses=".to_owned(),
            format!("unix_socket_directories={}", socket_dir.display()),
            format!("max_connections={MAX_CONNECTIONS}"),
            // Test speed: the store's durability is SQLite's and PostgreSQL's
            // own business; these tests check behaviour, not power loss.
            "fsync=off".to_owned(),
            "synchronous_commit=off".to_owned(),
            "full_page_writes=off".to_owned(),
            "shared_buffers=32MB".to_owned(),
        ];
        line.push_str(&format!(" -D {}", shell_quote(&data.to_string_lossy())));
        for s in &settings {
            line.push_str(&format!(" -c {}", shell_quote(s)));
        }
        let log = dir.join("postgres.log");
        let script = format!(
            "{line} >{log} 2>&1 & pg=$!\nread _ignored\nkill -INT $pg\nwait $pg\nrm -rf {dir}\n",
            log = shell_quote(&log.to_string_lossy()),
            dir = shell_quote(&dir.to_string_lossy()),
        );
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the PostgreSQL supervisor shell");
        let stdin = child.stdin.take().expect("piped stdin");
        let server = TestServer {
            dir,
            socket_dir,
            supervisor: Mutex::new(Some((child, stdin))),
        };
        server.wait_ready();
        server
    }

    /// One server per test process, started on first use and stopped when
    /// the process exits.
    pub fn shared() -> &'static TestServer {
        static SHARED: OnceLock<TestServer> = OnceLock::new();
        SHARED.get_or_init(TestServer::start)
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let ok = client_command("pg_isready")
                .arg("-h")
                .arg(&self.socket_dir)
                .args(["-U", "postgres", "-d", "postgres", "-q"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return;
            }
            let exited = self
                .supervisor
                .lock()
                .map(|mut g| {
                    g.as_mut()
                        .map(|(c, _)| c.try_wait().ok().flatten().is_some())
                        .unwrap_or(true)
                })
                .unwrap_or(true);
            if exited || Instant::now() > deadline {
                let log =
                    std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default();
                panic!(
                    "PostgreSQL did not start within {START_TIMEOUT:?} in {}:\n{log}",
                    self.dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The directory of the server's Unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// A URL for the `postgres` database (superuser `postgres`, trust auth).
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://postgres@localhost/{database}?host={}",
            self.socket_dir.display()
        )
    }

    /// Runs one SQL statement as the superuser with `psql`, panicking on failure.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let out = client_command("psql")
            .arg("-h")
            .arg(&self.socket_dir)
            .args([
                "-U",
                "postgres",
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-c",
                sql,
            ])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Creates a fresh, empty database and returns its URL, so tests can
    /// run in parallel against one server.
    pub fn create_database(&self) -> String {
        let name = format!(
            "t{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url(&name)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let taken = self.supervisor.lock().ok().and_then(|mut g| g.take());
        if let Some((mut child, mut stdin)) = taken {
            let _ = stdin.write_all(b"\n");
            drop(stdin);
            let _ = child.wait();
        }
    }
}
