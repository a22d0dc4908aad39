//! From log lines to events: the schema from the header, the generic decoding every record
//! gets from it, then the pack's plugin decoder, if it has one.

mod generic;
mod intern;
mod reorder;

use std::collections::HashMap;
use std::path::Path;

use abi_stable::std_types::{RResult, RSlice, RStr, RVec};
use bthost_plugin_api::{Arg, DecoderBox, DecoderConfig, Event, Phase, Record};
use rustc_hash::FxHashMap;

use crate::compose::schema::{Schema, SchemaBuilder};
use crate::log::line::record_numbers;
use crate::log::{classify, Diagnostics, LineKind, Severity};
use crate::registry::Registry;
pub use generic::empty_event;
use generic::RecordPlan;

/// Why a log cannot be decoded at all.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {msg}")]
pub struct FatalError {
    pub file: String,
    pub line: u64,
    pub msg: String,
}

/// What a whole log held, beyond its events.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub lines: u64,
    pub records: u64,
    pub events: u64,
    pub lost_events: u64,
    pub attached_probes: Option<u64>,
    pub threads: u64,
    /// When tracing stopped: the time on the END line (log format 2), if the log has it.
    pub stopped_at: Option<u64>,
    /// Records that never reached the log (format 3: gaps in a thread's record numbers).
    pub lost_records: u64,
    /// Flight recorder: a thread's older records, dropped by the ring as it should.
    pub overwritten: u64,
    /// The clock anchors `record` wrote (where the log sits in time; crate::log::anchor).
    pub anchors: Vec<crate::log::anchor::Anchor>,
    /// Tracing stopped early (`#Q`: bpftrace exited or was killed): when, and why.
    pub stopped_early: Option<(u64, String)>,
    /// Tracing stopped and started again (`#G`, `record --restart`): from, to, why.
    pub gaps: Vec<(u64, u64, String)>,
}

struct PackState {
    decoder: Option<DecoderBox>,
}

/// Decodes a log line by line. Feed lines with [`LogDecoder::feed`], then call [`LogDecoder::finish`].
pub struct LogDecoder<'r> {
    registry: &'r Registry,
    file: String,
    expect_schema: Option<u64>,
    building: Option<SchemaBuilder>,
    schema: Option<Schema>,
    /// The header's log format (crate::compose::schema::FORMAT), once read.
    format: u32,
    /// The tid and time of the last line if it was a record: what a continuation line
    /// (format 2) that follows it is relative to.
    prev: Option<(u64, u64)>,
    plans: Vec<RecordPlan>,
    // Fx: looked up on every record (SipHash showed in profiles of the converter).
    packs: FxHashMap<String, PackState>,
    /// Looked up on every record (its pid): Fx, not SipHash (2% of a conversion's samples).
    threads: FxHashMap<u32, (u32, String)>,
    /// Entries of calls in flight read back from dumps (END's, a drain's, a flight-recorder
    /// dump's), by (tid, entry time), with their line, record id and numbers. Held until the
    /// call's record comes (then it is a whole call, and the entry is dropped) or the log
    /// ends (then it is a call begun and never ended): a call that a drain saw waiting is one
    /// call, not a begin and an end. One per open call: bounded.
    deferred: FxHashMap<(u32, u64), (u64, u32, Vec<u64>)>,
    /// The entry time of each thread's last returned call, per (tid, call record id): the
    /// script leaves a returned call's entry in its map, so END prints it with the calls in
    /// flight; this tells them apart. One per thread and probe: bounded.
    returned: FxHashMap<(u32, u32), u64>,
    /// Decoders given by the caller (tests of a plugin's decoder, in process), by pack.
    given: HashMap<String, DecoderBox>,
    /// Traced processes that exited (`#P`): (pid, time, exit code), handed out at the end as
    /// instants (they come before their processes' last drained records).
    exits: Vec<(u32, u64, u64)>,
    pub diag: Diagnostics,
    pub stats: Stats,
    /// The events of the last line fed; their allocations are reused for the next record.
    out: RVec<Event>,
    /// Whether `out` holds the last line's events (else they are stale storage).
    out_valid: bool,
    /// Format 3: stored records waiting to be released in time order.
    reorder: reorder::Reorder,
    /// The events of several records released at once (a drain's mark, the end).
    batch: RVec<Event>,
    batch_valid: bool,
    /// Reused buffers: a record's numbers, the fields handed to a plugin.
    nums: Vec<u64>,
    fields: Vec<Arg>,
}

