//! Stacks of live processes, taken from outside: for each process, every thread held still
//! for a moment with ptrace (crate::stacks::seize) while its registers and a copy of its stack
//! are read, then let go; the native frames unwound afterwards from that copy
//! (crate::stacks::unwind), so the pause is the copy's, not the unwind's; and, where the
//! process runs CPython, its Python frames by py-spy (crate::stacks::python). `record` takes
//! them at its dumps and keeps them beside the log (crate::stacks::format); `report` and
//! `convert` name the frames offline (crate::stacks::frames).

pub mod format;
pub mod frames;
pub mod memory;
pub mod python;
pub mod seize;
pub mod unwind;
pub mod uretprobe;

use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use format::{ProcStacks, ThreadStack};
use memory::StackCopy;
use seize::SeizeError;
use unwind::{Regs, Unwinder};

/// How much of each thread's stack is copied from its stack pointer up: deep C++ and
/// Python-through-C stacks fit, and the copy stays well under a millisecond per thread.
pub const STACK_COPY: usize = 256 * 1024;
/// The longest a thread is waited for to stop (one in uninterruptible sleep may not).
pub const STOP_BOUND: Duration = Duration::from_millis(100);
/// Processes held at once (each on a thread of its own): one per CPU, at most 8. More holders
/// than CPUs only preempt each other while they hold, lengthening every process's pause.
fn parallel() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

/// What one process gave while held, before unwinding.
struct Raw {
    pid: u32,
    threads: Vec<(u32, Regs, StackCopy)>,
    pause: Duration,
    note: Option<String>,
}

/// Takes stacks, keeping what it learnt of files across dumps.
pub struct Taker {
    unwinder: Unwinder,
    py_spy: Option<PathBuf>,
    /// Said once: ptrace is refused, or py-spy is absent.
    pub said_no_rights: bool,
    said_no_py_spy: bool,
}

/// The clock of bpftrace's records (CLOCK_MONOTONIC), in ns.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Default for Taker {
    fn default() -> Self {
        Taker::new()
    }
}

impl Taker {
    pub fn new() -> Taker {
        Taker {
            unwinder: Unwinder::default(),
            py_spy: python::py_spy(),
            said_no_rights: false,
            said_no_py_spy: false,
        }
    }

