//! The `bthost` binary: parses the command line and calls the library.

mod about;
mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::FromArgMatches;

use bthost::commands::{build, doctor, packs};
use bthost::compose::emit::Emit;
use bthost::compose::schema::SchemaBuilder;
use bthost::convert::{self, ConvertOptions};
use bthost::library::{self, LibOverrides};
use bthost::record;
use bthost::registry::{Registry, SearchPaths};
use cli::{Cli, Cmd, EmitArgs, LibArgs, Records};

fn main() -> ExitCode {
    let cli = Cli::from_arg_matches(&about::command().get_matches()).unwrap_or_else(|e| e.exit());
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bthost: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// What a conversion says of records that did not reach the log.
fn lost_note(s: &bthost::decode::Stats) -> String {
    let mut out = String::new();
    if s.lost_events > 0 {
        out.push_str(&format!(", {} events LOST by bpftrace", s.lost_events));
    }
    if s.lost_records > 0 {
        out.push_str(&format!(", {} records LOST in the kernel", s.lost_records));
    }
    if s.overwritten > 0 {
        out.push_str(&format!(
            ", {} older records overwritten by the flight recorder",
            s.overwritten
        ));
    }
    out
}

/// What `record` says when the log is complete.
fn report_recorded(r: &record::Recorded, log: &std::path::Path, verbose: bool) {
    for again in &r.restarts {
        eprintln!("bthost: tracing had a gap: {again}");
    }
    match &r.failure {
        None => eprintln!(
            "bthost: the log is complete: {} ({} lines; script {}), {:.0} ms after the stop ({})",
            log.display(),
            r.lines,
            r.script.display(),
            r.stop_to_closed.as_secs_f64() * 1e3,
            r.stopped_by
        ),
        Some(why) => eprintln!(
            "bthost: the log is closed, cut short: {} ({} lines; script {}): {why}",
            log.display(),
            r.lines,
            r.script.display(),
        ),
    }
    eprintln!(
        "bthost: memory maps of {} process{} in {}{}",
        r.processes,
        if r.processes == 1 { "" } else { "es" },
        r.maps_dir.display(),
        if r.held > 0 {
            format!(" ({} held at their exit to copy them)", r.held)
        } else {
            String::new()
        }
    );
    if r.dumps > 0 {
        eprintln!(
            "bthost: {} flight-recorder dumps before the last one",
            r.dumps
        );
    }
    if r.lost > 0 {
        eprintln!(
            "bthost: warning: {} records were lost in the kernel (a map was full): raise \
             --map-keys or lower --drain-ms; `convert` names the threads and places",
            r.lost
        );
    }
    eprintln!("bthost: {}", r.cost.describe());
    if r.detaching && verbose {
        eprintln!("bthost: bpftrace is detaching its probes on its own");
    }
    eprintln!("bthost: next: bthost convert {}", log.display());
}

fn libs(l: &LibArgs) -> Result<LibOverrides> {
    if let Some(py) = &l.python {
        library::search::set_python(py).map_err(anyhow::Error::msg)?;
    }
    l.libs
        .iter()
        .map(|s| library::parse_override(s).map_err(anyhow::Error::msg))
        .collect()
}

fn emit(e: &EmitArgs) -> Emit {
    match (e.flight_recorder, e.records) {
        (Some(n), _) => Emit::Ring { per_thread: n },
        (None, Records::Maps) => Emit::Drained {
            period_ms: e.drain_ms,
        },
        (None, Records::Printf) => Emit::Printf,
    }
}

fn seconds(what: &str, s: Option<f64>) -> Result<Option<std::time::Duration>> {
    s.map(|v| {
        std::time::Duration::try_from_secs_f64(v)
            .ok()
            .filter(|d| !d.is_zero())
            .with_context(|| format!("{what} {v}: expected a number of seconds above 0"))
    })
    .transpose()
}

fn run(cli: Cli) -> Result<ExitCode> {
    let paths = SearchPaths::standard(&cli.pack_path);
    let verbose = cli.verbose;
    match cli.cmd {
        Cmd::Build {
            packs,
            bpftrace,
            bpftrace_bin,
            lib,
            emit: emit_args,
            output,
            exit_after_begin,
        } => {
            let reg = Registry::discover(&paths, false);
            eprint!("{}", packs::skipped_report(&reg, verbose));
            let choice = if bpftrace == "auto" {
                build::BpftraceChoice::Detect(bpftrace_bin)
            } else {
                let v = bthost::bpftrace::parse_version(&bpftrace).with_context(|| {
                    format!("--bpftrace {bpftrace:?}: expected auto or a version like 0.17.0")
                })?;
                build::BpftraceChoice::Version(v)
            };
            let opts = build::BuildOptions {
                packs,
                bpftrace: choice,
                libs: libs(&lib)?,
                script: bthost::compose::Options {
                    exit_after_begin,
                    emit: emit(&emit_args),
                    hooks: None,
                    map_keys: emit_args.map_keys,
                    perf_rb_pages: emit_args.perf_rb_pages,
                },
            };
            let built = build::build(&reg, &opts)?;
            build::warn_left_out(&built);
            let schema = build::write(&built, &output)?;
            eprintln!(
                "bthost: wrote {} ({} probes, {} bytes, schema {:016x}) and {}",
                output.display(),
                built.probe_count,
                built.script.len(),
                built.schema.hash(),
                schema.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Record {
            packs,
            bpftrace_bin,
            lib,
            emit: emit_args,
            pids,
            announced,
            node,
            duration,
            on_hang,
            restart,
            no_restart,
            disk_full,
            no_stacks,
            output,
            command,
        } => {
            if let Some(n) = node {
                bthost::log::anchor::set_node_name(&n);
            }
            let reg = Registry::discover(&paths, false);
            eprint!("{}", packs::skipped_report(&reg, verbose));
            let opts = record::RecordOptions {
                build: build::BuildOptions {
                    packs,
                    bpftrace: build::BpftraceChoice::Detect(bpftrace_bin.clone()),
                    libs: libs(&lib)?,
                    script: Default::default(),
                },
                bpftrace_bin,
                log: output.clone(),
                command,
                emit: emit(&emit_args),
                pids,
                announced: announced
                    .as_deref()
                    .map(record::announce::token)
                    .transpose()
                    .map_err(anyhow::Error::msg)?,
                duration: seconds("--duration", duration)?,
                on_hang: seconds("--on-hang", on_hang)?,
                restart: restart || (emit_args.flight_recorder.is_some() && !no_restart),
                wait_for_room: disk_full.unwrap_or(if emit_args.flight_recorder.is_some() {
                    cli::DiskFull::Wait
                } else {
                    cli::DiskFull::Stop
                }) == cli::DiskFull::Wait,
                map_keys: emit_args.map_keys,
                perf_rb_pages: emit_args.perf_rb_pages,
                stacks: !no_stacks,
            };
            let r = record::record(&reg, &opts)?;
            report_recorded(&r, &output, verbose);
            Ok(match r.command_status.and_then(|s| s.code()) {
                Some(c) if c != 0 => ExitCode::from(c.clamp(1, 255) as u8),
                // Tracing stopped early: never a success, whatever the command did.
                _ if r.failure.is_some() => ExitCode::FAILURE,
                _ => ExitCode::SUCCESS,
            })
        }
        Cmd::Stacks { pids, repeat, json } => {
            let (stacks, pauses) = bthost::commands::stacks::take(&pids, repeat);
            if json {
                let mut out = std::io::stdout();
                bthost::stacks::format::write(&mut out, &stacks)?;
            } else {
                print!("{}", bthost::commands::stacks::render(&stacks));
            }
            let (median, worst) = bthost::commands::stacks::median_worst(pauses.clone());
            eprintln!(
                "bthost: {} processes, {} takings: pause per process median {median} us, worst {worst} us",
                pids.len(),
                pauses.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Report {
            logs,
            json,
            same_boot,
            jobs,
        } => {
            let reg = Registry::discover(&paths, true);
            eprint!("{}", packs::skipped_report(&reg, verbose));
            let opts = bthost::report::ReportOptions {
                logs,
                same_boot,
                jobs: jobs.map_or_else(convert::default_jobs, |j| j as usize),
            };
            let (cx, gather, findings) = bthost::report::run(&reg, &opts)?;
            if json {
                let r = bthost::report::json::build(&cx, &gather, &findings);
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{}", bthost::report::text::render(&cx, &gather, &findings));
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Announce { token, pid } => {
            let token = record::announce::token(&token).map_err(anyhow::Error::msg)?;
            record::announce::announce(token, pid);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Dump { pid } => {
            let n = record::dump::ask(pid).map_err(anyhow::Error::msg)?;
            eprintln!("bthost: asked {n} recorder(s) to dump their flight recorder");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Packs { lib } => {
            let reg = Registry::discover(&paths, true);
            print!("{}", packs::report(&reg, &libs(&lib)?, verbose));
            Ok(ExitCode::SUCCESS)
        }
        Cmd::NewPack {
            name,
            lib,
            plugin,
            root,
        } => {
            let reg = Registry::discover(&paths, false);
            let req = bthost::commands::new_pack::NewPack {
                name,
                lib,
                plugin,
                root,
            };
            let done = bthost::commands::new_pack::scaffold(&reg, &req)?;
            for f in &done.files {
                eprintln!("bthost: wrote {}", f.display());
            }
            eprint!("{}", done.next_steps);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Doctor {
            packs: chosen,
            bpftrace_bin,
            lib,
        } => {
            let reg = Registry::discover(&paths, false);
            let chosen = if chosen.is_empty() {
                reg.entries.keys().cloned().collect()
            } else {
                chosen
            };
            let checks = doctor::run(&reg, &chosen, &libs(&lib)?, &bpftrace_bin);
            print!("{}", doctor::format(&checks));
            print!("{}", packs::skipped_report(&reg, verbose));
            let failed = checks.iter().any(|c| c.status == doctor::Status::Fail);
            Ok(if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Cmd::Completions { shell } => {
            about::completions(shell)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Man { dir } => {
            about::man(dir.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Convert {
            logs,
            same_boot,
            output,
            schema,
            link,
            combined,
            maps,
            memory,
            jobs,
            buffered,
        } => {
            let reg = Registry::discover(&paths, true);
            eprint!("{}", packs::skipped_report(&reg, verbose));
            let expect_schema = match schema {
                None => None,
                Some(f) => Some(read_schema_hash(&f)?),
            };
            let out_dir = output.unwrap_or_else(|| {
                let mut p = logs[0].clone().into_os_string();
                p.push(".d");
                PathBuf::from(p)
            });
            let maps = maps
                .iter()
                .map(|m| bthost::symbolize::parse_maps_arg(m).map_err(anyhow::Error::msg))
                .collect::<Result<_>>()?;
            let opts = ConvertOptions {
                logs,
                same_boot,
                out_dir,
                expect_schema,
                links: link,
                combined,
                maps,
                memory: (memory as usize) << 20,
                jobs: jobs.map_or_else(convert::default_jobs, |j| j as usize),
                direct_io: !buffered,
            };
            let summary = convert::convert(&reg, &opts)?;
            for d in &summary.diags {
                eprint!("{d}");
            }
            if verbose {
                eprintln!(
                    "bthost: read and decoded in {:.2} s ({} sorted runs spilled), wrote in {:.2} s",
                    summary.phases.0, summary.spilled_runs, summary.phases.1
                );
            }
            let (resolved, unresolved) = summary.symbols;
            if resolved + unresolved > 0 {
                eprintln!(
                    "bthost: code addresses: {resolved} symbolized, {unresolved} left as addresses{}",
                    if unresolved > 0 { " (give the processes' maps with --maps PID=FILE)" } else { "" }
                );
            }
            if !summary.device.is_empty() {
                eprintln!("bthost: device side (inferred): {}", summary.device);
            }
            if summary.in_flight > 0 {
                eprintln!(
                    "bthost: {} calls were in flight when the log ended (never returned): listed at the top of log.txt",
                    summary.in_flight
                );
            }
            eprintln!(
                "bthost: {} records, {} events, {} threads{} -> {}",
                summary.stats.records,
                summary.stats.events,
                summary.stats.threads,
                lost_note(&summary.stats),
                summary
                    .outputs
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn read_schema_hash(f: &std::path::Path) -> Result<u64> {
    let text =
        std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
    let first = text.lines().next().unwrap_or("");
    let b = SchemaBuilder::header(first).map_err(|e| anyhow::anyhow!("{}:1: {e}", f.display()))?;
    Ok(b.claimed_hash)
}
