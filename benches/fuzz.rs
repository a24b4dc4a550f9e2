//! Mutation fuzzing of every payload parser without a fuzzing engine: the real plugin
//! samples of `fuzz/seeds/` (as the plugins' documentation and code send them) are
//! mutated byte-wise and value-wise, and each parser must answer `Ok` or a field error for every one, never
//! panic; every event it accepts must also pass or fail the bounds check cleanly.
//! Prints executions, executions per second and panics per target; exits 1 on a panic.
//!
//! Run: `cargo bench --bench fuzz` (`FUZZ_EXECUTIONS`, default 1,000,000 per target;
//! `FUZZ_SEED`; the settings loader, the slowest, runs a tenth of them). Under
//! `cargo test --all-targets` a short pass of 2,000 per target runs.

use jenkins_autopilot::fuzzing::{context, run};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

/// Each target's seeds: the real samples in `fuzz/seeds/<target>/`, which the `cargo fuzz`
/// targets start from too.
fn samples() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    jenkins_autopilot::fuzzing::TARGETS
        .iter()
        .map(|&t| {
            let mut files: Vec<_> = std::fs::read_dir(root.join(t))
                .unwrap_or_else(|e| panic!("fuzz/seeds/{t}: {e}"))
                .map(|e| e.unwrap().path())
                .collect();
            files.sort();
            (t, files.iter().map(|f| std::fs::read(f).unwrap()).collect())
        })
        .collect()
}

const INTERESTING: [&str; 14] = [
    "0",
    "-1",
    "9223372036854775807",
    "18446744073709551615",
    "1e309",
    "null",
    "\"\"",
    "[]",
    "{}",
    "true",
    "\"\\u202e\"",
    "\"FAILED\"",
    "\"../..\"",
    "-9223372036854775808",
];

/// One mutation of `seed`: a byte flipped, inserted or removed, a span duplicated, or a
/// number, string or literal swapped for one that breaks assumptions.
fn mutate(seed: &[u8], rng: &mut StdRng) -> Vec<u8> {
    let mut out = seed.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        if out.is_empty() {
            out.push(b'{');
        }
        let i = rng.random_range(0..out.len());
        match rng.random_range(0..6) {
            0 => out[i] ^= 1 << rng.random_range(0..8),
            1 => out.insert(i, rng.random()),
            2 => {
                out.remove(i);
            }
            3 => {
                let j = (i + rng.random_range(1..32)).min(out.len());
                let span = out[i..j].to_vec();
                out.splice(i..i, span);
            }
            _ => {
                // Replace the value after a `:` (JSON) with an interesting one.
                if let Some(colon) = out[i..].iter().position(|&c| c == b':') {
                    let start = i + colon + 1;
                    let end = out[start..]
                        .iter()
                        .position(|&c| c == b',' || c == b'}' || c == b'\n')
                        .map_or(out.len(), |e| start + e);
                    let v = INTERESTING[rng.random_range(0..INTERESTING.len())];
                    out.splice(start..end, v.bytes());
                }
            }
        }
    }
    out
}

fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let executions: u64 = if smoke {
        2_000
    } else {
        std::env::var("FUZZ_EXECUTIONS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000)
    };
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let ctx = context();
    // Panics are what this looks for: keep their messages short.
    std::panic::set_hook(Box::new(|info| eprintln!("panic: {info}")));
    let mut failed = false;
    for (target, seeds) in samples() {
        // The settings loader merges the defaults each time: a tenth of the executions.
        let n = if target == "settings" {
            executions / 10
        } else {
            executions
        }
        .max(1);
        let mut rng = StdRng::seed_from_u64(seed);
        let started = Instant::now();
        let mut panics = 0u64;
        for i in 0..n {
            let input = mutate(&seeds[(i as usize) % seeds.len()], &mut rng);
            if catch_unwind(AssertUnwindSafe(|| run(target, &input, &ctx))).is_err() {
                panics += 1;
                if panics == 1 {
                    eprintln!("{target}: input {:?}", String::from_utf8_lossy(&input));
                }
            }
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "fuzz {target:<24} {n:>10} executions  {:>9.0}/s  panics {panics}",
            n as f64 / secs.max(1e-9)
        );
        failed |= panics > 0;
    }
    if failed {
        std::process::exit(1);
    }
}
