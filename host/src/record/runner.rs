//! Starting bpftrace for `record`: the script handed over an open descriptor, bpftrace's
//! settings for versions without a `config` block, its own process group, and its stderr
//! passed on without the one message that misleads here.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result};

use crate::bpftrace::Dialect;

/// bpftrace's settings that `record` chooses.
#[derive(Clone, Copy, Debug, Default)]
pub struct Settings {
    pub map_keys: Option<u32>,
    pub perf_rb_pages: Option<u32>,
    /// The script sends signals (the hold at exit): bpftrace wants `--unsafe` for that.
    pub unsafe_actions: bool,
    /// bpftrace ignores the signals that stop it (record writes the log's end itself and then
    /// kills it): see [`spawn`].
    pub shielded: bool,
}

/// The script in memory, in a descriptor bpftrace opens as `/proc/self/fd/N`: nobody can
/// change it between its writing and bpftrace's reading, as they could a file in a shared
/// folder (`LOG.bt` beside the log is a copy for the reader).
fn script_fd(script: &str) -> Result<OwnedFd> {
    let name = c"bthost-script";
    // SAFETY: memfd_create with a NUL-terminated name; the descriptor is ours.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("memfd_create for the script");
    }
    // SAFETY: a descriptor memfd_create just returned.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut f = std::fs::File::from(fd.try_clone()?);
    f.write_all(script.as_bytes())?;
    Ok(fd)
}

/// bpftrace's nice value under `record`.
pub const BPFTRACE_NICE: i32 = -10;

/// Starts `bin` on `script`, stdout piped (the log), stderr passed on through a filter.
pub fn spawn(bin: &Path, script: &str, d: &Dialect, set: &Settings) -> Result<(Child, OwnedFd)> {
    let fd = script_fd(script)?;
    let raw = fd.as_raw_fd();
    let shielded = set.shielded;
    let mut cmd = Command::new(bin);
    // Line-buffered: the barrier and the drains depend on seeing each line when printed.
    cmd.args(["-B", "line"]);
    if set.unsafe_actions {
        cmd.arg("--unsafe");
    }
    cmd.arg(format!("/proc/self/fd/{raw}"));
    if !d.config_block {
        if let Some(k) = set.map_keys {
            cmd.env("BPFTRACE_MAP_KEYS_MAX", k.to_string());
        }
        if let Some(p) = set.perf_rb_pages {
            cmd.env("BPFTRACE_PERF_RB_PAGES", p.to_string());
        }
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // Its own process group: a Ctrl-C at the terminal reaches bthost (which stops
            // tracing in order, quickly) and the workload, not bpftrace (which would first
            // detach every probe, for seconds, before writing the calls in flight).
            libc::setpgid(0, 0);
            // Shielded: the signals that would stop bpftrace stay pending (a blocked signal
            // survives exec, and bpftrace does not unblock them). A scheduler cancelling a
            // job signals every process of the step, bpftrace too (Slurm with
            // proctrack/linuxproc): bpftrace would first detach its probes, for seconds, and
            // not answer record's last dump, and the scheduler would kill both before the log
            // was complete. record stops it (SIGKILL) once the log is complete.
            if shielded {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
                    libc::sigaddset(&mut set, sig);
                }
                libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            }
            // Ahead of busy workloads: the records wait in the kernel's maps until bpftrace
            // prints them (about four system calls each), and a bpftrace starved of CPU by
            // the job's threads falls behind until the maps are full and records are lost
            // (measured here: 8 spinning threads on 2 cores left bpftrace 20% of a core, and
            // 47% of the records were lost).
            libc::setpriority(libc::PRIO_PROCESS, 0, BPFTRACE_NICE);
            // If bthost dies, bpftrace stops too instead of tracing on for nobody.
            let death = if shielded {
                libc::SIGKILL
            } else {
                libc::SIGINT
            };
            libc::prctl(libc::PR_SET_PDEATHSIG, death);
            // The script's descriptor, inherited by bpftrace alone.
            libc::fcntl(raw, libc::F_SETFD, 0);
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    Ok((child, fd))
}

/// Whether the kernel charges BPF memory to the cgroup (5.11 and later), so that bpftrace's
/// failure to raise RLIMIT_MEMLOCK is harmless.
fn memcg_charged() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").is_ok_and(|r| charges_memcg(&r))
}

/// Whether kernel `release` (as `uname -r` says it) charges BPF memory to the cgroup.
fn charges_memcg(release: &str) -> bool {
    let mut nums = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u32>().ok());
    matches!((nums.next(), nums.next()), (Some(a), Some(b)) if (a, b) >= (5, 11))
}

/// Raises RLIMIT_MEMLOCK for bpftrace (inherited) as far as this process may: kernels before
/// 5.11 count BPF maps against it.
pub fn raise_memlock() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a valid struct.
    unsafe {
        let inf = libc::rlimit {
            rlim_cur: libc::RLIM_INFINITY,
            rlim_max: libc::RLIM_INFINITY,
        };
        if libc::setrlimit(libc::RLIMIT_MEMLOCK, &inf) != 0
            && libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) == 0
        {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_MEMLOCK, &r);
        }
    }
}

