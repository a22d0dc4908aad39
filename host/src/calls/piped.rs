//! The reading pass on two threads: one reads and decodes the log's lines into events
//! ([`for_each_event`]), the other hands them, in the same order, to the consumer (the call
//! model and its sinks: sorting, the device side, the report's gathering).
//!
//! The events cross over flattened: each batch is three contiguous vectors (the events'
//! fixed fields, all their arguments, all their links), copied into on the decoding thread
//! and rebuilt from into one event of the consumer's own. Handing the decoder's events over
//! themselves (swapped into batch slots, their argument vectors scattered on the heap) made
//! each side read and write memory last touched on the other core: `report` on the 268 MB
//! bench log took 5.8 G samples on two threads against 3.8 G on one, the consumer's reading
//! of argument values alone 13 times its cost on one thread. Contiguous copies stream from
//! one core's cache to the other's.

use std::path::Path;
use std::sync::mpsc::sync_channel;

use abi_stable::std_types::RStr;
use anyhow::{anyhow, Result};
use bthost_plugin_api::{Arg, Event, EventKind, Link};

use super::{for_each_event, Decoded};
use crate::registry::Registry;

/// Events per batch handed over, and batches in flight: a few MB at most.
const BATCH: usize = 1024;
const IN_FLIGHT: usize = 4;

/// An event's fixed fields.
struct Head {
    kind: EventKind,
    pid: u32,
    tid: u32,
    ts: u64,
    dur: u64,
    name: RStr<'static>,
    pack: RStr<'static>,
    /// How many of the batch's arguments and links are its (they follow the previous
    /// event's).
    args: u32,
    links: u32,
}

/// Events, flattened.
#[derive(Default)]
struct Batch {
    heads: Vec<Head>,
    args: Vec<Arg>,
    links: Vec<Link>,
}

impl Batch {
    /// Moves `e`'s arguments and links into the batch (no clone: a string value's
    /// allocation goes with it); the decoder reuses the emptied vectors.
    fn push(&mut self, e: &mut Event) {
        let (args, links) = (e.args.len() as u32, e.links.len() as u32);
        self.args.extend(e.args.drain(..));
        self.links.extend(e.links.drain(..));
        self.heads.push(Head {
            kind: e.kind,
            pid: e.pid,
            tid: e.tid,
            ts: e.ts,
            dur: e.dur,
            name: e.name,
            pack: e.pack,
            args,
            links,
        });
    }

    /// Each event, rebuilt in `e` (its vectors reused, the batch's arguments and links moved
    /// into them), to `each`. Leaves the batch empty.
    fn each(&mut self, e: &mut Event, each: &mut impl FnMut(&Event) -> Result<()>) -> Result<()> {
        let mut args = self.args.drain(..);
        let mut links = self.links.drain(..);
        for h in &self.heads {
            e.kind = h.kind;
            e.pid = h.pid;
            e.tid = h.tid;
            e.ts = h.ts;
            e.dur = h.dur;
            e.name = h.name;
            e.pack = h.pack;
            e.args.clear();
            e.args.extend(args.by_ref().take(h.args as usize));
            e.links.clear();
            e.links.extend(links.by_ref().take(h.links as usize));
            each(e)?;
        }
        drop((args, links));
        self.heads.clear();
        Ok(())
    }
}

