//! `bthost convert`: read a log once, decode it, write the outputs. Knows nothing of the CLI:
//! it takes plain [`ConvertOptions`].

//! One streaming pass reads the log (reader.rs), decodes it (crate::decode) and turns the
//! events into finished calls (collect.rs), which the sorter puts in start order with bounded
//! memory (sort.rs); the writers (text.rs, perfetto/) then consume them in that order.

mod bgwrite;
pub mod call;
mod collect;
mod numfmt;
pub mod perfetto;
mod progress;
mod reader;
mod sort;
pub mod sources;
pub mod text;
mod varint;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use bthost_plugin_api::{DecoderBox, Event};

use crate::decode::{LogDecoder, Stats};
use crate::log::{Diagnostics, Severity};
use crate::registry::Registry;
use crate::safe_out::OutDir;
use crate::symbolize::Symbolizer;
use call::Call;
use collect::Collector;
use reader::{Line, LineReader};
use sort::Sorter;

/// The default memory budget (MiB) for calls held before the sorter spills a run to disk and
/// text buffered before the text writer spills: two thirds and one third. Together they bound
/// the converter's memory whatever the log's size.
pub const DEFAULT_MEMORY_MB: usize = 96;

#[derive(Clone, Debug)]
pub struct ConvertOptions {
    /// One log, or several (one per node) to put on one timeline.
    pub logs: Vec<PathBuf>,
    /// Several logs from one boot of one host: their times need no clock anchors.
    pub same_boot: bool,
    pub out_dir: PathBuf,
    /// Refuse the log unless its schema hash is this (from `--schema FILE`).
    pub expect_schema: Option<u64>,
    /// Link keys to draw flows for; `None`: every key the log's packs declare.
    pub links: Option<Vec<String>>,
    /// One trace with the flows of every chosen key, instead of one trace per key.
    pub combined: bool,
    /// Memory maps of traced processes (pid, copy of /proc/PID/maps), for symbolization, of
    /// the first log; the others' are those `record` kept beside them.
    pub maps: Vec<(u32, PathBuf)>,
    /// Bytes of sorting and text buffers before they spill to disk (see [`DEFAULT_MEMORY_MB`]).
    pub memory: usize,
}

/// What a conversion found.
pub struct Summary {
    /// Of all the logs together.
    pub stats: Stats,
    /// Each log's.
    pub diags: Vec<Diagnostics>,
    pub outputs: Vec<PathBuf>,
    pub schema_hash: u64,
    /// Code addresses resolved to symbols, and those left as addresses.
    pub symbols: (u64, u64),
    /// Seconds spent reading and decoding (with the sorter's spills), then writing.
    pub phases: (f64, f64),
    /// Sorted runs spilled to disk (0: the calls fitted in memory).
    pub spilled_runs: usize,
    /// Calls that never returned before the log ended (listed at the top of log.txt).
    pub in_flight: usize,
}

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
struct Decoded {
    stats: Stats,
    diag: Diagnostics,
    schema_hash: u64,
    /// tid -> (pid, comm), from the log's thread lines.
    threads: std::collections::HashMap<u32, (u32, String)>,
    /// The packs the log's header names.
    packs: Vec<String>,
}

/// The streaming core: every event of the log, by reference (the decoder reuses their
/// allocations), in log order.
fn for_each_event(
    registry: &Registry,
    log: &Path,
    expect_schema: Option<u64>,
    decoders: Vec<(String, DecoderBox)>,
    mut each: impl FnMut(&LogDecoder, &Event) -> Result<()>,
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
        for e in dec.events() {
            each(&dec, e)?;
        }
        if lineno.is_multiple_of(8192) {
            progress.update(reader.consumed, dec.stats.records);
        }
    }
    progress.finish();
    dec.finish()?;
    for e in dec.events() {
        each(&dec, e)?;
    }
    Ok(Decoded {
        stats: dec.stats.clone(),
        diag: std::mem::take(&mut dec.diag),
        schema_hash: dec.schema().map(|s| s.hash()).unwrap_or(0),
        threads: dec.threads().clone(),
        packs: dec
            .schema()
            .map(|s| s.packs.iter().map(|p| p.0.clone()).collect())
            .unwrap_or_default(),
    })
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

