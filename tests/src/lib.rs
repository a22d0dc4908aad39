//! Helpers for bthost's end-to-end tests: where the workspace and its built binaries are,
//! compiling C workloads, running bthost and real bpftrace.
//!
//! These tests use real parts: real bpftrace (as root), real uprobes, the real Debian ROCm
//! libraries. They fail (not skip) when those are missing, with the command that installs them,
//! unless `BTHOST_SKIP_ROOT_TESTS=1` is set, for a machine that cannot run them at all.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod genjob;
mod genlog;
mod measure;
mod recording;
mod threadlog;
mod trace_bytes;
pub use genjob::{generate_job, job_built, JobSpec};
pub use genlog::{generate_log, hip_rccl_built, hip_rccl_built_as};
pub use measure::{children_maxrss_kib, median_min_max, run_measured, Measured};
pub use recording::{Job, Recording};
pub use threadlog::{decode_thread_log, decode_thread_log_in_format, record_id};
pub use trace_bytes::{trace_bytes, TraceBytes};

/// The workspace root (the folder holding `packs/`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

/// cargo's output folder of this build (target/debug or target/release).
pub fn out_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("deps folder");
    deps.parent().expect("profile folder").to_path_buf()
}

/// The `bthost` binary built with the workspace (`cargo build --workspace` builds it).
pub fn bthost_bin() -> PathBuf {
    let p = out_dir().join("bthost");
    assert!(
        p.is_file(),
        "{} is missing: run `cargo build --workspace` before `cargo test --workspace` (scripts/test does both)",
        p.display()
    );
    p
}

/// A fresh scratch folder for one test.
pub fn scratch(name: &str) -> PathBuf {
    let d = out_dir().join("e2e-scratch").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create scratch folder");
    d
}

/// Runs bthost with `args`; returns its output (whatever the exit status).
pub fn bthost(args: &[&str]) -> Output {
    Command::new(bthost_bin())
        .args(args)
        .output()
        .expect("run bthost")
}

/// Runs bthost and asserts success; returns stdout.
pub fn bthost_ok(args: &[&str]) -> String {
    String::from_utf8_lossy(&bthost_succeeds(args).stdout).into_owned()
}

/// Runs bthost and asserts success; returns stderr, where bthost reports (summaries, counts).
pub fn bthost_ok_stderr(args: &[&str]) -> String {
    String::from_utf8_lossy(&bthost_succeeds(args).stderr).into_owned()
}

/// `bthost convert LOG -o OUT EXTRA...`, asserting success; returns stderr (the summary).
pub fn bthost_convert(log: &Path, out: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "convert",
        log.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    bthost_ok_stderr(&args)
}

fn bthost_succeeds(args: &[&str]) -> Output {
    let o = bthost(args);
    assert!(
        o.status.success(),
        "bthost {args:?} failed: {}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// Decodes a trace with Perfetto's official schema and checks the rules viewers rely on
/// (tests/perfetto/check_trace.py); returns its summary (tracks, slices, flows).
pub fn check_trace(trace: &Path) -> serde_json::Value {
    let o = Command::new("python3")
        .arg(root().join("tests/perfetto/check_trace.py"))
        .arg(trace)
        .output()
        .expect("python3");
    let out: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "check_trace.py on {}: {e}\n{}\n(pip install perfetto; scripts/setup does it)",
            trace.display(),
            String::from_utf8_lossy(&o.stderr)
        )
    });
    assert!(o.status.success(), "{}: {}", trace.display(), out["errors"]);
    out
}

/// Whether root-only tests must be skipped on this machine (explicitly asked for).
pub fn skip_root_tests() -> bool {
    if std::env::var_os("BTHOST_SKIP_ROOT_TESTS").is_some_and(|v| v == "1") {
        eprintln!("BTHOST_SKIP_ROOT_TESTS=1: skipping a test that needs root, bpftrace and the ROCm libraries");
        return true;
    }
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { geteuid() };
    assert_eq!(
        euid, 0,
        "this test runs real bpftrace and must run as root (or set BTHOST_SKIP_ROOT_TESTS=1)"
    );
    assert!(
        Command::new("bpftrace").arg("--version").output().is_ok(),
        "bpftrace is not installed: apt-get install -y bpftrace (scripts/setup does it)"
    );
    false
}

