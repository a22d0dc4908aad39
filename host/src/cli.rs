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
    /// Look for the packs' libraries in this Python's environment too (its site-packages'
    /// torch/lib and nvidia/*/lib, its prefix's lib/); default: $VIRTUAL_ENV, $CONDA_PREFIX.
    #[arg(long = "python", value_name = "PY")]
    pub python: Option<PathBuf>,
}

/// How records leave the kernel (`build` and `record`).
#[derive(Args, Debug, Clone)]
pub struct EmitArgs {
    /// How records leave the kernel: `maps` (stored in BPF maps, drained off the traced
    /// threads' path: about the bare probe's cost) or `printf` (printed as written: 1.6-2x;
    /// for a log read live).
    #[arg(long, value_enum, default_value_t = Records::Maps)]
    pub records: Records,
    /// How often stored records are drained (milliseconds).
    #[arg(long = "drain-ms", value_name = "MS", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..=60_000))]
    pub drain_ms: u32,
    /// Flight recorder: keep only each thread's last N records in BPF maps, write nothing
    /// while the job runs, dump them when tracing stops or when asked (`bthost dump`,
    /// `--on-hang`).
    #[arg(long = "flight-recorder", value_name = "N", conflicts_with = "records",
          value_parser = clap::value_parser!(u32).range(1..=1 << 20))]
    pub flight_recorder: Option<u32>,
    /// Entries of each BPF map (bpftrace gives every map this size and preallocates it).
    /// Default: 8192 (maps), N x 64 (flight recorder), 4096 (printf).
    #[arg(long = "map-keys", value_name = "N", value_parser = clap::value_parser!(u32).range(16..))]
    pub map_keys: Option<u32>,
    /// bpftrace's output buffer per CPU, in pages (bpftrace's default: 64).
    #[arg(long = "perf-rb-pages", value_name = "PAGES", value_parser = clap::value_parser!(u32).range(1..))]
    pub perf_rb_pages: Option<u32>,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFull {
    Stop,
    Wait,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Records {
    Maps,
    Printf,
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
        #[command(flatten)]
        emit: EmitArgs,
        /// Output script; the schema goes beside it (`.schema`).
        #[arg(short, long, default_value = "bpft.bt")]
        output: PathBuf,
        /// Exit right after attaching (for checking a script and its probes).
        #[arg(long, hide = true)]
        exit_after_begin: bool,
    },
    /// Trace: build the script for the installed bpftrace, run it system-wide (or on --pid)
    /// and write the log, with each traced process's memory map beside it (LOG.maps/) for
    /// symbolization. With a command: start it once the probes are attached, stop when it
    /// exits; else stop at Ctrl-C, SIGTERM or --duration.
    Record {
        /// Packs to use, comma-separated (e.g. hip,rccl).
        #[arg(long, value_delimiter = ',', required = true)]
        packs: Vec<String>,
        /// The bpftrace to run; its version picks the packs' variants.
        #[arg(long = "bpftrace-bin", default_value = "bpftrace")]
        bpftrace_bin: PathBuf,
        #[command(flatten)]
        lib: LibArgs,
        #[command(flatten)]
        emit: EmitArgs,
        /// Trace only this process and the processes it starts from then on (repeatable).
        #[arg(long = "pid", value_name = "PID", value_delimiter = ',')]
        pids: Vec<u32>,
        /// Trace (also) the processes that `bthost announce --token TOKEN` names, and those they
        /// start: `auto` derives the token from Slurm's job and node (contrib/slurm/bthost-run
        /// announces each task of a job step with srun's --task-prolog), `slurm:JOB:NODE`
        /// gives them explicitly (a recorder started through sudo, which clears the environment).
        #[arg(long, value_name = "TOKEN|auto|slurm:JOB:NODE")]
        announced: Option<String>,
        /// The node's name in the log, which reports and traces show (default: Slurm's
        /// $SLURMD_NODENAME, else the host's name).
        #[arg(long, value_name = "NAME")]
        node: Option<String>,
        /// Stop tracing after this many seconds.
        #[arg(long, value_name = "SECONDS")]
        duration: Option<f64>,
        /// Flight recorder: dump when no group operation (a collective) has completed for
        /// this many seconds while one is pending (a GPU's hang: the collective only
        /// enqueued, syncs never return, a watchdog's polls answer not-ready), or when calls
        /// have been in flight this long with no record completing meanwhile.
        #[arg(long = "on-hang", value_name = "SECONDS", requires = "flight_recorder")]
        on_hang: Option<f64>,
        /// When bpftrace ends without being told (the OOM killer, a kill, a crash), run it
        /// again and go on with the log after a gap mark that convert and report show; not
        /// again if it ends within 10 s of its restart. The default with --flight-recorder.
        #[arg(long, overrides_with = "no_restart")]
        restart: bool,
        /// Stop tracing when bpftrace ends early (the default without --flight-recorder).
        #[arg(long = "no-restart")]
        no_restart: bool,
        /// When the log's disk is full (ENOSPC, EDQUOT): `stop` tracing, keeping what reached
        /// the log; or `wait` (the default with --flight-recorder): take the dump back whole,
        /// go on tracing, and dump again when there is room.
        #[arg(long = "disk-full", value_enum, value_name = "stop|wait")]
        disk_full: Option<DiskFull>,
        /// Take no stacks at the dumps (by default the traced processes' native and Python
        /// stacks are taken at each dump, and at the stop when calls are in flight, into
        /// LOG.stacks; they need ptrace rights).
        #[arg(long = "no-stacks")]
        no_stacks: bool,
        /// The log to write; the script goes beside it (LOG.bt, LOG.schema).
        #[arg(short, long, default_value = "bthost.log")]
        output: PathBuf,
        /// The workload to run while tracing (after `--`).
        #[arg(last = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Explain a hang in a screenful, from one log or several (one per node): per communicator
    /// (any pack's group), the operation where members diverge, who entered it and since when,
    /// who never did and what they do instead; mismatches; sends without receives; deadlocks.
    Report {
        /// The logs, one per node (`bthost record` puts clock anchors in each).
        #[arg(required = true, value_name = "LOG")]
        logs: Vec<PathBuf>,
        /// Print the report as JSON (versioned: docs/report-json.md).
        #[arg(long)]
        json: bool,
        /// The logs come from one boot of one host: use their times as they are, without
        /// clock anchors (logs written by plain bpftrace).
        #[arg(long = "same-boot")]
        same_boot: bool,
        /// Threads to read on (default: the cores available): each log is decoded beside
        /// the report's reading of its calls. The report is the same whatever the number.
        #[arg(long, short = 'j', value_name = "N",
              value_parser = clap::value_parser!(u64).range(1..=1024))]
        jobs: Option<u64>,
    },
    /// Tell a recorder (`record --announced TOKEN`) to trace this process's parent (or --pid)
    /// and what it starts: run as srun's --task-prolog, the parent is the task, before its
    /// program starts.
    Announce {
        /// The recorder's token: a number, or `auto` (from Slurm's job and node).
        #[arg(long, default_value = "auto", value_name = "TOKEN|auto")]
        token: String,
        /// The process to announce (default: the parent).
        #[arg(long, value_name = "PID")]
        pid: Option<u32>,
    },
    /// Ask running flight recorders (`bthost record --flight-recorder`) to dump what they
    /// hold into their logs now (SIGUSR1 to each).
    Dump {
        /// Only the recorder with this process id (default: every `bthost record` here).
        #[arg(long = "pid", value_name = "PID")]
        pid: Option<u32>,
    },
    /// Show the native and Python stacks of live processes as record takes them at a dump,
    /// with the pause each process saw (--repeat N: its median and worst).
    Stacks {
        #[arg(required = true, value_name = "PID")]
        pids: Vec<u32>,
        /// Take them this many times and print the pauses' median and worst.
        #[arg(long, default_value_t = 1)]
        repeat: u32,
        /// Print the stacks as record keeps them (JSON lines, as in LOG.stacks).
        #[arg(long)]
        json: bool,
    },
    /// List the packs found: version, probes, bpftrace ranges, plugin, library.
    Packs {
        #[command(flatten)]
        lib: LibArgs,
    },
    /// Start a pack for a new library (or a program's own functions): packs/NAME/pack.toml
    /// listing the functions the file defines as probes to pick from; with --plugin, a decoder
    /// crate plugins/NAME/ in the workspace. Prints the next steps.
    NewPack {
        /// The pack's name (an identifier: letters, digits, _).
        name: String,
        /// The library: a name the dynamic linker knows (libcudart.so.12) or a path to a shared
        /// library or an executable.
        #[arg(long, value_name = "SONAME|PATH")]
        lib: String,
        /// Also a plugin crate (plugins/NAME/, a decoder with a unit test), added to the workspace.
        #[arg(long)]
        plugin: bool,
        /// The source tree to write into (default: the one around the current folder, else it).
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
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
        /// The log, as `bthost record` or bpftrace with a `bthost build` script wrote it; or
        /// several (one per node), put on one timeline by their clock anchors.
        #[arg(required = true, value_name = "LOG")]
        logs: Vec<PathBuf>,
        /// The logs come from one boot of one host: use their times as they are (logs
        /// without clock anchors, written by plain bpftrace).
        #[arg(long = "same-boot")]
        same_boot: bool,
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
        /// /proc/PID/maps taken while it ran; repeatable; of the first log). Default: the maps
        /// `bthost record` kept in LOG.maps/ beside each log.
        #[arg(long = "maps", value_name = "PID=FILE")]
        maps: Vec<String>,
        /// Memory for sorting calls; past it they spill to temporary files in DIR, so a log
        /// of any size converts in about this much (plus some 40 MiB of I/O buffers).
        #[arg(long, value_name = "MiB", default_value_t = bthost::convert::DEFAULT_MEMORY_MB as u64,
              value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
        memory: u64,
        /// Threads to convert on (default: the cores available). The outputs are the same
        /// whatever the number.
        #[arg(long, short = 'j', value_name = "N",
              value_parser = clap::value_parser!(u64).range(1..=1024))]
        jobs: Option<u64>,
        /// Write the outputs through the page cache. By default they are written with
        /// direct I/O where the file system takes it (O_DIRECT): gigabytes nobody reads
        /// during the conversion, whose copy into the page cache was most of its system
        /// time; buffered writes may suit a slow disk whose page cache would absorb them.
        #[arg(long)]
        buffered: bool,
    },
    /// Write a shell's completion script to stdout: e.g. `source <(bthost completions bash)`,
    /// or into bash-completion's folder (share/bash-completion/completions/bthost).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man page (roff) to stdout (`bthost man | man -l -`); with --dir, write
    /// bthost.1 and one page per subcommand (bthost-record.1, ...) into DIR.
    Man {
        /// The folder to write the pages into (a man1 folder).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}
