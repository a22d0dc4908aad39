//! `bthost report` on real recordings (stand-in RCCL ranks, real bpftrace, real `record`):
//! - 64 ranks, one of which skips collective #5, recorded by 4 recorders at once, each
//!   following 16 ranks (`--pid`) under its own host name (`unshare --uts`): the report on the
//!   4 logs names the rank, its host, the collective and how long the others waited, in at most
//!   30 lines, and the same in `--json`, field by field;
//! - a mismatch (one rank's AllReduce #3 with another count), a deadlock across two
//!   communicators, and a send without its receive: each named;
//! - bad input: one log twice, logs of other packs, a log with no communicator.

use std::path::{Path, PathBuf};
use std::process::Command;

use bthost_tests::*;
use serde_json::Value;

fn lib_args(standins: &Path) -> Vec<String> {
    vec![
        "--packs".into(),
        "rccl,hip".into(),
        "--lib".into(),
        format!("rccl={}", standins.join("librccl.so.1").display()),
        "--lib".into(),
        format!("hip={}", standins.join("libamdhip64.so.5").display()),
    ]
}

fn report(logs: &[&Path], json: bool) -> std::process::Output {
    let mut args: Vec<String> = vec!["report".into()];
    args.extend(logs.iter().map(|l| l.display().to_string()));
    if json {
        args.push("--json".into());
    }
    Command::new(bthost_bin()).args(&args).output().unwrap()
}

fn report_ok(logs: &[&Path]) -> String {
    let o = report(logs, false);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The pids the ranks print while waiting for the go file, by rank.
fn waiting_pids(out: &str) -> Vec<(u32, u32)> {
    let mut v: Vec<(u32, u32)> = out
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            match w.as_slice() {
                ["rank", r, "pid", p, "waiting"] => Some((r.parse().ok()?, p.parse().ok()?)),
                _ => None,
            }
        })
        .collect();
    v.sort_unstable();
    v
}

/// One bpftrace is enough for these (the recording paths are tested per version elsewhere):
/// the newest here.
fn newest_bpftrace() -> PathBuf {
    available_bpftraces()
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1))
        .expect("a bpftrace")
        .0
}

