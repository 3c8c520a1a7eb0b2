//! `scop-bench bottle`: the whole bottle against Postfix with OpenDKIM as
//! a milter, on the same machine, the same messages, in the same run,
//! rounds interleaved.
//!
//! - **Ours**: a deployment made by `scop init` and run by `scop up`:
//!   every compartment its own process, every internal hop SMTP over mesh
//!   mTLS. Outbound: submission (STARTTLS, AUTH PLAIN) -> signer (RSA-2048
//!   and Ed25519 DKIM) -> relay (durable queue) -> the sink. Inbound: mx ->
//!   spamfilter (a model trained on the SpamAssassin corpus's training
//!   half) -> verifier (SPF, DKIM and DMARC through the resolver
//!   compartment, which validates DNSSEC against the deployment's primary)
//!   -> delivery (its delivery journal fdatasync'd before the MX's 250,
//!   then the Maildir).
//! - **Postfix** 3.7 from the Debian package with OpenDKIM 2.11 as its
//!   milter: outbound, smtpd (STARTTLS required, no SASL: clients on
//!   loopback may relay) -> OpenDKIM signing with the same two keys ->
//!   queue -> smtp client -> the sink; inbound, smtpd -> OpenDKIM
//!   verifying (keys from a file: no DNS) -> queue -> `virtual` into a
//!   Maildir.
//!
//! The load generator and the sink are this process (tokio, one thread):
//! `--sessions` concurrent SMTP sessions, each sending up to
//! `--per-connection` messages per connection. The sink stamps each
//! message's arrival, so the outbound latency is end to end (MAIL to
//! arrival at the sink). Inbound latency is MAIL to the 250 after the data
//! (our 250 comes after delivery's journal fdatasync; Postfix's after its
//! queue file's), and inbound throughput counts until the last message is
//! in the Maildir. Afterwards every message is checked: at the sink, two DKIM
//! signatures that verify (scop-dkim, keys of the deployment); in the
//! mailboxes, the Authentication-Results each receiver wrote.

use anyhow::{Context, Result, bail};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

const DOMAIN: &str = "bench.test";
const HOSTNAME: &str = "mail.bench.test";
/// The account that submits, and the recipient of inbound mail.
const USER: &str = "user@bench.test";
const PASSWORD: &str = "bench password, not secret";
/// The domain routed to the sink.
const SINK_RCPT: &str = "someone@sink.test";
/// Envelope sender of inbound mail (a bench.test address: its SPF,
/// DKIM and DMARC records are the deployment's own).
const INBOUND_FROM: &str = "news@bench.test";

fn usage() -> &'static str {
    "scop-bench bottle [--scop BIN] [--messages N] [--sessions N] [--per-connection N] [--rounds N]"
}

struct Options {
    scop: PathBuf,
    messages: usize,
    sessions: usize,
    per_connection: usize,
    rounds: usize,
}

pub fn run(args: &[String]) -> Result<()> {
    let mut scop = None;
    let mut o = Options {
        scop: PathBuf::new(),
        messages: 1000,
        sessions: 10,
        per_connection: 10,
        rounds: 3,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--scop" => scop = Some(PathBuf::from(value()?)),
            "--messages" => o.messages = value()?.parse()?,
            "--sessions" => o.sessions = value()?.parse()?,
            "--per-connection" => o.per_connection = value()?.parse()?,
            "--rounds" => o.rounds = value()?.parse()?,
            other => bail!("unknown argument {other}\nusage: {}", usage()),
        }
    }
    if o.messages == 0 || o.sessions == 0 || o.per_connection == 0 || o.rounds == 0 {
        bail!("--messages, --sessions, --per-connection and --rounds must be at least 1");
    }
    o.scop = match scop {
        Some(p) => std::path::absolute(p)?,
        // `cargo xtask bench bottle` builds `scop` into the same directory.
        None => std::env::current_exe()?.with_file_name("scop"),
    };
    if !o.scop.exists() {
        bail!(
            "{} is missing: build it (cargo build --release -p scop) or give --scop",
            o.scop.display()
        );
    }
    let root = std::env::temp_dir().join(format!("scop-bench-bottle-{}", std::process::id()));
    std::fs::create_dir_all(&root)?;
    let result = bench(&o, &root);
    match &result {
        Ok(()) => {
            std::fs::remove_dir_all(&root).ok();
        }
        Err(_) => eprintln!("bottle bench: logs and data kept in {}", root.display()),
    }
    result
}

