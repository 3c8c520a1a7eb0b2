//! `scop-bench smtp`: Postfix's load generator `smtp-source` against two
//! receivers on the same machine, in the same run, rounds interleaved
//! after one untimed round of each case against each:
//!
//! - our MX (`scop_mail::service::start`) with a SQLite store, one local
//!   domain and one user, every message fdatasync'd into the delivery
//!   journal before the 250 and written into the Maildir (file and
//!   directory fsync'd) just after, as `scop mail serve` does; it runs in a child process (this binary's hidden `smtp-mx`
//!   subcommand) so that its RSS is measured alone;
//! - Postfix's own `master`/`smtpd` from the Debian package unpacked by
//!   `cargo xtask peers`, in a private queue directory, queueing every
//!   message durably (its 250) and then handing it to the `discard`
//!   transport.
//!
//! Both log one line or more per message to a file (ours through
//! `tracing` at `info`, Postfix through `postlogd`), neither does DNS.
//! Then the memory of our MX: RSS growth per idle connection (N idle
//! sessions that have read the greeting) and the peak RSS while
//! `smtp-source` drives 1,000 concurrent sessions.
//!
//! Before it starts, the bench waits until making a file is cheap again
//! (at most [`SETTLE`]): on ext4 without a journal, every file creation
//! steps over the inodes freed nearby in the last minutes
//! (`recently_deleted` in `fs/ext4/ialloc.c`: 60 s, or 360 s while their
//! inode-table block is dirty, which each new inode next to them makes
//! it), so a run that starts after another one, or after a test run,
//! deleted tens of thousands of files would pay for them: up to a
//! millisecond per file instead of tens of microseconds. It writes the
//! filesystem back after removing its own data, for whatever runs next.

use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// The local domain of both receivers.
const DOMAIN: &str = "bench.test";
/// The one recipient (a user of our store; any local part for Postfix).
const RCPT: &str = "user@bench.test";
/// The envelope sender.
const FROM: &str = "sender@origin.test";

/// The measured cases: sessions, message size (bytes), messages per run.
const CASES: &[(usize, usize, usize)] = &[
    (1, 2_000, 400),
    (1, 100_000, 300),
    (20, 2_000, 3_000),
    (20, 100_000, 1_500),
];

/// The longest wait for file creation to be cheap before the first round
/// (ext4's `RECENTCY_MIN` + `RECENTCY_DIRTY`, and a minute).
const SETTLE: Duration = Duration::from_secs(420);
/// A file creation costs at most this when no recently freed inodes are
/// in the way (10 to 40 us here; 200 us to 1 ms with them).
const QUIET_CREATE: Duration = Duration::from_micros(100);

fn usage() -> &'static str {
    "scop-bench smtp --debian ROOT [--rounds N] [--scale F] [--idle N] [--peak-sessions N] [--settle SECONDS]"
}

/// Median cost of making an empty file in a new directory under `root`
/// (the files stay until the run's data is removed: deleting them would
/// add to what is measured).
fn create_cost(root: &Path, probe: usize) -> Result<Duration> {
    let dir = root.join(format!("probe-{probe}"));
    std::fs::create_dir_all(&dir)?;
    let mut costs: Vec<Duration> = (0..200)
        .map(|i| {
            let t = Instant::now();
            std::fs::File::create(dir.join(i.to_string()))?;
            Ok(t.elapsed())
        })
        .collect::<Result<_>>()?;
    costs.sort();
    Ok(costs[costs.len() / 2])
}

