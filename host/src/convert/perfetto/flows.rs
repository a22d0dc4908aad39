//! Flow ids: consecutive calls (in start order) that share a value of a link key are joined
//! by one id per (key, value) chain, as Perfetto's flows v2 read it (the trace processor's
//! track event importer): a `flow_ids` entry not yet active begins the flow on its slice, an
//! active one steps it (an arrow from the previous slice to this one, and the flow goes on),
//! and a `terminating_flow_ids` entry ends it there. So each call carries one id per key
//! instead of two (the edge in and the edge out), 10 bytes less per call and key. Writing in
//! start order, a chain's first call is written before its second exists; the counts of
//! calls per value, taken while the log was read, say whether a call has a successor, so no
//! id is left dangling and none ends where nothing began.

use rustc_hash::FxHashMap;

use crate::calls::call::Call;

struct Chain {
    seen: u32,
    total: u32,
    /// The chain's flow id.
    id: u64,
}

/// How one call joins its chain on one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Join {
    /// A `flow_ids` entry that begins the chain: its first call.
    Begin(u64),
    /// A `flow_ids` entry that steps it: an arrow from the chain's previous call.
    Step(u64),
    /// A `terminating_flow_ids` entry: the arrow from the previous call, to the chain's last.
    End(u64),
}

impl Join {
    /// Whether an arrow ends here (from the chain's previous call).
    pub fn arrow_in(self) -> bool {
        !matches!(self, Join::Begin(_))
    }
}

/// One call's join on one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edges {
    pub key: u32,
    pub join: Join,
}

pub struct Flows {
    keys: Vec<u32>,
    chains: FxHashMap<(u32, u64), Chain>,
}

impl Flows {
    /// `keys`: the link keys (string ids) to join, in the order their ids are given out;
    /// `counts`: non-instant calls per (key, value), the first value of each key per call.
    /// Chains of one call have no id (nothing to join).
    pub fn new(keys: &[u32], counts: &FxHashMap<(u32, u64), u32>) -> Flows {
        let mut entries: Vec<(usize, u64, u32)> = counts
            .iter()
            .filter(|&(_, &n)| n > 1)
            .filter_map(|(&(k, v), &n)| Some((keys.iter().position(|&x| x == k)?, v, n)))
            .collect();
        // Ids in (key, value) order: the same ids whatever order the counts came in.
        entries.sort_unstable();
        let chains = entries
            .into_iter()
            .zip(1u64..)
            .map(|((ki, v, total), id)| ((keys[ki], v), Chain { seen: 0, total, id }))
            .collect();
        Flows {
            keys: keys.to_vec(),
            chains,
        }
    }

    /// The joins of `call` (the next non-instant call in start order), one per chosen key
    /// whose value it shares with another call, into `out`.
    pub fn edges(&mut self, call: &Call, out: &mut Vec<Edges>) {
        out.clear();
        for (k, v) in call.flow_links() {
            if !self.keys.contains(&k) {
                continue;
            }
            let Some(ch) = self.chains.get_mut(&(k, v)) else {
                continue;
            };
            if ch.seen == ch.total {
                // More calls than counted: never, as the counts come from the same calls;
                // joining nothing beats a flow that ends twice.
                continue;
            }
            ch.seen += 1;
            let join = if ch.seen == ch.total {
                Join::End(ch.id)
            } else if ch.seen == 1 {
                Join::Begin(ch.id)
            } else {
                Join::Step(ch.id)
            };
            out.push(Edges { key: k, join });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_is_one_id_that_begins_steps_and_ends() {
        let mut counts = FxHashMap::default();
        counts.insert((1, 0xa), 3);
        counts.insert((1, 0xb), 1);
        counts.insert((1, 0xc), 2);
        counts.insert((2, 0xa), 2);
        let mut f = Flows::new(&[1], &counts);
        let call = |v: u64| Call {
            links: vec![(1, v), (2, v)],
            ..Call::default()
        };
        let mut e = Vec::new();
        let mut got = Vec::new();
        for v in [0xa, 0xb, 0xc, 0xa, 0xc, 0xa] {
            f.edges(&call(v), &mut e);
            got.push(e.iter().map(|x| x.join).collect::<Vec<_>>());
        }
        assert_eq!(
            got,
            vec![
                vec![Join::Begin(1)],
                vec![],
                vec![Join::Begin(2)],
                vec![Join::Step(1)],
                vec![Join::End(2)],
                vec![Join::End(1)],
            ]
        );
    }
}
