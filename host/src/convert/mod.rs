//! `bthost convert`: read a log once, decode it, write the outputs. Knows nothing of the CLI:
//! it takes plain [`ConvertOptions`].

//! The reading pass (crate::calls) turns the log into finished calls, which the sorter puts
//! in order with bounded memory (sort.rs); the writers then read them back side by side, the
//! traces (perfetto/) in start order and the text log (text.rs) thread by thread. The device
//! side (device.rs), inferred from the calls as they are read, joins them in the sorter as
//! calls of its own. With `jobs` > 1 the log's decoding runs beside the call model
//! (crate::calls::piped) and the two writers side by side; the outputs are the same bytes
//! either way.

mod bgwrite;
pub mod device;
mod direct;
pub mod perfetto;
pub mod sort;
mod stacks;
pub mod text;
mod worker;

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::calls::call::{self, Call};
use crate::calls::{piped, sources, CallSink as _, Collector};
use crate::decode::Stats;
use crate::log::Diagnostics;
use crate::registry::Registry;
use crate::safe_out::OutDir;
use crate::symbolize::Symbolizer;
use sort::{SortSink, Sorter};

/// The default memory budget (MiB) for calls held before the sorter spills a run to disk: it
/// bounds the converter's memory whatever the log's size (the writers hold nothing but their
/// I/O buffers).
pub const DEFAULT_MEMORY_MB: usize = 80;

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
    /// Bytes of calls held for sorting before they spill to disk (see [`DEFAULT_MEMORY_MB`]).
    pub memory: usize,
    /// Threads to convert on: with 1, the log is decoded and the text log and the traces
    /// written one after the other on one thread; with more, the decoding runs beside the call
    /// model and the writers side by side. The outputs are the same bytes.
    pub jobs: usize,
    /// Write the outputs with direct I/O where the file system takes it (direct.rs), not
    /// through the page cache. The same bytes either way.
    pub direct_io: bool,
}

/// The default for [`ConvertOptions::jobs`]: the cores this process may run on.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
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
    /// The device side drawn in the traces (said at the top of log.txt too).
    pub device: device::DeviceSummary,
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
    let sorter = Sorter::new(&out_dir, opts.memory);
    // The report's view of the hang, from the same pass, for the top of log.txt; the device
    // side, inferred from the same calls, into the same sorter.
    let completion_specs = crate::report::completion_specs(registry);
    let device = if sources.list.len() <= device::MAX_LOGS {
        device::Device::new(completion_specs.clone())
    } else {
        None
    };
    let sink = Sink {
        sort: SortSink::new(sorter),
        report: Some(crate::report::gather::Gather::new(
            crate::report::specs(registry),
            completion_specs,
        )),
        device,
    };
    let mut calls = Collector::new(symbols, sink);
    let mut stats = Stats::default();
    let mut diags = Vec::new();
    let mut comms = std::collections::HashMap::new();
    let mut hash = 0;
    let mut stops = Vec::new();
    let mut packs: Option<(Vec<String>, PathBuf)> = None;
    let several = sources.several();
    for src in &sources.list {
        let log_packs = crate::compose::schema::log_packs(&src.path);
        calls
            .sink
            .start_log(src.index, &mut calls.strings, log_packs.as_deref());
        // Several logs: each event numbered apart and put on the first log's clock.
        let place = |e: &mut bthost_plugin_api::Event| {
            if several {
                e.pid = sources.id(src.index, e.pid);
                e.tid = sources.id(src.index, e.tid);
                e.ts = sources.time(src.index, e.ts);
            }
        };
        let each = |e: &bthost_plugin_api::Event| {
            calls
                .push(e)
                .with_context(|| format!("sorting calls in {}", opts.out_dir.display()))
        };
        // The decoding beside the call model, when there are cores for both.
        let d = piped::read_events(
            registry,
            &src.path,
            opts.expect_schema,
            opts.jobs,
            place,
            each,
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
        if let Some(g) = calls.sink.report.as_mut() {
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
    // Work never proven done is drawn to there too.
    let device = match calls.sink.device.take() {
        Some(mut d) => {
            d.finish(t_last, &calls.strings, &mut calls.sink.sort)
                .with_context(|| format!("sorting calls in {}", opts.out_dir.display()))?;
            Some(d)
        }
        None => None,
    };
    // The stacks record took at its dumps: an instant on each thread (convert/stacks.rs).
    stacks::feed(
        &sources,
        &comms,
        &mut calls.strings,
        &mut calls.sink.sort,
        t_last,
    )
    .with_context(|| format!("sorting calls in {}", opts.out_dir.display()))?;
    let device_summary = device.as_ref().map(|d| d.summary).unwrap_or_default();
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
    let mut layout = perfetto::layout::Layout::new(comms.clone(), hosts.clone(), t_first, t_last);
    let device_names = device.as_ref().and_then(|d| d.names());
    if let Some(d) = device {
        layout.device_lanes(d.lanes().to_vec());
    }
    let mut traces = perfetto::TraceSet::new(
        t_first,
        perfetto::Output::new(files, opts.direct_io, opts.jobs > 1),
        &key_ids,
        &calls.link_counts,
        layout,
        &mut calls.strings,
    );
    let mut text = text::TextWriter::new(t_first, t_last);
    if let Some(names) = device_names {
        traces.device(names);
        text.hide_link(names.link);
    }
    let Collector {
        strings,
        sink,
        symbols,
        ..
    } = calls;
    let sorter = sink.sort.sorter;
    let spilled_runs = sorter.runs();
    let sorted = sorter
        .finish()
        .with_context(|| format!("sorting calls in {}", opts.out_dir.display()))?;
    let out = opts.out_dir.join("log.txt");
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
        device: (!device_summary.is_empty()).then_some(&device_summary),
    };
    let (texted, traced) = if opts.jobs > 1 {
        write_both(
            &sorted,
            &text,
            &header,
            text_file,
            &mut traces,
            &strings,
            opts.direct_io,
        )
    } else {
        let texted = write_text(&sorted, &text, &header, text_file, opts.direct_io);
        (texted, write_traces(&sorted, &mut traces, &strings))
    };
    texted.with_context(|| format!("writing {}", out.display()))?;
    traced.with_context(|| format!("writing into {}", opts.out_dir.display()))?;
    drop(sorted);
    let traces = traces
        .finish(&strings)
        .with_context(|| format!("writing traces into {}", opts.out_dir.display()))?;
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
        device: device_summary,
    })
}

