//! Shared by the integration tests: a test zone, keys, and our server
//! running in-process on 127.0.0.1 with an ephemeral port.
#![allow(dead_code)]

use scop_dns::policy::Policy;
use scop_dns::server::{Config, Server};
use scop_dns::tsig::{Algorithm, Key, KeyRing};
use scop_dns::{Engine, Zone};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

pub const ZONE: &str = "$ORIGIN example.org.\n$TTL 3600\n\
@ IN SOA ns1 hostmaster 2024010101 7200 3600 1209600 300\n\
@ NS ns1\n@ MX 10 mail\n@ TXT \"v=spf1 mx -all\"\n\
ns1 A 127.0.0.1\nmail A 192.0.2.2\nmail AAAA 2001:db8::2\n\
www CNAME mail\nsub NS ns.sub\nns.sub A 192.0.2.53\n";

pub const POLICY: &str = "update dkim-signer. *._domainkey.@ TXT\n\
update admin. * *\ntransfer xfr.\ntransfer admin.\n";

pub fn dkim_key() -> Key {
    Key::new(
        "dkim-signer.",
        Algorithm::HmacSha256,
        b"dkim-signer secret 0123456789".to_vec(),
    )
    .unwrap()
}
pub fn admin_key() -> Key {
    Key::new(
        "admin.",
        Algorithm::HmacSha512,
        b"admin secret 0123456789abcdef".to_vec(),
    )
    .unwrap()
}
pub fn xfr_key() -> Key {
    Key::new(
        "xfr.",
        Algorithm::HmacSha256,
        b"transfer secret 0123456789ab".to_vec(),
    )
    .unwrap()
}

pub fn keyring() -> KeyRing {
    let mut k = KeyRing::default();
    for key in [dkim_key(), admin_key(), xfr_key()] {
        k.insert(key);
    }
    k
}

/// The clock, as Unix seconds.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The test zone's apex.
pub fn origin() -> scop_dns::hickory_proto::rr::Name {
    scop_dns::hickory_proto::rr::Name::from_ascii("example.org.").unwrap()
}

/// The test zone plus `extra` lines.
pub fn zone_text(extra: &str) -> String {
    format!("{ZONE}{extra}")
}

pub fn engine(extra: &str) -> Engine {
    let zone = Zone::from_master(&zone_text(extra), None).unwrap();
    Engine::new(vec![zone], keyring(), Policy::parse(POLICY).unwrap()).unwrap()
}

/// A fresh scratch directory under the target directory.
pub fn scratch(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = scop_testkit::workspace_root()
        .join("target")
        .join("scop-dns-tests")
        .join(format!(
            "{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Our server on 127.0.0.1:<ephemeral>, stopped on drop.
pub struct Running {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub fn start(engine: Engine, config: Config) -> Running {
    start_with(engine, config, |server| server)
}

/// [`start`], with `adjust` applied to the bound server before it runs
/// (e.g. `Server::with_rate_limit`).
pub fn start_with(
    engine: Engine,
    config: Config,
    adjust: impl FnOnce(Server) -> Server + Send + 'static,
) -> Running {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let server = adjust(
                Server::bind(engine, "127.0.0.1:0".parse().unwrap(), config)
                    .await
                    .unwrap(),
            );
            addr_tx.send(server.local_addr().unwrap()).unwrap();
            server
                .run(async {
                    let _ = stop_rx.await;
                })
                .await
                .unwrap();
        });
    });
    let addr = addr_rx.recv().unwrap();
    Running {
        addr,
        stop: Some(stop_tx),
        thread: Some(thread),
    }
}

/// A Debian peer binary with BIND's and Knot's libraries on the path.
pub fn peer(binary: &str) -> std::process::Command {
    let root = scop_testkit::peer_path("debian");
    let mut cmd = scop_testkit::debian_command(binary);
    let libs = [
        root.join("usr/lib/x86_64-linux-gnu"),
        root.join("usr/lib/x86_64-linux-gnu/bind"),
        root.join("lib/x86_64-linux-gnu"),
        root.join("usr/lib"),
    ];
    cmd.env(
        "LD_LIBRARY_PATH",
        std::env::join_paths(libs.iter()).unwrap(),
    );
    cmd
}

pub struct Output {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a peer with `stdin` as input (bounded by a timeout inside the peers' own options).
pub fn run(mut cmd: std::process::Command, stdin: &str) -> Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("peer starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Output {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `dig @127.0.0.1 -p PORT ARGS...`, short timeouts.
pub fn dig(port: u16, args: &[&str]) -> Output {
    let mut cmd = peer("usr/bin/dig");
    cmd.args(["@127.0.0.1", "-p", &port.to_string(), "+time=2", "+tries=1"]);
    cmd.args(args);
    run(cmd, "")
}

/// `kdig @127.0.0.1 -p PORT ARGS...`.
pub fn kdig(port: u16, args: &[&str]) -> Output {
    let mut cmd = peer("usr/bin/kdig");
    cmd.args(["@127.0.0.1", "-p", &port.to_string(), "+time=2", "+retry=0"]);
    cmd.args(args);
    run(cmd, "")
}

/// A loopback port free for both UDP and TCP.
pub fn free_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = s.local_addr().unwrap().port();
    drop(std::net::TcpListener::bind(("127.0.0.1", port)).unwrap());
    port
}

/// Waits until `needle` appears `count` times in the file `log`; returns
/// the file's text.
pub fn wait_for(
    log: &std::path::Path,
    needle: &str,
    count: usize,
    timeout: std::time::Duration,
) -> String {
    let start = std::time::Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.matches(needle).count() >= count {
            return text;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out waiting for {needle:?} x{count} in {}:\n{text}",
            log.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A peer process killed and reaped when dropped.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A single-threaded runtime for the resolver tests.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Our validating resolver asking `server` for example.org (a stub zone)
/// and trusting `anchors` (none: the zone is used as insecure).
pub fn stub_resolver(
    server: SocketAddr,
    anchors: Vec<scop_dns::resolver::Anchor>,
) -> scop_dns::resolver::Resolver {
    scop_dns::resolver::Resolver::new(&scop_dns::resolver::Config {
        stubs: vec![scop_dns::resolver::Stub {
            zone: origin(),
            servers: vec![server],
        }],
        anchors,
        timeout: std::time::Duration::from_secs(2),
        ..scop_dns::resolver::Config::default()
    })
    .unwrap()
}
