//! The reading pass's end: events to finished calls. A whole call (one record) is finished at
//! once; a call begun (an in-flight entry, or an old-format entry record) waits, per thread,
//! for its exit. Finished calls are handed to the sink (crate::convert sorts them); what the writers need
//! from the whole log (first and last time, calls per link value, packs) is counted here.

use std::collections::BTreeSet;
use std::io;

use abi_stable::std_types::RStr;
use bthost_plugin_api::{Event, EventKind, Value};
use rustc_hash::{FxHashMap, FxHashSet};

use super::call::{Call, Strings, V};
use crate::symbolize::Symbolizer;

/// A consumer of the finished calls of the reading pass, in the order they finish (the
/// report's gathering, the completion of enqueued work): it sees each call once, as it is
/// finished, and those still in flight when the log ended.
pub trait CallSink {
    /// The calls that follow are of log `log` (of several), written with `packs` (None:
    /// unknown), their names interned in `strings`.
    fn start_log(&mut self, _log: u16, _strings: &mut Strings, _packs: Option<&[String]>) {}
    /// One finished call (or, at the end, one still in flight, with no end).
    fn see(&mut self, c: &Call, strings: &Strings) -> io::Result<()>;
    /// The log's calls in flight when it ended, after its finished calls.
    fn see_in_flight(&mut self, _calls: &[Call], _strings: &Strings) {}
}

impl CallSink for () {
    fn see(&mut self, _: &Call, _: &Strings) -> io::Result<()> {
        Ok(())
    }
}

impl<T: CallSink> CallSink for Option<T> {
    fn start_log(&mut self, log: u16, strings: &mut Strings, packs: Option<&[String]>) {
        if let Some(t) = self {
            t.start_log(log, strings, packs);
        }
    }
    fn see(&mut self, c: &Call, strings: &Strings) -> io::Result<()> {
        match self {
            Some(t) => t.see(c, strings),
            None => Ok(()),
        }
    }
    fn see_in_flight(&mut self, calls: &[Call], strings: &Strings) {
        if let Some(t) = self {
            t.see_in_flight(calls, strings);
        }
    }
}

impl<A: CallSink, B: CallSink> CallSink for (A, B) {
    fn start_log(&mut self, log: u16, strings: &mut Strings, packs: Option<&[String]>) {
        self.0.start_log(log, strings, packs);
        self.1.start_log(log, strings, packs);
    }
    fn see(&mut self, c: &Call, strings: &Strings) -> io::Result<()> {
        self.0.see(c, strings)?;
        self.1.see(c, strings)
    }
    fn see_in_flight(&mut self, calls: &[Call], strings: &Strings) {
        self.0.see_in_flight(calls, strings);
        self.1.see_in_flight(calls, strings);
    }
}

pub struct Collector<S: CallSink = ()> {
    pub strings: Strings,
    /// Fed every finished call (crate::report's gathering, the completion inference).
    pub sink: S,
    /// Calls begun and not yet ended, per (pid, tid), innermost last.
    open: FxHashMap<(u32, u32), Vec<Call>>,
    seq: u64,
    pub t_first: Option<u64>,
    pub t_last: Option<u64>,
    /// Non-instant calls per (link key, value): flows need to know a call's successor.
    pub link_counts: FxHashMap<(u32, u64), u32>,
    /// The packs whose events were seen (string ids).
    packs: FxHashSet<u32>,
    pub symbols: Symbolizer,
    /// Symbolized code addresses, per (pid, address): a string id, or None.
    resolved: FxHashMap<(u32, u64), Option<u32>>,
    /// Names the decoder hands out are interned `&'static str`s: their ids by address, which
    /// spares hashing and comparing their text on every record.
    static_ids: FxHashMap<(usize, usize), u32>,
    ret: u32,
    call: Call,
}

impl<S: CallSink> Collector<S> {
    pub fn new(symbols: Symbolizer, sink: S) -> Collector<S> {
        let mut strings = Strings::default();
        let ret = strings.id("ret");
        Collector {
            strings,
            sink,
            open: FxHashMap::default(),
            seq: 0,
            t_first: None,
            t_last: None,
            link_counts: FxHashMap::default(),
            packs: FxHashSet::default(),
            symbols,
            resolved: FxHashMap::default(),
            static_ids: FxHashMap::default(),
            ret,
            call: Call::default(),
        }
    }

    /// The packs whose events were seen.
    pub fn packs(&self) -> BTreeSet<&str> {
        self.packs.iter().map(|&p| self.strings.get(p)).collect()
    }

