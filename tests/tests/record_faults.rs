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

/// A tmpfs of `size` mounted at DIR/full, unmounted when the guard drops.
fn small_tmpfs(dir: &Path, size: &str) -> (PathBuf, Unmount) {
    let full = dir.join("full");
    std::fs::create_dir_all(&full).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(&full)
        .status()
        .unwrap();
    assert!(st.success(), "mount a tmpfs on {}", full.display());
    (full.clone(), Unmount(full))
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

/// `record MODE -- steady_app 300`, tracing, with the app's pid known and 200 calls made.
struct Traced {
    rec: Child,
    reap: Reap,
    pid: i32,
    err: PathBuf,
    out: PathBuf,
    /// Calls made when it was ready.
    made: u64,
}

fn traced_app(
    bin: &Path,
    app: &Path,
    dir: &Path,
    mode: &[&str],
    log: &Path,
    env: &[(&str, &str)],
) -> Traced {
    let err = dir.join("record.stderr");
    let out = dir.join("app.stdout");
    let mut rec = record_cmd(bin, app, mode, log)
        .envs(env.iter().copied())
        .arg("--")
        .arg(app)
        .arg("300")
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let mut reap = Reap(vec![rec.id() as i32]);
    wait_until(&mut rec, &err, "tracing", || {
        read(&err).contains("bthost: tracing").then_some(())
    });
    let pid = wait_until(&mut rec, &err, "the app's pid", || app_pid(&read(&out)));
    reap.0.push(pid);
    let made = wait_until(&mut rec, &err, "calls", || {
        made(&read(&out)).filter(|&n| n >= 200)
    });
    Traced {
        rec,
        reap,
        pid,
        err,
        out,
        made,
    }
}

/// One recording of `steady_app` under `record -- CMD`, its bpftrace SIGKILLed while it
/// traces.
fn killed_bpftrace(bin: &Path, version: &semver::Version, name: &str, mode: &[&str]) {
    let ring = name == "ring";
    let dir = scratch(&format!("record-faults-kill-{version}-{name}"));
    let app = compile_workload("steady_app", &dir, &[]);
    let log = dir.join("run.log");
    let _serial = system_wide_lock();
    let Traced {
        mut rec,
        reap: _reap,
        pid,
        err: err_path,
        made: before,
        ..
    } = traced_app(bin, &app, &dir, mode, &log, &[]);
    let ctx = format!("{version} {name}");
    let bt = bpftrace_of(rec.id()).unwrap_or_else(|| panic!("{ctx}: no bpftrace child"));
    // Calls are being made (and traced); with maps, every record of the calls made by now is
    // drained into the log well before the kill (a drain every 50 ms).
    std::thread::sleep(Duration::from_secs(1));
    if ring {
        // The flight recorder writes nothing until a dump: one before the kill.
        dumped(&mut rec, &err_path, &log, 1);
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
        killed_bpftrace(
            bin,
            version,
            "ring",
            &["--flight-recorder", "64", "--no-restart"],
        );
    }
}

/// Asks `rec` for its flight recorder's dump `n` and waits for its end in the log.
fn dumped(rec: &mut Child, err: &Path, log: &Path, n: u32) {
    bthost_ok_stderr(&["dump", "--pid", &rec.id().to_string()]);
    let z = format!("\n#Z {n:x}\n");
    wait_until(rec, err, &format!("dump {n} in the log"), || {
        read(log).contains(&z).then_some(())
    });
}

/// Lets what was traced reach the log before a kill: the flight recorder's dump `n`, or a
/// second of drains (every 50 ms) with maps.
fn settle(rec: &mut Child, err: &Path, log: &Path, ring: bool, n: u32) {
    if ring {
        dumped(rec, err, log, n);
    } else {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The `i` of every `on_complete` call in a converted log.txt.
fn completed(txt: &str) -> Vec<u64> {
    txt.lines()
        .filter_map(|l| l.split("on_complete(i=").nth(1))
        .filter_map(|r| r.split(')').next()?.parse().ok())
        .collect()
}

/// The calls' numbers, sorted, cut at their largest jump (a gap in tracing): before, after.
fn split_at_gap(done: &[u64]) -> Option<(Vec<u64>, Vec<u64>)> {
    let mut d = done.to_vec();
    d.sort_unstable();
    let cut = (1..d.len()).max_by_key(|&k| d[k] - d[k - 1])?;
    let after = d.split_off(cut);
    Some((d, after))
}

/// The bpftrace child of `rec` other than `old`, once there is one.
fn new_bpftrace(rec: &mut Child, err: &Path, old: u32) -> u32 {
    let id = rec.id();
    wait_until(rec, err, "a new bpftrace", || {
        children(id).into_iter().find(|&c| {
            c != old
                && std::fs::read(format!("/proc/{c}/cmdline"))
                    .map(|l| String::from_utf8_lossy(&l).contains("bpftrace"))
                    .unwrap_or(false)
        })
    })
}

/// `record --restart` (the flight recorder's default): bpftrace SIGKILLed is run again and the
/// log goes on after a `#G` gap mark, with the calls made after it; killed again at once, it is
/// not run a third time, and the log ends with its `#Q` mark.
fn restarted_bpftrace(bin: &Path, version: &semver::Version, name: &str, mode: &[&str]) {
    let ring = name == "ring";
    let dir = scratch(&format!("record-faults-restart-{version}-{name}"));
    let app = compile_workload("steady_app", &dir, &[]);
    let log = dir.join("run.log");
    let _serial = system_wide_lock();
    // Any second kill counts as quick, however slow this machine is today.
    let env = [("BTHOST_RESTART_TOO_SOON_S", "3600")];
    let Traced {
        mut rec,
        reap: _reap,
        pid,
        err: err_path,
        out: out_path,
        ..
    } = traced_app(bin, &app, &dir, mode, &log, &env);
    let ctx = format!("{version} {name}");
    let bt = bpftrace_of(rec.id()).unwrap_or_else(|| panic!("{ctx}: no bpftrace child"));
    // With maps, the calls made a second before the kill are all drained into the log by it
    // (a drain every 50 ms); those of its last 50 ms may not be.
    let drained = made(&read(&out_path)).unwrap();
    settle(&mut rec, &err_path, &log, ring, 1);
    let before_kill = made(&read(&out_path)).unwrap();
    // SAFETY: kill(2) of record's bpftrace, as the OOM killer would.
    assert_eq!(unsafe { kill(bt as i32, SIGKILL) }, 0, "{ctx}");
    let said = wait_until(&mut rec, &err_path, "the restart", || {
        let e = read(&err_path);
        e.contains(": restarted, ").then_some(e)
    });
    assert!(
        said.contains("bthost: error: bpftrace was killed by SIGKILL: the OOM killer? see `dmesg`")
            && said.contains("into tracing: restarting it"),
        "{ctx}: {said}"
    );
    let bt2 = new_bpftrace(&mut rec, &err_path, bt);
    let at_restart = made(&read(&out_path)).unwrap();
    wait_until(&mut rec, &err_path, "calls after the restart", || {
        made(&read(&out_path)).filter(|&n| n >= at_restart + 200)
    });
    settle(&mut rec, &err_path, &log, ring, 2);
    let before_kill2 = made(&read(&out_path)).unwrap();
    // SAFETY: as above.
    assert_eq!(unsafe { kill(bt2 as i32, SIGKILL) }, 0, "{ctx}");
    let said = wait_until(&mut rec, &err_path, "the give-up", || {
        let e = read(&err_path);
        e.contains("is still running, untraced").then_some(e)
    });
    assert!(
        said.contains("tracing stopped early (not restarted again: it ended "),
        "{ctx}: {said}"
    );
    // SAFETY: kill(2) of the workload.
    unsafe { kill(pid, SIGTERM) };
    let st = wait_exit(&mut rec, &err_path);
    let err = read(&err_path);
    assert!(!st.success(), "{ctx}: record succeeded:\n{err}");
    assert!(err.contains("bthost: tracing had a gap: "), "{ctx}: {err}");

    let text = read(&log);
    let gaps: Vec<&str> = text.lines().filter(|l| l.starts_with("#G ")).collect();
    assert_eq!(gaps.len(), 1, "{ctx}: {gaps:?}");
    assert!(gaps[0].contains("bpftrace was killed by SIGKILL"), "{ctx}");
    // The restarted bpftrace's header is not written again.
    assert_eq!(text.matches("#bthost ").count(), 1, "{ctx}");
    let tail: Vec<&str> = text.lines().rev().take(2).collect();
    assert!(
        tail[0].starts_with("#C end ")
            && tail[1].starts_with("#Q ")
            && tail[1].contains("not restarted again"),
        "{ctx}: the log ends {tail:?}"
    );
    let (summary, txt) = convert(&log, &dir.join("out"));
    assert!(
        summary.contains("tracing stopped for ")
            && summary.contains("and started again: bpftrace was killed by SIGKILL"),
        "{ctx}: {summary}"
    );
    // The gap: the largest jump in the calls' numbers (about a second of calls, made while
    // nothing traced).
    let done = completed(&txt);
    let (first, second) = split_at_gap(&done).unwrap_or_else(|| panic!("{ctx}: {summary}"));
    assert!(
        second[0] > first[first.len() - 1] + 100 && second[0] > before_kill,
        "{ctx}: the gap is from call {} to {}, the kill after {before_kill}",
        first[first.len() - 1],
        second[0]
    );
    if ring {
        // Each dump: the ring's last 64 records of the thread, half of them on_complete.
        assert!(first.len() >= 30, "{ctx}: {} before the gap", first.len());
    } else {
        assert!(
            first.len() as u64 >= drained,
            "{ctx}: {} calls before the gap, {drained} made a second before the kill",
            first.len()
        );
    }
    // Calls after the restart are there, up to the second kill.
    assert!(
        second.len() >= 30 && second.iter().all(|&i| i <= before_kill2 + 1000),
        "{ctx}: {} calls after the restart ({at_restart} made at the restart):\n{summary}",
        second.len()
    );
    let fixtures = root().join("tests/fixtures/packs");
    let report = bthost_ok(&[
        "--pack-path",
        fixtures.to_str().unwrap(),
        "report",
        log.to_str().unwrap(),
    ]);
    assert!(
        report.contains("tracing stopped on ")
            && report.contains("bpftrace was killed by SIGKILL")
            && report.contains("nothing was traced in between"),
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
    assert_eq!(
        json["logs"][0]["gaps"].as_array().map(Vec::len),
        Some(1),
        "{ctx}: {json}"
    );
}

#[test]
fn a_killed_bpftrace_is_restarted_after_a_gap_and_given_up_when_killed_again_at_once() {
    if skip_root_tests() {
        return;
    }
    for (bin, version) in &available_bpftraces() {
        restarted_bpftrace(bin, version, "ring", &["--flight-recorder", "64"]);
        restarted_bpftrace(bin, version, "maps", &["--restart"]);
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
        let (full, _unmount) = small_tmpfs(&dir, "300k");
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

/// Fills the file system of `dir` with one file (until ENOSPC); returns it.
fn fill(dir: &Path) -> PathBuf {
    let filler = dir.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", filler.display()))
        .stderr(Stdio::null())
        .status();
    filler
}

/// The flight recorder on a disk that fills (`--disk-full wait`, its default): the dump that
/// meets the full disk is taken back whole, tracing goes on, and once there is room again the
/// flight recorder is dumped anew; the log never holds half a dump.
#[test]
fn a_full_disk_under_the_flight_recorder_takes_the_dump_back_and_dumps_when_there_is_room() {
    if skip_root_tests() {
        return;
    }
    for (bin, version) in &available_bpftraces() {
        let dir = scratch(&format!("record-faults-room-{version}"));
        let app = compile_workload("steady_app", &dir, &[]);
        let (full, _unmount) = small_tmpfs(&dir, "4m");
        let log = full.join("run.log");
        let _serial = system_wide_lock();
        let Traced {
            mut rec,
            reap: _reap,
            pid,
            err: err_path,
            out: out_path,
            ..
        } = traced_app(bin, &app, &dir, &["--flight-recorder", "64"], &log, &[]);
        let ctx = version.to_string();
        let dump = |rec: &Child| bthost_ok_stderr(&["dump", "--pid", &rec.id().to_string()]);
        dump(&rec);
        wait_until(&mut rec, &err_path, "dump 1", || {
            read(&log).ends_with("#Z 1\n").then_some(())
        });
        let kept = std::fs::metadata(&log).unwrap().len();
        let filler = fill(&full);
        let at_full = made(&read(&out_path)).unwrap();
        dump(&rec);
        let said = wait_until(&mut rec, &err_path, "the dump taken back", || {
            let e = read(&err_path);
            e.contains("is dumped again when").then_some(e)
        });
        assert!(
            said.contains(&format!(
                "cannot write {}: No space left on device (os error 28) after ",
                log.display()
            )) && said.contains(&format!(
                "this dump is taken back whole (the log keeps the {kept} bytes before it)"
            )),
            "{ctx}: {said}"
        );
        // Cut back to the end of the first dump, and still tracing.
        assert_eq!(std::fs::metadata(&log).unwrap().len(), kept, "{ctx}");
        assert!(read(&log).ends_with("#Z 1\n"), "{ctx}");
        assert!(rec.try_wait().unwrap().is_none(), "{ctx}: {said}");
        std::fs::remove_file(&filler).unwrap();
        wait_until(&mut rec, &err_path, "the dump once there is room", || {
            let e = read(&err_path);
            (e.contains("there is room for the log again") && read(&log).ends_with("#Z 3\n"))
                .then_some(())
        });
        // SAFETY: kill(2) of the workload: the command's exit ends tracing.
        unsafe { kill(pid, SIGTERM) };
        let st = wait_exit(&mut rec, &err_path);
        let err = read(&err_path);
        assert!(st.success(), "{ctx}: {err}");
        assert!(err.contains("bthost: the log is complete"), "{ctx}: {err}");
        let (summary, txt) = convert(&log, &dir.join("out"));
        assert!(
            !summary.contains("garbage") && !summary.contains("malformed"),
            "{ctx}: {summary}"
        );
        // The calls of the first dump, then (after the largest jump in their numbers: the
        // second of waiting for room) those of the dumps after the disk was full.
        let done = completed(&txt);
        let (first, later) = split_at_gap(&done).unwrap_or_else(|| panic!("{ctx}: {summary}"));
        assert!(
            first.len() >= 30 && later.len() >= 30 && later[0] > at_full,
            "{ctx}: {} calls of the first dump, {} after ({at_full} made when full):\n{summary}",
            first.len(),
            later.len()
        );
    }
}

/// `record --pid P --restart`: the restarted bpftrace knows of P (its script names it) but not
/// of the processes P started while the first one traced; record tells it of them again, and
/// their calls after the gap are in the log.
#[test]
fn a_restarted_bpftrace_traces_the_processes_of_the_pid_filter_again() {
    if skip_root_tests() {
        return;
    }
    let (bin, version) = &available_bpftraces()[0];
    let dir = scratch(&format!("record-faults-restart-pid-{version}"));
    let app = compile_workload("steady_app", &dir, &[]);
    let log = dir.join("run.log");
    let err_path = dir.join("record.stderr");
    let out_path = dir.join("app.stdout");
    let _serial = system_wide_lock();
    // The app is a child of the traced shell, started once tracing runs.
    let go = dir.join("go");
    let _ = std::fs::remove_file(&go);
    let mut w = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "while [ ! -e {} ]; do sleep 0.05; done; {} 300 & wait",
            go.display(),
            app.display()
        ))
        .stdout(std::fs::File::create(&out_path).unwrap())
        .spawn()
        .unwrap();
    let mut reap = Reap(vec![w.id() as i32]);
    let mut rec = record_cmd(bin, &app, &["--restart"], &log)
        .args(["--pid", &w.id().to_string()])
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    reap.0.push(rec.id() as i32);
    wait_until(&mut rec, &err_path, "tracing", || {
        read(&err_path).contains("bthost: tracing").then_some(())
    });
    let bt = bpftrace_of(rec.id()).expect("a bpftrace child");
    std::fs::write(&go, "").unwrap();
    let pid = wait_until(&mut rec, &err_path, "the app's pid", || {
        app_pid(&read(&out_path))
    });
    reap.0.push(pid);
    let n = made(&read(&out_path)).unwrap_or(0);
    wait_until(&mut rec, &err_path, "calls", || {
        made(&read(&out_path)).filter(|&m| m >= n + 300)
    });
    // SAFETY: kill(2) of record's bpftrace.
    assert_eq!(unsafe { kill(bt as i32, SIGKILL) }, 0);
    wait_until(&mut rec, &err_path, "the restart", || {
        read(&err_path).contains(": restarted, ").then_some(())
    });
    let n = made(&read(&out_path)).unwrap();
    wait_until(&mut rec, &err_path, "calls after the restart", || {
        made(&read(&out_path)).filter(|&m| m >= n + 300)
    });
    // SAFETY: kill(2) of record: it stops as at Ctrl-C.
    unsafe { kill(rec.id() as i32, SIGTERM) };
    let st = wait_exit(&mut rec, &err_path);
    let err = read(&err_path);
    assert!(st.success(), "{version}: {err}");
    let (summary, txt) = convert(&log, &dir.join("out"));
    let done = completed(&txt);
    let (first, second) = split_at_gap(&done).unwrap_or_else(|| panic!("{version}: {summary}"));
    assert!(
        first.len() >= 200 && second.len() >= 200,
        "{version}: {} calls before the gap, {} after:\n{summary}",
        first.len(),
        second.len()
    );
    // SAFETY: kill(2) of the app; the shell waits for it.
    unsafe { kill(pid, SIGTERM) };
    let _ = w.wait();
}
