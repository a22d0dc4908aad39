//! Installed the way its users install tools. `scripts/wheel` builds the pip wheel (maturin's
//! binary bindings, pyproject.toml); pip installs it into a fresh venv outside the source tree;
//! the venv's `bthost`, run from another folder with only the system's PATH and no BTHOST_*
//! variable, lists its built-in packs, names them in `--version`, checks the machine, builds,
//! records a program on the real HIP runtime, reports and converts, and the completion scripts
//! and man pages the wheel installed load in bash and render with `man`.
//!
//! The wheel is built once, in release mode with its own profile (target/wheel): minutes the
//! first time, seconds after. It needs maturin, which scripts/wheel installs from PyPI into
//! target/wheel-venv on first use.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bthost_tests::*;

const SHELLS: [&str; 5] = ["bash", "zsh", "fish", "elvish", "powershell"];

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn ok(o: Output, what: &str) -> (String, String) {
    let (out, err) = text(&o);
    assert!(o.status.success(), "{what}: {}\n{out}\n{err}", o.status);
    (out, err)
}

/// A fresh folder outside the source tree (mktemp -d).
fn outside_tree() -> PathBuf {
    let o = Command::new("mktemp")
        .args(["-d", "-t", "bthost-wheel.XXXXXX"])
        .output()
        .expect("run mktemp");
    let (out, _) = ok(o, "mktemp -d");
    let d = PathBuf::from(out.trim());
    assert!(
        !d.starts_with(root()),
        "{} is inside the source tree",
        d.display()
    );
    d
}

/// PATH with the venv's bin first, then the system's folders only (not cargo's, not the
/// source tree's).
fn venv_path(venv: &Path) -> String {
    format!(
        "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        venv.join("bin").display()
    )
}

/// `program ARGS` in `cwd` with an environment of PATH and HOME only.
fn run_clean(program: &str, args: &[&str], venv: &Path, cwd: &Path) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", venv_path(venv))
        .env("HOME", cwd)
        .env("LC_ALL", "C.UTF-8")
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"))
}

/// The installed `bthost ARGS`, found on PATH.
fn bthost_installed(args: &[&str], venv: &Path, cwd: &Path) -> Output {
    run_clean("bthost", args, venv, cwd)
}

/// The bthost crate's version (host/Cargo.toml), which the wheel's is.
fn host_version() -> String {
    let toml = std::fs::read_to_string(root().join("host/Cargo.toml")).unwrap();
    toml.lines()
        .find_map(|l| l.strip_prefix("version = "))
        .map(|v| v.trim().trim_matches('"').to_string())
        .expect("host/Cargo.toml has a version")
}

fn build_wheel() -> PathBuf {
    let o = Command::new(root().join("scripts/wheel"))
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("run scripts/wheel");
    let (out, err) = ok(o, "scripts/wheel");
    let wheel = PathBuf::from(out.lines().last().unwrap_or_default().trim());
    assert!(
        wheel.is_file() && wheel.extension().is_some_and(|e| e == "whl"),
        "scripts/wheel printed no wheel: {out}\n{err}"
    );
    wheel
}

