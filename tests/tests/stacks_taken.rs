//! Stacks at the hang (crate::stacks, record/stacks.rs, report/stacks.rs), for real: bpftrace
//! on the asynchronous HIP/RCCL stand-ins, real ptrace, Debian's CPython and py-spy.
//! - a Python job (tests/workloads/torch_loop.py, ctypes) of 4 ranks, one stalled in a Python
//!   function: `--on-hang` takes the stacks while it hangs, the job keeps running after, and
//!   the report names that function and line under the rank, the waiting ranks' stack once;
//! - the same job in C (tests/workloads/torch_loop.c), stacks taken at Ctrl-C: native frames
//!   with file:line; and with `--no-stacks` the log reports as before, without stacks;
//! - a bthost killed with SIGKILL while it holds a process leaves it running; a process that
//!   exits while its stack is taken; no ptrace rights: one line, no stacks.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bthost_tests::*;
use serde_json::Value;

const PYTHON: &str = "/usr/bin/python3";

/// The 1-based line of `src` (relative to the workspace) that contains `text`, once.
fn line_of(src: &str, text: &str) -> usize {
    let body = std::fs::read_to_string(root().join(src)).unwrap();
    let found: Vec<usize> = body
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(text))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(found.len(), 1, "{text:?} in {src}");
    found[0]
}

/// Whether py-spy runs here; said when it does not (`pip install py-spy`: scripts/setup).
fn have_py_spy() -> bool {
    let ok = Command::new("py-spy")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIPPED: py-spy is not installed (pip install py-spy; scripts/setup does it)");
    }
    ok
}

/// The ranks' pids, from their `rank R pid P` lines.
fn rank_pids(out: &str) -> Vec<(u32, u32)> {
    let mut v: Vec<(u32, u32)> = out
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            match w[..] {
                ["rank", r, "pid", p, ..] => Some((r.parse().ok()?, p.parse().ok()?)),
                _ => None,
            }
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// A field of /proc/PID/status.
fn status_field(pid: u32, field: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field).map(|v| v.trim().to_string()))
        .unwrap_or_default()
}

/// Not stopped and traced by no one.
fn assert_released(pid: u32) {
    let state = status_field(pid, "State:");
    assert!(
        !state.starts_with('t') && !state.starts_with('T'),
        "pid {pid} is {state}"
    );
    assert_eq!(
        status_field(pid, "TracerPid:"),
        "0",
        "pid {pid} is still traced"
    );
}

/// The voluntary context switches of all of a process's threads: they grow while any thread
/// runs (a watchdog polling every 100 ms).
fn switches(pid: u32) -> u64 {
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    rd.filter_map(|e| {
        let s = std::fs::read_to_string(e.ok()?.path().join("status")).ok()?;
        s.lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))?
            .trim()
            .parse::<u64>()
            .ok()
    })
    .sum()
}

/// Waits until the process's threads have run again (liveness: two minutes at most).
fn runs_on(pid: u32) {
    let before = switches(pid);
    let t = Instant::now();
    while switches(pid) <= before + 3 {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "pid {pid} does not run"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The report's lines after the first that starts with `head` (trimmed), up to the next line
/// at its indent or less.
fn block_after<'a>(text: &'a str, head: &str) -> Vec<&'a str> {
    let lines: Vec<&str> = text.lines().collect();
    let i = lines
        .iter()
        .position(|l| l.trim_start().starts_with(head))
        .unwrap_or_else(|| panic!("no line {head:?} in:\n{text}"));
    let indent = lines[i].len() - lines[i].trim_start().len();
    lines[i + 1..]
        .iter()
        .take_while(|l| l.len() - l.trim_start().len() > indent)
        .copied()
        .collect()
}

fn report_json(log: &Path) -> Value {
    serde_json::from_str(&bthost_ok(&["report", log.to_str().unwrap(), "--json"])).unwrap()
}

