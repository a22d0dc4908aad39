//! A job that loads another copy of a pack's library than ldconfig's: `record -- PROG` probes
//! the copy the program loads (its NEEDED entries, through its runpath), without --lib; a
//! record whose probes are forced onto another copy names the process, the file it loaded and
//! the --lib that would probe it (and explains the log's 0 records); a record whose job is not
//! known probes every copy found, in one probe block per function with an attach point on each
//! copy, on every bpftrace this machine has.
//!
//! The copies are copies of the real HIP runtime (Debian's libamdhip64.so.5) in other folders.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bthost::calls::decode_log;
use bthost::registry::{Registry, SearchPaths};
use bthost_tests::*;

/// A program on the HIP copy in `lib_dir` (found through its runpath): it prints its pid and
/// calls hipGetDeviceCount three times.
fn program(dir: &Path, lib_dir: &Path) -> PathBuf {
    let src = dir.join("copy_user.c");
    std::fs::write(
        &src,
        "#include <stdio.h>\n#include <unistd.h>\nint hipGetDeviceCount(int *c);\n\
         int main(void) {\n\tint c = 0;\n\tprintf(\"pid %d\\n\", (int)getpid());\n\tfflush(stdout);\n\
         \tfor (int i = 0; i < 3; i++) hipGetDeviceCount(&c);\n\treturn 0;\n}\n",
    )
    .unwrap();
    let exe = dir.join("copy_user");
    cc(&[
        "-O1",
        "-o",
        exe.to_str().unwrap(),
        src.to_str().unwrap(),
        &format!("-L{}", lib_dir.display()),
        "-l:libamdhip64.so.5",
        &format!("-Wl,-rpath,{}", lib_dir.display()),
    ]);
    exe
}

/// A copy of the real HIP runtime (a file of its own) in `dir`.
fn hip_copy(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join("libamdhip64.so.5");
    std::fs::copy(HIP_LIB, &p).unwrap();
    p
}

/// `bthost record ARGS` with `env` set, holding the tracing lock.
fn record(args: &[&str], env: &[(&str, &str)]) -> Output {
    let _serial = system_wide_lock();
    let mut c = Command::new(bthost_bin());
    c.arg("record").args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run bthost record")
}

fn pid_of(o: &Output) -> u32 {
    let out = String::from_utf8_lossy(&o.stdout);
    out.lines()
        .find_map(|l| l.strip_prefix("pid "))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("the program did not print its pid: {out}"))
}

/// The calls to `function` that process `pid` made, as `log` has them (the probes are
/// system-wide: other processes may use the probed copy meanwhile).
fn calls(log: &Path, pid: u32, function: &str) -> usize {
    let reg = Registry::discover(&SearchPaths::standard(&[]), true);
    let mut n = 0;
    decode_log(&reg, log, None, |_, evs| {
        n += evs
            .iter()
            .filter(|e| e.pid == pid && e.name.as_str() == function)
            .count();
    })
    .unwrap();
    n
}

/// Whether a warning names a process that loaded `file` (another copy than those probed).
fn named_as_loaded(err: &str, file: &Path) -> bool {
    err.lines()
        .any(|l| l.contains(" loaded ") && l.contains(&format!("loaded {};", file.display())))
}

#[test]
fn the_copy_the_job_loads_is_probed_and_another_is_named() {
    if skip_root_tests() {
        return;
    }
    require_hip();
    let dir = scratch("library_copies");
    let copy = hip_copy(&dir.join("private"));
    let prog = program(&dir, &dir.join("private"));
    let prog_s = prog.to_str().unwrap();

    // No --lib: the program's copy, not ldconfig's.
    let log = dir.join("job.log");
    let o = record(
        &["--packs", "hip", "-o", log.to_str().unwrap(), "--", prog_s],
        &[],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let said = format!(
        "bthost: pack hip: probes {} (the command {prog_s} loads it: copy_user NEEDs libamdhip64.so.5, found through its runpath ({}))",
        copy.display(),
        dir.join("private").display()
    );
    assert!(err.contains(&said), "want {said:?} in:\n{err}");
    assert!(
        err.contains(&format!(
            "bthost: pack hip: not probing {HIP_LIB} (ldconfig): the command {prog_s} loads another copy"
        )),
        "{err}"
    );
    assert!(!named_as_loaded(&err, &copy), "{err}");
    assert!(!err.contains("0 records"), "{err}");
    assert_eq!(calls(&log, pid_of(&o), "hipGetDeviceCount"), 3, "{err}");

    // The probes forced onto ldconfig's copy: the process that loaded the other is named,
    // with the file it loaded and the --lib to give; and the empty log is explained.
    let log = dir.join("forced.log");
    let lib_arg = format!("hip={HIP_LIB}");
    let o = record(
        &[
            "--packs",
            "hip",
            "--lib",
            &lib_arg,
            "-o",
            log.to_str().unwrap(),
            "--",
            prog_s,
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let probed = std::fs::canonicalize(HIP_LIB).unwrap();
    let warning = format!(
        "bthost: warning: pid {} loaded {}; the hip probes were on {}: use --lib hip={}",
        pid_of(&o),
        copy.display(),
        probed.display(),
        copy.display()
    );
    assert!(err.contains(&warning), "want {warning:?} in:\n{err}");
    assert!(
        err.contains("bthost: warning: the log has 0 records: the traced processes loaded other copies of the libraries than the ones probed"),
        "{err}"
    );
    assert_eq!(calls(&log, pid_of(&o), "hipGetDeviceCount"), 0);
}

#[test]
fn every_copy_is_probed_when_the_job_is_not_known() {
    if skip_root_tests() {
        return;
    }
    require_hip();
    let dir = scratch("library_copies_all");
    // A ROCm install of its own ($ROCM_PATH) beside ldconfig's; the program uses the former.
    let rocm = dir.join("rocm");
    let copy = hip_copy(&rocm.join("lib"));
    let prog = program(&dir, &rocm.join("lib"));
    for (bin, version) in available_bpftraces() {
        let log = dir.join(format!("all-{version}.log"));
        // Through a shell: the command's own program does not load HIP, so the job's copy is
        // not known and every copy found is probed.
        let o = record(
            &[
                "--packs",
                "hip",
                "--bpftrace-bin",
                bin.to_str().unwrap(),
                "-o",
                log.to_str().unwrap(),
                "--",
                "sh",
                "-c",
                prog.to_str().unwrap(),
            ],
            &[("ROCM_PATH", rocm.to_str().unwrap())],
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{version}: {err}");
        for (path, how) in [
            (PathBuf::from(HIP_LIB), "ldconfig"),
            (copy.clone(), "$ROCM_PATH/lib"),
        ] {
            let said = format!("bthost: pack hip: probes {} ({how})", path.display());
            assert!(err.contains(&said), "{version}: want {said:?} in:\n{err}");
        }
        // One block, an attach point on each copy.
        let script = std::fs::read_to_string(dir.join(format!("all-{version}.log.bt"))).unwrap();
        let both = format!(
            "uprobe:{HIP_LIB}:hipGetDeviceCount,\nuprobe:{}:hipGetDeviceCount\n{{",
            copy.display()
        );
        assert!(
            script.contains(&both),
            "{version}: no {both:?} in the script"
        );
        assert!(!named_as_loaded(&err, &copy), "{version}: {err}");
        assert_eq!(
            calls(&log, pid_of(&o), "hipGetDeviceCount"),
            3,
            "{version}: {err}"
        );
    }
}
