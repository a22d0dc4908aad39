//! The flight recorder: each thread's last N records stay in one BPF map,
//! `@f[tid, seq % N] = (seq, id << 8 | width, fields..., 0...)` (padded to the widest record:
//! one map to size, N per thread), and nothing is printed while the job runs. A dump (END,
//! or `bthost record` asking: on demand, or when calls have hung) prints the ring, the calls
//! in flight and each thread's record count; the ring is not cleared, so a later dump prints
//! it again, and `convert` (and `record`) keep each record once, by its number.
//!
//! Bounded memory for a run of days, at about the bare probe's cost (measured here: 1.05-1.08x
//! the bare uprobe+uretprobe pair on bpftrace 0.17 and 0.23).

use super::stored::{as_u64, next_seq, Entries, SEQ_MAP};
use super::{Strategy, NOW};

const RING: &str = "@f";

pub(super) struct Ring {
    per_thread: u32,
    widest: usize,
    entries: Entries,
}

impl Ring {
    pub fn new(per_thread: u32, d: &crate::bpftrace::Dialect) -> Ring {
        Ring {
            per_thread,
            widest: 0,
            entries: Entries::new(d),
        }
    }
}

impl Strategy for Ring {
    fn learn(&mut self, width: usize) {
        self.widest = self.widest.max(width);
    }

    fn begin(&self) -> Vec<String> {
        Vec::new()
    }

    fn entries(&mut self) -> Option<&mut Entries> {
        Some(&mut self.entries)
    }

    // A record that creates a handle (a communicator, a stream: rare) is printed at once, not
    // kept in the ring: later records are decoded with what it says (a communicator's ranks),
    // and the ring would drop it first. It takes no number: the ring's numbers stay dense.
    fn emit(&mut self, id: u32, fields: &[String], at_once: bool) -> Vec<String> {
        if at_once {
            return vec![
                format!("{NOW} = nsecs;"),
                format!(
                    "printf(\"{id:x} %x{}\\n\", $t, {});",
                    " %lx".repeat(fields.len()),
                    fields.join(", ")
                ),
            ];
        }
        let head = (u64::from(id) << 8) | fields.len() as u64;
        let mut value = vec!["(uint64)$n".to_string(), format!("(uint64)0x{head:x}")];
        value.extend(as_u64(fields));
        value.resize(2 + self.widest, "(uint64)0".to_string());
        let mut out = vec![format!("{NOW} = nsecs;")];
        out.extend(next_seq());
        out.push(format!(
            "{RING}[$t, (uint64)$n % {}] = ({});",
            self.per_thread,
            value.join(", ")
        ));
        out
    }

    fn drain(&self) -> Option<Vec<String>> {
        None
    }

    fn dump(&self) -> Vec<String> {
        let mut out = vec![
            format!("print({RING});"),
            "printf(\"#D %lx\\n\", nsecs);".to_string(),
        ];
        out.extend(self.entries.print());
        out.push(format!("print({SEQ_MAP});"));
        out
    }

    fn status(&self) -> Option<Vec<String>> {
        let mut out = self.entries.print();
        out.push(format!("print({SEQ_MAP});"));
        Some(out)
    }

    fn keeps_progress(&self) -> bool {
        true
    }

    fn own_maps(&self) -> Vec<String> {
        let mut m = vec![RING.to_string(), SEQ_MAP.to_string()];
        m.extend(self.entries.maps());
        m
    }
}
