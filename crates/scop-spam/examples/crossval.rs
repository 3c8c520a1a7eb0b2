//! How the default [`Params`] were chosen: cross-validation on the
//! SpamAssassin **training** groups only (easy-ham-1, hard-ham-1, spam-1).
//! The held-out groups (easy-ham-2, spam-2) are never read here.
//!
//! ```text
//! cargo run --release -p scop-spam --example crossval -- target/peers/spamassassin [FOLDS]
//! CROSSVAL_BOGOFILTER=1  also run bogofilter on the same folds
//! CROSSVAL_RANDOM=1      random k-fold instead of forward chaining in time
//! CROSSVAL_QUICK=1       a small grid
//! CROSSVAL_DEBUG=1       print the clues of some unsure messages
//! ```
//!
//! Folds are forward chaining in time: each group's files are numbered in
//! arrival order and cut into FOLDS blocks; fold k trains on blocks 0..k and
//! tests on block k, as a deployed filter meets mail newer than its
//! training. (Random k-fold rewards memorising near-duplicate campaigns and
//! picked parameters that generalised badly.) For each fold a model is
//! trained once; the test block is scored under every parameter combination
//! of a grid (parameters change the scoring only, not the counts). Pooled
//! scores give (1-AUC)% per combination, and FP/FN/unsure counts at several
//! cutoff pairs.

use scop_spam::eval::Evaluation;
use scop_spam::{Class, Features, Model, Params, tokenize};
use std::path::{Path, PathBuf};

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