impl<'r> LogDecoder<'r> {
    /// `expect_schema`: refuse a log whose schema hash differs (from `--schema FILE`).
    pub fn new(registry: &'r Registry, file: &Path, expect_schema: Option<u64>) -> Self {
        LogDecoder {
            registry,
            file: file.display().to_string(),
            expect_schema,
            building: None,
            schema: None,
            format: 0,
            prev: None,
            plans: Vec::new(),
            packs: FxHashMap::default(),
            threads: FxHashMap::default(),
            given: HashMap::new(),
            exits: Vec::new(),
            deferred: FxHashMap::default(),
            returned: FxHashMap::default(),
            diag: Diagnostics::new(file.to_path_buf()),
            stats: Stats::default(),
            out: RVec::new(),
            out_valid: false,
            reorder: reorder::Reorder::default(),
            batch: RVec::new(),
            batch_valid: false,
            nums: Vec::with_capacity(crate::log::line::MAX_NUMS),
            fields: Vec::new(),
        }
    }

    /// The events decoded from the last line fed (or by [`LogDecoder::finish`]); valid until
    /// the next call.
    pub fn events(&self) -> &[Event] {
        if self.batch_valid {
            &self.batch
        } else if self.out_valid {
            &self.out
        } else {
            &[]
        }
    }

    /// The events of the last line fed, lent out to be changed in place (or swapped with
    /// events read earlier, whose allocations the decoder then reuses: no copy of an event to
    /// hand it on); [`LogDecoder::return_events`] gives them back before the next line.
    pub fn take_events(&mut self) -> RVec<Event> {
        if self.batch_valid {
            std::mem::take(&mut self.batch)
        } else if self.out_valid {
            std::mem::take(&mut self.out)
        } else {
            RVec::new()
        }
    }

    /// Gives back what [`LogDecoder::take_events`] lent, to where it came from.
    pub fn return_events(&mut self, events: RVec<Event>) {
        if self.batch_valid {
            self.batch = events;
        } else if self.out_valid {
            self.out = events;
        }
    }

    /// Uses `decoder` for `pack` instead of its plugin (call before feeding the header).
    pub fn give_decoder(&mut self, pack: &str, decoder: DecoderBox) {
        self.given.insert(pack.to_string(), decoder);
    }

    pub fn schema(&self) -> Option<&Schema> {
        self.schema.as_ref()
    }

    /// The process id and name of a thread, as its `T` line said.
    pub fn thread(&self, tid: u32) -> Option<&(u32, String)> {
        self.threads.get(&tid)
    }

    pub fn threads(&self) -> &FxHashMap<u32, (u32, String)> {
        &self.threads
    }

    fn fatal(&self, line: u64, msg: impl Into<String>) -> FatalError {
        FatalError {
            file: self.file.clone(),
            line,
            msg: msg.into(),
        }
    }

