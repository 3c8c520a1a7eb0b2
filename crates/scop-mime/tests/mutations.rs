//! Mutation stress test: golden cases (and, with `SCOP_MUTATE_DIR`, any
//! directory of messages) are mutated with a deterministic generator —
//! line deletion, duplication, boundary-like insertions, line-ending
//! changes, byte flips — and each mutant must satisfy the round-trip
//! contract (`fuzz::round_trip`).

use std::path::{Path, PathBuf};

use scop_mime::fuzz;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const INSERTS: &[&[u8]] = &[
    b"--b\n",
    b"--b--\n",
    b"\n",
    b"\r",
    b"\r\n",
    b" folded\n",
    b"Content-Type: multipart/mixed; boundary=b\n",
    b"Content-Type: message/rfc822\n",
    b"Content-Transfer-Encoding: base64\n",
    b"Content-Transfer-Encoding: quoted-printable\n",
    b"Content-Transfer-Encoding: binary\n",
    b"=\n",
    b"=?utf-8?q?x?=",
    b"\x00",
    b"\xff",
    b":",
];

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut m = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let lines: Vec<usize> = std::iter::once(0)
            .chain(
                m.iter()
                    .enumerate()
                    .filter(|(_, b)| **b == b'\n')
                    .map(|(i, _)| i + 1),
            )
            .filter(|&i| i <= m.len())
            .collect();
        let at = lines[rng.below(lines.len())];
        match rng.below(7) {
            0 => {
                // Delete a line.
                let end = m[at..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(m.len(), |i| at + i + 1);
                m.drain(at..end);
            }
            1 => {
                // Duplicate a line.
                let end = m[at..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(m.len(), |i| at + i + 1);
                let line = m[at..end].to_vec();
                m.splice(at..at, line);
            }
            2 | 3 => {
                let ins = INSERTS[rng.below(INSERTS.len())];
                m.splice(at..at, ins.iter().copied());
            }
            4 => {
                // Toggle a line ending.
                if let Some(i) = m[at..].iter().position(|&b| b == b'\n') {
                    let p = at + i;
                    if p > 0 && m[p - 1] == b'\r' {
                        m.remove(p - 1);
                    } else {
                        m.insert(p, b'\r');
                    }
                }
            }
            5 => {
                if !m.is_empty() {
                    let p = rng.below(m.len());
                    m[p] = (rng.next() & 0xff) as u8;
                }
            }
            _ => {
                // Truncate.
                let p = rng.below(m.len() + 1);
                m.truncate(p.max(1));
            }
        }
    }
    m
}

fn emls(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            emls(&p, out);
        } else if p.extension().is_none_or(|e| e != "expected") {
            out.push(p);
        }
    }
}

#[test]
fn mutants_keep_the_contract() {
    let dir = std::env::var_os("SCOP_MUTATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden"));
    let rounds: usize = std::env::var("SCOP_MUTATE_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let mut files = Vec::new();
    emls(&dir, &mut files);
    assert!(!files.is_empty(), "no inputs under {}", dir.display());
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for f in &files {
        let input = std::fs::read(f).expect("read");
        for round in 0..rounds {
            let m = mutate(&mut rng, &input);
            if let Err(e) = std::panic::catch_unwind(|| fuzz::round_trip(&m)) {
                let msg = e.downcast_ref::<String>().cloned().unwrap_or_default();
                panic!(
                    "{} round {round}: {}\nmutant: {}",
                    f.display(),
                    msg.chars().take(1500).collect::<String>(),
                    m.escape_ascii()
                        .to_string()
                        .chars()
                        .take(3000)
                        .collect::<String>()
                );
            }
        }
    }
}
