//! The rccl decoder on a recorded log: 2 ranks on the stand-ins (tests/standins), bpftrace
//! 0.17, rank 1 skipping its second collective (a Broadcast) so rank 0 waits in it until the
//! stand-in's 1 s timeout. Recorded with:
//!   bthost build --packs hip,rccl --bpftrace 0.17.0 --lib rccl=OUT/librccl.so.1 --lib hip=OUT/libamdhip64.so.5
//!   bpftrace -B line bpft.bt > hang-2ranks.log & OUT/rccl_ranks -n 2 -k 1 -s 1:1 -t 1000
//! The parent printed: ranks 0 and 1 are pids 25718 and 25719, unique id a0614d38cb400de0.

use std::path::{Path, PathBuf};

use abi_stable::sabi_trait::TD_Opaque;
use bthost::convert::decode_log_with;
use bthost::registry::{Registry, SearchPaths};
use bthost_pack_rccl::RcclDecoder;
use bthost_plugin_api::{Decoder_TO, Event, EventKind, Value};

const UID: u64 = 0xa061_4d38_cb40_0de0;
const RANK0: u32 = 25718;
const RANK1: u32 = 25719;

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
    let events = decode(&data("hang-2ranks.log"));
    for (pid, rank) in [(RANK0, 0), (RANK1, 1)] {
        let init = events
            .iter()
            .find(|e| {
                e.pid == pid && e.name.as_str() == "ncclCommInitRank" && e.kind == EventKind::End
            })
            .expect("init exit");
        assert_eq!(init.link("comm"), Some(UID));
        assert_eq!(
            init.link("device"),
            Some(rank as u64),
            "device captured from RCCL's hipGetDevice"
        );
        let coll = events
            .iter()
            .find(|e| {
                e.pid == pid && e.name.as_str() == "ncclAllReduce" && e.kind == EventKind::Begin
            })
            .unwrap();
        assert_eq!(
            (int(coll, "rank"), int(coll, "nranks"), int(coll, "seq")),
            (Some(rank), Some(2), Some(1))
        );
        assert_eq!(int(coll, "bytes"), Some(4096));
        assert_eq!(coll.link("comm"), Some(UID));
        assert_eq!(coll.link("device"), Some(rank as u64));
    }
    let coll_of = |pid| {
        events
            .iter()
            .find(|e| e.pid == pid && e.name.as_str() == "ncclAllReduce")
            .and_then(|e| e.link("coll"))
    };
    assert_eq!(
        coll_of(RANK0),
        coll_of(RANK1),
        "collective #1 links both ranks"
    );
}

#[test]
fn the_skipped_collective_is_numbered_on_the_rank_that_waited() {
    let events = decode(&data("hang-2ranks.log"));
    let b = |n: &str, k, s| (n.to_string(), k, Some(s));
    assert_eq!(
        ops(&events, RANK0),
        vec![
            b("ncclAllReduce", EventKind::Begin, 1),
            b("ncclAllReduce", EventKind::End, 1),
            b("ncclBroadcast", EventKind::Begin, 2),
            b("ncclBroadcast", EventKind::End, 2),
        ]
    );
    let end = events
        .iter()
        .find(|e| e.pid == RANK0 && e.name.as_str() == "ncclBroadcast" && e.kind == EventKind::End)
        .unwrap();
    assert!(
        matches!(end.arg("ret"), Some(Value::Enum { name, .. }) if name.as_str() == "ncclSystemError")
    );
    assert_eq!(
        ops(&events, RANK1),
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
    let text = std::fs::read_to_string(data("hang-2ranks.log")).unwrap();
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
    let last = ops(&events, RANK0).pop().unwrap();
    assert_eq!(
        last,
        ("ncclBroadcast".to_string(), EventKind::Begin, Some(2))
    );
    let begin = events
        .iter()
        .rev()
        .find(|e| e.pid == RANK0 && e.name.as_str() == "ncclBroadcast")
        .unwrap();
    assert_eq!(begin.link("comm"), Some(UID));
    assert_eq!(int(begin, "root"), Some(0));
}