    /// Feeds one line (without its newline; invalid UTF-8 already replaced); its decoded
    /// events are then in [`LogDecoder::events`].
    pub fn feed(&mut self, lineno: u64, line: &str) -> Result<(), FatalError> {
        self.out_valid = false;
        if self.batch_valid {
            self.batch.clear();
            self.batch_valid = false;
        }
        self.stats.lines = lineno;
        // A continuation line continues the line just before it, if that was a record.
        let prev = self.prev.take();
        match classify(line) {
            LineKind::Blank => {}
            LineKind::Header(h) => {
                if self.schema.is_some() || self.building.is_some() {
                    return Err(self.fatal(lineno, "a second #bthost header: two logs were concatenated; convert them one by one"));
                }
                self.building = Some(SchemaBuilder::header(h).map_err(|e| self.fatal(lineno, e))?);
            }
            LineKind::SchemaRecord(s) => match self.building.as_mut() {
                Some(b) => b.record_line(s).map_err(|e| self.fatal(lineno, e))?,
                None => self.diag.add(
                    "garbage lines",
                    Severity::Warning,
                    lineno,
                    "skipped: a #S schema line after the header ended",
                ),
            },
            LineKind::Thread { pid, tid, comm } => {
                self.end_header(lineno)?;
                // Each outermost-only pack prints its own `T` line for a thread.
                let known = self
                    .threads
                    .get(&tid)
                    .is_some_and(|t| t.0 == pid && t.1 == comm);
                if !known && self.threads.insert(tid, (pid, comm.to_string())).is_none() {
                    self.stats.threads += 1;
                }
            }
            LineKind::Stored { seq, id, nums } => {
                self.end_header(lineno)?;
                self.need_schema(lineno)?;
                self.reorder.push(lineno, seq, id, nums);
            }
            LineKind::Drained(time) => self.release(Some(time), false),
            LineKind::Anchor(a) => match crate::log::anchor::Anchor::parse(a) {
                Ok(a) => self.stats.anchors.push(a),
                Err(why) => self.diag.add(
                    "garbage lines",
                    Severity::Warning,
                    lineno,
                    format!("skipped: {why}"),
                ),
            },
            LineKind::StoppedEarly { time, why } => {
                // The calls still open were open when tracing stopped, here.
                self.stats.stopped_at = self.stats.stopped_at.or(Some(time));
                self.stats.stopped_early = Some((time, why.to_string()));
                self.diag.add(
                    "tracing stopped early",
                    Severity::Warning,
                    lineno,
                    format!(
                        "tracing stopped early: {why}; the log has what was written before (no \
                         last dump: calls in flight then, and records still in the kernel, are \
                         not in it)"
                    ),
                );
            }
            LineKind::Gap { from, to, why } => {
                // The dead bpftrace's records have all come; the new one numbers each thread's
                // records from 1 again, and knows nothing of the calls returned before.
                self.release(None, true);
                self.reorder.restart();
                self.returned.clear();
                self.stats.gaps.push((from, to, why.to_string()));
                self.diag.add(
                    "tracing gaps",
                    Severity::Warning,
                    lineno,
                    format!(
                        "tracing stopped for {:.1} s and started again: {why}; calls made in \
                         the gap are not in the log, and calls open at its start may show no end",
                        to.saturating_sub(from) as f64 / 1e9
                    ),
                );
            }
            LineKind::RecordCount { tid, n } => self.reorder.count(tid, n),
            LineKind::Record { id, rest } => {
                self.end_header(lineno)?;
                self.need_schema(lineno)?;
                let mut nums = std::mem::take(&mut self.nums);
                match record_numbers(rest, &mut nums) {
                    Ok(()) => self.written(lineno, id, &mut nums),
                    Err(why) => self.diag.add(
                        "garbage lines",
                        Severity::Warning,
                        lineno,
                        format!("skipped: {why}"),
                    ),
                }
                self.nums = nums;
            }
            LineKind::Continuation { id, rest } => {
                self.end_header(lineno)?;
                if let Err(why) = self.continuation(lineno, id, rest, prev) {
                    self.diag.add(
                        "garbage lines",
                        Severity::Warning,
                        lineno,
                        format!("skipped: {why}"),
                    );
                }
            }
            LineKind::Attaching(n) => self.stats.attached_probes = Some(n),
            LineKind::ProcessExit { pid, time, code } => {
                if self.exits.len() < MAX_EXITS {
                    self.exits.push((pid, time, code));
                }
            }
            LineKind::End(time) => self.stats.stopped_at = time.or(self.stats.stopped_at),
            LineKind::Lost(n) => {
                self.stats.lost_events += n;
                self.diag.add(
                    "events lost by bpftrace",
                    Severity::Warning,
                    lineno,
                    format!("bpftrace lost {n} events here (its output buffer was full); calls around this point may be unmatched"),
                );
            }
            LineKind::BpftraceMessage(m) => {
                let benign = m.contains("uprobe_events")
                    || m.contains("failed to detach")
                    || m.contains("RLIMIT_MEMLOCK");
                let (cat, sev) = if benign {
                    ("bpftrace messages (harmless)", Severity::Note)
                } else {
                    ("bpftrace errors", Severity::Warning)
                };
                self.diag.add(cat, sev, lineno, format!("bpftrace: {m}"));
            }
            LineKind::Pending { id, mut nums, .. } => {
                self.end_header(lineno)?;
                // Start 0: an entry closed by its exit (bpftrace before 0.19 cannot delete it).
                let start = nums.get(1).copied().unwrap_or(0);
                if self.schema.is_some() && start != 0 && !self.returned(id, &mut nums) {
                    let key = (nums[0] as u32, start);
                    self.deferred.entry(key).or_insert((lineno, id, nums));
                }
            }
            LineKind::Held { id, mut nums } => {
                // A returned call's record the thread was holding (compose::pairing): it
                // precedes the thread's in-flight entries in the dump, as in the thread's life.
                self.end_header(lineno)?;
                if self.schema.is_some() {
                    self.to_start(id, &mut nums);
                    self.record(lineno, id, &nums);
                }
            }
            LineKind::MapDump(m) => {
                self.diag.add(
                    "bpftrace map dumps",
                    Severity::Note,
                    lineno,
                    format!("bpftrace printed a map: {m}"),
                );
            }
            LineKind::Garbage(why) => {
                self.diag.add(
                    "garbage lines",
                    Severity::Warning,
                    lineno,
                    format!("skipped: {why}"),
                );
            }
        }
        Ok(())
    }

