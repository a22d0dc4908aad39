//! Golden tests of the composed script: the exact text for bpftrace 0.17, 0.24.0 and 0.24.2
//! (the variants differ where the versions differ: thread ids, stack arguments), and the
//! guarantee that the same inputs give the same script byte for byte.
//! Regenerate with `BTHOST_UPDATE_GOLDEN=1 cargo test -p bthost-tests --test golden`.

use std::path::PathBuf;

use bthost::compose::{compose, LeftOut, Options, PackInput};
use bthost::library::symbols::Functions;
use bthost::pack::{manifest, Pack};
use bthost_tests::root;
use semver::Version;

fn pack(dir: &str) -> Pack {
    manifest::load(&root().join(dir)).unwrap_or_else(|e| panic!("{e}"))
}

/// All of a pack's functions present, at a fixed path: the text depends on nothing local.
fn input<'a>(p: &'a Pack, lib: &str) -> PackInput<'a> {
    PackInput {
        pack: p,
        library: PathBuf::from(lib),
        functions: Functions::from_names(p.probes.iter().map(|x| x.function.clone())),
        nested: p
            .nested
            .iter()
            .map(|n| (PathBuf::from(format!("/lib/{}", n.library)), true))
            .collect(),
        lib_version: None,
        also: Vec::new(),
    }
}

fn check_golden(name: &str, text: &str) {
    let path = root().join("tests/golden").join(name);
    if std::env::var_os("BTHOST_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (BTHOST_UPDATE_GOLDEN=1 writes it)", path.display()));
    if want != text {
        let line = want
            .lines()
            .zip(text.lines())
            .position(|(a, b)| a != b)
            .map_or(0, |i| i + 1);
        panic!(
            "{} differs from the composed script at line {line}:\n  golden: {:?}\n  now:    {:?}\n(BTHOST_UPDATE_GOLDEN=1 rewrites it after a deliberate change)",
            path.display(),
            want.lines().nth(line.saturating_sub(1)),
            text.lines().nth(line.saturating_sub(1))
        );
    }
}

#[test]
fn hip_script_per_bpftrace_version() {
    let hip = pack("packs/hip");
    for v in ["0.17.0", "0.24.0", "0.24.2"] {
        let built = compose(
            &[input(&hip, "/lib/x86_64-linux-gnu/libamdhip64.so.5")],
            &Version::parse(v).unwrap(),
            &Options::default(),
        )
        .unwrap();
        assert!(built.left_out.is_empty());
        check_golden(&format!("hip-bpftrace-{v}.bt"), &built.script);
    }
}

#[test]
fn versions_differ_where_bpftrace_differs() {
    let hip = pack("packs/hip");
    let script = |v: &str| {
        compose(
            &[input(&hip, "/x/libamdhip64.so.5")],
            &Version::parse(v).unwrap(),
            &Options::default(),
        )
        .unwrap()
        .script
    };
    let (s17, s240, s242) = (script("0.17.0"), script("0.24.0"), script("0.24.2"));
    assert!(s17.contains("\t$t = tid;") && s17.contains("sarg0") && !s17.contains("reg(\"sp\")"));
    assert!(
        s240.contains("\t$t = curtask->pid;")
            && s240.contains("curtask->tgid")
            && s240.contains("*(uint64*)(reg(\"sp\") + 8)")
    );
    assert!(
        s242.contains("\t$t = tid;") && s242.contains("reg(\"sp\")") && !s242.contains("sarg0")
    );
}

#[test]
fn fragment_pack_script() {
    let demo = pack("tests/fixtures/packs/libcdemo");
    let built = compose(
        &[input(&demo, "/lib/x86_64-linux-gnu/libc.so.6")],
        &Version::new(0, 17, 0),
        &Options::default(),
    )
    .unwrap();
    assert!(
        built
            .script
            .contains("\t// from first-byte.bt\n\t$f_first = (uint8)0;"),
        "{}",
        built.script
    );
    check_golden("libcdemo-bpftrace-0.17.0.bt", &built.script);
}

#[test]
fn outermost_only_pack_script() {
    let nest = pack("tests/fixtures/packs/libcnest");
    let built = compose(
        &[input(&nest, "/lib/x86_64-linux-gnu/libc.so.6")],
        &Version::new(0, 24, 2),
        &Options::default(),
    )
    .unwrap();
    assert!(
        built
            .script
            .contains("\t$v = @d_libcnest[$t];\n\tif ($v == 0) { $v = 1; printf(\"T %x %x %s\\n\", pid, $t, comm); }\n\t@d_libcnest[$t] = $v + 1;\n\t$d = $v - 1;\n\tif ($d <= 0) {"),
        "{}",
        built.script
    );
    check_golden("libcnest-bpftrace-0.24.2.bt", &built.script);
}