/// Reads `log` (the report's log number `index`) into calls for the report's gathering
/// (crate::report), without keeping them: the same reading pass and call model as [`convert`].
pub fn read_calls(
    registry: &Registry,
    log: &Path,
    index: u16,
    gather: &mut crate::report::gather::Gather,
) -> Result<ReadCalls> {
    let mut calls = Collector::new(None, Symbolizer::default());
    let packs = crate::compose::schema::log_packs(log);
    gather.start_log(index, &mut calls.strings, packs.as_deref());
    calls.report = Some(std::mem::take(gather));
    let read = for_each_event(registry, log, None, Vec::new(), |_, e| {
        calls.push(e).context("reading calls")
    });
    let in_flight = calls.finish();
    *gather = calls.report.take().unwrap_or_default();
    let d = read?;
    let in_flight = in_flight.context("reading calls")?;
    gather.see_in_flight(&in_flight, &calls.strings);
    Ok(ReadCalls {
        stats: d.stats,
        diag: d.diag,
        threads: d.threads,
        packs: d.packs,
        t_last: calls.t_last.unwrap_or(0),
    })
}

/// Converts a log into `opts.out_dir`: the per-thread text log and the Perfetto traces.
pub fn convert(registry: &Registry, opts: &ConvertOptions) -> Result<Summary> {
    let sources = sources::Sources::plan(&opts.logs, opts.same_boot)?;
    // Every output is created (never through a link, crate::safe_out) before the log is read:
    // a refused one is said at once.
    let out_dir = OutDir::create(&opts.out_dir)?;
    let text_file = out_dir.create_file("log.txt")?;
    let mut symbols = Symbolizer::default();
    for src in &sources.list {
        let maps = if src.index == 0 && !opts.maps.is_empty() {
            opts.maps.clone()
        } else {
            crate::record::recorded_maps(&src.path)
        };
        for (pid, path) in maps {
            symbols
                .add_maps(sources.id(src.index, pid), &path)
                .map_err(anyhow::Error::msg)?;
        }
    }
    let t_read = std::time::Instant::now();
    let sorter = Sorter::new(&out_dir, opts.memory / 3 * 2);
    let mut calls = Collector::new(Some(sorter), symbols);
    // The report's view of the hang, from the same pass, for the top of log.txt.
    calls.report = Some(crate::report::gather::Gather::new(crate::report::specs(
        registry,
    )));
    let mut stats = Stats::default();
    let mut diags = Vec::new();
    let mut comms = std::collections::HashMap::new();
    let mut hash = 0;
    let mut stops = Vec::new();
    let mut packs: Option<(Vec<String>, PathBuf)> = None;
    let several = sources.several();
    for src in &sources.list {
        if let Some(g) = calls.report.as_mut() {
            let packs = crate::compose::schema::log_packs(&src.path);
            g.start_log(src.index, &mut calls.strings, packs.as_deref());
        }
        let d = for_each_event(
            registry,
            &src.path,
            opts.expect_schema,
            Vec::new(),
            |_, e| {
                let r = if several {
                    // Numbered apart and on the first log's clock.
                    let mut e = e.clone();
                    e.pid = sources.id(src.index, e.pid);
                    e.tid = sources.id(src.index, e.tid);
                    e.ts = sources.time(src.index, e.ts);
                    calls.push(&e)
                } else {
                    calls.push(e)
                };
                r.with_context(|| format!("sorting calls in {}", opts.out_dir.display()))
            },
        )?;
        match &packs {
            Some((p, first)) if *p != d.packs => anyhow::bail!(
                "{} was written with packs {}, {} with {}: logs converted together must have the same packs",
                first.display(),
                p.join(","),
                src.path.display(),
                d.packs.join(",")
            ),
            Some(_) => {}
            None => packs = Some((d.packs.clone(), src.path.clone())),
        }
        let threads: std::collections::HashMap<u32, (u32, String)> = d
            .threads
            .iter()
            .map(|(&t, (p, c))| {
                (
                    sources.id(src.index, t),
                    (sources.id(src.index, *p), c.clone()),
                )
            })
            .collect();
        if let Some(g) = calls.report.as_mut() {
            g.name_procs(&src.host, &threads);
        }
        comms.extend(threads);
        hash = if hash == 0 { d.schema_hash } else { hash };
        let stop = d.stats.stopped_at.map(|t| sources.time(src.index, t));
        stops.push(stop);
        merge_stats(&mut stats, &d.stats, stop);
        diags.push(d.diag);
    }
    let in_flight = calls
        .finish()
        .with_context(|| format!("sorting calls in {}", opts.out_dir.display()))?;
    let log_names = sources.describe();
    let report = report_text(&mut calls, &in_flight, &sources, &stops);
    let t_first = calls.t_first.unwrap_or(0);
    // Calls still open are drawn to when tracing stopped, if the log says (format 2), else to
    // its last record.
    let t_last = calls.t_last.unwrap_or(0).max(stats.stopped_at.unwrap_or(0));
    let read_secs = t_read.elapsed().as_secs_f64();
    let t_write = std::time::Instant::now();

    // Perfetto: one trace per link key (as the original tool wrote one per key), or one
    // with every key's flows. A new pack's keys need nothing here: they come from the packs.
    let keys = match &opts.links {
        Some(k) => k.clone(),
        None => declared_links(registry, &calls.packs()),
    };
    let key_ids: Vec<u32> = keys.iter().map(|k| calls.strings.id(k)).collect();
    let names: Vec<(String, Vec<u32>)> = if opts.combined || keys.is_empty() {
        vec![("trace.pftrace".into(), key_ids.clone())]
    } else {
        keys.iter()
            .zip(&key_ids)
            .map(|(k, id)| (format!("trace_{k}.pftrace"), vec![*id]))
            .collect()
    };
    let mut files = Vec::new();
    for (name, keys) in names {
        let f = out_dir.create_file(&name)?;
        files.push((opts.out_dir.join(name), f, keys));
    }
    let hosts = sources.hosts(&comms);
    let layout = perfetto::layout::Layout::new(comms.clone(), hosts.clone(), t_first, t_last);
    let mut traces = perfetto::TraceSet::new(
        t_first,
        files,
        &key_ids,
        &calls.link_counts,
        layout,
        &mut calls.strings,
    )
    .with_context(|| format!("creating traces in {}", opts.out_dir.display()))?;
    let text = text::TextWriter::new(t_first, t_last, &out_dir, opts.memory / 3);
    let Collector {
        strings,
        sorter,
        symbols,
        ..
    } = calls;
    let sorter = sorter.expect("convert sorts");
    let spilled_runs = sorter.runs();
    let text = write_in_order(sorter, text, &mut traces, &strings)
        .with_context(|| format!("writing into {}", opts.out_dir.display()))?;
    let traces = traces
        .finish(&strings)
        .with_context(|| format!("writing traces into {}", opts.out_dir.display()))?;

    let out = opts.out_dir.join("log.txt");
    let mut w = std::io::BufWriter::with_capacity(1 << 20, text_file);
    let header = text::Header {
        log: &log_names,
        hosts: hosts.as_ref(),
        schema_hash: hash,
        stats: &stats,
        diags: &diags,
        comms: &comms,
        in_flight: &in_flight,
        strings: &strings,
        report: report.as_deref(),
    };
    text.write(&mut w, &header)
        .and_then(|()| std::io::Write::flush(&mut w))
        .with_context(|| format!("writing {}", out.display()))?;
    let mut outputs = vec![out];
    outputs.extend(traces.into_iter().map(|(p, _)| p));
    Ok(Summary {
        stats,
        diags,
        outputs,
        schema_hash: hash,
        symbols: (symbols.resolved, symbols.unresolved),
        phases: (read_secs, t_write.elapsed().as_secs_f64()),
        spilled_runs,
        in_flight: in_flight.len(),
    })
}

