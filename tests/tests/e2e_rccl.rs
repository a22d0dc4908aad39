//! Four ranks in four processes on the RCCL/HIP stand-ins (real names and signatures, real
//! cross-process synchronisation), traced by real bpftrace 0.17 and 0.23: the decoded log must
//! know each communicator across processes, each rank's rank, device and stream, and number
//! each rank's collectives; and when one rank skips a collective, the others' entries into it
//! must be there, never exited normally.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use bthost::calls::decode_log;
use bthost::registry::{Registry, SearchPaths};
use bthost_plugin_api::{Event, EventKind, Value};
use bthost_tests::*;

fn trace(bin: &Path, version: &semver::Version, name: &str, args: &str) -> (Vec<Event>, String) {
    trace_with(bin, version, name, args, None)
}

type Stuck = fn(&str) -> bool;

fn scratch_name(name: &str, version: &semver::Version) -> String {
    format!("e2e_rccl-{name}-{version}")
}

/// The log [`trace_with`] wrote for `name` and `version`.
fn run_log(name: &str, version: &semver::Version) -> std::path::PathBuf {
    out_dir()
        .join("e2e-scratch")
        .join(scratch_name(name, version))
        .join("run.log")
}

fn trace_with(
    bin: &Path,
    version: &semver::Version,
    name: &str,
    args: &str,
    hang: Option<Stuck>,
) -> (Vec<Event>, String) {
    let dir = scratch(&scratch_name(name, version));
    let standins = build_standins(&dir.join("standins"));
    let script = dir.join("bpft.bt");
    let log = run_log(name, version);
    let lib = |p: &str, f: &str| format!("{p}={}", standins.join(f).display());
    bthost_ok(&[
        "build",
        "--packs",
        "hip,rccl",
        "--bpftrace",
        &version.to_string(),
        "--lib",
        &lib("rccl", "librccl.so.1"),
        "--lib",
        &lib("hip", "libamdhip64.so.5"),
        "-o",
        script.to_str().unwrap(),
    ]);
    let cmd = format!("{} {args}", standins.join("rccl_ranks").display());
    let stdout = match hang {
        None => bpftrace_trace(bin, &script, &log, &cmd),
        Some(stuck) => bpftrace_trace_hang(bin, &script, &log, &cmd, stuck),
    };
    let reg = Registry::discover(&SearchPaths::standard(&[]), true);
    assert!(reg.entries["rccl"].plugin.is_some(), "{:?}", reg.skipped);
    let mut events = Vec::new();
    let (stats, diag, _) = decode_log(&reg, &log, None, |_, evs| events.append(evs)).unwrap();
    assert_eq!(
        diag.count("malformed records") + diag.count("garbage lines"),
        0,
        "{diag}"
    );
    assert_eq!(stats.lost_events, 0);
    (events, stdout)
}

fn uint(e: &Event, name: &str) -> u64 {
    e.arg(name)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{} lacks {name}: {e:?}", e.name))
}

fn enum_name(e: &Event, name: &str) -> String {
    match e.arg(name) {
        Some(Value::Enum { name, .. }) => name.to_string(),
        other => panic!("{}: {name} is {other:?}", e.name),
    }
}

const COLLECTIVES: [&str; 3] = ["ncclAllReduce", "ncclBroadcast", "ncclAllGather"];

