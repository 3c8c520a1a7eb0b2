//! Never lose mail: `scop mail serve` is killed with SIGKILL again and
//! again while a client sends messages to its MX; after the last restart,
//! every message that got a 250 must be in a mailbox. Half of the
//! messages go to a local mailbox directly (fsync before 250), half to an
//! address that forwards within the domain, so they pass through the
//! durable queue and the relay, across the crashes. The same runs with
//! the compartments as separate processes (mx, spamfilter, verifier,
//! delivery, relay linked by mesh hops), one of them killed each round.

use std::io::{BufRead, BufReader, Write};
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
    start_as(data, mx, &[])
}

fn start_as(data: &Path, mx: SocketAddr, extra: &[String]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_scop"))
        .args(["mail", "serve", "--data"])
        .arg(data)
        .args(extra)
        .args([
            "--hostname",
            "mail.crash.test",
            "--mx",
            &mx.to_string(),
            "--submission",
            "off",
            "--submissions",
            "off",
            "--greeting-delay",
            "0",
            "--retry-base",
            "1",
        ])
        .env("SCOP_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start scop mail serve")
}

fn wait_listening(mx: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(mx).is_err() {
        assert!(Instant::now() < deadline, "scop did not start listening");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn reply(r: &mut BufReader<TcpStream>) -> std::io::Result<String> {
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

/// Sends one message; Ok(true) only when the final reply was 250.
fn send(mx: SocketAddr, rcpt: &str, tag: &str) -> std::io::Result<bool> {
    let s = TcpStream::connect(mx)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut w = s.try_clone()?;
    let mut r = BufReader::new(s);
    if !reply(&mut r)?.starts_with("220") {
        return Ok(false);
    }
    for cmd in [
        "EHLO client.test\r\n".to_string(),
        "MAIL FROM:<sender@elsewhere.test>\r\n".into(),
        format!("RCPT TO:<{rcpt}>\r\n"),
        "DATA\r\n".into(),
    ] {
        w.write_all(cmd.as_bytes())?;
        let rep = reply(&mut r)?;
        if !(rep.starts_with('2') || rep.starts_with('3')) {
            return Ok(false);
        }
    }
    w.write_all(format!("Subject: {tag}\r\n\r\nbody of {tag}\r\n.\r\n").as_bytes())?;
    let ok = reply(&mut r)?.starts_with("250");
    w.write_all(b"QUIT\r\n").ok();
    Ok(ok)
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

fn setup(tag: &str) -> PathBuf {
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
            .set_forward("fwd@crash.test", &["dora@crash.test".to_string()])
            .await
            .unwrap();
        store.close().await;
    });
    data
}

/// Waits until every acknowledged message is in a mailbox (or a minute
/// passed); the missing ones.
fn missing_after_drain(data: &Path, acked: &[String]) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let have = mailbox_subjects(&data.join("mail"));
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

fn report(
    what: &str,
    data: &Path,
    kills: usize,
    sent: usize,
    acked: &[String],
    missing: &[String],
) {
    // Every message ends in dora's mailbox (directly or forwarded; the
    // forwarding account keeps its own copy too).
    let have = mailbox_subjects(&data.join("mail").join("dora@crash.test"));
    let mut unique = have.clone();
    unique.sort();
    unique.dedup();
    eprintln!(
        "crash test ({what}): {kills} kills, {sent} messages sent, {} acknowledged, {} missing, {} delivered twice",
        acked.len(),
        missing.len(),
        have.len() - unique.len()
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
}

/// Sends until `killer` finishes; the tags of acknowledged messages are
/// added to `acked`, the number sent returned.
fn send_while(
    mx: SocketAddr,
    round: u64,
    killer: &std::thread::JoinHandle<()>,
    acked: &mut Vec<String>,
) -> usize {
    let mut i = 0;
    while !killer.is_finished() {
        let tag = format!("r{round}-m{i}");
        let rcpt = if i % 2 == 0 {
            "dora@crash.test"
        } else {
            "fwd@crash.test"
        };
        if let Ok(true) = send(mx, rcpt, &tag) {
            acked.push(tag);
        }
        i += 1;
    }
    i
}

#[test]
fn kill_9_loses_no_acknowledged_message() {
    let data = setup("one");
    let mx: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut acked: Vec<String> = Vec::new();
    let mut sent = 0;
    let rounds = 6;
    for round in 0..rounds {
        let mut child = start(&data, mx);
        wait_listening(mx);
        // Send for a while, then kill without warning in the middle.
        let until = Instant::now() + Duration::from_millis(700 + 150 * round);
        let killer = std::thread::spawn(move || {
            std::thread::sleep(until.saturating_duration_since(Instant::now()));
            child.kill().ok();
            child.wait().ok();
        });
        sent += send_while(mx, round, &killer, &mut acked);
        killer.join().unwrap();
    }
    // A last run lets the relay drain what was queued across the crashes.
    let mut child = start(&data, mx);
    wait_listening(mx);
    let missing = missing_after_drain(&data, &acked);
    child.kill().ok();
    child.wait().ok();
    report(
        "one process",
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
    let data = setup("split");
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
    let start_role = |role: &str| {
        let extra: Vec<String> = [
            "--compartment",
            role,
            "--mesh",
            data.join("mesh").to_str().unwrap(),
            "--mesh-base",
            &format!("127.0.0.1:{base}"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        start_as(&data, mx, &extra)
    };
    let roles = ["relay", "delivery", "verifier", "spamfilter", "mx"];
    let mut children: Vec<Option<Child>> = roles.iter().map(|r| Some(start_role(r))).collect();
    let mut acked: Vec<String> = Vec::new();
    let mut sent = 0;
    let rounds = 10;
    for round in 0..rounds {
        wait_listening(mx);
        // Kill one compartment without warning while the client sends,
        // then start it again.
        let victim = (round as usize * 3) % roles.len();
        let mut child = children[victim].take().expect("running");
        let until = Instant::now() + Duration::from_millis(600 + 100 * round);
        let killer = std::thread::spawn(move || {
            std::thread::sleep(until.saturating_duration_since(Instant::now()));
            child.kill().ok();
            child.wait().ok();
        });
        sent += send_while(mx, round, &killer, &mut acked);
        killer.join().unwrap();
        children[victim] = Some(start_role(roles[victim]));
        std::thread::sleep(Duration::from_millis(300));
    }
    wait_listening(mx);
    let missing = missing_after_drain(&data, &acked);
    for mut c in children.into_iter().flatten() {
        c.kill().ok();
        c.wait().ok();
    }
    report(
        "compartments",
        &data,
        rounds as usize,
        sent,
        &acked,
        &missing,
    );
    std::fs::remove_dir_all(&data).ok();
}
