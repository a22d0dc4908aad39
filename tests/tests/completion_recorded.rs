//! The completion inference on recorded lines: tests/fixtures/logs/gpu-stall-4ranks.log was
//! recorded by `bthost record --packs hip,rccl` (bpftrace 0.17, records in maps) on the
//! asynchronous stand-ins, running `torch_loop -n 4 -k 10 -s 2:6` (scripts/demo): each step a
//! kernel, an event the comm stream waits for, an AllReduce on the comm stream, an event the
//! compute stream waits for, and a synchronous copy; rank 2 stalls before its 6th AllReduce.
//! Read through the same reading pass as `report` and `convert` (crate::calls), with the hip
//! and rccl packs' `[completion]` rules: steps 1-5 are proven done on every rank by the copy
//! that returned (through two event waits and two streams), #6 is pending on ranks 0, 1, 3
//! behind a copy that never returned, and their watchdogs' polls answered not ready.

use bthost::calls::completion::{Completion, Seen};
use bthost::calls::{read_calls, Call, CallSink, Strings};
use bthost::registry::{Registry, SearchPaths};
use bthost::report::gather::{Gather, State};

fn fixture() -> std::path::PathBuf {
    bthost_tests::root().join("tests/fixtures/logs/gpu-stall-4ranks.log")
}

fn registry() -> Registry {
    Registry::discover(&SearchPaths::standard(&[]), true)
}

#[test]
fn the_report_gathers_each_ranks_operations_pending_or_completed() {
    let reg = registry();
    let g = Gather::new(
        bthost::report::specs(&reg),
        bthost::report::completion_specs(&reg),
    );
    let (read, g) = read_calls(&reg, &fixture(), 0, g, 2).expect("the fixture reads");
    assert!(read.diag.is_empty(), "{}", read.diag);
    assert_eq!(g.groups.len(), 1);
    let grp = g.groups.values().next().unwrap();
    assert_eq!(grp.size, Some(4));
    for (&rank, m) in &grp.members {
        if rank == 2 {
            // It never enqueued #6; its #5 was proven done by its copy.
            assert_eq!(m.last.order, 5);
            assert!(
                matches!(&m.last.state, State::Done { by, .. } if by == "hipMemcpy"),
                "{:?}",
                m.last.state
            );
            assert!(m.pending.is_empty(), "{:?}", m.pending);
            continue;
        }
        assert_eq!(m.last.order, 6, "rank {rank}");
        assert_eq!(m.last.state, State::Pending, "rank {rank}");
        assert_eq!(
            m.pending.keys().copied().collect::<Vec<_>>(),
            vec![6],
            "rank {rank}: only #6 is pending"
        );
    }
    // What normal was: the earlier collectives' enqueue-to-proof times.
    assert!(grp.slowest_done.is_some_and(|s| s < 1_000_000_000));
    // The waiting ranks' main threads in the copy, their watchdogs polling.
    let waiting: Vec<_> = grp
        .members
        .iter()
        .filter(|(r, _)| **r != 2)
        .map(|(_, m)| m.proc)
        .collect();
    for p in waiting {
        let pr = &g.procs[&p];
        assert!(
            pr.open.iter().any(|o| o.desc.starts_with("hipMemcpy(")),
            "{:?}",
            pr.open
        );
        assert!(
            pr.polling
                .iter()
                .any(|q| q.desc.starts_with("hipEventQuery(") && q.answers >= 10),
            "{:?}",
            pr.polling
        );
    }
}

