//! Records printed as they are written, two per printf (crate::compose::emit::pairing), with
//! each call's entry kept in a per-probe map `@e<id>[tid]` until its exit (log format 2).
//!
//! The better choice where nothing may stay in kernel maps: a log read live (`tail -f`), or a
//! bpftrace whose maps cannot be sized for the record rate. It costs the traced call a printf
//! (1.6-2.0x the bare probe here), and bpftrace 0.17 loses the records still in its per-CPU
//! buffers if it is stopped before reading them (`bthost record` waits for a drain barrier).

use super::pairing::{Pairing, HELD_MAP};
use super::Strategy;

pub(super) struct Printf {
    pairs: Pairing,
    /// The entry maps, in the order the probes were written (END prints them so).
    entries: Vec<String>,
}

impl Printf {
    pub fn new(max_held: usize, spell: crate::bpftrace::dialect::Spelling) -> Printf {
        Printf {
            pairs: Pairing::new(max_held, spell),
            entries: Vec::new(),
        }
    }
}

/// The map holding a call's entry time and entry values until its exit: a scalar (the time)
/// or a tuple `(time, values...)`. Named by the pending-entry record id, so that a dump of it
/// (`@e<id>[<tid>]: (...)`, printed at END) reads back as that record.
fn pending_map(pending_id: u32) -> String {
    format!("@e{pending_id:x}")
}

impl Strategy for Printf {
    fn learn(&mut self, width: usize) {
        self.pairs.widths.insert(width);
    }

    fn begin(&self) -> Vec<String> {
        Vec::new()
    }

    fn keep_entry(
        &mut self,
        pending: u32,
        values: &[String],
        maps: &mut Vec<String>,
    ) -> Vec<String> {
        let pm = pending_map(pending);
        let line = if values.is_empty() {
            format!("{pm}[$t] = nsecs;")
        } else {
            format!("{pm}[$t] = (nsecs, {});", values.join(", "))
        };
        maps.push(pm.clone());
        self.entries.push(pm);
        vec![line]
    }

    // The entry is not deleted (a map operation fewer per call): it is overwritten by the
    // thread's next call, and if it is still there at END, the reader knows it for a call that
    // returned (its exit record, with the same entry time, came first) and drops it.
    fn take_entry(&mut self, pending: u32, n_values: usize) -> Vec<String> {
        let pm = pending_map(pending);
        if n_values > 0 {
            vec![format!("$e = {pm}[$t];"), "$s = $e.0;".to_string()]
        } else {
            vec![format!("$s = {pm}[$t];")]
        }
    }

    fn emit(&mut self, id: u32, fields: &[String], at_once: bool) -> Vec<String> {
        self.pairs.learned = true;
        self.pairs.emit(id, fields, at_once)
    }

    fn drain(&self) -> Option<Vec<String>> {
        None
    }

    // First each thread's held record (a call that returned, before those still open).
    fn dump(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.pairs.widths.is_empty() {
            out.push(format!("print({HELD_MAP});"));
        }
        out.extend(self.entries.iter().map(|m| format!("print({m});")));
        out
    }

    fn own_maps(&self) -> Vec<String> {
        if self.pairs.widths.is_empty() {
            Vec::new()
        } else {
            vec![HELD_MAP.to_string()]
        }
    }
}
