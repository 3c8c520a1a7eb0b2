//! A throw-away Postfix for tests: the `master` of the Debian package that
//! `cargo xtask peers` unpacks under `target/peers/debian`, with its own
//! configuration, queue and log in a private directory.
//!
//! ```text
//!   DIR/conf/{main.cf,master.cf}   written here; master -c DIR/conf -d
//!   DIR/queue/...                  queue directories, owned by mail_owner
//!   DIR/data/                      data_directory
//!   DIR/maillog                    every daemon's log (postlogd)
//!   DIR/master.out                 master's own stdout and stderr
//! ```
//!
//! The configuration is the caller's (the tests' third domain, the SMTP
//! benchmark's receiver): [`Config::params`] overrides or extends the base
//! `main.cf` (which delivers nothing locally and does no DNS), and the
//! `master.cf` has the services a domain needs (`smtpd` on
//! [`Config::listen`], `smtp`, `virtual`, `discard`, `error`, ...).
//!
//! Postfix must start as root (master drops to `mail_owner` for its
//! daemons); the tests run as root on the CI machines. Dropping the
//! [`Postfix`] sends SIGTERM to master, which stops its children, even when
//! the test panics. A missing binary is a test failure, never a skip.

use std::io::Read as _;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::peer_path;

/// The unprivileged owner of the queue and of Postfix's daemons.
/// Postfix refuses a mail_owner whose group is the setgid_group, so
/// `nobody` (group `nogroup`) gets `mail` as setgid_group; default_privs
/// must differ from mail_owner too.
pub const MAIL_OWNER: &str = "nobody";
const SETGID_GROUP: &str = "mail";
const DEFAULT_PRIVS: &str = "daemon";

/// How long to wait for smtpd's greeting after starting master.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long master may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// What the test configures.
#[derive(Debug, Clone)]
pub struct Config {
    /// The smtpd listener.
    pub listen: SocketAddr,
    /// `myhostname` (also the EHLO name of the smtp client).
    pub hostname: String,
    /// `main.cf` parameters, `(name, value)`: each replaces the base
    /// value of the same name, or is added.
    pub params: Vec<(String, String)>,
}

/// The unpacked Debian root.
fn debian_root() -> PathBuf {
    peer_path("debian")
}

/// The library path of the unpacked Postfix.
fn library_path() -> std::ffi::OsString {
    let root = debian_root();
    std::env::join_paths([
        root.join("usr/lib/postfix"),
        root.join("usr/lib/x86_64-linux-gnu"),
    ])
    .expect("library path")
}

/// A command for a Postfix binary of the unpacked package (e.g.
/// `usr/sbin/postconf`), with its libraries on the path.
pub fn command(relative_binary: &str) -> Command {
    let binary = peer_path(&format!("debian/{relative_binary}"));
    let mut cmd = Command::new(binary);
    cmd.env("LD_LIBRARY_PATH", library_path());
    cmd
}

/// The version of the unpacked Postfix (`mail_version`), or `?`.
pub fn version() -> String {
    command("usr/sbin/postconf")
        .args(["-d", "-h", "mail_version"])
        .stderr(Stdio::null())
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "?".into())
}

/// The numeric id of `name` (field 2) in an /etc/passwd-style file.
fn id_of(file: &str, name: &str) -> u32 {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("read {file}: {e}"));
    text.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&name))
        .and_then(|f| f.get(2)?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {file}"))
}

/// The user id of `name` (for `virtual_uid_maps = static:UID`).
pub fn uid_of(name: &str) -> u32 {
    id_of("/etc/passwd", name)
}

/// The group id of `name` (for `virtual_gid_maps = static:GID`).
pub fn gid_of(name: &str) -> u32 {
    id_of("/etc/group", name)
}