#[test]
fn four_ranks_decoded_on_every_bpftrace() {
    if skip_root_tests() {
        return;
    }
    let versions = available_bpftraces();
    assert!(
        versions.len() >= 2,
        "want bpftrace 0.17 and 0.23 (scripts/setup): {versions:?}"
    );
    for (bin, version) in &versions {
        let (events, stdout) = trace(bin, version, "ok", "-n 4 -k 3");
        assert!(stdout.contains("all 4 ranks ok"), "{stdout}");
        let ranks = ranks_of(&stdout);
        assert_eq!(ranks.len(), 4, "{stdout}");
        let uid = stdout
            .lines()
            .find_map(|l| l.split(" id ").nth(1))
            .map(|h| u64::from_str_radix(h.trim(), 16).unwrap())
            .expect("the parent prints the unique id");

        let mut colls_by_seq: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
        for &(rank, pid, device, stream, _comm) in &ranks {
            let mine: Vec<&Event> = events.iter().filter(|e| e.pid == pid).collect();
            // The communicator's creation: identity from the unique id, device from RCCL's own
            // (nested, unrecorded by rccl) hipGetDevice.
            let init_end = mine
                .iter()
                .find(|e| e.name.as_str() == "ncclCommInitRank" && e.kind == EventKind::Complete)
                .unwrap_or_else(|| panic!("{version}: rank {rank} has no ncclCommInitRank"));
            assert_eq!(enum_name(init_end, "ret"), "ncclSuccess");
            assert_eq!(
                init_end.arg("device").and_then(Value::as_i64),
                Some(device),
                "{version}"
            );
            assert_eq!(init_end.link("comm"), Some(uid));
            assert_eq!(init_end.link("device"), Some(device as u64));
            let init_begin = mine
                .iter()
                .find(|e| e.name.as_str() == "ncclCommInitRank")
                .unwrap();
            assert_eq!(uint(init_begin, "uniqueId"), uid);
            assert_eq!(init_begin.arg("rank").and_then(Value::as_i64), Some(rank));

            // Every collective begun, numbered 1.. on this rank, with rank, device and stream.
            let begins: Vec<&&Event> = mine
                .iter()
                .filter(|e| e.kind == EventKind::Complete && COLLECTIVES.contains(&e.name.as_str()))
                .collect();
            let names: Vec<&str> = begins.iter().map(|e| e.name.as_str()).collect();
            assert_eq!(
                names,
                [
                    "ncclAllReduce",
                    "ncclAllReduce",
                    "ncclAllReduce",
                    "ncclBroadcast",
                    "ncclAllReduce",
                    "ncclAllGather"
                ],
                "{version} rank {rank}"
            );
            for (i, e) in begins.iter().enumerate() {
                assert_eq!(uint(e, "seq"), i as u64 + 1);
                assert_eq!(e.arg("rank").and_then(Value::as_i64), Some(rank));
                assert_eq!(e.arg("nranks").and_then(Value::as_i64), Some(4));
                assert_eq!(
                    e.link("comm"),
                    Some(uid),
                    "{version}: comm links across ranks"
                );
                assert_eq!(e.link("device"), Some(device as u64));
                assert_eq!(
                    e.link("stream"),
                    Some(stream),
                    "{version}: the 7th argument, from the stack"
                );
                colls_by_seq
                    .entry(uint(e, "seq"))
                    .or_default()
                    .insert(e.link("coll").unwrap());
            }
            let first = begins[0];
            assert_eq!(enum_name(first, "datatype"), "ncclFloat32");
            assert_eq!(enum_name(first, "op"), "ncclSum");
            assert_eq!(uint(first, "bytes"), 4 * uint(first, "count"));
            // Each collective is one record, at its exit, and succeeded; nothing was in flight.
            assert!(begins.iter().all(|e| enum_name(e, "ret") == "ncclSuccess"));
            assert!(
                !mine.iter().any(|e| e.kind == EventKind::Begin),
                "{version}: {mine:?}"
            );
            // The hip plugin knows the thread's device from its successful hipSetDevice.
            let hip_after: Vec<_> = mine
                .iter()
                .filter(|e| e.pack.as_str() == "hip" && e.name.as_str() == "hipStreamCreate")
                .collect();
            assert!(
                !hip_after.is_empty()
                    && hip_after
                        .iter()
                        .all(|e| e.link("device") == Some(device as u64)),
                "{version}"
            );
        }
        // One `coll` value per collective, shared by all four ranks.
        assert_eq!(colls_by_seq.len(), 6);
        assert!(
            colls_by_seq.values().all(|s| s.len() == 1),
            "{colls_by_seq:?}"
        );
    }
}

#[test]
fn a_rank_that_skips_a_collective_shows_the_others_stuck_in_it() {
    if skip_root_tests() {
        return;
    }
    for (bin, version) in &available_bpftraces() {
        // Rank 2 skips its second collective. As on a GPU, the others' collective #2 only
        // enqueues and returns ncclSuccess; they wait in the stream sync behind it until the
        // stand-in's 2 s timeout ends the device's wait (the communicator's async error).
        let (events, stdout) = trace(bin, version, "hang", "-n 4 -k 3 -s 2:1 -t 2000");
        assert!(stdout.contains("timed out: ranks 0 1 3"), "{stdout}");
        let ranks = ranks_of(&stdout);
        for &(rank, pid, ..) in &ranks {
            let seqs: Vec<(u64, EventKind, Option<String>)> = events
                .iter()
                .filter(|e| e.pid == pid && e.name.as_str() == "ncclAllReduce")
                .map(|e| {
                    (
                        uint(e, "seq"),
                        e.kind,
                        e.arg("ret").map(|_| enum_name(e, "ret")),
                    )
                })
                .collect();
            if rank == 2 {
                // It never entered collective #2.
                assert_eq!(
                    seqs,
                    vec![(1, EventKind::Complete, Some("ncclSuccess".into()))],
                    "{version}"
                );
            } else {
                assert!(
                    seqs.len() >= 2,
                    "{version} rank {rank}: its all-reduces {seqs:?}; the job said:\n{stdout}"
                );
                assert_eq!(
                    seqs[..2],
                    [
                        (1, EventKind::Complete, Some("ncclSuccess".into())),
                        (2, EventKind::Complete, Some("ncclSuccess".into())),
                    ],
                    "{version} rank {rank}"
                );
                // The wait is in the sync after it, which returned at the timeout.
                let after_2 = events
                    .iter()
                    .filter(|e| e.pid == pid && e.name.as_str() == "hipStreamSynchronize")
                    .nth(1)
                    .unwrap_or_else(|| panic!("{version} rank {rank}: no second sync"));
                assert!(
                    after_2.dur >= 1_500_000_000,
                    "{version} rank {rank}: the sync behind #2 took {} ns",
                    after_2.dur
                );
            }
        }
    }
}

