//! The throughput of the mask (docs/performance.md, "The mask"):
//!
//! ```sh
//! cargo test --release --lib mask::bench -- --ignored --nocapture
//! ```
//!
//! 2,000 values of realistic shapes and lengths (20–200 bytes, and a few PEM keys), ordinary log text,
//! fed in 64 KiB chunks (a busy pipe) and in 1-byte chunks (the worst case: a program writing byte by
//! byte), and with no values at all (the pass-through). MB/s are 10^6 bytes of input per second, the
//! best of a few runs.

use super::tests::Rng;
use super::*;
use std::time::{Duration, Instant};

/// The bench's own draws, on the tests' generator.
impl Rng {
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    /// `min` to `min + spread - 1` bytes drawn from `alphabet`.
    fn from(&mut self, alphabet: &[u8], min: usize, spread: usize) -> String {
        let len = min + self.below(spread);
        (0..len)
            .map(|_| alphabet[self.below(alphabet.len())] as char)
            .collect()
    }
}

const ALNUM: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const HEX: &[u8] = b"0123456789abcdef";
const BASE64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const BASE64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// 2,000 values shaped like a real project's: keys, tokens, URLs with passwords, JWTs, and 10 PEMs.
fn values(rng: &mut Rng) -> Vec<(String, String)> {
    (0..2000)
        .map(|i| {
            let value = match i % 8 {
                _ if i % 200 == 0 => {
                    let body: Vec<String> = (0..26).map(|_| rng.from(BASE64, 64, 1)).collect();
                    format!(
                        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
                        body.join("\n")
                    )
                }
                0 => format!("sk_live_{}", rng.from(ALNUM, 24, 76)),
                1 => format!(
                    "postgres://{}:{}@db-{}.internal:5432/{}",
                    rng.pick(&["app", "svc", "admin", "orders"]),
                    rng.from(ALNUM, 16, 24),
                    rng.below(100),
                    rng.pick(&["main", "orders", "users"])
                ),
                2 => format!(
                    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.{}.{}",
                    rng.from(BASE64URL, 40, 80),
                    rng.from(BASE64URL, 43, 1)
                ),
                3 => {
                    let len = [32, 40, 64][rng.below(3)];
                    rng.from(HEX, len, 1)
                }
                4 => rng.from(BASE64, 20, 60),
                5 => format!(
                    "AKIA{}",
                    rng.from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16, 1)
                ),
                6 => format!(
                    "redis://:{}@cache-{}:6379/0",
                    rng.from(ALNUM, 20, 40),
                    rng.below(10)
                ),
                _ => rng.from(ALNUM, 20, 181),
            };
            (format!("VAR_{i:04}"), value)
        })
        .collect()
}

/// Ordinary service logs: timestamps, levels, paths, ids in hex, durations.
fn log_text(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut text = String::with_capacity(len + 300);
    let mut line = 0u64;
    while text.len() < len {
        line += 1;
        let ts = format!(
            "2024-05-17T09:{:02}:{:02}.{:03}Z",
            line / 3600 % 60,
            line / 60 % 60,
            line % 1000
        );
        let l = match rng.below(5) {
            0 => format!(
                "{ts} INFO  [http] GET /api/v1/orders/{}?expand=items 200 {}.{}ms ip=10.0.{}.{} req_id={}-{}-{} ua=\"Mozilla/5.0 (X11; Linux x86_64)\"\n",
                rng.below(100_000),
                rng.below(200),
                rng.below(10),
                rng.below(256),
                rng.below(256),
                rng.from(HEX, 8, 1),
                rng.from(HEX, 4, 1),
                rng.from(HEX, 12, 1)
            ),
            1 => format!(
                "{ts} DEBUG [db] SELECT id, name, email FROM users WHERE id = $1 LIMIT 1 ({}.{}ms)\n",
                rng.below(20),
                rng.below(10)
            ),
            2 => format!(
                "{ts} WARN  [cache] miss key=session:{} ttl=3600 backend=redis\n",
                rng.from(HEX, 32, 1)
            ),
            3 => format!(
                "{ts} INFO  [worker] job {} done in {}ms, {} items, queue depth {}\n",
                rng.from(ALNUM, 10, 1),
                rng.below(5000),
                rng.below(500),
                rng.below(50)
            ),
            _ => format!(
                "{ts} ERROR [payments] charge failed: card_declined (code {}) customer=cus_{} retry in {}s\n",
                rng.below(600),
                rng.from(ALNUM, 14, 1),
                rng.below(60)
            ),
        };
        text.push_str(&l);
    }
    text.into_bytes()
}

