//! The rccl decoder on recorded logs: 2 ranks on the stand-ins (tests/standins), rank 1
//! skipping its second collective (a Broadcast) so rank 0 waits in it.
//!
//! hang-2ranks.log: log format 1, bpftrace 0.17, each blocking call as an entry and an exit
//! record; rank 0 waits until the stand-in's 1 s timeout. Recorded with:
//!   bthost build --packs hip,rccl --bpftrace 0.17.0 --lib rccl=OUT/librccl.so.1 --lib hip=OUT/libamdhip64.so.5
//!   bpftrace -B line bpft.bt > hang-2ranks.log & OUT/rccl_ranks -n 2 -k 1 -s 1:1 -t 1000
//! The parent printed: ranks 0 and 1 are pids 25718 and 25719, unique id a0614d38cb400de0.
//!
//! hang-2ranks-format2.log: log format 2 (records paired per printf, continuation lines),
//! bpftrace 0.23.2; bpftrace stopped by SIGINT while rank 0 hung in the Broadcast (timeout
//! 60 s), so the END dump holds its entry. Recorded the same way with `--bpftrace 0.23.2`,
//! `-t 60000`, and `kill -INT` to bpftrace 5 s after the ranks started. The parent printed:
//! ranks 0 and 1 are pids 24466 and 24467, unique id e27627d201dcb580.

use std::path::{Path, PathBuf};

use abi_stable::sabi_trait::TD_Opaque;
use bthost::calls::decode_log_with;
use bthost::registry::{Registry, SearchPaths};
use bthost_pack_rccl::RcclDecoder;
use bthost_plugin_api::{Decoder_TO, Event, EventKind, Value};

/// A recorded log and what its run printed.
struct Recording {
    file: &'static str,
    rank0: u32,
    rank1: u32,
    uid: u64,
}

const FORMAT1: Recording = Recording {
    file: "hang-2ranks.log",
    rank0: 25718,
    rank1: 25719,
    uid: 0xa061_4d38_cb40_0de0,
};

const FORMAT2: Recording = Recording {
    file: "hang-2ranks-format2.log",
    rank0: 24466,
    rank1: 24467,
    uid: 0xe276_27d2_01dc_b580,
};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn decode(log: &Path) -> Vec<Event> {
    let packs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packs");
    let reg = Registry::discover(
        &SearchPaths {
            packs: vec![packs],
            plugins: vec![],
        },
        false,
    );
    let dec = Decoder_TO::from_value(RcclDecoder::default(), TD_Opaque);
    let mut events = Vec::new();
    decode_log_with(&reg, log, None, vec![("rccl".into(), dec)], |_, evs| {
        events.append(evs)
    })
    .unwrap();
    events
}

fn int(e: &Event, n: &str) -> Option<i64> {
    e.arg(n).and_then(Value::as_i64)
}

fn ops(events: &[Event], pid: u32) -> Vec<(String, EventKind, Option<i64>)> {
    events
        .iter()
        .filter(|e| e.pid == pid && e.pack.as_str() == "rccl" && e.arg("seq").is_some())
        .map(|e| (e.name.to_string(), e.kind, int(e, "seq")))
        .collect()
}

#[test]
fn communicators_are_known_across_ranks() {
    for r in [FORMAT1, FORMAT2] {
        let events = decode(&data(r.file));
        for (pid, rank) in [(r.rank0, 0), (r.rank1, 1)] {
            // Format 1 has the init's exit record; format 2 the whole call.
            let init = events
                .iter()
                .find(|e| {
                    e.pid == pid
                        && e.name.as_str() == "ncclCommInitRank"
                        && e.kind != EventKind::Begin
                })
                .expect("init exit");
            assert_eq!(init.link("comm"), Some(r.uid), "{}", r.file);
            assert_eq!(
                init.link("device"),
                Some(rank as u64),
                "device captured from RCCL's hipGetDevice ({})",
                r.file
            );
            let coll = events
                .iter()
                .find(|e| {
                    e.pid == pid && e.name.as_str() == "ncclAllReduce" && e.kind != EventKind::End
                })
                .unwrap();
            assert_eq!(
                (int(coll, "rank"), int(coll, "nranks"), int(coll, "seq")),
                (Some(rank), Some(2), Some(1)),
                "{}",
                r.file
            );
            assert_eq!(int(coll, "bytes"), Some(4096));
            assert_eq!(coll.link("comm"), Some(r.uid));
            assert_eq!(coll.link("device"), Some(rank as u64));
        }
        let coll_of = |pid| {
            events
                .iter()
                .find(|e| e.pid == pid && e.name.as_str() == "ncclAllReduce")
                .and_then(|e| e.link("coll"))
        };
        assert_eq!(
            coll_of(r.rank0),
            coll_of(r.rank1),
            "collective #1 links both ranks ({})",
            r.file
        );
    }
}

