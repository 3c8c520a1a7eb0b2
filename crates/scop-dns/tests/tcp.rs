//! The TCP side of the tokio shell (RFC 7766): pipelined queries, and
//! the per-connection request bound. Reaching the bound answers every
//! query already received, then closes without a reset, so that no
//! reply already sent is lost.

mod common;

use common::*;
use scop_dns::hickory_proto::op::{Message, MessageType, OpCode, Query};
use scop_dns::hickory_proto::rr::{Name, RecordType};
use scop_dns::server::{Config, MAX_REQUESTS_PER_CONNECTION, TCP_CLOSE_DRAIN};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// The bound of these tests.
const BOUND: usize = 5;

/// `n` length-prefixed A queries for mail.example.org., IDs from `first`.
fn queries(first: u16, n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n as u16 {
        let mut m = Message::new(first + i, MessageType::Query, OpCode::Query);
        m.add_query(Query::query(
            Name::from_ascii("mail.example.org.").unwrap(),
            RecordType::A,
        ));
        let bytes = m.to_vec().unwrap();
        out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        out.extend_from_slice(&bytes);
    }
    out
}

/// Reads replies until the server closes; their IDs. A reset is an error.
fn replies_until_close(stream: &mut TcpStream) -> std::io::Result<Vec<u16>> {
    let mut data = Vec::new();
    stream.read_to_end(&mut data)?;
    let mut ids = Vec::new();
    let mut rest = &data[..];
    while rest.len() >= 2 {
        let n = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let reply = Message::from_vec(&rest[2..2 + n]).unwrap();
        assert!(!reply.answers.is_empty());
        ids.push(reply.id);
        rest = &rest[2 + n..];
    }
    assert!(rest.is_empty(), "no partial reply");
    Ok(ids)
}

fn server() -> Running {
    start_with(engine(""), Config::default(), |s| {
        s.with_max_requests_per_connection(BOUND)
    })
}

fn connect(srv: &Running) -> TcpStream {
    let s = TcpStream::connect(srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

#[test]
fn the_bound_is_far_above_a_benchmark_run() {
    // dnsperf sends some 100,000 queries per connection in a run.
    const { assert!(MAX_REQUESTS_PER_CONNECTION >= 1_000_000) };
    const { assert!(TCP_CLOSE_DRAIN.as_secs() >= 1) };
}

#[test]
fn queries_received_before_the_bound_are_all_answered() {
    let srv = server();
    let mut s = connect(&srv);
    // One write: the server receives all of them at once, past the bound.
    s.write_all(&queries(100, 3 * BOUND)).unwrap();
    let ids = replies_until_close(&mut s).expect("a clean close, not a reset");
    let want: Vec<u16> = (100..100 + 3 * BOUND as u16).collect();
    assert_eq!(
        ids, want,
        "every query already received is answered, in order"
    );
    // The server still serves new connections.
    let mut s = connect(&srv);
    s.write_all(&queries(1, 1)).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(replies_until_close(&mut s).unwrap(), vec![1]);
}

#[test]
fn input_after_the_bound_does_not_reset_the_replies() {
    // Large replies the client does not read yet: many wait in the
    // server's send buffer when it reaches the bound. More input arriving
    // at a closed socket then makes the server's kernel abort the
    // connection and throw them away, unless the server reads it.
    let strings = vec!["\"0123456789abcdef0123456789abcdef0123456789abcdef\""; 60].join(" ");
    let eng = engine(&format!("big TXT {strings}\n"));
    const BIG_BOUND: usize = 64;
    let srv = start_with(eng, Config::default(), |s| {
        s.with_max_requests_per_connection(BIG_BOUND)
    });
    let mut s = connect(&srv);
    let mut batch = Vec::new();
    for i in 0..BIG_BOUND as u16 {
        let mut m = Message::new(200 + i, MessageType::Query, OpCode::Query);
        m.add_query(Query::query(
            Name::from_ascii("big.example.org.").unwrap(),
            RecordType::TXT,
        ));
        let bytes = m.to_vec().unwrap();
        batch.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        batch.extend_from_slice(&bytes);
    }
    s.write_all(&batch).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    s.write_all(&queries(300, 50)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let ids = replies_until_close(&mut s).expect("a clean close, not a reset");
    let want: Vec<u16> = (200..200 + BIG_BOUND as u16).collect();
    assert_eq!(ids, want);
}
