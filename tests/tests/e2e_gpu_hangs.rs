//! Hangs as a GPU has them, recorded for real (bpftrace, uprobes on the asynchronous HIP/RCCL
//! stand-ins, tests/standins) on the PyTorch-shaped loop (tests/workloads/torch_loop.c): the
//! collectives only enqueue and return, the hang shows as syncs that never return and polls
//! that answer not-ready. Several jobs run under one system-wide recorder, each its own
//! communicator, so one recording gives one group per case:
//! - every mismatch class the flight-recorder analyzer names (collective type, size, dtype,
//!   op/root), at the step where it is;
//! - a rank that stalls while the others only poll (nothing blocks);
//! - a rank that exits mid-job;
//! - two communicators on two streams waiting on each other on the device (every member
//!   enqueued both, none completed: a hang on the device, and the cycle named).

use std::path::{Path, PathBuf};
use std::time::Duration;

use bthost_tests::*;
use serde_json::Value;

/// The newest bpftrace here (the conformance tests cover the others).
fn newest_bpftrace() -> PathBuf {
    available_bpftraces()
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1))
        .expect("a bpftrace")
        .0
}

/// One job of the recording: its arguments to torch_loop, and what its stdout says once it
/// hangs.
struct Case {
    name: &'static str,
    args: &'static str,
    hung: fn(&str) -> bool,
}

/// Runs `cases` at once under one system-wide recorder until each has hung, then stops it
/// as Ctrl-C would; returns the log and each job's stdout.
fn record_cases(dir: &Path, cases: &[Case]) -> (PathBuf, Vec<String>) {
    let standins = build_standins(&dir.join("standins"));
    let log = dir.join("run.log");
    let mut args = standin_pack_args(&standins);
    args.push("--bpftrace-bin".into());
    args.push(newest_bpftrace().display().to_string());
    let _serial = system_wide_lock();
    let mut rec = Recording::start(&[], &args, &log, &[]);
    rec.wait_for(|e| e.contains("bthost: tracing"), "tracing did not start");
    let jobs: Vec<Job> = cases
        .iter()
        .map(|c| {
            let mut cmd = vec![standins.join("torch_loop").display().to_string()];
            cmd.extend(c.args.split(' ').map(String::from));
            Job::start(&cmd, &dir.join(format!("{}.out", c.name)))
        })
        .collect();
    let outs: Vec<String> = jobs
        .iter()
        .zip(cases)
        .map(|(j, c)| j.wait_for(c.hung, &format!("{} did not hang", c.name)))
        .collect();
    // Long enough for the watchdogs to poll many times and the waits to look like a hang.
    std::thread::sleep(Duration::from_secs(3));
    rec.stop();
    drop(jobs);
    (log, outs)
}

fn report_json(log: &Path) -> Value {
    serde_json::from_str(&bthost_ok(&["report", log.to_str().unwrap(), "--json"])).unwrap()
}

/// The group whose divergence `pick` accepts; exactly one.
fn group<'a>(j: &'a Value, what: &str, pick: impl Fn(&Value) -> bool) -> &'a Value {
    let found: Vec<&Value> = j["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| pick(g))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{what}: {}",
        serde_json::to_string_pretty(j).unwrap()
    );
    found[0]
}

fn ranks_done(out: &str, step: u32, ranks: &[u32]) -> bool {
    ranks
        .iter()
        .all(|r| out.contains(&format!("rank {r} step {step} ok")))
}

