//! `cargo install --path host --root <tmp>`: the installed binary, run from a folder outside
//! the source tree with no BTHOST_* variable set, finds its built-in packs and plugins and
//! lists, builds and records with them (a copy of the binary on a node works the same way).
//!
//! A debug build in its own target folder (target/install-test), so that it never waits on or
//! disturbs the workspace's build; `--locked --offline`: the workspace build fetched every crate.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bthost_tests::*;

fn install(prefix: &Path) -> PathBuf {
    let target = out_dir()
        .parent()
        .expect("target folder")
        .join("install-test");
    let o = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "install",
            "--quiet",
            "--debug",
            "--locked",
            "--offline",
            "--path",
        ])
        .arg(root().join("host"))
        .arg("--root")
        .arg(prefix)
        .arg("--target-dir")
        .arg(&target)
        .output()
        .expect("run cargo install");
    assert!(
        o.status.success(),
        "cargo install: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let bin = prefix.join("bin/bthost");
    assert!(bin.is_file(), "{} not installed", bin.display());
    bin
}

/// Runs the installed binary from `cwd` with no BTHOST_* variable.
fn run(bin: &Path, cwd: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(bin);
    c.current_dir(cwd).args(args);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("BTHOST_") {
            c.env_remove(k);
        }
    }
    c.output().expect("run the installed bthost")
}

fn ok(o: Output, what: &str) -> (String, String) {
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{what}: {}\n{out}\n{err}", o.status);
    (out, err)
}

#[test]
fn an_installed_binary_lists_builds_and_records_with_its_own_packs() {
    let dir = scratch("install");
    let prefix = dir.join("prefix");
    let bin = install(&prefix);
    // Nothing but the binary: no packs or plugins beside it.
    assert!(!prefix.join("share").exists() && !prefix.join("lib").exists());
    let cwd = dir.join("elsewhere");
    std::fs::create_dir_all(&cwd).unwrap();

    let (packs, _) = ok(run(&bin, &cwd, &["packs"]), "packs");
    for name in ["hip", "hsa", "rccl"] {
        let block = packs
            .split("\n")
            .skip_while(|l| !l.starts_with(&format!("{name} ")))
            .take(3)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            block.contains("from:     built into bthost"),
            "{name}:\n{packs}"
        );
    }
    assert!(
        packs.contains("plugin:   built into bthost (ABI"),
        "{packs}"
    );

    let (_, _) = ok(
        run(
            &bin,
            &cwd,
            &[
                "build",
                "--packs",
                "hip,hsa",
                "--bpftrace",
                "0.17.0",
                "-o",
                "t.bt",
            ],
        ),
        "build",
    );
    let script = std::fs::read_to_string(cwd.join("t.bt")).unwrap();
    assert!(script.contains("uprobe:") && script.contains("hipGetDeviceCount"));

    if skip_root_tests() {
        return;
    }
    require_hip();
    let app = compile_workload("hip_basic", &dir, &["-l:libamdhip64.so.5", "-lpthread"]);
    let _serial = system_wide_lock();
    let (_, err) = ok(
        run(
            &bin,
            &cwd,
            &[
                "record",
                "--packs",
                "hip",
                "-o",
                "run.log",
                "--",
                app.to_str().unwrap(),
            ],
        ),
        "record",
    );
    assert!(err.contains("bthost: the log is complete"), "{err}");
    drop(_serial);
    let (_, err) = ok(
        run(&bin, &cwd, &["convert", "run.log", "-o", "run"]),
        "convert",
    );
    let text = std::fs::read_to_string(cwd.join("run/log.txt")).unwrap_or_default();
    assert!(
        text.contains("hipGetDeviceCount(count=0) = hipErrorNoDevice(100)"),
        "{err}\n{text}"
    );
}
