//! The reading pass on two threads: one reads and decodes the log's lines into events
//! ([`for_each_event`]), the other hands them, in the same order, to the consumer (the call
//! model and its sinks: sorting, the device side, the report's gathering). The events are
//! cloned into batches to cross over (a fifth more CPU on one big log); on the job_scale
//! bench's 16 logs it makes `convert` 1.4-1.5x faster than on one thread, with the same CPU.

use std::path::Path;
use std::sync::mpsc::sync_channel;

use anyhow::{anyhow, Result};
use bthost_plugin_api::Event;

use super::{for_each_event, Decoded};
use crate::registry::Registry;

/// Events per batch handed over, and batches in flight: a few MB at most.
const BATCH: usize = 4096;
const IN_FLIGHT: usize = 4;

/// [`for_each_event`] with the decoding on a thread of its own; `each` sees every event, in
/// log order, on the calling thread.
pub fn for_each_event_piped(
    registry: &Registry,
    log: &Path,
    expect_schema: Option<u64>,
    mut each: impl FnMut(&Event) -> Result<()>,
) -> Result<Decoded> {
    std::thread::scope(|scope| {
        let (tx, rx) = sync_channel::<Vec<Event>>(IN_FLIGHT);
        let decoding = scope.spawn(move || {
            let mut batch = Vec::with_capacity(BATCH);
            let decoded = for_each_event(registry, log, expect_schema, Vec::new(), |_, e| {
                batch.push(e.clone());
                if batch.len() == BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    // Closed: the consumer failed, and says why.
                    tx.send(full).map_err(|_| anyhow!("the reading stopped"))?;
                }
                Ok(())
            });
            let _ = tx.send(batch);
            decoded
        });
        let mut failed = None;
        while let Ok(batch) = rx.recv() {
            if let Err(e) = batch.iter().try_for_each(&mut each) {
                failed = Some(e);
                break;
            }
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
