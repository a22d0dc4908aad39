//! Converter throughput and memory on a generated log in the real record format: the hip and
//! rccl packs' schema (as `bthost build` writes it), threads of several processes, calls of
//! every record id with plausible values, and in-flight entries at the end. The same log
//! through `wc -l` is the floor.
//!
//! `cargo bench -p bthost-tests --bench convert_throughput` (BTHOST_BENCH_LOG_MB, default 1024;
//! BTHOST_BENCH_ROUNDS, default 3). Prints, side by side and interleaved round by round (this
//! VM is noisy: compare within a run):
//! - `bthost convert` on one core (`taskset -c 0`, `--jobs 1`) and on every core (default):
//!   wall, user+system and system time, peak RSS (wait4 of the child), records/s;
//! - the Python baseline (tests/bench/py_convert.py: regexes, the `perfetto` package's
//!   TraceProtoBuilder, one trace, no text) on the log's first BTHOST_BENCH_PY_MB (default 20)
//!   MB, as it holds the whole log in memory;
//! - each output's bytes per call, and `bthost report`'s time;
//! - what a call costs in each trace: its packets' fixed fields, its annotations and its
//!   flows (tests/src/trace_bytes.rs).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use bthost_tests::*;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The records a conversion says it read (`bthost: N records, ...` on stderr).
fn records_said(stderr: &[u8]) -> u64 {
    let s = String::from_utf8_lossy(stderr);
    s.lines()
        .find_map(|l| {
            let rest = l.strip_prefix("bthost: ")?;
            let (n, tail) = rest.split_once(' ')?;
            tail.starts_with("records").then(|| n.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no record count in:\n{s}"))
}

/// The first `bytes` of `log`, cut at a line's end; read in pieces, so that this process stays
/// small (a child's peak RSS starts from its parent's at the fork).
fn head_of(log: &Path, bytes: u64, out: &Path) {
    use std::io::{BufRead, Write};
    let r = std::io::BufReader::new(std::fs::File::open(log).unwrap());
    let mut w = std::io::BufWriter::new(std::fs::File::create(out).unwrap());
    let mut written = 0u64;
    for line in r.split(b'\n') {
        let line = line.unwrap();
        written += line.len() as u64 + 1;
        if written > bytes {
            break;
        }
        w.write_all(&line).unwrap();
        w.write_all(b"\n").unwrap();
    }
    w.flush().unwrap();
}

struct Row {
    walls: Vec<f64>,
    cpu: Vec<f64>,
    sys: Vec<f64>,
    rss_mb: i64,
    records: u64,
}

impl Row {
    fn new() -> Row {
        Row {
            walls: Vec::new(),
            cpu: Vec::new(),
            sys: Vec::new(),
            rss_mb: 0,
            records: 0,
        }
    }

    fn add(&mut self, m: &Measured, records: u64) {
        self.walls.push(m.wall_secs);
        self.cpu.push(m.cpu_secs);
        self.sys.push(m.sys_secs);
        self.rss_mb = self.rss_mb.max(m.maxrss_kib / 1024);
        self.records = records;
    }

    fn median(v: &[f64]) -> f64 {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }

    fn print(&self, what: &str) {
        let (lo, hi) = (
            self.walls.iter().copied().fold(f64::MAX, f64::min),
            self.walls.iter().copied().fold(0.0, f64::max),
        );
        let wall = Self::median(&self.walls);
        println!(
            "{what:<34} {wall:>7.2} s ({lo:.2}-{hi:.2}) {:>7.2} {:>7.2} {:>7} {:>10.0}",
            Self::median(&self.cpu),
            Self::median(&self.sys),
            self.rss_mb,
            self.records as f64 / wall
        );
    }
}

fn main() {
    let mb = env("BTHOST_BENCH_LOG_MB", 1024);
    let rounds = env("BTHOST_BENCH_ROUNDS", 3).max(1);
    let py_mb = env("BTHOST_BENCH_PY_MB", 20);
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
            .lines()
            .take(12)
            .collect::<Vec<_>>()
            .join("\n")
    );

    let py_log = dir.join("head.log");
    head_of(&log, py_mb << 20, &py_log);
    let py_script = root().join("tests/bench/py_convert.py");
    let (mut one, mut all, mut py) = (Row::new(), Row::new(), Row::new());
    let out = dir.join("out");
    let mut outputs = Vec::new();
    for _ in 0..rounds {
        for jobs in [Some("1"), None] {
            let _ = std::fs::remove_dir_all(&out);
            let mut cmd = match jobs {
                // One core, one job: what the conversion costs without parallelism.
                Some(j) => {
                    let mut c = Command::new("taskset");
                    c.arg("-c")
                        .arg("0")
                        .arg(&bin)
                        .arg("convert")
                        .arg("--jobs")
                        .arg(j);
                    c
                }
                None => {
                    let mut c = Command::new(&bin);
                    c.arg("convert");
                    c
                }
            };
            let m = run_measured(cmd.arg(&log).arg("-o").arg(&out));
            assert!(
                m.output.status.success(),
                "{}",
                String::from_utf8_lossy(&m.output.stderr)
            );
            let records = records_said(&m.output.stderr);
            match jobs {
                Some(_) => one.add(&m, records),
                None => all.add(&m, records),
            }
            outputs = std::fs::read_dir(&out)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
        }
        let m = run_measured(
            Command::new("python3")
                .arg(&py_script)
                .arg(&py_log)
                .arg(dir.join("py.pftrace")),
        );
        assert!(
            m.output.status.success(),
            "{}\n(pip install perfetto; scripts/setup does it)",
            String::from_utf8_lossy(&m.output.stderr)
        );
        let said = String::from_utf8_lossy(&m.output.stdout);
        let records = said
            .trim()
            .strip_prefix("records ")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        py.add(&m, records);
    }
    println!(
        "\n{:<34} {:>7}   {:>11} {:>7} {:>7} {:>7} {:>10}",
        format!("log {:.0} MB, {rounds} rounds", size as f64 / 1e6),
        "wall",
        "(min-max)",
        "cpu s",
        "sys s",
        "RSS MB",
        "records/s"
    );
    one.print("bthost convert, 1 core, --jobs 1");
    all.print("bthost convert, default (all cores)");
    py.print(&format!("python baseline ({py_mb} MB head)"));
    let (w1, w2, wp) = (
        Row::median(&one.walls),
        Row::median(&all.walls),
        Row::median(&py.walls),
    );
    println!(
        "default vs 1 core: {:.2}x; default vs python: {:.1}x in records/s",
        w1 / w2,
        (all.records as f64 / w2) / (py.records as f64 / wp)
    );
    outputs.sort();
    for p in &outputs {
        let bytes = std::fs::metadata(p).unwrap().len();
        println!(
            "{:<24} {:>6.0} MB, {:>5.1} bytes per record",
            p.file_name().unwrap().to_string_lossy(),
            bytes as f64 / 1e6,
            bytes as f64 / all.records as f64
        );
    }
    // What a call costs in each trace, by what the bytes carry (tests/src/trace_bytes.rs).
    println!(
        "\n{:<24} {:>8} {:>8} {:>8} {:>8} {:>8}   (bytes per slice)",
        "trace", "total", "packets", "args", "flows", "other"
    );
    for p in outputs
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "pftrace"))
    {
        let t = trace_bytes(p);
        let per = |n: u64| n as f64 / t.slices.max(1) as f64;
        println!(
            "{:<24} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1}",
            p.file_name().unwrap().to_string_lossy(),
            per(t.total()),
            per(t.packet),
            per(t.annotations),
            per(t.flows),
            per(t.other)
        );
    }
}