#[test]
fn same_inputs_same_bytes_in_any_order() {
    let hip = pack("packs/hip");
    let demo = pack("tests/fixtures/packs/libcdemo");
    let v = Version::new(0, 17, 0);
    let a = compose(
        &[
            input(&hip, "/a/libamdhip64.so.5"),
            input(&demo, "/b/libc.so.6"),
        ],
        &v,
        &Options::default(),
    )
    .unwrap();
    let b = compose(
        &[
            input(&demo, "/b/libc.so.6"),
            input(&hip, "/a/libamdhip64.so.5"),
        ],
        &v,
        &Options::default(),
    )
    .unwrap();
    assert_eq!(a.script, b.script);
    assert_eq!(a.schema.hash(), b.schema.hash());
    // Record ids are unique and dense across packs.
    let ids: Vec<u32> = a.schema.records.iter().map(|r| r.id).collect();
    assert_eq!(ids, (1..=ids.len() as u32).collect::<Vec<_>>());
    assert!(a.schema.records.iter().any(|r| r.pack == "libcdemo"));
}

#[test]
fn a_function_missing_from_the_library_is_left_out_and_named() {
    let hip = pack("packs/hip");
    let mut inp = input(&hip, "/x/libamdhip64.so.5");
    inp.functions.remove("hipLaunchKernel");
    let built = compose(&[inp], &Version::new(0, 17, 0), &Options::default()).unwrap();
    assert_eq!(
        built.left_out,
        vec![LeftOut {
            pack: "hip".into(),
            function: "hipLaunchKernel".into(),
            why: "is not in the library"
        }]
    );
    assert!(!built.script.contains(":hipLaunchKernel\n"));
    assert!(built
        .script
        .contains("// Left out: hip hipLaunchKernel (is not in the library)"));
    assert!(!built
        .schema
        .records
        .iter()
        .any(|r| r.function == "hipLaunchKernel"));
}

/// The other ways records leave the kernel (crate::compose::emit): stored in maps and drained
/// (a script run by hand drains on a timer), and the flight recorder's ring.
#[test]
fn stored_records_scripts() {
    use bthost::compose::emit::Emit;
    let demo = pack("tests/fixtures/packs/libcdemo");
    for (emit, v, name) in [
        (
            Emit::Drained { period_ms: 50 },
            "0.17.0",
            "libcdemo-maps-bpftrace-0.17.0.bt",
        ),
        (
            Emit::Ring { per_thread: 64 },
            "0.23.2",
            "libcdemo-ring-bpftrace-0.23.2.bt",
        ),
    ] {
        let opts = Options {
            emit,
            map_keys: Some(8192),
            ..Default::default()
        };
        let built = compose(
            &[input(&demo, "/lib/x86_64-linux-gnu/libc.so.6")],
            &Version::parse(v).unwrap(),
            &opts,
        )
        .unwrap();
        assert!(built.schema.header_line().starts_with("#bthost 3 "));
        check_golden(name, &built.script);
    }
}

/// `bthost record`'s own probes: a pid filter, the hold at exit, its requests (golden).
#[test]
fn record_hooks_script() {
    use bthost::compose::emit::Emit;
    use bthost::compose::hooks::Hooks;
    let nest = pack("tests/fixtures/packs/libcnest");
    let opts = Options {
        emit: Emit::Drained { period_ms: 50 },
        hooks: Some(Hooks {
            exe: "/usr/bin/bthost".into(),
            token: 4242,
            filter: true,
            pids: vec![100, 200],
            libc: Some("/lib/x86_64-linux-gnu/libc.so.6".into()),
        }),
        ..Default::default()
    };
    let built = compose(
        &[input(&nest, "/lib/x86_64-linux-gnu/libc.so.6")],
        &Version::new(0, 17, 0),
        &opts,
    )
    .unwrap();
    // Driven by record, not by a timer; the attach sentinel is the last probe.
    assert!(!built.script.contains("interval:"), "{}", built.script);
    assert!(built
        .script
        .trim_end()
        .ends_with("printf(\"#A all probes attached\\n\");\n}"));
    check_golden("libcnest-record-bpftrace-0.17.0.bt", &built.script);
}