    fn need_schema(&self, lineno: u64) -> Result<(), FatalError> {
        if self.schema.is_none() {
            return Err(self.fatal(
                lineno,
                "a record before any #bthost header: this log was not written by a script from `bthost build` \
                 (or its first lines are missing)",
            ));
        }
        Ok(())
    }

    /// Decodes the stored records written before `before` (all with None), in time order,
    /// into the batch of events. A record whose thread's `T` line has not come yet waits for
    /// a later release (bpftrace 0.17 keeps a CPU's output in that CPU's buffer until it fills
    /// or the poll finds it: a thread's `T` line, printed at its first call on one CPU, was
    /// seen to come seconds after a drain had printed the thread's records from another; read
    /// at once, their process was unknown). With `all`, every record goes.
    fn release(&mut self, before: Option<u64>, all: bool) {
        if self.reorder.is_empty() {
            return;
        }
        let ring = matches!(
            self.schema.as_ref().map(|s| s.storage),
            Some(crate::compose::schema::Storage::Ring { .. })
        );
        let released = self.reorder.release(before);
        let mut waiting = 0;
        for mut h in released {
            if !all && !self.threads.contains_key(&h.tid) && waiting < MAX_WAITING_FOR_THREAD {
                waiting += 1;
                self.reorder.hold_again(h);
                continue;
            }
            match self.reorder.check(&h) {
                reorder::Verdict::Again => continue,
                reorder::Verdict::Next => {}
                reorder::Verdict::Gap { first, missing } => {
                    self.missing(h.line, h.tid, first, missing, ring);
                }
            }
            self.to_start(h.id, &mut h.nums);
            self.record_into_batch(h.line, h.id, &h.nums);
        }
        self.batch_valid = true;
    }

