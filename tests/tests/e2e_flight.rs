//! The flight recorder on a real hang (stand-in RCCL ranks, real bpftrace 0.17 and 0.23):
//! `record --flight-recorder N --on-hang 2` writes nothing while the job runs, dumps the rings
//! when the ranks have waited 2 s with no call completing, while they still hang, and the log
//! holds at most N records per thread (a later dump writes only what is new). `convert` shows
//! the hung collective in flight on the waiting ranks. `bthost dump` asks for a dump too.
//!
//! On the GPU's model (tests/workloads/torch_loop.c: collectives only enqueue, a thread blocks
//! in hipMemcpy, a watchdog polls hipEventQuery every 100 ms, so records complete all the
//! time), the dump comes because no collective has been proven done for 2 s while one is
//! pending (crate::record::hang's first rule).

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bthost_tests::*;

// Fewer than each rank writes (about 14), so the ring wraps.
const N: usize = 8;

/// A recorder in its own session, so that it and the job it started can be killed together.
struct Recorder(Child);

impl Recorder {
    fn start(bin: &Path, standins: &Path, log: &Path, extra: &[&str], job: &[&str]) -> Recorder {
        let lib = |p: &str, f: &str| format!("{p}={}", standins.join(f).display());
        let mut cmd = Command::new("setsid");
        cmd.arg(bthost_bin())
            .args(["record", "--packs", "rccl,hip", "--bpftrace-bin"])
            .arg(bin)
            .args(["--lib", &lib("rccl", "librccl.so.1")])
            .args(["--lib", &lib("hip", "libamdhip64.so.5")])
            .args(extra)
            .arg("-o")
            .arg(log)
            .arg("--")
            .args(job)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log.with_extension("stderr")).unwrap());
        Recorder(cmd.spawn().expect("start bthost record"))
    }

    fn stderr(log: &Path) -> String {
        std::fs::read_to_string(log.with_extension("stderr")).unwrap_or_default()
    }

    /// Stops tracing as Ctrl-C would, waits for record to end, then kills what is left of the
    /// job (record leaves a command that outlives the stop running).
    fn stop(mut self) {
        // SAFETY: kill(2) of our own child.
        unsafe { kill(self.0.id() as i32, 2) };
        let status = self.0.wait().unwrap();
        assert!(
            status.success() || status.code() == Some(3),
            "record: {status}"
        );
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        // The session: record, the job and its ranks (bpftrace is in a group of its own, and
        // stops when record does).
        unsafe { kill(-(self.0.id() as i32), 9) };
        let _ = self.0.wait();
    }
}

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < Duration::from_secs(120), "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The ranks of the job, alive: the rank processes of `rccl_ranks` (the parent's children).
fn ranks_alive(stdout_pids: &[u32]) -> bool {
    stdout_pids
        .iter()
        .all(|p| Path::new(&format!("/proc/{p}")).exists())
}

fn pids_of(comm: &str) -> Vec<u32> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm) {
            v.push(pid);
        }
    }
    v
}

/// Stored ring records per thread in the log.
fn ring_records(log: &str) -> HashMap<u32, usize> {
    let mut per = HashMap::new();
    for l in log.lines().filter(|l| l.starts_with("@f[")) {
        let tid: u32 = l[3..].split(',').next().unwrap().parse().unwrap();
        *per.entry(tid).or_default() += 1;
    }
    per
}