fn bench(o: &Options, root: &Path) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let sink = rt.block_on(Sink::start())?;
    let sink_addr = sink.addr;
    let sink = Arc::new(sink);
    {
        let s = sink.clone();
        rt.spawn(async move { s.serve().await });
    }

    eprintln!("bottle: training the spam model, making the deployment and the messages");
    let ours = Ours::start(o, root, sink_addr)?;
    let keys = DkimKeys::read(&ours.dir)?;
    let postfix_out = PostfixOut::start(root, &ours.dir, &keys, sink_addr)?;
    let postfix_in = PostfixIn::start(root, &keys)?;
    let templates = templates(200);

    let ours_out = Target {
        addr: ours.submission,
        tls: true,
        auth: true,
        from: USER.into(),
        rcpt: SINK_RCPT.into(),
    };
    let postfix_out_target = Target {
        addr: postfix_out.postfix.addr(),
        tls: true,
        auth: false,
        ..ours_out.clone()
    };
    let ours_in = Target {
        addr: ours.mx,
        tls: false,
        auth: false,
        from: INBOUND_FROM.into(),
        rcpt: USER.into(),
    };
    let postfix_in_target = Target {
        addr: postfix_in.postfix.addr(),
        ..ours_in.clone()
    };

    // Warm-up, not measured: every path once.
    let mut run_id = 0usize;
    let warm = o.sessions.min(20);
    for (target, inbound) in [
        (&ours_out, false),
        (&postfix_out_target, false),
        (&ours_in, true),
        (&postfix_in_target, true),
    ] {
        run_id += 1;
        let msgs = prepare(run_id, warm, &templates, inbound.then_some(&keys))?;
        rt.block_on(load(target, msgs, o.sessions.min(warm), o.per_connection))?;
    }
    rt.block_on(sink.wait_for(2 * warm, Duration::from_secs(60)))?;
    sink.take();
    let mut ours_delivered = ours.mailbox_count();
    let mut postfix_delivered = postfix_in.mailbox_count();
    wait_until(Duration::from_secs(60), || {
        postfix_in.mailbox_count() >= postfix_delivered.max(warm)
    })?;
    postfix_delivered = postfix_in.mailbox_count();

    let mut out_runs: [Vec<Run>; 2] = [Vec::new(), Vec::new()];
    let mut in_runs: [Vec<Run>; 2] = [Vec::new(), Vec::new()];
    let mut signed = [0usize; 2];
    for round in 0..o.rounds {
        eprintln!("bottle: round {} of {}", round + 1, o.rounds);
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for &who in &order {
            run_id += 1;
            let target = [&ours_out, &postfix_out_target][who];
            let msgs = prepare(run_id, o.messages, &templates, None)?;
            let (sent, start) = rt.block_on(load(target, msgs, o.sessions, o.per_connection))?;
            rt.block_on(sink.wait_for(o.messages, Duration::from_secs(300)))?;
            let arrived = sink.take();
            signed[who] += verify_signatures(&arrived, &keys)?;
            let end = arrived
                .values()
                .map(|a| a.at)
                .max()
                .context("nothing arrived")?;
            let latencies = sent
                .iter()
                .map(|s| {
                    let a = arrived
                        .get(&(run_id, s.seq))
                        .context("a message did not arrive")?;
                    Ok(a.at.saturating_duration_since(s.start))
                })
                .collect::<Result<Vec<_>>>()?;
            out_runs[who].push(Run::new(o.messages, end - start, latencies));
        }
        for &who in &order {
            run_id += 1;
            let target = [&ours_in, &postfix_in_target][who];
            let msgs = prepare(run_id, o.messages, &templates, Some(&keys))?;
            let (sent, start) = rt.block_on(load(target, msgs, o.sessions, o.per_connection))?;
            let expect = if who == 0 {
                ours_delivered += o.messages;
                ours_delivered
            } else {
                postfix_delivered += o.messages;
                postfix_delivered
            };
            let count = || {
                if who == 0 {
                    ours.mailbox_count()
                } else {
                    postfix_in.mailbox_count()
                }
            };
            wait_until(Duration::from_secs(300), || count() >= expect)?;
            let end = Instant::now();
            if count() != expect {
                bail!("{} messages in the mailbox, {expect} expected", count());
            }
            let latencies = sent.iter().map(|s| s.acked - s.start).collect();
            in_runs[who].push(Run::new(o.messages, end - start, latencies));
        }
    }

    // Memory right after the last round.
    let ours_memory = ours.memory()?;
    let postfix_memory = [
        (
            "Postfix out (all processes)",
            group_rss(postfix_out.postfix.pid())?,
        ),
        ("OpenDKIM signer (RSA)", rss(postfix_out.opendkim[0].id())?),
        (
            "OpenDKIM signer (Ed25519)",
            rss(postfix_out.opendkim[1].id())?,
        ),
        (
            "Postfix in (all processes)",
            group_rss(postfix_in.postfix.pid())?,
        ),
        ("OpenDKIM verifier", rss(postfix_in.opendkim.id())?),
    ];

    // What the receivers wrote.
    let ours_results = ours.mailbox_results()?;
    let postfix_results = postfix_in.mailbox_results()?;
    drop(postfix_out);
    drop(postfix_in);
    ours.stop()?;

    let total = o.rounds * o.messages;
    println!(
        "bottle: {} messages per run ({} sessions, up to {} messages per connection), \
         median of {} interleaved rounds; Hamlet messages (7-bit, {}-{} bytes)",
        o.messages,
        o.sessions,
        o.per_connection,
        o.rounds,
        templates.iter().map(Vec::len).min().unwrap_or(0),
        templates.iter().map(Vec::len).max().unwrap_or(0),
    );
    println!(
        "scop: `scop up` of a `scop init` deployment, each compartment a process, every hop mTLS; \
         Postfix {} with OpenDKIM as milter",
        scop_testkit::postfix::version()
    );
    println!();
    println!(
        "outbound (scop: submission STARTTLS+AUTH -> signer -> relay -> sink; \
         Postfix: smtpd STARTTLS -> OpenDKIM -> queue -> smtp -> sink)"
    );
    println!("  latency: MAIL FROM to arrival at the sink");
    print_table(&out_runs);
    println!(
        "  signatures: {} of {} messages at the sink carried two DKIM signatures (RSA, Ed25519) \
         that verify from scop, {} of {} from Postfix+OpenDKIM",
        signed[0], total, signed[1], total
    );
    println!();
    println!(
        "inbound (scop: mx -> spamfilter -> verifier -> delivery; \
         Postfix: smtpd -> OpenDKIM verify -> queue -> virtual)"
    );
    println!(
        "  msg/s: until the last message is in the Maildir; latency: MAIL FROM to the 250 \
         (scop's after delivery's journal fdatasync, Postfix's after its queue file's)"
    );
    print_table(&in_runs);
    println!(
        "  results in the mailbox: scop {} messages, spf=pass {}, dkim=pass (both) {}, dmarc=pass {}, \
         X-Spam-Verdict {}; Postfix {} messages, OpenDKIM dkim=pass (both) {}",
        ours_results.messages,
        ours_results.spf,
        ours_results.dkim,
        ours_results.dmarc,
        ours_results.spam_labelled,
        postfix_results.messages,
        postfix_results.dkim
    );
    println!();
    println!("resident memory after the last round (VmRSS, peak VmHWM):");
    let mut sum = 0;
    for (name, m) in &ours_memory {
        sum += m.rss;
        println!("  scop {name:<12} {:>7} KB   peak {:>7} KB", m.rss, m.hwm);
    }
    println!("  scop, all processes: {sum} KB");
    for (name, kb) in &postfix_memory {
        println!("  {name:<30} {kb:>7} KB");
    }
    println!("ratio = scop msg/s / Postfix msg/s (higher is better)");
    if signed[0] != total {
        bail!(
            "{} of {total} messages from scop were not signed as expected",
            total - signed[0]
        );
    }
    if ours_results.dkim < total || ours_results.dmarc < total || ours_results.spf < total {
        bail!("scop's verifier did not pass every inbound message");
    }
    Ok(())
}

