//! The flight recorder on a real hang (stand-in RCCL ranks, real bpftrace 0.17 and 0.23):
//! `record --flight-recorder N --on-hang 2` writes nothing while the job runs, dumps the rings
//! when the ranks have waited 2 s with no call completing, while they still hang, and the log
//! holds at most N records per thread (a later dump writes only what is new). `convert` shows
//! the hung collective in flight on the waiting ranks. `bthost dump` asks for a dump too.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bthost_tests::*;

// Fewer than each rank writes (about 14), so the ring wraps.
const N: usize = 8;

/// A recorder in its own session, so that it and the job it started can be killed together.
struct Recorder(Child);

impl Recorder {
    fn start(bin: &Path, standins: &Path, log: &Path, extra: &[&str], job: &str) -> Recorder {
        let lib = |p: &str, f: &str| format!("{p}={}", standins.join(f).display());
        let mut cmd = Command::new("setsid");
        cmd.arg(bthost_bin())
            .args(["record", "--packs", "rccl,hip", "--bpftrace-bin"])
            .arg(bin)
            .args(["--lib", &lib("rccl", "librccl.so.1")])
            .args(["--lib", &lib("hip", "libamdhip64.so.5")])
            .args(extra)
            .arg("-o")
            .arg(log)
            .arg("--")
            .args(job.split(' '))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log.with_extension("stderr")).unwrap());
        Recorder(cmd.spawn().expect("start bthost record"))
    }

    fn stderr(log: &Path) -> String {
        std::fs::read_to_string(log.with_extension("stderr")).unwrap_or_default()
    }

    /// Stops tracing as Ctrl-C would, waits for record to end, then kills what is left of the
    /// job (record leaves a command that outlives the stop running).
    fn stop(mut self) {
        // SAFETY: kill(2) of our own child.
        unsafe { kill(self.0.id() as i32, 2) };
        let status = self.0.wait().unwrap();
        assert!(
            status.success() || status.code() == Some(3),
            "record: {status}"
        );
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        // The session: record, the job and its ranks (bpftrace is in a group of its own, and
        // stops when record does).
        unsafe { kill(-(self.0.id() as i32), 9) };
        let _ = self.0.wait();
    }
}

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < Duration::from_secs(120), "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The ranks of the job, alive: the rank processes of `rccl_ranks` (the parent's children).
fn ranks_alive(stdout_pids: &[u32]) -> bool {
    stdout_pids
        .iter()
        .all(|p| Path::new(&format!("/proc/{p}")).exists())
}

fn pids_of(comm: &str) -> Vec<u32> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm) {
            v.push(pid);
        }
    }
    v
}

/// Stored ring records per thread in the log.
fn ring_records(log: &str) -> HashMap<u32, usize> {
    let mut per = HashMap::new();
    for l in log.lines().filter(|l| l.starts_with("@f[")) {
        let tid: u32 = l[3..].split(',').next().unwrap().parse().unwrap();
        *per.entry(tid).or_default() += 1;
    }
    per
}

#[test]
fn a_hang_dumps_the_flight_recorder_while_the_ranks_still_wait() {
    if skip_root_tests() {
        return;
    }
    for (bin, version) in &available_bpftraces() {
        let dir = scratch(&format!("flight-{version}"));
        let standins = build_standins(&dir.join("standins"));
        let log = dir.join("run.log");
        // 4 ranks, 3 collectives each; rank 2 skips #2, the others wait there (the stand-in
        // gives up after 100 s, far past the test).
        let job = format!(
            "{} -n 4 -k 3 -s 2:1 -t 100000",
            standins.join("rccl_ranks").display()
        );
        let _serial = system_wide_lock();
        let rec = Recorder::start(
            bin,
            &standins,
            &log,
            &["--flight-recorder", &N.to_string(), "--on-hang", "2"],
            &job,
        );
        wait_until(&format!("{version}: no on-hang dump"), || {
            std::fs::read_to_string(&log).is_ok_and(|t| t.contains("\n#Z 1\n"))
        });
        // The dump came while the ranks still waited: all four processes are alive.
        let ranks = pids_of("rccl_ranks");
        assert!(ranks.len() >= 4, "{version}: {ranks:?}");
        assert!(ranks_alive(&ranks), "{version}");
        let at_dump = std::fs::read_to_string(&log).unwrap();
        // Nothing but thread names before the dump: the records stayed in the kernel.
        let before = &at_dump[..at_dump.find("\n#E ").unwrap()];
        assert!(
            !before.contains("\n@f["),
            "{version}: records before the dump"
        );
        // A dump on demand, then the stop's own: neither repeats what the first wrote.
        let o = bthost(&["dump", "--pid", &rec.0.id().to_string()]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        wait_until(&format!("{version}: no dump on demand"), || {
            std::fs::read_to_string(&log).is_ok_and(|t| t.contains("\n#Z 2\n"))
        });
        rec.stop();
        let err = Recorder::stderr(&log);
        assert!(
            err.contains("calls in flight for 2.0 s with none completing"),
            "{version}: {err}"
        );
        let text = std::fs::read_to_string(&log).unwrap();
        let per_thread = ring_records(&text);
        for (tid, n) in &per_thread {
            assert!(
                *n <= N,
                "{version}: thread {tid} has {n} records in the log"
            );
        }
        assert!(
            per_thread.values().any(|&n| n == N),
            "{version}: {per_thread:?}"
        );

        let out = dir.join("out");
        let summary = bthost_convert(&log, &out, &[]);
        assert!(!summary.contains("LOST"), "{version}: {summary}");
        // The ranks wrote more than N records each: the ring dropped the oldest, as it should.
        assert!(
            summary.contains("older records overwritten by the flight recorder"),
            "{version}: {summary}"
        );
        let txt = std::fs::read_to_string(out.join("log.txt")).unwrap();
        let in_flight: Vec<&str> = txt
            .lines()
            .take_while(|l| l.starts_with('#'))
            .filter(|l| l.starts_with("#   pid ") && l.contains("UNFINISHED"))
            .collect();
        let stuck: Vec<&&str> = in_flight
            .iter()
            .filter(|l| l.contains("ncclAllReduce(") && l.contains("seq=2,"))
            .collect();
        assert_eq!(stuck.len(), 3, "{version}: {}", in_flight.join("\n"));
    }
}
