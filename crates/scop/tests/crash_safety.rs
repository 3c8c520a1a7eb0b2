//! Never lose mail, never deliver it twice: `scop mail serve` is killed
//! with SIGKILL again and again while a client sends messages to its MX;
//! after the last restart, every message that got a 250 must be in its
//! final mailbox exactly once. Half of the messages go to a local mailbox
//! directly (fsync before 250), half to an address that keeps a copy and
//! forwards, so they pass through the durable queue and the relay, across
//! the crashes. The same runs with the compartments as separate processes
//! linked by mesh hops, one of them killed each round (each at least
//! twice, until 2,000 messages were sent), while a second client submits
//! over implicit TLS with AUTH, so messages travel both chains (mx, spam
//! filter, verifier, delivery; submission, signer, relay); there the
//! forwards go to another server over SMTP, so relay kills hit deliveries
//! to a remote MX. Every message has a Message-ID, as real mail does (a
//! message without one is never taken for a copy of another).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(data: &Path, mx: SocketAddr) -> Child {
    start_as(data, mx, &[], "serve")
}

/// Starts `scop mail serve` with `extra` options; its log is appended to
/// `data/logs/<log>.log`.
fn start_as(data: &Path, mx: SocketAddr, extra: &[String], log: &str) -> Child {
    let logs = data.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(logs.join(format!("{log}.log")))
        .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_scop"));
    cmd.args(["mail", "serve", "--data"]).arg(data).args(extra);
    if !extra.iter().any(|a| a == "--submissions") {
        cmd.args(["--submissions", "off"]);
    }
    cmd.args([
        "--hostname",
        "mail.crash.test",
        "--mx",
        &mx.to_string(),
        "--submission",
        "off",
        "--greeting-delay",
        "0",
        "--retry-base",
        "1",
        // Segments of 64 KB: the journal starts new ones, and writes
        // over spent ones, all along the run, kills included.
        "--journal-segment-size",
        "65536",
    ])
    .env("SCOP_LOG", "warn")
    .stdout(Stdio::null())
    .stderr(log)
    .spawn()
    .expect("start scop mail serve")
}

/// Waits until something listens on `addr`; on failure, shows the logs
/// under `data`.
fn wait_listening(addr: SocketAddr, data: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            let mut logs = String::new();
            for e in std::fs::read_dir(data.join("logs"))
                .into_iter()
                .flatten()
                .flatten()
            {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                logs.push_str(&format!("== {}\n", e.path().display()));
                for l in tail.into_iter().rev() {
                    logs.push_str(l);
                    logs.push('\n');
                }
            }
            panic!("nothing listens on {addr}\n{logs}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn reply(r: &mut impl BufRead) -> std::io::Result<String> {
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line.len() < 4 || line.as_bytes()[3] != b'-' {
            return Ok(line);
        }
    }
}

/// AUTH PLAIN for dora@crash.test, password "pw".
const AUTH_PLAIN: &str = "AGRvcmFAY3Jhc2gudGVzdABwdw==";

/// One SMTP transaction on an open session; Ok(true) only when the final
/// reply was 250. With `login`, authenticates as dora first and sends as
/// her.
fn dialogue<S: Read + Write>(
    r: &mut BufReader<S>,
    login: bool,
    rcpt: &str,
    tag: &str,
) -> std::io::Result<bool> {
    if !reply(r)?.starts_with("220") {
        return Ok(false);
    }
    let from = if login {
        "dora@crash.test"
    } else {
        "sender@elsewhere.test"
    };
    let mut cmds = vec!["EHLO client.test\r\n".to_string()];
    if login {
        cmds.push(format!("AUTH PLAIN {AUTH_PLAIN}\r\n"));
    }
    cmds.extend([
        format!("MAIL FROM:<{from}>\r\n"),
        format!("RCPT TO:<{rcpt}>\r\n"),
        "DATA\r\n".into(),
    ]);
    for cmd in cmds {
        r.get_mut().write_all(cmd.as_bytes())?;
        r.get_mut().flush()?;
        let rep = reply(r)?;
        if !(rep.starts_with('2') || rep.starts_with('3')) {
            return Ok(false);
        }
    }
    r.get_mut().write_all(
        format!(
            "From: <{from}>\r\nMessage-ID: <{tag}@client.test>\r\nSubject: {tag}\r\n\r\nbody of {tag}\r\n.\r\n"
        ).as_bytes(),
    )?;
    r.get_mut().flush()?;
    let ok = reply(r)?.starts_with("250");
    r.get_mut().write_all(b"QUIT\r\n").ok();
    r.get_mut().flush().ok();
    Ok(ok)
}

