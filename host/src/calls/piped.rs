//! The reading pass on two threads: one reads and decodes the log's lines into events
//! ([`for_each_event`]), the other hands them, in the same order, to the consumer (the call
//! model and its sinks: sorting, the device side, the report's gathering). The events are
//! swapped into batches to cross over; the consumer hands each batch back once read, and the
//! next events are swapped into its slots, the decoder decoding the next records into the
//! events it gets back, so their argument vectors are reused rather than allocated and freed
//! for every event (that churn was a tenth of the conversion's CPU), and never copied.

use std::path::Path;
use std::sync::mpsc::sync_channel;

use anyhow::{anyhow, Result};
use bthost_plugin_api::Event;

use super::{for_each_event, Decoded};
use crate::registry::Registry;

/// Events per batch handed over, and batches in flight: a few MB at most.
const BATCH: usize = 1024;
const IN_FLIGHT: usize = 4;

/// [`for_each_event`] with the decoding on a thread of its own; `each` sees every event, in
/// log order, on the calling thread, after `place` (on the decoding thread, in the event's
/// copy: no clone on the consumer's side) put it where the conversion wants it (several
/// logs' numbering and timeline).
pub fn for_each_event_piped(
    registry: &Registry,
    log: &Path,
    expect_schema: Option<u64>,
    place: impl Fn(&mut Event) + Send,
    mut each: impl FnMut(&Event) -> Result<()>,
) -> Result<Decoded> {
    std::thread::scope(|scope| {
        // Full batches (the events, and how many of the slots hold this batch's), and the
        // read ones handed back.
        let (tx, rx) = sync_channel::<(Vec<Event>, usize)>(IN_FLIGHT);
        let (back_tx, back_rx) = sync_channel::<Vec<Event>>(IN_FLIGHT + 1);
        let decoding = scope.spawn(move || {
            let mut batch = Vec::with_capacity(BATCH);
            let mut n = 0;
            let decoded = for_each_event(registry, log, expect_schema, Vec::new(), |_, e| {
                // Swapped, not copied: the decoder reuses the slot's old event's allocations.
                match batch.get_mut(n) {
                    Some(slot) => std::mem::swap(slot, e),
                    None => batch.push(e.clone()),
                }
                place(&mut batch[n]);
                n += 1;
                if n == BATCH {
                    let empty = back_rx
                        .try_recv()
                        .unwrap_or_else(|_| Vec::with_capacity(BATCH));
                    let full = std::mem::replace(&mut batch, empty);
                    // Closed: the consumer failed, and says why.
                    tx.send((full, n))
                        .map_err(|_| anyhow!("the reading stopped"))?;
                    n = 0;
                }
                Ok(())
            });
            let _ = tx.send((batch, n));
            decoded
        });
        let mut failed = None;
        while let Ok((batch, n)) = rx.recv() {
            if let Err(e) = batch[..n].iter().try_for_each(&mut each) {
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
