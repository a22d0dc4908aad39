//! How long `bthost record` keeps the user waiting, per bpftrace version: from the start of
//! record to its "probes attached" line (bpftrace compiling the script and attaching every
//! probe), and from the traced program's exit to record's own exit with the log closed (the
//! goal: under 1 s on every version). The traced program is `sh -c 'sleep 0.5; echo EXITING'`
//! under the hip, hsa and rccl packs on the real HIP and HSA runtimes and Debian 13's real RCCL,
//! so every probe of the three packs attaches to a real library.
//!
//! record exits as soon as the log is complete; the kernel then detaches bpftrace's probes as
//! the killed bpftrace exits, one uprobe at a time, and a recorder started meanwhile attaches
//! behind it. So each run waits for the last one's bpftrace to be gone, and that time (from
//! record's exit) is the table's last column.
//!
//! Rounds are interleaved across the versions (round 1 on each, then round 2, ...), as this VM
//! is noisy; medians with the spread (min-max).
//!
//! Run as root: `cargo bench -p bthost-tests --bench record_latency` (BTHOST_BENCH_ROUNDS,
//! default 5). Written to target/bench/record_latency.md.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bthost_tests::*;

/// One record run's times.
struct Run {
    probes: usize,
    attach: Duration,
    exit_to_exit: Duration,
    /// record's own figure: the log complete, this long after the stop.
    closed_ms: f64,
    /// From record's exit until no bpftrace is left (the kernel detaching its probes).
    detached: Duration,
}

/// Whether a bpftrace (or the sid and trixie roots' bpftrace, run by their ld.so) still exists,
/// as a zombie or in its exit.
fn a_bpftrace_exists() -> bool {
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.filter_map(Result::ok).any(|e| {
                std::fs::read_to_string(e.path().join("comm"))
                    .is_ok_and(|c| matches!(c.trim(), "bpftrace" | "ld-linux-x86-64"))
            })
        })
        .unwrap_or(false)
}

/// Waits (up to 5 minutes) for every bpftrace to be gone; how long it took.
fn wait_for_no_bpftrace() -> Duration {
    let t = Instant::now();
    while a_bpftrace_exists() && t.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_millis(50));
    }
    t.elapsed()
}

enum Line {
    Out(String),
    Err(String),
}

fn record_once(bpftrace: &Path, log: &Path) -> Run {
    let _ = std::fs::remove_file(log);
    let start = Instant::now();
    let mut child = Command::new(bthost_bin())
        .args([
            "record",
            "--packs",
            "hip,hsa,rccl",
            "--no-stacks",
            "--bpftrace-bin",
        ])
        .arg(bpftrace)
        .arg("--lib")
        .arg(format!("rccl={REAL_RCCL}"))
        .arg("-o")
        .arg(log)
        .args(["--", "sh", "-c", "sleep 0.5; echo EXITING"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let out = BufReader::new(child.stdout.take().unwrap());
    let err = BufReader::new(child.stderr.take().unwrap());
    let tx2 = tx.clone();
    let readers = [
        std::thread::spawn(move || {
            for l in out.lines().map_while(Result::ok) {
                let _ = tx.send((Instant::now(), Line::Out(l)));
            }
        }),
        std::thread::spawn(move || {
            for l in err.lines().map_while(Result::ok) {
                let _ = tx2.send((Instant::now(), Line::Err(l)));
            }
        }),
    ];
    let (mut attached, mut exiting) = (None, None);
    let (mut probes, mut closed_ms, mut said) = (0, f64::NAN, String::new());
    for (at, line) in rx {
        match line {
            Line::Out(l) if l == "EXITING" => exiting = Some(at),
            Line::Out(_) => {}
            Line::Err(l) => {
                if let Some(rest) = l.strip_prefix("bthost: tracing: ") {
                    attached = Some(at);
                    probes = rest
                        .split(' ')
                        .next()
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                }
                if l.starts_with("bthost: the log is complete") {
                    // "..., 11 ms after the stop (...)"
                    closed_ms = l
                        .split(" ms after the stop")
                        .next()
                        .and_then(|s| s.rsplit(' ').next())
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(f64::NAN);
                }
                said.push_str(&l);
                said.push('\n');
            }
        }
    }
    let status = child.wait().unwrap();
    let end = Instant::now();
    for r in readers {
        r.join().unwrap();
    }
    assert!(status.success(), "record failed:\n{said}");
    let attached = attached.unwrap_or_else(|| panic!("no 'probes attached' line:\n{said}"));
    let exiting = exiting.unwrap_or_else(|| panic!("the program did not run:\n{said}"));
    Run {
        probes,
        attach: attached - start,
        exit_to_exit: end - exiting,
        closed_ms,
        detached: wait_for_no_bpftrace(),
    }
}

fn main() {
    if skip_root_tests() {
        return;
    }
    require_hip();
    let rounds: usize = std::env::var("BTHOST_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let dir = scratch("bench-record-latency");
    let bpftraces = available_bpftraces();
    wait_for_no_bpftrace();
    let mut runs: Vec<Vec<Run>> = bpftraces.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for (k, (bt, version)) in bpftraces.iter().enumerate() {
            let r = record_once(bt, &dir.join("latency.log"));
            println!(
                "round {}: bpftrace {version}: {} probes attached in {:.2} s; program exit to record's exit {:.0} ms (log complete {:.0} ms after the stop); bpftrace gone {:.1} s after record's exit",
                round + 1,
                r.probes,
                r.attach.as_secs_f64(),
                r.exit_to_exit.as_secs_f64() * 1e3,
                r.closed_ms,
                r.detached.as_secs_f64()
            );
            runs[k].push(r);
        }
    }
    let mut table = String::new();
    let _ = writeln!(
        table,
        "record --packs hip,hsa,rccl (real HIP 5.2, HSA, RCCL) of `sh -c 'sleep 0.5; echo EXITING'`; medians of {rounds} interleaved rounds (min-max)\n"
    );
    let _ = writeln!(
        table,
        "| bpftrace | probes | start to attached | program exit to record's exit | stop to closed log (record's figure) | bpftrace gone after record's exit |"
    );
    let _ = writeln!(table, "|---|---|---|---|---|---|");
    for ((_, version), rs) in bpftraces.iter().zip(&runs) {
        let a: Vec<f64> = rs.iter().map(|r| r.attach.as_secs_f64()).collect();
        let e: Vec<f64> = rs
            .iter()
            .map(|r| r.exit_to_exit.as_secs_f64() * 1e3)
            .collect();
        let c: Vec<f64> = rs.iter().map(|r| r.closed_ms).collect();
        let d: Vec<f64> = rs.iter().map(|r| r.detached.as_secs_f64()).collect();
        let ((am, alo, ahi), (em, elo, ehi), (cm, clo, chi)) =
            (median_min_max(&a), median_min_max(&e), median_min_max(&c));
        let (dm, dlo, dhi) = median_min_max(&d);
        let _ = writeln!(
            table,
            "| {version} | {} | {am:.2} s ({alo:.2}-{ahi:.2}) | {em:.0} ms ({elo:.0}-{ehi:.0}) | {cm:.0} ms ({clo:.0}-{chi:.0}) | {dm:.1} s ({dlo:.1}-{dhi:.1}) |",
            rs[0].probes
        );
    }
    let out = out_dir().join("..").join("bench");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("record_latency.md"), &table).unwrap();
    println!("\n{table}");
}