    /// Decodes a record whose events join others of the same line (a release, the end).
    fn record_into_batch(&mut self, line: u64, id: u32, nums: &[u64]) {
        self.record(line, id, nums);
        if self.out_valid {
            self.batch.extend(self.out.drain(..));
            self.out_valid = false;
        }
    }

    /// Records `missing` of thread `tid`, from number `first`, never came: lost in the kernel,
    /// or (the ring) overwritten.
    fn missing(&mut self, line: u64, tid: u32, first: u64, missing: u64, ring: bool) {
        // Saturating: a damaged line can claim any number.
        if ring {
            self.stats.overwritten = self.stats.overwritten.saturating_add(missing);
            return;
        }
        self.stats.lost_records = self.stats.lost_records.saturating_add(missing);
        self.diag.add(
            "records lost in the kernel",
            Severity::Warning,
            line,
            format!(
                "thread {tid}: {missing} records (numbers {first} to {}) never reached the log: \
                 a map was full (raise `record --map-keys`, or drain more often with --drain-ms)",
                first.saturating_add(missing - 1)
            ),
        );
    }

    /// Closes the header at the first non-header line: checks the schema against the packs.
    fn end_header(&mut self, lineno: u64) -> Result<(), FatalError> {
        let Some(b) = self.building.take() else {
            return Ok(());
        };
        self.format = b.format;
        let schema = b.finish().map_err(|e| self.fatal(lineno, e))?;
        if let Some(want) = self.expect_schema {
            let got = schema.hash();
            if got != want {
                return Err(self.fatal(
                    1,
                    format!("this log is from another script: its schema is {got:016x}, the given schema is {want:016x}"),
                ));
            }
        }
        for (name, version) in &schema.packs {
            let Some(entry) = self.registry.entries.get(name) else {
                return Err(self.fatal(
                    1,
                    format!("the log was written with pack {name} {version}, which is not installed here (add its folder with --pack-path)"),
                ));
            };
            let have = &entry.pack.version;
            let compatible =
                have.major == version.major && (have.major != 0 || have.minor == version.minor);
            if !compatible {
                return Err(self.fatal(
                    1,
                    format!("the log was written with pack {name} {version}, but the installed pack is {have} (incompatible)"),
                ));
            }
            let decoder = match (self.given.remove(name), &entry.plugin) {
                (Some(d), _) => Some(d),
                (None, None) => None,
                (None, Some(p)) => {
                    let cfg = DecoderConfig {
                        log_pack_version: version.to_string().into(),
                    };
                    match (p.module.new_decoder())(&cfg) {
                        RResult::ROk(d) => Some(d),
                        RResult::RErr(e) => {
                            return Err(self.fatal(
                                1,
                                format!("plugin {} refused this log: {e}", p.path.display()),
                            ))
                        }
                    }
                }
            };
            self.packs.insert(name.clone(), PackState { decoder });
        }
        self.plans = schema
            .records
            .iter()
            .map(|r| RecordPlan::new(r, self.registry.entries.get(&r.pack).map(|e| &e.pack)))
            .collect();
        self.schema = Some(schema);
        Ok(())
    }

    /// A continuation line (`+<id> <delta> ...`, format 2): the record of the line before it
    /// in the same printf (`prev`: that line's tid and time), back to a whole record.
    fn continuation(
        &mut self,
        lineno: u64,
        id: u32,
        rest: &str,
        prev: Option<(u64, u64)>,
    ) -> Result<(), String> {
        if self.schema.is_none() || self.format < 2 {
            return Err(
                "a continuation line (`+<id> ...`) in a log whose header is not format 2".into(),
            );
        }
        let Some((tid, ts)) = prev else {
            return Err("a continuation line whose first line is missing or damaged".into());
        };
        let mut nums = std::mem::take(&mut self.nums);
        let parsed = record_numbers(rest, &mut nums);
        if parsed.is_ok() {
            // The first line's tid; its time plus the delta.
            nums.insert(0, tid);
            if let Some(t) = nums.get_mut(1) {
                *t = ts.wrapping_add(*t);
            }
            self.written(lineno, id, &mut nums);
        }
        self.nums = nums;
        parsed
    }