/// Waits, at most `limit`, until making a file under `root` is cheap;
/// false if it never became so.
fn settle(root: &Path, limit: Duration) -> Result<bool> {
    let start = Instant::now();
    let mut probe = 0;
    loop {
        write_back(root)?;
        let cost = create_cost(root, probe)?;
        if cost <= QUIET_CREATE {
            return Ok(true);
        }
        if start.elapsed() >= limit {
            eprintln!(
                "smtp bench: file creation still costs {} us after {} s; measuring anyway",
                cost.as_micros(),
                start.elapsed().as_secs()
            );
            return Ok(false);
        }
        eprintln!(
            "smtp bench: making a file costs {} us (files deleted in the last minutes are in the way); waiting {} s at most",
            cost.as_micros(),
            limit.saturating_sub(start.elapsed()).as_secs()
        );
        std::thread::sleep(Duration::from_secs(15));
        probe += 1;
    }
}

/// Writes back the filesystem holding `dir` (`sync -f`).
fn write_back(dir: &Path) -> Result<()> {
    let status = Command::new("sync")
        .arg("-f")
        .arg(dir)
        .status()
        .context("run sync -f")?;
    if !status.success() {
        bail!("sync -f {}: {status}", dir.display());
    }
    Ok(())
}

pub fn run(args: &[String]) -> Result<()> {
    let mut debian = None;
    let mut rounds = 3usize;
    let mut scale = 1.0f64;
    let mut idle = 1000usize;
    let mut settle_limit = SETTLE;
    let mut peak_sessions = 1000usize;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--debian" => debian = Some(PathBuf::from(value()?)),
            "--rounds" => rounds = value()?.parse()?,
            "--scale" => scale = value()?.parse()?,
            "--idle" => idle = value()?.parse()?,
            "--peak-sessions" => peak_sessions = value()?.parse()?,
            "--settle" => settle_limit = Duration::from_secs(value()?.parse()?),
            other => bail!("unknown argument {other}\nusage: {}", usage()),
        }
    }
    let debian =
        debian.with_context(|| format!("--debian ROOT is required\nusage: {}", usage()))?;
    if rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    let tools = Tools::new(&debian)?;
    raise_nofile(idle.max(peak_sessions) * 2 + 1024)?;

    let root = std::env::temp_dir().join(format!("scop-bench-smtp-{}", std::process::id()));
    if root.exists() {
        std::fs::remove_dir_all(&root).ok();
    }
    std::fs::create_dir_all(&root)?;
    let quiet = settle(&root, settle_limit)?;
    let result = bench(&tools, &root, rounds, scale, idle, peak_sessions);
    if !quiet {
        println!(
            "note: making a file still cost more than {} us when the rounds began (files deleted shortly before); the figures are disturbed",
            QUIET_CREATE.as_micros()
        );
    }
    match &result {
        Ok(()) => {
            std::fs::remove_dir_all(&root).ok();
            write_back(&std::env::temp_dir())?;
        }
        Err(_) => eprintln!("smtp bench: logs and data kept in {}", root.display()),
    }
    result
}

/// Postfix's smtpd with its queue, receiving for [`DOMAIN`] and
/// discarding after the queue (fsync before 250): the test kit's
/// harness, configured as a plain receiver.
fn start_postfix(dir: &Path) -> Result<scop_testkit::postfix::Postfix> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let p = |k: &str, v: &str| (k.to_string(), v.to_string());
    let config = scop_testkit::postfix::Config {
        listen: SocketAddr::from(([127, 0, 0, 1], port)),
        hostname: format!("mail.{DOMAIN}"),
        params: vec![
            p("mydomain", DOMAIN),
            p("myorigin", DOMAIN),
            p("mydestination", DOMAIN),
            p("inet_interfaces", "127.0.0.1"),
            p("local_transport", "discard:"),
            p("default_transport", "discard:"),
            p("relay_transport", "discard:"),
            // Postfix's own default (the harness turns it off for tests).
            p("local_header_rewrite_clients", "permit_inet_interfaces"),
            p("smtpd_client_connection_count_limit", "0"),
            p("smtpd_client_connection_rate_limit", "0"),
            p("default_process_limit", "200"),
        ],
    };
    Ok(scop_testkit::postfix::Postfix::start(dir, &config))
}

