//! `scop-bench dns`: dnsperf against three authoritative servers on
//! loopback, in the same run, on the same zone and the same query file,
//! rounds interleaved across servers:
//!
//! - ours: the `scop dns serve` binary (release build), response rate
//!   limiting off (`--rrl-rate 0`);
//! - Knot DNS (`knotd`) and NSD (`nsd`, `rrl-ratelimit: 0`) from the
//!   Debian packages unpacked by `cargo xtask peers`, each with two
//!   UDP/TCP workers (our binary runs two async worker threads).
//!
//! Queries: UDP and TCP queries per second on a zone of `--names` hosts
//! (A records; every fourth also MX and TXT), the query mix being existing
//! A, MX and TXT names plus 10 % names that do not exist (NXDOMAIN).
//!
//! Signed updates: a DNSSEC-signed zone of `--update-names` hosts (ECDSA
//! P-256 combined signing key, NSEC3 without salt or extra iterations),
//! TSIG-signed RFC 2136 updates sent by `dnsperf -u -y`, each replacing
//! the A record of one host with a new address (so that every update
//! changes the zone and is re-signed); ours journals every change with an
//! fsync before the reply; Knot keeps its (LMDB, robust) journal, once
//! told not to rewrite its zone file (`zonefile-sync: -1`, the like of
//! ours) and once with its default (`zonefile-sync: 0`, the zone file
//! rewritten after each change).
//!
//! Everything is written to a directory under the build's target
//! directory and removed at the end (kept on failure).

use anyhow::{Context, Result, bail};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The zone every server serves.
const ZONE: &str = "bench.test";
/// The TSIG key of the update benchmark.
const KEY_NAME: &str = "bench-key";
/// Worker threads of each peer (UDP and TCP): our binary's runtime has two.
const WORKERS: usize = 2;
/// Time allowed for a server to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(60);

fn usage() -> &'static str {
    "scop-bench dns --debian ROOT [--scop BIN] [--rounds N] [--seconds S] [--names N] \
     [--update-names N] [--clients N] [--outstanding N] [--skip-updates] [--skip-queries]"
}

struct Options {
    debian: PathBuf,
    scop: PathBuf,
    rounds: usize,
    seconds: u32,
    names: usize,
    update_names: usize,
    clients: usize,
    outstanding: usize,
    queries: bool,
    updates: bool,
}

pub fn run(args: &[String]) -> Result<()> {
    let mut debian = None;
    let mut scop = None;
    let mut o = Options {
        debian: PathBuf::new(),
        scop: PathBuf::new(),
        rounds: 5,
        seconds: 5,
        names: 10_000,
        update_names: 1_000,
        clients: 10,
        outstanding: 200,
        queries: true,
        updates: true,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--debian" => debian = Some(PathBuf::from(value()?)),
            "--scop" => scop = Some(PathBuf::from(value()?)),
            "--rounds" => o.rounds = value()?.parse()?,
            "--seconds" => o.seconds = value()?.parse()?,
            "--names" => o.names = value()?.parse()?,
            "--update-names" => o.update_names = value()?.parse()?,
            "--clients" => o.clients = value()?.parse()?,
            "--outstanding" => o.outstanding = value()?.parse()?,
            "--skip-updates" => o.updates = false,
            "--skip-queries" => o.queries = false,
            other => bail!("unknown argument {other}\nusage: {}", usage()),
        }
    }
    o.debian = std::path::absolute(
        debian.with_context(|| format!("--debian ROOT is required\nusage: {}", usage()))?,
    )?;
    let exe = std::env::current_exe()?;
    o.scop = match scop {
        Some(p) => std::path::absolute(p)?,
        // `cargo xtask bench dns` builds `scop` into the same directory.
        None => exe.with_file_name("scop"),
    };
    if !o.scop.exists() {
        bail!(
            "{} is missing: build it (cargo build --release -p scop) or give --scop",
            o.scop.display()
        );
    }
    if o.rounds == 0 || o.seconds == 0 || o.names < 10 || o.update_names < 10 {
        bail!("--rounds and --seconds must be at least 1, --names and --update-names at least 10");
    }
    let tools = Tools::new(&o.debian)?;
    let base = exe.parent().context("no directory for the work files")?;
    let root = base.join(format!("scop-bench-dns-{}", std::process::id()));
    if root.exists() {
        std::fs::remove_dir_all(&root).ok();
    }
    std::fs::create_dir_all(&root)?;
    let result = (|| {
        if o.queries {
            queries(&tools, &o, &root.join("queries"))?;
        }
        if o.updates {
            updates(&tools, &o, &root.join("updates"))?;
        }
        Ok(())
    })();
    match &result {
        Ok(()) => {
            std::fs::remove_dir_all(&root).ok();
        }
        Err(_) => eprintln!("dns bench: logs and data kept in {}", root.display()),
    }
    result
}