fn print_table(runs: &[Vec<Run>; 2]) {
    println!(
        "  {:<10} {:>9} {:>9} {:>9}",
        "", "msg/s", "p50 ms", "p99 ms"
    );
    let med = |v: &[Run], f: fn(&Run) -> f64| {
        let mut x: Vec<f64> = v.iter().map(f).collect();
        x.sort_by(f64::total_cmp);
        x[x.len() / 2]
    };
    let mut rates = [0.0; 2];
    for (who, name) in [(0, "scop"), (1, "Postfix")] {
        let r = &runs[who];
        rates[who] = med(r, |r| r.rate);
        println!(
            "  {:<10} {:>9.1} {:>9.1} {:>9.1}",
            name,
            rates[who],
            med(r, |r| r.p50),
            med(r, |r| r.p99)
        );
    }
    println!(
        "  ratio {:>13.2}x   (rounds: scop {} msg/s, Postfix {} msg/s)",
        rates[0] / rates[1],
        runs[0]
            .iter()
            .map(|r| format!("{:.0}", r.rate))
            .collect::<Vec<_>>()
            .join("/"),
        runs[1]
            .iter()
            .map(|r| format!("{:.0}", r.rate))
            .collect::<Vec<_>>()
            .join("/"),
    );
}

/// One measured run.
struct Run {
    rate: f64,
    p50: f64,
    p99: f64,
}

impl Run {
    fn new(count: usize, took: Duration, mut latencies: Vec<Duration>) -> Run {
        latencies.sort();
        let at = |q: f64| {
            let i = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
            latencies[i].as_secs_f64() * 1000.0
        };
        Run {
            rate: count as f64 / took.as_secs_f64(),
            p50: at(0.50),
            p99: at(0.99),
        }
    }
}

pub(crate) fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() > deadline {
            bail!("timed out after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

// ---------------------------------------------------------------- messages

/// Mail-safe bodies from Hamlet: 7-bit, CRLF, lines of at most 998
/// octets, no NUL; each keeps its MIME header fields and body.
fn templates(count: usize) -> Vec<Vec<u8>> {
    let hamlet = scop_hamlet::Hamlet::new(2026, scop_hamlet::Config::default());
    let mut out = Vec::with_capacity(count);
    let mut i = 0;
    while out.len() < count && i < count as u64 * 100 {
        if let Some(t) = mail_safe(&hamlet.message(i)) {
            out.push(t);
        }
        i += 1;
    }
    out
}

fn mail_safe(m: &[u8]) -> Option<Vec<u8>> {
    if !m.is_ascii() || m.contains(&0) {
        return None;
    }
    for (i, &b) in m.iter().enumerate() {
        let ok = match b {
            b'\n' => i > 0 && m[i - 1] == b'\r',
            b'\r' => m.get(i + 1) == Some(&b'\n'),
            _ => true,
        };
        if !ok {
            return None;
        }
    }
    if m.split(|&b| b == b'\n').any(|l| l.len() > 999) {
        return None;
    }
    let end = m.windows(4).position(|w| w == b"\r\n\r\n")?;
    let (header, body) = (&m[..end + 2], &m[end + 2..]);
    let mut kept = Vec::new();
    let mut keep = false;
    for line in header.split_inclusive(|&b| b == b'\n') {
        if !line.starts_with(b" ") && !line.starts_with(b"\t") {
            let name = line.split(|&b| b == b':').next().unwrap_or_default();
            keep = [
                b"mime-version".as_slice(),
                b"content-type",
                b"content-transfer-encoding",
            ]
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n));
        }
        if keep {
            kept.extend_from_slice(line);
        }
    }
    kept.extend_from_slice(body);
    Some(kept)
}

/// A message ready for DATA: its number and its dot-stuffed bytes with
/// the final `.CRLF`.
struct Prepared {
    seq: usize,
    wire: Arc<Vec<u8>>,
}

