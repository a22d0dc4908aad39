//! Converter throughput and memory on a generated log in the real record format: the hip and
//! rccl packs' schema (as `bthost build` writes it), threads of several processes, calls of
//! every record id with plausible values, and in-flight entries at the end. The same log
//! through `wc -l` is the floor.
//!
//! `cargo bench -p bthost-tests --bench convert_throughput` (BTHOST_BENCH_LOG_MB, default 1024).
//! Prints MB/s and the peak RSS (getrusage of the child) of `bthost report` (first: the peak
//! is the largest child's so far) and of `bthost convert`.

use std::process::Command;
use std::time::Instant;

use bthost_tests::*;

fn main() {
    let mb: u64 = std::env::var("BTHOST_BENCH_LOG_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let dir = scratch("bench-convert");
    let log = dir.join("big.log");
    let t = Instant::now();
    generate_log(&log, mb << 20);
    let size = std::fs::metadata(&log).unwrap().len();
    println!(
        "generated {:.0} MB in {:.1} s",
        size as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let o = Command::new("wc").arg("-l").arg(&log).output().unwrap();
    let wc = t.elapsed().as_secs_f64();
    println!(
        "wc -l: {} lines, {:.0} MB/s",
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .next()
            .unwrap_or("?"),
        size as f64 / 1e6 / wc
    );

    let bin = out_dir().join("bthost");
    assert!(
        bin.is_file(),
        "build bthost in release first: cargo build --release -p bthost"
    );
    let t = Instant::now();
    let o = Command::new(&bin).arg("report").arg(&log).output().unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    println!(
        "bthost report: {:.1} s, {:.0} MB/s, peak RSS {} MB; it says:\n{}",
        secs,
        size as f64 / 1e6 / secs,
        children_maxrss_kib() / 1024,
        String::from_utf8_lossy(&o.stdout)
    );

    let before = children_maxrss_kib();
    let t = Instant::now();
    let o = Command::new(&bin)
        .arg("convert")
        .arg(&log)
        .arg("-o")
        .arg(dir.join("out"))
        .output()
        .unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rss = children_maxrss_kib().max(before);
    println!(
        "bthost convert: {:.1} s, {:.0} MB/s, peak RSS {} MB (log {:.0} MB)",
        secs,
        size as f64 / 1e6 / secs,
        rss / 1024,
        size as f64 / 1e6
    );
}