#[test]
fn the_skipped_collective_is_numbered_on_the_rank_that_waited() {
    let r = FORMAT1;
    let events = decode(&data(r.file));
    let b = |n: &str, k, s| (n.to_string(), k, Some(s));
    assert_eq!(
        ops(&events, r.rank0),
        vec![
            b("ncclAllReduce", EventKind::Begin, 1),
            b("ncclAllReduce", EventKind::End, 1),
            b("ncclBroadcast", EventKind::Begin, 2),
            b("ncclBroadcast", EventKind::End, 2),
        ]
    );
    let end = events
        .iter()
        .find(|e| {
            e.pid == r.rank0 && e.name.as_str() == "ncclBroadcast" && e.kind == EventKind::End
        })
        .unwrap();
    assert!(
        matches!(end.arg("ret"), Some(Value::Enum { name, .. }) if name.as_str() == "ncclSystemError")
    );
    assert_eq!(
        ops(&events, r.rank1),
        vec![
            b("ncclAllReduce", EventKind::Begin, 1),
            b("ncclAllReduce", EventKind::End, 1)
        ]
    );
}

/// The same log cut while rank 0 waits (a Ctrl-C during the hang): its entry into collective
/// #2 is there, numbered, linked, with no exit.
#[test]
fn a_call_whose_exit_never_came_keeps_its_entry() {
    let r = FORMAT1;
    let text = std::fs::read_to_string(data(r.file)).unwrap();
    // Record 0x39 is ncclBroadcast's exit; cut the log just before it.
    let cut: String = text
        .lines()
        .take_while(|l| !l.starts_with("39 "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(cut.len() < text.len());
    let path = std::env::temp_dir().join(format!("bthost-rccl-cut-{}.log", std::process::id()));
    std::fs::write(&path, cut).unwrap();
    let events = decode(&path);
    std::fs::remove_file(&path).unwrap();
    let last = ops(&events, r.rank0).pop().unwrap();
    assert_eq!(
        last,
        ("ncclBroadcast".to_string(), EventKind::Begin, Some(2))
    );
    let begin = events
        .iter()
        .rev()
        .find(|e| e.pid == r.rank0 && e.name.as_str() == "ncclBroadcast")
        .unwrap();
    assert_eq!(begin.link("comm"), Some(r.uid));
    assert_eq!(int(begin, "root"), Some(0));
}

/// Format 2, bpftrace stopped during the hang: rank 0's Broadcast comes back from the END
/// dump, begun and never ended, numbered 2 and linked to the communicator; rank 1, which
/// skipped it, has collective 1 only.
#[test]
fn a_trace_stopped_during_the_hang_shows_the_rank_left_waiting() {
    let r = FORMAT2;
    let events = decode(&data(r.file));
    let c = |n: &str, k, s| (n.to_string(), k, Some(s));
    assert_eq!(
        ops(&events, r.rank0),
        vec![
            c("ncclAllReduce", EventKind::Complete, 1),
            c("ncclBroadcast", EventKind::Begin, 2),
        ]
    );
    assert_eq!(
        ops(&events, r.rank1),
        vec![c("ncclAllReduce", EventKind::Complete, 1)]
    );
    let waiting = events
        .iter()
        .find(|e| e.pid == r.rank0 && e.name.as_str() == "ncclBroadcast")
        .unwrap();
    assert_eq!(waiting.link("comm"), Some(r.uid));
    assert_eq!(waiting.link("device"), Some(0));
    assert_eq!(int(waiting, "root"), Some(0));
}