/// `count` messages of run `run`: a header (From, To, Subject, Date,
/// Message-ID with the run and the number) over a template; inbound ones
/// signed by the deployment's two keys, as bench.test's own server would.
fn prepare(
    run: usize,
    count: usize,
    templates: &[Vec<u8>],
    sign: Option<&DkimKeys>,
) -> Result<Vec<Prepared>> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    (0..count)
        .map(|seq| {
            let (from, to) = if sign.is_some() {
                (INBOUND_FROM, USER)
            } else {
                (USER, SINK_RCPT)
            };
            let mut m = format!(
                "From: <{from}>\r\nTo: <{to}>\r\nSubject: bottle bench {run}.{seq}\r\n\
                 Date: Fri, 27 Nov 2026 03:00:00 +0000\r\nMessage-ID: <bench.{run}.{seq}@{DOMAIN}>\r\n"
            )
            .into_bytes();
            m.extend_from_slice(&templates[seq % templates.len()]);
            if let Some(keys) = sign {
                m = scop_dkim::sign_message(&keys.signers, &m, now)?;
            }
            Ok(Prepared {
                seq,
                wire: Arc::new(dot_stuff(&m)),
            })
        })
        .collect()
}

fn dot_stuff(m: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(m.len() + 16);
    for line in m.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b".") {
            out.push(b'.');
        }
        out.extend_from_slice(line);
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// The deployment's DKIM keys: signers for inbound messages, TXT records
/// for checking outbound ones.
struct DkimKeys {
    signers: Vec<scop_dkim::Signer>,
    /// `selector._domainkey.bench.test` -> TXT.
    txt: HashMap<String, String>,
}

impl DkimKeys {
    fn read(dir: &Path) -> Result<DkimKeys> {
        let mut signers = Vec::new();
        let mut txt = HashMap::new();
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("keys/dkim"))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "pem"))
            .collect();
        files.sort();
        for f in files {
            let selector = f
                .file_stem()
                .and_then(|s| s.to_str())
                .context("key file name")?
                .to_string();
            let key = scop_dkim::SigningKey::from_pem(&std::fs::read_to_string(&f)?)?;
            txt.insert(format!("{selector}._domainkey.{DOMAIN}"), key.dns_txt()?);
            signers.push(scop_dkim::Signer::new(key, DOMAIN, &selector)?);
        }
        if signers.len() != 2 {
            bail!(
                "expected two DKIM keys in {}",
                dir.join("keys/dkim").display()
            );
        }
        Ok(DkimKeys { signers, txt })
    }

    fn file(&self) -> String {
        self.txt.iter().map(|(k, v)| format!("{k} {v}\n")).collect()
    }
}

/// How many messages carry two DKIM signatures of bench.test that both
/// verify; the first other one is described on stderr.
fn verify_signatures(arrived: &HashMap<(usize, usize), Arrival>, keys: &DkimKeys) -> Result<usize> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let mut good = 0;
    let mut told = false;
    for a in arrived.values() {
        let out =
            scop_dkim::verify_message(&a.message, scop_dkim::VerifyOptions::at(now + 10), |name| {
                match keys.txt.get(name.trim_end_matches('.')) {
                    Some(t) => scop_dkim::DnsAnswer::Txt(vec![t.as_bytes().to_vec()]),
                    None => scop_dkim::DnsAnswer::NxDomain,
                }
            });
        if out.len() == 2 && out.iter().all(|o| o.result == scop_dkim::DkimResult::Pass) {
            good += 1;
        } else if !told {
            told = true;
            eprintln!(
                "bottle: a message at the sink without two valid signatures: {out:?}\n{}",
                String::from_utf8_lossy(&a.message[..a.message.len().min(1500)])
            );
        }
    }
    Ok(good)
}

// ------------------------------------------------------------ load client

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Where and how a load sends.
#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    tls: bool,
    auth: bool,
    from: String,
    rcpt: String,
}

/// One message sent: when MAIL went out and when the 250 came.
struct Sent {
    seq: usize,
    start: Instant,
    acked: Instant,
}

/// Sends `msgs` over `sessions` concurrent sessions; returns each
/// message's times and the start.
async fn load(
    target: &Target,
    msgs: Vec<Prepared>,
    sessions: usize,
    per_connection: usize,
) -> Result<(Vec<Sent>, Instant)> {
    let mut shares: Vec<Vec<Prepared>> = (0..sessions).map(|_| Vec::new()).collect();
    for (i, m) in msgs.into_iter().enumerate() {
        shares[i % sessions].push(m);
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for share in shares {
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let mut sent = Vec::with_capacity(share.len());
            for chunk in share.chunks(per_connection) {
                session(&target, chunk, &mut sent).await?;
            }
            anyhow::Ok(sent)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok((all, start))
}

struct Smtp {
    io: BufReader<Box<dyn Io>>,
}

impl Smtp {
    async fn reply(&mut self) -> Result<(u16, String)> {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            if self.io.read_line(&mut line).await? == 0 {
                bail!("connection closed; got {text:?}");
            }
            text.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                break;
            }
        }
        let code = text.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
        Ok((code, text))
    }

    async fn send(&mut self, data: &[u8], want: u16) -> Result<()> {
        self.io.get_mut().write_all(data).await?;
        self.io.get_mut().flush().await?;
        let (code, text) = self.reply().await?;
        if code != want {
            let what = String::from_utf8_lossy(&data[..data.len().min(40)]).into_owned();
            bail!("{}: {}", what.trim_end(), text.trim_end());
        }
        Ok(())
    }
}