/// [`for_each_event`] with the decoding on a thread of its own; `each` sees every event, in
/// log order, on the calling thread, after `place` (on the decoding thread) put it where the
/// conversion wants it (several logs' numbering and timeline).
pub fn for_each_event_piped(
    registry: &Registry,
    log: &Path,
    expect_schema: Option<u64>,
    place: impl Fn(&mut Event) + Send,
    mut each: impl FnMut(&Event) -> Result<()>,
) -> Result<Decoded> {
    std::thread::scope(|scope| {
        // Full batches, and the read ones handed back.
        let (tx, rx) = sync_channel::<Batch>(IN_FLIGHT);
        let (back_tx, back_rx) = sync_channel::<Batch>(IN_FLIGHT + 1);
        let decoding = scope.spawn(move || {
            let mut batch = Batch::default();
            let decoded = for_each_event(registry, log, expect_schema, Vec::new(), |_, e| {
                place(e);
                batch.push(e);
                if batch.heads.len() == BATCH {
                    let empty = back_rx.try_recv().unwrap_or_default();
                    let full = std::mem::replace(&mut batch, empty);
                    // Closed: the consumer failed, and says why.
                    tx.send(full).map_err(|_| anyhow!("the reading stopped"))?;
                }
                Ok(())
            });
            let _ = tx.send(batch);
            decoded
        });
        let mut failed = None;
        let mut event = crate::decode::empty_event();
        while let Ok(mut batch) = rx.recv() {
            if let Err(e) = batch.each(&mut event, &mut each) {
                failed = Some(e);
                break;
            }
            // Gone: the decoding has ended.
            let _ = back_tx.try_send(batch);
        }
        drop(rx);
        let decoded = decoding
            .join()
            .unwrap_or_else(|_| Err(anyhow!("the log's decoding panicked")));
        match failed {
            Some(e) => Err(e),
            None => decoded,
        }
    })
}

/// Every event of `log`, in log order, to `each` on the calling thread: with `jobs` > 1 the
/// decoding runs beside it ([`for_each_event_piped`]), else on this thread too, each event
/// placed where the decoder has it. The same events either way.
pub fn read_events(
    registry: &Registry,
    log: &Path,
    expect_schema: Option<u64>,
    jobs: usize,
    place: impl Fn(&mut Event) + Send,
    mut each: impl FnMut(&Event) -> Result<()>,
) -> Result<Decoded> {
    if jobs > 1 {
        return for_each_event_piped(registry, log, expect_schema, place, each);
    }
    for_each_event(registry, log, expect_schema, Vec::new(), |_, e| {
        place(e);
        each(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi_stable::std_types::RString;
    use bthost_plugin_api::Value;

    /// Events of every kind, with and without arguments and links, and an owned string
    /// value, come out of a batch as they went in, in order, though the event they are
    /// rebuilt in held another's arguments before.
    #[test]
    fn a_batch_gives_back_the_events_it_was_given() {
        let event = |i: u32| Event {
            kind: [
                EventKind::Begin,
                EventKind::End,
                EventKind::Complete,
                EventKind::Instant,
            ][i as usize % 4],
            pid: 100 + i,
            tid: 200 + i,
            ts: 1000 * u64::from(i),
            dur: u64::from(i),
            name: RStr::from(["hipMemcpy", "ncclAllReduce"][i as usize % 2]),
            pack: RStr::from("hip"),
            args: (0..i % 3)
                .map(|k| Arg {
                    name: RStr::from("size"),
                    value: match k {
                        0 => Value::Str(RString::from(format!("kernel-{i}"))),
                        _ => Value::Hex(u64::from(i) << 20),
                    },
                })
                .collect(),
            links: (0..i % 2)
                .map(|_| Link {
                    key: RStr::from("stream"),
                    value: u64::from(i),
                })
                .collect(),
        };
        let mut batch = Batch::default();
        for i in 0..10 {
            let mut e = event(i);
            batch.push(&mut e);
            assert!(e.args.is_empty() && e.links.is_empty(), "moved, not cloned");
        }
        let mut seen = Vec::new();
        let mut e = event(5);
        batch
            .each(&mut e, &mut |e: &Event| {
                seen.push(e.clone());
                Ok(())
            })
            .unwrap();
        let want: Vec<Event> = (0..10).map(event).collect();
        assert_eq!(seen, want);
        assert!(batch.heads.is_empty() && batch.args.is_empty() && batch.links.is_empty());
    }
}
