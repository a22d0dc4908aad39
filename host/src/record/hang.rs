//! The flight recorder's hang watch (`record --on-hang SECONDS`): the ring is dumped when the
//! job has made no progress for that long, as PyTorch's flight recorder dumps on its watchdog's
//! timeout, but from outside the job. Two rules, either of which fires:
//!
//! - **a group operation pending** (the GPU's model, crate::compose::progress): some process
//!   enqueued a group operation (a collective, a send or receive) that no later observation
//!   (a sync, a query that answered done) has proven done, it has been pending that long, and
//!   no group operation of any process has been proven done for that long. A collective only
//!   enqueues and returns: the hang shows as a thread blocked in a sync and a watchdog polling
//!   an event every 100 ms, whose polls complete records all the time.
//! - **nothing completing** (a library whose calls block, as synchronous ones do): calls have
//!   been in flight that long and no record has completed meanwhile.
//!
//! record asks the script for its state every so often (a status span: the calls in flight,
//! each thread's record count, the progress summary) and feeds it here. It dumps once per
//! hang: after a dump, each rule waits for its own kind of progress (a group operation proven
//! done; a record completing) before it can fire again.

use std::collections::HashMap;

use super::lines::Status;

pub struct HangWatch {
    after_ns: u64,
    /// When the record counts last changed (bpftrace's clock), and to what.
    quiet_since: Option<u64>,
    counts: HashMap<u32, u64>,
    /// The first status's time: progress is counted from there when none was seen.
    first: Option<u64>,
    /// The last group operation proven done, as the last status said.
    progress: Option<u64>,
    /// Each rule has fired and waits for its kind of progress.
    fired_quiet: bool,
    fired_pending: bool,
}

/// Why the watch fired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Calls in flight, none completing.
    Quiet,
    /// No group operation proven done while `pid`'s, of record id `id`, is pending.
    Pending { pid: u32, id: u32 },
}

/// How often to ask for the state: a quarter of the wait, within 0.1 to 1 s.
pub fn poll_period(after: std::time::Duration) -> std::time::Duration {
    (after / 4).clamp(
        std::time::Duration::from_millis(100),
        std::time::Duration::from_secs(1),
    )
}

impl HangWatch {
    pub fn new(after: std::time::Duration) -> HangWatch {
        HangWatch {
            after_ns: after.as_nanos() as u64,
            quiet_since: None,
            counts: HashMap::new(),
            first: None,
            progress: None,
            fired_quiet: false,
            fired_pending: false,
        }
    }