/// Adds one log's counts to those of the logs before it; `stop`: when its tracing stopped,
/// on the common timeline.
fn merge_stats(all: &mut Stats, one: &Stats, stop: Option<u64>) {
    all.lines += one.lines;
    all.records += one.records;
    all.events += one.events;
    all.lost_events += one.lost_events;
    all.threads += one.threads;
    all.lost_records += one.lost_records;
    all.overwritten += one.overwritten;
    all.attached_probes = all.attached_probes.or(one.attached_probes);
    all.stopped_at = all.stopped_at.max(stop);
    all.anchors.extend(one.anchors.iter().cloned());
}

/// `bthost report`'s text for the logs, when their packs declare groups and they have some.
fn report_text(
    calls: &mut Collector,
    in_flight: &[Call],
    sources: &sources::Sources,
    stops: &[Option<u64>],
) -> Option<String> {
    use crate::report;
    let mut g = calls.report.take()?;
    if g.group_calls == 0 {
        return None;
    }
    g.see_in_flight(in_flight, &calls.strings);
    let stops: Vec<u64> = stops
        .iter()
        .map(|s| s.or(calls.t_last).unwrap_or(0))
        .collect();
    let cx = report::Context {
        logs: sources
            .list
            .iter()
            .zip(&stops)
            .map(|(s, &stop)| report::LogInfo {
                path: s.path.clone(),
                host: s.host.clone(),
                boot: None,
                stopped_at: stop,
                packs: Vec::new(),
            })
            .collect(),
        alignment: sources.alignment.clone(),
    };
    let findings = report::analyze::analyze(&g, &stops);
    Some(report::text::render(&cx, &g, &findings))
}

