//! Variants and probes chosen by the library's version: one pack (tests/fixtures/packs/verlib)
//! for two releases of a library whose argument order and struct layout differ
//! (tests/workloads/verlib.c). Real builds of each release, traced with real bpftrace: the
//! version is read from the text the library carries, `record` says which variant it picked
//! and why, and the decoded arguments and the struct field are right for both releases. A
//! release the pack has no variant for is refused by name, with the version it read.

use std::path::{Path, PathBuf};

use bthost_tests::*;

/// Builds release `version` of libverlib into `dir` (libverlib.so.MAJOR -> libverlib.so.VERSION)
/// and the program that calls it; returns (library link, program).
fn release(dir: &Path, version: &str) -> (PathBuf, PathBuf) {
    let major = version.split('.').next().unwrap();
    let layout = if major == "1" { "1" } else { "2" };
    let src = root().join("tests/workloads");
    let real = dir.join(format!("libverlib.so.{version}"));
    let link = dir.join(format!("libverlib.so.{major}"));
    cc(&[
        "-shared",
        "-fPIC",
        "-O1",
        &format!("-DVERLIB_MAJOR={layout}"),
        &format!("-DVERLIB_VERSION=\"{version}\""),
        &format!("-Wl,-soname,libverlib.so.{major}"),
        "-o",
        real.to_str().unwrap(),
        src.join("verlib.c").to_str().unwrap(),
    ]);
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let app = dir.join(format!("verlib_app{major}"));
    cc(&[
        "-O1",
        &format!("-DVERLIB_MAJOR={layout}"),
        "-o",
        app.to_str().unwrap(),
        src.join("verlib_app.c").to_str().unwrap(),
        &format!("-L{}", dir.display()),
        &format!("-l:libverlib.so.{major}"),
        &format!("-Wl,-rpath,{}", dir.display()),
    ]);
    (link, app)
}

#[test]
fn each_release_gets_its_layout_and_offsets() {
    if skip_root_tests() {
        return;
    }
    let dir = scratch("library_versions");
    let fixtures = root().join("tests/fixtures/packs");
    for (version, variant, range) in [("1.9.0", 1, "<2.0.0"), ("2.21.5", 2, ">=2.0.0, <3.0.0")] {
        let (lib, app) = release(&dir, version);
        let log = dir.join(format!("v{version}.log"));
        let lib_arg = format!("verlib={}", lib.display());
        let o = bthost_record(&[
            "--pack-path",
            fixtures.to_str().unwrap(),
            "--packs",
            "verlib",
            "--lib",
            &lib_arg,
            "-o",
            log.to_str().unwrap(),
            "--",
            app.to_str().unwrap(),
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{version}: {err}");
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "verlib_work 57");
        let major = version.split('.').next().unwrap();
        let said = format!(
            "bthost: pack verlib: variant {variant} of 2 (bpftrace \">=0.17.0, <0.28.0\", library \"{range}\") for bpftrace "
        );
        assert!(err.contains(&said), "{version}: want {said:?} in {err}");
        let why = format!(
            "libverlib.so.{version} is {version} (from the text \"VERLIB version {version}\" in the file)"
        );
        assert!(err.contains(&why), "{version}: want {why:?} in {err}");

        let out = dir.join(format!("v{version}"));
        bthost_convert(&log, &out, &["--pack-path", fixtures.to_str().unwrap()]);
        let text = std::fs::read_to_string(out.join("log.txt")).unwrap();
        let want = if major == "1" {
            "verlib_work(a=7, b=8, field=42) = 57"
        } else {
            "verlib_work(b=8, a=7, field=42) = 57"
        };
        assert!(text.contains(want), "{version}: want {want:?} in\n{text}");
    }

    // Release 3 has no variant: refused, saying what it read and what the pack supports.
    let (lib, _) = release(&dir, "3.0.1");
    let o = bthost(&[
        "build",
        "--pack-path",
        fixtures.to_str().unwrap(),
        "--packs",
        "verlib",
        "--bpftrace",
        "0.17.0",
        "--lib",
        &format!("verlib={}", lib.display()),
        "-o",
        dir.join("v3.bt").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("pack verlib 0.1.0 has no variant for bpftrace 0.17.0")
            && err.contains("library \">=2.0.0, <3.0.0\"")
            && err.contains(
                "libverlib.so.3.0.1 is 3.0.1 (from the text \"VERLIB version 3.0.1\" in the file)"
            ),
        "{err}"
    );

    // doctor says the same choice.
    let (lib, _) = release(&dir, "2.21.5");
    let o = bthost(&[
        "doctor",
        "--pack-path",
        fixtures.to_str().unwrap(),
        "--packs",
        "verlib",
        "--lib",
        &format!("verlib={}", lib.display()),
    ]);
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(
        said.contains("pack verlib: variant 2 of 2 (bpftrace \">=0.17.0, <0.28.0\", library \">=2.0.0, <3.0.0\")"),
        "{said}"
    );
}