/// Sends one message to the MX; Ok(true) only when the final reply was 250.
fn send(mx: SocketAddr, rcpt: &str, tag: &str) -> std::io::Result<bool> {
    let s = TcpStream::connect(mx)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    dialogue(&mut BufReader::new(s), false, rcpt, tag)
}

/// Submits one message over implicit TLS with AUTH as dora.
fn submit(addr: SocketAddr, rcpt: &str, tag: &str) -> std::io::Result<bool> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let name = rustls::pki_types::ServerName::try_from("mail.crash.test")
        .expect("name")
        .to_owned();
    let conn = rustls::ClientConnection::new(scop_mail::tls::opportunistic_client(), name)
        .map_err(std::io::Error::other)?;
    dialogue(
        &mut BufReader::new(rustls::StreamOwned::new(conn, tcp)),
        true,
        rcpt,
        tag,
    )
}

fn mailbox_subjects(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .parent()
                .and_then(|p| p.file_name())
                .is_some_and(|n| n == "new")
            {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                if let Some(s) = text.lines().find_map(|l| l.strip_prefix("Subject: ")) {
                    out.push(s.trim().to_string());
                }
            }
        }
    }
    out
}

/// A data directory with crash.test's accounts: dora, and fwd, which
/// keeps a copy and forwards to `forward_to`.
fn setup(tag: &str, forward_to: &str) -> PathBuf {
    let data: PathBuf =
        std::env::temp_dir().join(format!("scop-crash-{tag}-{}", std::process::id()));
    std::fs::remove_dir_all(&data).ok();
    std::fs::create_dir_all(&data).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let url = format!("sqlite:{}", data.join("scop.db").display());
        let store = scop_store::Store::open(&url).await.unwrap();
        store.add_domain("crash.test").await.unwrap();
        store.add_user("dora@crash.test", "pw").await.unwrap();
        store.add_user("fwd@crash.test", "pw").await.unwrap();
        store
            .set_forward("fwd@crash.test", &[forward_to.to_string()])
            .await
            .unwrap();
        store.close().await;
    });
    data
}

/// Subjects in the final mailboxes: dora's, and where fwd forwards.
fn final_subjects(boxes: &[PathBuf]) -> Vec<String> {
    boxes.iter().flat_map(|b| mailbox_subjects(b)).collect()
}

/// Waits until every acknowledged message is in one of the final
/// mailboxes (or a minute passed); the missing ones.
fn missing_after_drain(boxes: &[PathBuf], acked: &[String]) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let have = final_subjects(boxes);
        let missing: Vec<_> = acked
            .iter()
            .filter(|t| !have.contains(t))
            .cloned()
            .collect();
        if missing.is_empty() || Instant::now() > deadline {
            return missing;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Mailbox copies that restarts wrote from delivery journals (what a
/// kill left between the 250 and the Maildir), from the logs in `logs`.
fn journal_recoveries(logs: &Path) -> usize {
    let mut n = 0;
    for f in std::fs::read_dir(logs).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(f.path()).unwrap_or_default();
        for line in text
            .lines()
            .filter(|l| l.contains("delivery journal recovered"))
        {
            n += line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("written="))
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
        }
    }
    n
}

/// Whether a tag's message went to the forwarding account (odd numbers).
fn to_fwd(tag: &str) -> bool {
    tag.rsplit_once('-')
        .and_then(|(_, n)| n[1..].parse::<u64>().ok())
        .is_some_and(|n| n % 2 == 1)
}

