//! `bthost new-pack`, as a pack author uses it: on a shared library with `--plugin`, in a
//! copy of the source tree, the scaffold's plugin crate builds and its unit test passes as
//! generated, and the pack builds a script once a listed probe is uncommented, with its plugin
//! loaded; on an executable, the program's own functions are listed and trace for real. Names
//! that exist or are not identifiers are refused.

use std::path::{Path, PathBuf};
use std::process::Command;

use bthost_tests::*;

/// A copy of the parts of the source tree a plugin crate needs: the workspace manifest (with
/// no members but plugin-api), its lock file, plugin-api/ and an empty packs/.
fn tree(dir: &Path) -> PathBuf {
    let t = dir.join("tree");
    let _ = std::fs::remove_dir_all(&t);
    std::fs::create_dir_all(t.join("packs")).unwrap();
    let ws = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let ws: String = ws
        .lines()
        .map(|l| {
            if l.starts_with("members") {
                "members = [\"plugin-api\"]".to_string()
            } else if l.starts_with("default-members") {
                "default-members = [\"plugin-api\"]".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(t.join("Cargo.toml"), ws).unwrap();
    std::fs::copy(root().join("Cargo.lock"), t.join("Cargo.lock")).unwrap();
    let o = Command::new("cp")
        .arg("-r")
        .arg(root().join("plugin-api"))
        .arg(&t)
        .output()
        .unwrap();
    assert!(o.status.success());
    t
}

fn new_pack(args: &[&str]) -> (bool, String) {
    let mut all = vec!["new-pack"];
    all.extend_from_slice(args);
    let o = bthost(&all);
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Uncomments the listed probe of `function` in `manifest`.
fn pick(manifest: &Path, function: &str) {
    let text = std::fs::read_to_string(manifest).unwrap();
    let listed = format!("# [[probe]]\n# function = \"{function}\"\n");
    assert!(text.contains(&listed), "{function} not listed:\n{text}");
    let chosen = format!("[[probe]]\nfunction = \"{function}\"\n");
    std::fs::write(manifest, text.replace(&listed, &chosen)).unwrap();
}

#[test]
fn a_library_pack_with_a_plugin_builds_and_tests_as_generated() {
    let dir = scratch("new_pack_lib");
    let t = tree(&dir);
    // The library: the real HIP runtime, by the name the dynamic linker knows.
    require_hip();
    let (ok, err) = new_pack(&[
        "mylib",
        "--lib",
        "libamdhip64.so.5",
        "--plugin",
        "--root",
        t.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    for f in [
        "packs/mylib/pack.toml",
        "plugins/mylib/Cargo.toml",
        "plugins/mylib/src/lib.rs",
    ] {
        assert!(
            err.contains(&t.join(f).display().to_string()),
            "{f} not said: {err}"
        );
    }
    assert!(err.contains("cargo test -p bthost-pack-mylib"), "{err}");
    let manifest = t.join("packs/mylib/pack.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    assert!(text.contains("soname = \"libamdhip64.so.5\""), "{text}");
    assert!(
        text.contains("# function = \"hipStreamSynchronize\""),
        "{text}"
    );
    let ws = std::fs::read_to_string(t.join("Cargo.toml")).unwrap();
    assert!(
        ws.contains("members = [\"plugin-api\", \"plugins/mylib\"]"),
        "{ws}"
    );

    // The plugin crate builds and its unit tests pass, as generated (offline: the lock file
    // of this workspace has every crate it needs).
    let target = root().join("target/new-pack-test");
    // `cargo SUBCOMMAND` on the scaffold's crate, in the copied workspace.
    let cargo = |sub: &str| {
        Command::new(env!("CARGO"))
            .args([
                sub,
                "--offline",
                "-q",
                "-p",
                "bthost-pack-mylib",
                "--manifest-path",
            ])
            .arg(t.join("Cargo.toml"))
            .env("CARGO_TARGET_DIR", &target)
            .output()
            .unwrap()
    };
    let o = cargo("test");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.contains("test result: ok. 2 passed"),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );

    let o = cargo("build");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // Uncomment a probe: the pack builds a script; the plugin, put in the pack's folder, loads.
    pick(&manifest, "hipStreamSynchronize");
    let packs = t.join("packs");
    let script = dir.join("mylib.bt");
    let err = bthost_ok_stderr(&[
        "build",
        "--pack-path",
        packs.to_str().unwrap(),
        "--packs",
        "mylib",
        "--bpftrace",
        "0.17.0",
        "-o",
        script.to_str().unwrap(),
    ]);
    assert!(err.contains("(2 probes,") || err.contains("wrote"), "{err}");
    assert!(std::fs::read_to_string(&script)
        .unwrap()
        .contains("libamdhip64.so.5:hipStreamSynchronize"));
    std::fs::copy(
        target.join("debug/libbthost_pack_mylib.so"),
        packs.join("mylib/libbthost_pack_mylib.so"),
    )
    .unwrap();
    let listing = bthost_ok(&["packs", "--pack-path", packs.to_str().unwrap()]);
    let mine = listing
        .split("\n\n")
        .find(|b| b.contains("mylib"))
        .unwrap_or_else(|| panic!("{listing}"));
    assert!(
        mine.contains("libbthost_pack_mylib.so"),
        "plugin not loaded:\n{mine}"
    );

    // Names that exist, or are not identifiers, and unknown libraries are refused.
    let root_arg = t.to_str().unwrap();
    for (name, lib, want) in [
        ("mylib", "libamdhip64.so.5", "exists: choose another name"),
        ("hip", "libamdhip64.so.5", "a pack named hip exists"),
        ("my-lib", "libamdhip64.so.5", "invalid pack name"),
        (
            "other",
            "libnothere.so.9",
            "libnothere.so.9: the dynamic linker does not know it",
        ),
    ] {
        let (ok, err) = new_pack(&[name, "--lib", lib, "--root", root_arg]);
        assert!(!ok && err.contains(want), "{name}: {err}");
    }
}

#[test]
fn an_executable_pack_lists_the_program_s_functions_and_traces() {
    if skip_root_tests() {
        return;
    }
    let dir = scratch("new_pack_exe");
    let root_dir = dir.join("tree");
    let _ = std::fs::remove_dir_all(&root_dir);
    std::fs::create_dir_all(&root_dir).unwrap();
    let app = compile_completion_demo(&dir);
    let (ok, err) = new_pack(&[
        "app",
        "--lib",
        app.to_str().unwrap(),
        "--root",
        root_dir.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(
        err.contains(&format!("--lib app={}", app.display())),
        "{err}"
    );
    // Outside the source tree, the next steps name the folder of packs.
    let in_packs = format!(
        "bthost record --pack-path {}",
        root_dir.join("packs").display()
    );
    assert!(err.contains(&in_packs), "{err}");
    let manifest = root_dir.join("packs/app/pack.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    assert!(text.contains("soname = \"completion_demo\""), "{text}");
    for f in ["launch_wrapper", "on_complete", "main"] {
        assert!(
            text.contains(&format!("# function = \"{f}\"")),
            "{f}:\n{text}"
        );
    }
    assert!(!text.contains("# function = \"_start\""), "{text}");

    // Pick the two functions, give launch_wrapper its arguments, and trace.
    pick(&manifest, "on_complete");
    pick(&manifest, "launch_wrapper");
    let text = std::fs::read_to_string(&manifest).unwrap().replace(
        "function = \"launch_wrapper\"\n",
        "function = \"launch_wrapper\"\nargs = [{ name = \"kernel\", type = \"i32\" }, { name = \"token\", type = \"i64\" }]\n",
    );
    std::fs::write(&manifest, text).unwrap();
    let packs = root_dir.join("packs");
    let log = dir.join("app.log");
    let lib = format!("app={}", app.display());
    let o = bthost_record(&[
        "--pack-path",
        packs.to_str().unwrap(),
        "--packs",
        "app",
        "--lib",
        &lib,
        "-o",
        log.to_str().unwrap(),
        "--",
        app.to_str().unwrap(),
        "3",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = dir.join("out");
    bthost_convert(&log, &out, &["--pack-path", packs.to_str().unwrap()]);
    let text = std::fs::read_to_string(out.join("log.txt")).unwrap();
    for want in [
        "launch_wrapper(kernel=0, token=1000)",
        "launch_wrapper(kernel=2, token=1002)",
        "on_complete()",
    ] {
        assert!(text.contains(want), "{want}:\n{text}");
    }
}