/// The hang as a user meets it on a GPU: the waiting ranks' collective #2 only enqueued and
/// returned, and their stream syncs behind it never return (no timeout); the user stops
/// tracing with Ctrl-C. Their syncs come back from the script's END dump of the calls in
/// flight: begun, linked to the collective's stream, never ended.
#[test]
fn a_hang_stopped_by_ctrl_c_keeps_the_entries_in_flight() {
    if skip_root_tests() {
        return;
    }
    fn stuck(out: &str) -> bool {
        out.contains("SKIPPED")
            && (0..4).filter(|r| *r != 2).all(|r| {
                out.contains(&format!("rank {r} pid"))
                    && out
                        .lines()
                        .any(|l| l.starts_with(&format!("rank {r} ")) && l.contains("coll#0"))
            })
    }
    for (bin, version) in &available_bpftraces() {
        let (events, stdout) = trace_with(
            bin,
            version,
            "inflight",
            "-n 4 -k 3 -s 2:1 -t 0",
            Some(stuck),
        );
        let ranks = ranks_of(&stdout);
        assert_eq!(ranks.len(), 4, "{stdout}");
        let uid_of_rank2 = events
            .iter()
            .find(|e| e.pid == ranks[2].1 && e.name.as_str() == "ncclAllReduce")
            .and_then(|e| e.link("comm"))
            .unwrap();
        for &(rank, pid, device, stream, _) in &ranks {
            let calls: Vec<&Event> = events
                .iter()
                .filter(|e| e.pid == pid && e.name.as_str() == "ncclAllReduce")
                .collect();
            let shape: Vec<(u64, EventKind)> =
                calls.iter().map(|e| (uint(e, "seq"), e.kind)).collect();
            if rank == 2 {
                assert_eq!(shape, vec![(1, EventKind::Complete)], "{version}");
                continue;
            }
            assert_eq!(
                shape,
                vec![(1, EventKind::Complete), (2, EventKind::Complete)],
                "{version} rank {rank}"
            );
            assert_eq!(calls[1].link("comm"), Some(uid_of_rank2));
            assert_eq!(calls[1].arg("rank").and_then(Value::as_i64), Some(rank));
            let stuck_call = events
                .iter()
                .filter(|e| e.pid == pid && e.name.as_str() == "hipStreamSynchronize")
                .find(|e| e.kind == EventKind::Begin)
                .unwrap_or_else(|| panic!("{version} rank {rank}: no sync in flight"));
            assert_eq!(stuck_call.link("stream"), Some(stream));
            assert_eq!(stuck_call.link("device"), Some(device as u64));
        }
        // The text log's header leads with the report: ranks 0, 1 and 3 entered collective
        // #2 and wait there; rank 2 never did, its last call on the communicator was #1,
        // completed (its stream sync returned), and it is in no traced call.
        let log = run_log("inflight", version);
        let out = log.with_file_name("out");
        bthost_convert(&log, &out, &[]);
        let txt = std::fs::read_to_string(out.join("log.txt")).unwrap();
        let header: Vec<&str> = txt.lines().take_while(|l| l.starts_with('#')).collect();
        let find = |prefix: &str| {
            *header
                .iter()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("{version}: no {prefix:?} in\n{}", header.join("\n")))
        };
        let stuck = find("#   #2 ncclAllReduce(");
        assert!(
            stuck.contains("entered by ranks 0-1,3 (3)") && stuck.contains(", pending "),
            "{version}: {stuck}"
        );
        find("#     ranks 0-1,3: blocked in hipStreamSynchronize for ");
        let missing = find("#   never entered #2: rank 2 (");
        assert!(
            missing.contains(&format!(" pid {}): last #1 ncclAllReduce(", ranks[2].1))
                && missing.contains(", completed; in no traced call for"),
            "{version}: {missing}"
        );
    }
}