#[test]
fn sixty_four_ranks_on_eight_hosts_on_a_gpu_one_stalls_before_collective_five() {
    if skip_root_tests() {
        return;
    }
    let dir = scratch("report-64");
    const HOSTS: usize = 8;
    const PER: usize = 64 / HOSTS;
    let standins = build_standins(&dir.join("standins"));
    let go = dir.join("go");
    let bin = newest_bpftrace();
    let _serial = system_wide_lock();
    // The PyTorch-shaped loop on the asynchronous stand-ins: rank 17 stalls in its own code
    // before its 5th AllReduce; the others' 5th only enqueues, and they block in the copy
    // behind it while their watchdogs poll its event.
    let job = Job::start(
        &[
            standins.join("torch_loop").display().to_string(),
            "-n".into(),
            "64".into(),
            "-k".into(),
            "6".into(),
            "-s".into(),
            "17:5".into(),
            "-t".into(),
            "300000".into(),
            "-w".into(),
            go.display().to_string(),
        ],
        &dir.join("job.out"),
    );
    let out = job.wait_for(
        |o| waiting_pids(o).len() == 64,
        "the 64 ranks did not start",
    );
    let pids = waiting_pids(&out);
    let mut recs = Vec::new();
    for node in 0..HOSTS {
        let host = format!("node{}", node + 1);
        let mut args = lib_args(&standins);
        args.push("--bpftrace-bin".into());
        args.push(bin.display().to_string());
        for &(_, pid) in &pids[node * PER..node * PER + PER] {
            args.push("--pid".into());
            args.push(pid.to_string());
        }
        let log = dir.join(format!("{host}.log"));
        // Its own host name, as on its own node: a UTS namespace.
        let script = format!("hostname {host} && exec \"$0\" \"$@\"");
        let prefix = ["unshare", "--uts", "sh", "-c", &script];
        recs.push(Recording::start(&prefix, &args, &log, &[]));
    }
    std::fs::write(&go, "").unwrap();
    // All 64 finish step 4; the stalling rank says so, the others block behind #5.
    job.wait_for(
        |o| {
            o.contains("rank 17 stalls in load_batch before step 5")
                && o.lines().filter(|l| l.ends_with(" step 4 ok")).count() == 64
        },
        "the ranks did not reach collective #5",
    );
    std::thread::sleep(std::time::Duration::from_secs(2));
    for r in &mut recs {
        r.stop();
    }
    let logs: Vec<PathBuf> = (1..=HOSTS)
        .map(|n| dir.join(format!("node{n}.log")))
        .collect();
    let log_refs: Vec<&Path> = logs.iter().map(PathBuf::as_path).collect();
    let text = report_ok(&log_refs);
    eprintln!("{text}");
    let lines: Vec<&str> = text.lines().collect();
    // The findings in 8 lines; the stacks record took at the stop (crate::report::stacks)
    // under them, threads alike once for the 63 waiting ranks: a screenful in all.
    let findings = lines
        .iter()
        .filter(|l| !l.starts_with("    stacks at the dump") && !l.starts_with("      rank"))
        .count();
    assert!(findings <= 9, "{findings} lines:\n{text}");
    assert!(lines.len() <= 25, "{} lines:\n{text}", lines.len());
    // Where the ranks called #5 from (the rccl pack's `caller`, symbolized with the recorded
    // maps and the loop's DWARF): the line of the AllReduce in torch_loop.c, one line for all
    // 63 as they agree.
    let src = std::fs::read_to_string(root().join("tests/workloads/torch_loop.c")).unwrap();
    let call_line = src
        .lines()
        .position(|l| l.contains("if (!mis) return ncclAllReduce("))
        .expect("the AllReduce call in torch_loop.c")
        + 1;
    let site = format!("(torch_loop.c:{call_line})");
    let called = lines
        .iter()
        .find(|l| l.starts_with("    called from "))
        .unwrap_or_else(|| panic!("no call site:\n{text}"));
    assert!(called.ends_with(&site), "{called} (wanted {site})\n{text}");
    assert!(
        text.contains("      rank 17 main: load_batch (torch_loop.c:"),
        "{text}"
    );
    assert!(text.contains("8 logs (node[1-8])"), "{text}");
    assert!(text.contains("logs of one boot"), "{text}");
    assert!(
        text.contains("#5 ncclAllReduce(count=1024")
            && text.contains("entered by ranks 0-16,18-63 (63) on 8 hosts (node[1-8]), pending "),
        "{text}"
    );
    let how = lines
        .iter()
        .find(|l| l.starts_with("    ranks 0-16,18-63: "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        how.contains("blocked in hipMemcpy for ")
            && how.contains("; polling hipEventQuery: ")
            && how.contains(" not-ready answers in "),
        "{how}"
    );
    let rank17_pid = pids[17].1;
    let missing = lines
        .iter()
        .find(|l| l.contains("never entered #5"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        missing.contains(&format!("rank 17 (node3 pid {rank17_pid})"))
            && missing.contains("last #4 ncclAllReduce(")
            && missing.contains(&format!(" {site}, completed"))
            && missing.contains(", completed; in no traced call for "),
        "{missing}"
    );
    let waited: f64 = text
        .split("pending ")
        .nth(1)
        .and_then(|w| w.split(' ').next())
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert!(waited >= 2.0, "{text}");

    let o = report(&log_refs, true);
    assert!(o.status.success());
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["format"], "bthost-report");
    assert_eq!(j["version"], 2);
    assert_eq!(j["logs"].as_array().unwrap().len(), HOSTS);
    assert_eq!(j["logs"][2]["host"], "node3");
    assert_eq!(j["clocks"]["uncertainty_ns"], 0);
    let groups = j["groups"].as_array().unwrap();
    assert_eq!(
        groups.len(),
        1,
        "{}",
        serde_json::to_string_pretty(&j).unwrap()
    );
    let g = &groups[0];
    assert_eq!(
        (g["pack"].as_str(), g["key"].as_str()),
        (Some("rccl"), Some("comm"))
    );
    assert_eq!(g["size"], 64);
    assert_eq!(g["members_seen"], 64);
    let d = &g["divergence"];
    assert_eq!(d["order"], 5);
    assert!(d["call"]
        .as_str()
        .unwrap()
        .starts_with("ncclAllReduce(count=1024"));
    assert_eq!(d["entered_ranks"], "0-16,18-63");
    assert_eq!(d["missing_ranks"], "17");
    let entered = d["entered"].as_array().unwrap();
    assert_eq!(entered.len(), 63);
    for e in entered {
        assert_eq!(e["waiting"], true, "{e}");
        assert_eq!(e["state"], "pending", "{e}");
        assert!(e["waited_ns"].as_u64().unwrap() >= 2_000_000_000, "{e}");
        let kinds: Vec<&str> = e["how"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["blocked", "polling"], "{e}");
        let rank = e["rank"].as_u64().unwrap() as usize;
        assert_eq!(e["process"]["pid"], pids[rank].1, "{e}");
        assert!(
            e["called_from"]
                .as_str()
                .unwrap_or_default()
                .ends_with(&site),
            "{e}"
        );
        assert_eq!(
            e["process"]["host"],
            format!("node{}", rank / PER + 1),
            "{e}"
        );
    }
    let m = &d["missing"][0];
    assert_eq!(m["rank"], 17);
    assert_eq!(m["process"]["host"], "node3");
    assert_eq!(m["process"]["pid"], rank17_pid);
    assert_eq!(m["last"]["order"], 4);
    assert_eq!(m["last"]["returned"], true);
    assert_eq!(m["last"]["state"], "completed");
    assert!(
        m["last"]["called_from"]
            .as_str()
            .unwrap_or_default()
            .ends_with(&site),
        "{m}"
    );
    assert!(m["in_flight"].as_array().unwrap().is_empty(), "{m}");
    assert_eq!(m["how"][0]["kind"], "idle", "{m}");
    assert!(j["deadlocks"].as_array().unwrap().is_empty());

    // convert of the 8 logs: one timeline, processes named by host and pid, a collective's
    // calls joined across hosts, the report at the top of log.txt.
    let out = dir.join("out");
    let mut args: Vec<&str> = vec!["convert"];
    let names: Vec<String> = logs.iter().map(|l| l.display().to_string()).collect();
    args.extend(names.iter().map(String::as_str));
    args.extend(["-o", out.to_str().unwrap()]);
    bthost_ok_stderr(&args);
    let txt = std::fs::read_to_string(out.join("log.txt")).unwrap();
    assert!(
        txt.starts_with("# bthost text log of 8 logs:"),
        "{}",
        &txt[..300]
    );
    assert!(
        txt.contains(&format!(
            "never entered #5: rank 17 (node3 pid {rank17_pid})"
        )),
        "{}",
        &txt[..2000]
    );
    assert!(txt.contains(&format!("\n== process {rank17_pid} on node3 ==\n")));
    let t = check_trace(&out.join("trace_coll.pftrace"));
    let names: Vec<&str> = t["track_list"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|tr| tr["process_name"].as_str())
        .collect();
    assert_eq!(names.len(), 64, "{names:?}");
    assert!(
        names.contains(&format!("node3 pid {rank17_pid} (torch_loop)").as_str()),
        "{names:?}"
    );
    // A collective's flow joins calls of processes recorded on two hosts (each log's
    // threads are numbered apart above 2^22).
    let cross = t["flows"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f[1].as_u64().unwrap() >> 22 != f[3].as_u64().unwrap() >> 22);
    assert!(cross, "no flow across hosts");
}

/// Records `job` on the stand-ins (one recorder, system-wide) until its stdout says `stuck`,
/// then stops it as Ctrl-C would; returns the log.
fn record_hang(dir: &Path, job: &[String], stuck: &str) -> PathBuf {
    let standins = dir.join("standins");
    let log = dir.join("run.log");
    let mut args = lib_args(&standins);
    args.push("--bpftrace-bin".into());
    args.push(newest_bpftrace().display().to_string());
    let _serial = system_wide_lock();
    let out = dir.join("job.out");
    // The job runs under record (its command), its stdout in a file through sh.
    let cmd = vec![
        "sh".to_string(),
        "-c".into(),
        format!("exec \"$@\" > {}", out.display()),
        "sh".into(),
    ]
    .into_iter()
    .chain(job.iter().cloned())
    .collect::<Vec<_>>();
    let mut rec = Recording::start(&[], &args, &log, &cmd);
    let t = std::time::Instant::now();
    while !std::fs::read_to_string(&out)
        .unwrap_or_default()
        .contains(stuck)
    {
        assert!(t.elapsed().as_secs() < 120, "never {stuck:?}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_secs(2));
    rec.stop();
    log
}

fn patterns(dir: &Path) -> PathBuf {
    let standins = build_standins(&dir.join("standins"));
    compile_on_standins(
        "tests/workloads/rccl_patterns.c",
        &standins,
        &dir.join("rccl_patterns"),
    )
}

#[test]
fn a_mismatched_collective_is_named() {
    if skip_root_tests() {
        return;
    }
    let dir = scratch("report-mismatch");
    let standins = build_standins(&dir.join("standins"));
    // Rank 3's third collective (0-based 2) has 2048 elements, the others' 1024.
    let job: Vec<String> = [
        standins.join("rccl_ranks").display().to_string(),
        "-n".into(),
        "4".into(),
        "-m".into(),
        "3:2:2048".into(),
        "-t".into(),
        "100000".into(),
    ]
    .into();
    let log = record_hang(&dir, &job, "coll#1 AllReduce -> ok");
    let text = report_ok(&[&log]);
    let m = text
        .lines()
        .find(|l| l.contains("MISMATCH at #3"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        m.contains("ranks 0-2 ncclAllReduce(count=1024")
            && m.contains("rank 3 ncclAllReduce(count=2048"),
        "{m}"
    );
    // All four are stuck in it: said once.
    assert!(
        text.contains("#3 ncclAllReduce(count=1024") && text.contains("entered by ranks 0-3 (4)"),
        "{text}"
    );
    assert!(text.contains("every member is in it"), "{text}");
}

#[test]
fn a_deadlock_across_two_communicators_is_named() {
    if skip_root_tests() {
        return;
    }
    let dir = scratch("report-deadlock");
    let exe = patterns(&dir);
    let job = vec![
        exe.display().to_string(),
        "deadlock".into(),
        "-t".into(),
        "100000".into(),
    ];
    let log = record_hang(&dir, &job, "rank 1 pid");
    let text = report_ok(&[&log]);
    let cycle: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("DEADLOCK 1"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect();
    assert_eq!(cycle.len(), 2, "{text}");
    // Each waits in #1 on its first communicator for the other's process.
    let comms: Vec<&str> = cycle
        .iter()
        .filter_map(|l| l.split(" of comm ").nth(1)?.split(')').next())
        .collect();
    assert_eq!(comms.len(), 2, "{text}");
    assert_ne!(comms[0], comms[1], "{text}");
    assert!(
        cycle
            .iter()
            .all(|l| l.contains("waits in #1 ncclAllReduce(")),
        "{text}"
    );
}

#[test]
fn a_send_without_its_receive_is_named() {
    if skip_root_tests() {
        return;
    }
    let dir = scratch("report-sendrecv");
    let exe = patterns(&dir);
    let job = vec![
        exe.display().to_string(),
        "sendrecv".into(),
        "-t".into(),
        "100000".into(),
    ];
    let log = record_hang(&dir, &job, "rank 1 stays out");
    let text = report_ok(&[&log]);
    assert!(
        text.contains("SEND WITHOUT RECV: rank 0 sent 2 to rank 1, which received 1 from it"),
        "{text}"
    );
    // And rank 0 waits to receive from rank 1, which never sends.
    let recv = text
        .lines()
        .find(|l| l.contains("rank 1 sent 0 to rank 0, which received 1 from it"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        recv.contains("RECV WITHOUT SEND") && recv.contains("enqueued and pending for"),
        "{recv}"
    );
}

#[test]
fn bad_input_is_refused_with_the_reason() {
    if skip_root_tests() {
        return;
    }
    let dir = scratch("report-bad");
    let standins = build_standins(&dir.join("standins"));
    let bin = newest_bpftrace();
    // A hip-only recording (no communicator) and a rccl one.
    let hip_log = dir.join("hip.log");
    let o = Command::new(bthost_bin())
        .args(["record", "--packs", "hip", "--bpftrace-bin"])
        .arg(&bin)
        .arg("--lib")
        .arg(format!(
            "hip={}",
            standins.join("libamdhip64.so.5").display()
        ))
        .args(["--duration", "0.5", "-o"])
        .arg(&hip_log)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let job: Vec<String> = [
        standins.join("rccl_ranks").display().to_string(),
        "-n".into(),
        "2".into(),
    ]
    .into();
    let rccl_log = record_hang(&dir, &job, "all 2 ranks ok");

    let twice = report(&[&rccl_log, &rccl_log], false);
    let err = String::from_utf8_lossy(&twice.stderr);
    assert_eq!(twice.status.code(), Some(2), "{err}");
    assert!(err.contains("is given twice (the same file)"), "{err}");
    // A copy of it is the same recording.
    let copy = dir.join("copy.log");
    std::fs::copy(&rccl_log, &copy).unwrap();
    let err = String::from_utf8_lossy(&report(&[&rccl_log, &copy], false).stderr).into_owned();
    assert!(
        err.contains("is given twice (the same recording as"),
        "{err}"
    );

    let mixed = report(&[&rccl_log, &hip_log], false);
    let err = String::from_utf8_lossy(&mixed.stderr);
    assert_eq!(mixed.status.code(), Some(2), "{err}");
    assert!(
        err.contains("was written with packs hip,rccl")
            && err.contains("with hip: the report joins logs of the same packs"),
        "{err}"
    );

    let none = report_ok(&[&hip_log]);
    assert!(
        none.contains("no group (communicator) in these logs") && none.contains("rccl: comm"),
        "{none}"
    );
}