    /// A record line as the script wrote it (`tid, time, ...`; a continuation already made
    /// whole): what a continuation line that follows it is relative to, then decoded.
    fn written(&mut self, lineno: u64, id: u32, nums: &mut [u64]) {
        if let [tid, ts, ..] = *nums {
            self.prev = Some((tid, ts));
        }
        self.to_start(id, nums);
        self.record(lineno, id, nums);
    }

    /// Format 2 writes a call's exit time where format 1 wrote its start: back to the start
    /// (`exit - dur`), which every later step expects. An entry not seen (format 2 writes
    /// `dur` = the exit time) gives 0, "not seen", as format 1 wrote it.
    fn to_start(&self, id: u32, nums: &mut [u64]) {
        if self.format < 2 {
            return;
        }
        let call = id
            .checked_sub(1)
            .and_then(|i| self.plans.get(i as usize))
            .is_some_and(|p| p.phase == Phase::Call);
        if let (true, [_, ts, dur, ..]) = (call, nums) {
            *ts = ts.saturating_sub(*dur);
        }
    }

    /// Whether a dumped entry (`@e<id>[tid]: (ts, ...)`) is that of a call that returned;
    /// drops the trailing values the script keeps in the entry for the exit (output pointers).
    fn returned(&self, id: u32, nums: &mut Vec<u64>) -> bool {
        let (Some(&tid), Some(&ts)) = (nums.first(), nums.get(1)) else {
            return false;
        };
        if let Some(plan) = id.checked_sub(1).and_then(|i| self.plans.get(i as usize)) {
            nums.truncate(2 + plan.width());
        }
        id.checked_sub(1)
            .and_then(|call| self.returned.get(&(tid as u32, call)))
            == Some(&ts)
    }

    fn record(&mut self, lineno: u64, id: u32, nums: &[u64]) {
        let Some(plan) = id.checked_sub(1).and_then(|i| self.plans.get(i as usize)) else {
            self.diag.add(
                "unknown record ids",
                Severity::Warning,
                lineno,
                format!(
                    "record id {id:x} is not in the schema (which has {} records)",
                    self.plans.len()
                ),
            );
            return;
        };
        let tid = nums.first().copied().unwrap_or(0) as u32;
        let pid = self.threads.get(&tid).map_or(0, |t| t.0);
        // Reuse the first event's allocations: a plugin may have taken it, or added others.
        self.out.truncate(1);
        if self.out.is_empty() {
            self.out.push(generic::empty_event());
        }
        let raw_ts = match plan.decode_into(pid, nums, &mut self.out[0]) {
            Ok(t) => t,
            Err(why) => {
                self.diag.add(
                    "malformed records",
                    Severity::Warning,
                    lineno,
                    format!("{} {}: {why}", plan.function, plan.phase_name()),
                );
                return;
            }
        };
        let phase = plan.phase;
        if phase == Phase::Call && raw_ts != 0 {
            self.returned.insert((tid, id), raw_ts);
            // A dump saw this call in flight: it has ended since.
            self.deferred.remove(&(tid, raw_ts));
        }
        self.stats.records += 1;
        let dur = if phase == Phase::Call {
            self.out[0].dur
        } else {
            0
        };
        // Only a pack with a plugin needs the record: build it (and copy the fields the
        // draft event also holds) for those alone, not on every record of the log.
        if let Some(PackState { decoder: Some(d) }) = self.packs.get_mut(plan.pack) {
            self.fields.clear();
            self.fields.extend(self.out[0].args.iter().cloned());
            let rec = Record {
                line: lineno,
                probe: RStr::from_str(plan.function),
                phase,
                pid,
                tid,
                ts: raw_ts,
                dur,
                fields: RSlice::from_slice(&self.fields),
            };
            if let RResult::RErr(e) = d.on_record(&rec, &mut self.out) {
                self.diag.add(
                    "plugin messages",
                    Severity::Warning,
                    lineno,
                    format!("{}: {e}", plan.pack),
                );
            }
        }
        self.stats.events += self.out.len() as u64;
        self.out_valid = true;
    }