/// A deterministic pseudo-random sequence (SplitMix64), so that every run
/// sends the same queries.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The master file: SOA, NS, MX and SPF at the apex, then `names` hosts
/// `hN` with an A record, every fourth with MX and TXT too.
fn zone_text(names: usize) -> String {
    let mut z = format!(
        "$ORIGIN {ZONE}.\n$TTL 3600\n\
         @ IN SOA ns1 hostmaster 1 7200 3600 1209600 300\n\
         @ NS ns1\n@ MX 10 mail\n@ TXT \"v=spf1 mx -all\"\n\
         ns1 A 127.0.0.1\nmail A 127.0.0.2\n"
    );
    for i in 0..names {
        let _ = writeln!(
            z,
            "h{i} A 10.{}.{}.{}",
            i >> 16 & 255,
            i >> 8 & 255,
            i & 255
        );
        if i % 4 == 0 {
            let _ = writeln!(z, "h{i} MX 10 mail");
            let _ = writeln!(z, "h{i} TXT \"v=spf1 ip4:10.0.0.0/8 -all\"");
        }
    }
    z
}

/// dnsperf's query file: 70 % A of existing hosts, 10 % MX and 10 % TXT
/// of hosts that have them, 10 % A of names that do not exist.
fn query_file(names: usize, count: usize) -> String {
    let mut rng = Rng(1);
    let mut q = String::new();
    let with_mx = names.div_ceil(4);
    for _ in 0..count {
        let _ = match rng.below(10) {
            0 => writeln!(q, "h{}.{ZONE} MX", rng.below(with_mx) * 4),
            1 => writeln!(q, "h{}.{ZONE} TXT", rng.below(with_mx) * 4),
            2 => writeln!(q, "nx{}.{ZONE} A", rng.below(names)),
            _ => writeln!(q, "h{}.{ZONE} A", rng.below(names)),
        };
    }
    q
}

/// dnsperf's update file: each update replaces the A record of one host
/// with an address that host has not had just before, so that every
/// update changes the zone, also when dnsperf starts the file again.
fn update_file(names: usize, count: usize) -> String {
    let mut u = String::new();
    for i in 0..count {
        let host = i % names;
        let round = i / names + 1;
        let _ = write!(
            u,
            "{ZONE}\ndelete h{host} A\nadd h{host} 3600 A 10.{}.{}.{}\nsend\n",
            100 + round % 100,
            host >> 8 & 255,
            host & 255
        );
    }
    u
}

/// A free port on 127.0.0.1 for both TCP and UDP.
pub(crate) fn free_port() -> Result<u16> {
    for _ in 0..50 {
        let tcp = TcpListener::bind("127.0.0.1:0")?;
        let port = tcp.local_addr()?.port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port on 127.0.0.1")
}

/// A `ZONE SOA` query sent over UDP; whether a NOERROR answer came back.
fn answers(addr: SocketAddr) -> bool {
    let Ok(sock) = UdpSocket::bind("127.0.0.1:0") else {
        return false;
    };
    let _ = sock.set_read_timeout(Some(Duration::from_millis(200)));
    let mut q = vec![0x5c, 0x07, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ZONE.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 6, 0, 1]);
    if sock.send_to(&q, addr).is_err() {
        return false;
    }
    let mut buf = [0u8; 1500];
    match sock.recv_from(&mut buf) {
        Ok((n, _)) => n >= 12 && buf[..2] == q[..2] && buf[2] & 0x80 != 0 && buf[3] & 0x0F == 0,
        Err(_) => false,
    }
}

