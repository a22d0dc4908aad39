//! The packs against today's ROCm and bpftrace, from the Debian sid root that
//! `tests/bpftrace/setup-root.sh sid` makes: HIP 6.4 (libamdhip64.so.6) and, from experimental,
//! HIP 7.2 (libamdhip64.so.7), HSA 7.2.4 (libhsa-runtime64.so.1) and RCCL 7.2.4 (librccl.so.1,
//! NCCL API 2.27.7), with bpftrace 0.27.1 run on the host's files (`bpftrace-host`).
//!
//! For each library: every probe of its pack exists in it, the `optional` ones included (those
//! are optional for older releases: ROCm 5.2's HIP lacks the `_spt` and R0600 forms), and every
//! probe with a `library` range that this version is in; the library's version reads as its
//! release says; and the pack's script, built for bpftrace 0.27.1, attaches every probe for
//! real, alone and recording in maps mode and in flight-recorder mode. No part is skipped for
//! a missing root: CI makes it (scripts/setup).

use std::path::{Path, PathBuf};
use std::process::Command;

use bthost::commands::build::{build, BpftraceChoice, BuildOptions};
use bthost::library::{self, LibOverrides};
use bthost::registry::{Registry, SearchPaths};
use bthost_tests::*;

const SID: &str = "/var/cache/bthost/sid";

/// The sid root's library folder, asserting the root is there.
fn sid_lib(name: &str) -> PathBuf {
    let p = Path::new(SID).join("usr/lib/x86_64-linux-gnu").join(name);
    assert!(
        p.exists(),
        "{} is missing: run `tests/bpftrace/setup-root.sh sid` (as root; scripts/setup does it)",
        p.display()
    );
    p
}

/// sid's bpftrace (0.27.x), runnable on the host.
fn sid_bpftrace() -> (PathBuf, semver::Version) {
    let bin = Path::new(SID).join("bpftrace-host");
    let v = bthost::bpftrace::detect(&bin).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: run `tests/bpftrace/setup-root.sh sid` (as root; scripts/setup does it)",
            bin.display()
        )
    });
    assert!(
        v >= semver::Version::new(0, 27, 0),
        "{} is bpftrace {v}, not sid's 0.27",
        bin.display()
    );
    (bin, v)
}

/// One library of the sid root and what the pack must read of it.
struct SidLib {
    pack: &'static str,
    file: &'static str,
    /// The version the pack's `version_from` must read (None: not checked; the pack reads none).
    version: Option<semver::Version>,
}

fn sid_libs() -> Vec<SidLib> {
    vec![
        SidLib {
            pack: "hip",
            file: "libamdhip64.so.6",
            version: None,
        },
        SidLib {
            pack: "hip",
            file: "libamdhip64.so.7",
            version: None,
        },
        SidLib {
            pack: "hsa",
            file: "libhsa-runtime64.so.1",
            version: None,
        },
        SidLib {
            pack: "rccl",
            file: "librccl.so.1",
            version: Some(semver::Version::new(2, 27, 7)),
        },
    ]
}

fn registry() -> Registry {
    Registry::discover(&SearchPaths::standard(&[]), true)
}

/// The `--lib` overrides for `lib`: the pack's file, and for RCCL 7.2.4 the HIP it loads
/// (libamdhip64.so.7, where RCCL's hipGetDevice goes; the rccl pack names the nested library
/// libamdhip64.so.5, the one ROCm 5 RCCLs load).
fn overrides(lib: &SidLib) -> LibOverrides {
    let mut m = LibOverrides::new();
    m.insert(lib.pack.into(), sid_lib(lib.file));
    if lib.pack == "rccl" {
        m.insert("libamdhip64.so.5".into(), sid_lib("libamdhip64.so.7"));
    }
    m
}

fn overrides_args(lib: &SidLib) -> Vec<String> {
    overrides(lib)
        .iter()
        .flat_map(|(k, v)| ["--lib".to_string(), format!("{k}={}", v.display())])
        .collect()
}

#[test]
fn every_probe_exists_in_the_sid_libraries() {
    let reg = registry();
    for lib in sid_libs() {
        let path = sid_lib(lib.file);
        let p = &reg.entries[lib.pack].pack;
        let funcs = library::symbols::functions(&path).unwrap();
        let version = library::version::read(&path, &p.library.version_from);
        if let Some(want) = &lib.version {
            assert_eq!(
                version.as_ref().map(|v| &v.version),
                Some(want),
                "{}: version read {version:?}",
                path.display()
            );
        }
        let probes = p.probes_for(version.as_ref().map(|v| &v.version));
        let missing: Vec<&str> = probes
            .iter()
            .filter(|pr| !funcs.probeable(&pr.function))
            .map(|pr| pr.function.as_str())
            .collect();
        assert!(
            missing.is_empty(),
            "pack {}: {} lacks {missing:?}",
            lib.pack,
            path.display()
        );
        // A ranged probe left out here would be one this release has under another layout.
        let chosen: Vec<&str> = probes.iter().map(|pr| pr.function.as_str()).collect();
        let unchosen: Vec<&str> = p
            .probes
            .iter()
            .map(|pr| pr.function.as_str())
            .filter(|f| !chosen.contains(f))
            .collect();
        assert!(
            unchosen.is_empty(),
            "pack {}: no probe of {unchosen:?} is declared for {} ({version:?})",
            lib.pack,
            path.display()
        );
        // The nested probes (rccl's hipGetDevice) exist where the library's calls go.
        for n in &p.nested {
            let target = overrides(&lib)
                .get(&n.library)
                .cloned()
                .unwrap_or_else(|| panic!("{}: no file for {}", lib.pack, n.library));
            let f = library::symbols::functions(&target).unwrap();
            assert!(
                f.probeable(&n.function),
                "{}: {} lacks {}",
                lib.pack,
                target.display(),
                n.function
            );
        }
    }
}