    /// The log ended: checks it had a header, and collects what decoders still hold.
    /// Their events are then in [`LogDecoder::events`].
    pub fn finish(&mut self) -> Result<(), FatalError> {
        self.out_valid = false;
        self.batch.clear();
        self.batch_valid = false;
        let last = self.stats.lines;
        self.end_header(last)?;
        if self.schema.is_none() {
            return Err(self.fatal(
                last.max(1),
                "no #bthost header: this is not a log written by a script from `bthost build`",
            ));
        }
        // Stored records after the last mark (a log cut short), then those the counts miss.
        self.release(None, true);
        // The calls still in flight, in the order they began.
        let mut open: Vec<_> = self.deferred.drain().collect();
        open.sort_unstable_by_key(|&((tid, ts), _)| (ts, tid));
        for (_, (line, id, nums)) in open {
            self.record_into_batch(line, id, &nums);
        }
        for (tid, first, missing) in self.reorder.short_threads() {
            // The ring keeps a thread's newest records: missing ones at its end were lost.
            self.missing(last, tid, first, missing, false);
        }
        self.out.clear();
        // The processes that exited: an instant on each one's main thread.
        self.exits.sort_unstable_by_key(|e| (e.1, e.0));
        for &(pid, time, code) in &self.exits {
            self.out.push(process_exit(pid, time, code));
        }
        self.stats.events += self.exits.len() as u64;
        // In pack order, so that the same log always gives the same events.
        let mut names: Vec<&String> = self.packs.keys().collect();
        names.sort();
        let names: Vec<String> = names.into_iter().cloned().collect();
        for name in names {
            if let Some(d) = self.packs.get_mut(&name).and_then(|st| st.decoder.as_mut()) {
                let before = self.out.len();
                d.finish(&mut self.out);
                self.stats.events += (self.out.len() - before) as u64;
            }
        }
        self.batch.extend(self.out.drain(..));
        self.batch_valid = true;
        Ok(())
    }
}

/// Stored records held back until their thread's `T` line comes, at most (past it, they are
/// decoded without their process rather than held without bound).
const MAX_WAITING_FOR_THREAD: usize = 1 << 20;

/// Process exits kept per log (a system-wide recording of a long job sees many).
const MAX_EXITS: usize = 1 << 16;

/// The name of the instant that says a traced process exited (not a C name: no pack's call
/// can have it). The report reads it (crate::report::gather).
pub const PROCESS_EXIT: &str = "process exit";

/// A traced process's exit, as an instant on its main thread: its exit status and the signal
/// that ended it (the kernel's exit code, `status << 8 | signal`).
fn process_exit(pid: u32, time: u64, code: u64) -> Event {
    use abi_stable::std_types::{RStr, RVec};
    use bthost_plugin_api::{Arg, EventKind, Value};
    let mut args = RVec::new();
    args.push(Arg {
        name: RStr::from("status"),
        value: Value::Int(((code >> 8) & 0xff) as i64),
    });
    args.push(Arg {
        name: RStr::from("signal"),
        value: Value::Int((code & 0x7f) as i64),
    });
    Event {
        kind: EventKind::Instant,
        pid,
        tid: pid,
        ts: time,
        dur: 0,
        name: RStr::from(PROCESS_EXIT),
        pack: RStr::from("bthost"),
        args,
        links: RVec::new(),
    }
}