/// The unpacked Debian root: dnsperf, knotd, nsd.
struct Tools {
    root: PathBuf,
    libs: std::ffi::OsString,
}

impl Tools {
    fn new(root: &Path) -> Result<Tools> {
        for p in ["usr/bin/dnsperf", "usr/sbin/knotd", "usr/sbin/nsd"] {
            if !root.join(p).exists() {
                bail!(
                    "{} is missing: run `cargo xtask peers`",
                    root.join(p).display()
                );
            }
        }
        let libs = std::env::join_paths([root.join("usr/lib/x86_64-linux-gnu")])?;
        Ok(Tools {
            root: root.to_path_buf(),
            libs,
        })
    }

    fn command(&self, relative: &str) -> Command {
        let mut c = Command::new(self.root.join(relative));
        c.env("LD_LIBRARY_PATH", &self.libs);
        c
    }

    fn version(&self, relative: &str, flag: &str) -> String {
        let out = self.command(relative).arg(flag).output().ok();
        out.map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
            s.push_str(&String::from_utf8_lossy(&o.stderr));
            s.split_whitespace()
                .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))
                .unwrap_or("?")
                .trim_end_matches(',')
                .to_string()
        })
        .unwrap_or_else(|| "?".into())
    }

    /// One dnsperf run; its summary.
    fn dnsperf(&self, addr: SocketAddr, file: &Path, extra: &[&str]) -> Result<Perf> {
        let out = self
            .command("usr/bin/dnsperf")
            .args(["-s", &addr.ip().to_string(), "-p", &addr.port().to_string()])
            .arg("-d")
            .arg(file)
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .context("run dnsperf")?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "dnsperf {addr} {extra:?}: {}\n{text}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Perf::parse(&text).with_context(|| format!("dnsperf output:\n{text}"))
    }
}

/// What one dnsperf run reports.
#[derive(Debug, Clone)]
struct Perf {
    /// Queries (or updates) per second.
    rate: f64,
    completed: u64,
    lost: u64,
    /// Response codes and their counts.
    rcodes: Vec<(String, u64)>,
}

impl Perf {
    fn parse(text: &str) -> Result<Perf> {
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.trim().strip_prefix(key).map(str::trim))
        };
        let first_number = |s: &str| -> Option<u64> { s.split_whitespace().next()?.parse().ok() };
        let rate = text
            .lines()
            .find_map(|l| {
                let l = l.trim();
                let rest = l
                    .strip_prefix("Queries per second:")
                    .or_else(|| l.strip_prefix("Updates per second:"))?;
                rest.trim().parse::<f64>().ok()
            })
            .context("no rate")?;
        let completed = field("Queries completed:")
            .or_else(|| field("Updates completed:"))
            .and_then(first_number)
            .context("no completed count")?;
        let lost = field("Queries lost:")
            .or_else(|| field("Updates lost:"))
            .and_then(first_number)
            .unwrap_or(0);
        let mut rcodes = Vec::new();
        if let Some(codes) = field("Response codes:") {
            for part in codes.split(',') {
                let mut w = part.split_whitespace();
                if let (Some(code), Some(n)) = (w.next(), w.next().and_then(|n| n.parse().ok())) {
                    rcodes.push((code.to_string(), n));
                }
            }
        }
        Ok(Perf {
            rate,
            completed,
            lost,
            rcodes,
        })
    }

    fn count(&self, code: &str) -> u64 {
        self.rcodes
            .iter()
            .filter(|(c, _)| c == code)
            .map(|(_, n)| n)
            .sum()
    }

    /// Share of answers with an rcode outside `allowed`.
    fn other_share(&self, allowed: &[&str]) -> f64 {
        let total: u64 = self.rcodes.iter().map(|(_, n)| n).sum();
        let bad: u64 = self
            .rcodes
            .iter()
            .filter(|(c, _)| !allowed.contains(&c.as_str()))
            .map(|(_, n)| n)
            .sum();
        if total == 0 {
            1.0
        } else {
            bad as f64 / total as f64
        }
    }
}

