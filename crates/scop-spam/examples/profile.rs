//! Where classification time goes: read, MIME parse, tokenize, lookup and
//! combine, timed separately on the SpamAssassin groups.
//!
//! ```text
//! cargo run --release -p scop-spam --example profile -- target/peers/spamassassin [ROUNDS]
//! ```

use scop_spam::{Class, Model, tokenize};
use std::path::{Path, PathBuf};
use std::time::Instant;

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = PathBuf::from(
        args.first()
            .map_or("target/peers/spamassassin", String::as_str),
    );
    let rounds: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3);
    let mut train: Vec<(PathBuf, Class)> = Vec::new();
    for (g, c) in [
        ("easy-ham-1", Class::Ham),
        ("hard-ham-1", Class::Ham),
        ("spam-1", Class::Spam),
    ] {
        train.extend(files(&root.join(g)).into_iter().map(|p| (p, c)));
    }
    let mut test = files(&root.join("easy-ham-2"));
    test.extend(files(&root.join("spam-2")));
    let train_msgs: Vec<(Vec<u8>, Class)> = train
        .iter()
        .map(|(p, c)| (std::fs::read(p).expect("read"), *c))
        .collect();
    let msgs: Vec<Vec<u8>> = test
        .iter()
        .map(|p| std::fs::read(p).expect("read"))
        .collect();
    let n = msgs.len() as f64;
    // On-CPU time of this thread (robust on a shared machine), else wall time.
    let cpu = || -> Option<f64> {
        let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
        Some(s.split_whitespace().next()?.parse::<f64>().ok()? / 1e9)
    };
    let best = |f: &mut dyn FnMut()| {
        (0..rounds)
            .map(|_| {
                let t = Instant::now();
                let c = cpu();
                f();
                match (c, cpu()) {
                    (Some(a), Some(b)) => b - a,
                    _ => t.elapsed().as_secs_f64(),
                }
            })
            .fold(f64::INFINITY, f64::min)
    };
    if std::env::var_os("PROFILE_CLASSIFY_ONLY").is_some() {
        let mut model = Model::new();
        for (m, c) in &train_msgs {
            model.train(m, *c);
        }
        let model = Model::from_bytes(&model.to_bytes()).expect("load");
        let mut sum = 0.0;
        for _ in 0..rounds {
            for m in &msgs {
                sum += model.classify(m).score;
            }
        }
        println!("{sum}");
        return;
    }
    let train_t = best(&mut || {
        let mut model = Model::new();
        for (m, c) in &train_msgs {
            model.train(m, *c);
        }
        std::hint::black_box(model.token_count());
    });
    let mut model = Model::new();
    for (m, c) in &train_msgs {
        model.train(m, *c);
    }
    let bytes = model.to_bytes();
    let load_t = best(&mut || {
        std::hint::black_box(Model::from_bytes(&bytes).expect("load").token_count());
    });
    let read_t = best(&mut || {
        for p in &test {
            std::hint::black_box(std::fs::read(p).expect("read").len());
        }
    });
    let parse_t = best(&mut || {
        for m in &msgs {
            std::hint::black_box(scop_mime::parse(m).map(|p| p.message.headers().len()).ok());
        }
    });
    let tok_t = best(&mut || {
        for m in &msgs {
            std::hint::black_box(tokenize(m).len());
        }
    });
    let features: Vec<_> = msgs.iter().map(|m| tokenize(m)).collect();
    let loaded = Model::from_bytes(&bytes).expect("load");
    let score_t = best(&mut || {
        for f in &features {
            std::hint::black_box(loaded.classify_features(f).score);
        }
    });
    let classify_t = best(&mut || {
        for m in &msgs {
            std::hint::black_box(loaded.classify(m).score);
        }
    });
    let toks: usize = features.iter().map(|f| f.len()).sum();
    println!(
        "train {} msgs: {:.3} s ({:.0}/s); model {} tokens, {} bytes, load {:.1} ms",
        train_msgs.len(),
        train_t,
        train_msgs.len() as f64 / train_t,
        model.token_count(),
        bytes.len(),
        load_t * 1e3
    );
    println!(
        "classify {} msgs ({} tokens/msg): read {:.0}/s, parse {:.0}/s, tokenize (incl. parse) {:.0}/s, \
         score (loaded model) {:.0}/s, classify (loaded model) {:.0}/s",
        msgs.len(),
        toks / msgs.len(),
        n / read_t,
        n / parse_t,
        n / tok_t,
        n / score_t,
        n / classify_t
    );
    println!(
        "per message (us): read {:.1}, parse {:.1}, tokenize-after-parse {:.1}, score {:.1}, classify {:.1}",
        read_t / n * 1e6,
        parse_t / n * 1e6,
        (tok_t - parse_t) / n * 1e6,
        score_t / n * 1e6,
        classify_t / n * 1e6
    );
}