/// What record does with a line bpftrace writes about the machine rather than the script.
#[derive(Debug, PartialEq, Eq)]
enum MachineLine {
    /// Passed on as it is.
    Pass,
    /// Not shown: record says the same, or it does not apply.
    Drop,
    /// Said once, in record's words.
    Note(&'static str),
}

/// bpftrace always tries to lift RLIMIT_MEMLOCK to infinity and says ERROR (0.17) or WARNING
/// (0.23, 0.27) when it cannot; on a kernel that charges BPF memory to the cgroup that limit
/// does not apply, and the line is dropped. 0.27 warns at every start when the kernel
/// keeps `available_filter_functions` from it (lockdown; seen on this project's VMs), which
/// only matters for kernel function probes.
fn classify(line: &str, memcg_charged: bool) -> MachineLine {
    if line.contains("couldn't set RLIMIT_MEMLOCK") && memcg_charged {
        MachineLine::Drop
    } else if line.contains("available_filter_functions") {
        MachineLine::Note(
            "bthost: note: bpftrace cannot read /sys/kernel/tracing/available_filter_functions (kernel lockdown, or no ftrace): \
             it only guards kernel function probes; bthost's uprobes and tracepoints are not affected",
        )
    } else {
        MachineLine::Pass
    }
}

/// bpftrace's last stderr lines, as [`pass_stderr`] passed them on (the newest last).
pub type LastWords = std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<String>>>;

/// Whether `pid` (a child not yet waited for) is exiting, and its wait status if so, from
/// `/proc/PID/stat`: a SIGKILLed bpftrace stays in its exit for seconds to minutes while the
/// kernel unregisters its uprobes, and neither waitpid nor the end of its output tells until
/// then; the task's PF_EXITING flag and exit code do at once.
pub fn exiting(pid: u32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f = super::pids::after_comm(&stat)?;
    let state = *f.first()?;
    let flags: u64 = f.get(6)?.parse().ok()?;
    let code: i32 = f.get(49).and_then(|c| c.parse().ok()).unwrap_or(0);
    const PF_EXITING: u64 = 0x4;
    (flags & PF_EXITING != 0 || state == "Z" || state == "X").then_some(code)
}

/// A wait status in words: `bpftrace was killed by SIGKILL: the OOM killer? see `dmesg``,
/// `bpftrace exited with status 1`.
pub fn describe_exit(status: i32) -> String {
    let sig = status & 0x7f;
    if sig == 0 {
        return format!("bpftrace exited with status {}", (status >> 8) & 0xff);
    }
    let name = match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTERM => "SIGTERM",
        _ => return format!("bpftrace was killed by signal {sig}"),
    };
    let hint = match sig {
        libc::SIGKILL => ": the OOM killer? see `dmesg`",
        libc::SIGSEGV | libc::SIGBUS | libc::SIGABRT | libc::SIGILL => ": bpftrace crashed",
        _ => "",
    };
    format!("bpftrace was killed by {name}{hint}")
}

/// The last few of bpftrace's stderr lines, short, on one line (empty: none).
pub fn short_words(last: &LastWords) -> String {
    let l = last.lock().map(|l| l.clone()).unwrap_or_default();
    let n = l.len();
    l.iter()
        .skip(n.saturating_sub(3))
        .map(|w| {
            let w = w.trim();
            match w.char_indices().nth(160) {
                Some((i, _)) => format!("{}...", &w[..i]),
                None => w.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(" / ")
}

/// Passes bpftrace's stderr on, line by line, but for what [`classify`] keeps off the
/// terminal; the last lines are in `last` as they come.
pub fn pass_stderr(child: &mut Child, last: LastWords) -> std::thread::JoinHandle<Vec<String>> {
    let err = child.stderr.take().expect("piped");
    let charged = memcg_charged();
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut noted = Vec::new();
        for line in BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            match classify(&line, charged) {
                MachineLine::Drop => continue,
                MachineLine::Note(n) => {
                    if !noted.contains(&n) {
                        noted.push(n);
                        eprintln!("{n}");
                    }
                    continue;
                }
                MachineLine::Pass => {}
            }
            eprintln!("{line}");
            if let Ok(mut l) = last.lock() {
                if l.len() >= 8 {
                    l.pop_front();
                }
                l.push_back(line.clone());
            }
            if kept.len() < 50 {
                kept.push(line);
            }
        }
        kept
    })
}

#[cfg(test)]
mod tests {
    use super::{classify, MachineLine};

    #[test]
    fn lines_about_the_machine() {
        let memlock = "WARNING: Unknown error -1: couldn't set RLIMIT_MEMLOCK for bpftrace. If your program is not loading, you can try \"ulimit -l 8192\" to fix the problem";
        assert_eq!(classify(memlock, true), MachineLine::Drop);
        assert_eq!(classify(memlock, false), MachineLine::Pass);
        assert_eq!(classify("Attached 168 probes", true), MachineLine::Pass);
        assert!(matches!(
            classify("WARNING: Could not read functions from /sys/kernel/tracing/available_filter_functions. If this is expected, use --traceable-functions", true),
            MachineLine::Note(_)
        ));
        assert_eq!(
            classify("ERROR: Could not resolve symbol: /x:hipFoo", true),
            MachineLine::Pass
        );
    }

    #[test]
    fn exits_in_words() {
        assert_eq!(
            super::describe_exit(9),
            "bpftrace was killed by SIGKILL: the OOM killer? see `dmesg`"
        );
        assert_eq!(super::describe_exit(15), "bpftrace was killed by SIGTERM");
        assert_eq!(
            super::describe_exit(1 << 8),
            "bpftrace exited with status 1"
        );
        assert_eq!(super::exiting(std::process::id()), None);
    }

    #[test]
    fn kernels_that_charge_bpf_memory_to_the_cgroup() {
        for (r, yes) in [
            ("6.18.44-fc-v857", true),
            ("5.11.0", true),
            ("5.10.0-28-amd64", false),
            ("4.19.0", false),
            ("garbage", false),
        ] {
            assert_eq!(super::charges_memcg(r), yes, "{r}");
        }
    }
}
