//! `bthost record` when things fail under it (issue 20): bpftrace killed with SIGKILL while it
//! traces (as the OOM killer does), with records in maps and as a flight recorder, on each
//! bpftrace; and the log's file system full. Real bpftrace, real signals, a real small tmpfs.
//! record must say the cause, end, and leave a log that converts with what was written before.
//! No timing is asserted: only what is said, and that it ends (the limits below are generous
//! guards against a hang, not measurements).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use bthost_tests::*;

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;

/// Kills the processes it names when dropped (a failed test leaves no workload behind).
struct Reap(Vec<i32>);

impl Drop for Reap {
    fn drop(&mut self) {
        for &p in &self.0 {
            // SAFETY: kill(2) of a process this test started (or its recorder's command).
            unsafe { kill(p, SIGKILL) };
        }
    }
}

/// Unmounts the folder when dropped, even when the test fails.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// Waits until `f` yields, while `rec` runs; panics with `what` and record's stderr otherwise.
fn wait_until<T>(rec: &mut Child, err: &Path, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let t = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if let Some(st) = rec.try_wait().unwrap() {
            // One last look: it may have come just before the exit.
            if let Some(v) = f() {
                return v;
            }
            panic!("record exited ({st}) before {what}:\n{}", read(err));
        }
        assert!(
            t.elapsed() < Duration::from_secs(180),
            "no {what} after 180 s:\n{}",
            read(err)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for `rec` to exit (a generous guard, not a timing assertion).
fn wait_exit(rec: &mut Child, err: &Path) -> ExitStatus {
    let t = Instant::now();
    loop {
        if let Some(st) = rec.try_wait().unwrap() {
            return st;
        }
        if t.elapsed() > Duration::from_secs(180) {
            let _ = rec.kill();
            panic!("record did not exit within 180 s:\n{}", read(err));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The children of `pid`, from each of its threads' `children` list.
fn children(pid: u32) -> Vec<u32> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in rd.flatten() {
            let c = read(&t.path().join("children"));
            v.extend(
                c.split_ascii_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    v
}

/// record's bpftrace: its child whose command line names bpftrace (0.23 runs under its own
/// dynamic loader, so its name is not `bpftrace`).
fn bpftrace_of(rec: u32) -> Option<u32> {
    children(rec).into_iter().find(|c| {
        std::fs::read(format!("/proc/{c}/cmdline"))
            .map(|l| String::from_utf8_lossy(&l).contains("bpftrace"))
            .unwrap_or(false)
    })
}

/// steady_app's newest count of calls made, from its stdout.
fn made(out: &str) -> Option<u64> {
    out.lines()
        .filter_map(|l| l.strip_prefix("steady_app made "))
        .filter_map(|n| n.trim().parse().ok())
        .next_back()
}

fn app_pid(out: &str) -> Option<i32> {
    out.lines()
        .find_map(|l| l.strip_prefix("steady_app pid "))
        .and_then(|p| p.trim().parse().ok())
}

fn record_cmd(bin: &Path, app: &Path, mode: &[&str], log: &Path) -> Command {
    let mut c = Command::new(bthost_bin());
    c.arg("--pack-path")
        .arg(root().join("tests/fixtures/packs"))
        .args(["record", "--packs", "shortapp", "--bpftrace-bin"])
        .arg(bin)
        .arg("--lib")
        .arg(format!("shortapp={}", app.display()))
        .args(mode)
        .arg("-o")
        .arg(log);
    c
}

fn convert(log: &Path, out: &Path) -> (String, String) {
    let fixtures = root().join("tests/fixtures/packs");
    let summary = bthost_ok_stderr(&[
        "--pack-path",
        fixtures.to_str().unwrap(),
        "convert",
        log.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    (summary, read(&out.join("log.txt")))
}

/// One recording of `steady_app` under `record -- CMD`, its bpftrace SIGKILLed while it
/// traces.
fn killed_bpftrace(bin: &Path, version: &semver::Version, name: &str, mode: &[&str]) {
    let ring = name == "ring";
    let dir = scratch(&format!("record-faults-kill-{version}-{name}"));
    let app = compile_workload("steady_app", &dir, &[]);
    let log = dir.join("run.log");
    let err_path = dir.join("record.stderr");
    let out_path = dir.join("app.stdout");
    let _serial = system_wide_lock();
    let mut rec = record_cmd(bin, &app, mode, &log)
        .arg("--")
        .arg(&app)
        .arg("300")
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let mut reap = Reap(vec![rec.id() as i32]);
    let ctx = format!("{version} {name}");
    wait_until(&mut rec, &err_path, "tracing", || {
        read(&err_path).contains("bthost: tracing").then_some(())
    });
    let pid = wait_until(&mut rec, &err_path, "the app's pid", || {
        app_pid(&read(&out_path))
    });
    reap.0.push(pid);
    let bt = bpftrace_of(rec.id()).unwrap_or_else(|| panic!("{ctx}: no bpftrace child"));
    // Calls are being made (and traced); with maps, every record of the calls made by now is
    // drained into the log well before the kill (a drain every 50 ms).
    let before = wait_until(&mut rec, &err_path, "calls", || {
        made(&read(&out_path)).filter(|&n| n >= 200)
    });
    std::thread::sleep(Duration::from_secs(1));
    if ring {
        // The flight recorder writes nothing until a dump: one before the kill.
        bthost_ok_stderr(&["dump", "--pid", &rec.id().to_string()]);
        wait_until(&mut rec, &err_path, "the dump in the log", || {
            read(&log).contains("\n#Z 1\n").then_some(())
        });
    }
    // SAFETY: kill(2) of record's bpftrace, as the OOM killer would.
    assert_eq!(unsafe { kill(bt as i32, SIGKILL) }, 0, "{ctx}");
    let said = wait_until(&mut rec, &err_path, "the untraced command said", || {
        let e = read(&err_path);
        e.contains("is still running, untraced").then_some(e)
    });
    assert!(
        said.contains("bthost: error: bpftrace was killed by SIGKILL: the OOM killer? see `dmesg`")
            && said.contains("tracing stopped early"),
        "{ctx}: {said}"
    );
    assert!(
        said.contains(&format!("the command (pid {pid}) is still running")),
        "{ctx}: {said}"
    );
    // The command was not killed: record waits for it.
    // SAFETY: kill(2) with signal 0: whether the process exists.
    assert_eq!(unsafe { kill(pid, 0) }, 0, "{ctx}: the command is gone");
    assert!(rec.try_wait().unwrap().is_none(), "{ctx}: {said}");
    // SAFETY: kill(2) of the workload.
    unsafe { kill(pid, SIGTERM) };
    let st = wait_exit(&mut rec, &err_path);
    let err = read(&err_path);
    assert!(!st.success(), "{ctx}: record succeeded:\n{err}");
    assert!(
        err.contains("the command exited (exit status: 0), untraced")
            && err.contains("the log is closed, cut short"),
        "{ctx}: {err}"
    );
    // The log is closed with its early-stop mark, then its end anchor.
    let text = read(&log);
    let tail: Vec<&str> = text.lines().rev().take(2).collect();
    assert!(
        tail[0].starts_with("#C end ")
            && tail[1].starts_with("#Q ")
            && tail[1].contains("bpftrace was killed by SIGKILL"),
        "{ctx}: the log ends {tail:?}"
    );
    let (summary, txt) = convert(&log, &dir.join("out"));
    assert!(
        summary.contains("tracing stopped early: bpftrace was killed by SIGKILL"),
        "{ctx}: {summary}"
    );
    let completes = txt.lines().filter(|l| l.contains("on_complete(i=")).count() as u64;
    if ring {
        // The dump: the ring's last 64 records of the thread, half of them on_complete.
        assert!(completes >= 30, "{ctx}: {completes} calls:\n{summary}");
    } else {
        assert!(
            completes >= before,
            "{ctx}: {completes} calls in the log, {before} made a second before the kill:\n{summary}"
        );
    }
    let fixtures = root().join("tests/fixtures/packs");
    let report = bthost_ok(&[
        "--pack-path",
        fixtures.to_str().unwrap(),
        "report",
        log.to_str().unwrap(),
    ]);
    assert!(
        report.contains("tracing stopped early at ")
            && report.contains("bpftrace was killed by SIGKILL"),
        "{ctx}: {report}"
    );
    let json: serde_json::Value = serde_json::from_str(&bthost_ok(&[
        "--pack-path",
        fixtures.to_str().unwrap(),
        "report",
        "--json",
        log.to_str().unwrap(),
    ]))
    .unwrap();
    let early = json["logs"][0]["stopped_early"]
        .as_str()
        .unwrap_or_default();
    assert!(
        early.contains("bpftrace was killed by SIGKILL"),
        "{ctx}: {json}"
    );
}

#[test]
fn a_killed_bpftrace_is_said_at_once_and_the_log_is_closed() {
    if skip_root_tests() {
        return;
    }
    let versions = available_bpftraces();
    assert!(
        versions.len() >= 2,
        "want bpftrace 0.17 and 0.23: {versions:?}"
    );
    for (bin, version) in &versions {
        killed_bpftrace(bin, version, "maps", &[]);
        killed_bpftrace(bin, version, "ring", &["--flight-recorder", "64"]);
    }
}

#[test]
fn a_full_file_system_is_said_with_the_bytes_written() {
    if skip_root_tests() {
        return;
    }
    for (bin, version) in &available_bpftraces() {
        let dir = scratch(&format!("record-faults-full-{version}"));
        let app = compile_workload("steady_app", &dir, &[]);
        let full = dir.join("full");
        std::fs::create_dir_all(&full).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=300k", "tmpfs"])
            .arg(&full)
            .status()
            .unwrap();
        assert!(st.success(), "mount a tmpfs on {}", full.display());
        let _unmount = Unmount(full.clone());
        let log = full.join("run.log");
        let err_path = dir.join("record.stderr");
        let _serial = system_wide_lock();
        // System-wide, without a command: record ends on its own when the log fails.
        let mut rec = record_cmd(bin, &app, &[], &log)
            .stderr(std::fs::File::create(&err_path).unwrap())
            .spawn()
            .unwrap();
        let mut reap = Reap(vec![rec.id() as i32]);
        wait_until(&mut rec, &err_path, "tracing", || {
            read(&err_path).contains("bthost: tracing").then_some(())
        });
        let mut w = Command::new(&app)
            .arg("300")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        reap.0.push(w.id() as i32);
        let st = wait_exit(&mut rec, &err_path);
        let err = read(&err_path);
        assert!(!st.success(), "{version}: record succeeded:\n{err}");
        let line = err
            .lines()
            .find(|l| l.starts_with("bthost: error: cannot write "))
            .unwrap_or_else(|| panic!("{version}: {err}"));
        assert!(
            line.contains(&format!(
                "cannot write {}: No space left on device (os error 28) after ",
                log.display()
            )) && line.ends_with(" bytes"),
            "{version}: {line}"
        );
        let bytes: u64 = line
            .trim_end_matches(" bytes")
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{version}: {line}"));
        // What reached the disk stays, and is what was said.
        let size = std::fs::metadata(&log).unwrap().len();
        assert!(
            bytes > 0 && size == bytes,
            "{version}: {size} bytes, said {bytes}"
        );
        // Its records convert (the last line may be cut off).
        let (summary, txt) = convert(&log, &dir.join("out"));
        assert!(
            txt.lines().any(|l| l.contains("on_complete(i=")),
            "{version}: {summary}"
        );
        let _ = w.kill();
        let _ = w.wait();
    }
}
