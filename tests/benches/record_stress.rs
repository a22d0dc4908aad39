//! `bthost record` under load: 8 threads calling a traced function (stand-in
//! hipStreamSynchronize) as fast as they can for BTHOST_STRESS_SECONDS (default 60), per
//! bpftrace version: untraced, under a bare uprobe+uretprobe pair (the floor), recorded with
//! records in maps (the default) and with the flight recorder. For each: calls per second, the
//! records in the log, the records lost (record's count and convert's), log bytes per call,
//! the kernel memory of bpftrace's maps, and the time from the stop to the closed log; then
//! the time from Ctrl-C to a closed log with the hip pack recording system-wide.
//!
//! Run as root: `cargo bench -p bthost-tests --bench record_stress`. Written to
//! target/bench/record_stress.md.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bthost_tests::*;

const THREADS: &str = "8";

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Calls per second from the loop's own line (`... N calls R calls/s ...`).
fn rate(out: &str) -> (u64, f64) {
    let w: Vec<&str> = out.split_whitespace().collect();
    let calls = w
        .iter()
        .position(|x| *x == "calls")
        .and_then(|i| w[i - 1].parse().ok())
        .unwrap_or(0);
    let r = w
        .iter()
        .position(|x| *x == "calls/s")
        .and_then(|i| w[i - 1].parse().ok())
        .unwrap_or(f64::NAN);
    (calls, r)
}

/// The kernel memory (bytes) of the BPF maps of `pid`'s open descriptors, and their count.
fn map_memory(pid: u32) -> (u64, usize) {
    let mut total = 0;
    let mut n = 0;
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return (0, 0);
    };
    for e in rd.flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        if !text.contains("map_type:") {
            continue;
        }
        n += 1;
        total += text
            .lines()
            .find_map(|l| l.strip_prefix("memlock:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    (total, n)
}

/// The memory of the maps of the child of `parent` that holds BPF maps (its bpftrace: the
/// test's 0.23 runs under a loader, so it is not found by name).
fn maps_of_child(parent: u32) -> Option<(u64, usize)> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let after = stat.rsplit(") ").next().unwrap_or("");
        let ppid: u32 = after
            .split(' ')
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        if ppid == parent {
            let m = map_memory(pid);
            if m.1 > 0 {
                return Some(m);
            }
        }
    }
    None
}

struct Recorded {
    calls: u64,
    rate: f64,
    records: u64,
    lost_record: String,
    lost_convert: String,
    bytes: u64,
    maps: (u64, usize),
    closed: String,
}

