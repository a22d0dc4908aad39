//! `record --restart` (the default for the flight recorder, which runs for days): when
//! bpftrace ends without record stopping it (the OOM killer, an operator's kill, its own
//! crash), record runs it again on the same script and the log goes on after a gap mark
//! (`#G <from> <to> <why>`, crate::record::lines) that `convert` and `report` show. A
//! bpftrace that ends as quickly again is not run a third time: record gives up, says why, and
//! closes the log with its `#Q` mark, as without `--restart`.
//!
//! What the dead bpftrace knew is gone with its maps: the flight recorder's rings (their
//! records were never dumped), the calls in flight, and, with a pid filter, which processes to
//! trace. The last is told again: every process that wrote records, and the roots of the
//! filter, with their descendants.

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::process::ChildStdout;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::lines::{Ending, Polled, Resume, Seen};
use super::runner;
use super::Tracer;
use crate::bpftrace::Dialect;

/// A restarted bpftrace that ends within this long of its attach is not run again.
pub const TOO_SOON: Duration = Duration::from_secs(10);

/// [`TOO_SOON`], or `$BTHOST_RESTART_TOO_SOON_S` (tests set it long, so that whether a second
/// kill counts as quick does not depend on the machine's speed).
fn too_soon() -> Duration {
    std::env::var("BTHOST_RESTART_TOO_SOON_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(TOO_SOON, Duration::from_secs)
}
/// Nor is one past this many restarts: something keeps killing it.
pub const MAX_RESTARTS: u32 = 20;

/// What running bpftrace again takes, and how often it was.
pub struct Respawn {
    pub bin: PathBuf,
    pub script: String,
    pub dialect: Dialect,
    pub settings: runner::Settings,
    /// The line thread's side: each new bpftrace's output.
    pub next: Sender<Resume<Polled<ChildStdout>>>,
    /// The filter's roots (`--pid`, the command), when there is a filter.
    pub roots: Option<Vec<u32>>,
    pub restarts: u32,
    /// When the running bpftrace attached, if it is a restart.
    pub restarted_at: Option<Instant>,
    /// Each restart in words, for record's summary.
    pub said: Vec<String>,
}

impl Respawn {
    /// Why the bpftrace that just ended is not run again, if it is not.
    pub fn refusal(&self) -> Option<String> {
        if self.restarts >= MAX_RESTARTS {
            return Some(format!(
                "not restarted: it ended {} times",
                self.restarts + 1
            ));
        }
        let t = self.restarted_at?.elapsed();
        (t < too_soon()).then(|| {
            format!(
                "not restarted again: it ended {:.1} s after its restart",
                t.as_secs_f64()
            )
        })
    }
}

impl Tracer {
    /// bpftrace ended early and `--restart` allows: runs it again, waits for its attach, and
    /// tells it the processes to trace. Whether tracing goes on; if not, the log is closed
    /// with the reason (said on stderr too).
    pub(super) fn restart(&mut self) -> bool {
        let Some(cause) = self.died.clone() else {
            return false;
        };
        let Some(rs) = self.respawn.as_mut() else {
            return false;
        };
        if !self
            .ending
            .restarting
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return false;
        }
        release_stopped(&self.traced);
        let gap_from = Instant::now();
        let spawned = runner::spawn(&rs.bin, &rs.script, &rs.dialect, &rs.settings);
        let (mut bt, fd) = match spawned {
            Ok(x) => x,
            Err(e) => return self.give_up(format!("{cause}; running it again failed: {e:#}")),
        };
        let last_words = runner::LastWords::default();
        let _stderr = runner::pass_stderr(&mut bt, last_words.clone());
        let out = bt.stdout.take().expect("piped");
        let ending = Arc::new(Ending::default());
        let _ = rs.next.send(Resume::Run {
            out: Polled::new(out, ending.clone()),
            ending: ending.clone(),
        });
        // The old one is reaped apart: it is exiting, and its probes may take a while to go
        // (the new ones are apart).
        let mut old = std::mem::replace(&mut self.bt, bt);
        std::thread::spawn(move || {
            let _ = old.wait();
        });
        self.script_fd = Some(fd);
        self.ending = ending;
        self.last_words = last_words;
        self.died = None;
        self.last_check = None;
        self.attached = false;
        self.draining = None;
        let Some(chan) = self.chan else {
            return self.give_up(format!("{cause}; record cannot see a new bpftrace attach"));
        };
        let attached = loop {
            chan.attached();
            if self
                .wait_for(Duration::from_millis(50), |s| matches!(s, Seen::Attached))
                .is_some()
            {
                break true;
            }
            if self.died.is_some()
                || !self.running()
                || gap_from.elapsed() > Duration::from_secs(600)
            {
                break false;
            }
        };
        if !attached {
            let words = runner::short_words(&self.last_words);
            self.stopping();
            let _ = self.bt.kill();
            return self.give_up(format!(
                "{cause}; run again, it did not attach{}",
                if words.is_empty() {
                    String::new()
                } else {
                    format!(" (bpftrace said: {words})")
                }
            ));
        }
        self.attached = true;
        let rs = self.respawn.as_mut().expect("checked");
        rs.restarts += 1;
        rs.restarted_at = Some(Instant::now());
        if let Some(roots) = &rs.roots {
            for pid in to_trace_again(roots, &self.traced) {
                chan.trace_pid(pid);
            }
        }
        let said = format!(
            "{cause}: restarted, {:.1} s without tracing",
            gap_from.elapsed().as_secs_f64()
        );
        eprintln!("bthost: bpftrace {}", said.trim_start_matches("bpftrace "));
        rs.said.push(said);
        true
    }

    /// Tracing cannot go on: the line thread closes the log with `why` in its `#Q` mark.
    fn give_up(&mut self, why: String) -> bool {
        eprintln!("bthost: error: {why}: tracing stopped");
        if let Some(rs) = &self.respawn {
            let _ = rs.next.send(Resume::GiveUp(why.clone()));
        }
        self.ending.stopped_early(why.clone());
        self.died = Some(why);
        false
    }
}

/// The processes a restarted bpftrace is told to trace: those that wrote records and the
/// roots, with all their descendants, still alive.
fn to_trace_again(roots: &[u32], traced: &Arc<Mutex<HashSet<u32>>>) -> BTreeSet<u32> {
    let mut want: BTreeSet<u32> = roots.iter().copied().collect();
    if let Ok(t) = traced.lock() {
        want.extend(t.iter().copied());
    }
    let tree = crate::record::pids::children_map();
    let mut todo: Vec<u32> = want.iter().copied().collect();
    while let Some(p) = todo.pop() {
        for &c in tree.get(&p).map(Vec::as_slice).unwrap_or(&[]) {
            if want.insert(c) {
                todo.push(c);
            }
        }
    }
    want.retain(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
    want
}

/// The script stops a process at its exit (SIGSTOP) until record has copied its map: a
/// bpftrace that dies then leaves it stopped, and the job with it. Every traced process that
/// is stopped is let go (one that the user stopped too: a job is not left frozen by tracing).
pub fn release_stopped(traced: &Arc<Mutex<HashSet<u32>>>) {
    let pids: Vec<u32> = traced
        .lock()
        .map(|t| t.iter().copied().collect())
        .unwrap_or_default();
    for pid in pids {
        if crate::record::pids::state(pid) == Some('T') {
            // SAFETY: kill(2) of a traced process that is stopped.
            if unsafe { libc::kill(pid as i32, libc::SIGCONT) } == 0 {
                eprintln!("bthost: pid {pid} was stopped (held at its exit by bpftrace): let go");
            }
        }
    }
}
