//! A `bthost record` run in the background, in its own session with the job it starts, and
//! stopped as Ctrl-C would stop it: for tests of hangs, where the job never ends by itself.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::bthost_bin;

pub struct Recording {
    child: Child,
    pub log: PathBuf,
    err: PathBuf,
}

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

impl Recording {
    /// Starts `prefix... bthost record ARGS -o LOG [-- JOB...]` (prefix: e.g. `unshare --uts`)
    /// in a new session, its stderr kept in LOG.stderr; returns once it says it is tracing.
    pub fn start(prefix: &[&str], args: &[String], log: &Path, job: &[String]) -> Recording {
        let err = log.with_extension("stderr");
        let mut cmd = Command::new("setsid");
        cmd.args(prefix)
            .arg(bthost_bin())
            .arg("record")
            .args(args)
            .arg("-o")
            .arg(log);
        if !job.is_empty() {
            cmd.arg("--").args(job);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .expect("start bthost record");
        let mut r = Recording {
            child,
            log: log.to_path_buf(),
            err,
        };
        r.wait_for(
            |e| e.contains("bthost: tracing"),
            "it never said it was tracing",
        );
        r
    }

    /// What record said so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Waits (at most two minutes, a liveness bound) until `cond` holds of record's stderr.
    pub fn wait_for(&mut self, cond: impl Fn(&str) -> bool, what: &str) {
        let t = Instant::now();
        loop {
            let e = self.stderr();
            if cond(&e) {
                return;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("bthost record exited ({st}): {what}:\n{e}");
            }
            assert!(t.elapsed() < Duration::from_secs(120), "{what}:\n{e}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops tracing as Ctrl-C would and waits for record; returns its stderr. What is left
    /// of the job is killed when the Recording is dropped.
    pub fn stop(&mut self) -> String {
        // SAFETY: kill(2) of our child.
        unsafe { kill(self.child.id() as i32, 2) };
        let st = self.child.wait().unwrap();
        let e = self.stderr();
        assert!(
            e.contains("bthost: the log is complete"),
            "record ({st}) did not complete the log:\n{e}"
        );
        e
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        // The session: record, and the job it started with its ranks.
        // SAFETY: kill(2) of our child's process group.
        unsafe { kill(-(self.child.id() as i32), 9) };
        let _ = self.child.wait();
    }
}

/// A job in its own session, its stdout in a file, killed whole when dropped.
pub struct Job {
    child: Child,
    pub out: PathBuf,
}

impl Job {
    pub fn start(cmd: &[String], out: &Path) -> Job {
        let child = Command::new("setsid")
            .args(cmd)
            .stdout(std::fs::File::create(out).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the job");
        Job {
            child,
            out: out.to_path_buf(),
        }
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Waits until `cond` holds of the job's stdout (a liveness bound of two minutes).
    pub fn wait_for(&self, cond: impl Fn(&str) -> bool, what: &str) -> String {
        let t = Instant::now();
        loop {
            let o = self.stdout();
            if cond(&o) {
                return o;
            }
            assert!(t.elapsed() < Duration::from_secs(120), "{what}:\n{o}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        // SAFETY: kill(2) of our child's process group.
        unsafe { kill(-(self.child.id() as i32), 9) };
        let _ = self.child.wait();
    }
}
