//! Holding one process still with ptrace, for as short a time as possible.
//!
//! Every thread is taken with PTRACE_SEIZE and stopped with PTRACE_INTERRUPT, never with
//! PTRACE_ATTACH: attach sends SIGSTOP, which the process could see (a group stop, a shell's
//! "Stopped") and which stays pending if the tracer goes away before it is consumed. A seized
//! thread interrupted in a system call (nanosleep, futex, poll) has the call restarted on its
//! own, so the program sees nothing but the pause.
//!
//! Released on every path: [`Held`]'s Drop detaches each stopped thread, re-injecting any
//! signal that arrived while it was held. And the stacks are taken on a thread of their own
//! (crate::stacks::take) that exits afterwards: the kernel releases every tracee of a tracer
//! thread that exits (exit_ptrace), so a thread still running when the pause's bound ran out
//! (it was in uninterruptible sleep, its interrupt still pending), or a bthost killed with
//! SIGKILL mid-stack, leaves no process stopped (tests/tests/stacks_taken.rs checks the
//! killed case).

use std::time::{Duration, Instant};

/// One stopped thread.
pub struct Stopped {
    pub tid: u32,
    /// A signal that arrived while it was being stopped, delivered again at the detach.
    pending_signal: i32,
}

/// Why a process could not be held.
#[derive(Debug, PartialEq, Eq)]
pub enum SeizeError {
    /// No right to trace it (not root, Yama's ptrace_scope, another tracer).
    NoRights(String),
    /// It exited before any thread could be stopped.
    Gone,
}

/// The threads of one process, held stopped until dropped.
pub struct Held {
    pub pid: u32,
    pub threads: Vec<Stopped>,
    /// Threads that did not stop within the bound (skipped; released when the taking thread
    /// exits), and threads that exited meanwhile.
    pub not_stopped: u32,
    pub exited: u32,
    /// When the first thread was interrupted: the pause starts there.
    pub since: Instant,
}

/// The thread ids of `pid` now.
pub fn tids(pid: u32) -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut v: Vec<u32> = rd
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    v.sort();
    v
}

fn ptrace(req: libc::c_uint, tid: u32, data: usize) -> Result<i64, i32> {
    // SAFETY: requests on a thread id without pointers into our memory (addr 0).
    let r = unsafe { libc::ptrace(req, tid as libc::pid_t, 0usize, data) };
    if r == -1 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(r)
    }
}

/// Seizes and stops every thread of `pid`; waits at most `bound` for them to stop.
pub fn hold(pid: u32, bound: Duration) -> Result<Held, SeizeError> {
    let mut seized = Vec::new();
    let mut exited = 0;
    let mut since = None;
    // Threads started while seizing are seized on a second look (a thread created by a
    // stopped thread cannot appear; a running one can).
    for _ in 0..2 {
        for tid in tids(pid) {
            if seized.contains(&tid) {
                continue;
            }
            match ptrace(libc::PTRACE_SEIZE, tid, 0) {
                Ok(_) => {}
                Err(libc::ESRCH) => {
                    exited += 1;
                    continue;
                }
                // A zombie (exited, not yet reaped) refuses with EPERM too.
                Err(_) if seized.is_empty() && exiting(pid) => return Err(SeizeError::Gone),
                Err(e) if seized.is_empty() => {
                    return Err(SeizeError::NoRights(no_rights(pid, e)));
                }
                // Some threads taken, another refused (a second tracer on it): skip it.
                Err(_) => continue,
            }
            since.get_or_insert_with(Instant::now);
            if ptrace(libc::PTRACE_INTERRUPT, tid, 0).is_err() {
                exited += 1;
                continue;
            }
            seized.push(tid);
        }
    }
    if seized.is_empty() {
        return Err(SeizeError::Gone);
    }
    let mut held = Held {
        pid,
        threads: Vec::new(),
        not_stopped: 0,
        exited,
        since: since.unwrap_or_else(Instant::now),
    };
    let until = Instant::now() + bound;
    let mut waiting = seized;
    while !waiting.is_empty() {
        waiting.retain(|&tid| {
            let mut status = 0;
            // SAFETY: waitpid on a thread we trace, without blocking.
            let r = unsafe { libc::waitpid(tid as i32, &mut status, libc::__WALL | libc::WNOHANG) };
            if r == 0 {
                return true;
            }
            if r < 0 || libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
                held.exited += 1;
                return false;
            }
            // A PTRACE_EVENT_STOP (the interrupt) or a signal that came first: keep that
            // signal for the detach (the interrupt then stops the thread later, or the detach
            // ends it; either way it is no longer ours once detached).
            let sig = libc::WSTOPSIG(status);
            let event = (status >> 16) & 0xff;
            let pending_signal = if event == 0 && sig != libc::SIGTRAP {
                sig
            } else {
                0
            };
            held.threads.push(Stopped {
                tid,
                pending_signal,
            });
            false
        });
        if waiting.is_empty() || Instant::now() >= until {
            break;
        }
        // Threads stop within microseconds of the interrupt: yield first (a sleep would add
        // its own slack to every process's pause), sleep only past the first millisecond.
        if held.since.elapsed() < Duration::from_millis(1) {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
    held.not_stopped = waiting.len() as u32;
    Ok(held)
}

/// Whether `pid` has exited (a zombie, or gone).
fn exiting(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The state follows the command's closing parenthesis.
    match stat.rsplit_once(')') {
        Some((_, rest)) => matches!(rest.trim_start().chars().next(), Some('Z' | 'X')),
        None => true,
    }
}

/// The process that already traces `pid` (a debugger), if any.
fn tracer_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let t: u32 = status
        .lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))?
        .trim()
        .parse()
        .ok()?;
    (t != 0).then_some(t)
}

/// One line on why ptrace was refused.
fn no_rights(pid: u32, errno: i32) -> String {
    if let Some(t) = tracer_of(pid) {
        return format!("pid {pid} is already traced by pid {t} (a debugger?)");
    }
    let yama = std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
        .ok()
        .map(|s| s.trim().to_string());
    let why = std::io::Error::from_raw_os_error(errno);
    match yama.as_deref() {
        Some(s) if s != "0" => format!(
            "ptrace of pid {pid} refused ({why}; Yama ptrace_scope is {s}: run as root or with \
             CAP_SYS_PTRACE)"
        ),
        _ => format!("ptrace of pid {pid} refused ({why}): run as root or with CAP_SYS_PTRACE"),
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        for t in &self.threads {
            // A thread that died meanwhile cannot be detached, nor needs to be.
            let _ = ptrace(libc::PTRACE_DETACH, t.tid, t.pending_signal as usize);
        }
    }
}

/// The general registers of a stopped thread.
pub fn registers(tid: u32) -> Option<libc::user_regs_struct> {
    // SAFETY: a zeroed user_regs_struct is valid; PTRACE_GETREGS fills it.
    let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_GETREGS,
            tid as libc::pid_t,
            0usize,
            &mut regs as *mut libc::user_regs_struct,
        )
    };
    (r == 0).then_some(regs)
}