#[test]
fn a_hang_dumps_the_flight_recorder_while_the_ranks_still_wait() {
    if skip_root_tests() {
        return;
    }
    for (bin, version) in &available_bpftraces() {
        let dir = scratch(&format!("flight-{version}"));
        let standins = build_standins(&dir.join("standins"));
        let log = dir.join("run.log");
        // 4 ranks, 3 collectives each; rank 2 skips #2, the others enqueue it and wait in the
        // hipStreamSynchronize after it (the stand-in gives up after 100 s, far past the test).
        let job = format!(
            "{} -n 4 -k 3 -s 2:1 -t 100000",
            standins.join("rccl_ranks").display()
        );
        let _serial = system_wide_lock();
        let rec = Recorder::start(
            bin,
            &standins,
            &log,
            &["--flight-recorder", &N.to_string(), "--on-hang", "2"],
            &job.split(' ').collect::<Vec<_>>(),
        );
        wait_until(&format!("{version}: no on-hang dump"), || {
            std::fs::read_to_string(&log).is_ok_and(|t| t.contains("\n#Z 1\n"))
        });
        // The dump came while the ranks still waited: all four processes are alive.
        let ranks = pids_of("rccl_ranks");
        assert!(ranks.len() >= 4, "{version}: {ranks:?}");
        assert!(ranks_alive(&ranks), "{version}");
        let at_dump = std::fs::read_to_string(&log).unwrap();
        // Nothing but thread names before the dump: the records stayed in the kernel.
        let before = &at_dump[..at_dump.find("\n#E ").unwrap()];
        assert!(
            !before.contains("\n@f["),
            "{version}: records before the dump"
        );
        // A dump on demand, then the stop's own: neither repeats what the first wrote.
        let o = bthost(&["dump", "--pid", &rec.0.id().to_string()]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        wait_until(&format!("{version}: no dump on demand"), || {
            std::fs::read_to_string(&log).is_ok_and(|t| t.contains("\n#Z 2\n"))
        });
        rec.stop();
        // The ranks block in a sync after their collective: nothing completes (the old
        // rule), and the collective is pending (the new one); either may say so first.
        let err = Recorder::stderr(&log);
        assert!(
            err.contains("calls in flight for 2.0 s with none completing")
                || err.contains("no group operation completed for 2.0 s while pid "),
            "{version}: {err}"
        );
        let text = std::fs::read_to_string(&log).unwrap();
        let per_thread = ring_records(&text);
        for (tid, n) in &per_thread {
            assert!(
                *n <= N,
                "{version}: thread {tid} has {n} records in the log"
            );
        }
        assert!(
            per_thread.values().any(|&n| n == N),
            "{version}: {per_thread:?}"
        );

        let out = dir.join("out");
        let summary = bthost_convert(&log, &out, &[]);
        assert!(!summary.contains("LOST"), "{version}: {summary}");
        // The ranks wrote more than N records each: the ring dropped the oldest, as it should.
        assert!(
            summary.contains("older records overwritten by the flight recorder"),
            "{version}: {summary}"
        );
        let txt = std::fs::read_to_string(out.join("log.txt")).unwrap();
        let in_flight: Vec<&str> = txt
            .lines()
            .take_while(|l| l.starts_with('#'))
            .filter(|l| l.starts_with("#   pid ") && l.contains("UNFINISHED"))
            .collect();
        // The collective only enqueued (it returned); the waiting ranks block in the sync
        // after it.
        let stuck: Vec<&&str> = in_flight
            .iter()
            .filter(|l| l.contains("hipStreamSynchronize("))
            .collect();
        assert_eq!(stuck.len(), 3, "{version}: {}", in_flight.join("\n"));
        let enqueued = txt
            .lines()
            .filter(|l| {
                l.contains(" ncclAllReduce(")
                    && l.contains(", seq=2,")
                    && l.contains("= ncclSuccess(0)")
            })
            .count();
        assert_eq!(enqueued, 3, "{version}");
    }
}

/// What a log's text says, read raw: each record id's function (`#S`), each thread's process
/// (`T`), the ring's records and the calls in flight.
struct RawLog {
    functions: HashMap<u32, String>,
    pid_of: HashMap<u32, u32>,
    /// (tid, function, values after `(seq, head`: time, duration, fields..., ret, padding).
    records: Vec<(u32, String, Vec<u64>)>,
    /// (tid, function of the entry): `@p<n>[tid, id]: (start, ...)` with a start.
    in_flight: Vec<(u32, String)>,
}

fn read_raw(text: &str) -> RawLog {
    let hex = |s: &str| u32::from_str_radix(s, 16).unwrap();
    let mut log = RawLog {
        functions: HashMap::new(),
        pid_of: HashMap::new(),
        records: Vec::new(),
        in_flight: Vec::new(),
    };
    for l in text.lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        match w.as_slice() {
            ["#S", id, _pack, function, ..] => {
                log.functions.insert(hex(id), function.to_string());
            }
            ["T", pid, tid, ..] => {
                log.pid_of.insert(hex(tid), hex(pid));
            }
            _ => {}
        }
        // `@f[tid, slot]: (seq, id << 8 | width, ...)`, `@p3[tid, id]: (start, ...)`.
        let Some((key, value)) = l.split_once("]: ") else {
            continue;
        };
        let Some((map, key)) = key.split_once('[') else {
            continue;
        };
        let key: Vec<u64> = key.split(", ").map(|k| k.parse().unwrap()).collect();
        let value: Vec<u64> = value
            .trim_matches(|c| c == '(' || c == ')')
            .split(", ")
            .map(|v| v.parse().unwrap())
            .collect();
        let name = |id: u64| log.functions.get(&(id as u32)).cloned().unwrap_or_default();
        if map == "@f" {
            let f = name(value[1] >> 8);
            log.records.push((key[0] as u32, f, value[2..].to_vec()));
        } else if map.starts_with("@p") && key.len() == 2 && value[0] != 0 {
            let f = name(key[1]);
            log.in_flight.push((key[0] as u32, f));
        }
    }
    log
}

/// The ranks' pids from torch_loop's `rank r pid P device ...` lines.
fn torch_ranks(stdout: &str) -> HashMap<u32, u32> {
    let mut m = HashMap::new();
    for l in stdout.lines() {
        if let ["rank", r, "pid", p, "device", ..] = l.split_whitespace().collect::<Vec<_>>()[..] {
            m.insert(r.parse().unwrap(), p.parse().unwrap());
        }
    }
    m
}

