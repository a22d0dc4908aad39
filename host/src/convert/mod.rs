//! `bthost convert`: read a log once, decode it, write the outputs. Knows nothing of the CLI:
//! it takes plain [`ConvertOptions`].

pub mod perfetto;
mod progress;
pub mod text;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use bthost_plugin_api::{DecoderBox, Event};

use crate::decode::{LogDecoder, Stats};
use crate::log::{Diagnostics, Severity};
use crate::registry::Registry;
use crate::symbolize::Symbolizer;

#[derive(Clone, Debug)]
pub struct ConvertOptions {
    pub log: PathBuf,
    pub out_dir: PathBuf,
    /// Refuse the log unless its schema hash is this (from `--schema FILE`).
    pub expect_schema: Option<u64>,
    /// Link keys to draw flows for; `None`: every key the log's packs declare.
    pub links: Option<Vec<String>>,
    /// One trace with the flows of every chosen key, instead of one trace per key.
    pub combined: bool,
    /// Memory maps of traced processes (pid, copy of /proc/PID/maps), for symbolization.
    pub maps: Vec<(u32, PathBuf)>,
}

/// What a conversion found.
pub struct Summary {
    pub stats: Stats,
    pub diag: Diagnostics,
    pub outputs: Vec<PathBuf>,
    pub schema_hash: u64,
    /// Code addresses resolved to symbols, and those left as addresses.
    pub symbols: (u64, u64),
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
    let file =
        std::fs::File::open(log).with_context(|| format!("cannot open {}", log.display()))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut dec = LogDecoder::new(registry, log, expect_schema);
    for (pack, d) in decoders {
        dec.give_decoder(&pack, d);
    }
    let mut events = Vec::new();
    let mut buf = Vec::with_capacity(256);
    let mut lineno = 0u64;
    let mut read = 0u64;
    let total = std::fs::metadata(log).map(|m| m.len()).unwrap_or(0);
    let mut progress = progress::Progress::new(total);
    loop {
        buf.clear();
        let n = (&mut reader)
            .take(1 << 20)
            .read_until(b'\n', &mut buf)
            .with_context(|| format!("reading {}", log.display()))?;
        if n == 0 {
            break;
        }
        lineno += 1;
        read += n as u64;
        if lineno.is_multiple_of(8192) {
            progress.update(read, dec.stats.records);
        }
        let terminated = buf.last() == Some(&b'\n');
        if terminated {
            buf.pop();
        } else if buf.len() >= 1 << 20 {
            dec.diag.add(
                "garbage lines",
                Severity::Warning,
                lineno,
                "line longer than 1 MiB skipped",
            );
            // Skip the rest of the overlong line.
            let mut rest = Vec::new();
            reader.read_until(b'\n', &mut rest)?;
            continue;
        } else {
            dec.diag.add(
                "cut-off last line",
                Severity::Warning,
                lineno,
                "the last line has no newline (bpftrace was stopped mid-write); it is skipped",
            );
            break;
        }
        let line = String::from_utf8_lossy(&buf);
        if matches!(line, std::borrow::Cow::Owned(_)) {
            dec.diag.add(
                "invalid UTF-8",
                Severity::Warning,
                lineno,
                "invalid UTF-8 bytes replaced",
            );
        }
        dec.feed(lineno, &line, &mut events)?;
        if !events.is_empty() {
            sink(&dec, &mut events);
            events.clear();
        }
    }
    progress.finish();
    dec.finish(&mut events)?;
    if !events.is_empty() {
        sink(&dec, &mut events);
    }
    let hash = dec.schema().map(|s| s.hash()).unwrap_or(0);
    Ok((dec.stats.clone(), std::mem::take(&mut dec.diag), hash))
}

/// Converts a log into `opts.out_dir`: for now the per-thread text log.
pub fn convert(registry: &Registry, opts: &ConvertOptions) -> Result<Summary> {
    std::fs::create_dir_all(&opts.out_dir)
        .with_context(|| format!("cannot create {}", opts.out_dir.display()))?;
    let mut text = text::TextLog::default();
    let mut symbols = Symbolizer::default();
    for (pid, path) in &opts.maps {
        symbols.add_maps(*pid, path).map_err(anyhow::Error::msg)?;
    }
    let (stats, diag, hash) = decode_log(registry, &opts.log, opts.expect_schema, |dec, evs| {
        for mut e in evs.drain(..) {
            symbolize(&mut symbols, &mut e);
            text.push(e, dec);
        }
    })?;
    let out = opts.out_dir.join("log.txt");
    let f =
        std::fs::File::create(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut w = std::io::BufWriter::new(f);
    text.write(&mut w, &opts.log, hash, &stats, &diag)
        .with_context(|| format!("writing {}", out.display()))?;
    let mut outputs = vec![out];

    // Perfetto: one trace per link key (as the original tool wrote one per key), or one
    // with every key's flows. A new pack's keys need nothing here: they come from the packs.
    let keys = match &opts.links {
        Some(k) => k.clone(),
        None => declared_links(registry, &text),
    };
    let traces: Vec<(String, Vec<String>)> = if opts.combined || keys.is_empty() {
        vec![("trace.pftrace".to_string(), keys)]
    } else {
        keys.iter()
            .map(|k| (format!("trace_{k}.pftrace"), vec![k.clone()]))
            .collect()
    };
    let layout = perfetto::Layout::new(&text);
    for (name, links) in traces {
        let path = opts.out_dir.join(name);
        layout
            .write(&path, &links)
            .with_context(|| format!("writing {}", path.display()))?;
        outputs.push(path);
    }
    Ok(Summary {
        stats,
        diag,
        outputs,
        schema_hash: hash,
        symbols: (symbols.resolved, symbols.unresolved),
    })
}

/// The link keys the log's packs declare: in their manifests and by their plugins.
fn declared_links(registry: &Registry, text: &text::TextLog) -> Vec<String> {
    let mut keys = std::collections::BTreeSet::new();
    for pack in text.packs() {
        if let Some(e) = registry.entries.get(pack) {
            keys.extend(e.pack.links.iter().cloned());
            if let Some(p) = &e.plugin {
                keys.extend(p.info.links.iter().map(|l| l.to_string()));
            }
        }
    }
    keys.into_iter().collect()
}

/// Replaces each code address an event carries by `function+0xoff (0xaddr)` when the
/// process's memory map and the mapped file's symbols say what it is.
fn symbolize(symbols: &mut Symbolizer, e: &mut Event) {
    for a in e.args.iter_mut() {
        if let bthost_plugin_api::Value::CodeAddr(addr) = a.value {
            if let Some(sym) = symbols.resolve(e.pid, addr) {
                a.value = bthost_plugin_api::Value::Str(format!("{sym} ({addr:#x})").into());
            }
        }
    }
}