    /// Takes a status; why the ring must be dumped now (empty: it need not).
    pub fn feed(&mut self, s: &Status) -> Vec<Reason> {
        if self.quiet_since.is_none() || s.seqs != self.counts {
            self.quiet_since = Some(s.now);
            self.counts = s.seqs.clone();
            self.fired_quiet = false;
        }
        let first = *self.first.get_or_insert(s.now);
        let progress = s.progress.unwrap_or(0);
        if self.progress != Some(progress) {
            self.progress = Some(progress);
            self.fired_pending = false;
        }
        let mut why = Vec::new();
        if let Some(oldest) = s.oldest_open {
            let quiet = s.now.saturating_sub(self.quiet_since.unwrap_or(s.now));
            let open = s.now.saturating_sub(oldest);
            if quiet >= self.after_ns && open >= self.after_ns {
                why.push(Reason::Quiet);
            }
        }
        // The oldest pending group operation: enqueued after what its process had proven.
        let pending = s
            .enqueued
            .iter()
            .filter(|(pid, t)| **t > s.proven.get(pid).copied().unwrap_or(0))
            .min_by_key(|(pid, t)| (**t, **pid));
        if let Some((&pid, &t)) = pending {
            let id = s.enqueued_call.get(&pid).copied().unwrap_or(0);
            let since = progress.max(first);
            if s.now.saturating_sub(t) >= self.after_ns
                && s.now.saturating_sub(since) >= self.after_ns
            {
                why.push(Reason::Pending { pid, id });
            }
        }
        // Once per hang: a dump for either rule stands for both, until each sees progress.
        if why.is_empty() || (self.fired_quiet && self.fired_pending) {
            return Vec::new();
        }
        let fresh = why.iter().any(|r| match r {
            Reason::Quiet => !self.fired_quiet,
            Reason::Pending { .. } => !self.fired_pending,
        });
        if !fresh {
            return Vec::new();
        }
        self.fired_quiet = true;
        self.fired_pending = true;
        why
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const S: u64 = 1_000_000_000;
    const MS: u64 = 1_000_000;

    fn status(now: u64, oldest: Option<u64>, counts: &[(u32, u64)]) -> Status {
        Status {
            now,
            oldest_open: oldest,
            seqs: counts.iter().copied().collect(),
            ..Default::default()
        }
    }

    /// A status with the progress summary: (pid, enqueued at, proven to), last progress.
    fn summary(mut s: Status, procs: &[(u32, u64, u64)], progress: u64) -> Status {
        for &(pid, q, d) in procs {
            s.enqueued.insert(pid, q);
            s.enqueued_call.insert(pid, 7);
            s.proven.insert(pid, d);
        }
        s.progress = Some(progress);
        s
    }

    #[test]
    fn dumps_once_when_calls_hang_and_nothing_completes() {
        let mut w = HangWatch::new(Duration::from_secs(2));
        assert!(w.feed(&status(10 * S, Some(9 * S), &[(1, 5)])).is_empty());
        // Still completing records: no dump, however old the open call.
        assert!(w.feed(&status(11 * S, Some(S), &[(1, 6)])).is_empty());
        assert!(w.feed(&status(12 * S, Some(S), &[(1, 6)])).is_empty());
        // Quiet for 2 s with a call open for longer: dump, once.
        assert_eq!(
            w.feed(&status(13 * S, Some(S), &[(1, 6)])),
            vec![Reason::Quiet]
        );
        assert!(w.feed(&status(20 * S, Some(S), &[(1, 6)])).is_empty());
        // Progress re-arms it.
        assert!(w.feed(&status(21 * S, Some(20 * S), &[(1, 7)])).is_empty());
        assert_eq!(
            w.feed(&status(24 * S, Some(21 * S), &[(1, 7)])),
            vec![Reason::Quiet]
        );
    }

    #[test]
    fn an_idle_job_is_not_a_hang() {
        let mut w = HangWatch::new(Duration::from_secs(2));
        assert!(w.feed(&status(10 * S, None, &[(1, 5)])).is_empty());
        assert!(w.feed(&status(20 * S, None, &[(1, 5)])).is_empty());
        // A call open for 1 s after 10 s of quiet: not yet.
        assert!(w.feed(&status(21 * S, Some(20 * S), &[(1, 5)])).is_empty());
        assert_eq!(
            w.feed(&status(22 * S, Some(20 * S), &[(1, 5)])),
            vec![Reason::Quiet]
        );
    }

    /// The GPU's hang: pid 10's collective was enqueued at 5 s and never proven done; its
    /// watchdog polls an event every 100 ms (records complete all the time), a thread waits
    /// in a sync. Pid 11 (the straggler) proved its last collective done and enqueues no more.
    #[test]
    fn a_pending_group_operation_fires_while_a_watchdog_polls() {
        let mut w = HangWatch::new(Duration::from_secs(2));
        let mut polls = 0;
        let mut fired = Vec::new();
        for t in (0..100).map(|i| 4 * S + i * 100 * MS) {
            polls += 1;
            let s = summary(
                status(t, Some(5 * S), &[(100, polls), (110, polls)]),
                &[(10, 5 * S, 4 * S), (11, 4 * S, 4 * S + 500 * MS)],
                4 * S + 500 * MS,
            );
            let why = w.feed(&s);
            if !why.is_empty() {
                fired.push((t, why));
            }
        }
        // At 7 s: pending for 2 s, and no progress since 4.5 s; once.
        assert_eq!(
            fired,
            vec![(7 * S, vec![Reason::Pending { pid: 10, id: 7 }])]
        );
    }

    #[test]
    fn a_healthy_job_whose_syncs_prove_each_collective_never_fires() {
        let mut w = HangWatch::new(Duration::from_secs(2));
        for i in 0..200u64 {
            let t = 10 * S + i * 100 * MS;
            // A collective every 300 ms, proven done 200 ms later (a sync that returned);
            // records complete all the time.
            let step = i / 3;
            let q = 10 * S + step * 300 * MS;
            let (d, prog) = if i % 3 == 2 {
                (q + 10 * MS, t)
            } else {
                (q.saturating_sub(290 * MS), q.saturating_sub(100 * MS))
            };
            let s = summary(status(t, Some(t), &[(1, i)]), &[(10, q, d)], prog);
            assert!(w.feed(&s).is_empty(), "at {t}");
        }
    }

    #[test]
    fn an_idle_job_with_every_collective_proven_never_fires() {
        let mut w = HangWatch::new(Duration::from_secs(2));
        for i in 0..100u64 {
            let t = 10 * S + i * 500 * MS;
            // The last collective at 9 s, proven at 9.5 s; nothing since; a watchdog polls.
            let s = summary(
                status(t, None, &[(1, i)]),
                &[(10, 9 * S, 9 * S + 500 * MS)],
                9 * S,
            );
            assert!(w.feed(&s).is_empty(), "at {t}");
        }
    }

    #[test]
    fn a_collective_pending_long_before_tracing_counts_from_the_first_status() {
        let mut w = HangWatch::new(Duration::from_secs(2));
        let at = |t| summary(status(t, None, &[(1, t)]), &[(10, S, 0)], 0);
        assert!(w.feed(&at(100 * S)).is_empty());
        assert!(w.feed(&at(101 * S)).is_empty());
        assert_eq!(
            w.feed(&at(102 * S)),
            vec![Reason::Pending { pid: 10, id: 7 }]
        );
    }

    #[test]
    fn the_pending_rule_fires_once_per_hang_and_is_rearmed_by_progress() {
        let mut w = HangWatch::new(Duration::from_secs(2));
        let at = |t, q, d, prog, n| summary(status(t, None, &[(1, n)]), &[(10, q, d)], prog);
        assert!(w.feed(&at(10 * S, 9 * S, 8 * S, 8 * S, 1)).is_empty());
        // Pending for 2 s, but watched for only 1 s (progress counts from the first status).
        assert!(w.feed(&at(11 * S, 9 * S, 8 * S, 8 * S, 2)).is_empty());
        assert_eq!(
            w.feed(&at(12 * S, 9 * S, 8 * S, 8 * S, 3)),
            vec![Reason::Pending { pid: 10, id: 7 }]
        );
        // Still hung, records completing (the watchdog): no second dump.
        for i in 0..20 {
            assert!(w
                .feed(&at(13 * S + i * S, 9 * S, 8 * S, 8 * S, 4 + i))
                .is_empty());
        }
        // It completes at 40 s (progress), the next collective hangs: a dump 2 s later.
        assert!(w
            .feed(&at(40 * S, 39 * S, 39 * S + MS, 40 * S, 30))
            .is_empty());
        assert!(w
            .feed(&at(41 * S, 41 * S, 39 * S + MS, 40 * S, 31))
            .is_empty());
        assert!(w
            .feed(&at(42 * S, 41 * S, 39 * S + MS, 40 * S, 32))
            .is_empty());
        assert_eq!(
            w.feed(&at(43 * S, 41 * S, 39 * S + MS, 40 * S, 33)),
            vec![Reason::Pending { pid: 10, id: 7 }]
        );
    }

    /// A library whose collective blocks in the call, with the summary there but nothing
    /// enqueued: the old rule alone; and one dump when both rules hold.
    #[test]
    fn the_synchronous_case_still_fires_and_both_rules_dump_once() {
        let mut w = HangWatch::new(Duration::from_secs(2));
        let s = |t| summary(status(t, Some(10 * S), &[(1, 5)]), &[(10, 0, 0)], 0);
        assert!(w.feed(&s(10 * S)).is_empty());
        assert_eq!(w.feed(&s(12 * S)), vec![Reason::Quiet]);
        assert!(w.feed(&s(13 * S)).is_empty());

        let mut w = HangWatch::new(Duration::from_secs(2));
        let s = |t, n| {
            summary(
                status(t, Some(10 * S), &[(1, n)]),
                &[(10, 10 * S, 9 * S)],
                9 * S,
            )
        };
        assert!(w.feed(&s(10 * S, 5)).is_empty());
        // Pending first (records still completed until 11 s)...
        assert!(w.feed(&s(11 * S, 6)).is_empty());
        assert_eq!(
            w.feed(&s(12 * S, 6)),
            vec![Reason::Pending { pid: 10, id: 7 }]
        );
        // ... then quiet too: the same hang, no second dump.
        assert!(w.feed(&s(13 * S, 6)).is_empty());
        assert!(w.feed(&s(14 * S, 6)).is_empty());
        // Both at once: one dump, both reasons.
        let mut w = HangWatch::new(Duration::from_secs(2));
        assert!(w.feed(&s(10 * S, 5)).is_empty());
        assert_eq!(
            w.feed(&s(12 * S, 5)),
            vec![Reason::Quiet, Reason::Pending { pid: 10, id: 7 }]
        );
    }

    #[test]
    fn polls_a_quarter_of_the_wait() {
        assert_eq!(
            poll_period(Duration::from_secs(2)),
            Duration::from_millis(500)
        );
        assert_eq!(poll_period(Duration::from_secs(60)), Duration::from_secs(1));
        assert_eq!(
            poll_period(Duration::from_millis(100)),
            Duration::from_millis(100)
        );
    }
}