fn bench(
    tools: &Tools,
    root: &Path,
    rounds: usize,
    scale: f64,
    idle: usize,
    peak_sessions: usize,
) -> Result<()> {
    let mut ours = OurMx::start(&root.join("scop"))?;
    let postfix = start_postfix(&root.join("postfix"))?;
    let sink = tools.smtp_sink()?;
    let version = scop_testkit::postfix::version();
    println!(
        "smtp: smtp-source (Postfix {version}) -> scop MX (SQLite store, delivery journal fdatasync'd before 250, then Maildir) \
         vs Postfix {version} smtpd + queue (fsync before 250, then discard); \
         a new connection per message; median of {rounds} interleaved rounds after one untimed round of each case; \
         smtp-sink (one process that answers and keeps nothing) shows how fast this client can go here"
    );
    println!(
        "{:>8} {:>8} {:>6} | {:>11} {:>13} | {:>7} | {:>14} {:>7} | {:>10} {:>9}",
        "sessions",
        "size",
        "msgs",
        "scop msg/s",
        "postfix msg/s",
        "ratio",
        "in Maildir/s",
        "ratio",
        "sink msg/s",
        "sink/pf"
    );
    let mut sent_to_ours = 0usize;
    for &(sessions, size, count) in CASES {
        let count = ((count as f64 * scale).round() as usize).max(sessions);
        let (mut a, mut stored, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        // Each receiver as it runs once warm: Postfix's smtpd processes
        // started, our journal's segment files there to be written over
        // (a new file's are zero-filled as it grows).
        tools.smtp_source(sessions, count, size, ours.addr)?;
        ours.drain()?;
        sent_to_ours += count;
        tools.smtp_source(sessions, count, size, postfix.addr())?;
        for _ in 0..rounds {
            let took = tools.smtp_source(sessions, count, size, ours.addr)?;
            // Every acknowledged copy in the Maildir before Postfix's
            // round starts (our journal does not run into it).
            let lag = ours.drain()?;
            a.push(took);
            stored.push(took + lag);
            sent_to_ours += count;
            b.push(tools.smtp_source(sessions, count, size, postfix.addr())?);
            c.push(tools.smtp_source(sessions, count, size, sink.addr)?);
        }
        let (a, stored, b, c) = (
            crate::median(a),
            crate::median(stored),
            crate::median(b),
            crate::median(c),
        );
        let rate = |d: Duration| count as f64 / d.as_secs_f64();
        println!(
            "{:>8} {:>5} KB {:>6} | {:>11.1} {:>13.1} | {:>6.2}x | {:>14.1} {:>6.2}x | {:>10.1} {:>8.2}x",
            sessions,
            size / 1000,
            count,
            rate(a),
            rate(b),
            b.as_secs_f64() / a.as_secs_f64(),
            rate(stored),
            b.as_secs_f64() / stored.as_secs_f64(),
            rate(c),
            b.as_secs_f64() / c.as_secs_f64()
        );
    }
    drop(sink);
    postfix.stop();
    // Stopping drains the delivery journal into the Maildir.
    let delivered = ours.stop()?;
    if delivered != sent_to_ours {
        bail!("our MX answered 250 for {sent_to_ours} messages but {delivered} are in the Maildir");
    }
    println!(
        "ratio = scop msg/s / Postfix msg/s (higher is better), each side counting its 250s; \
         sink/pf = sink msg/s / Postfix msg/s, about the ratio a server that did no work would get \
         (a lower bound: smtp-sink itself is one process); \
         in Maildir/s counts until the last acknowledged copy left our journal for the Maildir; \
         all {sent_to_ours} messages sent to scop found in its Maildir"
    );

    // Memory, on a fresh MX so that earlier allocations do not hide growth.
    let mx = OurMx::start(&root.join("scop-mem"))?;
    tools.smtp_source(4, 40, 2_000, mx.addr)?;
    std::thread::sleep(Duration::from_millis(500));
    let base = mx.status_kb("VmRSS")?;
    let mut conns = Vec::with_capacity(idle);
    for i in 0..idle {
        conns.push(greeted(mx.addr).with_context(|| format!("idle connection {i}"))?);
    }
    std::thread::sleep(Duration::from_secs(1));
    let with_idle = mx.status_kb("VmRSS")?;
    drop(conns);
    std::thread::sleep(Duration::from_secs(1));
    let after_close = mx.status_kb("VmRSS")?;
    // Reset the high-water mark (Linux: "5" to clear_refs) so that VmHWM is
    // the peak of the loaded run alone.
    let reset = std::fs::write(format!("/proc/{}/clear_refs", mx.pid()), "5").is_ok();
    let peak_count = peak_sessions * 5;
    let took = tools.smtp_source(peak_sessions, peak_count, 2_000, mx.addr)?;
    let peak = mx.status_kb("VmHWM")?;
    let delivered = mx.stop()?;
    let per_conn = (with_idle.saturating_sub(base)) as f64 * 1024.0 / idle as f64;
    println!("memory of the scop MX process (VmRSS/VmHWM from /proc/PID/status):");
    println!(
        "  idle: {base} KB before, {with_idle} KB with {idle} idle connections (greeting read), \
         {after_close} KB after closing them: {:.1} KB per idle connection",
        per_conn / 1024.0
    );
    println!(
        "  peak: {peak} KB VmHWM{} while smtp-source ran {peak_sessions} concurrent sessions \
         ({peak_count} x 2 KB messages, {:.1} msg/s, {delivered} delivered in all)",
        if reset {
            " (reset before the run)"
        } else {
            " (process lifetime)"
        },
        peak_count as f64 / took.as_secs_f64()
    );
    Ok(())
}

/// Opens a connection and reads the 220 greeting.
fn greeted(addr: SocketAddr) -> Result<TcpStream> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while !got.ends_with(b"\r\n") {
        let n = s.read(&mut buf)?;
        if n == 0 {
            bail!("connection closed before the greeting");
        }
        got.extend_from_slice(&buf[..n]);
    }
    if !got.starts_with(b"220") {
        bail!("greeting: {}", String::from_utf8_lossy(&got).trim_end());
    }
    Ok(s)
}

