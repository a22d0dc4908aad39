//! A probe whose function the library lacks is left out by `build` and named by `build`,
//! `doctor` and `packs`; it is never left to bpftrace (0.17 drops such a probe silently).
//! The library is a real ELF file built here with only two of the hip pack's functions.

use std::path::Path;
use std::process::{Command, Output};

use bthost_tests::*;

/// `bthost build --packs hip --bpftrace 0.17.0 --lib hip=LIB -o OUT`.
fn build_hip(lib: &Path, out: &Path) -> Output {
    let lib_arg = format!("hip={}", lib.display());
    bthost(&[
        "build",
        "--packs",
        "hip",
        "--bpftrace",
        "0.17.0",
        "--lib",
        &lib_arg,
        "-o",
        out.to_str().unwrap(),
    ])
}

#[test]
fn missing_functions_are_left_out_and_named() {
    let dir = scratch("missing-functions");
    let src = dir.join("partial_hip.c");
    std::fs::write(
        &src,
        "int hipGetDeviceCount(int *c) { *c = 0; return 100; }\nint hipSetDevice(int d) { (void)d; return 101; }\n",
    )
    .unwrap();
    let lib = dir.join("libamdhip64.so.5");
    let o = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&src)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lib_arg = format!("hip={}", lib.display());
    let script = dir.join("partial.bt");

    let o = build_hip(&lib, &script);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    for f in [
        "hipGetDevice",
        "hipMalloc",
        "hipLaunchKernel",
        "hipStreamSynchronize",
    ] {
        assert!(
            err.contains(&format!(
                "pack hip: {f} is not in the library; its probe is left out"
            )),
            "{f}: {err}"
        );
    }
    // 2 functions, entry and exit, and the drain.
    assert!(err.contains("(5 probes,"), "{err}");
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(text.contains(&format!("uprobe:{}:hipGetDeviceCount", lib.display())));
    assert!(!text.contains(":hipMalloc\n"));

    let o = bthost(&["doctor", "--packs", "hip", "--lib", &lib_arg]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("[warn] pack hip:") && out.contains("2 of 48 probes present; not in the library (left out by build): hipGetDevice, hipDeviceSynchronize"), "{out}");

    let out = bthost_ok(&["packs", "--lib", &lib_arg]);
    assert!(
        out.contains("not in the library (left out by build): hipGetDevice,"),
        "{out}"
    );

    // A library with none of the functions: nothing to trace is an error, not an empty script.
    let empty_src = dir.join("none.c");
    std::fs::write(&empty_src, "int unrelated(void) { return 0; }\n").unwrap();
    let none = dir.join("libnone.so");
    assert!(Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&none)
        .arg(&empty_src)
        .status()
        .unwrap()
        .success());
    let o = build_hip(&none, Path::new("/dev/null"));
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr)
        .contains("no probe of the chosen packs exists in their libraries (hip)"));

    // A missing library file is named with the way to fix it.
    let o = bthost(&[
        "doctor",
        "--packs",
        "hip",
        "--lib",
        "hip=/nonexistent/libamdhip64.so.5",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout)
        .contains("[FAIL] --lib hip=/nonexistent/libamdhip64.so.5: no such file"));
}

/// A `[[nested]]` probe reaches the library its pack's library loads: for the RCCL stand-in,
/// the HIP stand-in beside it (its runpath), not the HIP runtime ldconfig knows; doctor says
/// which file, and build probes that one.
#[test]
fn nested_probes_follow_the_runpath_of_the_pack_library() {
    let dir = scratch("nested-runpath");
    let standins = build_standins(&dir.join("standins"));
    let rccl = format!("rccl={}", standins.join("librccl.so.1").display());
    let o = bthost(&["doctor", "--packs", "rccl", "--lib", &rccl]);
    let out = String::from_utf8_lossy(&o.stdout);
    let hip = standins.join("libamdhip64.so.5");
    assert!(
        out.contains(&format!("pack rccl: nested hipGetDevice in libamdhip64.so.5: {} (runpath of the pack's library)", hip.display())),
        "{out}"
    );
    let script = dir.join("r.bt");
    bthost_ok(&[
        "build",
        "--packs",
        "rccl",
        "--bpftrace",
        "0.17.0",
        "--lib",
        &rccl,
        "-o",
        script.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(
        text.contains(&format!("uprobe:{}:hipGetDevice", hip.display())),
        "{text}"
    );
}