/// Where the reading pass hands convert's finished calls: to the sorter (for the writers),
/// through the device side's inference when the packs have completion rules (it adds the
/// device slices), and to the report's gathering (for the top of log.txt).
struct Sink {
    sort: SortSink,
    report: Option<crate::report::gather::Gather>,
    device: Option<device::Device>,
}

impl crate::calls::CallSink for Sink {
    fn start_log(&mut self, log: u16, strings: &mut call::Strings, packs: Option<&[String]>) {
        self.report.start_log(log, strings, packs);
        if let Some(d) = self.device.as_mut() {
            d.start_log(log, strings, packs);
        }
    }
    fn see(&mut self, c: &Call, strings: &call::Strings) -> std::io::Result<()> {
        match self.device.as_mut() {
            Some(d) => d.see(c, strings, &mut self.sort)?,
            None => self.sort.see(c, strings)?,
        }
        self.report.see(c, strings)
    }
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
    calls: &mut Collector<Sink>,
    in_flight: &[Call],
    sources: &sources::Sources,
    stops: &[Option<u64>],
) -> Option<String> {
    use crate::report;
    let mut g = calls.sink.report.take()?;
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
                stopped_early: None,
                gaps: Vec::new(),
                cut: false,
            })
            .collect(),
        alignment: sources.alignment.clone(),
    };
    let findings = report::analyze::analyze(&g, &stops);
    Some(report::text::render(&cx, &g, &findings))
}

/// Writes the sorted calls out, the text log on a thread of its own (thread by thread) and
/// the Perfetto traces on this one (in start order): two independent readers of the same
/// sorted calls, each writing its files through its own writer threads (bgwrite.rs).
fn write_both(
    sorted: &sort::Sorted,
    text: &text::TextWriter,
    header: &text::Header,
    text_file: std::fs::File,
    traces: &mut perfetto::TraceSet,
    strings: &call::Strings,
    direct_io: bool,
) -> (std::io::Result<()>, std::io::Result<()>) {
    std::thread::scope(|scope| {
        let texts = scope.spawn(move || write_text(sorted, text, header, text_file, direct_io));
        let traced = write_traces(sorted, traces, strings);
        let texted = texts
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the text writer panicked")));
        (texted, traced)
    })
}

fn write_text(
    sorted: &sort::Sorted,
    text: &text::TextWriter,
    header: &text::Header,
    file: std::fs::File,
    direct_io: bool,
) -> std::io::Result<()> {
    let mut w = bgwrite::BgWriter::output(file, direct_io);
    text.write(&mut w, header, sorted)?;
    w.finish()
}

fn write_traces(
    sorted: &sort::Sorted,
    traces: &mut perfetto::TraceSet,
    strings: &call::Strings,
) -> std::io::Result<()> {
    let mut call = Call::default();
    sorted.in_key_order(|b| {
        call.decode(b);
        traces.push(&call, strings)
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