    pub fn push(&mut self, e: &Event) -> io::Result<()> {
        let pack = self.name_id(e.pack);
        self.packs.insert(pack);
        let name = self.name_id(e.name);
        let mut c = std::mem::take(&mut self.call);
        c.args.clear();
        c.results.clear();
        c.links.clear();
        c.pid = e.pid;
        c.tid = e.tid;
        c.name = name;
        c.instant = e.kind == EventKind::Instant;
        match e.kind {
            EventKind::Complete | EventKind::Instant => {
                c.start = Some(e.ts);
                c.end = Some(e.ts + if c.instant { 0 } else { e.dur });
                // A whole call carries its return value among its fields.
                for a in e.args.iter() {
                    let v = self.value(e.pid, &a.value);
                    let n = self.name_id(a.name);
                    if n == self.ret {
                        c.results.push((n, v));
                    } else {
                        c.args.push((n, v));
                    }
                }
                self.links(e, &mut c);
                self.finish_call(&mut c)?;
            }
            EventKind::Begin => {
                c.start = Some(e.ts);
                c.end = None;
                for a in e.args.iter() {
                    let v = self.value(e.pid, &a.value);
                    c.args.push((self.name_id(a.name), v));
                }
                self.links(e, &mut c);
                self.open.entry((e.pid, e.tid)).or_default().push(c.clone());
            }
            EventKind::End => {
                let stack = self.open.entry((e.pid, e.tid)).or_default();
                match stack.iter().rposition(|o| o.name == name) {
                    Some(p) => {
                        // Calls opened after it and never closed lost their exits.
                        let mut later = stack.split_off(p + 1);
                        let mut begun = stack.pop().expect("position found");
                        for mut o in later.drain(..) {
                            self.finish_call(&mut o)?;
                        }
                        begun.end = Some(e.ts);
                        for a in e.args.iter() {
                            let v = self.value(e.pid, &a.value);
                            begun.results.push((self.name_id(a.name), v));
                        }
                        for l in e.links.iter() {
                            let l = (self.name_id(l.key), l.value);
                            if !begun.links.contains(&l) {
                                begun.links.push(l);
                            }
                        }
                        self.finish_call(&mut begun)?;
                    }
                    None => {
                        c.start = None;
                        c.end = Some(e.ts);
                        for a in e.args.iter() {
                            let v = self.value(e.pid, &a.value);
                            c.results.push((self.name_id(a.name), v));
                        }
                        self.links(e, &mut c);
                        self.finish_call(&mut c)?;
                    }
                }
            }
        }
        self.call = c;
        Ok(())
    }

    /// The log ended: calls still open are finished as unfinished, and returned (by process
    /// and thread, outermost first): where the program was when tracing stopped.
    pub fn finish(&mut self) -> io::Result<Vec<Call>> {
        let mut keys: Vec<(u32, u32)> = self.open.keys().copied().collect();
        keys.sort_unstable();
        let mut in_flight = Vec::new();
        for k in keys {
            for mut c in self.open.remove(&k).unwrap_or_default() {
                self.finish_call(&mut c)?;
                in_flight.push(c);
            }
        }
        Ok(in_flight)
    }

    fn name_id(&mut self, s: RStr<'static>) -> u32 {
        let key = (s.as_ptr() as usize, s.len());
        if let Some(&id) = self.static_ids.get(&key) {
            return id;
        }
        let id = self.strings.id(s.as_str());
        self.static_ids.insert(key, id);
        id
    }

    fn links(&mut self, e: &Event, c: &mut Call) {
        for l in e.links.iter() {
            c.links.push((self.name_id(l.key), l.value));
        }
    }

    fn value(&mut self, pid: u32, v: &Value) -> V {
        if let Value::CodeAddr(addr) = *v {
            // `function+0xoff (0xaddr)` when the process's map and the file's symbols say.
            // The symbolizer counts every occurrence; a repeated address is answered here,
            // without asking it again, and counted the same way.
            let sym = match self.resolved.get(&(pid, addr)) {
                Some(&s) => {
                    match s {
                        Some(_) => self.symbols.resolved += 1,
                        None => self.symbols.unresolved += 1,
                    }
                    s
                }
                None => {
                    let s = self
                        .symbols
                        .resolve(pid, addr)
                        .map(|sym| self.strings.id(&format!("{sym} ({addr:#x})")));
                    self.resolved.insert((pid, addr), s);
                    s
                }
            };
            return sym.map_or(V::Code(addr), V::Str);
        }
        if let Value::Enum { raw, name } = *v {
            return V::Enum {
                raw,
                name: self.name_id(name),
            };
        }
        V::from_value(v, &mut self.strings)
    }

    fn finish_call(&mut self, c: &mut Call) -> io::Result<()> {
        // Arrival order, fixed when the call is finished: the sort's last tie-break.
        self.seq += 1;
        c.seq = self.seq;
        for t in [c.start, c.end].into_iter().flatten() {
            self.t_first = Some(self.t_first.map_or(t, |f| f.min(t)));
            self.t_last = Some(self.t_last.map_or(t, |l| l.max(t)));
        }
        if !c.instant {
            for l in c.flow_links() {
                *self.link_counts.entry(l).or_insert(0) += 1;
            }
        }
        self.sink.see(c, &self.strings)
    }
}