/// Every call of the log through the completion model alone: each AllReduce enqueued is
/// proven done exactly once, except the three pending at the end, and by which call.
#[test]
fn each_allreduce_is_proven_once_by_the_copy_behind_it() {
    struct Count {
        c: Completion,
        allreduce: Option<u32>,
        enqueued: Vec<u64>,
        done: Vec<(u64, String)>,
        names: Vec<(u32, String)>,
    }
    impl CallSink for Count {
        fn start_log(&mut self, log: u16, strings: &mut Strings, packs: Option<&[String]>) {
            self.c.start_log(log, strings, packs);
            self.allreduce = Some(strings.id("ncclAllReduce"));
            for n in ["hipMemcpy", "hipStreamSynchronize", "hipEventQuery"] {
                self.names.push((strings.id(n), n.to_string()));
            }
        }
        fn see(&mut self, c: &Call, _: &Strings) -> std::io::Result<()> {
            let track = Some(c.name) == self.allreduce;
            if let Seen::Enqueued { token, .. } = self.c.see(c, track) {
                if track {
                    self.enqueued.push(token);
                }
            }
            for d in self.c.take_done() {
                let by = self
                    .names
                    .iter()
                    .find(|n| n.0 == d.by)
                    .map(|n| n.1.clone())
                    .unwrap_or_default();
                self.done.push((d.token, by));
            }
            Ok(())
        }
    }
    let reg = registry();
    let sink = Count {
        c: Completion::new(bthost::report::completion_specs(&reg)),
        allreduce: None,
        enqueued: Vec::new(),
        done: Vec::new(),
        names: Vec::new(),
    };
    let (_, n) = read_calls(&reg, &fixture(), 0, sink, 1).unwrap();
    // Ranks 0, 1, 3: 6 each; rank 2: 5.
    assert_eq!(n.enqueued.len(), 23);
    let mut proven: Vec<u64> = n.done.iter().map(|d| d.0).collect();
    proven.sort_unstable();
    let before = proven.len();
    proven.dedup();
    assert_eq!(proven.len(), before, "each proven once");
    assert_eq!(proven.len(), 20, "all but the three #6");
    // Proven by the step's copy (or a watchdog's query that answered done first).
    assert!(
        n.done
            .iter()
            .all(|d| d.1 == "hipMemcpy" || d.1 == "hipEventQuery"),
        "{:?}",
        n.done
    );
    assert!(n.done.iter().any(|d| d.1 == "hipMemcpy"));
}

/// bpftrace 0.17 keeps a CPU's output in that CPU's buffer until it fills or the poll finds it:
/// a thread's `T` line (printed at its first call) was seen to come seconds after the drains
/// that printed its records, and read at once those records had no process (a CI run lost
/// a rank's collectives so). The same log with every `T` line moved after its records decodes
/// to the same events, with their processes.
#[test]
fn records_read_before_their_threads_line_keep_their_process() {
    let reg = registry();
    let text = std::fs::read_to_string(fixture()).unwrap();
    let (threads, rest): (Vec<&str>, Vec<&str>) = text.lines().partition(|l| l.starts_with("T "));
    assert!(threads.len() >= 4);
    // Just before the last dump's `#E`: after every drain.
    let end = rest.iter().rposition(|l| l.starts_with("#E")).unwrap();
    let mut moved: Vec<&str> = rest[..end].to_vec();
    moved.extend(&threads);
    moved.extend(&rest[end..]);
    let dir = bthost_tests::scratch("late-thread-lines");
    let late = dir.join("late.log");
    std::fs::write(&late, moved.join("\n") + "\n").unwrap();
    let events = |p: &std::path::Path| {
        let mut v = Vec::new();
        let (_, diag, _) = bthost::calls::decode_log(&reg, p, None, |_, evs| {
            v.extend(
                evs.drain(..)
                    .map(|e| (e.pid, e.tid, e.ts, e.name.to_string())),
            );
        })
        .unwrap();
        assert!(diag.is_empty(), "{diag}");
        v.sort();
        v
    };
    let want = events(&fixture());
    assert!(want.iter().all(|e| e.0 != 0));
    let got = events(&late);
    let without = got.iter().filter(|e| e.0 == 0).count();
    assert_eq!(
        without,
        0,
        "{without} of {} events without their process",
        got.len()
    );
    assert!(got == want, "the events differ from the log's as recorded");
}
