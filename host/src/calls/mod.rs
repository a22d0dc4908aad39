//! The reading of logs into calls, beneath both consumers (crate::convert writes them,
//! crate::report gathers them): the log sources and the timeline of several logs
//! (sources.rs, timeline.rs), one streaming pass that decodes a log (reader.rs, crate::decode)
//! into finished calls (collect.rs, call.rs), the completion of the work those calls enqueue
//! (completion.rs), and how a call reads for people (format.rs).

pub mod call;
pub mod collect;
pub mod completion;
pub mod format;
pub mod numfmt;
pub mod piped;
mod progress;
mod reader;
pub mod sources;
pub mod timeline;
pub mod varint;

use std::path::Path;

use anyhow::{Context, Result};
use bthost_plugin_api::{DecoderBox, Event};

use crate::decode::{LogDecoder, Stats};
use crate::log::{Diagnostics, Severity};
use crate::registry::Registry;
use crate::symbolize::Symbolizer;
pub use call::{Call, Strings, V};
pub use collect::{CallSink, Collector};
use reader::{Line, LineReader};

/// Reads `log` and decodes every line, calling `sink` with each batch of events.
/// Invalid UTF-8 is replaced, a last line without its newline (Ctrl-C) is reported, and
/// everything valid is kept.
pub fn decode_log(
    registry: &Registry,
    log: &Path,
    expect_schema: Option<u64>,
    sink: impl FnMut(&LogDecoder, &mut Vec<Event>),
) -> Result<(Stats, Diagnostics, u64)> {
    decode_log_with(registry, log, expect_schema, Vec::new(), sink)
}

/// [`decode_log`] with decoders given in process for some packs (a plugin's own tests).
pub fn decode_log_with(
    registry: &Registry,
    log: &Path,
    expect_schema: Option<u64>,
    decoders: Vec<(String, DecoderBox)>,
    mut sink: impl FnMut(&LogDecoder, &mut Vec<Event>),
) -> Result<(Stats, Diagnostics, u64)> {
    let mut batch = Vec::new();
    let d = for_each_event(registry, log, expect_schema, decoders, |dec, e| {
        batch.push(e.clone());
        sink(dec, &mut batch);
        batch.clear();
        Ok(())
    })?;
    Ok((d.stats, d.diag, d.schema_hash))
}

/// What the reading pass knows at its end, besides the events it handed out.
pub struct Decoded {
    pub stats: Stats,
    pub diag: Diagnostics,
    pub schema_hash: u64,
    /// tid -> (pid, comm), from the log's thread lines.
    pub threads: std::collections::HashMap<u32, (u32, String)>,
    /// The packs the log's header names.
    pub packs: Vec<String>,
}

/// The streaming core: every event of the log, by reference (the decoder reuses their
/// allocations), in log order.
pub fn for_each_event(
    registry: &Registry,
    log: &Path,
    expect_schema: Option<u64>,
    decoders: Vec<(String, DecoderBox)>,
    mut each: impl FnMut(&LogDecoder, &mut Event) -> Result<()>,
) -> Result<Decoded> {
    let file =
        std::fs::File::open(log).with_context(|| format!("cannot open {}", log.display()))?;
    let total = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut reader = LineReader::new(file);
    let mut dec = LogDecoder::new(registry, log, expect_schema);
    for (pack, d) in decoders {
        dec.give_decoder(&pack, d);
    }
    let mut lineno = 0u64;
    let mut progress = progress::Progress::new(total);
    loop {
        let line = reader
            .next_line()
            .with_context(|| format!("reading {}", log.display()))?;
        let Some(line) = line else { break };
        lineno += 1;
        let bytes = match line {
            Line::Full(b) => b,
            Line::Overlong => {
                dec.diag.add(
                    "garbage lines",
                    Severity::Warning,
                    lineno,
                    "line longer than 1 MiB skipped",
                );
                continue;
            }
            Line::Unterminated(cut) => {
                dec.diag.add(
                    "cut-off last line",
                    Severity::Warning,
                    lineno,
                    format!(
                        "the last line has no newline (bpftrace was stopped mid-write); its {} bytes are skipped",
                        cut.len()
                    ),
                );
                break;
            }
        };
        let text = match std::str::from_utf8(bytes) {
            Ok(t) => std::borrow::Cow::Borrowed(t),
            Err(_) => {
                dec.diag.add(
                    "invalid UTF-8",
                    Severity::Warning,
                    lineno,
                    "invalid UTF-8 bytes replaced",
                );
                String::from_utf8_lossy(bytes)
            }
        };
        dec.feed(lineno, &text)?;
        lend_events(&mut dec, &mut each)?;
        if lineno.is_multiple_of(8192) {
            progress.update(reader.consumed, dec.stats.records);
        }
    }
    progress.finish();
    dec.finish()?;
    lend_events(&mut dec, &mut each)?;
    Ok(Decoded {
        stats: dec.stats.clone(),
        diag: std::mem::take(&mut dec.diag),
        schema_hash: dec.schema().map(|s| s.hash()).unwrap_or(0),
        threads: dec.threads().iter().map(|(&t, v)| (t, v.clone())).collect(),
        packs: dec
            .schema()
            .map(|s| s.packs.iter().map(|p| p.0.clone()).collect())
            .unwrap_or_default(),
    })
}

/// Hands each event of the line just fed to `each`, which may change it in place.
fn lend_events(
    dec: &mut LogDecoder,
    each: &mut impl FnMut(&LogDecoder, &mut Event) -> Result<()>,
) -> Result<()> {
    let mut events = dec.take_events();
    let r = events.iter_mut().try_for_each(|e| each(dec, e));
    dec.return_events(events);
    r
}

/// What [`read_calls`] learnt of a log besides its calls.
pub struct ReadCalls {
    pub stats: Stats,
    pub diag: Diagnostics,
    /// tid -> (pid, comm).
    pub threads: std::collections::HashMap<u32, (u32, String)>,
    pub packs: Vec<String>,
    /// The log's last time.
    pub t_last: u64,
}

/// Reads `log` into calls handed to `sink` (each finished call, then those still in flight
/// at the log's end), without keeping them: the reading pass and call model that `convert`
/// sorts and writes, for consumers that only gather (crate::report).
/// `jobs` > 1: the log is decoded on a thread of its own, beside the call model and `sink`
/// (crate::calls::piped); the sink sees the same calls either way.
pub fn read_calls<S: CallSink>(
    registry: &Registry,
    log: &Path,
    index: u16,
    sink: S,
    jobs: usize,
) -> Result<(ReadCalls, S)> {
    let mut calls = Collector::new(Symbolizer::default(), sink);
    let packs = crate::compose::schema::log_packs(log);
    calls
        .sink
        .start_log(index, &mut calls.strings, packs.as_deref());
    let read = piped::read_events(
        registry,
        log,
        None,
        jobs,
        |_| {},
        |e| calls.push(e).context("reading calls"),
    );
    let in_flight = calls.finish();
    let d = read?;
    let in_flight = in_flight.context("reading calls")?;
    calls.sink.see_in_flight(&in_flight, &calls.strings);
    let t_last = calls.t_last.unwrap_or(0);
    Ok((
        ReadCalls {
            stats: d.stats,
            diag: d.diag,
            threads: d.threads,
            packs: d.packs,
            t_last,
        },
        calls.sink,
    ))
}
