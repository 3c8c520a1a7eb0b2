//! Prints messages or measures generation speed.
//!
//! `cargo run --release -p scop-hamlet --example hamlet -- ARGS` with ARGS:
//! - `SEED INDEX [MIN MAX]`: prints message INDEX of SEED;
//! - `bench N [MIN MAX]`: generates N messages of seed 1, reports the rate;
//! - `dump DIR N`: writes messages 0..N of seed 1 to DIR/<i>.eml.

use std::io::Write as _;
use std::time::Instant;

use scop_hamlet::{Config, Hamlet};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("bench") {
        let n: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(100_000);
        let mut config = Config::default();
        if let (Some(lo), Some(hi)) = (args.get(2), args.get(3)) {
            config.min_size = lo.parse().unwrap();
            config.max_size = hi.parse().unwrap();
        }
        let h = Hamlet::new(1, config);
        let mut sizes = Vec::with_capacity(n as usize);
        let start = Instant::now();
        let mut bytes = 0usize;
        for i in 0..n {
            let len = h.message(i).len();
            bytes += len;
            sizes.push(len);
        }
        let secs = start.elapsed().as_secs_f64();
        sizes.sort_unstable();
        let q = |p: usize| sizes[(sizes.len() - 1) * p / 100];
        println!(
            "sizes: min {} p1 {} p50 {} p99 {} max {}",
            q(0),
            q(1),
            q(50),
            q(99),
            q(100)
        );
        println!(
            "{n} messages, {bytes} bytes in {secs:.2} s: {:.0} msg/s, {:.1} MB/s, mean {} bytes",
            n as f64 / secs,
            bytes as f64 / secs / 1e6,
            bytes / n as usize
        );
        return;
    }
    if args.first().map(String::as_str) == Some("dump") {
        // dump DIR N: writes messages 0..N of seed 1 as DIR/<i>.eml
        let dir = std::path::PathBuf::from(&args[1]);
        let n: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
        let h = Hamlet::new(1, Config::default());
        for i in 0..n {
            std::fs::write(dir.join(format!("{i}.eml")), h.message(i)).unwrap();
        }
        return;
    }
    let seed = args.first().and_then(|s| s.parse().ok()).unwrap_or(1);
    let index = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut config = Config::default();
    if let (Some(lo), Some(hi)) = (args.get(2), args.get(3)) {
        config.min_size = lo.parse().unwrap();
        config.max_size = hi.parse().unwrap();
    }
    let h = Hamlet::new(seed, config);
    std::io::stdout().write_all(&h.message(index)).unwrap();
}