/// The soft open-files limit is raised with util-linux `prlimit` on this
/// process (no libc here: the workspace forbids unsafe code); children
/// inherit it.
fn raise_nofile(want: usize) -> Result<()> {
    let current = nofile_soft()?;
    if current >= want {
        return Ok(());
    }
    let status = Command::new("prlimit")
        .arg("--pid")
        .arg(std::process::id().to_string())
        .arg(format!("--nofile={want}:{want}"))
        .status()
        .context("run prlimit to raise the open-files limit")?;
    let now = nofile_soft()?;
    if !status.success() || now < want {
        bail!(
            "open-files limit is {now}, {want} needed (prlimit failed: run as root or raise `ulimit -n`)"
        );
    }
    Ok(())
}

fn nofile_soft() -> Result<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits")?;
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .context("no open-files line in /proc/self/limits")?;
    let soft = line.split_whitespace().nth(3).context("open-files line")?;
    Ok(if soft == "unlimited" {
        usize::MAX
    } else {
        soft.parse()?
    })
}

pub(crate) fn status_kb(pid: u32, key: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.strip_prefix(key).is_some_and(|r| r.starts_with(':')))
        .with_context(|| format!("no {key} in /proc/{pid}/status"))?;
    Ok(line[key.len() + 1..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?)
}

/// The unpacked Debian root and the Postfix tools in it.
struct Tools {
    root: PathBuf,
    libs: std::ffi::OsString,
}

