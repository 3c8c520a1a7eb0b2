//! DESIGN invariant 1 at the store's level: a `kill -9` of a process that is
//! enqueueing loses no message whose `enqueue` had returned. The test re-runs
//! its own binary as the child (`SCOP_STORE_KILL9_CHILD=URL`), which enqueues
//! in a loop and prints each returned id; the parent kills it with SIGKILL
//! after a number of ids, reopens the store and checks every printed id is
//! queued, for SQLite and for PostgreSQL.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use scop_store::{MessageId, NewMessage, Store};

const CHILD_ENV: &str = "SCOP_STORE_KILL9_CHILD";
/// Acknowledged enqueues read before the kill.
const ACKED_BEFORE_KILL: usize = 40;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn child(url: &str) {
    runtime().block_on(async {
        let store = Store::open(url).await.unwrap();
        for i in 0u64.. {
            let msg = NewMessage {
                sender: "s@a.test".into(),
                recipients: vec![format!("r{i}@ext.test")],
                body: vec![b'x'; 10_000],
                lifetime_secs: 3600,
                dsn: Default::default(),
            };
            let id = store.enqueue(&msg, 1).await.unwrap();
            println!("{}", id.0);
        }
    });
}

fn parent(label: &str, url: &str) -> Result<(), String> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(CHILD_ENV, url)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = Vec::new();
    while acked.len() < ACKED_BEFORE_KILL {
        match lines.next() {
            Some(Ok(line)) => acked.push(MessageId(line.trim().parse::<i64>().unwrap())),
            _ => break,
        }
    }
    let _ = child.kill(); // SIGKILL, mid-enqueue
    child.wait().unwrap();
    if acked.len() < ACKED_BEFORE_KILL {
        return Err(format!(
            "{label}: child stopped after {} enqueues",
            acked.len()
        ));
    }
    let queued: Vec<MessageId> = runtime().block_on(async {
        let store = Store::open(url).await.unwrap();
        let ids = store
            .list_queue()
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        store.close().await;
        ids
    });
    let lost: Vec<_> = acked.iter().filter(|id| !queued.contains(id)).collect();
    if lost.is_empty() {
        println!(
            "test kill9::{label} ... ok ({} acknowledged, {} queued)",
            acked.len(),
            queued.len()
        );
        Ok(())
    } else {
        Err(format!(
            "{label}: acknowledged messages lost after kill -9: {lost:?}"
        ))
    }
}

fn main() {
    if let Ok(url) = std::env::var(CHILD_ENV) {
        child(&url);
        return;
    }
    let dir = std::env::temp_dir().join(format!("scop-store-kill9-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sqlite = format!("sqlite:{}", dir.join("q.db").display());
    let server = scop_testkit::postgres::TestServer::start();
    let pg = server.create_database();
    let results = [parent("sqlite", &sqlite), parent("postgres", &pg)];
    let _ = std::fs::remove_dir_all(&dir);
    drop(server);
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    for f in &failed {
        eprintln!("FAILED {f}");
    }
    println!(
        "{} passed, {} failed",
        results.len() - failed.len(),
        failed.len()
    );
    if !failed.is_empty() {
        std::process::exit(1);
    }
}
