//! Mutation fuzzing, bounded, for `cargo test`: valid inputs (a corpus) mutated by a seeded
//! generator, each fed to a target that must not panic. A run is reproducible: the seed and
//! the case number are printed with a failure, and the failing input is written to
//! `target/fuzz-failures/<target>-<case>.bin`.
//!
//! `CAUSEWAY_FUZZ_CASES` sets the number of cases per target (the default keeps `cargo test`
//! quick); `CAUSEWAY_FUZZ_SEED` another seed. A long run:
//! `CAUSEWAY_FUZZ_CASES=2000000 cargo test -p causeway-dns --test fuzz_dns -- --nocapture`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

/// xorshift64*: the same seed gives the same cases on every run.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
}

/// Cases per target: `CAUSEWAY_FUZZ_CASES`, else `default`.
pub fn cases(default: usize) -> usize {
    std::env::var("CAUSEWAY_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The run's seed: `CAUSEWAY_FUZZ_SEED`, else a fixed one.
pub fn seed() -> u64 {
    std::env::var("CAUSEWAY_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x00ca_05e3)
}

/// Bytes that break parsers more often than random ones.
const INTERESTING: &[u8] = &[0, 1, 0x7f, 0x80, 0xc0, 0xff, b'\n', b'"', b':', b'{', b'['];

/// How inputs are mutated.
#[derive(Clone, Debug, Default)]
pub struct Mutator {
    /// Tokens spliced in as they are (syntax of the input's language).
    pub tokens: Vec<Vec<u8>>,
}

impl Mutator {
    /// A mutator for text formats (YAML, JSON).
    pub fn text() -> Self {
        let tokens = [
            ":",
            ": ",
            "- ",
            "\n",
            "\n  ",
            "{",
            "}",
            "[",
            "]",
            ",",
            "'",
            "\"",
            "&a ",
            "*a",
            "!!str ",
            "~",
            "null",
            "true",
            "-1",
            "0",
            "1e999",
            "99999999999999999999",
            "0x10",
            "::",
            "10.0.0.0/8",
            "10.0.0.1/33",
            "fd00::/129",
            "999.1.1.1",
            "1s",
            "5 parsecs",
            "-5s",
            "\u{0}",
            "\u{feff}",
            "é",
            "#",
            "---\n",
            "...\n",
            "? ",
            "|\n",
            ">\n",
            "<<: *a\n",
        ];
        Self {
            tokens: tokens.iter().map(|t| t.as_bytes().to_vec()).collect(),
        }
    }

    /// One mutated copy of `input` (one to four edits; sometimes spliced with `other`).
    pub fn mutate(&self, rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
        let mut out = input.to_vec();
        for _ in 0..1 + rng.below(4) {
            let len = out.len();
            let at = rng.below(len + 1);
            match rng.below(9) {
                0 if len > 0 => {
                    let i = rng.below(len);
                    out[i] ^= 1 << rng.below(8);
                }
                1 if len > 0 => {
                    let i = rng.below(len);
                    out[i] = INTERESTING[rng.below(INTERESTING.len())];
                }
                2 if len > 0 => {
                    let i = rng.below(len);
                    out[i] = rng.next_u64() as u8;
                }
                3 => {
                    let n = 1 + rng.below(16);
                    let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                    out.splice(at..at, bytes);
                }
                4 if len > 0 => {
                    let end = (at + 1 + rng.below(32)).min(len);
                    out.drain(at.min(end)..end);
                }
                5 if len > 0 => {
                    let start = rng.below(len);
                    let end = (start + 1 + rng.below(64)).min(len);
                    let copy = out[start..end].to_vec();
                    let times = if rng.chance(10) { 1 + rng.below(64) } else { 1 };
                    for _ in 0..times {
                        out.splice(at..at, copy.iter().copied());
                    }
                }
                6 => out.truncate(at),
                7 if !self.tokens.is_empty() => {
                    let t = &self.tokens[rng.below(self.tokens.len())];
                    out.splice(at..at, t.iter().copied());
                }
                8 if !other.is_empty() => {
                    let start = rng.below(other.len());
                    let end = (start + 1 + rng.below(256)).min(other.len());
                    out.splice(at..at, other[start..end].iter().copied());
                }
                _ => {}
            }
        }
        out
    }
}

fn failure_path(target: &str, case: usize) -> PathBuf {
    let dir = std::env::current_exe()
        .ok()
        .and_then(|e| Some(e.parent()?.parent()?.parent()?.join("fuzz-failures")))
        .unwrap_or_else(|| std::env::temp_dir().join("fuzz-failures"));
    let _ = std::fs::create_dir_all(&dir);
    dir.join(format!("{target}-{case}.bin"))
}

/// Feeds `cases` mutations of the corpus (the corpus itself first) to `check`, which must
/// not panic; returns how many inputs it ran. A panic fails the test naming the seed, the
/// case and the file the input was written to.
pub fn run(
    target: &str,
    corpus: &[Vec<u8>],
    mutator: &Mutator,
    cases: usize,
    mut check: impl FnMut(&[u8]),
) -> usize {
    assert!(!corpus.is_empty(), "{target}: empty corpus");
    let seed = seed();
    let mut rng = Rng::new(seed ^ target.len() as u64);
    let mut ran = 0;
    for case in 0..corpus.len() + cases {
        let input = if case < corpus.len() {
            corpus[case].clone()
        } else {
            let a = &corpus[rng.below(corpus.len())];
            let b = &corpus[rng.below(corpus.len())];
            let mut m = mutator.mutate(&mut rng, a, b);
            // Sometimes a mutation of a mutation.
            if rng.chance(30) {
                m = mutator.mutate(&mut rng, &m, b);
            }
            m
        };
        if catch_unwind(AssertUnwindSafe(|| check(&input))).is_err() {
            let path = failure_path(target, case);
            let _ = std::fs::write(&path, &input);
            panic!(
                "{target}: case {case} (CAUSEWAY_FUZZ_SEED={seed}) panicked; input in {}",
                path.display()
            );
        }
        ran += 1;
    }
    ran
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_reproducible_and_a_panic_names_its_input() {
        let corpus = vec![b"cluster: a\n".to_vec(), b"{\"a\": [1, 2]}".to_vec()];
        let m = Mutator::text();
        let mut first = Vec::new();
        run("repro", &corpus, &m, 200, |i| first.push(i.to_vec()));
        let mut second = Vec::new();
        run("repro", &corpus, &m, 200, |i| second.push(i.to_vec()));
        assert_eq!(first, second);
        assert!(first.iter().skip(2).any(|i| !corpus.contains(i)), "mutated");
        let caught = std::panic::catch_unwind(|| {
            run("boom", &corpus, &m, 50, |i| assert!(i.len() < 12, "long"))
        });
        let msg = caught
            .unwrap_err()
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default();
        assert!(
            msg.contains("boom: case") && msg.contains("fuzz-failures"),
            "{msg}"
        );
    }
}
