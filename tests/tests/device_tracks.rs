//! The device side in the Perfetto traces, inferred from the host calls (crate::convert::device):
//! a hand-written log of the hip and rccl packs, converted, and its traces decoded with
//! Perfetto's official schema (tests/perfetto/check_trace.py). Each stream of the process gets
//! a track of its enqueued work, laid on lanes that never overlap; each operation is a slice
//! from its enqueuing call's return to the call that proved it done (or, never proven, to the
//! log's end, pending), joined from its enqueuing call by a flow in every trace file.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use bthost_plugin_api::Phase;
use bthost_tests::*;
use serde_json::Value;

const PID: u32 = 100;
const MAIN: u32 = 101;
const WATCHDOG: u32 = 102;
const A: u64 = 0x5555_aaaa_0000;
const B: u64 = 0x5555_bbbb_0000;
const C: u64 = 0x5555_cccc_0000;
const D: u64 = 0x5555_dddd_0000;
const E1: u64 = 0x5555_e1e1_0000;
const E2: u64 = 0x5555_e2e2_0000;
const COMM: u64 = 0x5555_c0c0_0000;
/// The log's times are T0 + these offsets (ns).
const T0: u64 = 1_000_000_000;
/// Operations enqueued on stream D and never proven: more than the lanes of one stream.
const ON_D: u64 = 20;
const LANES: u64 = 16;

/// A log being written: the hip and rccl packs' header, then one record line per call.
struct Log {
    built: bthost::compose::Built,
    text: String,
}

impl Log {
    fn new() -> Log {
        let built = hip_rccl_built();
        let mut text = String::from("Attaching 120 probes...\n");
        text.push_str(&built.schema.to_text());
        let _ = writeln!(text, "T {PID:x} {MAIN:x} trainer");
        let _ = writeln!(text, "T {PID:x} {WATCHDOG:x} watchdog");
        Log { built, text }
    }

    /// A whole call of `function` on `tid` from T0 + `start` for `dur` ns, with `fields` by
    /// name (the others 0).
    fn call(&mut self, function: &str, tid: u32, start: u64, dur: u64, fields: &[(&str, u64)]) {
        let r = self
            .built
            .schema
            .records
            .iter()
            .find(|r| r.function == function && r.phase == Phase::Call)
            .unwrap_or_else(|| panic!("no record of {function}"));
        let _ = write!(
            self.text,
            "{:x} {tid:x} {:x} {dur:x}",
            r.id,
            T0 + start + dur
        );
        for f in &r.fields {
            let v = fields.iter().find(|(n, _)| *n == f.name).map_or(0, |x| x.1);
            for _ in 0..f.ty.slots() {
                let _ = write!(self.text, " {v:x}");
            }
        }
        self.text.push('\n');
    }
}

/// The log of the scenario, and the address of its kernel in `kernels` (for --maps).
fn scenario(kernel: u64) -> String {
    let mut l = Log::new();
    // Stream A: a kernel, an AllReduce, an event record; then a sync that returns 0.
    l.call(
        "hipLaunchKernel",
        MAIN,
        1_000,
        100,
        &[("function", kernel), ("stream", A), ("ret", 0)],
    );
    let allreduce = |s| [("count", 1024), ("comm", COMM), ("stream", s), ("ret", 0)];
    l.call("ncclAllReduce", MAIN, 2_000, 200, &allreduce(A));
    l.call(
        "hipEventRecord",
        MAIN,
        3_000,
        50,
        &[("event", E1), ("stream", A)],
    );
    // Stream B: an AllReduce nothing ever proves done.
    l.call("ncclAllReduce", MAIN, 4_000, 200, &allreduce(B));
    // Stream C: a copy and an event, proven by the watchdog's second query of the event.
    l.call(
        "hipMemcpyAsync",
        MAIN,
        5_000,
        100,
        &[("stream", C), ("sizeBytes", 64)],
    );
    l.call(
        "hipEventRecord",
        MAIN,
        6_000,
        50,
        &[("event", E2), ("stream", C)],
    );
    // The null stream: a memset, proven by a sync of the null stream.
    l.call("hipMemsetAsync", MAIN, 6_500, 100, &[("stream", 0)]);
    l.call("hipStreamSynchronize", MAIN, 7_000, 2_000, &[("stream", A)]);
    l.call(
        "hipEventQuery",
        WATCHDOG,
        9_500,
        10,
        &[("event", E2), ("ret", 600)],
    );
    l.call(
        "hipEventQuery",
        WATCHDOG,
        10_000,
        10,
        &[("event", E2), ("ret", 0)],
    );
    l.call("hipStreamSynchronize", MAIN, 11_000, 500, &[("stream", 0)]);
    // Stream D: more AllReduces than one stream has lanes, never proven.
    for i in 0..ON_D {
        l.call("ncclAllReduce", MAIN, 12_000 + i * 300, 200, &allreduce(D));
    }
    l.call("hipGetDevice", MAIN, 20_000, 50, &[("deviceId", 0)]);
    l.text
}

