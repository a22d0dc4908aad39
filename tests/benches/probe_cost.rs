//! What tracing costs the traced program: for each bpftrace here (0.17, 0.23), each probe kind,
//! the time per call of a loop calling one function, untraced (base), with a bare
//! uprobe+uretprobe pair with empty actions (the floor of this method), and with the packs'
//! composed script in each way records leave the kernel (crate::compose::emit): printed two
//! per printf, stored in maps and drained, kept in the flight recorder's ring; and the log
//! bytes each traced call writes.
//!
//!   cost ratio = (way - base) / (floor - base)
//!
//! Run as root: `cargo bench -p bthost-tests --bench probe_cost` (BTHOST_BENCH_CALLS, default
//! 20000; BTHOST_BENCH_ROUNDS, default 5: medians over rounds, interleaved, as this VM is noisy,
//! with the spread (min-max) of the ratios; BTHOST_BENCH_ALL=1 adds hipGetDevice and the real
//! HIP runtime's calls; BTHOST_BENCH_ONLY=TEXT measures only the cases whose name holds TEXT).
//! The table is printed and written to target/bench/probe_cost.md.
//!
//! Cases on rccl add one more way, "maps, no caller": the maps script built from a copy of the
//! packs without their call-site fields (`from = "return_address"`), so that what a call site
//! costs is measured against the same round's base and floor.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use bthost::commands::build::{build, BpftraceChoice, BuildOptions};
use bthost::registry::{Registry, SearchPaths};
use bthost_tests::*;

use bthost::compose::emit::Emit;

struct Case {
    name: &'static str,
    function: &'static str,
    /// Which loop binary and which library it calls.
    real: bool,
    /// Measured only with BTHOST_BENCH_ALL=1.
    extra: bool,
}

const CASES: &[Case] = &[
    Case {
        name: "hipStreamSynchronize (split) stand-in",
        function: "hipStreamSynchronize",
        real: false,
        extra: false,
    },
    Case {
        name: "ncclAllReduce (split, 7 args) stand-in",
        function: "ncclAllReduce",
        real: false,
        extra: false,
    },
    Case {
        name: "hipGetDevice (call, out arg) stand-in",
        function: "hipGetDevice",
        real: false,
        extra: true,
    },
    Case {
        name: "hipGetDevice (call) real HIP 5.2",
        function: "hipGetDevice",
        real: true,
        extra: true,
    },
    Case {
        name: "hipStreamSynchronize (split) real HIP 5.2",
        function: "hipStreamSynchronize",
        real: true,
        extra: true,
    },
];