/// Sets `path`'s mode and owner.
fn own(path: &Path, uid: Option<u32>, gid: Option<u32>, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::os::unix::fs::chown(path, uid, gid)
        .unwrap_or_else(|e| panic!("chown {}: {e} (Postfix tests run as root)", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// The base `main.cf`: private directories, no local delivery, no DNS,
/// fast retries; [`Config::params`] goes over it.
fn base_params(dir: &Path, config: &Config) -> Vec<(String, String)> {
    let root = debian_root();
    let root = root.display();
    let libs = library_path();
    let libs = libs.to_string_lossy();
    let p = |k: &str, v: String| (k.to_string(), v);
    vec![
        p("compatibility_level", "3.6".into()),
        p("queue_directory", dir.join("queue").display().to_string()),
        p("data_directory", dir.join("data").display().to_string()),
        p("command_directory", format!("{root}/usr/sbin")),
        p("daemon_directory", format!("{root}/usr/lib/postfix/sbin")),
        p("shlib_directory", format!("{root}/usr/lib/postfix")),
        p("meta_directory", format!("{root}/etc/postfix")),
        p("mail_owner", MAIL_OWNER.into()),
        p("setgid_group", SETGID_GROUP.into()),
        p("default_privs", DEFAULT_PRIVS.into()),
        p("myhostname", config.hostname.clone()),
        p("mydestination", String::new()),
        // Postfix refuses an inet_interfaces address that no interface
        // carries (127.0.0.4 is routed by lo's 127.0.0.0/8 but not
        // configured on it): smtpd listens on the address that master.cf
        // names, and the smtp client binds `smtp_bind_address`.
        p("inet_interfaces", "all".into()),
        p("inet_protocols", "ipv4".into()),
        p("mynetworks", "127.0.0.0/8".into()),
        p(
            "smtpd_relay_restrictions",
            "permit_mynetworks, reject_unauth_destination".into(),
        ),
        p("local_recipient_maps", String::new()),
        p("alias_maps", String::new()),
        p("alias_database", String::new()),
        p("local_transport", "error:local delivery is off".into()),
        p("disable_dns_lookups", "yes".into()),
        p("smtp_host_lookup", "native".into()),
        p("smtpd_peername_lookup", "no".into()),
        p("biff", "no".into()),
        // Never add or rewrite header fields (which could break the
        // senders' DKIM signatures): only trace fields are added.
        p("local_header_rewrite_clients", String::new()),
        // Tests want retries in seconds, not minutes.
        p("queue_run_delay", "1s".into()),
        p("minimal_backoff_time", "1s".into()),
        p("maximal_backoff_time", "2s".into()),
        p("maillog_file", dir.join("maillog").display().to_string()),
        p("maillog_file_prefixes", dir.display().to_string()),
        p(
            "import_environment",
            format!(
                "MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C POSTLOG_SERVICE POSTLOG_HOSTNAME \
                 LD_LIBRARY_PATH={libs}"
            ),
        ),
    ]
}

/// Debian's master.cf.dist, chroot "n" everywhere, smtpd on `listen`.
fn master_cf(listen: SocketAddr) -> String {
    format!(
        "{listen} inet n - n - - smtpd\n\
         pickup    unix  n  -  n  60    1  pickup\n\
         cleanup   unix  n  -  n  -     0  cleanup\n\
         qmgr      unix  n  -  n  300   1  qmgr\n\
         rewrite   unix  -  -  n  -     -  trivial-rewrite\n\
         bounce    unix  -  -  n  -     0  bounce\n\
         defer     unix  -  -  n  -     0  bounce\n\
         trace     unix  -  -  n  -     0  bounce\n\
         verify    unix  -  -  n  -     1  verify\n\
         flush     unix  n  -  n  1000? 0  flush\n\
         tlsmgr    unix  -  -  n  1000? 1  tlsmgr\n\
         proxymap  unix  -  -  n  -     -  proxymap\n\
         proxywrite unix -  -  n  -     1  proxymap\n\
         smtp      unix  -  -  n  -     -  smtp\n\
         relay     unix  -  -  n  -     -  smtp\n\
         showq     unix  n  -  n  -     -  showq\n\
         error     unix  -  -  n  -     -  error\n\
         retry     unix  -  -  n  -     -  error\n\
         discard   unix  -  -  n  -     -  discard\n\
         virtual   unix  -  n  n  -     -  virtual\n\
         anvil     unix  -  -  n  -     1  anvil\n\
         scache    unix  -  -  n  -     1  scache\n\
         postlog   unix-dgram n - n - 1 postlogd\n"
    )
}

/// A running Postfix master; SIGTERM on drop.
#[derive(Debug)]
pub struct Postfix {
    master: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Postfix {
    /// Writes the configuration and the queue under `dir` (created) and
    /// starts master; returns once smtpd greets on [`Config::listen`].
    pub fn start(dir: &Path, config: &Config) -> Postfix {
        use std::os::unix::process::CommandExt;
        let master_bin = peer_path("debian/usr/lib/postfix/sbin/master");
        let uid = uid_of(MAIL_OWNER);
        let sgid = gid_of(SETGID_GROUP);
        let conf = dir.join("conf");
        let queue = dir.join("queue");
        let data = dir.join("data");
        for d in [&conf, &queue, &data] {
            std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("create {}: {e}", d.display()));
        }
        own(dir, None, None, 0o755);
        own(&queue, None, None, 0o755);
        own(&data, Some(uid), None, 0o700);
        for q in [
            "active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming",
            "private", "saved", "trace",
        ] {
            let p = queue.join(q);
            std::fs::create_dir_all(&p).unwrap();
            own(&p, Some(uid), Some(0), 0o700);
        }
        for (q, mode) in [("maildrop", 0o730), ("public", 0o710)] {
            let p = queue.join(q);
            std::fs::create_dir_all(&p).unwrap();
            own(&p, Some(uid), Some(sgid), mode);
        }
        std::fs::create_dir_all(queue.join("pid")).unwrap();

        let mut params = base_params(dir, config);
        for (k, v) in &config.params {
            match params.iter_mut().find(|(name, _)| name == k) {
                Some(slot) => slot.1 = v.clone(),
                None => params.push((k.clone(), v.clone())),
            }
        }
        let main_cf: String = params.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
        std::fs::write(conf.join("main.cf"), main_cf).unwrap();
        std::fs::write(conf.join("master.cf"), master_cf(config.listen)).unwrap();

        let out = std::fs::File::create(dir.join("master.out")).unwrap();
        let master = Command::new(master_bin)
            .env("LD_LIBRARY_PATH", library_path())
            .arg("-c")
            .arg(&conf)
            .arg("-d")
            // Its own process group: on SIGTERM, master signals its group.
            .process_group(0)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("start Postfix's master: {e}"));
        let mut pf = Postfix {
            master,
            addr: config.listen,
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = pf.master.try_wait() {
                panic!("Postfix's master exited ({status}):\n{}", pf.log_tail());
            }
            if greeted(pf.addr) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "Postfix's smtpd did not greet on {}:\n{}",
                pf.addr,
                pf.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        pf
    }

    /// The smtpd listener.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// master's process id (also its process group: its children are in
    /// it).
    pub fn pid(&self) -> u32 {
        self.master.id()
    }

    /// The directory given to [`Postfix::start`].
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// master's output and the last 40 lines of the mail log (for
    /// assertion messages).
    pub fn log_tail(&self) -> String {
        let mut s = std::fs::read_to_string(self.dir.join("master.out")).unwrap_or_default();
        let log = std::fs::read_to_string(self.dir.join("maillog")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        for l in &lines[lines.len().saturating_sub(40)..] {
            s.push('\n');
            s.push_str(l);
        }
        s
    }

    /// SIGTERM to master: it stops its children and exits.
    fn terminate(&mut self) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.master.try_wait() {
            return Some(status);
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.master.id().to_string()])
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.master.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Stops master and checks that it exited within the time limit.
    pub fn stop(mut self) {
        let status = self.terminate();
        assert!(
            status.is_some(),
            "Postfix's master did not exit after SIGTERM:\n{}",
            self.log_tail()
        );
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        if self.terminate().is_none() {
            let _ = self.master.kill();
            let _ = self.master.wait();
        }
    }
}

/// Whether a server at `addr` sends a 220 greeting.
fn greeted(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while !got.ends_with(b"\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    got.starts_with(b"220")
}