fn record_run(
    bin: &Path,
    standins: &Path,
    loop_bin: &Path,
    dir: &Path,
    mode: &[&str],
    secs: u64,
) -> Recorded {
    let log = dir.join("stress.log");
    let _ = std::fs::remove_file(&log);
    let _serial = system_wide_lock();
    let child = Command::new(bthost_bin())
        .args(["record", "--packs", "hip", "--bpftrace-bin"])
        .arg(bin)
        .arg("--lib")
        .arg(format!(
            "hip={}",
            standins.join("libamdhip64.so.5").display()
        ))
        .args(mode)
        .arg("-o")
        .arg(&log)
        .arg("--")
        .arg(loop_bin)
        .args(["hipStreamSynchronize", "0", THREADS, &secs.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The maps, halfway through the run.
    let t = Instant::now();
    let mut maps = (0, 0);
    while t.elapsed() < Duration::from_secs(secs / 2 + 3) {
        std::thread::sleep(Duration::from_millis(500));
        if t.elapsed() >= Duration::from_secs(secs / 2) {
            if let Some(m) = maps_of_child(child.id()) {
                maps = m;
                break;
            }
        }
    }
    let o = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    let (calls, r) = rate(&out);
    let lost_record = err
        .lines()
        .find(|l| l.contains("records were lost"))
        .map_or("0".into(), |l| {
            l.split_whitespace().nth(2).unwrap_or("?").to_string()
        });
    // printf: what bpftrace itself says it lost.
    let lost_events: u64 = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            l.strip_prefix("Lost ")?
                .split(' ')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    let lost_record = if lost_events > 0 {
        format!("{lost_record} (+{lost_events} events)")
    } else {
        lost_record
    };
    let closed = err
        .lines()
        .find_map(|l| l.split("), ").nth(1))
        .map(|s| s.split(" after").next().unwrap_or("").to_string())
        .unwrap_or_default();
    let text = std::fs::read_to_string(&log).unwrap();
    let mut records = 0;
    let mut bytes = 0;
    for l in text.lines() {
        let first = l.split(' ').next().unwrap_or("");
        let first = first.strip_prefix('+').unwrap_or(first);
        let printed = !first.is_empty() && first.chars().all(|c| c.is_ascii_hexdigit());
        if printed || l.starts_with("@r") || l.starts_with("@f[") || l.starts_with("@b[") {
            records += 1;
            bytes += l.len() as u64 + 1;
        }
    }
    let summary = bthost_convert(&log, &dir.join("stress-out"), &[]);
    let lost_convert = summary
        .split(" records LOST in the kernel")
        .next()
        .filter(|_| summary.contains("LOST in the kernel"))
        .and_then(|p| p.rsplit(' ').next())
        .unwrap_or("0")
        .to_string();
    Recorded {
        calls,
        rate: r,
        records,
        lost_record,
        lost_convert,
        bytes,
        maps,
        closed,
    }
}

fn main() {
    if skip_root_tests() {
        return;
    }
    let secs = env_num("BTHOST_STRESS_SECONDS", 60);
    let dir = scratch("bench-record-stress");
    let standins = build_standins(&dir.join("standins"));
    let loop_bin =
        compile_on_standins("tests/bench/call_loop.c", &standins, &dir.join("call_loop"));
    let lib = standins.join("libamdhip64.so.5");
    let mut table = String::new();
    let _ = writeln!(
        table,
        "{THREADS} threads calling stand-in hipStreamSynchronize for {secs} s (2 cores)\n"
    );
    let _ = writeln!(
        table,
        "| bpftrace | run | calls/s | calls | records in log | lost (record / convert) | log bytes/call | BPF map memory (maps) | stop to closed log |"
    );
    let _ = writeln!(table, "|---|---|---|---|---|---|---|---|---|");
    for (bt, version) in available_bpftraces() {
        let base = Command::new(&loop_bin)
            .args(["hipStreamSynchronize", "0", THREADS, &secs.to_string()])
            .output()
            .unwrap();
        let (calls, r) = rate(&String::from_utf8_lossy(&base.stdout));
        let _ = writeln!(
            table,
            "| {version} | untraced | {r:.0} | {calls} | | | | | |"
        );
        let floor = dir.join("floor.bt");
        std::fs::write(
            &floor,
            format!(
                "BEGIN {{ printf(\"#bthost floor\\n\"); }}\nuprobe:{l}:hipStreamSynchronize {{}}\nuretprobe:{l}:hipStreamSynchronize {{}}\n",
                l = lib.display()
            ),
        )
        .unwrap();
        let cmd = format!(
            "{} hipStreamSynchronize 0 {THREADS} {secs}",
            loop_bin.display()
        );
        let out = bpftrace_trace(&bt, &floor, &dir.join("floor.log"), &cmd);
        let (calls, r) = rate(&out);
        let _ = writeln!(table, "| {version} | floor | {r:.0} | {calls} | | | | | |");
        println!("{table}");
        for (name, mode) in [
            ("maps (default)", &[][..]),
            ("printf", &["--records", "printf"][..]),
            ("flight recorder 1024", &["--flight-recorder", "1024"][..]),
        ] {
            let r = record_run(&bt, &standins, &loop_bin, &dir, mode, secs);
            let _ = writeln!(
                table,
                "| {version} | {name} | {:.0} | {} | {} | {} / {} | {:.1} | {:.1} MiB ({}) | {} |",
                r.rate,
                r.calls,
                r.records,
                r.lost_record,
                r.lost_convert,
                r.bytes as f64 / r.calls.max(1) as f64,
                r.maps.0 as f64 / (1 << 20) as f64,
                r.maps.1,
                r.closed
            );
            println!("{table}");
        }
    }
    let _ = writeln!(
        table,
        "\nCtrl-C to a closed log, hip pack recording system-wide (3 runs each):\n"
    );
    for (bt, version) in available_bpftraces() {
        let mut took = Vec::new();
        for i in 0..3 {
            let _serial = system_wide_lock();
            let log = dir.join(format!("ctrlc-{i}.log"));
            let err_path = dir.join(format!("ctrlc-{i}.stderr"));
            let child = Command::new(bthost_bin())
                .args(["record", "--packs", "hip", "--bpftrace-bin"])
                .arg(&bt)
                .args(["--lib", &format!("hip={}", lib.display())])
                .arg("-o")
                .arg(&log)
                .stderr(std::fs::File::create(&err_path).unwrap())
                .spawn()
                .unwrap();
            while !std::fs::read_to_string(&err_path).is_ok_and(|t| t.contains("bthost: tracing")) {
                std::thread::sleep(Duration::from_millis(100));
            }
            std::thread::sleep(Duration::from_secs(1));
            let t = Instant::now();
            // SAFETY: kill(2) of our child.
            unsafe { kill(child.id() as i32, 2) };
            let o = child.wait_with_output().unwrap();
            took.push(t.elapsed().as_secs_f64() * 1e3);
            assert!(
                o.status.success(),
                "{}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        let _ = writeln!(
            table,
            "- bpftrace {version}: {} ms (record's exit after SIGINT; bpftrace then detaches its probes on its own)",
            took.iter().map(|t| format!("{t:.0}")).collect::<Vec<_>>().join(", ")
        );
    }
    let out = out_dir().join("..").join("bench");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("record_stress.md"), &table).unwrap();
    println!("\n{table}");
}

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}
