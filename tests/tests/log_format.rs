//! The record lines of log format 2 as the reader takes them: a record's time is when it was
//! written (a call's exit), and the second record of a printf continues the first
//! (`+<id> <delta> ...`: the first line's tid, its time plus the delta). Format 1 logs (the
//! time was a call's start, no continuation lines) still read as they did.

use bthost_plugin_api::{EventKind, Phase};
use bthost_tests::*;

/// (function, kind, tid, start, duration) of each event.
fn calls(events: &[bthost_plugin_api::Event]) -> Vec<(&str, EventKind, u32, u64, u64)> {
    events
        .iter()
        .map(|e| (e.name.as_str(), e.kind, e.tid, e.ts, e.dur))
        .collect()
}

/// The hip and rccl packs' script, and the id of its hipStreamSynchronize call record.
fn script_and_sync() -> (bthost::compose::Built, u32) {
    let built = hip_rccl_built();
    let sync = record_id(&built, "hipStreamSynchronize", Phase::Call);
    (built, sync)
}

#[test]
fn a_continuation_line_takes_the_tid_and_time_of_the_line_before() {
    let (built, sync) = script_and_sync();
    let set = record_id(&built, "hipSetDevice", Phase::Call);
    // Two printfs of thread 0x65, then one of thread 0x66 (its T line first): each a record
    // and its continuation. hipStreamSynchronize: exit 0x2500 after 0x500 ns; hipSetDevice:
    // exit 0x40 later, after 0x10 ns; and so on.
    let log = format!(
        "{sync:x} 65 2500 500 5555aaaa0000 0\n+{set:x} 40 10 1 0\n\
         {set:x} 65 3000 20 2 0\n+{sync:x} 1000 800 5555bbbb0000 0\n\
         T 64 66 other\n\
         {sync:x} 66 2600 100 5555cccc0000 0\n+{sync:x} 0 0 5555cccc0000 0\n"
    );
    let (stats, diag, events) = decode_thread_log(&built, "continuation", &log);
    assert!(diag.is_empty(), "{diag}");
    assert_eq!(stats.records, 6);
    assert_eq!(
        calls(&events),
        vec![
            (
                "hipStreamSynchronize",
                EventKind::Complete,
                0x65,
                0x2000,
                0x500
            ),
            ("hipSetDevice", EventKind::Complete, 0x65, 0x2530, 0x10),
            ("hipSetDevice", EventKind::Complete, 0x65, 0x2fe0, 0x20),
            (
                "hipStreamSynchronize",
                EventKind::Complete,
                0x65,
                0x3800,
                0x800
            ),
            (
                "hipStreamSynchronize",
                EventKind::Complete,
                0x66,
                0x2500,
                0x100
            ),
            // A zero delta and a zero duration: at the same nanosecond.
            ("hipStreamSynchronize", EventKind::Complete, 0x66, 0x2600, 0),
        ]
    );
    assert_eq!(
        events[3].arg("stream").and_then(|v| v.as_u64()),
        Some(0x5555_bbbb_0000)
    );
}

#[test]
fn a_continuation_without_its_first_line_is_skipped_with_its_line_number() {
    let (built, sync) = script_and_sync();
    // Line numbers: 1 Attaching, then the header (one line per record id), then the T line.
    let first = built.schema.records.len() as u64 + 4;
    // A continuation after bpftrace's own line, after a damaged line, and the valid records
    // around them: those are kept.
    let log = format!(
        "Lost 3 events\n+{sync:x} 40 10 5555aaaa0000 0\n\
         {sync:x} 65 zz 500 5555aaaa0000 0\n+{sync:x} 40 10 5555aaaa0000 0\n\
         {sync:x} 65 2500 500 5555aaaa0000 0\n"
    );
    let (stats, diag, events) = decode_thread_log(&built, "orphan", &log);
    assert_eq!(stats.records, 1);
    assert_eq!(
        calls(&events),
        vec![(
            "hipStreamSynchronize",
            EventKind::Complete,
            0x65,
            0x2000,
            0x500
        )]
    );
    assert_eq!(diag.count("garbage lines"), 3, "{diag}");
    let text = diag.to_string();
    for line in [first + 1, first + 3] {
        assert!(
            text.contains(&format!(
                "run.log:{line}: warning: skipped: a continuation line whose first line is missing or damaged"
            )),
            "line {line}: {text}"
        );
    }
}

#[test]
fn format_1_logs_read_as_before() {
    let (built, sync) = script_and_sync();
    let sync_entry = record_id(&built, "hipStreamSynchronize", Phase::Entry);
    // Format 1: a call's start, not its exit; the held record too. A continuation line has
    // no meaning there.
    let log = format!(
        "{sync:x} 65 2000 500 5555aaaa0000 0\n+{sync:x} 40 10 5555aaaa0000 0\n\
         #E in-flight calls\n@b[101]: ({}, 12288, 256, 93824992235520, 0, 0)\n\
         @e{sync_entry:x}[101]: (16384, 93824992235520)\n",
        (sync << 8) | 4
    );
    let (stats, diag, events) = decode_thread_log_in_format(&built, "format-1", &log, 1);
    assert_eq!(stats.records, 3);
    assert_eq!(
        calls(&events),
        vec![
            (
                "hipStreamSynchronize",
                EventKind::Complete,
                0x65,
                0x2000,
                0x500
            ),
            (
                "hipStreamSynchronize",
                EventKind::Complete,
                0x65,
                0x3000,
                0x100
            ),
            ("hipStreamSynchronize", EventKind::Begin, 0x65, 0x4000, 0),
        ]
    );
    assert_eq!(diag.count("garbage lines"), 1, "{diag}");
    assert!(
        diag.to_string()
            .contains("a continuation line (`+<id> ...`) in a log whose header is not format 2"),
        "{diag}"
    );
}

#[test]
fn a_call_whose_entry_was_not_seen_ends_at_its_exit() {
    let (built, sync) = script_and_sync();
    // Tracing began inside the call: the script's entry time is 0, so the duration it writes
    // is the exit time itself; alone and as a continuation.
    let log = format!("{sync:x} 65 2500 2500 5555aaaa0000 0\n+{sync:x} 100 2600 5555aaaa0000 0\n");
    let (_, diag, events) = decode_thread_log(&built, "entry-not-seen", &log);
    assert!(diag.is_empty(), "{diag}");
    assert_eq!(
        calls(&events),
        vec![
            ("hipStreamSynchronize", EventKind::End, 0x65, 0x2500, 0),
            ("hipStreamSynchronize", EventKind::End, 0x65, 0x2600, 0),
        ]
    );
}
