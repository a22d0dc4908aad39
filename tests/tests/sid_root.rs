//! bthost on today's Debian, as its users have it: a Debian sid root (tests/bpftrace/
//! setup-root.sh sid) with bpftrace 0.27.1, HIP 6.4 and, from experimental, HIP 7.2, HSA 7.2
//! and RCCL 7.2.4, installed the Debian way. The bthost built here is copied in and run there
//! (chroot, with the host's /proc, /sys and /dev), with no `--lib`: it must find the HIP each
//! program is linked against, and doctor must show no failure. The logs are read back on the
//! host, as a user would on another machine.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bthost_tests::*;

/// Where the test's files go inside the root (and so, on the host, below SID_ROOT).
const IN_ROOT: &str = "/opt/bthost-test";

fn require_root() -> PathBuf {
    let root = PathBuf::from(SID_ROOT);
    assert!(
        root.join("usr/lib/x86_64-linux-gnu/librccl.so.1").is_file()
            && root.join("usr/bin/bpftrace").is_file(),
        "no Debian sid root at {SID_ROOT}: run tests/bpftrace/setup-root.sh sid (scripts/setup does it)"
    );
    root
}

/// Runs `cmd` (a shell command line) chrooted in `root`, in a private mount namespace with
/// the host's /proc, /sys and /dev (bpftrace needs them; they go with the namespace).
fn in_root(root: &Path, cmd: &str) -> Output {
    Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(
            "r=$1; shift; for d in proc sys dev; do mount --rbind /$d \"$r/$d\" || exit 97; done; \
             exec chroot \"$r\" /bin/sh -c \"$1\"",
        )
        .arg("sh")
        .arg(root)
        .arg(cmd)
        .output()
        .expect("run unshare/chroot")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The test's folder in the root, with this build's bthost and the programs: the HIP demo
/// linked against HIP 6 and against HIP 7 (compiled here; their NEEDED names pick the
/// library), and a program that asks RCCL 7.2.4 its version.
fn prepare(root: &Path) -> PathBuf {
    let dir = root.join(IN_ROOT.trim_start_matches('/'));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(bthost_bin(), dir.join("bthost")).unwrap();
    let lib = root.join("usr/lib/x86_64-linux-gnu");
    let demo = root_dir().join("tests/workloads/hip_basic.c");
    for v in [6, 7] {
        cc(&[
            "-O2",
            "-o",
            dir.join(format!("hip{v}")).to_str().unwrap(),
            demo.to_str().unwrap(),
            lib.join(format!("libamdhip64.so.{v}")).to_str().unwrap(),
            // The root's libraries need its newer libc and libstdc++: left for its loader.
            "-Wl,--allow-shlib-undefined",
        ]);
    }
    let src = dir.join("rccl_version.c");
    std::fs::write(
        &src,
        "#include <stdio.h>\nint ncclGetVersion(int *version);\n\
         int main(void) { int v = 0; int r = ncclGetVersion(&v); printf(\"ncclGetVersion -> %d (%d)\\n\", r, v); return r; }\n",
    )
    .unwrap();
    cc(&[
        "-O2",
        "-o",
        dir.join("rccl_version").to_str().unwrap(),
        src.to_str().unwrap(),
        lib.join("librccl.so.1").to_str().unwrap(),
        "-Wl,--allow-shlib-undefined",
    ]);
    dir
}

fn root_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn doctor_finds_both_hips_and_fails_nothing() {
    if skip_root_tests() {
        return;
    }
    let root = require_root();
    let _serial = system_wide_lock();
    prepare(&root);
    let o = in_root(
        &root,
        &format!("{IN_ROOT}/bthost doctor --packs hip,hsa,rccl"),
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "doctor failed:\n{out}\n{err}");
    assert!(!out.contains("[FAIL]"), "{out}");
    for want in [
        "bpftrace 0.27.1",
        "libamdhip64.so.6",
        "libamdhip64.so.7",
        "version 6.4.",
        "version 7.2.",
        "2.27.7",
    ] {
        assert!(out.contains(want), "doctor does not say {want:?}:\n{out}");
    }
    // RCCL 7.2.4 NEEDs HIP 7: its nested probe must be on that file, not look for HIP 5.
    let nested = out
        .lines()
        .find(|l| l.contains("nested hipGetDevice"))
        .unwrap_or_else(|| panic!("no nested probe in:\n{out}"));
    assert!(
        nested.starts_with("[ok  ]") && nested.contains("libamdhip64.so.7"),
        "{nested}"
    );
}

/// Records `prog` in the root with no --lib; returns record's stderr and the log's text
/// (converted on the host).
fn record(root: &Path, dir: &Path, prog: &str, packs: &str, extra: &str) -> (String, String) {
    let log = format!("{IN_ROOT}/{prog}.log");
    let o = in_root(
        root,
        &format!("cd {IN_ROOT} && ./bthost record --packs {packs} {extra} -o {log} -- ./{prog}"),
    );
    let (_, err) = text(&o);
    assert!(o.status.success(), "record {prog}: {err}");
    assert_no_script_warnings(&err, &format!("record {prog} on bpftrace 0.27.1"));
    let out = dir.join(format!("{prog}-out"));
    let c = bthost(&[
        "convert",
        dir.join(format!("{prog}.log")).to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(
        c.status.success(),
        "convert: {}",
        String::from_utf8_lossy(&c.stderr)
    );
    (err, std::fs::read_to_string(out.join("log.txt")).unwrap())
}

#[test]
fn records_programs_on_either_hip_with_no_lib() {
    if skip_root_tests() {
        return;
    }
    let root = require_root();
    let _serial = system_wide_lock();
    let dir = prepare(&root);
    for (v, extra) in [(6, ""), (7, ""), (7, "--flight-recorder 64")] {
        let prog = format!("hip{v}");
        let (err, log) = record(&root, &dir, &prog, "hip", extra);
        let probed = format!("probes /usr/lib/x86_64-linux-gnu/libamdhip64.so.{v}");
        assert!(
            err.contains(&probed),
            "record does not say {probed:?}:\n{err}"
        );
        // Every call of the demo, with the real runtime's answer (no GPU here).
        for call in [
            "hipGetDeviceCount(count=0) = hipErrorNoDevice(100)",
            "hipMalloc(",
            "hipMemcpyAsync(",
            // Its kernel stays an address: the log is read on the host, where the program's
            // path (/opt/bthost-test/...) is not that file.
            "hipLaunchKernel(function=",
            "hipStreamSynchronize(stream=null(0))",
            "hipDeviceSynchronize()",
            "process exit(status=0",
        ] {
            assert!(log.contains(call), "{prog} {extra}: no {call:?} in:\n{log}");
        }
    }
}

#[test]
fn records_rccl_7_with_its_hip() {
    if skip_root_tests() {
        return;
    }
    let root = require_root();
    let _serial = system_wide_lock();
    let dir = prepare(&root);
    let (err, log) = record(&root, &dir, "rccl_version", "hip,rccl", "");
    assert!(err.contains("librccl.so.1"), "{err}");
    // RCCL 7.2.4 implements NCCL's API 2.27.7: ncclGetVersion answers 22707.
    assert!(
        log.contains("ncclGetVersion(version=22707) = ncclSuccess(0)"),
        "{log}"
    );
}