/// A program with a kernel function at a fixed address, and a memory map of it as the
/// kernel would show it (the file mapped whole at 0x400000): the kernel's address.
fn kernels(dir: &Path) -> (std::path::PathBuf, u64) {
    let src = dir.join("kernels.c");
    std::fs::write(
        &src,
        "void vector_add(void) {}\nint main(void) { vector_add(); return 0; }\n",
    )
    .unwrap();
    let bin = dir.join("kernels");
    cc(&[
        "-no-pie",
        "-O0",
        "-o",
        bin.to_str().unwrap(),
        src.to_str().unwrap(),
    ]);
    let nm = std::process::Command::new("nm").arg(&bin).output().unwrap();
    let addr = String::from_utf8_lossy(&nm.stdout)
        .lines()
        .find(|l| l.ends_with(" T vector_add"))
        .and_then(|l| u64::from_str_radix(l.split(' ').next()?, 16).ok())
        .expect("vector_add in nm's output");
    let maps = dir.join("maps");
    std::fs::write(
        &maps,
        format!(
            "00400000-00600000 r-xp 00000000 00:00 0 {}\n",
            bin.display()
        ),
    )
    .unwrap();
    (maps, addr)
}

fn num(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("{v}"))
}

/// A slice's end.
fn end(s: &Value) -> u64 {
    num(&s["ts"]) + num(&s["dur"])
}

/// What one trace shows of the device side: each stream track's name and its lanes' slices.
struct Device<'a> {
    trace: &'a Value,
    /// Stream track name -> lane name -> slices, in time order.
    streams: BTreeMap<String, BTreeMap<String, Vec<&'a Value>>>,
}

/// The device side of process `pid` in `trace`.
fn device_side(trace: &Value, pid: u32) -> Device<'_> {
    let tracks = trace["track_list"].as_array().unwrap();
    let by_uuid: BTreeMap<u64, &Value> = tracks.iter().map(|t| (num(&t["uuid"]), t)).collect();
    let process = tracks
        .iter()
        .find(|t| t["pid"] == pid && t["tid"].is_null() && t["parent"].is_null())
        .expect("the process's track");
    let mut streams: BTreeMap<String, BTreeMap<String, Vec<&Value>>> = BTreeMap::new();
    for t in tracks {
        let name = t["name"].as_str().unwrap_or("");
        if !name.ends_with("(device, inferred)") || t["parent"] != process["uuid"] {
            continue;
        }
        assert!(t["tid"].is_null(), "{t}: not a thread");
        streams.insert(name.to_string(), BTreeMap::new());
    }
    for s in trace["slices"].as_array().unwrap() {
        let lane = by_uuid[&num(&s["track"])];
        let Some(parent) = lane["parent"].as_u64().map(|p| by_uuid[&p]) else {
            continue;
        };
        let Some(stream) = streams.get_mut(parent["name"].as_str().unwrap_or("")) else {
            continue;
        };
        stream
            .entry(lane["name"].as_str().unwrap().to_string())
            .or_default()
            .push(s);
    }
    Device { trace, streams }
}

impl Device<'_> {
    /// The slices of a stream, each as (lane, name, start, end), times from T0.
    fn of(&self, stream: &str) -> Vec<(String, String, u64, u64)> {
        self.of_since(stream, T0)
    }

    /// The same, times from `t0`.
    fn of_since(&self, stream: &str, t0: u64) -> Vec<(String, String, u64, u64)> {
        let mut v: Vec<_> = self
            .streams
            .get(stream)
            .unwrap_or_else(|| panic!("no track {stream:?} in {:?}", self.streams.keys()))
            .iter()
            .flat_map(|(lane, ss)| {
                ss.iter().map(move |s| {
                    (
                        lane.clone(),
                        s["name"].as_str().unwrap().to_string(),
                        num(&s["ts"]) - t0,
                        end(s) - t0,
                    )
                })
            })
            .collect();
        v.sort_by_key(|x| (x.2, x.0.clone()));
        v
    }

    fn slices(&self) -> impl Iterator<Item = &Value> {
        self.streams
            .values()
            .flat_map(|l| l.values().flatten().copied())
    }
}

fn lane(n: u64) -> String {
    format!("lane {n}")
}