async fn session(target: &Target, msgs: &[Prepared], sent: &mut Vec<Sent>) -> Result<()> {
    let tcp = tokio::net::TcpStream::connect(target.addr).await?;
    tcp.set_nodelay(true)?;
    let mut s = Smtp {
        io: BufReader::new(Box::new(tcp)),
    };
    let (code, text) = s.reply().await?;
    if code != 220 {
        bail!("greeting: {text}");
    }
    s.send(b"EHLO client.bench.test\r\n", 250).await?;
    if target.tls {
        s.send(b"STARTTLS\r\n", 220).await?;
        let inner = s.io.into_inner();
        let connector = tokio_rustls::TlsConnector::from(scop_mail::tls::opportunistic_client());
        let name = rustls::pki_types::ServerName::try_from(HOSTNAME)?;
        let tls = connector.connect(name, inner).await?;
        s = Smtp {
            io: BufReader::new(Box::new(tls)),
        };
        s.send(b"EHLO client.bench.test\r\n", 250).await?;
    }
    if target.auth {
        let plain = scop_smtp::codec::base64_encode(format!("\0{USER}\0{PASSWORD}").as_bytes());
        s.send(format!("AUTH PLAIN {plain}\r\n").as_bytes(), 235)
            .await?;
    }
    let mail = format!("MAIL FROM:<{}>\r\n", target.from);
    let rcpt = format!("RCPT TO:<{}>\r\n", target.rcpt);
    for m in msgs {
        let start = Instant::now();
        s.send(mail.as_bytes(), 250).await?;
        s.send(rcpt.as_bytes(), 250).await?;
        s.send(b"DATA\r\n", 354).await?;
        s.send(&m.wire, 250).await?;
        sent.push(Sent {
            seq: m.seq,
            start,
            acked: Instant::now(),
        });
    }
    s.io.get_mut().write_all(b"QUIT\r\n").await?;
    let _ = s.reply().await;
    Ok(())
}

// ------------------------------------------------------------------- sink

struct Arrival {
    at: Instant,
    message: Vec<u8>,
}

/// An SMTP sink that keeps each message and its arrival time by the
/// number in its Message-ID.
struct Sink {
    listener: Mutex<Option<tokio::net::TcpListener>>,
    addr: SocketAddr,
    arrived: Mutex<HashMap<(usize, usize), Arrival>>,
}

impl Sink {
    async fn start() -> Result<Sink> {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        Ok(Sink {
            addr: l.local_addr()?,
            listener: Mutex::new(Some(l)),
            arrived: Mutex::new(HashMap::new()),
        })
    }

    async fn serve(self: Arc<Self>) {
        let Some(l) = self.listener.lock().unwrap().take() else {
            return;
        };
        while let Ok((s, _)) = l.accept().await {
            let me = self.clone();
            tokio::spawn(async move {
                if let Err(e) = me.conversation(s).await {
                    eprintln!("sink: {e:#}");
                }
            });
        }
    }

    async fn conversation(&self, s: tokio::net::TcpStream) -> Result<()> {
        s.set_nodelay(true)?;
        let mut io = BufReader::new(s);
        io.get_mut().write_all(b"220 sink.test ESMTP\r\n").await?;
        let mut line = Vec::new();
        loop {
            line.clear();
            if io.read_until(b'\n', &mut line).await? == 0 {
                return Ok(());
            }
            let verb = line
                .get(..4)
                .map(|v| v.to_ascii_uppercase())
                .unwrap_or_default();
            let reply: &[u8] = match verb.as_slice() {
                b"EHLO" => {
                    b"250-sink.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 100000000\r\n"
                }
                b"DATA" => {
                    io.get_mut().write_all(b"354 go ahead\r\n").await?;
                    let mut message = Vec::new();
                    loop {
                        line.clear();
                        if io.read_until(b'\n', &mut line).await? == 0 {
                            bail!("closed in DATA");
                        }
                        if line == b".\r\n" {
                            break;
                        }
                        let l = line.strip_prefix(b".").unwrap_or(&line);
                        message.extend_from_slice(l);
                    }
                    let at = Instant::now();
                    if let Some(key) = bench_number(&message) {
                        self.arrived
                            .lock()
                            .unwrap()
                            .insert(key, Arrival { at, message });
                    }
                    b"250 2.0.0 kept\r\n"
                }
                b"QUIT" => {
                    io.get_mut().write_all(b"221 bye\r\n").await?;
                    return Ok(());
                }
                _ => b"250 ok\r\n",
            };
            io.get_mut().write_all(reply).await?;
        }
    }

