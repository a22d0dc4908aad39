//! Perfetto output checked with Perfetto's OFFICIAL schema (the PyPI `perfetto` package's
//! generated perfetto_trace_pb2), not only by our own reader: tests/perfetto/check_trace.py
//! decodes each trace and checks the rules viewers rely on (balanced LIFO slices per track,
//! ordered timestamps, tracks described before use, interning, flows joining two slices).
//! The logs are real ones from real bpftrace: two ranks on the stand-ins, rank 1 skipping a
//! collective (plugins/rccl/tests/data/hang-2ranks.log, here cut while rank 0 waits; and
//! hang-2ranks-format2.log, bpftrace stopped while rank 0 waits).

use bthost_tests::*;
use serde_json::Value;

/// Where a slice (as check_trace.py gives it) ends.
fn end(s: &Value) -> u64 {
    s["ts"].as_u64().unwrap() + s["dur"].as_u64().unwrap()
}

/// The one slice of `name` on thread `tid`, which must be marked unfinished.
fn the_unfinished<'a>(slices: &'a [Value], name: &str, tid: u32) -> &'a Value {
    let found: Vec<&Value> = slices
        .iter()
        .filter(|s| s["name"] == name && s["tid"] == tid)
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["args"]["unfinished"], Value::Bool(true));
    found[0]
}

#[test]
fn traces_per_link_key_pass_the_official_schema() {
    let dir = scratch("perfetto");
    let text =
        std::fs::read_to_string(root().join("plugins/rccl/tests/data/hang-2ranks.log")).unwrap();
    // Cut just before rank 0's Broadcast returns: a call still open at the end of the log.
    let cut: String = text
        .lines()
        .take_while(|l| !l.starts_with("39 "))
        .map(|l| format!("{l}\n"))
        .collect();
    let log = dir.join("cut.log");
    std::fs::write(&log, cut).unwrap();
    let out_dir = dir.join("out");
    bthost_convert(&log, &out_dir, &[]);

    // The text log starts with where each thread was stuck.
    let txt = std::fs::read_to_string(out_dir.join("log.txt")).unwrap();
    let in_flight: Vec<&str> = txt
        .lines()
        .skip_while(|l| !l.starts_with("# IN FLIGHT when the log ended: 1 calls"))
        .take(2)
        .collect();
    assert!(
        in_flight.len() == 2
            && in_flight[1].contains("pid 25718 tid 25718")
            && in_flight[1].contains("ncclBroadcast(")
            && in_flight[1].contains("seq=2"),
        "{txt}"
    );

    // One trace per key the log's packs declare (hip: device, stream; rccl: comm, ... + coll).
    for key in ["comm", "device", "stream", "coll"] {
        assert!(
            out_dir.join(format!("trace_{key}.pftrace")).is_file(),
            "no trace for {key}"
        );
    }
    let comm = check_trace(&out_dir.join("trace_comm.pftrace"));
    let slices = comm["slices"].as_array().unwrap();
    // Rank 0 (tid 25718) is still in collective #2 at the end: drawn to the end, unfinished.
    let stuck = the_unfinished(slices, "ncclBroadcast", 25718);
    assert_eq!(stuck["args"]["seq"], 2);
    // Drawn to the end of the log.
    assert_eq!(end(stuck), slices.iter().map(end).max().unwrap());
    // The communicator's calls link across the two ranks' processes.
    let flows = comm["flows"].as_array().unwrap();
    assert!(
        flows
            .iter()
            .any(|f| f[1] != f[3] && f[0] == "ncclAllReduce" && f[2] == "ncclAllReduce"),
        "{flows:?}"
    );
    // One collective: both ranks' AllReduce #1 joined by one `coll` flow.
    let coll = check_trace(&out_dir.join("trace_coll.pftrace"));
    let cflows = coll["flows"].as_array().unwrap();
    assert!(
        cflows.contains(&serde_json::json!([
            "ncclAllReduce",
            25718,
            "ncclAllReduce",
            25719
        ])) || cflows.contains(&serde_json::json!([
            "ncclAllReduce",
            25719,
            "ncclAllReduce",
            25718
        ])),
        "{cflows:?}"
    );
    check_trace(&out_dir.join("trace_device.pftrace"));
    check_trace(&out_dir.join("trace_stream.pftrace"));

    // --link picks keys; --combined writes one trace with all their flows.
    let one = dir.join("one");
    bthost_convert(&log, &one, &["--link", "comm,stream", "--combined"]);
    let both = check_trace(&one.join("trace.pftrace"));
    let n = |v: &Value| v["flows"].as_array().unwrap().len();
    assert_eq!(
        n(&both),
        n(&comm) + n(&check_trace(&out_dir.join("trace_stream.pftrace")))
    );
    assert!(!one.join("trace_device.pftrace").exists());
}

