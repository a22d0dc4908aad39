//! Helpers for bthost's end-to-end tests: where the workspace and its built binaries are,
//! compiling C workloads, running bthost and real bpftrace.
//!
//! These tests use real parts: real bpftrace (as root), real uprobes, the real Debian ROCm
//! libraries. They fail (not skip) when those are missing, with the command that installs them,
//! unless `BTHOST_SKIP_ROOT_TESTS=1` is set, for a machine that cannot run them at all.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
    let o = bthost(args);
    assert!(
        o.status.success(),
        "bthost {args:?} failed: {}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
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

/// Compiles `tests/workloads/<name>.c` into `dir/<name>` with extra `libs`.
pub fn compile_workload(name: &str, dir: &Path, libs: &[&str]) -> PathBuf {
    let src = root().join("tests/workloads").join(format!("{name}.c"));
    let exe = dir.join(name);
    let o = Command::new("cc")
        .args(["-O1", "-g", "-o"])
        .arg(&exe)
        .arg(&src)
        .args(libs)
        .output()
        .expect("run cc");
    assert!(
        o.status.success(),
        "cc {}: {}",
        src.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    exe
}

/// Runs `bpftrace script -o log -c cmd` and returns (log text, bpftrace's output).
pub fn bpftrace_run(bpftrace: &str, script: &Path, log: &Path, cmd: &str) -> (String, Output) {
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

/// Where tests/bpftrace/setup-trixie.sh puts Debian 13's bpftrace (0.23), runnable on the host.
pub const TRIXIE_BPFTRACE: &str = "/var/cache/bthost/trixie/bpftrace-host";

/// Every bpftrace this machine has for tests: `bpftrace` on PATH, Debian 13's from
/// tests/bpftrace/setup-trixie.sh, and those in `$BTHOST_BPFTRACE_EXTRA` (colon-separated).
pub fn available_bpftraces() -> Vec<(PathBuf, semver::Version)> {
    let mut cands: Vec<PathBuf> = vec![PathBuf::from("bpftrace"), PathBuf::from(TRIXIE_BPFTRACE)];
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
    if let Ok(v) = std::env::var("BTHOST_TEST_LIBS") {
        for part in v.split(',').filter(|p| !p.is_empty()) {
            let (k, p) = bthost::library::parse_override(part).expect("BTHOST_TEST_LIBS");
            m.insert(k, p);
        }
    }
    m
}