    /// Waits until `count` messages have arrived.
    async fn wait_for(&self, count: usize, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let n = self.arrived.lock().unwrap().len();
            if n >= count {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{n} of {count} messages reached the sink within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    fn take(&self) -> HashMap<(usize, usize), Arrival> {
        std::mem::take(&mut *self.arrived.lock().unwrap())
    }
}

/// The run and the number in `Message-ID: <bench.RUN.SEQ@...>`.
fn bench_number(message: &[u8]) -> Option<(usize, usize)> {
    let at = message.windows(7).position(|w| w == b"<bench.")? + 7;
    let rest = &message[at..];
    let end = rest.iter().position(|&b| b == b'@')?;
    let (run, seq) = std::str::from_utf8(&rest[..end]).ok()?.split_once('.')?;
    Some((run.parse().ok()?, seq.parse().ok()?))
}

// -------------------------------------------------------------------- ours

/// The first of `n` consecutive free TCP ports on 127.0.0.1.
fn free_ports(n: u16) -> Result<u16> {
    for _ in 0..200 {
        let first = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        if first > u16::MAX - n {
            continue;
        }
        let held: Vec<_> = (first..first + n)
            .map_while(|p| std::net::TcpListener::bind(("127.0.0.1", p)).ok())
            .collect();
        if held.len() == usize::from(n) {
            return Ok(first);
        }
    }
    bail!("no {n} consecutive free ports on 127.0.0.1")
}

fn scop_cmd(o: &Options, args: &[&str], stdin: &str) -> Result<String> {
    use std::io::Write as _;
    let mut child = Command::new(&o.scop)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("run {}", o.scop.display()))?;
    let _ = child
        .stdin
        .take()
        .context("stdin")?
        .write_all(stdin.as_bytes());
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "scop {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

struct Memory {
    rss: u64,
    hwm: u64,
}

fn memory(pid: u32) -> Result<Memory> {
    Ok(Memory {
        rss: crate::smtp::status_kb(pid, "VmRSS")?,
        hwm: crate::smtp::status_kb(pid, "VmHWM")?,
    })
}

/// RSS (KB) of one process.
fn rss(pid: u32) -> Result<u64> {
    crate::smtp::status_kb(pid, "VmRSS")
}

/// The summed RSS (KB) of every process in process group `pgid`.
fn group_rss(pgid: u32) -> Result<u64> {
    let mut sum = 0;
    for e in std::fs::read_dir("/proc")?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the parenthesised command: state ppid pgrp ...
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        if rest.split_whitespace().nth(2).and_then(|g| g.parse().ok()) == Some(pgid)
            && let Ok(kb) = rss(pid)
        {
            sum += kb;
        }
    }
    Ok(sum)
}

struct Ours {
    dir: PathBuf,
    supervisor: Child,
    mx: SocketAddr,
    submission: SocketAddr,
}

impl Ours {
    fn start(o: &Options, root: &Path, sink: SocketAddr) -> Result<Ours> {
        let corpus = scop_testkit::spamassassin_corpus();
        let model = root.join("spam.model");
        let s = |p: &Path| p.display().to_string();
        scop_cmd(
            o,
            &[
                "spam",
                "train",
                "--ham",
                &s(&corpus.join("easy-ham-1")),
                "--ham",
                &s(&corpus.join("hard-ham-1")),
                "--spam",
                &s(&corpus.join("spam-1")),
                "--model",
                &s(&model),
            ],
            "",
        )?;
        let dir = root.join("scop");
        let mx = SocketAddr::from(([127, 0, 0, 1], crate::dns::free_port()?));
        let submission = SocketAddr::from(([127, 0, 0, 1], crate::dns::free_port()?));
        let dns = crate::dns::free_port()?;
        let mesh = free_ports(6)?;
        scop_cmd(
            o,
            &[
                "init",
                "--dir",
                &s(&dir),
                "--domain",
                DOMAIN,
                "--hostname",
                HOSTNAME,
                "--ip",
                "127.0.0.1",
                "--user",
                USER.split('@').next().unwrap_or("user"),
                "--password-stdin",
                "--mx",
                &mx.to_string(),
                "--submission",
                &submission.to_string(),
                "--submissions",
                "off",
                "--dns",
                &format!("127.0.0.1:{dns}"),
                "--resolver",
                "127.0.0.1:9",
                "--dmarc-policy",
                "reject",
                "--route",
                &format!("sink.test={sink}"),
                "--mesh-base",
                &format!("127.0.0.1:{mesh}"),
            ],
            &format!("{PASSWORD}\n"),
        )?;
        // The spam model, and limits a load test from one address would
        // otherwise meet: the MX's one-second greeting delay (Postfix's
        // smtpd has none without postscreen), ten connections per client
        // address, 500 messages and 1,000 recipients per account and hour,
        // 2,000 messages per account and day,
        // and the refusal at MAIL of an address that sent 20 spam messages
        // in an hour (the model calls about one Hamlet message in ten spam).
        let config = dir.join("scop.toml");
        let text = std::fs::read_to_string(&config)?;
        let extra = format!(
            "extra_args = [\"--spam-model\", {:?}, \"--greeting-delay\", \"0\", \"--per-ip\", \"1000\", \
             \"--user-hourly-limit\", \"100000000\", \"--user-hourly-recipients\", \"100000000\", \
             \"--user-daily-limit\", \"100000000\", \
             \"--spam-block-after\", \"0\"]",
            s(&model)
        );
        if !text.contains("extra_args = []") {
            bail!("{}: no empty extra_args to fill", config.display());
        }
        std::fs::write(&config, text.replacen("extra_args = []", &extra, 1))?;

        let log = std::fs::File::create(root.join("up.log"))?;
        let supervisor = Command::new(&o.scop)
            .args(["up", "--dir", &s(&dir)])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let ours = Ours {
            dir,
            supervisor,
            mx,
            submission,
        };
        let up = |addr: SocketAddr| {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        };
        // A compartment with a mesh listener logs its address once it
        // listens (a probe connection would only add handshake warnings).
        let listening = |role: &str| {
            std::fs::read_to_string(ours.dir.join("logs").join(format!("{role}.log")))
                .is_ok_and(|l| l.contains("mesh listener"))
        };
        wait_until(Duration::from_secs(60), || {
            let mesh_up = [
                "signer",
                "relay",
                "spamfilter",
                "verifier",
                "delivery",
                "resolver",
            ]
            .iter()
            .all(|r| listening(r));
            mesh_up && up(mx) && up(submission) && ours.running().is_ok_and(|r| r)
        })
        .context("the deployment did not start (see up.log and scop/logs)")?;
        Ok(ours)
    }