#[test]
fn each_mismatch_class_is_named_at_its_step() {
    if skip_root_tests() {
        return;
    }
    let dir = scratch("gpu-mismatch");
    let hung: fn(&str) -> bool = |o| ranks_done(o, 2, &[0, 1, 2, 3]);
    let kinds = ["count", "dtype", "op", "type", "root"];
    let cases: Vec<Case> = [
        ("count", "-n 4 -k 6 -m 1:3:count -t 100000"),
        ("dtype", "-n 4 -k 6 -m 1:3:dtype -t 100000"),
        ("op", "-n 4 -k 6 -m 1:3:op -t 100000"),
        ("type", "-n 4 -k 6 -m 1:3:type -t 100000"),
        ("root", "-n 4 -k 6 -m 1:3:root -t 100000"),
    ]
    .into_iter()
    .map(|(name, args)| Case { name, args, hung })
    .collect();
    let (log, _) = record_cases(&dir, &cases);
    let j = report_json(&log);
    assert_eq!(j["groups"].as_array().unwrap().len(), kinds.len(), "{j}");
    let class_of = |g: &Value| -> Vec<String> {
        g["divergence"]["mismatch"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect()
    };
    for (class, call) in [
        ("size", "ncclAllReduce"),
        ("dtype", "ncclAllReduce"),
        ("collective type", "ncclAllReduce"),
    ] {
        let g = group(&j, class, |g| class_of(g) == [class]);
        let d = &g["divergence"];
        // All four enqueued #3 and it never completes: the mismatch hangs on the device.
        assert_eq!(d["order"], 3, "{class}: {d}");
        assert_eq!(d["missing"].as_array().unwrap().len(), 0, "{class}: {d}");
        for e in d["entered"].as_array().unwrap() {
            assert_eq!(e["state"], "pending", "{class}: {e}");
        }
        assert!(
            d["call"].as_str().unwrap().starts_with(call),
            "{class}: {d}"
        );
        assert_eq!(
            d["on_device"], false,
            "{class}: a mismatch, not a device hang"
        );
        let m = &g["mismatches"][0];
        assert_eq!(m["order"], 3);
        assert_eq!(m["classes"][0], class, "{m}");
        let calls = m["calls"].as_array().unwrap();
        assert_eq!(calls.len(), 2, "{m}");
        assert!(
            calls.iter().any(|c| c[1] == serde_json::json!([1])),
            "rank 1 alone: {m}"
        );
    }
    // ncclMax instead of ncclSum, and a Broadcast from root 1 instead of 0: op/root, one
    // AllReduce group and one Broadcast group.
    for call in ["ncclAllReduce(", "ncclBroadcast("] {
        let g = group(&j, call, |g| {
            class_of(g) == ["op/root"]
                && g["divergence"]["call"]
                    .as_str()
                    .is_some_and(|c| c.starts_with(call))
        });
        assert_eq!(g["divergence"]["order"], 3);
    }
    // The text says it the same way.
    let text = bthost_ok(&["report", log.to_str().unwrap()]);
    for class in ["size", "dtype", "collective type", "op/root"] {
        assert!(
            text.contains(&format!("MISMATCH at #3 ({class} mismatch): ")),
            "{class}:\n{text}"
        );
        assert!(
            text.contains(&format!("the members disagree on it: {class} mismatch")),
            "{class}:\n{text}"
        );
    }
    assert!(!text.contains("a hang on the device"), "{text}");
}

#[test]
fn a_stall_a_poll_only_job_an_exit_and_a_deadlock_on_the_device() {
    if skip_root_tests() {
        return;
    }
    let dir = scratch("gpu-hangs");
    let cases = [
        // Rank 1 stalls before step 3; the others only poll the event (nothing blocks).
        Case {
            name: "poll",
            args: "-n 4 -k 6 -p -s 1:3 -t 100000",
            hung: |o| o.contains("rank 1 stalls") && ranks_done(o, 2, &[0, 1, 2, 3]),
        },
        // Rank 2 exits before step 3 (its communicator not destroyed).
        Case {
            name: "exit",
            args: "-n 4 -k 6 -x 2:3 -t 100000",
            hung: |o| o.contains("rank 2 exits") && ranks_done(o, 2, &[0, 1, 3]),
        },
        // Two communicators, each rank's second collective waiting on the device for its
        // first: a cycle at step 1.
        Case {
            name: "cycle",
            args: "-n 2 -k 3 -2 -t 100000",
            hung: |o| o.matches(" (B)").count() == 2,
        },
    ];
    let (log, outs) = record_cases(&dir, &cases);
    let pid_of = |out: &str, rank: u32| -> u64 {
        out.lines()
            .find_map(|l| {
                let w: Vec<&str> = l.split(' ').collect();
                (w.len() > 3 && w[0] == "rank" && w[1] == rank.to_string() && w[2] == "pid")
                    .then(|| w[3].parse().ok())
                    .flatten()
            })
            .unwrap_or_else(|| panic!("no pid of rank {rank} in {out}"))
    };
    let j = report_json(&log);
    let text = bthost_ok(&["report", log.to_str().unwrap()]);
    eprintln!("{text}");

    // Poll only: ranks 0, 2, 3 enqueued #3 and poll its event; none is blocked in a call.
    let stalled = pid_of(&outs[0], 1);
    let g = group(&j, "poll", |g| {
        g["divergence"]["missing"][0]["process"]["pid"] == stalled
    });
    let d = &g["divergence"];
    assert_eq!(
        (d["order"].as_u64(), d["entered_ranks"].as_str()),
        (Some(3), Some("0,2-3"))
    );
    assert_eq!(d["missing_ranks"], "1");
    for e in d["entered"].as_array().unwrap() {
        assert_eq!(e["state"], "pending", "{e}");
        let how = e["how"].as_array().unwrap();
        assert!(!how.is_empty(), "{e}");
        for h in how {
            assert_eq!(h["kind"], "polling", "{e}");
            assert!(
                h["call"].as_str().unwrap().starts_with("hipEventQuery("),
                "{e}"
            );
            assert!(h["answers"].as_u64().unwrap() >= 10, "{e}");
        }
    }
    let m = &d["missing"][0];
    assert_eq!(m["last"]["order"], 2);
    assert_eq!(m["last"]["state"], "completed", "{m}");
    assert!(
        m["how"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["kind"] == "idle"),
        "the stalled rank's main thread is in no traced call: {m}"
    );

    // The rank that exited: never entered #3, the others blocked behind it.
    let exited = pid_of(&outs[1], 2);
    let g = group(&j, "exit", |g| {
        g["divergence"]["missing"][0]["process"]["pid"] == exited
    });
    let d = &g["divergence"];
    assert_eq!(
        (d["order"].as_u64(), d["entered_ranks"].as_str()),
        (Some(3), Some("0-1,3"))
    );
    for e in d["entered"].as_array().unwrap() {
        assert_eq!(e["how"][0]["kind"], "blocked", "{e}");
        assert!(
            e["how"][0]["call"]
                .as_str()
                .unwrap()
                .starts_with("hipMemcpy("),
            "{e}"
        );
    }
    let m = &d["missing"][0];
    assert_eq!(m["last"]["order"], 2);
    // The recorder saw it go: its exit, with its status.
    assert_eq!(m["how"][0]["kind"], "exited", "{m}");
    assert_eq!(m["how"][0]["status"], 0, "{m}");
    assert!(
        m["how"][0]["for_ns"].as_u64().unwrap() >= 2_000_000_000,
        "{m}"
    );
    assert!(
        text.contains(&format!("rank 2 (vm pid {exited}): last #2 "))
            && text.contains("exited ")
            && text.contains(" before the log ended (exit status 0)"),
        "{text}"
    );

    // The cycle: both groups at #1, every member enqueued it, none completed it.
    let cyc: Vec<&Value> = j["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["divergence"]["on_device"] == true)
        .collect();
    assert_eq!(
        cyc.len(),
        2,
        "{}",
        serde_json::to_string_pretty(&j).unwrap()
    );
    for g in &cyc {
        assert_eq!(g["divergence"]["order"], 1);
        assert_eq!(g["divergence"]["entered_ranks"], "0-1");
    }
    let dd = j["device_deadlocks"].as_array().unwrap();
    assert_eq!(dd.len(), 1, "{}", serde_json::to_string_pretty(&j).unwrap());
    let steps = dd[0].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{dd:?}");
    let ids: Vec<&str> = steps.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_ne!(ids[0], ids[1], "two communicators: {dd:?}");
    for s in steps {
        assert_eq!(s["order"], 1);
        assert_eq!(s["behind_order"], 1);
        assert_ne!(s["id"], s["behind_id"], "{s}");
    }
    let ranks: Vec<u64> = steps.iter().map(|s| s["rank"].as_u64().unwrap()).collect();
    assert!(
        ranks.contains(&0) && ranks.contains(&1),
        "one step on each rank: {dd:?}"
    );
    assert!(
        text.contains("a hang on the device or the network")
            && text.contains("DEADLOCK ON THE DEVICE 1"),
        "{text}"
    );
}