impl Tools {
    fn new(root: &Path) -> Result<Tools> {
        let root = &std::path::absolute(root)?;
        for p in [
            "usr/sbin/smtp-source",
            "usr/sbin/smtp-sink",
            "usr/lib/postfix/sbin/master",
            "usr/sbin/postconf",
        ] {
            if !root.join(p).exists() {
                bail!(
                    "{} is missing: run `cargo xtask peers`",
                    root.join(p).display()
                );
            }
        }
        let libs = std::env::join_paths([
            root.join("usr/lib/postfix"),
            root.join("usr/lib/x86_64-linux-gnu"),
        ])?;
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

    /// Postfix's `smtp-sink` on a free loopback port: it answers every
    /// command at once and keeps nothing, so what `smtp-source` reaches
    /// against it shows what the client and the machine allow (a lower
    /// bound of it: smtp-sink is one process).
    fn smtp_sink(&self) -> Result<Sink> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut sink = self.command("usr/sbin/smtp-sink");
        // As root it must be told whose privileges to take.
        use std::os::unix::fs::MetadataExt;
        if std::fs::metadata("/proc/self")?.uid() == 0 {
            sink.args(["-u", "nobody"]);
        }
        let child = sink
            .arg(addr.to_string())
            .arg("1024")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("run smtp-sink")?;
        let sink = Sink { child, addr };
        crate::bottle::wait_until(Duration::from_secs(10), || TcpStream::connect(addr).is_ok())
            .with_context(|| format!("smtp-sink did not listen on {addr}"))?;
        Ok(sink)
    }