    fn status(&self) -> Result<Vec<(String, u32, String)>> {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.dir.join("run/status.json"))?)?;
        Ok(v["compartments"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    c["name"].as_str().unwrap_or("").to_string(),
                    c["pid"].as_u64().unwrap_or(0) as u32,
                    c["state"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect())
    }

    fn running(&self) -> Result<bool> {
        let s = self.status()?;
        Ok(s.len() >= 9
            && s.iter()
                .all(|(_, pid, state)| *pid != 0 && state == "running"))
    }

    fn memory(&self) -> Result<Vec<(String, Memory)>> {
        let mut out = vec![("supervisor".to_string(), memory(self.supervisor.id())?)];
        for (name, pid, _) in self.status()? {
            out.push((name, memory(pid)?));
        }
        Ok(out)
    }

    fn maildir(&self) -> PathBuf {
        self.dir.join("mail").join(USER).join("Maildir")
    }

    fn mailbox_count(&self) -> usize {
        count_new(&self.maildir())
    }

    fn mailbox_results(&self) -> Result<Results> {
        let mut r = Results::default();
        for m in read_new(&self.maildir())? {
            let header = header_of(&m);
            let ar: Vec<&str> = fields(&header, "authentication-results");
            r.messages += 1;
            let has = |what: &str, n: usize| {
                ar.iter().map(|f| f.matches(what).count()).sum::<usize>() >= n
            };
            r.spf += usize::from(has("spf=pass", 1));
            r.dkim += usize::from(has("dkim=pass", 2));
            r.dmarc += usize::from(has("dmarc=pass", 1));
            r.spam_labelled += usize::from(!fields(&header, "x-spam-verdict").is_empty());
        }
        Ok(r)
    }

    fn stop(mut self) -> Result<()> {
        if !self.terminate() {
            bail!("scop up did not stop within 30 s of SIGTERM");
        }
        Ok(())
    }

    /// SIGTERM to the supervisor, then up to 30 s for it to stop its
    /// compartments and exit (killed after that); whether it exited.
    fn terminate(&mut self) -> bool {
        if let Ok(Some(_)) = self.supervisor.try_wait() {
            return true;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.supervisor.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.supervisor.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.supervisor.kill().ok();
        self.supervisor.wait().ok();
        false
    }
}

impl Drop for Ours {
    fn drop(&mut self) {
        self.terminate();
    }
}

#[derive(Default)]
struct Results {
    messages: usize,
    spf: usize,
    dkim: usize,
    dmarc: usize,
    spam_labelled: usize,
}

/// Messages in a Maildir's `new/` and in its folders' `new/` (the spam
/// filter files spam into Junk).
fn new_dirs(maildir: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![maildir.join("new")];
    if let Ok(entries) = std::fs::read_dir(maildir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with('.') {
                dirs.push(e.path().join("new"));
            }
        }
    }
    dirs
}

fn count_new(maildir: &Path) -> usize {
    new_dirs(maildir)
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .map(Iterator::count)
        .sum()
}

fn read_new(maildir: &Path) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for d in new_dirs(maildir) {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            out.push(std::fs::read(e.path())?);
        }
    }
    Ok(out)
}

fn header_of(m: &[u8]) -> String {
    let end = m
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .or_else(|| m.windows(2).position(|w| w == b"\n\n"))
        .unwrap_or(m.len());
    String::from_utf8_lossy(&m[..end]).into_owned()
}

/// The unfolded values of the fields named `name` (lower case).
fn fields<'a>(header: &'a str, name: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let lines: Vec<&str> = header.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        let start = i;
        i += 1;
        while i < lines.len() && lines[i].starts_with([' ', '\t']) {
            i += 1;
        }
        if let Some((n, _)) = l.split_once(':')
            && n.trim().eq_ignore_ascii_case(name)
        {
            let first = lines[start].as_ptr() as usize - header.as_ptr() as usize;
            let last = lines[i - 1];
            let end = last.as_ptr() as usize - header.as_ptr() as usize + last.len();
            out.push(&header[first..end]);
        }
    }
    out
}

// ----------------------------------------------------------------- Postfix

/// OpenDKIM as a milter on `port`, configured by `conf` (without the
/// socket line).
fn start_opendkim(dir: &Path, name: &str, conf: &str, port: u16) -> Result<Child> {
    let root = scop_testkit::peer_path("debian");
    let file = dir.join(format!("{name}.conf"));
    std::fs::write(
        &file,
        format!(
            "{conf}Syslog no\nRequireSafeKeys false\nSocket inet:{port}@127.0.0.1\n\
             PidFile {}\n",
            dir.join(format!("{name}.pid")).display()
        ),
    )?;
    let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
    let libs = std::env::join_paths([
        root.join("usr/lib/x86_64-linux-gnu"),
        root.join("lib/x86_64-linux-gnu"),
        root.join("usr/lib"),
    ])?;
    let child = Command::new(root.join("usr/sbin/opendkim"))
        .env("LD_LIBRARY_PATH", libs)
        .arg("-f")
        .arg("-x")
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("start opendkim")?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_until(Duration::from_secs(20), || {
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
    })
    .with_context(|| format!("OpenDKIM ({name}) did not listen on {addr}"))?;
    Ok(child)
}

struct Milter(Child);

