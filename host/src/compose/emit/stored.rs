//! What the strategies that store records in maps (drained, ring) share: each thread's record
//! numbers, and the entries of calls in flight.
//!
//! - `@q[tid]` is the number of the thread's last record. Every stored record carries its
//!   number, so `convert` finds a record lost (a map full, a race with a drain) as a gap, and
//!   one lost at the end against the `@q` that END prints.
//! - A call's entry waits in `@p<n>[tid, <pending id>]` (one map per number of entry values,
//!   not one per probe: bpftrace sizes every map alike, and preallocates them), and is deleted
//!   at the exit, so that a map holds only calls in flight: a drain prints them while the job
//!   runs, and a hung call is in the log within one drain period.
//! - bpftrace before 0.19 dies when a map it prints loses an entry meanwhile: for those, an
//!   entry is closed at the exit by overwriting it with zeros instead (start 0: no call in
//!   flight), the map keeps one entry per thread and probe used, and the readers skip the
//!   closed ones (`record` does not write them).

use std::collections::BTreeSet;

/// The per-thread record counter.
pub const SEQ_MAP: &str = "@q";

/// Statements that number the thread's next record into `$n`.
pub fn next_seq() -> [String; 2] {
    [
        format!("$n = {SEQ_MAP}[$t] + 1;"),
        format!("{SEQ_MAP}[$t] = $n;"),
    ]
}

/// The map of entries with `n` values.
fn entry_map(n: usize) -> String {
    format!("@p{n}")
}

/// The entry maps a script uses, by number of values.
pub struct Entries {
    widths: BTreeSet<usize>,
    /// Close entries by overwriting them (bpftrace before 0.19), not by deleting them.
    overwrite: bool,
    spell: crate::bpftrace::dialect::Spelling,
}

impl Entries {
    pub fn new(d: &crate::bpftrace::Dialect) -> Entries {
        Entries {
            widths: BTreeSet::new(),
            overwrite: !d.print_survives_deletes,
            spell: d.spell,
        }
    }

    pub fn keep(&mut self, pending: u32, values: &[String]) -> Vec<String> {
        self.widths.insert(values.len());
        let m = entry_map(values.len());
        if values.is_empty() {
            return vec![format!("{m}[$t, {pending}] = nsecs;")];
        }
        // One type for every value: overwritten with zeros at the exit (before 0.19), and
        // read back as `uint64` by the exit (crate::compose::emit::widen).
        let values = as_u64(values);
        vec![format!(
            "{m}[$t, {pending}] = (nsecs, {});",
            values.join(", ")
        )]
    }

    // Deleted only when found: bpftrace 0.23 warns (into the log) of every missing key deleted.
    pub fn take(&mut self, pending: u32, n_values: usize) -> Vec<String> {
        let m = entry_map(n_values);
        let mut out = if n_values > 0 {
            vec![
                format!("$e = {m}[$t, {pending}];"),
                "$s = $e.0;".to_string(),
            ]
        } else {
            vec![format!("$s = {m}[$t, {pending}];")]
        };
        let close = if !self.overwrite {
            self.spell.delete(&format!("{m}[$t, {pending}]"))
        } else if n_values == 0 {
            format!("{m}[$t, {pending}] = (uint64)0;")
        } else {
            let zeros = vec!["(uint64)0"; n_values + 1].join(", ");
            format!("{m}[$t, {pending}] = ({zeros});")
        };
        out.push(format!("if ($s != 0) {{ {close} }}"));
        out
    }

    /// Prints the entries of the calls in flight.
    pub fn print(&self) -> Vec<String> {
        self.maps().iter().map(|m| format!("print({m});")).collect()
    }

    pub fn maps(&self) -> Vec<String> {
        self.widths.iter().map(|&n| entry_map(n)).collect()
    }
}

/// Each field as a `uint64`: a record's values are stored as one tuple type.
pub fn as_u64(fields: &[String]) -> Vec<String> {
    fields.iter().map(|f| super::widen::to_u64(f)).collect()
}