/// Feeds the sorted calls to the writers: the Perfetto traces on this thread, the text log on
/// another (it gets the encoded calls in batches of about 1 MiB), so that formatting text and
/// encoding packets run side by side.
fn write_in_order(
    sorter: Sorter,
    mut text: text::TextWriter,
    traces: &mut perfetto::TraceSet,
    strings: &call::Strings,
) -> std::io::Result<text::TextWriter> {
    const BATCH: usize = 1 << 20;
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
        let texts = scope.spawn(move || -> std::io::Result<text::TextWriter> {
            let mut call = Call::default();
            for batch in rx {
                let mut i = 0;
                while i < batch.len() {
                    let len = u32::from_le_bytes(batch[i..i + 4].try_into().unwrap()) as usize;
                    call.decode(&batch[i + 4..i + 4 + len]);
                    text.push(&call, strings)?;
                    i += 4 + len;
                }
            }
            Ok(text)
        });
        let mut call = Call::default();
        let mut batch = Vec::with_capacity(BATCH);
        let fed = sorter
            .drain(|b| {
                call.decode(b);
                traces.push(&call, strings)?;
                batch.extend_from_slice(&(b.len() as u32).to_le_bytes());
                batch.extend_from_slice(b);
                if batch.len() >= BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    // A closed channel: the text thread stopped, and says why when joined.
                    let _ = tx.send(full);
                }
                Ok(())
            })
            .map(|()| {
                let _ = tx.send(batch);
            });
        drop(tx);
        let text = texts
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the text writer panicked")));
        fed.and(text)
    })
}

/// The link keys the log's packs declare: in their manifests and by their plugins.
fn declared_links(registry: &Registry, packs: &std::collections::BTreeSet<&str>) -> Vec<String> {
    let mut keys = std::collections::BTreeSet::new();
    for pack in packs {
        if let Some(e) = registry.entries.get(*pack) {
            keys.extend(e.pack.links.iter().cloned());
            if let Some(p) = &e.plugin {
                keys.extend(p.info.links.iter().map(|l| l.to_string()));
            }
        }
    }
    keys.into_iter().collect()
}
