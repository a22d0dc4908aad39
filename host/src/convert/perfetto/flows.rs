//! Flow ids: consecutive calls (in start order) that share a value of a link key are joined,
//! each edge by a fresh id that leaves the earlier call and ends on the later one. Writing in
//! start order, an edge's source is written before its sink exists; the counts of calls per
//! value, taken while the log was read, say whether a call has a successor, so the id is never
//! left dangling.

use rustc_hash::FxHashMap;

use crate::calls::call::Call;

struct Chain {
    seen: u32,
    total: u32,
    /// The id of this value's first edge; its n-th edge is `base + n`.
    base: u64,
}

/// One call's edges on one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edges {
    pub key: u32,
    /// The edge to the next call with this value.
    pub out: Option<u64>,
    /// The edge from the previous one.
    pub into: Option<u64>,
}

pub struct Flows {
    keys: Vec<u32>,
    chains: FxHashMap<(u32, u64), Chain>,
}

impl Flows {
    /// `keys`: the link keys (string ids) to join, in the order their ids are given out;
    /// `counts`: non-instant calls per (key, value), the first value of each key per call.
    pub fn new(keys: &[u32], counts: &FxHashMap<(u32, u64), u32>) -> Flows {
        let mut entries: Vec<(usize, u64, u32)> = counts
            .iter()
            .filter_map(|(&(k, v), &n)| Some((keys.iter().position(|&x| x == k)?, v, n)))
            .collect();
        entries.sort_unstable();
        let mut next = 1u64;
        let mut chains = FxHashMap::default();
        for (ki, v, total) in entries {
            chains.insert(
                (keys[ki], v),
                Chain {
                    seen: 0,
                    total,
                    base: next,
                },
            );
            next += u64::from(total.saturating_sub(1));
        }
        Flows {
            keys: keys.to_vec(),
            chains,
        }
    }

    /// The edges of `call` (the next non-instant call in start order), one per chosen key it
    /// carries, into `out`.
    pub fn edges(&mut self, call: &Call, out: &mut Vec<Edges>) {
        out.clear();
        for (k, v) in call.flow_links() {
            if !self.keys.contains(&k) {
                continue;
            }
            let Some(ch) = self.chains.get_mut(&(k, v)) else {
                continue;
            };
            let n = u64::from(ch.seen);
            ch.seen += 1;
            out.push(Edges {
                key: k,
                into: (n > 0).then(|| ch.base + n - 1),
                out: (n + 1 < u64::from(ch.total)).then_some(ch.base + n),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_are_joined_edge_by_edge_without_dangling_ids() {
        let mut counts = FxHashMap::default();
        counts.insert((1, 0xa), 3);
        counts.insert((1, 0xb), 1);
        counts.insert((2, 0xa), 2);
        let mut f = Flows::new(&[1], &counts);
        let call = |v: u64| Call {
            links: vec![(1, v), (2, v)],
            ..Call::default()
        };
        let mut e = Vec::new();
        let mut got = Vec::new();
        for v in [0xa, 0xb, 0xa, 0xa] {
            f.edges(&call(v), &mut e);
            got.push(e.iter().map(|x| (x.into, x.out)).collect::<Vec<_>>());
        }
        assert_eq!(
            got,
            vec![
                vec![(None, Some(1))],
                vec![(None, None)],
                vec![(Some(1), Some(2))],
                vec![(Some(2), None)],
            ]
        );
    }
}