/// The ways records leave the kernel, as the columns of the table.
fn ways() -> [(&'static str, Emit); 3] {
    [
        ("printf", Emit::Printf),
        ("maps", Emit::Drained { period_ms: 50 }),
        ("ring", Emit::Ring { per_thread: 1024 }),
    ]
}

/// A copy of the source tree's packs without their call-site fields, as a registry.
fn registry_without_call_sites(dir: &Path) -> Registry {
    let copy = dir.join("packs-no-caller");
    let _ = std::fs::remove_dir_all(&copy);
    for pack in std::fs::read_dir(root().join("packs")).unwrap() {
        let pack = pack.unwrap().path();
        let manifest = pack.join("pack.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let kept: String = text
            .lines()
            .filter(|l| !l.contains("from = \"return_address\""))
            .map(|l| format!("{l}\n"))
            .collect();
        // The comparison means nothing if the rccl pack's call sites were not found.
        if pack.ends_with("rccl") {
            assert!(
                kept.lines().count() < text.lines().count(),
                "{}",
                manifest.display()
            );
        }
        let to = copy.join(pack.file_name().unwrap());
        std::fs::create_dir_all(&to).unwrap();
        std::fs::write(to.join("pack.toml"), kept).unwrap();
    }
    Registry::discover(&SearchPaths::standard(std::slice::from_ref(&copy)), false)
}

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn cc(out: &Path, src: &Path, args: &[&str]) {
    let o = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(out)
        .arg(src)
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// ns per call, from the loop's own output.
fn run_loop(bin: &Path, function: &str, calls: usize) -> f64 {
    let o = Command::new(bin)
        .arg(function)
        .arg(calls.to_string())
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&o.stdout);
    s.split_whitespace()
        .rev()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{}: {s}", bin.display()))
}

/// Traces one run of the loop; returns (ns per call, bytes of record lines, lost events).
fn traced(
    bpftrace: &Path,
    script: &Path,
    log: &Path,
    bin: &Path,
    function: &str,
    calls: usize,
) -> (f64, u64, u64) {
    let cmd = format!("{} {function} {calls}", bin.display());
    let out = bpftrace_trace(bpftrace, script, log, &cmd);
    let ns = out
        .split_whitespace()
        .rev()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    let text = std::fs::read_to_string(log).unwrap();
    let mut bytes = 0;
    let mut lost = 0;
    for l in text.lines() {
        if let Some(n) = l.strip_prefix("Lost ").and_then(|r| r.split(' ').next()) {
            lost += n.parse::<u64>().unwrap_or(0);
        }
        // A record line, or a record continuing the line before it (`+<id> ...`), or a
        // stored record as bpftrace prints a map entry (`@r0w4[...]`, `@f[...]`).
        let first = l.split(' ').next().unwrap_or("");
        let first = first.strip_prefix('+').unwrap_or(first);
        let printed = !first.is_empty() && first.chars().all(|c| c.is_ascii_hexdigit());
        if printed || l.starts_with("@r") || l.starts_with("@f[") {
            bytes += l.len() as u64 + 1;
        }
    }
    (ns, bytes, lost)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn floor_script(lib: &Path, function: &str) -> String {
    format!(
        "BEGIN {{ printf(\"#bthost floor\\n\"); }}\nuprobe:{lib}:{function} {{}}\nuretprobe:{lib}:{function} {{}}\n",
        lib = lib.display()
    )
}

fn main() {
    if skip_root_tests() {
        return;
    }
    require_hip();
    let calls = env_num("BTHOST_BENCH_CALLS", 20_000);
    let rounds = env_num("BTHOST_BENCH_ROUNDS", 5);
    let dir = scratch("bench-probe-cost");
    let standins = build_standins(&dir.join("standins"));
    let stand_loop = dir.join("call_loop");
    let rpath = format!("-Wl,-rpath,{}", standins.display());
    let lpath = format!("-L{}", standins.display());
    cc(
        &stand_loop,
        &root().join("tests/bench/call_loop.c"),
        &[&lpath, &rpath, "-l:librccl.so.1", "-l:libamdhip64.so.5"],
    );
    let real_loop = dir.join("real_loop");
    cc(
        &real_loop,
        &root().join("tests/bench/real_loop.c"),
        &["-l:libamdhip64.so.5"],
    );

    let reg = Registry::discover(&SearchPaths::standard(&[]), false);
    let reg_no_caller = registry_without_call_sites(&dir);
    let all = std::env::var_os("BTHOST_BENCH_ALL").is_some_and(|v| v == "1");
    let only = std::env::var("BTHOST_BENCH_ONLY").unwrap_or_default();
    let mut table = String::new();
    let _ = writeln!(
        table,
        "calls per run: {calls}; medians of {rounds} interleaved rounds (ratio spread min-max); ns per call\n"
    );
    let _ = writeln!(
        table,
        "| bpftrace | case | base | floor | way | ns/call | cost ratio (spread) | log bytes/call | lost |"
    );
    let _ = writeln!(table, "|---|---|---|---|---|---|---|---|---|");
    for (bt, version) in available_bpftraces() {
        for case in CASES
            .iter()
            .filter(|c| (all || !c.extra) && c.name.contains(only.as_str()))
        {
            let (lib, bin, packs): (PathBuf, &PathBuf, &[&str]) = if case.real {
                (PathBuf::from(HIP_LIB), &real_loop, &["hip"])
            } else if case.function.starts_with("nccl") {
                (standins.join("librccl.so.1"), &stand_loop, &["hip", "rccl"])
            } else {
                (standins.join("libamdhip64.so.5"), &stand_loop, &["hip"])
            };
            let mut libs = bthost::library::LibOverrides::new();
            if !case.real {
                libs.insert("hip".into(), standins.join("libamdhip64.so.5"));
                if packs.contains(&"rccl") {
                    libs.insert("rccl".into(), standins.join("librccl.so.1"));
                }
            }
            let mut variants: Vec<(&str, Emit, &Registry)> =
                ways().into_iter().map(|(n, e)| (n, e, &reg)).collect();
            if packs.contains(&"rccl") {
                variants.push((
                    "maps, no caller",
                    Emit::Drained { period_ms: 50 },
                    &reg_no_caller,
                ));
            }
            let scripts: Vec<PathBuf> = variants
                .iter()
                .enumerate()
                .map(|(k, (_, emit, reg))| {
                    let built = build(
                        reg,
                        &BuildOptions {
                            packs: packs.iter().map(|s| s.to_string()).collect(),
                            bpftrace: BpftraceChoice::Version(version.clone()),
                            libs: libs.clone(),
                            script: bthost::compose::Options {
                                emit: emit.clone(),
                                map_keys: Some(8192),
                                ..Default::default()
                            },
                        },
                    )
                    .unwrap();
                    let p = dir.join(format!("way{k}.bt"));
                    std::fs::write(&p, &built.script).unwrap();
                    p
                })
                .collect();
            let floor = dir.join("floor.bt");
            std::fs::write(&floor, floor_script(&lib, case.function)).unwrap();
            let log = dir.join("bench.log");
            let n = scripts.len();
            let (mut b, mut f) = (vec![], vec![]);
            let mut p: Vec<Vec<f64>> = vec![vec![]; n];
            let mut bytes: Vec<Vec<f64>> = vec![vec![]; n];
            let mut lost = vec![0u64; n];
            for _ in 0..rounds {
                b.push(run_loop(bin, case.function, calls));
                f.push(traced(&bt, &floor, &log, bin, case.function, calls).0);
                for (k, script) in scripts.iter().enumerate() {
                    let (ns, by, lo) = traced(&bt, script, &log, bin, case.function, calls);
                    p[k].push(ns);
                    bytes[k].push(by as f64 / calls as f64);
                    lost[k] += lo;
                }
            }
            // Each round's ratio against that round's own base and floor (interleaved).
            let ratios: Vec<Vec<f64>> = p
                .iter()
                .map(|pk| {
                    pk.iter()
                        .zip(b.iter().zip(&f))
                        .map(|(pv, (bv, fv))| (pv - bv) / (fv - bv))
                        .collect()
                })
                .collect();
            let (bm, fm) = (median(b.clone()), median(f.clone()));
            for (k, (name, _, _)) in variants.iter().enumerate() {
                let (rm, lo, hi) = median_min_max(&ratios[k]);
                let line = format!(
                    "| {version} | {} | {bm:.0} | {fm:.0} | {name} | {:.0} | {rm:.2}x ({lo:.2}-{hi:.2}) | {:.1} | {} |",
                    case.name,
                    median(p[k].clone()),
                    median(bytes[k].clone()),
                    lost[k]
                );
                println!("{line}");
                let _ = writeln!(table, "{line}");
            }
        }
    }
    let out = out_dir().join("..").join("bench");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("probe_cost.md"), &table).unwrap();
    println!("\n{table}");
}
