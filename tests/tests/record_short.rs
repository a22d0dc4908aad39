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
    // bpftrace's RLIMIT_MEMLOCK complaint is not passed on (this kernel charges BPF memory to
    // the cgroup), and nothing else is an error.
    assert!(
        !err.contains("RLIMIT_MEMLOCK") && !err.contains("ERROR"),
        "{}",
        why()
    );
    err.contains("held at their exit")
}

/// Starts short_app, waiting for a line on its stdin before its calls.
fn spawn_app(app: &Path, args: &[&str]) -> std::process::Child {
    Command::new(app)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

fn pids_said(out: &str) -> Vec<u32> {
    out.lines()
        .filter_map(|l| l.split(" pid ").nth(1))
        .filter_map(|p| p.trim().parse().ok())
        .collect()
}

/// `record --pid`: the process given and the child it forks are traced, another process
/// running the same program is not; processes record did not start keep their maps too.
#[test]
fn a_pid_filter_traces_that_process_and_its_children_only() {
    if skip_root_tests() {
        return;
    }
    for (bin, version) in &available_bpftraces() {
        let dir = scratch(&format!("record-pid-{version}"));
        let app = compile_workload("short_app", &dir, &[]);
        let log = dir.join("run.log");
        let _serial = system_wide_lock();
        // Both wait for a line on stdin before their calls: sent once record is tracing.
        let mut mine = spawn_app(&app, &["3", "-1", "1"]);
        let mut other = spawn_app(&app, &["3", "-1"]);
        let err_path = dir.join("record.stderr");
        let mut rec = Command::new(bthost_bin())
            .arg("--pack-path")
            .arg(root().join("tests/fixtures/packs"))
            .args(["record", "--packs", "shortapp", "--bpftrace-bin"])
            .arg(bin)
            .arg("--lib")
            .arg(format!("shortapp={}", app.display()))
            .args(["--pid", &mine.id().to_string(), "-o"])
            .arg(&log)
            .stderr(std::fs::File::create(&err_path).unwrap())
            .spawn()
            .unwrap();
        let err = || std::fs::read_to_string(&err_path).unwrap_or_default();
        let t = std::time::Instant::now();
        while !err().contains("bthost: tracing") {
            assert!(rec.try_wait().unwrap().is_none(), "{version}: {}", err());
            assert!(
                t.elapsed().as_secs() < 120,
                "{version}: not tracing: {}",
                err()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        for app in [&mut mine, &mut other] {
            std::io::Write::write_all(app.stdin.as_mut().unwrap(), b"go\n").unwrap();
            app.wait().unwrap();
        }
        // SAFETY: kill(2) of our child: Ctrl-C.
        unsafe { kill(rec.id() as i32, 2) };
        assert!(rec.wait().unwrap().success(), "{version}: {}", err());
        let mut out = String::new();
        std::io::Read::read_to_string(mine.stdout.as_mut().unwrap(), &mut out).unwrap();
        let want = pids_said(&out);
        assert_eq!(want.len(), 2, "{out}");
        let out_dir = dir.join("out");
        let fixtures = root().join("tests/fixtures/packs");
        let summary = bthost_ok_stderr(&[
            "--pack-path",
            fixtures.to_str().unwrap(),
            "convert",
            log.to_str().unwrap(),
            "-o",
            out_dir.to_str().unwrap(),
        ]);
        let txt = std::fs::read_to_string(out_dir.join("log.txt")).unwrap();
        let traced: Vec<u32> = txt
            .lines()
            .filter_map(|l| l.strip_prefix("== process "))
            .filter_map(|l| l.trim_end_matches(" ==").parse().ok())
            .collect();
        let mut sorted = want.clone();
        sorted.sort_unstable();
        assert_eq!(traced, sorted, "{version}: {summary}\n{txt}");
        // Both processes' maps were copied (each exited within ms of its first call).
        assert!(
            summary.contains("code addresses: 6 symbolized, 0 left as addresses"),
            "{version}: {summary}"
        );
    }
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
