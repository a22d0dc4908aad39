//! Outputs as root, and record's refusals of bad input. A symlink another user planted at an
//! output's name (a shared folder, /tmp) must not redirect root's writes: `record` and
//! `convert` refuse each output path that is a link, before writing anything, and the link's
//! target is untouched. Bad options are clear errors before anything starts.

use std::path::Path;
use std::process::{Command, Output};

use bthost_tests::*;

fn fixtures() -> std::path::PathBuf {
    root().join("tests/fixtures/packs")
}

fn record(log: &Path, extra: &[&str], app: &Path) -> Output {
    Command::new(bthost_bin())
        .arg("--pack-path")
        .arg(fixtures())
        .args(["record", "--packs", "shortapp", "--lib"])
        .arg(format!("shortapp={}", app.display()))
        .args(extra)
        .arg("-o")
        .arg(log)
        .arg("--")
        .arg(app)
        .output()
        .unwrap()
}

/// Plants a symlink at `at` to a file holding "precious"; returns the target.
fn plant(at: &Path, dir: &Path, name: &str) -> std::path::PathBuf {
    let target = dir.join(format!("target-{name}"));
    std::fs::write(&target, "precious").unwrap();
    std::os::unix::fs::symlink(&target, at).unwrap();
    target
}

#[test]
fn record_refuses_a_symlink_at_each_output() {
    if skip_root_tests() {
        return;
    }
    let dir = scratch("outputs-record");
    let app = compile_workload("short_app", &dir, &[]);
    for (name, at) in [
        ("log", "x.log"),
        ("script", "x.log.bt"),
        ("schema", "x.log.schema"),
        ("maps", "x.log.maps"),
    ] {
        let case = dir.join(name);
        std::fs::create_dir_all(&case).unwrap();
        let target = plant(&case.join(at), &dir, name);
        let o = {
            let _serial = system_wide_lock();
            record(&case.join("x.log"), &[], &app)
        };
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{name}: {err}");
        assert!(
            err.contains(at) && (err.contains("symlink") || err.contains("link")),
            "{name}: {err}"
        );
        // Refused before anything ran: the workload did not start, the target is intact.
        assert!(
            !String::from_utf8_lossy(&o.stdout).contains("short_app"),
            "{name}"
        );
        assert_eq!(
            std::fs::read_to_string(&target).unwrap(),
            "precious",
            "{name}"
        );
    }
}

#[test]
fn convert_refuses_a_symlink_at_each_output() {
    if skip_root_tests() {
        return;
    }
    let dir = scratch("outputs-convert");
    let app = compile_workload("short_app", &dir, &[]);
    let log = dir.join("run.log");
    let o = {
        let _serial = system_wide_lock();
        record(&log, &[], &app)
    };
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for at in ["log.txt", "trace.pftrace"] {
        let out = dir.join(format!("out-{at}"));
        std::fs::create_dir_all(&out).unwrap();
        let target = plant(&out.join(at), &dir, at);
        let o = Command::new(bthost_bin())
            .arg("--pack-path")
            .arg(fixtures())
            .arg("convert")
            .arg(&log)
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{at}: {err}");
        assert!(err.contains(at) && err.contains("symlink"), "{at}: {err}");
        assert_eq!(
            std::fs::read_to_string(&target).unwrap(),
            "precious",
            "{at}"
        );
    }
    // The output folder itself, a link planted in its place.
    let real = dir.join("elsewhere");
    std::fs::create_dir_all(&real).unwrap();
    let planted = dir.join("planted");
    std::os::unix::fs::symlink(&real, &planted).unwrap();
    // A link root owns is followed (it is the user's own); one another user owns is not.
    // SAFETY: lchown on a path we made.
    let c = std::ffi::CString::new(planted.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { lchown(c.as_ptr(), 65534, 65534) }, 0);
    let o = Command::new(bthost_bin())
        .arg("--pack-path")
        .arg(fixtures())
        .arg("convert")
        .arg(&log)
        .arg("-o")
        .arg(planted.join("sub"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("symlink owned by uid 65534"), "{err}");
    assert!(!real.join("sub").exists());
}

extern "C" {
    fn lchown(path: *const std::ffi::c_char, uid: u32, gid: u32) -> i32;
}

#[test]
fn record_refuses_bad_options_before_starting() {
    let dir = scratch("record-bad-options");
    let app = compile_workload("short_app", &dir, &[]);
    let log = dir.join("x.log");
    for (extra, want) in [
        (
            &["--pid", "4194305"][..],
            "--pid 4194305: there is no process 4194305",
        ),
        (&["--flight-recorder", "0"][..], "--flight-recorder"),
        (&["--on-hang", "2"][..], "--flight-recorder"),
        (
            &["--flight-recorder", "8", "--on-hang", "0"][..],
            "--on-hang 0: expected a number of seconds above 0",
        ),
        (
            &["--duration=-1"][..],
            "--duration -1: expected a number of seconds above 0",
        ),
    ] {
        let o = record(&log, extra, &app);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains(want), "{extra:?}: wanted {want:?} in {err}");
        assert!(!log.exists(), "{extra:?}: nothing is written");
    }
}

/// As root, a bpftrace that another user could replace (in a world-writable folder) is never
/// run, not even for `--version`: it would run as root.
#[test]
fn record_as_root_refuses_a_bpftrace_others_can_replace() {
    if skip_root_tests() {
        return;
    }
    let dir = scratch("record-unsafe-bpftrace");
    let app = compile_workload("short_app", &dir, &[]);
    let open = dir.join("open");
    std::fs::create_dir_all(&open).unwrap();
    std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let fake = open.join("bpftrace");
    let ran = dir.join("ran");
    std::fs::write(
        &fake,
        format!("#!/bin/sh\ntouch {}\nexec bpftrace \"$@\"\n", ran.display()),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let log = dir.join("x.log");
    let o = record(&log, &["--bpftrace-bin", fake.to_str().unwrap()], &app);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "not running {} as root: {} is writable by everyone",
            fake.display(),
            open.display()
        )),
        "{err}"
    );
    assert!(!ran.exists() && !log.exists());
    // The same file, once no other user can change it, runs.
    std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let o = record(&log, &["--bpftrace-bin", fake.to_str().unwrap()], &app);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(ran.exists());
}
