//! What a child process cost: its wall time, CPU time and peak resident memory, from the
//! kernel's accounting of that one child (wait4), for the benchmarks.

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::time::Instant;

#[repr(C)]
#[derive(Default)]
struct Rusage {
    utime: [i64; 2],
    stime: [i64; 2],
    maxrss: i64,
    rest: [i64; 13],
}

extern "C" {
    fn getrusage(who: i32, usage: *mut Rusage) -> i32;
    fn wait4(pid: i32, status: *mut i32, options: i32, usage: *mut Rusage) -> i32;
}

/// The largest peak RSS (KiB) among the children this process has waited for
/// (getrusage(RUSAGE_CHILDREN)): a converter's peak memory, run as the only child.
pub fn children_maxrss_kib() -> i64 {
    let mut r = Rusage::default();
    // SAFETY: RUSAGE_CHILDREN (-1) fills the struct, which has the kernel's layout.
    unsafe { getrusage(-1, &mut r) };
    r.maxrss
}

/// One child's run.
pub struct Measured {
    pub output: Output,
    pub wall_secs: f64,
    /// User plus system time.
    pub cpu_secs: f64,
    /// System time alone.
    pub sys_secs: f64,
    pub maxrss_kib: i64,
}

/// Runs `cmd` to its end, its stdout and stderr captured, and measures it.
// Reaped by wait4, which std's wait cannot replace: it does not give the child's rusage.
#[allow(clippy::zombie_processes)]
pub fn run_measured(cmd: &mut Command) -> Measured {
    let t = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let mut stdout = Vec::new();
    let _ = out.read_to_end(&mut stdout);
    let stderr = reader.join().unwrap_or_default();
    let mut status = 0i32;
    let mut r = Rusage::default();
    // SAFETY: waits for our own child (std has not reaped it: we never called wait on it) and
    // fills status and the struct, which has the kernel's layout.
    let pid = unsafe { wait4(child.id() as i32, &mut status, 0, &mut r) };
    assert_eq!(pid, child.id() as i32, "wait4");
    let wall_secs = t.elapsed().as_secs_f64();
    let secs = |tv: [i64; 2]| tv[0] as f64 + tv[1] as f64 / 1e6;
    use std::os::unix::process::ExitStatusExt;
    Measured {
        output: Output {
            status: std::process::ExitStatus::from_raw(status),
            stdout,
            stderr,
        },
        wall_secs,
        cpu_secs: secs(r.utime) + secs(r.stime),
        sys_secs: secs(r.stime),
        maxrss_kib: r.maxrss,
    }
}

/// The median (the upper one of an even count), the least and the greatest of `v`: a figure
/// over interleaved rounds, with its spread. Panics on an empty `v` or a NaN.
pub fn median_min_max(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (s[s.len() / 2], s[0], s[s.len() - 1])
}