#[test]
fn the_pip_wheel_installs_a_bthost_that_works_alone_with_its_completions_and_man_pages() {
    let wheel = build_wheel();
    let name = wheel.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with(&format!("bthost-{}-py3-none-", host_version())),
        "{name}"
    );

    let tmp = outside_tree();
    let venv = tmp.join("venv");
    ok(
        Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .output()
            .expect("python3 -m venv"),
        "python3 -m venv",
    );
    ok(
        Command::new(venv.join("bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "-q",
                "--no-index",
                "--disable-pip-version-check",
            ])
            .arg(&wheel)
            .output()
            .expect("pip install"),
        "pip install the wheel",
    );
    let cwd = tmp.join("elsewhere");
    std::fs::create_dir_all(&cwd).unwrap();
    let bt = |args: &[&str]| bthost_installed(args, &venv, &cwd);

    // On PATH, from the venv.
    let (which, _) = ok(
        run_clean("sh", &["-c", "command -v bthost"], &venv, &cwd),
        "which",
    );
    assert_eq!(Path::new(which.trim()), venv.join("bin/bthost"));

    // Every built-in pack, from the binary itself.
    let builtin: Vec<_> = bthost::registry::builtin::packs()
        .into_iter()
        .map(|p| p.expect("a built-in pack parses"))
        .collect();
    let names: Vec<&str> = builtin.iter().map(|p| p.name.as_str()).collect();
    for want in ["cuda", "hip", "hsa", "nccl", "rccl"] {
        assert!(names.contains(&want), "{want} is not built in: {names:?}");
    }
    let (packs, _) = ok(bt(&["packs"]), "bthost packs");
    for p in &builtin {
        let block = packs
            .split('\n')
            .skip_while(|l| !l.starts_with(&format!("{} {} ", p.name, p.version)))
            .take(2)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            block.contains("from:     built into bthost"),
            "{}:\n{packs}",
            p.name
        );
    }
    assert!(
        packs.contains("plugin:   built into bthost (ABI"),
        "{packs}"
    );

    // --version names them, with the plugin ABI.
    let (version, _) = ok(bt(&["--version"]), "bthost --version");
    let first = version.lines().next().unwrap_or_default();
    assert_eq!(first, format!("bthost {}", host_version()));
    let packs_line = version
        .lines()
        .find(|l| l.starts_with("packs: "))
        .unwrap_or_else(|| panic!("no packs line in {version}"));
    for p in &builtin {
        assert!(
            packs_line.contains(&format!("{} {}", p.name, p.version)),
            "{version}"
        );
    }
    assert!(
        version
            .lines()
            .any(|l| l == format!("plugin ABI: {}", bthost_plugin_api::ABI_VERSION)),
        "{version}"
    );

    // doctor runs (whether this machine can trace is for the record below to show).
    let o = bt(&["doctor", "--packs", "hip"]);
    let (doc, err) = text(&o);
    assert!(
        doc.contains("bpftrace") && o.status.code().is_some_and(|c| c <= 1),
        "doctor: {}\n{doc}\n{err}",
        o.status
    );

    let (_, _) = ok(
        bt(&[
            "build",
            "--packs",
            "hip,hsa",
            "--bpftrace",
            "0.17.0",
            "-o",
            "t.bt",
        ]),
        "bthost build",
    );
    let script = std::fs::read_to_string(cwd.join("t.bt")).unwrap();
    assert!(script.contains("uprobe:") && script.contains("hipGetDeviceCount"));

    check_completions(&venv, &cwd);
    check_man_pages(&venv, &cwd);

    if !skip_root_tests() {
        // As root, with bpftrace and the HIP runtime: nothing fails.
        assert!(
            o.status.success() && doc.contains("[ok  ] running as root"),
            "doctor:\n{doc}"
        );
        require_hip();
        let app = compile_workload("hip_basic", &tmp, &["-l:libamdhip64.so.5", "-lpthread"]);
        let serial = system_wide_lock();
        let (_, err) = ok(
            bt(&[
                "record",
                "--packs",
                "hip",
                "-o",
                "run.log",
                "--",
                app.to_str().unwrap(),
            ]),
            "bthost record",
        );
        drop(serial);
        assert!(err.contains("bthost: the log is complete"), "{err}");
        let (report, err) = ok(bt(&["report", "run.log"]), "bthost report");
        assert!(
            report.starts_with("bthost report: 1 log"),
            "{report}\n{err}"
        );
        let (_, err) = ok(bt(&["convert", "run.log", "-o", "run"]), "bthost convert");
        let log = std::fs::read_to_string(cwd.join("run/log.txt")).unwrap_or_default();
        assert!(
            log.contains("hipGetDeviceCount(count=0) = hipErrorNoDevice(100)"),
            "{err}\n{log}"
        );
        // The kernel's address symbolized from the maps record kept.
        assert!(log.contains("bthost_demo_kernel+0x0"), "{err}\n{log}");
        assert!(cwd.join("run/trace_stream.pftrace").is_file(), "{err}");

        // A copy of HIP inside the venv, where torch's ROCm wheel keeps it: found with no
        // --lib and no $VIRTUAL_ENV (sudo drops it), as the venv bthost is installed in.
        let sp = std::fs::read_dir(venv.join("lib"))
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("site-packages"))
            .find(|p| p.is_dir())
            .expect("the venv's site-packages");
        let torch_lib = sp.join("torch/lib");
        std::fs::create_dir_all(&torch_lib).unwrap();
        std::fs::copy(HIP_LIB, torch_lib.join("libamdhip64.so.6")).unwrap();
        let (doc, _) = ok(bt(&["doctor", "--packs", "hip"]), "bthost doctor");
        let line = doc
            .lines()
            .find(|l| l.contains("torch/lib/libamdhip64.so.6"))
            .unwrap_or_else(|| panic!("doctor does not find torch's copy:\n{doc}"));
        assert!(
            line.contains("the environment bthost is installed in"),
            "{line}"
        );
    }
    let _ = std::fs::remove_dir_all(&tmp);
}

