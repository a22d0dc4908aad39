//! Generated logs of a multi-node collective job, one per node, as `bthost record` writes them
//! by default (log format 3, records drained from maps; the hip and rccl packs' schema; clock
//! anchors of a host and boot of its own): every rank creates its communicator from one unique
//! id (rank 0 makes it), then runs a training loop of `ncclAllReduce` and
//! `hipStreamSynchronize`, the ranks entering each collective within half a millisecond of each
//! other and leaving it together. Optionally one rank never enters collective `k` (it hangs
//! elsewhere): every other rank then waits in it, and the logs end with those calls in flight,
//! as a cancelled job's do. With `asynchronous`, the job runs as it does on a GPU: each
//! collective only enqueues and returns in microseconds, an event is recorded after it, and a
//! the null stream is made to wait for it (`hipStreamWaitEvent`, PyTorch's `work.wait()`), and
//! a synchronous device-to-host `hipMemcpy` on it (PyTorch's `loss.item()`) waits for it all; at the hang
//! the waiting ranks are blocked in that copy while a watchdog thread polls the event every
//! 100 ms (`hipEventQuery` answering hipErrorNotReady), and the rank that stalled is in no
//! traced call. For `report` and `convert` at the scale of a real job
//! (tests/benches/job_scale.rs) and its test at 1024 ranks (tests/tests/job_scale.rs).

use std::io::Write;
use std::path::{Path, PathBuf};

use bthost::compose::schema::RecordSpec;
use bthost::compose::Built;
use bthost_plugin_api::Phase;

use crate::genlog::hip_rccl_built_as;

/// The job to generate.
#[derive(Clone, Debug)]
pub struct JobSpec {
    pub nodes: usize,
    pub ranks_per_node: usize,
    /// Collectives per rank (the loop's iterations).
    pub collectives: usize,
    /// (rank, k): that rank never enters its collective k (0-based); the job hangs there.
    pub skip: Option<(usize, usize)>,
    /// Collectives enqueue and return; syncs and polls wait (a GPU's way), else they block.
    pub asynchronous: bool,
}

/// The script `bthost record --packs hip,rccl` runs (bpftrace 0.17, records in maps).
pub fn job_built() -> Built {
    hip_rccl_built_as(bthost::compose::emit::Emit::Drained { period_ms: 100 })
}

/// One rank's process on its node.
struct Rank {
    rank: usize,
    pid: u32,
    seq: u64,
    comm: u64,
    stream: u64,
}

/// A stored record waiting for its drain: (exit time, width, line).
type Pending = (u64, usize, String);

const MONO0: u64 = 9_000_000_000_000;
const REAL0: u64 = 1_795_991_686_000_000_000;
/// The drain period (as `record`'s default).
const DRAIN_NS: u64 = 100_000_000;

/// The collectives' call site (their `caller` field): an address no recorded map covers, as a
/// job recorded without its maps has.
const CALLER: u64 = 0x55d0_0000_1234;

impl Rank {
    /// Its AllReduce's values at entry (sendbuff, recvbuff, count, datatype, op, comm, stream,
    /// caller), its buffers at `bufs`.
    fn allreduce_args(&self, bufs: u64) -> [u64; 8] {
        [
            bufs,
            bufs + 0x8_0000,
            1 << 20,
            7,
            0,
            self.comm,
            self.stream,
            CALLER,
        ]
    }
}