fn report(
    what: &str,
    boxes: &[PathBuf],
    data: &Path,
    kills: usize,
    sent: usize,
    acked: &[String],
    missing: &[String],
) {
    // The forwarding account's own copies: each acknowledged one exactly
    // once too.
    let kept = mailbox_subjects(&data.join("mail/fwd@crash.test"));
    let mut kept_unique = kept.clone();
    kept_unique.sort();
    kept_unique.dedup();
    assert_eq!(kept.len(), kept_unique.len(), "fwd's copies stored twice");
    let lost: Vec<&String> = acked
        .iter()
        .filter(|t| to_fwd(t) && !kept_unique.contains(t))
        .collect();
    assert!(lost.is_empty(), "fwd's own copies lost: {lost:?}");
    // Every message ends in one final mailbox: dora's, directly, or the
    // one fwd forwards to (fwd's own copies are not counted).
    let have = final_subjects(boxes);
    let mut unique = have.clone();
    unique.sort();
    unique.dedup();
    let submitted = acked.iter().filter(|t| t.contains("-s")).count();
    eprintln!(
        "crash test ({what}): {kills} kills, {sent} messages sent, {} acknowledged ({submitted} submitted with AUTH), {} missing, {} delivered twice, {} copies written from delivery journals at restarts",
        acked.len(),
        missing.len(),
        have.len() - unique.len(),
        journal_recoveries(&data.join("logs"))
    );
    assert!(
        acked.len() >= 20,
        "too few messages got through: {}",
        acked.len()
    );
    assert!(
        missing.is_empty(),
        "lost acknowledged messages: {missing:?}"
    );
    assert_eq!(
        have.len(),
        unique.len(),
        "messages delivered more than once"
    );
}

/// Sends to the MX until `killer` finishes, and, with `submission`,
/// submits from a second thread at the same time; the tags of
/// acknowledged messages are added to `acked`, the number sent returned.
/// Half of each client's messages go to dora, half to the forwarding
/// account.
fn send_while(
    mx: SocketAddr,
    submission: Option<SocketAddr>,
    round: u64,
    killer: &std::thread::JoinHandle<()>,
    acked: &mut Vec<String>,
) -> usize {
    let rcpt = |i: usize| {
        if i.is_multiple_of(2) {
            "dora@crash.test"
        } else {
            "fwd@crash.test"
        }
    };
    std::thread::scope(|scope| {
        let submitter = submission.map(|addr| {
            scope.spawn(move || {
                let (mut sent, mut acked) = (0, Vec::new());
                while !killer.is_finished() {
                    let tag = format!("r{round}-s{sent}");
                    if let Ok(true) = submit(addr, rcpt(sent), &tag) {
                        acked.push(tag);
                    }
                    sent += 1;
                }
                (sent, acked)
            })
        });
        let mut i = 0;
        while !killer.is_finished() {
            let tag = format!("r{round}-m{i}");
            if let Ok(true) = send(mx, rcpt(i), &tag) {
                acked.push(tag);
            }
            i += 1;
        }
        if let Some(t) = submitter {
            let (sent, theirs) = t.join().expect("submitter");
            i += sent;
            acked.extend(theirs);
        }
        i
    })
}

#[test]
fn kill_9_loses_no_acknowledged_message() {
    let data = setup("one", "dora@crash.test");
    let boxes = [data.join("mail/dora@crash.test")];
    let mx: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut acked: Vec<String> = Vec::new();
    let mut sent = 0;
    let rounds = 6;
    for round in 0..rounds {
        let mut child = start(&data, mx);
        wait_listening(mx, &data);
        // Send for a while, then kill without warning in the middle.
        let until = Instant::now() + Duration::from_millis(700 + 150 * round);
        let killer = std::thread::spawn(move || {
            std::thread::sleep(until.saturating_duration_since(Instant::now()));
            child.kill().ok();
            child.wait().ok();
        });
        sent += send_while(mx, None, round, &killer, &mut acked);
        killer.join().unwrap();
    }
    // A last run lets the relay drain what was queued across the crashes.
    let mut child = start(&data, mx);
    wait_listening(mx, &data);
    let missing = missing_after_drain(&boxes, &acked);
    child.kill().ok();
    child.wait().ok();
    report(
        "one process",
        &boxes,
        &data,
        rounds as usize,
        sent,
        &acked,
        &missing,
    );
    std::fs::remove_dir_all(&data).ok();
}