fn median_f(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A server process under test; stopped (signal, then kill) when dropped.
struct Server {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    /// The signal that stops it cleanly.
    signal: &'static str,
}

impl Server {
    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("{} exited ({status}): {}", self.name, self.log_tail());
            }
            if answers(self.addr) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{} did not answer: {}", self.name, self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// CPU time (user + system) the process and its descendants (NSD's
    /// server processes) have used, in clock ticks.
    fn cpu_ticks(&self) -> Option<u64> {
        let all: Vec<(u32, u32, u64)> = std::fs::read_dir("/proc")
            .ok()?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(|pid| proc_stat(pid).map(|(ppid, ticks)| (pid, ppid, ticks)))
            .collect();
        let mut family = vec![self.child.id()];
        let mut total = 0;
        while let Some(pid) = family.pop() {
            for &(p, ppid, ticks) in &all {
                if p == pid {
                    total += ticks;
                }
                if ppid == pid {
                    family.push(p);
                }
            }
        }
        Some(total)
    }
}

/// The parent and the CPU ticks (user + system) of a process.
fn proc_stat(pid: u32) -> Option<(u32, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ppid = f.get(1)?.parse().ok()?;
    Some((
        ppid,
        f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?,
    ))
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .args([self.signal, &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// `scop dns serve`; the address is read from its `listening on` line.
fn start_ours(scop: &Path, dir: &Path, zone: &Path, extra: &[&std::ffi::OsStr]) -> Result<Server> {
    let log = dir.join("scop.log");
    let mut child = Command::new(scop)
        .args(["dns", "serve", "--listen", "127.0.0.1:0", "--rrl-rate", "0"])
        .arg("--zone")
        .arg(zone)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .with_context(|| format!("start {}", scop.display()))?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        BufReader::new(out).read_line(&mut line)?;
    }
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|a| a.parse().ok());
    let mut server = Server {
        name: "scop",
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        log,
        signal: "-INT",
    };
    match addr {
        Some(addr) => server.addr = addr,
        None => bail!("scop dns serve did not start: {}", server.log_tail()),
    }
    server.wait_ready()?;
    Ok(server)
}

/// knotd with a configuration written for this run; `zone_extra` is
/// appended to the zone's section, `top` before the zone section.
fn start_knot(
    tools: &Tools,
    dir: &Path,
    zone: &Path,
    top: &str,
    zone_extra: &str,
) -> Result<Server> {
    std::fs::create_dir_all(dir)?;
    let port = free_port()?;
    let d = dir.display();
    let conf = format!(
        "server:\n    rundir: \"{d}\"\n    listen: 127.0.0.1@{port}\n    \
         udp-workers: {WORKERS}\n    tcp-workers: {WORKERS}\n    background-workers: 1\n    \
         tcp-max-clients: 1000\n\
         log:\n  - target: stderr\n    any: warning\n\
         database:\n    storage: \"{d}\"\n\
         control:\n    listen: \"{d}/knot.sock\"\n\
         {top}\
         zone:\n  - domain: {ZONE}\n    storage: \"{d}\"\n    file: \"{zone}\"\n{zone_extra}",
        zone = zone.display(),
    );
    let conf_path = dir.join("knot.conf");
    std::fs::write(&conf_path, conf)?;
    let log = dir.join("knot.log");
    let child = tools
        .command("usr/sbin/knotd")
        .arg("-c")
        .arg(&conf_path)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log)?)
        .stderr(std::fs::File::create(dir.join("knot.err"))?)
        .spawn()
        .context("start knotd")?;
    let mut server = Server {
        name: "knot",
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        log: dir.join("knot.err"),
        signal: "-TERM",
    };
    server.wait_ready()?;
    Ok(server)
}

