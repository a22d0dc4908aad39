//! What the host hands a decoder: one log record, with its fields already typed.

use abi_stable::{
    std_types::{RSlice, RStr},
    StableAbi,
};

use crate::event::Arg;

/// Which side of a call a record was written at.
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// At function entry, of a call whose exit is a separate record (blocking calls).
    Entry,
    /// At function exit, of a call whose entry was a separate record.
    Exit,
    /// One record at exit for the whole call: `ts` is the entry time, `dur` the duration.
    Call,
}

/// One record of the log.
#[repr(C)]
#[derive(StableAbi, Clone, Debug)]
pub struct Record<'a> {
    /// Line number in the log (1-based), for messages.
    pub line: u64,
    /// The probe's function name, as in the pack manifest.
    pub probe: RStr<'a>,
    pub phase: Phase,
    pub pid: u32,
    pub tid: u32,
    /// Nanoseconds, bpftrace's `nsecs` (CLOCK_MONOTONIC).
    pub ts: u64,
    /// Duration in nanoseconds, for [`Phase::Call`]; 0 otherwise.
    pub dur: u64,
    /// The record's fields in manifest order, typed by the schema.
    pub fields: RSlice<'a, Arg>,
}

impl Record<'_> {
    /// The field called `name`, if the record has one.
    pub fn field(&self, name: &str) -> Option<&Arg> {
        self.fields.iter().find(|a| a.name.as_str() == name)
    }
}