/// Writes `dir/n<k>.log` for k in 1..=nodes; returns their paths.
pub fn generate_job(dir: &Path, spec: &JobSpec) -> Vec<PathBuf> {
    let built = job_built();
    let find = |function: &str, phase: Phase| -> RecordSpec {
        built
            .schema
            .records
            .iter()
            .find(|r| r.function == function && r.phase == phase)
            .unwrap_or_else(|| panic!("no {function} {phase:?} record"))
            .clone()
    };
    let get_id = find("ncclGetUniqueId", Phase::Call);
    let init = find("ncclCommInitRank", Phase::Call);
    let allreduce = find("ncclAllReduce", Phase::Call);
    let allreduce_entry = find("ncclAllReduce", Phase::Entry);
    let sync = find("hipStreamSynchronize", Phase::Call);
    let memcpy = find("hipMemcpy", Phase::Call);
    let memcpy_entry = find("hipMemcpy", Phase::Entry);
    let event_record = find("hipEventRecord", Phase::Call);
    let event_query = find("hipEventQuery", Phase::Call);
    let wait_event = find("hipStreamWaitEvent", Phase::Call);
    let unique_id: u64 = 0xa35c_11e0_9d2b_4417;
    let nranks = spec.nodes * spec.ranks_per_node;
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    // Each collective's start on the job's clock (ns after the job's start), the same on every
    // node; and each rank's lag in entering it.
    let starts: Vec<u64> = {
        let mut t = 1_500_000_000;
        (0..spec.collectives)
            .map(|_| {
                t += 2_000_000 + rnd() % 3_000_000;
                t
            })
            .collect()
    };
    let job_end = starts.last().copied().unwrap_or(1_500_000_000) + 2_000_000_000;
    let mut paths = Vec::new();
    for node in 0..spec.nodes {
        let path = dir.join(format!("n{}.log", node + 1));
        let mut w =
            std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&path).unwrap());
        // This host's clock: its own boot, CLOCK_MONOTONIC far from the others', CLOCK_REALTIME
        // a few microseconds off (NTP).
        let mono0 = MONO0 + node as u64 * 731_000_000_123;
        let real0 = REAL0 + rnd() % 20_000;
        let boot = format!("6b1f0c2e-{:04x}-4e1a-9c3d-{:012x}", node, node * 7919);
        let host = format!("n{}", node + 1);
        writeln!(
            w,
            "#C start host={host} boot={boot} mono={mono0} real={real0} err=64"
        )
        .unwrap();
        writeln!(w, "Attaching 87 probes...").unwrap();
        w.write_all(built.schema.to_text().as_bytes()).unwrap();
        // Job time t is mono0 + t on this node.
        let mut ranks: Vec<Rank> = (0..spec.ranks_per_node)
            .map(|local| Rank {
                rank: node * spec.ranks_per_node + local,
                pid: 41_000 + local as u32 * 61,
                seq: 0,
                comm: 0x5600_0000_0000 + local as u64 * 0x1_0000_0000 + 0x4b0,
                stream: 0x5600_0000_0000 + local as u64 * 0x1_0000_0000 + 0x9f0,
            })
            .collect();
        let mut pending: Vec<Pending> = Vec::new();
        let mut in_flight: Vec<String> = Vec::new();
        // The watchdog threads' record counts (tid = pid + 1).
        let mut watch_seq: Vec<u64> = vec![0; ranks.len()];
        let record = |r: &mut Rank, spec: &RecordSpec, exit: u64, dur: u64, vals: &[u64]| {
            r.seq += 1;
            record_as(r.pid, r.seq, spec, exit, dur, vals)
        };
        fn record_as(
            tid: u32,
            seq: u64,
            spec: &RecordSpec,
            exit: u64,
            dur: u64,
            vals: &[u64],
        ) -> Pending {
            let width = 2 + spec.raw_width();
            // `@r<phase>` is written at the drain.
            let mut line = format!("w{width}[{tid}, {seq}]: ({}, {}, {dur}", spec.id, exit);
            for i in 0..spec.raw_width() {
                line.push_str(&format!(", {}", vals.get(i).copied().unwrap_or(0)));
            }
            line.push(')');
            (exit, width, line)
        }
        for r in &mut ranks {
            let t0 = 1_000_000_000 + rnd() % 50_000_000;
            if r.rank == 0 {
                pending.push(record(r, &get_id, mono0 + t0, 47_000, &[unique_id, 0]));
            }
            let init_end = 1_400_000_000 + rnd() % 1_000_000;
            let device = (r.rank % spec.ranks_per_node) as u64;
            let vals = [r.comm, nranks as u64, r.rank as u64, unique_id, device, 0];
            pending.push(record(
                r,
                &init,
                mono0 + init_end,
                init_end - t0 - 100_000,
                &vals,
            ));
        }
        for (k, &start) in starts.iter().enumerate() {
            let skipped = spec.skip.map(|(_, at)| at);
            if spec.asynchronous {
                for (local, r) in ranks.iter_mut().enumerate() {
                    if let Some((who, at)) = spec.skip {
                        if r.rank == who && k >= at {
                            continue;
                        }
                    }
                    let hung = skipped.is_some_and(|at| k >= at);
                    if hung && skipped != Some(k) {
                        continue;
                    }
                    let enter = start + rnd() % 500_000;
                    let bufs = 0x7f00_0000_0000 + (r.rank as u64) * 0x10_0000;
                    // Enqueued: it returns at once (ret 0).
                    let mut args = r.allreduce_args(bufs).to_vec();
                    args.push(0);
                    let queued = enter + 9_000 + rnd() % 3_000;
                    pending.push(record(r, &allreduce, mono0 + queued, queued - enter, &args));
                    let event = r.stream + 0x40;
                    let rec_end = queued + 4_000;
                    pending.push(record(
                        r,
                        &event_record,
                        mono0 + rec_end,
                        2_000,
                        &[event, r.stream, 0],
                    ));
                    // The null stream waits for the event (PyTorch's work.wait()), and the
                    // copy on it waits for everything before.
                    let dep_end = rec_end + 3_000;
                    pending.push(record(
                        r,
                        &wait_event,
                        mono0 + dep_end,
                        1_500,
                        &[0, event, 0, 0],
                    ));
                    let copy_start = dep_end + 1_000;
                    let copy_args = [bufs + 0x9_0000, bufs + 0x8_0000, 4, 2];
                    if hung {
                        // Blocked in the copy, behind the collective that never completes.
                        let mut line = format!(
                            "@p{}[{}, {}]: ({}",
                            memcpy_entry.raw_width(),
                            r.pid,
                            memcpy_entry.id,
                            mono0 + copy_start
                        );
                        for a in copy_args {
                            line.push_str(&format!(", {a}"));
                        }
                        line.push(')');
                        in_flight.push(line);
                        // The watchdog: polls the event every 100 ms, answered not ready.
                        let mut t = copy_start + 50_000_000;
                        while t + 1_000_000_000 < job_end {
                            watch_seq[local] += 1;
                            pending.push(record_as(
                                r.pid + 1,
                                watch_seq[local],
                                &event_query,
                                mono0 + t + 3_000,
                                3_000,
                                &[event, 600],
                            ));
                            t += 100_000_000;
                        }
                        continue;
                    }
                    let leave = start + 600_000 + rnd() % 20_000;
                    let mut vals = copy_args.to_vec();
                    vals.push(0);
                    pending.push(record(r, &memcpy, mono0 + leave, leave - copy_start, &vals));
                }
                continue;
            }
            for r in &mut ranks {
                if let Some((who, at)) = spec.skip {
                    if r.rank == who && k >= at {
                        continue;
                    }
                }
                let enter = start + rnd() % 500_000;
                let bufs = 0x7f00_0000_0000 + (r.rank as u64) * 0x10_0000;
                let args = r.allreduce_args(bufs);
                if skipped.is_some_and(|at| k >= at) {
                    // Waiting for the rank that never came: in flight when the job is cancelled.
                    if skipped == Some(k) {
                        let mut line = format!(
                            "@p{}[{}, {}]: ({}",
                            allreduce_entry.raw_width(),
                            r.pid,
                            allreduce_entry.id,
                            mono0 + enter
                        );
                        for a in args {
                            line.push_str(&format!(", {a}"));
                        }
                        line.push(')');
                        in_flight.push(line);
                    }
                    continue;
                }
                let leave = start + 600_000 + rnd() % 20_000;
                let mut vals = args.to_vec();
                vals.push(0);
                pending.push(record(r, &allreduce, mono0 + leave, leave - enter, &vals));
                let sync_end = leave + 150_000 + rnd() % 100_000;
                pending.push(record(
                    r,
                    &sync,
                    mono0 + sync_end,
                    sync_end - leave - 2_000,
                    &[r.stream, 0],
                ));
            }
        }
        // The drains, as `record` prints them: each drain's records grouped by map (one per
        // width), its mark after them; the phase alternates.
        pending.sort_by_key(|p| p.0);
        let mut next = 0;
        let mut drain_at = mono0 + DRAIN_NS;
        let mut phase = 1;
        let mut threads_said = false;
        while drain_at < mono0 + job_end {
            let upto = pending[next..].partition_point(|p| p.0 < drain_at) + next;
            let mut batch: Vec<&Pending> = pending[next..upto].iter().collect();
            batch.sort_by_key(|p| p.1);
            if !batch.is_empty() && !threads_said {
                for r in &ranks {
                    writeln!(w, "T {:x} {:x} train.py", r.pid, r.pid).unwrap();
                    if spec.asynchronous {
                        writeln!(w, "T {:x} {:x} pt_nccl_watchdg", r.pid, r.pid + 1).unwrap();
                    }
                }
                threads_said = true;
            }
            for p in &batch {
                writeln!(w, "@r{phase}{}", p.2).unwrap();
            }
            writeln!(w, "#D {drain_at:x}").unwrap();
            next = upto;
            phase ^= 1;
            drain_at += DRAIN_NS;
        }
        assert_eq!(next, pending.len(), "every record drained");
        writeln!(w, "#E {:x} in-flight calls", drain_at - 1_000).unwrap();
        writeln!(w, "#D {drain_at:x}").unwrap();
        for l in &in_flight {
            writeln!(w, "{l}").unwrap();
        }
        for (local, r) in ranks.iter().enumerate() {
            writeln!(w, "@q[{}]: {}", r.pid, r.seq).unwrap();
            if watch_seq[local] > 0 {
                writeln!(w, "@q[{}]: {}", r.pid + 1, watch_seq[local]).unwrap();
            }
        }
        writeln!(w, "#Z ffffffff").unwrap();
        let end = drain_at + 5_000_000;
        writeln!(
            w,
            "#C end host={host} boot={boot} mono={} real={} err=71",
            mono0 + end,
            real0 + end + rnd() % 3_000
        )
        .unwrap();
        w.flush().unwrap();
        paths.push(path);
    }
    paths
}