#[test]
fn every_probe_attaches_on_sid_bpftrace() {
    if skip_root_tests() {
        return;
    }
    let (bin, bver) = sid_bpftrace();
    let reg = registry();
    let dir = scratch("conformance-sid");
    for lib in sid_libs() {
        let p = &reg.entries[lib.pack].pack;
        assert!(
            p.supports_bpftrace(&bver),
            "pack {} has no variant for bpftrace {bver}: its ranges are {:?}",
            lib.pack,
            p.variants.iter().map(|v| &v.range_text).collect::<Vec<_>>()
        );
        let opts = BuildOptions {
            packs: vec![lib.pack.into()],
            bpftrace: BpftraceChoice::Version(bver.clone()),
            libs: overrides(&lib),
            script: bthost::compose::Options {
                exit_after_begin: true,
                ..Default::default()
            },
        };
        let built = build(&reg, &opts).unwrap_or_else(|e| panic!("{}: {e:#}", lib.file));
        assert!(
            built.left_out.is_empty(),
            "{}: left out {:?}",
            lib.file,
            built
                .left_out
                .iter()
                .map(|l| format!("{} ({})", l.function, l.why))
                .collect::<Vec<_>>()
        );
        let script = dir.join(format!("{}.bt", lib.file));
        std::fs::write(&script, &built.script).unwrap();
        assert!(
            built.script.contains(&format!(
                "{}:",
                sid_lib(lib.file).canonicalize().unwrap().display()
            )),
            "{}: the script does not probe it",
            lib.file
        );
        run_built_script(
            &bin,
            &script,
            &built,
            &format!("{} on bpftrace {bver}", lib.file),
        );
    }
}

/// `bthost record` on sid's bpftrace, as a user of today's ROCm runs it: each pack on its
/// library, and the three together, with records in maps (`--pid` of the test) and as a flight
/// recorder. Every probe attaches (the attach sentinel is the script's last), and the last dump
/// ends the log.
#[test]
fn every_pack_records_in_every_way_on_sid_bpftrace() {
    if skip_root_tests() {
        return;
    }
    let (bin, bver) = sid_bpftrace();
    let dir = scratch("conformance-sid-record");
    let me = std::process::id().to_string();
    let libs = sid_libs();
    // (name, packs, --lib arguments)
    let mut runs: Vec<(String, String, Vec<String>)> = libs
        .iter()
        .map(|l| (l.file.to_string(), l.pack.to_string(), overrides_args(l)))
        .collect();
    let all: Vec<&SidLib> = libs
        .iter()
        .filter(|l| l.file != "libamdhip64.so.6")
        .collect();
    runs.push((
        "rocm-7.2".into(),
        "hip,hsa,rccl".into(),
        all.iter().flat_map(|l| overrides_args(l)).collect(),
    ));
    for (name, packs, lib_args) in &runs {
        for (way, extra) in [
            ("maps", vec!["--pid", me.as_str()]),
            ("ring", vec!["--flight-recorder", "64"]),
        ] {
            let log = dir.join(format!("{name}-{bver}-{way}.log"));
            let mut cmd = Command::new(bthost_bin());
            cmd.args(["record", "--packs", packs, "--bpftrace-bin"])
                .arg(&bin)
                .args(lib_args)
                .args(&extra)
                .args(["--duration", "0.2", "-o"])
                .arg(&log);
            let o = {
                let _serial = system_wide_lock();
                cmd.output().unwrap()
            };
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(o.status.success(), "{name} {bver} {way}: {err}");
            assert!(
                !err.contains("left out"),
                "{name} {bver} {way}: a probe was left out: {err}"
            );
            let text = std::fs::read_to_string(&log).unwrap();
            let script = std::fs::read_to_string(log.with_extension("log.bt")).unwrap();
            for l in lib_args.iter().filter_map(|a| a.split_once('=')) {
                let file = Path::new(l.1).canonicalize().unwrap();
                assert!(
                    script.contains(&format!("{}:", file.display())),
                    "{name} {way}: the script does not probe {}",
                    file.display()
                );
            }
            let want = probes_in(&script);
            assert!(
                attached(&text).max(attached(&err)) >= want,
                "{name} {bver} {way}: wanted Attaching {want} probes: {err}"
            );
            assert!(
                text.contains("\n#Z ffffffff\n"),
                "{name} {bver} {way}: {text}"
            );
        }
    }
}
