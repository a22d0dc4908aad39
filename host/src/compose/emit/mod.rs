//! How records leave the kernel: one strategy per file, behind one choice ([`Emit`]), with the
//! probes' reading of arguments shared (crate::compose::script).
//!
//! - [`printf`]: each record is printed, two per printf (log format 2). What the traced call
//!   pays for is the printf: measured here 1.6-2.0x the bare uprobe's cost.
//! - [`drained`]: records are stored in BPF hash maps, and a drain (an `interval` probe, or
//!   `bthost record` asking) prints and clears them off the traced threads' path (format 3).
//!   Measured here at about the floor's cost.
//! - [`ring`]: the flight recorder. Each thread's last N records stay in a BPF map; nothing
//!   is printed until a dump (format 3).
//!
//! A strategy owns the maps that hold records and call entries: the drained and ring ones
//! number each thread's records (`@q`), so that `convert` can find and count any record lost.

mod drained;
mod pairing;
mod printf;
mod ring;
mod stored;
pub(crate) mod widen;

pub use pairing::NOW;
pub(in crate::compose) use widen::to_u64;

use crate::bpftrace::Dialect;

/// How a script's records leave the kernel.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Emit {
    /// Printed as they are written, two per printf.
    #[default]
    Printf,
    /// Stored in BPF maps and drained: by an `interval:ms:<period_ms>` probe in a script run by
    /// hand, by `bthost record` in its own scripts.
    Drained { period_ms: u32 },
    /// A flight recorder: the last `per_thread` records of each thread, printed on demand.
    Ring { per_thread: u32 },
}

impl Emit {
    /// The log format the script writes (crate::compose::schema).
    pub fn format(&self) -> u32 {
        match self {
            Emit::Printf => 2,
            Emit::Drained { .. } | Emit::Ring { .. } => 3,
        }
    }

    /// What the schema's header says of it (format 3 only): `emit=maps` or `emit=ring:N`.
    pub fn header_word(&self) -> Option<String> {
        match self {
            Emit::Printf => None,
            Emit::Drained { .. } => Some("emit=maps".into()),
            Emit::Ring { per_thread } => Some(format!("emit=ring:{per_thread}")),
        }
    }

    /// The short name users choose it by.
    pub fn name(&self) -> &'static str {
        match self {
            Emit::Printf => "printf",
            Emit::Drained { .. } => "maps",
            Emit::Ring { .. } => "flight recorder",
        }
    }

    pub(super) fn strategy(&self, d: &Dialect) -> Box<dyn Strategy> {
        match self {
            Emit::Printf => Box::new(printf::Printf::new(d.max_held_width, d.spell)),
            Emit::Drained { .. } => Box::new(drained::Drained::new(d)),
            Emit::Ring { per_thread } => Box::new(ring::Ring::new(*per_thread, d)),
        }
    }
}

/// A way of getting records out of the kernel. Every statement it returns runs in a probe
/// where `$t` is the thread id. Rendering runs twice: first to [`Strategy::learn`] every record
/// width, then to write.
pub(super) trait Strategy {
    /// First pass: a record of `width` fields (the first is [`NOW`]) is written somewhere.
    fn learn(&mut self, width: usize);

    /// Statements for BEGIN, after the schema's lines.
    fn begin(&self) -> Vec<String>;

    /// The entry maps of the strategies that store records (crate::compose::emit::stored).
    fn entries(&mut self) -> Option<&mut stored::Entries> {
        None
    }

    /// Statements at a call's entry that keep its start time (`nsecs`) and `values` for its
    /// exit, under the pending record id `pending`. Names its maps into `maps` (those the
    /// strategy does not name itself).
    fn keep_entry(
        &mut self,
        pending: u32,
        values: &[String],
        _maps: &mut Vec<String>,
    ) -> Vec<String> {
        let e = self
            .entries()
            .expect("a strategy without entry maps keeps entries its own way");
        e.keep(pending, values)
    }

    /// Statements at the exit that take the entry back: `$s` (the start, 0 if the entry was
    /// not seen), and `$e` (the tuple `(start, values...)`) when it has `n_values` > 0.
    fn take_entry(&mut self, pending: u32, n_values: usize) -> Vec<String> {
        let e = self
            .entries()
            .expect("a strategy without entry maps takes entries its own way");
        e.take(pending, n_values)
    }

    /// Statements that write record `id` of thread `$t` with `fields` (`fields[0]` is [`NOW`]).
    /// `at_once`: other threads' records may depend on it (it creates a handle).
    fn emit(&mut self, id: u32, fields: &[String], at_once: bool) -> Vec<String>;

    /// The statements of one drain (printing stored records off the traced threads' path),
    /// if the strategy drains while tracing.
    fn drain(&self) -> Option<Vec<String>>;

    /// Statements (after END's `#E` line) that print everything the kernel still holds:
    /// records not yet printed, then the entries of calls in flight. Also what `record`'s
    /// dumps print.
    fn dump(&self) -> Vec<String>;

    /// Statements that print the calls in flight and each thread's record count, for
    /// `record`'s hang watch (the flight recorder; None: the log shows them already).
    fn status(&self) -> Option<Vec<String>> {
        None
    }

    /// Whether `record`'s scripts of this strategy keep the progress summary for its hang
    /// watch (crate::compose::progress): the flight recorder's, whose records stay in the
    /// kernel; the others' logs show the progress themselves.
    fn keeps_progress(&self) -> bool {
        false
    }

    /// The maps it uses that `maps` (of [`Strategy::keep_entry`]) does not list.
    fn own_maps(&self) -> Vec<String>;
}
