//! Records leave the probes two at a time, per thread.
//!
//! Each bpftrace `printf` is one perf (0.17) or ring-buffer (0.23) output, and the output, not
//! the map operations, is what a traced call pays most for: measured here on a stand-in
//! `hipStreamSynchronize` (probe floor ~10 us), one printf adds ~9 us on bpftrace 0.17 and
//! ~6 us on 0.23, while the depth and entry map operations add ~1 us. So a thread's record
//! waits in `@b[tid]` (as a fixed-width tuple `(id << 8 | n, values..., 0...)`) until the thread's
//! next record, and one printf writes both lines. The log's lines are unchanged: a record is
//! still one line, and a thread's records keep their order. The tuple's first number is
//! `id << 8 | n` (record id, width): one number fewer on the stack (see `max_held`).
//!
//! The waiting record's width is known only at run time, so the pairing printf is chosen by
//! a branch on it, one per record width the script has (not padded).
//!
//! Log format 2: a record's first number is the time it was written ([`NOW`]: a call's exit,
//! an entry's entry), so a thread's records are in time order by it. The pair's second line
//! is then written short, as a continuation (`+<id> <delta> <fields>...`): its tid is the first
//! line's, and its time is the first line's plus `delta` (a few hex digits instead of twelve).
//! Both lines come from one printf, so nothing (a lost event, another thread's output) can
//! come between them. A record still waiting when the trace stops is printed by END
//! (`@b[<tid>]: (<id << 8 | n>, <values>...)`, in decimal), before the in-flight entries, and read
//! back as the record it is (crate::log::line, LineKind::Held).

use std::collections::BTreeSet;
use std::fmt::Write as _;

/// The per-thread map of the record waiting for its pair.
pub const HELD_MAP: &str = "@b";

/// The time a record is written, read once per record: a record's first field must be this
/// (a call's duration is `$now - $s`), as the pair's continuation line is relative to it.
pub const NOW: &str = "$now";

/// Learns the script's record widths (first pass), then writes each record's emitting code.
pub(super) struct Pairing {
    /// The widths (numbers after the tid) of the records the script writes.
    pub widths: BTreeSet<usize>,
    /// Set once `widths` is complete: only then does `emit` write code.
    pub learned: bool,
    /// The widest record that may wait for a pair (crate::bpftrace::Dialect::max_held_width):
    /// the waiting tuple, the pair's printf and the probe's own values share BPF's 512-byte
    /// stack. Wider records are written at once, after the record that waits if any.
    pub max_held: usize,
    spell: crate::bpftrace::dialect::Spelling,
}

impl Pairing {
    pub fn new(max_held: usize, spell: crate::bpftrace::dialect::Spelling) -> Pairing {
        Pairing {
            widths: BTreeSet::new(),
            learned: false,
            max_held,
            spell,
        }
    }

    /// The width of the waiting tuple's values: the widest record that can wait.
    fn held_width(&self) -> usize {
        self.widths
            .range(..=self.max_held)
            .next_back()
            .copied()
            .unwrap_or(0)
    }