/// The completion scripts: from `bthost completions`, and as the wheel installed them.
fn check_completions(venv: &Path, cwd: &Path) {
    let (out, err) = ok(
        run_clean(
            "bash",
            &[
                "-c",
                "source <(bthost completions bash) && complete -p bthost",
            ],
            venv,
            cwd,
        ),
        "bash: source <(bthost completions bash)",
    );
    assert!(out.contains("-F _bthost bthost"), "{out}\n{err}");
    // The installed file, loaded by bash-completion on first use, as from /usr/local/share or
    // ~/.local/share: from the venv's share/ named in XDG_DATA_DIRS.
    let loader = "/usr/share/bash-completion/bash_completion";
    assert!(
        Path::new(loader).is_file(),
        "{loader} is missing: apt-get install bash-completion (scripts/setup does it)"
    );
    let (out, err) = ok(
        run_clean(
            "bash",
            &[
                "-c",
                &format!(
                    "export XDG_DATA_DIRS={}:/usr/share; source {loader}; \
                     _completion_loader bthost; complete -p bthost",
                    venv.join("share").display()
                ),
            ],
            venv,
            cwd,
        ),
        "bash-completion: load the installed completions",
    );
    assert!(out.contains("-F _bthost bthost"), "{out}\n{err}");
    // Completing `bthost rec` offers `record`.
    let (out, err) = ok(
        run_clean(
            "bash",
            &[
                "-c",
                "source <(bthost completions bash); COMP_WORDS=(bthost rec); COMP_CWORD=1; \
                 COMP_LINE='bthost rec'; COMP_POINT=10; _bthost bthost rec bthost; \
                 printf '%s\\n' \"${COMPREPLY[@]}\"",
            ],
            venv,
            cwd,
        ),
        "bash: complete `bthost rec`",
    );
    assert!(out.lines().any(|l| l == "record"), "{out}\n{err}");
    let (out, err) = ok(
        run_clean(
            "bash",
            &[
                "-c",
                "source <(bthost completions bash); COMP_WORDS=(bthost record --fl); \
                 COMP_CWORD=2; COMP_LINE='bthost record --fl'; COMP_POINT=18; \
                 _bthost bthost --fl record; printf '%s\\n' \"${COMPREPLY[@]}\"",
            ],
            venv,
            cwd,
        ),
        "bash: complete `bthost record --fl`",
    );
    assert!(
        out.lines().any(|l| l == "--flight-recorder"),
        "{out}\n{err}"
    );
    for (file, needle) in [
        ("share/zsh/site-functions/_bthost", "#compdef bthost"),
        (
            "share/fish/vendor_completions.d/bthost.fish",
            "complete -c bthost",
        ),
    ] {
        let t = std::fs::read_to_string(venv.join(file))
            .unwrap_or_else(|e| panic!("{file} not installed: {e}"));
        assert!(t.contains(needle), "{file}:\n{t}");
    }
    for shell in SHELLS {
        let (out, _) = ok(bthost_installed(&["completions", shell], venv, cwd), shell);
        // (fish names long options without their dashes)
        assert!(
            out.contains("record") && out.contains("packs"),
            "{shell}:\n{out}"
        );
    }
}

