//! A job at cluster scale: 1024 ranks on 128 nodes, as 128 generated logs (tests/src/genjob.rs:
//! format 3 as `record` writes it, each node its own host, boot and clock), rank 517 (n65)
//! never entering collective #4. `report` names it, its node and pid, and the 1023 ranks
//! waiting, in a few lines; `convert` puts the 128 logs on one timeline, 1024 processes in the
//! official Perfetto schema; the report is the same on one thread as on two. (Time and memory
//! at this scale: benches/job_scale.rs.)

use bthost_tests::*;
use serde_json::Value;

#[test]
fn a_thousand_ranks_on_128_nodes_one_skips() {
    let dir = scratch("job-scale");
    let spec = JobSpec {
        nodes: 128,
        ranks_per_node: 8,
        collectives: 6,
        skip: Some((517, 3)),
        asynchronous: false,
    };
    let logs = generate_job(&dir, &spec);
    let names: Vec<String> = logs.iter().map(|l| l.display().to_string()).collect();
    let mut args: Vec<&str> = vec!["report"];
    args.extend(names.iter().map(String::as_str));
    let text = bthost_ok(&args);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() <= 12, "{text}");
    assert!(
        text.contains("128 logs (n[1-128]), 1024 processes"),
        "{text}"
    );
    assert!(
        text.contains("#4 ncclAllReduce(count=1048576")
            && text.contains("entered by ranks 0-516,518-1023 (1023) on 128 hosts (n[1-128])"),
        "{text}"
    );
    // rank 517 is n65's sixth rank: pid 41000 + 5 * 61.
    assert!(
        text.contains("never entered #4: rank 517 (n65 pid 41305): last #3 ncclAllReduce("),
        "{text}"
    );

    args.push("--json");
    let j: Value = serde_json::from_str(&bthost_ok(&args)).unwrap();
    assert_eq!(j["logs"].as_array().unwrap().len(), 128);
    let g = &j["groups"][0];
    assert_eq!(
        (g["size"].as_u64(), g["members_seen"].as_u64()),
        (Some(1024), Some(1024))
    );
    assert_eq!(g["divergence"]["missing_ranks"], "517");
    assert_eq!(g["divergence"]["entered"].as_array().unwrap().len(), 1023);
    // Other boots: placed by their anchors, and said to be.
    assert!(
        j["clocks"]["uncertainty_ns"].as_u64().unwrap() > 0,
        "{}",
        j["clocks"]
    );

    let out = dir.join("out");
    let mut args: Vec<&str> = vec!["convert"];
    args.extend(names.iter().map(String::as_str));
    args.extend(["-o", out.to_str().unwrap()]);
    bthost_ok_stderr(&args);
    let t = check_trace(&out.join("trace_coll.pftrace"));
    let procs: Vec<&str> = t["track_list"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|tr| tr["process_name"].as_str())
        .collect();
    assert_eq!(procs.len(), 1024, "{procs:?}");
    assert!(procs.contains(&"n65 pid 41305 (train.py)"), "{procs:?}");
    let txt = std::fs::read_to_string(out.join("log.txt")).unwrap();
    assert!(
        txt.starts_with("# bthost text log of 128 logs:"),
        "{}",
        &txt[..300]
    );
}

/// The same job as a GPU runs it: the collectives only enqueue and return, the ranks wait in
/// a synchronous copy behind #4 while their watchdogs poll its event, and rank 517 stalled in
/// its own code before enqueueing #4. The report names #4 pending on 1023 ranks, how they
/// wait (blocked in hipMemcpy, polling hipEventQuery) and rank 517 in no traced call.
#[test]
fn a_thousand_ranks_on_a_gpu_one_stalls_the_others_block_and_poll() {
    let dir = scratch("job-scale-async");
    let spec = JobSpec {
        nodes: 128,
        ranks_per_node: 8,
        collectives: 6,
        skip: Some((517, 3)),
        asynchronous: true,
    };
    let logs = generate_job(&dir, &spec);
    let names: Vec<String> = logs.iter().map(|l| l.display().to_string()).collect();
    let mut args: Vec<&str> = vec!["report"];
    args.extend(names.iter().map(String::as_str));
    let text = bthost_ok(&args);
    assert!(text.lines().count() <= 12, "{text}");
    assert!(
        text.contains("#4 ncclAllReduce(count=1048576")
            && text.contains(
                "entered by ranks 0-516,518-1023 (1023) on 128 hosts (n[1-128]), pending"
            ),
        "{text}"
    );
    let how = text
        .lines()
        .find(|l| l.contains("ranks 0-516,518-1023: blocked in hipMemcpy for"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        how.contains("; polling hipEventQuery: ") && how.contains(" not-ready answers in "),
        "{text}"
    );
    assert!(
        text.contains("never entered #4: rank 517 (n65 pid 41305): last #3 ncclAllReduce(")
            && text.contains("completed; in no traced call for"),
        "{text}"
    );
    assert!(!text.contains("no divergence"), "{text}");
    // Where the reading runs changes nothing: each log decoded beside its calls' reading
    // (`--jobs 2`), or both on one thread.
    for jobs in ["1", "2"] {
        let mut a = args.clone();
        a.extend(["--jobs", jobs]);
        assert_eq!(bthost_ok(&a), text, "--jobs {jobs}");
    }

    args.push("--json");
    let j: Value = serde_json::from_str(&bthost_ok(&args)).unwrap();
    assert_eq!(j["version"], 2);
    let d = &j["groups"][0]["divergence"];
    assert_eq!(d["order"], 4);
    assert_eq!(d["missing_ranks"], "517");
    assert_eq!(d["on_device"], false);
    let e = &d["entered"][0];
    assert_eq!(
        (&e["state"], &e["waiting"]),
        (&"pending".into(), &true.into()),
        "{e}"
    );
    let kinds: Vec<&str> = e["how"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["blocked", "polling"], "{e}");
    assert!(e["how"][1]["answers"].as_u64().unwrap() >= 10, "{e}");
    let m = &d["missing"][0];
    assert_eq!(m["last"]["state"], "completed", "{m}");
    assert_eq!(m["how"][0]["kind"], "idle", "{m}");
    assert_eq!(m["how"][0]["call"], "hipMemcpy", "{m}");
}

/// A healthy job on a GPU is not a hang: every collective only enqueued, and every one was
/// proven done by the copy after it.
#[test]
fn a_healthy_job_on_a_gpu_reports_nothing() {
    let dir = scratch("job-scale-healthy");
    let spec = JobSpec {
        nodes: 16,
        ranks_per_node: 8,
        collectives: 20,
        skip: None,
        asynchronous: true,
    };
    let logs = generate_job(&dir, &spec);
    let names: Vec<String> = logs.iter().map(|l| l.display().to_string()).collect();
    let mut args: Vec<&str> = vec!["report"];
    args.extend(names.iter().map(String::as_str));
    let text = bthost_ok(&args);
    assert!(
        text.contains("no divergence: in each of 1 groups every member is at the same operation, all completed"),
        "{text}"
    );
}
