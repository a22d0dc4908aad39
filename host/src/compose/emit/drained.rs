//! Records stored in BPF maps and drained off the traced threads' path (log format 3).
//!
//! A record of `w` fields goes to `@r<phase>w<w>[tid, seq] = (id, fields...)`: one map per
//! record width (a map has one value type; padding to the widest record would print zeros),
//! and two phases. A drain flips the phase (`@ph`), so the probes write the other maps while
//! bpftrace prints and clears these: a record written during the print is not cleared unseen.
//! The drain's `#D <time>` line follows what it printed: every record written before `time` is
//! then in the log (the probes read the phase before the time, the drain takes the time before
//! flipping), which lets `convert` put the records back in time order as they come.
//!
//! Measured here (a stand-in library's call in a loop, ns per call): about the bare
//! uprobe+uretprobe's cost on bpftrace 0.17, 1.05-1.1x on 0.23; one printf per call is
//! 1.6-2.0x. Every one of 40,000 records arrived. bpftrace prints and clears a map entry with
//! four system calls, off the traced threads.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::stored::{as_u64, next_seq, Entries, SEQ_MAP};
use super::{Strategy, NOW};

/// The phase map: which of the two sets of maps the probes write.
const PHASE: &str = "@ph";

pub(super) struct Drained {
    widths: BTreeSet<usize>,
    entries: Entries,
}

fn record_map(phase: u8, width: usize) -> String {
    format!("@r{phase}w{width}")
}

impl Drained {
    pub fn new(d: &crate::bpftrace::Dialect) -> Drained {
        Drained {
            widths: BTreeSet::new(),
            entries: Entries::new(d),
        }
    }

    /// `print(...)` (and `clear(...)`) of one phase's maps, on one line.
    fn print_phase(&self, phase: u8, clear: bool) -> String {
        let mut s = String::new();
        for &w in &self.widths {
            let m = record_map(phase, w);
            let _ = write!(s, " print({m});");
            if clear {
                let _ = write!(s, " clear({m});");
            }
        }
        s.trim_start().to_string()
    }
}

impl Strategy for Drained {
    fn learn(&mut self, width: usize) {
        self.widths.insert(width);
    }

    // The phase map must exist before a probe reads it (bpftrace: "Undefined map").
    fn begin(&self) -> Vec<String> {
        vec![format!("{PHASE} = 0;")]
    }

    fn entries(&mut self) -> Option<&mut Entries> {
        Some(&mut self.entries)
    }

    // Every record is stored, those that create handles too: `convert` orders them by time.
    fn emit(&mut self, id: u32, fields: &[String], _at_once: bool) -> Vec<String> {
        let w = fields.len();
        let mut value = vec![format!("(uint64){id}")];
        value.extend(as_u64(fields));
        // The phase before the time (see the module's comment); one tuple on BPF's stack.
        let mut out = vec![format!("$ph = {PHASE};"), format!("{NOW} = nsecs;")];
        out.extend(next_seq());
        out.push(format!("$r = ({});", value.join(", ")));
        out.push(format!(
            "if ($ph == 0) {{ {}[$t, $n] = $r; }} else {{ {}[$t, $n] = $r; }}",
            record_map(0, w),
            record_map(1, w)
        ));
        out
    }

    fn drain(&self) -> Option<Vec<String>> {
        let mut out = vec![
            "$now = nsecs;".to_string(),
            format!("$p = {PHASE};"),
            format!("{PHASE} = 1 - $p;"),
            format!("if ($p == 0) {{ {} }}", self.print_phase(0, true)),
            format!("else {{ {} }}", self.print_phase(1, true)),
            "printf(\"#D %lx\\n\", $now);".to_string(),
        ];
        // The calls in flight, while the job runs (a hang is in the log within a drain).
        out.extend(self.entries.print());
        Some(out)
    }

    fn dump(&self) -> Vec<String> {
        let mut out = vec![
            self.print_phase(0, false),
            self.print_phase(1, false),
            "printf(\"#D %lx\\n\", nsecs);".to_string(),
        ];
        out.extend(self.entries.print());
        out.push(format!("print({SEQ_MAP});"));
        out
    }

    fn own_maps(&self) -> Vec<String> {
        let mut m = vec![PHASE.to_string(), SEQ_MAP.to_string()];
        for p in 0..2 {
            m.extend(self.widths.iter().map(|&w| record_map(p, w)));
        }
        m.extend(self.entries.maps());
        m
    }
}