    /// The statements that write record `id` (`<id> <tid> <fields...>`) of the thread `$t`.
    /// `fields[0]` must be [`NOW`].
    ///
    /// `at_once`: the record must not wait for the thread's next call, because what it says
    /// matters to other threads' records (it creates a handle another thread may use: a
    /// communicator, a stream, a queue; a plugin learns the handle's rank, device... from it).
    pub fn emit(&mut self, id: u32, fields: &[String], at_once: bool) -> Vec<String> {
        debug_assert_eq!(fields.first().map(String::as_str), Some(NOW));
        self.widths.insert(fields.len());
        if !self.learned {
            return Vec::new();
        }
        let max = self.held_width();
        let cur_fmt = format!("{id:x} %x{}", " %lx".repeat(fields.len()));
        let mut cur_args = String::from("$t");
        for f in fields {
            let _ = write!(cur_args, ", {f}");
        }
        let wide = at_once || fields.len() > max;
        let mut out = vec![
            format!("{NOW} = nsecs;"),
            format!("$held = {HELD_MAP}[$t];"),
        ];
        if wide {
            // Written at once, or too wide to wait or to share a printf's stack with a
            // waiting record: the waiting one (if any) is written first, then this one.
            out.push("if ($held.0 != 0) {".to_string());
        } else {
            let mut held = vec![format!(
                "(uint64)0x{:x}",
                (u64::from(id) << 8) | fields.len() as u64
            )];
            held.extend(fields.iter().map(|f| super::widen::to_u64(f)));
            held.resize(1 + max, "(uint64)0".to_string());
            out.push(format!(
                "if ($held.0 == 0) {{ {HELD_MAP}[$t] = ({}); }}",
                held.join(", ")
            ));
            out.push("else {".to_string());
        }
        // With a wide record, each branch writes the waiting record alone. Otherwise the
        // current record follows as a continuation line: no tid, its time relative to the
        // waiting record's (`$held.1`, that record's NOW).
        let (pair_fmt, pair_args) = if wide {
            (String::new(), String::new())
        } else {
            let mut args = format!(", {}", self.spell.elapsed(NOW, "$held.1"));
            for f in &fields[1..] {
                let _ = write!(args, ", {f}");
            }
            (
                format!("\\n+{id:x} %lx{}", " %lx".repeat(fields.len() - 1)),
                args,
            )
        };
        let held_widths: Vec<usize> = self.widths.range(..=max).copied().collect();
        let n = held_widths.len();
        for (i, &w) in held_widths.iter().enumerate() {
            let mut args = String::from("$held.0 >> 8, $t");
            for k in 0..w {
                let _ = write!(args, ", $held.{}", k + 1);
            }
            let printf = format!(
                "printf(\"%x %x{}{pair_fmt}\\n\", {args}{pair_args});",
                " %lx".repeat(w)
            );
            // One width: no branch, and no bare `{ }` block either (bpftrace 0.17 refuses one).
            out.push(match (i, i + 1 == n) {
                (_, true) if n == 1 => format!("\t{printf}"),
                (0, _) => format!("\tif (($held.0 & 0xff) == {w}) {{ {printf} }}"),
                (_, true) => format!("\telse {{ {printf} }}"),
                _ => format!("\telse if (($held.0 & 0xff) == {w}) {{ {printf} }}"),
            });
        }
        out.push(format!(
            "\t{}",
            self.spell.delete(&format!("{HELD_MAP}[$t]"))
        ));
        out.push("}".to_string());
        if wide {
            out.push(format!("printf(\"{cur_fmt}\\n\", {cur_args});"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn learned(widths: &[usize]) -> Pairing {
        Pairing {
            widths: widths.iter().copied().collect(),
            learned: true,
            max_held: 8,
            spell: d17().spell,
        }
    }

    fn d17() -> crate::bpftrace::Dialect {
        crate::bpftrace::Dialect::for_version(&semver::Version::new(0, 17, 0))
    }

    #[test]
    fn first_pass_writes_nothing_and_learns_the_width() {
        let mut p = Pairing::new(8, d17().spell);
        assert!(p
            .emit(5, &[NOW.into(), "$now - $s".into()], false)
            .is_empty());
        assert_eq!(p.widths.iter().copied().collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn holds_padded_and_pairs_by_the_held_width() {
        let mut p = learned(&[2, 4]);
        let code = p.emit(0x27, &[NOW.into(), "$e.1".into()], false).join("\n");
        assert!(code.starts_with("$now = nsecs;"), "{code}");
        // Held: id, width, the values, padded to the widest record.
        assert!(
            code.contains("@b[$t] = ((uint64)0x2702, $now, $e.1, (uint64)0, (uint64)0);"),
            "{code}"
        );
        // One printf per held width; the current record follows as a continuation line: no
        // tid, its time relative to the held record's.
        assert!(code.contains(
            "if (($held.0 & 0xff) == 2) { printf(\"%x %x %lx %lx\\n+27 %lx %lx\\n\", $held.0 >> 8, $t, $held.1, $held.2, $now - $held.1, $e.1); }"
        ), "{code}");
        assert!(code.contains(
            "else { printf(\"%x %x %lx %lx %lx %lx\\n+27 %lx %lx\\n\", $held.0 >> 8, $t, $held.1, $held.2, $held.3, $held.4, $now - $held.1, $e.1); }"
        ), "{code}");
        assert!(code.contains("delete(@b[$t]);"));
    }

    #[test]
    fn at_once_and_wide_records_flush_the_waiting_one_then_write() {
        for (width, at_once) in [(9, false), (1, true)] {
            let mut p = learned(&[1, 2, width]);
            let mut fields: Vec<String> = (0..width).map(|i| format!("$v{i}")).collect();
            fields[0] = NOW.into();
            let code = p.emit(9, &fields, at_once).join("\n");
            assert!(!code.contains("@b[$t] = ("), "{code}");
            // The waiting record alone, then this one.
            assert!(
                code.contains(
                    "if (($held.0 & 0xff) == 1) { printf(\"%x %x %lx\\n\", $held.0 >> 8, $t, $held.1); }"
                ),
                "{code}"
            );
            assert!(
                code.ends_with(&format!(
                    "printf(\"9 %x{}\\n\", $t, {});",
                    " %lx".repeat(width),
                    fields.join(", ")
                )),
                "{code}"
            );
        }
    }

    #[test]
    fn one_width_needs_no_branch() {
        let mut p = learned(&[1]);
        let code = p.emit(3, &[NOW.into()], false).join("\n");
        assert!(code.contains("\n\tprintf("), "{code}");
        assert!(!code.contains("{ printf("), "{code}");
        assert!(!code.contains("0xff) =="), "{code}");
    }
}