fn fnv(s: &str) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in s.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    h
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = PathBuf::from(
        args.first()
            .map_or("target/peers/spamassassin", String::as_str),
    );
    let folds: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    let mut items: Vec<(PathBuf, Class)> = Vec::new();
    for (group, class) in [
        ("easy-ham-1", Class::Ham),
        ("hard-ham-1", Class::Ham),
        ("spam-1", Class::Spam),
    ] {
        for f in files(&root.join(group)) {
            items.push((f, class));
        }
    }
    let start = std::time::Instant::now();
    let features: Vec<Features> = {
        let chunks: Vec<&[(PathBuf, Class)]> = items.chunks(items.len().div_ceil(2)).collect();
        std::thread::scope(|s| {
            let handles: Vec<_> = chunks
                .iter()
                .map(|chunk| {
                    s.spawn(move || {
                        chunk
                            .iter()
                            .map(|(p, _)| tokenize(&std::fs::read(p).expect("read")))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("thread"))
                .collect()
        })
    };
    eprintln!(
        "tokenized {} messages in {:.1?}",
        items.len(),
        start.elapsed()
    );
    // Folds: by default forward chaining in time. Each group's files are
    // numbered in arrival order; block k of every group holds its k-th
    // fifth. Fold k (k >= 1) trains on blocks 0..k and tests on block k, as
    // a filter meets mail that is newer than its training.
    // `CROSSVAL_RANDOM=1` uses random k-fold instead (which rewards
    // memorising near-duplicate campaigns).
    let random = std::env::var_os("CROSSVAL_RANDOM").is_some();
    let mut fold_of = vec![0usize; items.len()];
    {
        let mut start = 0;
        while start < items.len() {
            let group = items[start].0.parent().map(Path::to_path_buf);
            let end = (start..items.len())
                .find(|&i| items[i].0.parent().map(Path::to_path_buf) != group)
                .unwrap_or(items.len());
            for i in start..end {
                fold_of[i] = if random {
                    (fnv(&items[i].0.file_name().unwrap_or_default().to_string_lossy())
                        % folds as u64) as usize
                } else {
                    (i - start) * folds / (end - start)
                };
            }
            start = end;
        }
    }
    let trains_on = |k: usize, fold: usize| if random { fold != k } else { fold < k };
    let first_fold = usize::from(!random);

    if std::env::var_os("CROSSVAL_DEBUG").is_some() {
        let p = Params::default();
        debug(&features, &items, &fold_of, p, &trains_on);
        return;
    }
    if std::env::var_os("CROSSVAL_BOGOFILTER").is_some() {
        bogofilter(&root, &items, &fold_of, first_fold..folds, &trains_on);
    }
    let grid_s = [0.0178, 0.05, 0.45];
    let grid_x = [0.5, 0.6, 0.8];
    let grid_dev = [0.1, 0.375];
    let grid_clues = [25u32, 50, 150];
    let grid_dep = [1.0, 2.0];
    let quick = std::env::var_os("CROSSVAL_QUICK").is_some();
    let (grid_s, grid_x, grid_dev, grid_clues): (&[f64], &[f64], &[f64], &[u32]) = if quick {
        (&[0.05], &[0.8], &[0.1, 0.375], &[35, 50])
    } else {
        (&grid_s, &grid_x, &grid_dev, &grid_clues)
    };
    let grid_dep: &[f64] = if quick { &[1.0] } else { &grid_dep };
    let mut combos = Vec::new();
    for &s in grid_s {
        for &x in grid_x {
            for &min_dev in grid_dev {
                for &max_clues in grid_clues {
                    for &dependence in grid_dep {
                        combos.push(Params {
                            s,
                            x,
                            min_dev,
                            max_clues,
                            dependence,
                            ..Params::default()
                        });
                    }
                }
            }
        }
    }
    let mut pooled: Vec<Vec<(f64, Class)>> = vec![Vec::new(); combos.len()];
    for k in first_fold..folds {
        let mut model = Model::new();
        for (i, f) in features.iter().enumerate() {
            if trains_on(k, fold_of[i]) {
                model.train_features(f, items[i].1);
            }
        }
        for (c, params) in combos.iter().enumerate() {
            model.set_params(*params);
            for (i, f) in features.iter().enumerate() {
                if fold_of[i] == k {
                    pooled[c].push((model.classify_features(f).score, items[i].1));
                }
            }
        }
    }
    let mut results: Vec<(f64, usize)> = pooled
        .iter()
        .enumerate()
        .map(|(c, scores)| (Evaluation::new(scores, 0.5, 0.5).one_minus_auc_percent(), c))
        .collect();
    results.sort_by(|a, b| a.0.total_cmp(&b.0));
    println!(
        "best 15 of {} combinations by pooled (1-AUC)% over {} folds ({}):",
        combos.len(),
        folds - first_fold,
        if random {
            "random"
        } else {
            "forward chaining in time"
        }
    );
    for &(auc, c) in results.iter().take(15) {
        let p = combos[c];
        println!(
            "  (1-AUC)% {auc:.4}  s={} x={} min_dev={} max_clues={} dependence={}",
            p.s, p.x, p.min_dev, p.max_clues, p.dependence
        );
    }
    let (_, best) = results[0];
    let d = Params::default();
    let default_idx = combos.iter().position(|p| {
        p.s == d.s
            && p.x == d.x
            && p.min_dev == d.min_dev
            && p.max_clues == d.max_clues
            && p.dependence == d.dependence
    });
    for (name, idx) in [("best", Some(best)), ("default", default_idx)] {
        let Some(idx) = idx else { continue };
        let saturated = |class: Class| {
            pooled[idx]
                .iter()
                .filter(|(s, c)| *c == class && (s - 0.5).abs() < 1e-8)
                .count()
        };
        println!(
            "cutoffs for {name} {:?} (saturated, in the band around 1/2: {} ham, {} spam):",
            combos[idx],
            saturated(Class::Ham),
            saturated(Class::Spam)
        );
        for (hc, sc) in [
            (0.1, 0.9),
            (0.2, 0.9),
            (0.3, 0.9),
            (0.3, 0.8),
            (0.3, 0.7),
            (0.3, 0.6),
            (0.3, 0.95),
            (0.4, 0.95),
            (0.45, 0.99),
            (0.5, 0.5),
            (0.2, 0.99),
        ] {
            let e = Evaluation::new(&pooled[idx], hc, sc);
            println!(
                "  ham<={hc} spam>={sc}: FP {} FN {} unsure {} ({} ham, {} spam)  (1-AUC)% {:.4}",
                e.false_positives,
                e.false_negatives,
                e.unsure(),
                e.unsure_ham,
                e.unsure_spam,
                e.one_minus_auc_percent()
            );
        }
    }
}

/// Prints the clues of a few messages of the last fold scored between 0.2 and 0.9
/// (set `CROSSVAL_DEBUG=1`).
#[allow(dead_code)]
fn debug(
    features: &[Features],
    items: &[(PathBuf, Class)],
    fold_of: &[usize],
    params: Params,
    trains_on: &dyn Fn(usize, usize) -> bool,
) {
    let k = fold_of.iter().copied().max().unwrap_or(0);
    let mut model = Model::with_params(params).expect("params");
    for (i, f) in features.iter().enumerate() {
        if trains_on(k, fold_of[i]) {
            model.train_features(f, items[i].1);
        }
    }
    let mut shown = 0;
    for (i, f) in features.iter().enumerate() {
        if fold_of[i] != k {
            continue;
        }
        let v = model.classify_features(f);
        if v.score > 0.2 && v.score < 0.9 && shown < 6 {
            shown += 1;
            println!(
                "{} {:?} score {:.3} tokens {}",
                items[i].0.display(),
                items[i].1,
                v.score,
                v.tokens
            );
            for c in v.clues.iter().take(40) {
                println!(
                    "    {:.4} {:>4} {:>4} {}",
                    c.probability, c.counts.ham, c.counts.spam, c.token
                );
            }
        }
    }
}

/// The same folds through bogofilter (set `CROSSVAL_BOGOFILTER=1`).
fn bogofilter(
    root: &Path,
    items: &[(PathBuf, Class)],
    fold_of: &[usize],
    folds: std::ops::Range<usize>,
    trains_on: &dyn Fn(usize, usize) -> bool,
) {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let debian = root.join("../debian");
    let run = |db: &Path, args: &[&str], paths: &[&Path]| -> String {
        let mut child = Command::new(debian.join("usr/bin/bogofilter-bdb"))
            .env("LD_LIBRARY_PATH", debian.join("usr/lib/x86_64-linux-gnu"))
            .arg("-d")
            .arg(db)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("bogofilter");
        let mut list = String::new();
        for p in paths {
            list.push_str(&p.to_string_lossy());
            list.push('\n');
        }
        let mut stdin = child.stdin.take().expect("stdin");
        let writer = std::thread::spawn(move || stdin.write_all(list.as_bytes()));
        let out = child.wait_with_output().expect("bogofilter output");
        writer.join().expect("writer").expect("write list");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mut scores = Vec::new();
    for k in folds {
        let db = std::env::temp_dir().join(format!("crossval-bogofilter-{k}"));
        let _ = std::fs::remove_dir_all(&db);
        std::fs::create_dir_all(&db).expect("db dir");
        for (class, flag) in [(Class::Ham, "-n"), (Class::Spam, "-s")] {
            let paths: Vec<&Path> = items
                .iter()
                .enumerate()
                .filter(|(i, (_, c))| trains_on(k, fold_of[*i]) && *c == class)
                .map(|(_, (p, _))| p.as_path())
                .collect();
            run(&db, &[flag, "-b"], &paths);
        }
        let test: Vec<(&Path, Class)> = items
            .iter()
            .enumerate()
            .filter(|(i, _)| fold_of[*i] == k)
            .map(|(_, (p, c))| (p.as_path(), *c))
            .collect();
        let paths: Vec<&Path> = test.iter().map(|t| t.0).collect();
        let out = run(&db, &["-b", "-T", "-T"], &paths);
        for (line, (_, class)) in out.lines().zip(&test) {
            let score: f64 = line
                .rsplit(' ')
                .next()
                .and_then(|s| s.parse().ok())
                .expect("score");
            scores.push((score, *class));
        }
        let _ = std::fs::remove_dir_all(&db);
    }
    let e = Evaluation::new(&scores, 0.45, 0.99);
    println!("bogofilter, same folds: {}", e.summary());
}