/// Everything the device side of one trace must show.
fn check_device_side(trace: &Value, t_end: u64) {
    let d = device_side(trace, PID);
    let all_streams = trace["track_list"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| {
            t["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("(device, inferred)"))
        })
        .count();
    assert_eq!(
        all_streams,
        d.streams.len(),
        "every stream track under the process"
    );
    let name = |q: u64| format!("stream {q:#x} (device, inferred)");
    let names: Vec<&String> = d.streams.keys().collect();
    assert_eq!(
        names,
        vec![
            "null stream (device, inferred)",
            &name(A),
            &name(B),
            &name(C),
            &name(D)
        ],
        "a track per stream"
    );
    let s = |l: u64, n: &str, a: u64, b: u64| (lane(l), n.to_string(), a, b);
    // Stream A: three operations overlapping without nesting, on three lanes, from their
    // enqueue's return to the sync's.
    assert_eq!(
        d.of(&name(A)),
        vec![
            s(0, "hipLaunchKernel: vector_add", 1_100, 9_000),
            s(1, "ncclAllReduce", 2_200, 9_000),
            s(2, "hipEventRecord", 3_050, 9_000),
        ]
    );
    assert_eq!(
        d.of(&name(B)),
        vec![s(0, "ncclAllReduce (pending)", 4_200, t_end)]
    );
    assert_eq!(
        d.of(&name(C)),
        vec![
            s(0, "hipMemcpyAsync", 5_100, 10_010),
            s(1, "hipEventRecord", 6_050, 10_010),
        ]
    );
    assert_eq!(
        d.of("null stream (device, inferred)"),
        vec![s(0, "hipMemsetAsync", 6_600, 11_500)]
    );
    // Stream D: one lane each for the first sixteen, the rest not drawn.
    let on_d = d.of(&name(D));
    assert_eq!(on_d.len() as u64, LANES);
    for (i, x) in on_d.iter().enumerate() {
        assert_eq!(
            *x,
            s(
                i as u64,
                "ncclAllReduce (pending)",
                12_200 + i as u64 * 300,
                t_end
            )
        );
    }

    // Annotations: the enqueuing thread, the proving call, or the pending state.
    for sl in d.slices() {
        let a = &sl["args"];
        let n = sl["name"].as_str().unwrap();
        assert_eq!(a["thread"], MAIN, "{sl}");
        if n.ends_with("(pending)") {
            assert_eq!(a["state"], "pending", "{sl}");
            assert!(a["completed_by"].is_null(), "{sl}");
        } else {
            assert!(a["state"].is_null(), "{sl}");
        }
    }
    let by = |stream: u64| -> Vec<&str> {
        let mut v: Vec<&str> = d.streams[&name(stream)]
            .values()
            .flatten()
            .map(|s| s["args"]["completed_by"].as_str().unwrap())
            .collect();
        v.dedup();
        v
    };
    assert_eq!(by(A), vec!["hipStreamSynchronize"]);
    assert_eq!(by(C), vec!["hipEventQuery"]);
    let kernel = d.streams[&name(A)][&lane(0)][0];
    assert!(
        kernel["args"]["function"]
            .as_str()
            .is_some_and(|f| f.starts_with("vector_add+0x0")),
        "{kernel}"
    );

    // Lanes nest strictly: no two slices of one lane overlap.
    for lanes in d.streams.values() {
        for ss in lanes.values() {
            for w in ss.windows(2) {
                assert!(end(w[0]) <= num(&w[1]["ts"]), "{} overlaps {}", w[0], w[1]);
            }
        }
    }

    // Each device slice has one flow, from its enqueuing call's slice (on the main thread,
    // of the same call, returning when the device slice begins).
    let all = d.trace["slices"].as_array().unwrap();
    let pairs = d.trace["flow_pairs"].as_array().unwrap();
    for sl in d.slices() {
        let into: Vec<&Value> = pairs
            .iter()
            .filter(|p| p[1] == sl["i"])
            .map(|p| &all[num(&p[0]) as usize])
            .collect();
        assert_eq!(into.len(), 1, "{sl}: {into:?}");
        let from = into[0];
        let call = sl["name"].as_str().unwrap();
        let call = call.split([':', ' ']).next().unwrap();
        assert_eq!(from["name"], call, "{from} -> {sl}");
        assert_eq!(from["tid"], MAIN);
        assert_eq!(end(from), num(&sl["ts"]), "{from} -> {sl}");
    }
}

#[test]
fn each_stream_has_a_device_track_of_its_enqueued_work() {
    let dir = scratch("device-tracks");
    let (maps, kernel) = kernels(&dir);
    let log = dir.join("run.log");
    std::fs::write(&log, scenario(kernel)).unwrap();
    let out = dir.join("out");
    let maps_arg = format!("{PID}={}", maps.display());
    let err = bthost_convert(&log, &out, &["--maps", &maps_arg]);
    assert!(err.contains("code addresses: 1 symbolized"), "{err}");
    // The log's last call ends at 20_050: the pending work is drawn to there.
    let t_end = 20_050;
    let mut traces = 0;
    for f in std::fs::read_dir(&out).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_some_and(|e| e == "pftrace") {
            let t = check_trace(&p);
            check_device_side(&t, t_end);
            traces += 1;
        }
    }
    assert!(traces >= 4, "one trace per link key: {traces}");
    // The existing flows are kept: the communicator's calls, the stream's.
    let comm = check_trace(&out.join("trace_comm.pftrace"));
    let flows = comm["flows"].as_array().unwrap();
    let allreduces = flows
        .iter()
        .filter(|f| f[0] == "ncclAllReduce" && f[2] == "ncclAllReduce" && f[3] == MAIN)
        .count() as u64;
    assert_eq!(allreduces, ON_D + 1, "{flows:?}");

    // --combined: one trace, the same device side.
    let one = dir.join("one");
    bthost_convert(&log, &one, &["--maps", &maps_arg, "--combined"]);
    check_device_side(&check_trace(&one.join("trace.pftrace")), t_end);

    // The text log: the program's two threads only, no device link on the calls, and what
    // was drawn (and not) in its header.
    let txt = std::fs::read_to_string(out.join("log.txt")).unwrap();
    assert_eq!(txt.matches("\n-- thread ").count(), 2, "{txt}");
    assert!(!txt.contains("device op"), "{txt}");
    let line = txt
        .lines()
        .find(|l| l.starts_with("# device side"))
        .unwrap_or_else(|| panic!("{txt}"));
    assert_eq!(
        line,
        format!(
            "# device side (inferred from the host calls, drawn in the traces): {} operations on 5 streams, 6 proven done, {} pending at the end; {} more not drawn (over {LANES} at once on one stream)",
            6 + 1 + LANES,
            1 + LANES,
            ON_D - LANES
        )
    );
}

