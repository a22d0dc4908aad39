//! Calls in flight at the end of a log, as the script's END prints them: the entry map of
//! each probe still holds the thread's last call, returned or not (the script does not delete
//! it at exit, to save a map operation per call). The reader must keep the calls that never
//! returned and drop those whose exit record it has read, and ignore the output pointers the
//! entry carries after its values.

use bthost_plugin_api::{EventKind, Phase};
use bthost_tests::*;

#[test]
fn returned_calls_in_the_end_dump_are_dropped_and_hung_ones_kept() {
    let built = hip_rccl_built();
    let id = |f: &str, ph: Phase| record_id(&built, f, ph);
    let get_device = id("hipGetDevice", Phase::Call);
    let get_device_entry = id("hipGetDevice", Phase::Entry);
    let sync = id("hipStreamSynchronize", Phase::Call);
    let sync_entry = id("hipStreamSynchronize", Phase::Entry);
    assert_eq!((get_device_entry, sync_entry), (get_device + 1, sync + 1));
    let mut log = String::new();
    // hipGetDevice returned (entry at 0x1000, exit 0x1050); hipStreamSynchronize returned once
    // (entry at 0x2000, exit 0x2500), then was called again (entry at 0x3000) and never
    // returned. The two records are one printf: the second continues the first (its exit
    // 0x14b0 after the first's).
    log.push_str(&format!("{get_device:x} 65 1050 50 2 0\n"));
    log.push_str(&format!("+{sync:x} 14b0 500 5555aaaa0000 0\n"));
    log.push_str("#E in-flight calls\n");
    // The dump, in decimal: the returned hipGetDevice with its output pointer after the time.
    log.push_str(&format!(
        "@e{get_device_entry:x}[101]: (4096, 140737488355328)\n"
    ));
    log.push_str(&format!("@e{sync_entry:x}[101]: (12288, 93824992235520)\n"));
    let (stats, diag, events) = decode_thread_log(&built, "in-flight", &log);
    assert_eq!(diag.count("malformed records"), 0, "{diag}");
    assert_eq!(stats.threads, 1);
    let got: Vec<(&str, EventKind, u64)> = events
        .iter()
        .map(|e| (e.name.as_str(), e.kind, e.ts))
        .collect();
    assert_eq!(
        got,
        vec![
            ("hipGetDevice", EventKind::Complete, 0x1000),
            ("hipStreamSynchronize", EventKind::Complete, 0x2000),
            ("hipStreamSynchronize", EventKind::Begin, 0x3000),
        ]
    );
    assert_eq!(
        events[2].arg("stream").and_then(|v| v.as_u64()),
        Some(0x5555_5555_5000)
    );
}

/// A thread's last returned call may still wait in the script's held map (compose::pairing:
/// records leave in pairs) when the trace stops: END prints it before the in-flight entries,
/// padded with zeros, and it reads back as the call it is; its entry, still in the entry map,
/// is then known as returned and dropped.
#[test]
fn a_held_record_in_the_end_dump_is_the_call_it_holds() {
    let built = hip_rccl_built();
    let id = |f: &str, ph: Phase| record_id(&built, f, ph);
    let get_device = id("hipGetDevice", Phase::Call);
    let sync_entry = id("hipStreamSynchronize", Phase::Entry);
    // The script holds `(id << 8 | width, values...)`, padded with zeros.
    assert!(
        built.script.contains(&format!(
            "@b[$t] = ((uint64)0x{:x}, ",
            (get_device << 8) | 4
        )),
        "hipGetDevice's record is not held as expected"
    );
    let mut log = String::new();
    // Nothing but the dump: hipGetDevice returned (entry 0x1000, exit 80 ns later: 4176,
    // device 2, result 0) and its record waited for a pair; then hipStreamSynchronize began
    // (0x3000) and hung.
    log.push_str("#E in-flight calls\n");
    log.push_str(&format!(
        "@b[101]: ({}, 4176, 80, 2, 0, 0, 0, 0, 0, 0, 0)\n",
        (get_device << 8) | 4
    ));
    log.push_str(&format!("@e{sync_entry:x}[101]: (12288, 93824992235520)\n"));
    let (stats, diag, events) = decode_thread_log(&built, "held-record", &log);
    assert_eq!(diag.count("malformed records"), 0, "{diag}");
    assert_eq!(diag.count("bpftrace map dumps"), 0, "{diag}");
    assert_eq!(stats.records, 2);
    let got: Vec<(&str, EventKind, u64, u64)> = events
        .iter()
        .map(|e| (e.name.as_str(), e.kind, e.ts, e.dur))
        .collect();
    assert_eq!(
        got,
        vec![
            ("hipGetDevice", EventKind::Complete, 0x1000, 80),
            ("hipStreamSynchronize", EventKind::Begin, 0x3000, 0),
        ]
    );
    assert_eq!(events[0].arg("deviceId").and_then(|v| v.as_i64()), Some(2));
}