#[test]
fn kill_9_of_any_compartment_loses_no_acknowledged_message() {
    use scop_mesh::{ExtraNames, MeshDir, Role, Validity};
    // fwd forwards to far.test, another server (never killed) that the
    // relay reaches over SMTP: relay kills hit deliveries to a remote MX.
    let data = setup("split", "far@far.test");
    let far = std::env::temp_dir().join(format!("scop-crash-far-{}", std::process::id()));
    std::fs::remove_dir_all(&far).ok();
    std::fs::create_dir_all(&far).unwrap();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let url = format!("sqlite:{}", far.join("scop.db").display());
        let store = scop_store::Store::open(&url).await.unwrap();
        store.add_user("far@far.test", "pw").await.unwrap();
        store.close().await;
    });
    let far_mx: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut far_server = start_as(&far, far_mx, &[], "far");
    wait_listening(far_mx, &far);
    let boxes = [
        data.join("mail/dora@crash.test"),
        far.join("mail/far@far.test"),
    ];
    let validity = Validity::starting(
        std::time::SystemTime::now() - Duration::from_secs(60),
        Duration::from_secs(86_400),
    )
    .unwrap();
    let roles: Vec<_> = Role::ALL.iter().map(|r| (*r, ExtraNames::none())).collect();
    MeshDir::init(data.join("mesh"), validity, validity, &roles).unwrap();
    let mx: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let base = loop {
        let p = free_port();
        if p < 65_000 && (p..p + 6).all(|q| TcpListener::bind(("127.0.0.1", q)).is_ok()) {
            break p;
        }
    };
    let submissions: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    // The signer signs what submission hands it (Ed25519: cheap to make).
    let key = data.join("dkim.pem");
    let made = Command::new(env!("CARGO_BIN_EXE_scop"))
        .args(["dkim", "keygen", "--algorithm", "ed25519", "--domain"])
        .args(["crash.test", "--selector", "crash", "--out"])
        .arg(&key)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(made.success());
    let start_role = |role: &str| {
        let extra: Vec<String> = [
            "--compartment",
            role,
            "--mesh",
            data.join("mesh").to_str().unwrap(),
            "--mesh-base",
            &format!("127.0.0.1:{base}"),
            "--submissions",
            &submissions.to_string(),
            "--dkim",
            &format!("crash.test:crash:{}", key.display()),
            "--user-hourly-limit",
            "1000000",
            "--user-hourly-recipients",
            "1000000",
            "--route",
            &format!("far.test={far_mx}"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        start_as(&data, mx, &extra, role)
    };
    let roles = [
        "relay",
        "delivery",
        "verifier",
        "spamfilter",
        "mx",
        "signer",
        "submission",
    ];
    let mut children: Vec<Option<Child>> = roles.iter().map(|r| Some(start_role(r))).collect();
    let mut acked: Vec<String> = Vec::new();
    let mut sent = 0;
    // Every compartment killed at least twice, and at least 2,000
    // messages sent (both clients together).
    let mut round = 0;
    while round < 2 * roles.len() as u64 || sent < 2_000 {
        assert!(round < 60, "only {sent} messages sent in {round} rounds");
        wait_listening(mx, &data);
        wait_listening(submissions, &data);
        // Kill one compartment without warning while the clients send,
        // then start it again.
        let victim = (round as usize * 3) % roles.len();
        let mut child = children[victim].take().expect("running");
        let until = Instant::now() + Duration::from_millis(600 + 100 * (round % 10));
        let killer = std::thread::spawn(move || {
            std::thread::sleep(until.saturating_duration_since(Instant::now()));
            child.kill().ok();
            child.wait().ok();
        });
        sent += send_while(mx, Some(submissions), round, &killer, &mut acked);
        killer.join().unwrap();
        children[victim] = Some(start_role(roles[victim]));
        std::thread::sleep(Duration::from_millis(300));
        round += 1;
    }
    wait_listening(mx, &data);
    let missing = missing_after_drain(&boxes, &acked);
    for mut c in children.into_iter().flatten() {
        c.kill().ok();
        c.wait().ok();
    }
    far_server.kill().ok();
    far_server.wait().ok();
    let forwarded = mailbox_subjects(&boxes[1]).len();
    eprintln!("crash test (compartments): {forwarded} forwarded to far.test over SMTP");
    assert!(forwarded >= 20, "only {forwarded} forwarded");
    report(
        "compartments",
        &boxes,
        &data,
        round as usize,
        sent,
        &acked,
        &missing,
    );
    // What submission took went through the signer.
    let dora = data.join("mail/dora@crash.test/Maildir/new");
    let mut signed = 0;
    for e in std::fs::read_dir(&dora).unwrap().flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        if text.contains("\nSubject: r") && text.contains("-s") && text.contains("From: <dora@") {
            assert!(
                text.contains("d=crash.test;") && text.contains("s=crash;"),
                "unsigned: {text}"
            );
            signed += 1;
        }
    }
    assert!(signed >= 20, "only {signed} submitted messages arrived");
    std::fs::remove_dir_all(&data).ok();
    std::fs::remove_dir_all(&far).ok();
}