/// A real recording (plugins/rccl/tests/data/hang-2ranks-format2.log: real bpftrace on the
/// stand-ins, two ranks, rank 1 skipping collective #2): each rank's AllReduce #1 on its own
/// stream, from its return to the return of the stream sync that proved it done; rank 0's
/// Broadcast #2 never returned, so it enqueued nothing.
#[test]
fn a_recorded_hang_shows_each_ranks_allreduce_done_on_its_stream() {
    let dir = scratch("device-tracks-recorded");
    let log = root().join("plugins/rccl/tests/data/hang-2ranks-format2.log");
    let out = dir.join("out");
    bthost_convert(&log, &out, &[]);
    let t = check_trace(&out.join("trace_comm.pftrace"));
    let slices = t["slices"].as_array().unwrap();
    // (pid, its stream) of each rank.
    for (pid, stream) in [(24466u32, 0x564a_c61a_c470u64), (24467, 0x564a_c61a_c520)] {
        let call = |name: &str| {
            slices
                .iter()
                .find(|s| s["tid"] == pid && s["name"] == name)
                .unwrap_or_else(|| panic!("no {name} of {pid}"))
        };
        let (allreduce, sync) = (call("ncclAllReduce"), call("hipStreamSynchronize"));
        let d = device_side(&t, pid);
        let track = format!("stream {stream:#x} (device, inferred)");
        assert_eq!(d.streams.len(), 1, "{:?}", d.streams.keys());
        assert_eq!(
            d.of_since(&track, 0),
            vec![(
                lane(0),
                "ncclAllReduce".to_string(),
                end(allreduce),
                end(sync)
            )]
        );
        let op = d.slices().next().unwrap();
        assert_eq!(op["args"]["completed_by"], "hipStreamSynchronize");
        assert_eq!(op["args"]["thread"], pid);
        let pairs = t["flow_pairs"].as_array().unwrap();
        assert!(
            pairs
                .iter()
                .any(|p| p[0] == allreduce["i"] && p[1] == op["i"]),
            "a flow from {allreduce} to {op}"
        );
    }
    assert!(
        !slices
            .iter()
            .any(|s| s["tid"].is_null() && s["name"].as_str().unwrap().contains("Broadcast")),
        "the Broadcast never returned: nothing enqueued"
    );
    let txt = std::fs::read_to_string(out.join("log.txt")).unwrap();
    assert!(
        txt.contains("# device side (inferred from the host calls, drawn in the traces): 2 operations on 2 streams, 2 proven done, 0 pending at the end\n"),
        "{txt}"
    );
}
