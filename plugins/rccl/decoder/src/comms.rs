//! The communicators a log has shown, per process.

use std::collections::HashMap;

/// What is known of one communicator in one process (one rank).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommInfo {
    /// The same value in every rank's process: the unique id's magic, or a value derived from
    /// the parent's for a split; the communicator pointer when neither was seen.
    pub identity: u64,
    /// Whether `identity` is shared across processes (false: a per-process pointer).
    pub global: bool,
    pub rank: Option<i64>,
    pub nranks: Option<i64>,
    pub device: Option<i64>,
    /// Collectives and point-to-point calls this rank has begun on it.
    pub seq: u64,
    /// ncclCommSplit calls this rank has made on it (numbers the children).
    pub splits: u64,
}

/// Communicators by (pid, pointer).
#[derive(Default, Debug)]
pub struct Comms {
    by_ptr: HashMap<(u32, u64), CommInfo>,
}

/// A 64-bit mix (splitmix64's finalizer): derived identities that do not collide by accident.
pub fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Comms {
    pub fn get(&self, pid: u32, comm: u64) -> Option<&CommInfo> {
        self.by_ptr.get(&(pid, comm))
    }

    /// The communicator, created as a per-process one if the log never showed its creation.
    pub fn get_or_unknown(&mut self, pid: u32, comm: u64) -> &mut CommInfo {
        self.by_ptr.entry((pid, comm)).or_insert_with(|| CommInfo {
            identity: comm,
            ..CommInfo::default()
        })
    }

    pub fn insert(&mut self, pid: u32, comm: u64, info: CommInfo) {
        self.by_ptr.insert((pid, comm), info);
    }

    pub fn remove(&mut self, pid: u32, comm: u64) {
        self.by_ptr.remove(&(pid, comm));
    }

    pub fn len(&self) -> usize {
        self.by_ptr.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_ptr.is_empty()
    }
}