/// Best MB/s of `runs` passes of `text` through a fresh stream in `chunk`-byte writes; also returns
/// the output of the last pass.
fn measure(m: &Masker, text: &[u8], chunk: usize, runs: usize) -> (f64, Vec<u8>) {
    let mut best = Duration::MAX;
    let mut all = Vec::new();
    for _ in 0..runs {
        all.clear();
        let mut stream = m.stream();
        let mut out = Vec::with_capacity(2 * chunk + 4096);
        let started = Instant::now();
        for piece in text.chunks(chunk) {
            stream.feed(piece, &mut out);
            // The caller writes `out` out and reuses it; keep it to check the result.
            all.extend_from_slice(&out);
            out.clear();
        }
        stream.finish(&mut out);
        all.extend_from_slice(&out);
        best = best.min(started.elapsed());
    }
    (text.len() as f64 / best.as_secs_f64() / 1e6, all)
}

fn table_bytes(m: &Masker) -> usize {
    let a = m.automaton.as_ref().unwrap();
    a.dense.len() * 4
        + a.dense_hold.len() * 4
        + a.fail.len() * (4 + 4 + 1 + 1)
        + a.branches.len() * std::mem::size_of::<(u32, u8, u32)>()
        + a.matches.len() * 12
}

#[test]
#[ignore = "a benchmark: cargo test --release --lib mask::bench -- --ignored --nocapture"]
fn throughput() {
    let mut rng = Rng(0x05ee_d0f4_da5c);
    let owned = values(&mut rng);
    let total: usize = owned.iter().map(|(_, v)| v.len()).sum();
    let started = Instant::now();
    let m = Masker::new(owned.iter().map(|(n, v)| (n.as_str(), v.as_bytes())));
    let built = started.elapsed();
    let a = m.automaton.as_ref().unwrap();
    println!(
        "2,000 values, {total} bytes: built in {:.1} ms; {} states ({} with full rows of {}), tables {} KiB",
        built.as_secs_f64() * 1e3,
        a.fail.len(),
        a.dense_hold.len(),
        a.stride,
        table_bytes(&m) / 1024
    );

    let logs = log_text(&mut rng, 16 << 20);
    let none = Masker::new(std::iter::empty());
    let (mbs, out) = measure(&none, &logs, 64 << 10, 5);
    assert_eq!(out, logs);
    println!("no values,    64 KiB writes: {mbs:8.0} MB/s");
    let (mbs, out) = measure(&m, &logs, 64 << 10, 5);
    assert_eq!(out, logs);
    println!("2,000 values, 64 KiB writes: {mbs:8.0} MB/s   (logs with no value)");
    let small = &logs[..2 << 20];
    let (mbs, out) = measure(&m, small, 1, 3);
    assert_eq!(out, small);
    println!("2,000 values, 1-byte writes: {mbs:8.0} MB/s");
    let (mbs, _) = measure(&none, small, 1, 3);
    println!("no values,    1-byte writes: {mbs:8.0} MB/s");

    // A small project: the first 20 of the values.
    let few = Masker::new(owned[1..21].iter().map(|(n, v)| (n.as_str(), v.as_bytes())));
    let (mbs, out) = measure(&few, &logs, 64 << 10, 5);
    assert_eq!(out, logs);
    println!("20 values,    64 KiB writes: {mbs:8.0} MB/s   (logs with no value)");

    // One line in 20 prints a value.
    let mut mixed = Vec::with_capacity(logs.len() + logs.len() / 10);
    for (i, line) in logs.split_inclusive(|&b| b == b'\n').enumerate() {
        mixed.extend_from_slice(line);
        if i % 20 == 0 {
            mixed.extend_from_slice(b"config: value=");
            mixed.extend_from_slice(owned[rng.below(owned.len())].1.as_bytes());
            mixed.push(b'\n');
        }
    }
    let (mbs, out) = measure(&m, &mixed, 64 << 10, 5);
    let markers = out
        .windows(b" masked by r4-run>".len())
        .filter(|w| w == b" masked by r4-run>")
        .count();
    assert_eq!(
        markers,
        logs.split_inclusive(|&b| b == b'\n').count().div_ceil(20)
    );
    println!("2,000 values, 64 KiB writes: {mbs:8.0} MB/s   (a value in one line of 20)");
}