/// NSD in the foreground, response rate limiting off (benchmark only).
fn start_nsd(tools: &Tools, dir: &Path, zone: &Path) -> Result<Server> {
    std::fs::create_dir_all(dir)?;
    let port = free_port()?;
    let d = dir.display();
    let conf = format!(
        "server:\n    ip-address: 127.0.0.1\n    port: {port}\n    do-ip6: no\n    \
         username: \"\"\n    chroot: \"\"\n    database: \"\"\n    \
         zonesdir: \"{d}\"\n    xfrdir: \"{d}\"\n    pidfile: \"{d}/nsd.pid\"\n    \
         xfrdfile: \"{d}/xfrd.state\"\n    zonelistfile: \"{d}/zone.list\"\n    \
         logfile: \"{d}/nsd.log\"\n    verbosity: 0\n    \
         server-count: {WORKERS}\n    reuseport: yes\n    tcp-count: 1000\n    \
         tcp-query-count: 0\n    rrl-ratelimit: 0\n    rrl-whitelist-ratelimit: 0\n\
         remote-control:\n    control-enable: no\n\
         zone:\n    name: {ZONE}\n    zonefile: \"{zone}\"\n",
        zone = zone.display(),
    );
    let conf_path = dir.join("nsd.conf");
    std::fs::write(&conf_path, conf)?;
    let child = tools
        .command("usr/sbin/nsd")
        .arg("-d")
        .arg("-c")
        .arg(&conf_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("nsd.err"))?)
        .spawn()
        .context("start nsd")?;
    let mut server = Server {
        name: "nsd",
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        log: dir.join("nsd.log"),
        signal: "-TERM",
    };
    server.wait_ready()?;
    Ok(server)
}

fn queries(tools: &Tools, o: &Options, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let zone = dir.join(format!("{ZONE}.zone"));
    std::fs::write(&zone, zone_text(o.names))?;
    let qfile = dir.join("queries.txt");
    std::fs::write(&qfile, query_file(o.names, 100_000))?;
    let servers = [
        start_ours(&o.scop, dir, &zone, &[])?,
        start_knot(tools, &dir.join("knot"), &zone, "", "")?,
        start_nsd(tools, &dir.join("nsd"), &zone)?,
    ];
    let (rounds, secs) = (o.rounds, o.seconds);
    println!(
        "dns queries: dnsperf {} -c {} -q {} -l {secs} against scop dns serve (--rrl-rate 0), \
         Knot {} ({WORKERS} UDP + {WORKERS} TCP workers), NSD {} (server-count {WORKERS}, rrl off); \
         zone of {} hosts, 100,000 queries (70 % A, 10 % MX, 10 % TXT, 10 % NXDOMAIN); \
         median of {rounds} interleaved rounds",
        tools.version("usr/bin/dnsperf", "-h"),
        o.clients,
        o.outstanding,
        tools.version("usr/sbin/knotd", "-V"),
        tools.version("usr/sbin/nsd", "-v"),
        o.names,
    );
    println!(
        "{:>5} | {:>10} {:>10} {:>10} | {:>9} {:>9} | {:>22}",
        "mode",
        "scop qps",
        "knot qps",
        "nsd qps",
        "scop/knot",
        "scop/nsd",
        "NXDOMAIN % scop/knot/nsd"
    );
    for mode in ["udp", "tcp"] {
        let mut rates = vec![Vec::new(); servers.len()];
        let mut last: Vec<Option<Perf>> = vec![None; servers.len()];
        let mut cpu = vec![0u64; servers.len()];
        for _ in 0..rounds {
            for (i, s) in servers.iter().enumerate() {
                let before = s.cpu_ticks().unwrap_or(0);
                let p = tools.dnsperf(
                    s.addr,
                    &qfile,
                    &[
                        "-m",
                        mode,
                        "-c",
                        &o.clients.to_string(),
                        "-q",
                        &o.outstanding.to_string(),
                        "-l",
                        &secs.to_string(),
                    ],
                )?;
                cpu[i] += s.cpu_ticks().unwrap_or(0).saturating_sub(before);
                let other = p.other_share(&["NOERROR", "NXDOMAIN"]);
                if other > 0.001 || p.completed == 0 {
                    bail!(
                        "{} over {mode}: unexpected response codes {:?} ({} completed)",
                        s.name,
                        p.rcodes,
                        p.completed
                    );
                }
                rates[i].push(p.rate);
                last[i] = Some(p);
            }
        }
        let med: Vec<f64> = rates.into_iter().map(median_f).collect();
        let nx: Vec<String> = last
            .iter()
            .map(|p| {
                p.as_ref().map_or("?".into(), |p| {
                    let total: u64 = p.rcodes.iter().map(|(_, n)| n).sum();
                    format!(
                        "{:.1}",
                        100.0 * p.count("NXDOMAIN") as f64 / total.max(1) as f64
                    )
                })
            })
            .collect();
        println!(
            "{:>5} | {:>10.0} {:>10.0} {:>10.0} | {:>8.2}x {:>8.2}x | {:>22}",
            mode,
            med[0],
            med[1],
            med[2],
            med[0] / med[1],
            med[0] / med[2],
            nx.join("/"),
        );
        let lost: Vec<String> = last
            .iter()
            .map(|p| p.as_ref().map_or("?".into(), |p| p.lost.to_string()))
            .collect();
        println!(
            "{:>5}   lost in the last round scop/knot/nsd: {}; server CPU seconds over all rounds: {}",
            "",
            lost.join("/"),
            cpu.iter()
                .map(|t| format!("{:.1}", *t as f64 / 100.0))
                .collect::<Vec<_>>()
                .join("/")
        );
    }
    println!("ratio = scop qps / peer qps (higher is better)");
    Ok(())
}