    /// Runs `smtp-source` to completion; its wall time.
    fn smtp_source(
        &self,
        sessions: usize,
        count: usize,
        size: usize,
        addr: SocketAddr,
    ) -> Result<Duration> {
        let start = Instant::now();
        let out = self
            .command("usr/sbin/smtp-source")
            .args(["-s", &sessions.to_string()])
            .args(["-m", &count.to_string()])
            .args(["-l", &size.to_string()])
            .args(["-f", FROM, "-t", RCPT])
            .arg(addr.to_string())
            .stdin(Stdio::null())
            .output()
            .context("run smtp-source")?;
        let took = start.elapsed();
        if !out.status.success() || !out.stderr.is_empty() {
            bail!(
                "smtp-source -s {sessions} -m {count} -l {size} {addr}: {}{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(took)
    }
}

/// A running `smtp-sink`, killed when dropped.
struct Sink {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// Our MX in a child process (`scop-bench smtp-mx`); closing its stdin
/// stops it.
struct OurMx {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Option<BufReader<std::process::ChildStdout>>,
    addr: SocketAddr,
    dir: PathBuf,
}

impl OurMx {
    fn start(dir: &Path) -> Result<OurMx> {
        std::fs::create_dir_all(dir)?;
        let log = std::fs::File::create(dir.join("mx.log"))?;
        let mut child = Command::new(std::env::current_exe()?)
            .arg("smtp-mx")
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("start our MX (scop-bench smtp-mx)")?;
        let stdin = child.stdin.take();
        let mut line = String::new();
        let mut stdout = child.stdout.take().map(BufReader::new);
        if let Some(out) = stdout.as_mut() {
            out.read_line(&mut line)?;
        }
        let mut mx = OurMx {
            child,
            stdin,
            stdout,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir: dir.to_path_buf(),
        };
        let Ok(port) = line.trim().parse::<u16>() else {
            let log = std::fs::read_to_string(dir.join("mx.log")).unwrap_or_default();
            bail!("our MX did not start: {log}");
        };
        mx.addr.set_port(port);
        greeted(mx.addr).context("our MX's greeting")?;
        Ok(mx)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until every acknowledged copy is in the Maildir; how long
    /// that took.
    fn drain(&mut self) -> Result<Duration> {
        let (Some(stdin), Some(out)) = (self.stdin.as_mut(), self.stdout.as_mut()) else {
            bail!("our MX is not running");
        };
        let start = Instant::now();
        stdin.write_all(b"drain\n")?;
        stdin.flush()?;
        let mut line = String::new();
        out.read_line(&mut line)?;
        if line.trim() != "drained" {
            bail!("our MX did not drain its journal: {line:?}");
        }
        Ok(start.elapsed())
    }

    fn status_kb(&self, key: &str) -> Result<u64> {
        status_kb(self.pid(), key)
    }

    /// Messages in the user's Maildir.
    fn delivered(&self) -> Result<usize> {
        let new = self.dir.join("mail").join(RCPT).join("Maildir").join("new");
        Ok(std::fs::read_dir(&new)
            .with_context(|| format!("read {}", new.display()))?
            .count())
    }

    /// Stops the MX (which writes what its delivery journal holds into
    /// the Maildir first); the messages in the Maildir.
    fn stop(mut self) -> Result<usize> {
        self.stdin.take();
        let status = wait_for(&mut self.child, Duration::from_secs(60))?;
        if !status.success() {
            bail!("our MX exited with {status}");
        }
        self.delivered()
    }
}

impl Drop for OurMx {
    fn drop(&mut self) {
        self.stdin.take();
        if wait_for(&mut self.child, Duration::from_secs(10)).is_err() {
            self.child.kill().ok();
            self.child.wait().ok();
        }
    }
}

fn wait_for(child: &mut Child, limit: Duration) -> Result<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            bail!("process {} did not exit within {limit:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The child: our MX on 127.0.0.1 (any port, printed on stdout), until
/// stdin closes.
pub fn mx_child(args: &[String]) -> Result<()> {
    let dir = match args {
        [flag, dir] if flag == "--dir" => PathBuf::from(dir),
        _ => bail!("usage: scop-bench smtp-mx --dir DIR"),
    };
    tracing_subscriber::fmt()
        .with_env_filter("info")
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        use scop_mail::service::{self, MailConfig};
        let store =
            scop_store::Store::open(&format!("sqlite:{}", dir.join("scop.db").display())).await?;
        store.add_domain(DOMAIN).await?;
        store.add_user(RCPT, "bench password").await?;
        let hostname = format!("mail.{DOMAIN}");
        let (cert, key) = scop_mail::tls::self_signed(std::slice::from_ref(&hostname))?;
        let tls = scop_mail::tls::server_config(cert.as_bytes(), key.as_bytes())?;
        let running = service::start(MailConfig {
            hostname,
            store,
            mail_root: dir.join("mail"),
            tls,
            mx: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            submission: None,
            submissions: None,
            relay: false,
            relay_id: None,
            routes: Default::default(),
            lifetime_secs: 5 * 86_400,
            retry: Default::default(),
            delivery_log_retention: Some(scop_mail::relay::LOG_RETENTION),
            greeting_delay: Duration::ZERO,
            user_limits: Default::default(),
            idle_timeout: Duration::from_secs(300),
            conn_limits: scop_mail::listener::ConnLimits {
                per_ip: 10_000,
                total: 10_000,
            },
            message_size: 10 * 1024 * 1024,
            srs_key: b"bench srs key, not secret".to_vec(),
            spam: None,
            verifier: None,
            dmarc_report_interval: std::time::Duration::from_secs(86_400),
            dkim: Default::default(),
            journal: Some(dir.join("mail").join(".journal")),
            journal_segment_bytes: scop_mail::journal::SEGMENT_BYTES,
        })
        .await?;
        let port = running.mx.context("no MX address")?.port();
        let mut out = std::io::stdout();
        writeln!(out, "{port}")?;
        out.flush()?;
        // "drain" on stdin: answer "drained" once every acknowledged copy
        // is in the Maildir; end of input: stop.
        let running = tokio::task::spawn_blocking(move || {
            for line in std::io::stdin().lines() {
                let Ok(line) = line else { break };
                if line.trim() == "drain" {
                    let done = running.drain(Duration::from_secs(300));
                    let mut out = std::io::stdout();
                    let _ = writeln!(out, "{}", if done { "drained" } else { "timeout" });
                    let _ = out.flush();
                }
            }
            running
        })
        .await?;
        running.stop().await;
        anyhow::Ok(())
    })?;
    // Sessions still open are dropped with the runtime.
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}
