//! For each call still in flight when the log ended, what the other threads last did on the
//! same link values: the same communicator, collective, stream, device, queue... A rank stuck
//! in collective #2 on a communicator, beside another rank whose last call on it was #1 (and
//! no other thread in collective #2 at all), is the hang read in one place, as PyTorch's NCCL
//! flight recorder shows it. Any pack's link keys work: nothing here knows what a key means.
//!
//! The calls in flight are known when the reading pass ends, before the writing pass sees the
//! calls in start order: only the link values they hold are watched, so a log without a hang
//! costs a check of an empty set per call, and the table holds one call per watched value and
//! thread.

use rustc_hash::{FxHashMap, FxHashSet};

use super::call::Call;

#[derive(Default)]
pub struct Peers {
    /// (key, value) of the calls in flight.
    watch: FxHashSet<(u32, u64)>,
    /// (key, value, tid) -> the thread's last call (in start order) with that link value,
    /// encoded (call.rs).
    last: FxHashMap<(u32, u64, u32), Vec<u8>>,
}

impl Peers {
    /// Watches the link values of `in_flight`.
    pub fn new(in_flight: &[Call]) -> Peers {
        Peers {
            watch: in_flight.iter().flat_map(Call::flow_links).collect(),
            last: FxHashMap::default(),
        }
    }

    /// Sees the next call in start order.
    pub fn see(&mut self, c: &Call) {
        if self.watch.is_empty() {
            return;
        }
        for (k, v) in c.flow_links() {
            if self.watch.contains(&(k, v)) {
                let b = self.last.entry((k, v, c.tid)).or_default();
                b.clear();
                c.encode(b);
            }
        }
    }

    /// The last call on `key = value` of each thread other than `tid`, by process and thread.
    pub fn others(&self, key: u32, value: u64, tid: u32) -> Vec<Call> {
        let mut out: Vec<Call> = self
            .last
            .iter()
            .filter(|(&(k, v, t), _)| k == key && v == value && t != tid)
            .map(|(_, b)| {
                let mut c = Call::default();
                c.decode(b);
                c
            })
            .collect();
        out.sort_by_key(|c| (c.pid, c.tid));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(tid: u32, start: u64, end: Option<u64>, links: &[(u32, u64)]) -> Call {
        Call {
            start: Some(start),
            end,
            pid: tid,
            tid,
            links: links.to_vec(),
            ..Call::default()
        }
    }

    #[test]
    fn keeps_each_threads_last_call_on_the_watched_values_only() {
        // Thread 1 hangs on (key 7, value 0xc0); thread 2 used 0xc0 twice, 0xd0 once.
        let hung = call(1, 50, None, &[(7, 0xc0)]);
        let mut p = Peers::new(std::slice::from_ref(&hung));
        p.see(&call(2, 10, Some(20), &[(7, 0xc0)]));
        p.see(&call(2, 30, Some(40), &[(7, 0xc0), (9, 1)]));
        p.see(&call(2, 45, Some(46), &[(7, 0xd0)]));
        p.see(&hung);
        let others = p.others(7, 0xc0, 1);
        assert_eq!(others.len(), 1);
        assert_eq!((others[0].tid, others[0].start), (2, Some(30)));
        assert!(p.others(7, 0xd0, 1).is_empty(), "not watched");
        assert!(p.others(9, 1, 1).is_empty(), "not watched");
        assert_eq!(p.last.len(), 2, "the hung call and thread 2's last on 0xc0");
    }

    #[test]
    fn no_call_in_flight_watches_nothing() {
        let mut p = Peers::new(&[]);
        p.see(&call(2, 10, Some(20), &[(7, 0xc0)]));
        assert!(p.last.is_empty());
    }
}
