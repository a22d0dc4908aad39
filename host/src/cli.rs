//! The command line (clap). Turned into plain options at the edge, in main.rs.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "bthost",
    version,
    about = "Trace GPU runtime APIs with bpftrace uprobes from probe packs"
)]
pub struct Cli {
    /// Extra folder with packs (searched first; repeatable). Also: $BTHOST_PACK_PATH.
    #[arg(long = "pack-path", global = true, value_name = "DIR")]
    pub pack_path: Vec<PathBuf>,

    /// Say more (e.g. abi_stable's full report on a plugin that does not match).
    #[arg(short, long, global = true)]
    pub verbose: bool,

    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Args, Debug, Clone)]
pub struct LibArgs {
    /// Use this file as a pack's library: PACK=/path/to/lib.so (repeatable).
    #[arg(long = "lib", value_name = "PACK=PATH")]
    pub libs: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Compose one bpftrace script (and its schema) from the chosen packs.
    Build {
        /// Packs to use, comma-separated (e.g. hip,rccl).
        #[arg(long, value_delimiter = ',', required = true)]
        packs: Vec<String>,
        /// bpftrace version to generate for: `auto` runs `bpftrace --version`.
        #[arg(long, default_value = "auto", value_name = "auto|X.Y.Z")]
        bpftrace: String,
        /// The bpftrace binary `auto` asks.
        #[arg(long = "bpftrace-bin", default_value = "bpftrace")]
        bpftrace_bin: PathBuf,
        #[command(flatten)]
        lib: LibArgs,
        /// Output script; the schema goes beside it (`.schema`).
        #[arg(short, long, default_value = "bpft.bt")]
        output: PathBuf,
        /// Exit right after attaching (for checking a script and its probes).
        #[arg(long, hide = true)]
        exit_after_begin: bool,
    },
    /// Trace: build the script for the installed bpftrace, run it system-wide and write the
    /// log, with each traced process's memory map beside it (LOG.maps/) for symbolization.
    /// With a command: start it once the probes are attached, stop when it exits; else stop
    /// at Ctrl-C.
    Record {
        /// Packs to use, comma-separated (e.g. hip,rccl).
        #[arg(long, value_delimiter = ',', required = true)]
        packs: Vec<String>,
        /// The bpftrace to run; its version picks the packs' variants.
        #[arg(long = "bpftrace-bin", default_value = "bpftrace")]
        bpftrace_bin: PathBuf,
        #[command(flatten)]
        lib: LibArgs,
        /// The log to write; the script goes beside it (LOG.bt, LOG.schema).
        #[arg(short, long, default_value = "bthost.log")]
        output: PathBuf,
        /// The workload to run while tracing (after `--`).
        #[arg(last = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// List the packs found: version, probes, bpftrace ranges, plugin, library.
    Packs {
        #[command(flatten)]
        lib: LibArgs,
    },
    /// Check that this machine can trace: bpftrace, rights, tracefs, BTF, pack libraries.
    Doctor {
        /// Packs whose libraries to check (default: all found).
        #[arg(long, value_delimiter = ',')]
        packs: Vec<String>,
        #[arg(long = "bpftrace-bin", default_value = "bpftrace")]
        bpftrace_bin: PathBuf,
        #[command(flatten)]
        lib: LibArgs,
    },
    /// Decode a log into DIR: the per-thread text log (log.txt) and Perfetto traces, one per
    /// link key (trace_<key>.pftrace).
    Convert {
        /// The log, as `bthost record` or bpftrace with a `bthost build` script wrote it.
        log: PathBuf,
        /// Output folder (default: LOG.d).
        #[arg(short, long, value_name = "DIR")]
        output: Option<PathBuf>,
        /// Refuse the log unless it was written by the script whose schema file this is.
        #[arg(long, value_name = "FILE")]
        schema: Option<PathBuf>,
        /// Link keys to draw flows for (default: every key the log's packs declare).
        #[arg(long, value_delimiter = ',')]
        link: Option<Vec<String>>,
        /// One Perfetto trace with every chosen key's flows, not one trace per key.
        #[arg(long)]
        combined: bool,
        /// A traced process's memory map, for symbolizing code addresses: PID=FILE (a copy of
        /// /proc/PID/maps taken while it ran; repeatable). Default: the maps `bthost record`
        /// kept in LOG.maps/.
        #[arg(long = "maps", value_name = "PID=FILE")]
        maps: Vec<String>,
        /// Memory for sorting calls and grouping the text log by thread; past it they spill
        /// to temporary files in DIR, so a log of any size converts in about this much (plus
        /// some 30 MiB of I/O buffers).
        #[arg(long, value_name = "MiB", default_value_t = bthost::convert::DEFAULT_MEMORY_MB as u64,
              value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
        memory: u64,
    },
}
