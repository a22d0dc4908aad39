//! A hand-written fragment, end to end: the libcdemo fixture pack reads a byte through a
//! pointer in its fragment; real bpftrace runs it on libc, and the decoded value must be the
//! byte the program passed.

use bthost::calls::decode_log;
use bthost::registry::{Registry, SearchPaths};
use bthost_plugin_api::{EventKind, Value};
use bthost_tests::*;

#[test]
fn fragment_values_reach_the_log() {
    if skip_root_tests() {
        return;
    }
    let dir = scratch("e2e_fragment");
    let fixtures = root().join("tests/fixtures/packs");
    let script = dir.join("demo.bt");
    let log = dir.join("demo.log");
    bthost_ok(&[
        "build",
        "--pack-path",
        fixtures.to_str().unwrap(),
        "--packs",
        "libcdemo",
        "-o",
        script.to_str().unwrap(),
    ]);
    // The fragment's variables live in their own namespace (`$first` is `$f_first`): a
    // fragment cannot overwrite the generated code's own (`$t`, `$e`, ...).
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(text.contains("$f_first = (uint8)0;"), "{text}");
    assert!(!text.contains(" $first"), "{text}");
    let prog = compile_workload("libc_demo", &dir, &[]);
    let (_, out) = bpftrace_run("bpftrace", &script, &log, prog.to_str().unwrap());
    let printed_pid: i64 = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("pid ").map(|p| p.trim().parse().unwrap()))
        .expect("the workload prints its pid");

    let reg = Registry::discover(&SearchPaths::standard(&[fixtures]), true);
    let mut events = Vec::new();
    let (_, diag, _) = decode_log(&reg, &log, None, |_, evs| events.append(evs)).unwrap();
    assert_eq!(diag.count("malformed records"), 0, "{diag}");
    // libc is shared by every process: keep the workload's own calls.
    let mine: Vec<_> = events
        .iter()
        .filter(|e| i64::from(e.pid) == printed_pid)
        .collect();
    let getpid = mine
        .iter()
        .find(|e| e.name.as_str() == "getpid")
        .expect("getpid traced");
    assert_eq!(getpid.arg("ret"), Some(&Value::Int(printed_pid)));
    let setenvs: Vec<_> = mine
        .iter()
        .filter(|e| e.name.as_str() == "setenv")
        .collect();
    assert_eq!(setenvs.len(), 2, "{mine:?}");
    for (e, first, overwrite) in [(setenvs[0], b'Z', 1), (setenvs[1], b'A', 0)] {
        assert_eq!(e.kind, EventKind::Complete);
        assert_eq!(
            e.arg("first"),
            Some(&Value::UInt(u64::from(first))),
            "{e:?}"
        );
        assert_eq!(e.arg("overwrite"), Some(&Value::Int(overwrite)));
        assert_eq!(e.arg("ret"), Some(&Value::Int(0)));
        assert!(e.link("name").is_some_and(|v| v != 0));
    }
}

/// Outermost-only recording, for real: libcnest (outermost only) and libcdemo (every call)
/// probe the same qsort/qsort_r in one script; qsort calls qsort_r inside glibc.
#[test]
fn outermost_only_packs_skip_their_nested_calls() {
    if skip_root_tests() {
        return;
    }
    let dir = scratch("e2e_nested");
    let fixtures = root().join("tests/fixtures/packs");
    let script = dir.join("nest.bt");
    let log = dir.join("nest.log");
    bthost_ok(&[
        "build",
        "--pack-path",
        fixtures.to_str().unwrap(),
        "--packs",
        "libcnest,libcdemo",
        "-o",
        script.to_str().unwrap(),
    ]);
    let prog = compile_workload("libc_demo", &dir, &[]);
    let (_, out) = bpftrace_run("bpftrace", &script, &log, prog.to_str().unwrap());
    let pid: u32 = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("pid ").map(|p| p.trim().parse().unwrap()))
        .expect("the workload prints its pid");
    let reg = Registry::discover(&SearchPaths::standard(&[fixtures]), true);
    let mut events = Vec::new();
    decode_log(&reg, &log, None, |_, evs| events.append(evs)).unwrap();
    let calls = |pack: &str| -> Vec<(String, Value)> {
        events
            .iter()
            .filter(|e| {
                e.pid == pid && e.pack.as_str() == pack && e.name.as_str().starts_with("qsort")
            })
            .map(|e| (e.name.to_string(), e.arg("n").cloned().unwrap()))
            .collect()
    };
    // Records are written at exit: the nested qsort_r comes before its qsort.
    let n = |v| Value::UInt(v);
    assert_eq!(
        calls("libcdemo"),
        vec![
            ("qsort_r".into(), n(5)),
            ("qsort".into(), n(5)),
            ("qsort_r".into(), n(7))
        ]
    );
    assert_eq!(
        calls("libcnest"),
        vec![("qsort".into(), n(5)), ("qsort_r".into(), n(7))]
    );
    // The nested call lies inside its caller.
    let all: Vec<_> = events
        .iter()
        .filter(|e| e.pid == pid && e.pack.as_str() == "libcdemo")
        .collect();
    let (inner, outer) = (
        all.iter().find(|e| e.name.as_str() == "qsort_r").unwrap(),
        all.iter().find(|e| e.name.as_str() == "qsort").unwrap(),
    );
    assert!(outer.ts <= inner.ts && inner.ts + inner.dur <= outer.ts + outer.dur);
}