/// The man pages the wheel installed render, `man` finds them from PATH, and `bthost man`
/// gives the same page.
fn check_man_pages(venv: &Path, cwd: &Path) {
    let man1 = venv.join("share/man/man1");
    let page = man1.join("bthost.1");
    let render = |args: &[&str]| {
        let mut a = vec!["-P", "cat"];
        a.extend_from_slice(args);
        let o = run_clean("man", &a, venv, cwd);
        let (out, err) = text(&o);
        assert!(
            o.status.success() && err.trim().is_empty(),
            "man {args:?}: {}\n{out}\n{err}\n(apt-get install man-db groff-base; scripts/setup does it)",
            o.status
        );
        out
    };
    let out = render(&["-l", page.to_str().unwrap()]);
    // man fills and justifies the text: compare words.
    let flat = out.split_whitespace().collect::<Vec<_>>().join(" ");
    for want in [
        "NAME",
        "bthost - Trace GPU runtime APIs",
        "SYNOPSIS",
        "bthost-record(1)",
        "packs: cuda",
        "plugin ABI:",
    ] {
        assert!(flat.contains(want), "{want:?} not in the man page:\n{out}");
    }
    for sub in [
        "record",
        "report",
        "convert",
        "packs",
        "doctor",
        "build",
        "completions",
        "man",
    ] {
        let p = man1.join(format!("bthost-{sub}.1"));
        let out = render(&["-l", p.to_str().unwrap()]);
        assert!(
            out.contains(&format!("bthost-{sub}")),
            "{}:\n{out}",
            p.display()
        );
    }
    let out = render(&["-l", man1.join("bthost-record.1").to_str().unwrap()]);
    assert!(out.contains("--flight-recorder"), "{out}");
    // man-db looks beside each PATH folder (BIN/../share/man): `man bthost` finds the venv's.
    let o = run_clean("man", &["-w", "bthost"], venv, cwd);
    let (out, err) = text(&o);
    assert_eq!(
        Path::new(out.trim()),
        page,
        "man -w bthost: {}\n{err}",
        o.status
    );
    let (stdout_page, _) = ok(bthost_installed(&["man"], venv, cwd), "bthost man");
    assert_eq!(stdout_page, std::fs::read_to_string(&page).unwrap());
}

/// The workspace's binary writes completions for every shell and the man pages (quick: no
/// wheel).
#[test]
fn completions_for_every_shell_and_man_pages_come_from_the_command_line() {
    for shell in SHELLS {
        let out = bthost_ok(&["completions", shell]);
        for word in ["record", "convert", "report", "flight-recorder"] {
            assert!(out.contains(word), "{shell}: no {word}:\n{out}");
        }
    }
    let o = bthost(&["completions", "tcsh"]);
    assert!(!o.status.success());
    let dir = scratch("man-pages");
    bthost_ok(&["man", "--dir", dir.to_str().unwrap()]);
    let mut pages: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    for sub in [
        "",
        "-announce",
        "-build",
        "-completions",
        "-convert",
        "-doctor",
        "-dump",
        "-man",
        "-new-pack",
        "-packs",
        "-record",
        "-report",
    ] {
        let want = format!("bthost{sub}.1");
        assert!(pages.contains(&want), "{want} not in {pages:?}");
    }
    assert!(!pages.iter().any(|p| p.contains("help")), "{pages:?}");
    let page = bthost_ok(&["man"]);
    assert!(
        page.contains(".TH bthost 1") && page.contains("record"),
        "{page}"
    );
    assert_eq!(page, std::fs::read_to_string(dir.join("bthost.1")).unwrap());
    let version = bthost_ok(&["--version"]);
    assert!(
        version.contains("\npacks: ") && version.contains("\nplugin ABI: "),
        "{version}"
    );
}