#[test]
fn a_python_straggler_is_named_with_its_function_and_line_while_the_job_hangs() {
    if skip_root_tests() || !have_py_spy() {
        return;
    }
    assert!(Path::new(PYTHON).is_file(), "Debian's python3 is missing");
    let dir = scratch("stacks-python");
    let standins = build_standins(&dir.join("standins"));
    let log = dir.join("run.log");
    let mut args = standin_pack_args(&standins);
    args.extend(["--flight-recorder", "256", "--on-hang", "1"].map(String::from));
    let _serial = system_wide_lock();
    let mut rec = Recording::start(&[], &args, &log, &[]);
    let script = root().join("tests/workloads/torch_loop.py");
    let job = Job::start(
        &[
            PYTHON.into(),
            script.display().to_string(),
            standins.display().to_string(),
            "-n".into(),
            "4".into(),
            "-k".into(),
            "6".into(),
            "-s".into(),
            "1:3".into(),
            "-t".into(),
            "0".into(),
        ],
        &dir.join("job.out"),
    );
    let out = job.wait_for(
        |o| {
            o.contains("rank 1 stalls in load_batch before step 3")
                && [0, 2, 3]
                    .iter()
                    .all(|r| o.contains(&format!("rank {r} step 2 ok")))
        },
        "the job did not hang",
    );
    // The hang watch dumps, with the stacks, while the job hangs.
    rec.wait_for(
        |e| e.contains("dumping the flight recorder") && e.contains("bthost: stacks of"),
        "no stacks at the on-hang dump",
    );
    let ranks = rank_pids(&out);
    assert_eq!(ranks.len(), 4, "{out}");
    // No thread left stopped, and the job runs on: its watchdogs keep polling.
    for &(_, pid) in &ranks {
        assert_released(pid);
        runs_on(pid);
    }
    let said = rec.stop();
    assert!(!said.contains("no stacks"), "{said}");
    assert!(
        !out.contains("step 3 ok"),
        "the job was to hang at step 3:\n{out}"
    );

    let stall = line_of("tests/workloads/torch_loop.py", "time.sleep(3600)");
    let memcpy = line_of("tests/workloads/torch_loop.py", "hip.hipMemcpy(host");
    let text = bthost_ok(&["report", log.to_str().unwrap()]);
    // Under the straggler: its Python function and line.
    let under = block_after(&text, "never entered #3: rank 1 ");
    assert!(
        under.iter().any(|l| l.trim_start().starts_with(&format!(
            "rank 1 main: load_batch (torch_loop.py:{stall}) <- train_step"
        ))),
        "{text}"
    );
    // Under the waiting ranks: their common stack once, from the stand-in's hipMemcpy to the
    // Python line that called it.
    let waiting: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("ranks 0,2-3 main: "))
        .collect();
    assert_eq!(waiting.len(), 1, "{text}");
    assert!(
        waiting[0].contains("hipMemcpy (hip_standin.c:")
            && waiting[0].contains(&format!(
                "<- train_step (torch_loop.py:{memcpy}) <- run_rank"
            )),
        "{text}"
    );
    // The watchdog threads: Python frames too.
    assert!(text.contains("thread: watchdog (torch_loop.py:"), "{text}");

    let j = report_json(&log);
    let stacks = j["stacks"].as_array().expect("stacks in the JSON");
    let of_1 = stacks
        .iter()
        .find(|s| s["ranks"] == serde_json::json!([1]))
        .expect("rank 1's stacks");
    assert_eq!(of_1["process"]["pid"], ranks[1].1);
    let main = of_1["threads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["thread"] == "main")
        .unwrap();
    assert!(
        main["frames"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f.as_str() == Some(&format!("load_batch (torch_loop.py:{stall})"))),
        "{main}"
    );
    // The on-hang dump's stacks are kept beside the log, each with its pause.
    let (kept, bad) = bthost::stacks::format::read(&log);
    assert_eq!(bad, 0);
    let hang: Vec<_> = kept.iter().filter(|s| s.why == "on-hang").collect();
    assert!(
        ranks
            .iter()
            .all(|(_, p)| hang.iter().any(|s| s.pid == *p && !s.threads.is_empty())),
        "{kept:?}"
    );

    // convert: log.txt lists the stack in the straggler's thread, and each trace carries it
    // as an instant on that thread's track, valid by the official schema.
    let conv = dir.join("conv");
    bthost_convert(&log, &conv, &[]);
    let text = std::fs::read_to_string(conv.join("log.txt")).unwrap();
    let thread_1 = text
        .split(&format!("-- thread {} ", ranks[1].1))
        .nth(1)
        .expect("rank 1's thread in log.txt");
    let thread_1 = thread_1.split("\n-- thread ").next().unwrap();
    assert!(
        thread_1.lines().any(|l| l.contains(" instant ")
            && l.contains(&format!(
                "stack at dump(why=on-hang, top=load_batch (torch_loop.py:{stall})"
            ))),
        "{thread_1}"
    );
    let trace = check_trace(&conv.join("trace_comm.pftrace"));
    let marks: Vec<&Value> = trace["slices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"] == "stack at dump" && s["tid"] == ranks[1].1)
        .collect();
    assert!(!marks.is_empty(), "no stack instant on rank 1's track");
    assert!(
        marks.iter().all(|m| m["instant"] == true
            && m["args"]["top"]
                .as_str()
                .is_some_and(|t| t.starts_with(&format!("load_batch (torch_loop.py:{stall})")))),
        "{marks:?}"
    );
    drop(job);
}