/// The secret (base64) of the first key in a BIND key file.
fn bind_secret(text: &str) -> Result<String> {
    let at = text.find("secret").context("no secret in the key file")?;
    let rest = &text[at..];
    let start = rest.find('"').context("secret not quoted")? + 1;
    let len = rest[start..].find('"').context("secret not quoted")?;
    Ok(rest[start..start + len].to_string())
}

fn updates(tools: &Tools, o: &Options, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let zone = dir.join(format!("{ZONE}.zone"));
    std::fs::write(&zone, zone_text(o.update_names))?;
    let ufile = dir.join("updates.txt");
    std::fs::write(&ufile, update_file(o.update_names, o.update_names * 20))?;

    // Ours: a fresh signing key and TSIG key, a policy that lets the key
    // update the zone, a journal.
    let ours_dir = dir.join("scop");
    let keys = ours_dir.join("keys");
    std::fs::create_dir_all(&keys)?;
    let run_scop = |args: &[&std::ffi::OsStr]| -> Result<()> {
        let out = Command::new(&o.scop).args(args).output()?;
        if !out.status.success() {
            bail!(
                "scop {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    };
    let key_file = ours_dir.join("tsig.key");
    run_scop(&[
        "dns".as_ref(),
        "keygen".as_ref(),
        ZONE.as_ref(),
        "--algorithm".as_ref(),
        "ecdsap256".as_ref(),
        "--dir".as_ref(),
        keys.as_os_str(),
    ])?;
    run_scop(&[
        "dns".as_ref(),
        "tsig-keygen".as_ref(),
        KEY_NAME.as_ref(),
        "--out".as_ref(),
        key_file.as_os_str(),
    ])?;
    let secret = bind_secret(&std::fs::read_to_string(&key_file)?)?;
    let policy = ours_dir.join("dns.policy");
    std::fs::write(&policy, format!("update {KEY_NAME}. * *\n"))?;
    let journal = ours_dir.join("journal");
    let ours = start_ours(
        &o.scop,
        &ours_dir,
        &zone,
        &[
            "--dnssec-keys".as_ref(),
            keys.as_os_str(),
            "--tsig-key".as_ref(),
            key_file.as_os_str(),
            "--policy".as_ref(),
            policy.as_os_str(),
            "--journal".as_ref(),
            journal.as_os_str(),
        ],
    )?;

    // Knot: automatic signing with the same algorithm and denial, the
    // same TSIG key allowed to update; once journal-only (like ours), once
    // with its default `zonefile-sync: 0` (the zone file rewritten after
    // every change).
    let top = format!(
        "key:\n  - id: {KEY_NAME}\n    algorithm: hmac-sha256\n    secret: {secret}\n\
         acl:\n  - id: update\n    key: {KEY_NAME}\n    action: update\n\
         policy:\n  - id: bench\n    algorithm: ecdsap256sha256\n    single-type-signing: on\n    \
         nsec3: on\n    nsec3-iterations: 0\n    nsec3-salt-length: 0\n"
    );
    let signed = "    acl: update\n    dnssec-signing: on\n    dnssec-policy: bench\n";
    let knot = start_knot(
        tools,
        &dir.join("knot"),
        &zone,
        &top,
        &format!("{signed}    zonefile-sync: -1\n    journal-content: changes\n"),
    )?;
    let knot_zone = dir.join("knot-default").join(format!("{ZONE}.zone"));
    std::fs::create_dir_all(dir.join("knot-default"))?;
    std::fs::copy(&zone, &knot_zone)?;
    let mut knot_default = start_knot(tools, &dir.join("knot-default"), &knot_zone, &top, signed)?;
    knot_default.name = "knot-zonefile-sync-0";
    let servers = [ours, knot, knot_default];
    // Knot signs the zone after loading it: wait for the DNSKEYs.
    for s in &servers {
        wait_signed(tools, s.addr)?;
    }
    let tsig = format!("hmac-sha256:{KEY_NAME}:{secret}");
    let args = [
        "-u",
        "-y",
        &tsig,
        "-c",
        "1",
        "-q",
        "10",
        "-l",
        &o.seconds.to_string(),
    ];
    println!(
        "dns signed updates: dnsperf -u -y hmac-sha256 -c 1 -q 10 -l {} against scop dns serve \
         (--dnssec-keys, NSEC3, journal fsync'd before each reply) and Knot {} \
         (dnssec-signing on, ECDSA P-256 CSK, NSEC3; journal only with zonefile-sync -1, \
         and Knot's default zonefile-sync 0); zone of {} hosts, each update replaces one \
         host's A record; median of {} interleaved rounds",
        o.seconds,
        tools.version("usr/sbin/knotd", "-V"),
        o.update_names,
        o.rounds
    );
    let mut rates = vec![Vec::new(); servers.len()];
    for _ in 0..o.rounds {
        for (i, s) in servers.iter().enumerate() {
            let p = tools.dnsperf(s.addr, &ufile, &args)?;
            if p.other_share(&["NOERROR"]) > 0.001 || p.completed == 0 {
                bail!(
                    "{}: updates answered {:?} ({} completed, {} lost)",
                    s.name,
                    p.rcodes,
                    p.completed,
                    p.lost
                );
            }
            rates[i].push(p.rate);
        }
    }
    let med: Vec<f64> = rates.into_iter().map(median_f).collect();
    println!(
        "{:>14} {:>14} {:>22} | {:>9} {:>14}",
        "scop updates/s", "knot updates/s", "knot (zonefile-sync 0)", "scop/knot", "scop/knot(zs0)"
    );
    println!(
        "{:>14.1} {:>14.1} {:>22.1} | {:>8.2}x {:>13.2}x",
        med[0],
        med[1],
        med[2],
        med[0] / med[1],
        med[0] / med[2]
    );
    for s in &servers {
        check_signed_change(tools, s)?;
    }
    println!("every update answered NOERROR; every zone serves the updated A RRset with its RRSIG");
    Ok(())
}

/// kdig from the unpacked peers, with `args`; its output.
fn kdig(tools: &Tools, addr: SocketAddr, args: &[&str]) -> Result<String> {
    let out = tools
        .command("usr/bin/kdig")
        .arg(format!("@{}", addr.ip()))
        .args(["-p", &addr.port().to_string()])
        .args(args)
        .output()
        .context("run kdig")?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn wait_signed(tools: &Tools, addr: SocketAddr) -> Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let out = kdig(tools, addr, &["+short", ZONE, "DNSKEY"])?;
        if out.lines().any(|l| l.starts_with("257 ")) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{addr} serves no DNSKEY for {ZONE}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The A RRset of the first host has changed (an address from the update
/// file) and carries an RRSIG.
fn check_signed_change(tools: &Tools, s: &Server) -> Result<()> {
    let name = format!("h0.{ZONE}");
    let out = kdig(tools, s.addr, &["+dnssec", "+noall", "+answer", &name, "A"])?;
    let changed = out
        .lines()
        .any(|l| l.contains("\tA\t10.1") || l.contains(" A 10.1"));
    let signed = out.lines().any(|l| l.contains("RRSIG"));
    if !changed || !signed {
        bail!(
            "{}: {name} A is not the updated, signed RRset:\n{out}",
            s.name
        );
    }
    Ok(())
}