#[test]
fn a_gpu_hang_with_a_polling_watchdog_dumps_while_the_ranks_wait() {
    if skip_root_tests() {
        return;
    }
    for (bin, version) in &available_bpftraces() {
        let dir = scratch(&format!("flight-gpu-{version}"));
        let standins = build_standins(&dir.join("standins"));
        let torch_loop = standins.join("torch_loop");
        assert!(
            torch_loop.is_file(),
            "tests/standins/build.sh built no torch_loop"
        );
        let log = dir.join("run.log");
        let job_out = dir.join("job.stdout");
        // 4 ranks, 5 steps; rank 2 stalls in its own code before step 3's AllReduce, forever:
        // the others enqueue theirs (it returns), block in step 3's hipMemcpy, and their
        // watchdogs poll hipEventQuery every 100 ms (not ready: 600). The stand-in's device
        // wait gives up after 100 s, far past the test.
        let job = format!(
            "exec {} -n 4 -k 5 -s 2:3 -P 100 -t 100000 > {}",
            torch_loop.display(),
            job_out.display()
        );
        let _serial = system_wide_lock();
        let rec = Recorder::start(
            bin,
            &standins,
            &log,
            &["--flight-recorder", "1024", "--on-hang", "2"],
            &["sh", "-c", &job],
        );
        wait_until(&format!("{version}: no on-hang dump"), || {
            std::fs::read_to_string(&log).is_ok_and(|t| t.contains("\n#Z 1\n"))
        });
        // The dump came while the ranks hung, before any Ctrl-C: the ranks are alive and the
        // waiting ones never finished step 3.
        let at_dump = std::fs::read_to_string(&log).unwrap();
        let out = std::fs::read_to_string(&job_out).unwrap();
        let ranks = torch_ranks(&out);
        assert_eq!(ranks.len(), 4, "{version}: {out}");
        let alive: Vec<u32> = ranks.values().copied().collect();
        assert!(ranks_alive(&alive), "{version}: {out}");
        assert!(
            out.contains("rank 2 stalls in load_batch before step 3"),
            "{out}"
        );
        for r in [0, 1, 3] {
            assert!(
                out.contains(&format!("rank {r} step 2 ok")),
                "{version}: {out}"
            );
            assert!(
                !out.contains(&format!("rank {r} step 3 ok")),
                "{version}: {out}"
            );
        }
        // record said why: a waiting rank's AllReduce is pending.
        let err = Recorder::stderr(&log);
        let said = err
            .lines()
            .find(|l| l.contains("dumping the flight recorder"))
            .unwrap_or_else(|| panic!("{version}: {err}"));
        let waiting: Vec<u32> = [0, 1, 3].iter().map(|r| ranks[r]).collect();
        assert!(
            waiting.iter().any(|p| said
                == format!(
                    "bthost: no group operation completed for 2.0 s while pid {p}'s ncclAllReduce is pending: dumping the flight recorder"
                )),
            "{version}: {said} (waiting ranks {waiting:?})"
        );
        // Not the old rule: the watchdogs' polls completed records all along.
        assert!(!err.contains("with none completing"), "{version}: {err}");

        // The dump holds, for each waiting rank: its three AllReduce calls (enqueued, 0), the
        // watchdog's polls answering not-ready after the last one, and the hipMemcpy it waits in.
        let end = at_dump.find("\n#Z 1\n").unwrap();
        let raw = read_raw(&at_dump[..end]);
        for (&r, &pid) in ranks.iter().filter(|(r, _)| **r != 2) {
            let of = |f: &str| {
                raw.records
                    .iter()
                    .filter(|(tid, g, _)| g == f && raw.pid_of.get(tid) == Some(&pid))
                    .collect::<Vec<_>>()
            };
            let reduces = of("ncclAllReduce");
            assert_eq!(reduces.len(), 3, "{version}: rank {r}: {reduces:?}");
            // (time, duration, sendbuff, recvbuff, count, datatype, op, comm, stream, caller,
            // ret)
            assert!(
                reduces.iter().all(|(_, _, v)| v[10] == 0),
                "{version}: {reduces:?}"
            );
            let last = reduces.iter().map(|(_, _, v)| v[0]).max().unwrap();
            // (time, duration, event, ret): not ready (600) after the last AllReduce, polled
            // for the 2 s the watch waited (about 20 polls; a loaded machine polls fewer).
            let polls = of("hipEventQuery")
                .into_iter()
                .filter(|(_, _, v)| v[0] > last && v[3] == 600)
                .count();
            assert!(polls >= 5, "{version}: rank {r}: {polls} polls");
            let waits = raw
                .in_flight
                .iter()
                .filter(|(tid, f)| f == "hipMemcpy" && raw.pid_of.get(tid) == Some(&pid))
                .count();
            assert_eq!(waits, 1, "{version}: rank {r}: {:?}", raw.in_flight);
        }
        // The straggler enqueued two and waits in nothing of the libraries.
        let straggler = ranks[&2];
        let reduces = raw
            .records
            .iter()
            .filter(|(tid, g, _)| g == "ncclAllReduce" && raw.pid_of.get(tid) == Some(&straggler))
            .count();
        assert_eq!(reduces, 2, "{version}");
        rec.stop();
    }
}