#[test]
fn a_c_straggler_has_native_frames_with_file_and_line_and_no_stacks_reads_as_before() {
    if skip_root_tests() {
        return;
    }
    let dir = scratch("stacks-c");
    let standins = build_standins(&dir.join("standins"));
    let stall = line_of("tests/workloads/torch_loop.c", "for (;;) pause();");
    let _serial = system_wide_lock();
    let mut reports = Vec::new();
    for (name, extra) in [("stacks", None), ("nostacks", Some("--no-stacks"))] {
        let log = dir.join(format!("{name}.log"));
        let mut args = standin_pack_args(&standins);
        args.extend(extra.map(String::from));
        let mut rec = Recording::start(&[], &args, &log, &[]);
        let job = Job::start(
            &[
                standins.join("torch_loop").display().to_string(),
                "-n".into(),
                "4".into(),
                "-k".into(),
                "6".into(),
                "-s".into(),
                "1:3".into(),
                "-t".into(),
                "0".into(),
            ],
            &dir.join(format!("{name}.out")),
        );
        let out = job.wait_for(
            |o| {
                o.contains("rank 1 stalls in load_batch before step 3")
                    && [0, 2, 3]
                        .iter()
                        .all(|r| o.contains(&format!("rank {r} step 2 ok")))
            },
            "the job did not hang",
        );
        // Ctrl-C while calls are in flight: the stacks at the stop.
        std::thread::sleep(Duration::from_millis(500));
        let said = rec.stop();
        for (_, pid) in rank_pids(&out) {
            assert_released(pid);
        }
        assert_eq!(
            said.contains("bthost: stacks of"),
            extra.is_none(),
            "{said}"
        );
        assert_eq!(
            bthost::stacks::format::stacks_path(&log).exists(),
            extra.is_none()
        );
        reports.push(bthost_ok(&["report", log.to_str().unwrap()]));
        drop(job);
    }
    let text = &reports[0];
    let under = block_after(text, "never entered #3: rank 1 ");
    assert!(
        under.iter().any(|l| l.trim_start().starts_with(&format!(
            "rank 1 main: load_batch (torch_loop.c:{stall}) <- run_rank (torch_loop.c:"
        ))),
        "{text}"
    );
    let waiting: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("ranks 0,2-3 main: "))
        .collect();
    assert_eq!(waiting.len(), 1, "{text}");
    assert!(
        waiting[0].contains("hipMemcpy (hip_standin.c:")
            && waiting[0].contains("run_rank (torch_loop.c:"),
        "{text}"
    );
    // Without stacks: the same findings, no stack lines.
    let plain = &reports[1];
    assert!(!plain.contains("stacks at the dump"), "{plain}");
    assert!(plain.contains("never entered #3: rank 1 "), "{plain}");
    let without: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("    stacks at") && !l.starts_with("      "))
        .collect();
    let plain_lines: Vec<&str> = plain.lines().collect();
    assert_eq!(without.len(), plain_lines.len(), "{text}\n---\n{plain}");
}

/// A process to take stacks of: `sleep`, in its own session, killed when dropped.
struct Target(std::process::Child);

