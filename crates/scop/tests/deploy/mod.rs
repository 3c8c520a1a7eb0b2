//! Helpers of the deployment tests: the `scop` binary, waiting, the
//! supervisor stopped on drop, Maildir and status reading.
#![allow(dead_code)]

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const SCOP: &str = env!("CARGO_BIN_EXE_scop");

/// The mail compartments `scop up` runs, each its own process.
pub const MAIL_ROLES: [&str; 8] = [
    "mx",
    "spamfilter",
    "verifier",
    "delivery",
    "submission",
    "signer",
    "relay",
    "resolver",
];

/// An empty directory `scop-<tag>-<pid>` under the temporary directory
/// (what an earlier run left there is removed).
pub fn fresh_root(tag: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("scop-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    root
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The first of `n` consecutive TCP ports free on `ip` (for the mesh
/// listeners of a deployment, `--mesh-base`).
pub fn free_ports(ip: &str, n: u16) -> u16 {
    for _ in 0..200 {
        let first = TcpListener::bind((ip, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if first > u16::MAX - n {
            continue;
        }
        let held: Vec<_> = (first..first + n)
            .map_while(|p| TcpListener::bind((ip, p)).ok())
            .collect();
        if held.len() == usize::from(n) {
            return first;
        }
    }
    panic!("no {n} consecutive free ports on {ip}");
}

pub fn scop(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(SCOP)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command that fails before reading its input closes the pipe: its
    // exit status and output are what the caller checks.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

pub fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn listening(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

pub fn status_json(dir: &Path) -> serde_json::Value {
    let bytes = std::fs::read(dir.join("run/status.json")).unwrap_or_default();
    serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null)
}

pub fn compartment(dir: &Path, name: &str) -> (u64, String, u64) {
    let status = status_json(dir);
    let c = status["compartments"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == name)
        .cloned()
        .unwrap_or_default();
    (
        c["pid"].as_u64().unwrap_or(0),
        c["state"].as_str().unwrap_or("").to_string(),
        c["restarts"].as_u64().unwrap_or(0),
    )
}

pub fn signal(pid: u64, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

pub fn dig(port: u16, args: &[&str]) -> String {
    let out = scop_testkit::debian_command("usr/bin/dig")
        .args([
            "@127.0.0.1",
            "-p",
            &port.to_string(),
            "+short",
            "+time=2",
            "+tries=2",
        ])
        .args(args)
        .output()
        .expect("dig runs (cargo xtask peers installs it)");
    assert!(out.status.success(), "dig {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub struct Supervisor(pub Child);

/// `scop up --dir DIR`, its log in `log`; stopped (SIGTERM) when dropped.
pub fn up(dir: &Path, log: &Path) -> Supervisor {
    Supervisor(
        Command::new(SCOP)
            .args(["up", "--dir"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap(),
    )
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.0.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
    }
}

pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

pub fn delivered(maildir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(maildir.join("new"))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}

/// Every message file under a Maildir (inbox and folders), read.
pub fn messages(maildir: &Path) -> Vec<String> {
    if !maildir.exists() {
        return Vec::new();
    }
    scop_testkit::files_under(maildir)
        .into_iter()
        .filter(|p| {
            p.parent()
                .and_then(|d| d.file_name())
                .is_some_and(|n| n == "new" || n == "cur")
        })
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect()
}

/// Waits (up to a minute) for a message containing `marker` in `maildir`.
pub fn wait_message(maildir: &Path, marker: &str) -> String {
    let mut found = None;
    wait_for(marker, Duration::from_secs(60), || {
        found = messages(maildir).into_iter().find(|m| m.contains(marker));
        found.is_some()
    });
    found.unwrap()
}

/// Runs a Python script with `args` (its `sys.argv[1:]`); returns stdout
/// (the whole output in the panic on failure).
pub fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new(scop_testkit::python())
        .args(["-c", script])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "python: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `login` submits `message` to `to` over implicit TLS at `ip:port` with
/// AUTH, through Python's smtplib (the certificate is self-signed).
pub fn submit(ip: &str, port: u16, login: &str, password: &str, to: &str, message: &str) {
    const SUBMIT: &str = r#"
import smtplib, ssl, sys
ip, port, login, password, to, message = sys.argv[1:]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
with smtplib.SMTP_SSL(ip, int(port), context=ctx, timeout=30) as s:
    s.login(login, password)
    s.sendmail(login, [to], message)
"#;
    python(
        SUBMIT,
        &[ip, &port.to_string(), login, password, to, message],
    );
}

/// `scop init` of a test deployment of `domain` in `dir` on loopback
/// address `ip` (MX, implicit-TLS submission and DNS on the given ports,
/// mesh on free ports, DMARC p=reject, first account `user` with
/// `password`). Names outside the stub zones go to a resolver that is not
/// there, so they fail at once, as temporary errors.
#[allow(clippy::too_many_arguments)]
pub fn init_site(
    dir: &Path,
    domain: &str,
    user: &str,
    password: &str,
    ip: &str,
    mx: u16,
    subs: u16,
    dns: u16,
) {
    let out = scop(
        &[
            "init",
            "--dir",
            dir.to_str().unwrap(),
            "--domain",
            domain,
            "--hostname",
            &format!("mx.{domain}"),
            "--ip",
            ip,
            "--user",
            user,
            "--password-stdin",
            "--mx",
            &format!("{ip}:{mx}"),
            "--submission",
            "off",
            "--submissions",
            &format!("{ip}:{subs}"),
            "--dns",
            &format!("{ip}:{dns}"),
            "--resolver",
            "127.0.0.1:9",
            "--dmarc-policy",
            "reject",
            "--mesh-base",
            &format!("{ip}:{}", free_ports(ip, 6)),
        ],
        &format!("{password}\n"),
    );
    assert!(out.status.success(), "init {domain}: {out:?}");
}

/// Appends each `(key, value)` to the array `key` of the `[mail]`
/// section of the deployment's scop.toml.
pub fn add_to_mail_config(dir: &Path, entries: &[(&str, String)]) {
    let path = dir.join("scop.toml");
    let mut config: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
    let mail = config["mail"].as_table_mut().unwrap();
    for (key, value) in entries {
        mail.entry(*key)
            .or_insert_with(|| toml::Value::Array(vec![]))
            .as_array_mut()
            .unwrap()
            .push(toml::Value::String(value.clone()));
    }
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
}