    /// The stacks of every thread of `pids` now. A process that cannot be held says why in
    /// its `error`; the first refusal of ptrace is said once on stderr.
    pub fn take(&mut self, pids: &[u32], dump: u64, why: &str) -> Vec<ProcStacks> {
        let time = now_ns();
        let mut out = Vec::new();
        // The Python processes' py-spy runs start as soon as bthost has let them go.
        let mut spies = Vec::new();
        for chunk in pids.chunks(parallel()) {
            // One thread per process: when it exits, the kernel releases whatever it still
            // traces (crate::stacks::seize), whatever happened on the way.
            let handles: Vec<_> = chunk
                .iter()
                .map(|&pid| {
                    let maps =
                        std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
                    let h = std::thread::spawn(move || hold_and_copy(pid));
                    (pid, maps, h)
                })
                .collect();
            for (pid, maps, h) in handles {
                let raw = h.join().unwrap_or(Err(SeizeError::Gone));
                let mut ps = ProcStacks {
                    dump,
                    why: why.to_string(),
                    time,
                    pid,
                    comm: comm(pid, pid),
                    maps: maps
                        .lines()
                        .filter(|l| l.contains(" r-xp ") || l.contains(" r-xs "))
                        .map(String::from)
                        .collect(),
                    ..Default::default()
                };
                match raw {
                    Ok(raw) => {
                        let parsed = crate::symbolize::maps::parse(&maps);
                        let uprobes = uretprobe::trampoline(&maps);
                        let code = |at: u64| memory::read(pid, at, 8).try_into().ok();
                        ps.pause_us = raw.pause.as_micros() as u64;
                        ps.error = raw.note;
                        ps.threads = raw
                            .threads
                            .into_iter()
                            .map(|(tid, regs, stack)| ThreadStack {
                                tid,
                                comm: comm(raw.pid, tid),
                                pcs: self.unwinder.unwind(&parsed, regs, &stack, uprobes, &code),
                                python: Vec::new(),
                            })
                            .collect();
                        if python::is_cpython(pid) {
                            match &self.py_spy {
                                Some(bin) => spies.push((out.len(), python::Spy::start(bin, pid))),
                                None => {
                                    ps.python_error =
                                        Some("py-spy is not installed (pip install py-spy)".into());
                                    if !self.said_no_py_spy {
                                        self.said_no_py_spy = true;
                                        eprintln!(
                                            "bthost: note: pid {pid} runs Python, but py-spy is \
                                             not installed (pip install py-spy): native stacks only"
                                        );
                                    }
                                }
                            }
                        }
                    }
                    Err(SeizeError::Gone) => ps.error = Some("it exited".into()),
                    Err(SeizeError::NoRights(line)) => {
                        if !self.said_no_rights {
                            self.said_no_rights = true;
                            eprintln!(
                                "bthost: warning: no stacks: {line}; recording goes on without them"
                            );
                        }
                        ps.error = Some(line);
                    }
                }
                out.push(ps);
            }
        }
        for (i, spy) in spies {
            let got = spy.and_then(|s| s.finish(Duration::from_secs(10)));
            match got {
                Ok(threads) => {
                    let ps = &mut out[i];
                    for pt in threads {
                        match ps.threads.iter_mut().find(|t| t.tid == pt.tid) {
                            Some(t) => t.python = pt.frames,
                            None => ps.threads.push(ThreadStack {
                                tid: pt.tid,
                                python: pt.frames,
                                ..Default::default()
                            }),
                        }
                    }
                }
                Err(e) => out[i].python_error = Some(e),
            }
        }
        out
    }
}

/// A thread's name.
fn comm(pid: u32, tid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
        .map(|s| s.trim_end().to_string())
        .unwrap_or_default()
}

/// Holds `pid` still, copies each thread's registers and stack, lets it go.
fn hold_and_copy(pid: u32) -> Result<Raw, SeizeError> {
    let held = seize::hold(pid, STOP_BOUND)?;
    let mut threads = Vec::new();
    for t in &held.threads {
        let Some(r) = seize::registers(t.tid) else {
            continue; // it died while held
        };
        let stack = StackCopy {
            base: r.rsp,
            bytes: memory::read(t.tid, r.rsp, STACK_COPY),
        };
        let regs = Regs {
            rip: r.rip,
            rsp: r.rsp,
            rbp: r.rbp,
            rbx: r.rbx,
        };
        threads.push((t.tid, regs, stack));
    }
    // For the tests only: hold longer, so that a test can kill bthost while it holds
    // (tests/tests/stacks_taken.rs: the kernel then lets the process go).
    if let Some(ms) = std::env::var("BTHOST_TEST_STACKS_HOLD_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        eprintln!("bthost: holding pid {pid} for {ms} ms (BTHOST_TEST_STACKS_HOLD_MS)");
        std::thread::sleep(Duration::from_millis(ms));
    }
    let since: Instant = held.since;
    let (not_stopped, exited) = (held.not_stopped, held.exited);
    drop(held);
    let pause = since.elapsed();
    let mut notes = Vec::new();
    if not_stopped > 0 {
        notes.push(format!(
            "{not_stopped} thread(s) did not stop within {} ms",
            STOP_BOUND.as_millis()
        ));
    }
    if exited > 0 {
        notes.push(format!("{exited} thread(s) exited meanwhile"));
    }
    if threads.is_empty() && notes.is_empty() {
        return Err(SeizeError::Gone);
    }
    Ok(Raw {
        pid,
        threads,
        pause,
        note: (!notes.is_empty()).then(|| notes.join("; ")),
    })
}