impl Target {
    fn sleep() -> Target {
        Target(
            Command::new("sleep")
                .arg("1000")
                .stdin(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_bthost_killed_while_it_holds_a_process_leaves_it_running() {
    if skip_root_tests() {
        return;
    }
    let t = Target::sleep();
    let err = scratch("stacks-killed").join("stderr");
    let mut b = Command::new(bthost_bin())
        .args(["stacks", &t.pid().to_string()])
        .env("BTHOST_TEST_STACKS_HOLD_MS", "60000")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !std::fs::read_to_string(&err)
        .unwrap_or_default()
        .contains("holding pid")
    {
        assert!(start.elapsed() < Duration::from_secs(120), "never held");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Held now: stopped, traced by bthost.
    assert!(status_field(t.pid(), "State:").starts_with('t'));
    // The tracer is one of bthost's threads (the one that takes this process's stacks).
    let tracer = status_field(t.pid(), "TracerPid:");
    assert!(
        Path::new(&format!("/proc/{}/task/{tracer}", b.id())).exists(),
        "traced by {tracer}, not by a thread of bthost {}",
        b.id()
    );
    b.kill().unwrap();
    b.wait().unwrap();
    // The kernel let it go with its tracer: running, traced by no one.
    let start = Instant::now();
    while status_field(t.pid(), "TracerPid:") != "0" {
        assert!(start.elapsed() < Duration::from_secs(120), "still traced");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_released(t.pid());
}

#[test]
fn a_process_that_exits_while_its_stacks_are_taken() {
    if skip_root_tests() {
        return;
    }
    let dir = scratch("stacks-exit");
    // Threads that start and end all the time, then the process exits: stacks taken over and
    // over meanwhile meet threads and a process that are gone.
    let src = dir.join("churn.c");
    std::fs::write(
        &src,
        "#include <pthread.h>\n#include <unistd.h>\n\
         static void *f(void *a) { usleep(200); return a; }\n\
         int main(void) { for (int i = 0; i < 3000; i++) { pthread_t t[4];\n\
         for (int k = 0; k < 4; k++) pthread_create(&t[k], 0, f, 0);\n\
         for (int k = 0; k < 4; k++) pthread_join(t[k], 0); } return 0; }\n",
    )
    .unwrap();
    let bin = dir.join("churn");
    cc(&[
        "-O1",
        "-o",
        bin.to_str().unwrap(),
        src.to_str().unwrap(),
        "-lpthread",
    ]);
    let mut churn = Command::new(&bin).spawn().unwrap();
    let pid = churn.id().to_string();
    let o = Command::new(bthost_bin())
        .args(["stacks", &pid, "--repeat", "400", "--json"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("pause per process median"), "{err}");
    let start = Instant::now();
    while !std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_default()
        .contains(") Z")
    {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "it never exited"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // It exits; unreaped (a zombie) and then gone: said as exited, not as a refusal.
    let exited = |when: &str| {
        let o = Command::new(bthost_bin())
            .args(["stacks", &pid, "--json"])
            .output()
            .unwrap();
        assert!(o.status.success());
        let s: bthost::stacks::ProcStacks =
            serde_json::from_slice(o.stdout.split(|&b| b == b'\n').next().unwrap()).unwrap();
        assert_eq!(s.error.as_deref(), Some("it exited"), "{when}");
        assert!(
            !String::from_utf8_lossy(&o.stderr).contains("refused"),
            "{when}"
        );
    };
    exited("zombie");
    churn.wait().unwrap();
    exited("reaped");
}

#[test]
fn without_ptrace_rights_one_line_and_the_process_untouched() {
    if skip_root_tests() {
        return;
    }
    let a = Target::sleep();
    let b = Target::sleep();
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(bthost_bin())
        .args(["stacks", &a.pid().to_string(), &b.pid().to_string()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("no stacks")).collect();
    assert_eq!(lines.len(), 1, "one line for both:\n{err}");
    assert!(
        lines[0].contains(&format!("ptrace of pid {} refused", a.pid()))
            && lines[0].contains("CAP_SYS_PTRACE"),
        "{err}"
    );
    assert_released(a.pid());
    assert_released(b.pid());
}
