//! What a recording cost its machine, said when it ends: bpftrace's CPU time and peak resident
//! memory, the kernel memory of its BPF maps (not in any RSS: charged to the memlock limit
//! or the cgroup), and bthost's own. On a cluster this is the recorder's cost per node.
//!
//! Read from /proc before bpftrace is stopped (it is not waited for afterwards: detaching
//! uprobes takes the kernel about 0.1 s each), so the final dump's few milliseconds are not in it.

use std::time::Duration;

/// CPU times at the start of tracing, and how long bpftrace took to get there.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Start {
    pub bpftrace: Duration,
    pub bthost: Duration,
    /// Wall time from bpftrace's start to every probe attached: the delay before a job may
    /// start. Mostly the kernel registering uprobes, which several recorders on one kernel
    /// (emulated nodes) take turns at: it grows with them while the CPU time does not.
    pub attach_wall: Duration,
}

impl Start {
    /// bpftrace's (`pid`) and this process's CPU time so far; bpftrace started `attach_wall` ago.
    pub fn now(pid: u32, attach_wall: Duration) -> Start {
        let cpu = |dir: &str| usage(dir).unwrap_or_default().cpu;
        Start {
            bpftrace: cpu(&format!("/proc/{pid}")),
            bthost: cpu("/proc/self"),
            attach_wall,
        }
    }
}

/// One process's use so far.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    pub cpu: Duration,
    /// Resident set now and at its peak (bytes).
    pub rss: u64,
    pub peak_rss: u64,
}

/// The recorder's cost.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Cost {
    /// CPU times when tracing began: bpftrace's (compiling the script and attaching) and
    /// bthost's (finding the libraries, composing the script).
    pub start: Start,
    /// bpftrace's use at the stop (None: it had ended, or was not the one tracing began with:
    /// its cost is not known).
    pub bpftrace: Option<Usage>,
    /// Kernel memory of bpftrace's BPF maps (bytes, the `memlock` the kernel accounts).
    pub bpf_maps: u64,
    pub bthost: Usage,
    /// How long it traced.
    pub traced: Duration,
}

impl Cost {
    /// Samples bpftrace (`pid`; None: it ended early) and this process now, `traced` after
    /// tracing began.
    pub fn sample(pid: Option<u32>, start: Start, traced: Duration) -> Cost {
        let pid = pid.unwrap_or(0);
        Cost {
            start,
            bpftrace: (pid != 0).then(|| usage(&format!("/proc/{pid}"))).flatten(),
            bpf_maps: bpf_map_bytes(pid),
            bthost: usage("/proc/self").unwrap_or_default(),
            traced,
        }
    }

    /// One line for the user.
    pub fn describe(&self) -> String {
        let mb = |b: u64| b as f64 / (1 << 20) as f64;
        // A share of a moment's tracing says nothing.
        let share = |d: Duration| {
            if self.traced < Duration::from_secs(1) {
                String::new()
            } else {
                format!(
                    " ({:.1}% of one CPU)",
                    100.0 * d.as_secs_f64() / self.traced.as_secs_f64()
                )
            }
        };
        let own = self.bthost.cpu.saturating_sub(self.start.bthost);
        let bpftrace = match self.bpftrace {
            Some(u) => {
                let bt = u.cpu.saturating_sub(self.start.bpftrace);
                format!(
                    "bpftrace {:.2} s CPU{} (and {:.2} s CPU, {:.1} s, to compile and attach), {:.0} MiB resident ({:.0} at peak), {:.0} MiB of BPF maps",
                    bt.as_secs_f64(),
                    share(bt),
                    self.start.bpftrace.as_secs_f64(),
                    self.start.attach_wall.as_secs_f64(),
                    mb(u.rss),
                    mb(u.peak_rss),
                    mb(self.bpf_maps),
                )
            }
            None => format!(
                "bpftrace's not known (it ended early; {:.2} s CPU, {:.1} s, to compile and attach)",
                self.start.bpftrace.as_secs_f64(),
                self.start.attach_wall.as_secs_f64(),
            ),
        };
        format!(
            "recorder cost over {:.1} s of tracing: {bpftrace}; bthost {:.2} s CPU{} (and {:.2} s to start), {:.0} MiB resident ({:.0} at peak)",
            self.traced.as_secs_f64(),
            own.as_secs_f64(),
            share(own),
            self.start.bthost.as_secs_f64(),
            mb(self.bthost.rss),
            mb(self.bthost.peak_rss),
        )
    }
}

/// CPU time (user + system, from `stat`) and RSS (`VmRSS`, `VmHWM` of `status`) of `/proc/<pid>`.
fn usage(proc_dir: &str) -> Option<Usage> {
    let stat = std::fs::read_to_string(format!("{proc_dir}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("{proc_dir}/status")).ok()?;
    Some(Usage {
        cpu: cpu_of_stat(&stat)?,
        rss: kib_field(&status, "VmRSS:")? * 1024,
        peak_rss: kib_field(&status, "VmHWM:")? * 1024,
    })
}

/// utime + stime of a `stat` line: fields 14 and 15, counted after the command name's `)`
/// (the name may hold spaces and parentheses).
fn cpu_of_stat(stat: &str) -> Option<Duration> {
    let f = super::pids::after_comm(stat)?;
    // After `)`: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as u64 } else { 100 };
    Some(Duration::from_nanos(ticks * 1_000_000_000 / hz))
}

fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name))?
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The `memlock` of every BPF map among `pid`'s open files, from their fdinfo.
///
/// Only the fdinfo of a map is read: each file is first told by its link (`anon_inode:bpf-map`).
/// bpftrace 0.27 holds some 600 files for 174 probes (programs, links, perf events), and the
/// fdinfo of a uprobe's link can stall for tens of ms behind the kernel's uprobe work: reading
/// them all took 0.45 s at the stop, before the last drain.
fn bpf_map_bytes(pid: u32) -> u64 {
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    rd.filter_map(Result::ok)
        .filter(|e| {
            std::fs::read_link(e.path()).is_ok_and(|t| t.as_os_str() == "anon_inode:bpf-map")
        })
        .filter_map(|e| {
            std::fs::read_to_string(format!(
                "/proc/{pid}/fdinfo/{}",
                e.file_name().to_string_lossy()
            ))
            .ok()
        })
        .filter_map(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("memlock:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_an_odd_command_name() {
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        let stat = format!(
            "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 {} {} 0 0 20 0 1 0 5 1000 10",
            hz * 3,
            hz / 2
        );
        assert_eq!(cpu_of_stat(&stat), Some(Duration::from_millis(3500)));
        assert_eq!(cpu_of_stat("4242 (x) S 1"), None);
    }

    #[test]
    fn this_process_has_a_cost() {
        let u = usage("/proc/self").unwrap();
        assert!(u.rss > 0 && u.peak_rss >= u.rss);
        let start = Start::now(std::process::id(), Duration::from_millis(1500));
        let c = Cost::sample(Some(std::process::id()), start, Duration::from_secs(2));
        assert_eq!(c.bpf_maps, 0);
        let text = c.describe();
        assert!(
            text.starts_with("recorder cost over 2.0 s of tracing: bpftrace "),
            "{text}"
        );
        assert!(text.contains("% of one CPU"), "{text}");
        assert!(
            text.contains(" s CPU, 1.5 s, to compile and attach"),
            "{text}"
        );
        let gone = Cost::sample(None, start, Duration::from_secs(2)).describe();
        assert!(
            gone.starts_with(
                "recorder cost over 2.0 s of tracing: bpftrace's not known (it ended early; "
            ) && gone.contains("; bthost "),
            "{gone}"
        );
    }
}
