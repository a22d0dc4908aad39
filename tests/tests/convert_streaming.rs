//! The converter's bounded memory: a log converted with a tiny memory budget (its calls
//! sorted through runs spilled to disk, read back in start order for the traces and thread by
//! thread for the text log) gives the same bytes as one converted in memory, and the traces
//! pass Perfetto's official schema and the structural checks. The log is generated in the real record format, with
//! nested calls written before their callers (as bpftrace writes them) and calls in flight.

use std::process::Command;

use bthost_tests::*;

/// `bthost convert -v LOG -o OUT EXTRA...`; its stderr (with the passes' times and runs).
fn convert(log: &std::path::Path, out: &std::path::Path, extra: &[&str]) -> String {
    let mut args = vec!["-v"];
    args.extend_from_slice(extra);
    bthost_convert(log, out, &args)
}

fn spilled_runs(stderr: &str) -> u64 {
    let at = stderr
        .find(" sorted runs spilled")
        .unwrap_or_else(|| panic!("no phase line in {stderr}"));
    let before = &stderr[..at];
    before[before.rfind('(').unwrap() + 1..].parse().unwrap()
}

#[test]
fn spilling_to_disk_changes_nothing_in_the_outputs() {
    let dir = scratch("convert-streaming");
    let log = dir.join("gen.log");
    generate_log(&log, 3 << 20);
    let in_memory = dir.join("mem");
    let spilled = dir.join("spill");
    let err = convert(&log, &in_memory, &[]);
    assert_eq!(spilled_runs(&err), 0, "{err}");
    let err = convert(&log, &spilled, &["--memory", "1"]);
    assert!(spilled_runs(&err) >= 3, "{err}");

    let mut names: Vec<String> = std::fs::read_dir(&in_memory)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(
        names.contains(&"log.txt".to_string()) && names.len() >= 4,
        "{names:?}"
    );
    for n in &names {
        let a = std::fs::read(in_memory.join(n)).unwrap();
        let b = std::fs::read(spilled.join(n)).unwrap();
        assert!(
            a == b,
            "{n} differs when spilled ({} vs {} bytes)",
            a.len(),
            b.len()
        );
    }
    // No temporary file is left behind.
    let mut left: Vec<String> = std::fs::read_dir(&spilled)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, names);

    // The text log: per thread, calls in start order; inner calls indented under theirs;
    // the two calls in flight drawn as never returned.
    let txt = std::fs::read_to_string(spilled.join("log.txt")).unwrap();
    let never = |l: &&str| l.contains("... never returned");
    assert_eq!(
        txt.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(never)
            .count(),
        2,
        "in-flight calls in their threads"
    );
    assert!(txt.contains("# IN FLIGHT when the log ended: 2 calls never returned"));
    assert_eq!(
        txt.lines()
            .filter(|l| l.starts_with("#   pid "))
            .filter(never)
            .count(),
        2
    );
    let mut indented = 0;
    for section in txt.split("-- thread ").skip(1) {
        let mut last = 0.0f64;
        for l in section
            .lines()
            .skip(1)
            .filter(|l| !l.is_empty() && !l.starts_with("=="))
        {
            let t: f64 = l.split_whitespace().next().unwrap().parse().unwrap();
            assert!(t >= last, "out of order: {l}");
            last = t;
            // Two spaces of indent per level after the duration column.
            if l[26..].starts_with("  ") {
                indented += 1;
            }
        }
    }
    assert!(indented > 1000, "nested calls indented: {indented}");
}

#[test]
fn a_spilled_trace_passes_the_official_schema() {
    let dir = scratch("convert-streaming-schema");
    let log = dir.join("gen.log");
    generate_log(&log, 1 << 20);
    let out = dir.join("out");
    let err = convert(
        &log,
        &out,
        &["--memory", "1", "--link", "comm,stream", "--combined"],
    );
    assert!(spilled_runs(&err) >= 1, "{err}");
    let o = Command::new("python3")
        .arg(root().join("tests/perfetto/check_trace.py"))
        .arg(out.join("trace.pftrace"))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "check_trace.py: {e}\n{}",
            String::from_utf8_lossy(&o.stderr)
        )
    });
    assert!(o.status.success(), "{}", v["errors"]);
    let slices = v["slices"].as_array().unwrap().len();
    assert!(slices > 10_000, "{slices} slices");
    let unfinished = v["slices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["args"]["unfinished"] == serde_json::Value::Bool(true))
        .count();
    assert_eq!(unfinished, 2);
    assert!(v["flows"].as_array().unwrap().len() > 1000);
}
