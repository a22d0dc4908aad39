//! The flight recorder's hang watch (`record --on-hang SECONDS`): the ring is dumped when calls
//! have been in flight for that long and no record has completed meanwhile, as PyTorch's
//! flight recorder dumps on its watchdog's timeout, but from outside the job.
//!
//! record asks the script for its state every so often (a status span: the calls in flight,
//! each thread's record count) and feeds it here. It dumps once per hang: after a dump, it
//! waits for a record to complete before it can dump again.

use std::collections::HashMap;

use super::lines::Status;

pub struct HangWatch {
    after_ns: u64,
    /// When the record counts last changed (bpftrace's clock), and to what.
    quiet_since: Option<u64>,
    counts: HashMap<u32, u64>,
    fired: bool,
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
            fired: false,
        }
    }

    /// Takes a status; whether the ring must be dumped now.
    pub fn feed(&mut self, s: &Status) -> bool {
        if self.quiet_since.is_none() || s.seqs != self.counts {
            self.quiet_since = Some(s.now);
            self.counts = s.seqs.clone();
            self.fired = false;
        }
        let Some(oldest) = s.oldest_open else {
            return false;
        };
        let quiet = s.now.saturating_sub(self.quiet_since.unwrap_or(s.now));
        let open = s.now.saturating_sub(oldest);
        if quiet >= self.after_ns && open >= self.after_ns && !self.fired {
            self.fired = true;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const S: u64 = 1_000_000_000;

    fn status(now: u64, oldest: Option<u64>, counts: &[(u32, u64)]) -> Status {
        Status {
            now,
            oldest_open: oldest,
            seqs: counts.iter().copied().collect(),
        }
    }

    #[test]
    fn dumps_once_when_calls_hang_and_nothing_completes() {
        let mut w = HangWatch::new(Duration::from_secs(2));
        assert!(!w.feed(&status(10 * S, Some(9 * S), &[(1, 5)])));
        // Still completing records: no dump, however old the open call.
        assert!(!w.feed(&status(11 * S, Some(S), &[(1, 6)])));
        assert!(!w.feed(&status(12 * S, Some(S), &[(1, 6)])));
        // Quiet for 2 s with a call open for longer: dump, once.
        assert!(w.feed(&status(13 * S, Some(S), &[(1, 6)])));
        assert!(!w.feed(&status(20 * S, Some(S), &[(1, 6)])));
        // Progress re-arms it.
        assert!(!w.feed(&status(21 * S, Some(20 * S), &[(1, 7)])));
        assert!(w.feed(&status(24 * S, Some(21 * S), &[(1, 7)])));
    }

    #[test]
    fn an_idle_job_is_not_a_hang() {
        let mut w = HangWatch::new(Duration::from_secs(2));
        assert!(!w.feed(&status(10 * S, None, &[(1, 5)])));
        assert!(!w.feed(&status(20 * S, None, &[(1, 5)])));
        // A call open for 1 s after 10 s of quiet: not yet.
        assert!(!w.feed(&status(21 * S, Some(20 * S), &[(1, 5)])));
        assert!(w.feed(&status(22 * S, Some(20 * S), &[(1, 5)])));
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