/// Log format 2's END line says when tracing stopped: a call still open is drawn up to then
/// (how long the hang had lasted when the user pressed Ctrl-C), not to the last record.
#[test]
fn a_hang_is_drawn_to_when_tracing_stopped() {
    let dir = scratch("perfetto-stopped");
    let log = root().join("plugins/rccl/tests/data/hang-2ranks-format2.log");
    let text = std::fs::read_to_string(&log).unwrap();
    let stopped = text
        .lines()
        .find_map(|l| l.strip_prefix("#E "))
        .and_then(|r| u64::from_str_radix(r.split(' ').next().unwrap(), 16).ok())
        .expect("the END line with its time");
    let out_dir = dir.join("out");
    bthost_convert(&log, &out_dir, &[]);
    let comm = check_trace(&out_dir.join("trace_comm.pftrace"));
    let slices = comm["slices"].as_array().unwrap();
    let stuck = the_unfinished(slices, "ncclBroadcast", 24466);
    // Seconds after the last record: the ranks sat in the hang until bpftrace was stopped.
    let last_record = slices
        .iter()
        .filter(|s| s["args"]["unfinished"] != Value::Bool(true))
        .map(end)
        .max()
        .unwrap();
    assert_eq!(end(stuck), stopped);
    assert!(
        stopped > last_record + 1_000_000_000,
        "{stopped} {last_record}"
    );
    let txt = std::fs::read_to_string(out_dir.join("log.txt")).unwrap();
    assert!(
        txt.contains("open: from their start to when tracing stopped)"),
        "{txt}"
    );
    // The report, first: the collective rank 0 waits in, and rank 1, which never entered it
    // (its last call on the communicator was collective #1, which its stream sync proved
    // completed).
    let header: Vec<&str> = txt.lines().take_while(|l| l.starts_with('#')).collect();
    let line = |prefix: &str| {
        header
            .iter()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in\n{}", header.join("\n")))
    };
    let stuck = line("#   #2 ncclBroadcast(");
    assert!(
        stuck.contains("entered by rank 0 on log1, waiting 15.9 s"),
        "{stuck}"
    );
    let missing = line("#   never entered #2: rank 1 (log1 pid 24467): ");
    assert!(
        missing.contains("last #1 ncclAllReduce(") && missing.contains(", completed;"),
        "{missing}"
    );
    // Then the call in flight itself.
    line("#   pid 24466 tid 24466 (rccl_ranks), open >= 15.89s:");
}

/// Writes a trace of one track's slices with the official schema: each (type, flow_ids,
/// terminating_flow_ids) at times 10, 20, ...; returns check_trace.py's exit status and summary.
fn check_flows(name: &str, events: &str) -> (bool, Value) {
    let path = scratch(name).join("flows.pftrace");
    let write = r#"
import sys
from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb
t = pb.Trace()
p = t.packet.add(); p.trusted_packet_sequence_id = 1; p.sequence_flags = 1
p.track_descriptor.uuid = 1; p.track_descriptor.name = "t"
p.interned_data.event_names.add(iid=1, name="call")
for n, (ty, fl, term) in enumerate(eval(sys.argv[2])):
    p = t.packet.add(); p.trusted_packet_sequence_id = 1; p.timestamp = 10 * (n + 1)
    e = p.track_event; e.type = ty; e.track_uuid = 1
    if ty == 1: e.name_iid = 1
    e.flow_ids.extend(fl); e.terminating_flow_ids.extend(term)
open(sys.argv[1], "wb").write(t.SerializeToString())
"#;
    let o = std::process::Command::new("python3")
        .args(["-c", write])
        .arg(&path)
        .arg(events)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = std::process::Command::new("python3")
        .arg(root().join("tests/perfetto/check_trace.py"))
        .arg(&path)
        .output()
        .unwrap();
    (
        o.status.success(),
        serde_json::from_slice(&o.stdout).unwrap(),
    )
}

/// The checker reads flows as the trace processor does (flows v2): one id begun, stepped and
/// ended draws an arrow per step; a flow never ended, one ended where none is active, and an
/// id used again after its end are refused (the traces' flows would not be checked else).
#[test]
fn the_checker_reads_flows_as_the_trace_processor_does() {
    // Three slices on one chain id 5: arrows 0->1 and 1->2.
    let (ok, v) = check_flows(
        "flows-chain",
        "[(1,[5],[]),(2,[],[]),(1,[5],[]),(2,[],[]),(1,[],[5]),(2,[],[])]",
    );
    assert!(ok, "{}", v["errors"]);
    assert_eq!(v["flow_pairs"], serde_json::json!([[0, 1], [1, 2]]));

    let (ok, v) = check_flows(
        "flows-bad",
        "[(1,[7],[]),(2,[],[]),(1,[],[8]),(2,[],[]),(1,[],[7]),(2,[],[]),(1,[7],[]),(2,[],[])]",
    );
    assert!(!ok);
    let errors: Vec<&str> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(
        errors,
        [
            "flow 8 ends where none is active",
            "flow 7 used again after it ended",
            "flow 7 never ends"
        ],
        "{v}"
    );
}
