//! Log format 3: records stored in maps come out in batches, each in the map's order, not in
//! time order (crate::compose::emit::drained). They wait here until a drain's mark
//! (`#D <time>`) says that every record written before `time` has come, and are released in
//! time order; each thread's records are numbered, so a record missing is found here: a gap
//! in a thread's numbers, or numbers short of the thread's count (`@q`) at the end.
//!
//! With the flight recorder's ring, a thread's oldest records are overwritten by design: a
//! thread's first record here, and a gap between two dumps, are records the ring dropped.

use rustc_hash::FxHashMap;

/// A stored record waiting for its release.
#[derive(Debug)]
pub struct Held {
    pub time: u64,
    pub tid: u32,
    pub seq: u64,
    pub id: u32,
    pub line: u64,
    /// `tid, time, values...`, as a printed record's numbers.
    pub nums: Vec<u64>,
}

/// What a released record is, against its thread's numbering.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Next,
    /// Already released (a dump of the ring printed it again).
    Again,
    /// `missing` records before it never came (from record number `first`).
    Gap {
        first: u64,
        missing: u64,
    },
}

#[derive(Default)]
pub struct Reorder {
    held: Vec<Held>,
    /// Each thread's last record number released.
    last: FxHashMap<u32, u64>,
    /// Each thread's record count, as the log's last `@q` says.
    counts: FxHashMap<u32, u64>,
}

impl Reorder {
    pub fn push(&mut self, line: u64, seq: u64, id: u32, nums: Vec<u64>) {
        let (tid, time) = (nums[0] as u32, nums.get(1).copied().unwrap_or(0));
        self.held.push(Held {
            time,
            tid,
            seq,
            id,
            line,
            nums,
        });
    }

    /// Puts back a released record, for a later release.
    pub fn hold_again(&mut self, h: Held) {
        self.held.push(h);
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// The records written before `time` (all with None), in time order.
    pub fn release(&mut self, before: Option<u64>) -> Vec<Held> {
        self.held.sort_unstable_by_key(|h| (h.time, h.tid, h.seq));
        let n = match before {
            Some(t) => self.held.partition_point(|h| h.time < t),
            None => self.held.len(),
        };
        self.held.drain(..n).collect()
    }

    /// Checks `h` against its thread's numbering, and takes it as the thread's last.
    pub fn check(&mut self, h: &Held) -> Verdict {
        let last = self.last.entry(h.tid).or_insert(0);
        if h.seq <= *last {
            return Verdict::Again;
        }
        let v = if h.seq == *last + 1 {
            Verdict::Next
        } else {
            Verdict::Gap {
                first: *last + 1,
                missing: h.seq - *last - 1,
            }
        };
        *last = h.seq;
        v
    }

    /// A new bpftrace (`record --restart`): each thread's numbers start again from 1. Called
    /// once every record of the last one is released.
    pub fn restart(&mut self) {
        self.last.clear();
        self.counts.clear();
    }

    pub fn count(&mut self, tid: u32, n: u64) {
        self.counts.insert(tid, n);
    }

    /// Threads whose count says more records than came: (tid, first missing, how many).
    pub fn short_threads(&self) -> Vec<(u32, u64, u64)> {
        let mut v: Vec<(u32, u64, u64)> = self
            .counts
            .iter()
            .filter_map(|(&tid, &n)| {
                let last = self.last.get(&tid).copied().unwrap_or(0);
                (n > last).then(|| (tid, last.saturating_add(1), n - last))
            })
            .collect();
        v.sort_unstable();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(r: &mut Reorder, tid: u64, seq: u64, time: u64) {
        r.push(seq, seq, 1, vec![tid, time]);
    }

    #[test]
    fn releases_in_time_order_up_to_the_mark() {
        let mut r = Reorder::default();
        push(&mut r, 7, 2, 20);
        push(&mut r, 8, 1, 15);
        push(&mut r, 7, 1, 10);
        push(&mut r, 7, 3, 40);
        let got: Vec<(u32, u64)> = r.release(Some(30)).iter().map(|h| (h.tid, h.seq)).collect();
        assert_eq!(got, vec![(7, 1), (8, 1), (7, 2)]);
        assert!(!r.is_empty());
        assert_eq!(r.release(None).len(), 1);
    }

    #[test]
    fn finds_gaps_repeats_and_a_short_tail() {
        let mut r = Reorder::default();
        let h = |tid, seq| Held {
            time: seq,
            tid,
            seq,
            id: 1,
            line: 0,
            nums: vec![],
        };
        assert_eq!(r.check(&h(7, 1)), Verdict::Next);
        assert_eq!(
            r.check(&h(7, 4)),
            Verdict::Gap {
                first: 2,
                missing: 2
            }
        );
        assert_eq!(r.check(&h(7, 4)), Verdict::Again);
        assert_eq!(r.check(&h(7, 5)), Verdict::Next);
        r.count(7, 8);
        r.count(9, 2);
        assert_eq!(r.short_threads(), vec![(7, 6, 3), (9, 1, 2)]);
    }
}