extern "C" {
    fn geteuid() -> u32;
}

/// The real HIP runtime, as Debian installs it.
pub const HIP_LIB: &str = "/lib/x86_64-linux-gnu/libamdhip64.so.5";

pub fn require_hip() {
    assert!(
        Path::new(HIP_LIB).is_file(),
        "{HIP_LIB} is missing: apt-get install -y libamdhip64-5 (scripts/setup does it)"
    );
}

/// Runs the C compiler with `args`, asserting it succeeds (its errors in the message).
pub fn cc(args: &[&str]) {
    let o = Command::new("cc").args(args).output().expect("run cc");
    assert!(
        o.status.success(),
        "cc {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Compiles `tests/workloads/<name>.c` into `dir/<name>` with extra `libs`.
pub fn compile_workload(name: &str, dir: &Path, libs: &[&str]) -> PathBuf {
    let src = root().join("tests/workloads").join(format!("{name}.c"));
    let exe = dir.join(name);
    let mut args = vec![
        "-O1",
        "-g",
        "-o",
        exe.to_str().unwrap(),
        src.to_str().unwrap(),
    ];
    args.extend_from_slice(libs);
    cc(&args);
    exe
}

/// Compiles the example application of docs/examples/gpu_completion (a launch wrapper and
/// its completion callback) into `dir/completion_demo`.
pub fn compile_completion_demo(dir: &Path) -> PathBuf {
    let src = root().join("docs/examples/gpu_completion/completion_demo.c");
    let app = dir.join("completion_demo");
    cc(&[
        "-O2",
        "-g",
        "-pthread",
        "-o",
        app.to_str().unwrap(),
        src.to_str().unwrap(),
    ]);
    app
}

/// Runs `bpftrace script -o log -c cmd` and returns (log text, bpftrace's output).
pub fn bpftrace_run(bpftrace: &str, script: &Path, log: &Path, cmd: &str) -> (String, Output) {
    let _serial = system_wide_lock();
    let o = Command::new(bpftrace)
        .arg(script)
        .arg("-o")
        .arg(log)
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("run bpftrace");
    assert!(
        o.status.success(),
        "bpftrace {} failed: {}\nstdout: {}\nstderr: {}",
        script.display(),
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let text = std::fs::read_to_string(log).expect("read the log");
    (text, o)
}

/// Where tests/bpftrace/setup-root.sh puts Debian 13's bpftrace (0.23), runnable on the host.
pub const TRIXIE_BPFTRACE: &str = "/var/cache/bthost/trixie/bpftrace-host";

/// Where tests/bpftrace/setup-root.sh puts Debian sid's bpftrace (0.27), runnable on the host.
pub const SID_BPFTRACE: &str = "/var/cache/bthost/sid/bpftrace-host";

/// The Debian sid root (tests/bpftrace/setup-root.sh sid): today's bpftrace, HIP 6.4 and, from
/// experimental, HIP 7.2, HSA 7.2 and RCCL 7.2.4, installed the Debian way.
pub const SID_ROOT: &str = "/var/cache/bthost/sid";

/// The bpftrace versions the tests must find (CI installs each): Debian 12's, 13's and sid's.
pub const TESTED_BPFTRACES: &[&str] = &["0.17.0", "0.23.2", "0.27.1"];

/// Every bpftrace this machine has for tests: `bpftrace` on PATH, Debian 13's and sid's from
/// tests/bpftrace/setup-root.sh, and those in `$BTHOST_BPFTRACE_EXTRA` (colon-separated).
pub fn available_bpftraces() -> Vec<(PathBuf, semver::Version)> {
    let mut cands: Vec<PathBuf> = vec![
        PathBuf::from("bpftrace"),
        PathBuf::from(TRIXIE_BPFTRACE),
        PathBuf::from(SID_BPFTRACE),
    ];
    if let Some(v) = std::env::var_os("BTHOST_BPFTRACE_EXTRA") {
        cands.extend(std::env::split_paths(&v));
    }
    let mut found: Vec<(PathBuf, semver::Version)> = Vec::new();
    for c in cands {
        if let Ok(v) = bthost::bpftrace::detect(&c) {
            if !found.iter().any(|(_, fv)| *fv == v) {
                found.push((c, v));
            }
        }
    }
    found
}

/// Where tests/standins/fetch-real-rccl.sh extracts Debian 13's real RCCL (package librccl1).
pub const REAL_RCCL: &str = "/var/cache/bthost/librccl/usr/lib/x86_64-linux-gnu/librccl.so.1";

/// `--lib` overrides for tests: Debian 13's real RCCL (not installed, only extracted), then
/// `$BTHOST_TEST_LIBS` (`pack=/path,pack=/path`).
pub fn test_lib_overrides() -> bthost::library::LibOverrides {
    let mut m = bthost::library::LibOverrides::new();
    assert!(
        Path::new(REAL_RCCL).exists(),
        "{REAL_RCCL} is missing: run tests/standins/fetch-real-rccl.sh (scripts/setup does it)"
    );
    m.insert("rccl".into(), PathBuf::from(REAL_RCCL));
    let nv = nvidia_dir();
    m.insert(
        "cuda".into(),
        nv.join("nvidia/cuda_runtime/lib/libcudart.so.12"),
    );
    m.insert("nccl".into(), nv.join("nvidia/nccl/lib/libnccl.so.2"));
    if let Ok(v) = std::env::var("BTHOST_TEST_LIBS") {
        for part in v.split(',').filter(|p| !p.is_empty()) {
            let (k, p) = bthost::library::parse_override(part).expect("BTHOST_TEST_LIBS");
            m.insert(k, p);
        }
    }
    m
}

/// The folder holding NVIDIA's real libraries and headers from PyPI's wheels
/// (`nvidia/cuda_runtime/{lib,include}`, `nvidia/nccl/{lib,include}`), fetched once
/// (tests/standins/fetch-nvidia.sh; scripts/setup runs it too).
pub fn nvidia_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let o = Command::new("sh")
            .arg(root().join("tests/standins/fetch-nvidia.sh"))
            .output()
            .expect("run tests/standins/fetch-nvidia.sh");
        assert!(
            o.status.success(),
            "tests/standins/fetch-nvidia.sh: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())
    })
    .clone()
}

/// `--packs hip,rccl` with both libraries the stand-ins in `standins` (built by
/// [`build_standins`]).
pub fn standin_pack_args(standins: &Path) -> Vec<String> {
    vec![
        "--packs".into(),
        "hip,rccl".into(),
        "--lib".into(),
        format!("hip={}", standins.join("libamdhip64.so.5").display()),
        "--lib".into(),
        format!("rccl={}", standins.join("librccl.so.1").display()),
    ]
}

/// Builds the RCCL/HIP stand-ins and the multi-rank workload into `dir` (tests/standins/build.sh).
pub fn build_standins(dir: &Path) -> PathBuf {
    let o = Command::new("sh")
        .arg(root().join("tests/standins/build.sh"))
        .arg(dir)
        .output()
        .expect("run tests/standins/build.sh");
    assert!(
        o.status.success(),
        "tests/standins/build.sh: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    dir.to_path_buf()
}

/// Compiles `src` (relative to the workspace root) into `out`, linked against the RCCL/HIP
/// stand-ins in `standins` (found there at run time too), optimized (-O2).
pub fn compile_on_standins(src: &str, standins: &Path, out: &Path) -> PathBuf {
    let src = root().join(src);
    cc(&[
        "-O2",
        "-g",
        "-o",
        out.to_str().unwrap(),
        src.to_str().unwrap(),
        &format!("-L{}", standins.display()),
        &format!("-Wl,-rpath,{}", standins.display()),
        "-l:librccl.so.1",
        "-l:libamdhip64.so.5",
        "-lpthread",
    ]);
    out.to_path_buf()
}

/// Traces `cmd` system-wide: starts `bin -B line script > log` (no `-c`; and not `-o`, which
/// bpftrace fully buffers whatever `-B` says), waits until the script's BEGIN has written the
/// header (bpftrace runs BEGIN once every probe is attached), runs `cmd`
/// (any exit status: a hang scenario ends in timeouts), then stops bpftrace with SIGINT, as a
/// user's Ctrl-C. Not `-c`: from 0.2x bpftrace attaches uprobes to the `-c` process only, and
/// a workload's forked ranks would go untraced. Returns the command's stdout.
pub fn bpftrace_trace(bin: &Path, script: &Path, log: &Path, cmd: &str) -> String {
    let _serial = system_wide_lock();
    let mut bt = start_bpftrace(bin, script, log);
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("run the workload");
    stop_bpftrace(&mut bt, log);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Like [`bpftrace_trace`], for a workload that hangs: runs `cmd` in its own session, waits
/// until its stdout satisfies `stuck` (and a second more, for the waiters to be inside the
/// call), stops bpftrace as a user would (SIGINT: its END prints the calls in flight), then
/// kills the workload. Returns the workload's stdout.
pub fn bpftrace_trace_hang(
    bin: &Path,
    script: &Path,
    log: &Path,
    cmd: &str,
    stuck: impl Fn(&str) -> bool,
) -> String {
    let _serial = system_wide_lock();
    let mut bt = start_bpftrace(bin, script, log);
    let out_path = log.with_extension("workload-stdout");
    let mut w = Session(
        Command::new("setsid")
            .arg("sh")
            .arg("-c")
            .arg(cmd)
            .stdout(std::fs::File::create(&out_path).unwrap())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the workload"),
    );
    within_two_minutes(
        || {
            format!(
                "the workload never reached its hang: {}",
                std::fs::read_to_string(&out_path).unwrap_or_default()
            )
        },
        |_| stuck(&std::fs::read_to_string(&out_path).unwrap_or_default()).then_some(()),
    );
    std::thread::sleep(std::time::Duration::from_secs(1));
    stop_bpftrace(&mut bt, log);
    w.kill();
    std::fs::read_to_string(&out_path).unwrap()
}

/// A workload in its own session (setsid: its pid is its process group), killed whole (the
/// ranks it forked too) when done or when the test panics.
struct Session(std::process::Child);

impl Session {
    fn kill(&mut self) {
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--"])
            .arg(format!("-{}", self.0.id()))
            .status();
        let _ = self.0.wait();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            self.kill();
        }
    }
}

/// A running bpftrace, stopped (SIGINT) if a test panics before it stops it: probes are
/// system-wide and a leftover bpftrace would trace every later test.
pub struct Tracing(std::process::Child);

impl Drop for Tracing {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = Command::new("kill")
                .arg("-INT")
                .arg(self.0.id().to_string())
                .status();
            // A test is failing: give END a few seconds, then make sure it is gone.
            for _ in 0..50 {
                if !matches!(self.0.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts `bin -B line script > log` and waits for the header its BEGIN prints.
fn start_bpftrace(bin: &Path, script: &Path, log: &Path) -> Tracing {
    let _ = std::fs::remove_file(log);
    let err_path = log.with_extension("bpftrace-stderr");
    let mut bt = Command::new(bin)
        .args(["-B", "line"])
        .arg(script)
        .stdout(std::fs::File::create(log).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("start bpftrace");
    // At `record`'s priority (nice -10): the hang tests' ranks spin on every CPU, and a
    // bpftrace starved of the CPU loses events (1,089 in one loaded full run).
    let _ = Command::new("renice")
        .args(["-n", "-10", "-p", &bt.id().to_string()])
        .output();
    // Attaching takes a second or two.
    within_two_minutes(
        || "bpftrace did not attach within two minutes".to_string(),
        |_| {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if text.lines().any(|l| l.starts_with("#bthost ")) {
                return Some(());
            }
            if let Some(status) = bt.try_wait().unwrap() {
                panic!(
                    "bpftrace exited ({status}) before attaching: {}",
                    std::fs::read_to_string(&err_path).unwrap_or_default()
                );
            }
            None
        },
    );
    Tracing(bt)
}

/// Calls `ready` (with the number of earlier calls) every 100 ms until it gives a value;
/// fails with `what()` after two minutes. A liveness bound, not a timing assertion.
fn within_two_minutes<T>(what: impl Fn() -> String, mut ready: impl FnMut(u32) -> Option<T>) -> T {
    for polls in 0..1200 {
        if let Some(v) = ready(polls) {
            return v;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("{}", what());
}

/// Stops bpftrace with SIGINT (a user's Ctrl-C) and checks it ended cleanly. The signal is
/// sent again every 3 s until bpftrace's END has begun (its `#E` line is in the log):
/// bpftrace 0.17 has been seen to miss one (the test, or the benchmark, then waited forever),
/// as `bthost record` also found. Not after: a signal that comes while bpftrace detaches its
/// probes (seconds on a busy machine) kills it.
fn stop_bpftrace(bt: &mut Tracing, log: &Path) {
    let ending = || std::fs::read(log).is_ok_and(|b| b.starts_with(b"#E") || memmem(&b, b"\n#E"));
    let status = within_two_minutes(
        || "bpftrace did not stop within two minutes of SIGINT".to_string(),
        |polls| {
            if polls % 30 == 0 && (polls == 0 || !ending()) {
                let _ = Command::new("kill")
                    .arg("-INT")
                    .arg(bt.0.id().to_string())
                    .status();
            }
            bt.0.try_wait().unwrap()
        },
    );
    let err_path = log.with_extension("bpftrace-stderr");
    assert!(
        status.success(),
        "bpftrace: {status}: {}",
        std::fs::read_to_string(&err_path).unwrap_or_default()
    );
}

/// The ranks a `rccl_ranks` run printed: (rank, pid, device, stream, comm).
pub fn ranks_of(stdout: &str) -> Vec<(i64, u32, i64, u64, u64)> {
    let mut v = Vec::new();
    for l in stdout.lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        if let ["rank", r, "pid", p, "device", d, "stream", s, "comm", c] = w.as_slice() {
            let hex = |x: &str| u64::from_str_radix(x.trim_start_matches("0x"), 16).unwrap();
            v.push((
                r.parse().unwrap(),
                p.parse().unwrap(),
                d.parse().unwrap(),
                hex(s),
                hex(c),
            ));
        }
    }
    v.sort();
    v
}

/// Runs `bthost record ARGS...` holding the tracing lock (the probes are system-wide), and
/// returns its output: stderr has what record says, stdout the traced command's.
pub fn bthost_record(args: &[&str]) -> Output {
    let _serial = system_wide_lock();
    Command::new(bthost_bin())
        .arg("record")
        .args(args)
        .output()
        .expect("run bthost record")
}

/// Probes are system-wide: two tests tracing the same library at once would see each other's
/// workloads. Tests that trace hold this lock (a file lock, so it also serialises tests that
/// run in separate processes, as under nextest, and those of two checkouts on one machine:
/// a fresh clone's CI run beside a working tree's tests saw each other's HIP calls).
pub fn system_wide_lock() -> std::fs::File {
    // Not root (tests that skip what needs root): this build's own folder.
    let machine = Path::new("/run/bthost-tests/tracing.lock");
    let path = if std::fs::create_dir_all(machine.parent().unwrap()).is_ok() {
        machine.to_path_buf()
    } else {
        out_dir().join("e2e-scratch").join(".tracing.lock")
    };
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let f = std::fs::File::create(&path).expect("create the tracing lock");
    f.lock().expect("take the tracing lock");
    f
}

/// Whether `needle` occurs in `hay`.
fn memmem(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The warnings bpftrace printed about a script's own code: `FILE:LINE:COL[-COL]: WARNING: ...`
/// (the machine's, such as RLIMIT_MEMLOCK, have no position). 0.24 to 0.27.0 print them on
/// stdout, 0.17, 0.23 and 0.27.1 on stderr: give both.
pub fn script_warnings(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|l| {
            let Some((pos, _)) = l.split_once(": WARNING:") else {
                return false;
            };
            let mut parts = pos.rsplitn(3, ':');
            let col = parts.next().unwrap_or("");
            let line = parts.next().unwrap_or("");
            parts.next().is_some()
                && !line.is_empty()
                && line.bytes().all(|b| b.is_ascii_digit())
                && !col.is_empty()
                && col.bytes().all(|b| b.is_ascii_digit() || b == b'-')
        })
        .collect()
}

/// The number in bpftrace's "Attaching N probes" ("Attached N probes" from 0.27). It may
/// exceed the script's probes: bpftrace 0.17 also attaches a function's uprobe at C++
/// function-local objects whose demangled names start with it (libnccl's `ncclCommInitRank::schema`: data, never executed), so NCCL's
/// ncclCommInitRank, ncclGroupEnd and ncclCommFinalize count 3 each there.
pub fn attached(out: &str) -> usize {
    ["Attaching ", "Attached "] // bpftrace 0.27 says "Attached 110 probes"
        .iter()
        .find_map(|w| {
            out.split(w)
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// The probes in a script: one per probe header line (a multi-probe line `a,` counts each).
pub fn probes_in(script: &str) -> usize {
    script
        .lines()
        .filter(|l| {
            ["uprobe:", "uretprobe:", "tracepoint:", "interval:"]
                .iter()
                .any(|p| l.starts_with(p))
                || *l == "BEGIN"
                || *l == "END"
        })
        .count()
}

/// Fails the test, saying `what`, if bpftrace warned about a script's own code in `out`
/// (its stdout and stderr, or record's; see [`script_warnings`]).
pub fn assert_no_script_warnings(out: &str, what: &str) {
    let warned = script_warnings(out);
    assert!(
        warned.is_empty(),
        "{what}: bpftrace warns about the script:\n{}",
        warned.join("\n")
    );
}

/// Runs `script` (written from `built`, composed with `exit_after_begin`) on the bpftrace
/// `bin`, holding the tracing lock, and checks that bpftrace accepted it, attached every probe
/// (the script's and BEGIN/END), printed the log's header and warned of nothing in it; `what`
/// says which in a failure. Returns what bpftrace printed (stdout, then stderr).
pub fn run_built_script(
    bin: &Path,
    script: &Path,
    built: &bthost::compose::Built,
    what: &str,
) -> String {
    let out = {
        let _serial = system_wide_lock();
        Command::new(bin).arg(script).output().unwrap()
    };
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{what}: {} rejected {}:\n{all}",
        bin.display(),
        script.display()
    );
    let want = built.probe_count + 2;
    assert!(
        attached(&all) >= want,
        "{what}: bpftrace did not attach every probe (Attaching {want} probes):\n{all}"
    );
    assert!(
        all.contains(&built.schema.header_line()),
        "{what}: no header printed:\n{all}"
    );
    assert_no_script_warnings(&all, &format!("{what} ({})", script.display()));
    all
}

#[cfg(test)]
mod script_warning_tests {
    #[test]
    fn only_warnings_with_a_position_are_the_scripts() {
        let out = "WARNING: Unknown error -1: couldn't set RLIMIT_MEMLOCK for bpftrace.\n\
                   /proc/self/fd/6:2595:43-47: WARNING: Expression of type: uint64 being cast to type: int64.\n\
                   \x20   if (arg1 == 0) { @hold = 0; }\n\
                   x.bt:12:3: WARNING: Return value discarded.\n\
                   WARNING: Could not read functions from /sys/kernel/tracing/available_filter_functions.\n";
        assert_eq!(
            super::script_warnings(out),
            vec![
                "/proc/self/fd/6:2595:43-47: WARNING: Expression of type: uint64 being cast to type: int64.",
                "x.bt:12:3: WARNING: Return value discarded."
            ]
        );
    }
}
