//! `bthost record` on a program that makes a handful of calls and exits at once, 50 times per
//! bpftrace version and way of recording: every record is in the log every time (the drain
//! barrier and the last dump: stopping bpftrace right after the command exited used to lose
//! the tail, 0 to 6 records of 6), and the code address is symbolized every time (the process's
//! memory map is copied before it exits, however short its life).

use std::path::Path;
use std::process::Command;

use bthost_tests::*;

const RUNS: usize = 50;
const ITERATIONS: usize = 3;

/// One `record` and `convert` of short_app; panics with the run's outputs unless all is there.
/// Returns whether the process was held at its exit for its map.
fn one_run(bin: &Path, mode: &[&str], app: &Path, dir: &Path, i: usize) -> bool {
    let log = dir.join(format!("run{i}.log"));
    let fixtures = root().join("tests/fixtures/packs");
    let o = Command::new(bthost_bin())
        .arg("--pack-path")
        .arg(&fixtures)
        .args(["record", "--packs", "shortapp", "--bpftrace-bin"])
        .arg(bin)
        .arg("--lib")
        .arg(format!("shortapp={}", app.display()))
        .args(mode)
        .arg("-o")
        .arg(&log)
        .arg("--")
        .arg(app)
        .arg(ITERATIONS.to_string())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "run {i} {mode:?}: {err}");
    let out = dir.join(format!("run{i}"));
    let summary = String::from_utf8_lossy(
        &Command::new(bthost_bin())
            .arg("--pack-path")
            .arg(&fixtures)
            .arg("convert")
            .arg(&log)
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap()
            .stderr,
    )
    .into_owned();
    let text = std::fs::read_to_string(out.join("log.txt")).unwrap_or_default();
    let why = || format!("run {i} {mode:?}:\n{err}\n{summary}\n{text}");
    let launches = text
        .lines()
        .filter(|l| l.contains("launch_wrapper(kernel=short_kernel+0x0 at "))
        .count();
    let completions = text
        .lines()
        .filter(|l| l.contains("on_complete(i="))
        .count();
    assert_eq!(
        (launches, completions),
        (ITERATIONS, ITERATIONS),
        "{}",
        why()
    );
    assert!(!text.contains("UNFINISHED"), "{}", why());
    assert!(
        summary.contains(&format!(
            "code addresses: {ITERATIONS} symbolized, 0 left as addresses"
        )),
        "{}",
        why()
    );
    assert!(!summary.contains("LOST"), "{}", why());
    err.contains("held at their exit")
}

#[test]
fn a_short_program_loses_nothing_fifty_times() {
    if skip_root_tests() {
        return;
    }
    let versions = available_bpftraces();
    assert!(
        versions.len() >= 2,
        "want bpftrace 0.17 and 0.23: {versions:?}"
    );
    for (bin, version) in &versions {
        for mode in [&[][..], &["--flight-recorder", "64"][..]] {
            let name = if mode.is_empty() { "maps" } else { "ring" };
            let dir = scratch(&format!("record-short-{version}-{name}"));
            let app = compile_workload("short_app", &dir, &[]);
            let _serial = system_wide_lock();
            let mut held = 0;
            for i in 0..RUNS {
                held += usize::from(one_run(bin, mode, &app, &dir, i));
            }
            // Which way the map was copied (at the first call, or held at the exit) depends
            // on timing; either must give every address.
            eprintln!("bpftrace {version} {name}: {RUNS} runs complete, {held} held at exit");
        }
    }
}