impl Drop for Milter {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

impl std::ops::Deref for Milter {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

fn param(k: &str, v: impl Into<String>) -> (String, String) {
    (k.to_string(), v.into())
}

fn postfix_config(port: u16, params: Vec<(String, String)>) -> scop_testkit::postfix::Config {
    let mut all = vec![
        param("mydomain", DOMAIN),
        param("myorigin", DOMAIN),
        param("smtpd_client_connection_count_limit", "0"),
        param("smtpd_client_connection_rate_limit", "0"),
        param("default_process_limit", "200"),
        param("milter_default_action", "tempfail"),
    ];
    all.extend(params);
    scop_testkit::postfix::Config {
        listen: SocketAddr::from(([127, 0, 0, 1], port)),
        hostname: HOSTNAME.into(),
        params: all,
    }
}

/// Postfix relaying to the sink, signing with two OpenDKIM milters in a
/// row (OpenDKIM 2.11 signs with one algorithm per instance: one RSA,
/// one Ed25519).
struct PostfixOut {
    // Field order: Postfix stops before its milters.
    postfix: scop_testkit::postfix::Postfix,
    opendkim: Vec<Milter>,
}

impl PostfixOut {
    fn start(root: &Path, deployment: &Path, keys: &DkimKeys, sink: SocketAddr) -> Result<Self> {
        let dir = root.join("postfix-out");
        std::fs::create_dir_all(&dir)?;
        let mut opendkim = Vec::new();
        let mut milters = Vec::new();
        for (i, s) in keys.signers.iter().enumerate() {
            let algorithm = match s.key().algorithm() {
                scop_dkim::Algorithm::Ed25519Sha256 => "ed25519-sha256",
                _ => "rsa-sha256",
            };
            let key = deployment.join(format!("keys/dkim/{}.pem", s.selector()));
            let table = dir.join(format!("keytable{i}"));
            let signing = dir.join(format!("signingtable{i}"));
            std::fs::write(
                &table,
                format!("k {DOMAIN}:{}:{}\n", s.selector(), key.display()),
            )?;
            std::fs::write(&signing, format!("*@{DOMAIN} k\n"))?;
            let port = crate::dns::free_port()?;
            opendkim.push(Milter(start_opendkim(
                &dir,
                &format!("opendkim-sign{i}"),
                &format!(
                    "Mode s\nKeyTable file:{}\nSigningTable refile:{}\n\
                     SignatureAlgorithm {algorithm}\nCanonicalization relaxed/relaxed\n\
                     InternalHosts 127.0.0.0/8\n",
                    table.display(),
                    signing.display()
                ),
                port,
            )?));
            milters.push(format!("inet:127.0.0.1:{port}"));
        }
        let tls = |f: &str| deployment.join("tls").join(f).display().to_string();
        let config = postfix_config(
            crate::dns::free_port()?,
            vec![
                param("relayhost", format!("[127.0.0.1]:{}", sink.port())),
                param("smtpd_tls_cert_file", tls("cert.pem")),
                param("smtpd_tls_key_file", tls("key.pem")),
                param("smtpd_tls_security_level", "encrypt"),
                param("smtp_tls_security_level", "may"),
                param("smtpd_milters", milters.join(", ")),
            ],
        );
        let postfix = scop_testkit::postfix::Postfix::start(&dir.join("postfix"), &config);
        Ok(PostfixOut { postfix, opendkim })
    }
}

/// Postfix receiving for bench.test into a Maildir, OpenDKIM verifying.
struct PostfixIn {
    postfix: scop_testkit::postfix::Postfix,
    opendkim: Milter,
    maildir: PathBuf,
}

impl PostfixIn {
    fn start(root: &Path, keys: &DkimKeys) -> Result<Self> {
        let dir = root.join("postfix-in");
        let base = dir.join("mail");
        std::fs::create_dir_all(&base)?;
        let nobody = scop_testkit::postfix::uid_of("nobody");
        let nogroup = scop_testkit::postfix::gid_of("nogroup");
        std::os::unix::fs::chown(&base, Some(nobody), Some(nogroup))?;
        std::fs::write(dir.join("keys"), keys.file())?;
        let milter = crate::dns::free_port()?;
        let opendkim = Milter(start_opendkim(
            &dir,
            "opendkim-verify",
            &format!(
                "Mode v\nTestPublicKeys {}\nMinimumKeyBits 1024\nAlwaysAddARHeader yes\n",
                dir.join("keys").display()
            ),
            milter,
        )?);
        let config = postfix_config(
            crate::dns::free_port()?,
            vec![
                param("virtual_mailbox_domains", DOMAIN),
                param("virtual_mailbox_base", base.display().to_string()),
                param("virtual_mailbox_maps", "static:user/Maildir/"),
                param("virtual_uid_maps", format!("static:{nobody}")),
                param("virtual_gid_maps", format!("static:{nogroup}")),
                param("smtpd_milters", format!("inet:127.0.0.1:{milter}")),
            ],
        );
        let postfix = scop_testkit::postfix::Postfix::start(&dir.join("postfix"), &config);
        Ok(PostfixIn {
            postfix,
            opendkim,
            maildir: base.join("user/Maildir"),
        })
    }

    fn mailbox_count(&self) -> usize {
        count_new(&self.maildir)
    }

    fn mailbox_results(&self) -> Result<Results> {
        let mut r = Results::default();
        for m in read_new(&self.maildir)? {
            let header = header_of(&m);
            r.messages += 1;
            let passes: usize = fields(&header, "authentication-results")
                .iter()
                .map(|f| f.matches("dkim=pass").count())
                .sum();
            r.dkim += usize::from(passes >= 2);
        }
        Ok(r)
    }
}
