//! Single-core tokenize / train / classify throughput on a directory tree.
//!
//! ```text
//! cargo run --release -p scop-spam --example throughput -- target/peers/spamassassin/easy-ham-1
//! ```

use scop_spam::{Class, Model, tokenize};
use std::time::Instant;

fn main() {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "target/peers/spamassassin/easy-ham-1".into());
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .collect();
    paths.sort();
    let messages: Vec<Vec<u8>> = paths
        .iter()
        .map(|p| std::fs::read(p).expect("read"))
        .collect();
    let n = messages.len() as f64;
    let best = |f: &dyn Fn()| {
        (0..5)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    };
    let parse = best(&|| {
        for m in &messages {
            std::hint::black_box(scop_mime::parse(m).map(|p| p.message.headers().len()).ok());
        }
    });
    let tok = best(&|| {
        for m in &messages {
            std::hint::black_box(tokenize(m));
        }
    });
    let train = best(&|| {
        let mut model = Model::new();
        for m in &messages {
            model.train(m, Class::Ham);
        }
        std::hint::black_box(model.token_count());
    });
    let mut model = Model::new();
    for m in &messages {
        model.train(m, Class::Ham);
    }
    let classify = best(&|| {
        for m in &messages {
            std::hint::black_box(model.classify(m).score);
        }
    });
    println!(
        "{} messages: parse {:.0}/s, tokenize {:.0}/s, train {:.0}/s, classify {:.0}/s",
        messages.len(),
        n / parse,
        n / tok,
        n / train,
        n / classify
    );
}
