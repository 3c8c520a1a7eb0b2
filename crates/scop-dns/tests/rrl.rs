//! Response rate limiting on the running server: a UDP flood from one
//! address is mostly dropped, every second limited reply is truncated,
//! another /24 is unaffected, and dig, given a truncated reply, retries
//! over TCP and gets the answer.

mod common;

use scop_dns::hickory_proto::op::{Message, MessageType, OpCode, Query};
use scop_dns::hickory_proto::rr::{Name, RecordType};
use scop_dns::rrl::RrlConfig;
use scop_dns::server::Config;
use std::net::{SocketAddr, UdpSocket};
use std::str::FromStr;
use std::time::{Duration, Instant};

fn start_limited(rrl: RrlConfig) -> common::Running {
    common::start_with(common::engine(""), Config::default(), move |server| {
        server.with_rate_limit(rrl)
    })
}

fn query(id: u16) -> Vec<u8> {
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.add_query(Query::query(
        Name::from_str("mail.example.org.").unwrap(),
        RecordType::A,
    ));
    msg.to_vec().unwrap()
}

#[derive(Debug, Default)]
struct Counts {
    answered: usize,
    truncated: usize,
    dropped: usize,
}

/// Sends `n` identical queries from `sock` as fast as it can, then
/// collects replies until none arrives for 300 ms.
fn flood(sock: &UdpSocket, server: SocketAddr, n: usize) -> (Counts, Duration) {
    let started = Instant::now();
    for i in 0..n {
        sock.send_to(&query(i as u16), server).unwrap();
    }
    let sent_in = started.elapsed();
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut counts = Counts::default();
    let mut buf = [0u8; 2048];
    let mut seen = std::collections::HashSet::new();
    while let Ok((len, _)) = sock.recv_from(&mut buf) {
        let reply = Message::from_vec(&buf[..len]).unwrap();
        assert!(seen.insert(reply.metadata.id), "one reply per query");
        assert_eq!(reply.queries.len(), 1);
        if reply.metadata.truncation {
            assert!(reply.answers.is_empty());
            counts.truncated += 1;
        } else {
            assert_eq!(reply.answers.len(), 1, "{reply:?}");
            counts.answered += 1;
        }
    }
    counts.dropped = n - counts.answered - counts.truncated;
    (counts, sent_in)
}

#[test]
fn udp_flood_is_limited_per_prefix() {
    let server = start_limited(RrlConfig::default());
    let attacker = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (counts, sent_in) = flood(&attacker, server.addr, 200);
    eprintln!("200 queries sent in {sent_in:?}: {counts:?}");
    assert!(sent_in < Duration::from_secs(1));
    // 10 per second plus what refills while the flood is being sent.
    let refill = 10 * (sent_in.as_millis() as usize) / 1000 + 1;
    assert!(counts.answered >= 10, "{counts:?}");
    assert!(counts.answered <= 10 + refill, "{counts:?}");
    let limited = 200 - counts.answered;
    // slip 2: every second limited reply goes out truncated.
    assert!(counts.truncated.abs_diff(limited / 2) <= 1, "{counts:?}");
    assert!(counts.dropped >= limited / 2 - 1, "{counts:?}");

    // Another address in the same /24 shares the bucket.
    let neighbour = UdpSocket::bind("127.0.0.2:0").unwrap();
    let (same, _) = flood(&neighbour, server.addr, 10);
    assert!(same.answered <= refill + 1, "{same:?}");
    assert!(same.dropped > 0, "{same:?}");

    // Another /24 is not affected.
    let other = UdpSocket::bind("127.0.1.1:0").unwrap();
    let (clean, _) = flood(&other, server.addr, 10);
    assert_eq!(clean.answered, 10, "{clean:?}");
}

#[test]
fn rate_zero_disables_limiting() {
    let server = start_limited(RrlConfig {
        responses_per_second: 0,
        ..RrlConfig::default()
    });
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (counts, _) = flood(&sock, server.addr, 200);
    assert_eq!(counts.answered, 200, "{counts:?}");
}

#[test]
fn dig_retries_a_slipped_reply_over_tcp() {
    let server = start_limited(RrlConfig {
        responses_per_second: 1,
        slip: 1,
        ..RrlConfig::default()
    });
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (counts, _) = flood(&sock, server.addr, 50);
    assert_eq!(counts.answered, 1, "{counts:?}");
    assert_eq!(counts.truncated, 49, "{counts:?}");
    let mut cmd = common::peer("usr/bin/dig");
    cmd.args([
        "@127.0.0.1",
        "-p",
        &server.addr.port().to_string(),
        "+time=2",
        "+tries=1",
        "mail.example.org.",
        "A",
    ]);
    let out = common::run(cmd, "");
    assert!(out.ok, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("Truncated, retrying in TCP mode"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("192.0.2.2"), "{}", out.stdout);
}
