//! The probes `bthost record` adds to its own scripts: a channel from bthost into the running
//! script, process filters, and the hold that keeps a short-lived process's memory map.
//!
//! bthost calls functions of its own (`bthost_*`, crate::record::sentinel) and the script
//! probes them: a uprobe on bthost's executable is how a process tells a running bpftrace
//! something (bpftrace 0.17 reads no input). Every such probe acts only for the recorder whose
//! token (its pid) is the call's first argument: several recorders may run at once, and each
//! one's probes fire on every recorder's calls.
//!
//! Every path written here is checked with crate::ident::check_lib_path; every other value is
//! a number.

use std::fmt::Write as _;

use super::emit::Strategy;
use super::progress::Progress;
use crate::bpftrace::Dialect;

/// The sentinel functions, as `bthost record` defines them.
pub mod names {
    /// Called until it fires: the script's last probe, so every other one is attached.
    pub const ATTACHED: &str = "bthost_attached_sentinel";
    /// `(token, n)`: prints `#B <n> <cpu>`; called on each CPU, it proves that everything
    /// printed before on that CPU has been read (bpftrace 0.17 has a buffer per CPU).
    pub const BARRIER: &str = "bthost_barrier";
    /// `(token)`: one drain of stored records (drained strategy).
    pub const DRAIN: &str = "bthost_drain_request";
    /// `(token, n)`: prints `#E <time>`, everything the kernel holds, then `#Z <n>`.
    pub const DUMP: &str = "bthost_dump_request";
    /// `(token, n)`: prints `#H <n> <time>`, the calls in flight, each thread's record count
    /// and the progress summary (crate::compose::progress), then `#h <n>`, for record's hang
    /// watch (not written to the log).
    pub const STATUS: &str = "bthost_status_request";
    /// `(token, pid)`: record has copied the process's memory map; pid 0: stop holding
    /// processes at their exit (record is stopping, and would not release them).
    pub const MAPS_TAKEN: &str = "bthost_maps_taken";
    /// `(token, pid)`: trace this process too (with a pid filter: record's command).
    pub const TRACE_PID: &str = "bthost_trace_pid";
    /// `(token, pid)`: copy this process's memory map before it exits, holding it there if
    /// need be, as for a process that made records (record's command).
    pub const MAPS_WANTED: &str = "bthost_maps_wanted";
}

/// The line the attach sentinel prints.
pub const ATTACHED_LINE: &str = "#A all probes attached";

/// What record asks of its script.
#[derive(Clone, Debug)]
pub struct Hooks {
    /// bthost's own executable, whose `bthost_*` functions are probed.
    pub exe: String,
    /// The recorder's token: its sentinel probes act only on calls that pass it (its pid, or
    /// the token its announced processes are named with: crate::record::announce).
    pub token: u64,
    /// Trace only chosen processes: those of `pids`, those announced with the token, and those
    /// they start from then on (false: every process).
    pub filter: bool,
    pub pids: Vec<u32>,
    /// libc, whose `exit`, `_exit` and `dlopen` are probed so that a traced process's memory
    /// map is copied before it exits (None: not done).
    pub libc: Option<String>,
}

/// The map of traced processes (with a pid filter).
const TRACED: &str = "@tp";
/// The state of a traced process's memory map: 1 not copied yet (or a library was loaded
/// since), 2 copied, 3 held at its exit.
const MAPS_STATE: &str = "@pm";
/// 1 while record releases the processes it holds at their exit.
const HOLDING: &str = "@hold";

impl Hooks {
    /// Statements for BEGIN.
    pub fn begin(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .pids
            .iter()
            .map(|p| format!("{TRACED}[{p}] = 1;"))
            .collect();
        if self.libc.is_some() {
            out.push(format!("{HOLDING} = 1;"));
        }
        out
    }

    /// The first statement of every pack probe: leave unless the process is traced.
    pub fn guard(&self, d: &Dialect) -> Option<String> {
        self.filter
            .then(|| format!("if ({TRACED}[{}] == 0) {{ return; }}", d.pid))
    }

    /// Statements run with a thread's first record (its `T` line): the process is traced,
    /// and its memory map not yet copied.
    pub fn thread_seen(&self, d: &Dialect) -> Option<String> {
        self.libc.as_ref().map(|_| {
            format!(
                "if ({MAPS_STATE}[{p}] == 0) {{ {MAPS_STATE}[{p}] = 1; }}",
                p = d.pid
            )
        })
    }

    /// The maps the hooks use (cleared at END).
    pub fn maps(&self) -> Vec<String> {
        let mut m = Vec::new();
        if self.filter {
            m.push(TRACED.to_string());
        }
        if self.libc.is_some() {
            m.push(MAPS_STATE.to_string());
            m.push(HOLDING.to_string());
        }
        m
    }

    /// The hooks' probes (all but the attach sentinel, which must come last); returns the
    /// number of probes.
    pub(super) fn probes(
        &self,
        s: &mut String,
        st: &dyn Strategy,
        progress: Option<&Progress>,
        d: &Dialect,
    ) -> usize {
        let mut n = 0;
        let exe = &self.exe;
        let tok = self.token;
        let pid = d.pid;
        if self.filter || self.libc.is_some() {
            let _ = writeln!(s, "\n// bthost record: processes");
        }
        if self.filter {
            // A new process (not a thread: CLONE_THREAD is 0x10000) of a traced one is traced.
            let _ = writeln!(
                s,
                "tracepoint:task:task_newtask\n{{\n\tif ((args->clone_flags & 0x10000) == 0 && {TRACED}[(uint64)curtask->tgid] != 0) {{ {TRACED}[(uint64)args->pid] = 1; }}\n}}"
            );
            let _ = writeln!(
                s,
                "uprobe:{exe}:{}\n/arg0 == {tok}/\n{{\n\t{TRACED}[arg1] = 1;\n}}",
                names::TRACE_PID
            );
            n += 2;
        }
        let _ = writeln!(
            s,
            "tracepoint:sched:sched_process_exit\n{{\n\t$p = (uint64)curtask->tgid;\n\tif (curtask->pid == curtask->tgid) {{"
        );
        if self.filter {
            let del = d.spell.delete(&format!("{TRACED}[$p]"));
            let _ = writeln!(s, "\t\tif ({TRACED}[$p] != 0) {{ {del} }}");
        }
        if self.libc.is_some() {
            // A traced process's exit, for the report (`#P`: pid, time, exit code).
            let del = d.spell.delete(&format!("{MAPS_STATE}[$p]"));
            let _ = writeln!(
                s,
                "\t\tif ({MAPS_STATE}[$p] != 0) {{ printf(\"#P %x %lx %x\\n\", $p, nsecs, curtask->exit_code); {del} }}"
            );
        }
        for l in progress.map(Progress::process_exit).unwrap_or_default() {
            let _ = writeln!(s, "\t\t{l}");
        }
        let _ = writeln!(s, "\t}}\n}}");
        n += 1;
        if let Some(libc) = &self.libc {
            // A traced process whose map record has not copied (it began and ended between
            // two reads of the log) stops at its exit until record has copied it: record
            // reads `#X`, copies /proc/PID/maps and sends SIGCONT.
            let _ = writeln!(
                s,
                "uprobe:{libc}:exit,\nuprobe:{libc}:_exit\n{{\n\t$p = {pid};\n\tif ({MAPS_STATE}[$p] == 1 && {HOLDING} == 1) {{ {MAPS_STATE}[$p] = 3; printf(\"#X %x\\n\", $p); signal(\"SIGSTOP\"); }}\n}}"
            );
            // A library loaded later must be in the copy too.
            let _ = writeln!(
                s,
                "uretprobe:{libc}:dlopen\n{{\n\t$p = {pid};\n\tif ({MAPS_STATE}[$p] == 2) {{ {MAPS_STATE}[$p] = 1; printf(\"#M %x\\n\", $p); }}\n}}"
            );
            let _ = writeln!(
                s,
                "uprobe:{exe}:{}\n/arg0 == {tok}/\n{{\n\tif (arg1 == 0) {{ {HOLDING} = 0; }} else {{ {MAPS_STATE}[arg1] = 2; }}\n}}",
                names::MAPS_TAKEN
            );
            // Record's command: held at its exit for its map even if it made no record (the
            // map says which copy of a pack's library it loaded: crate::record::loads).
            let _ = writeln!(
                s,
                "uprobe:{exe}:{}\n/arg0 == {tok}/\n{{\n\tif ({MAPS_STATE}[arg1] == 0) {{ {MAPS_STATE}[arg1] = 1; }}\n}}",
                names::MAPS_WANTED
            );
            n += 5;
        }
        let _ = writeln!(s, "\n// bthost record: its requests");
        let _ = writeln!(
            s,
            "uprobe:{exe}:{}\n/arg0 == {tok}/\n{{\n\tprintf(\"#B %x %x\\n\", arg1, cpu);\n}}",
            names::BARRIER
        );
        n += 1;
        if let Some(drain) = st.drain() {
            let _ = writeln!(s, "uprobe:{exe}:{}\n/arg0 == {tok}/\n{{", names::DRAIN);
            for l in drain {
                let _ = writeln!(s, "\t{l}");
            }
            let _ = writeln!(s, "}}");
            n += 1;
        }
        let _ = writeln!(
            s,
            "uprobe:{exe}:{}\n/arg0 == {tok}/\n{{\n\tprintf(\"#E %lx in-flight calls\\n\", nsecs);",
            names::DUMP
        );
        for l in st.dump() {
            let _ = writeln!(s, "\t{l}");
        }
        let _ = writeln!(s, "\tprintf(\"#Z %x\\n\", arg1);\n}}");
        n += 1;
        if let Some(status) = st.status() {
            let _ = writeln!(
                s,
                "uprobe:{exe}:{}\n/arg0 == {tok}/\n{{\n\tprintf(\"#H %x %lx\\n\", arg1, nsecs);",
                names::STATUS
            );
            for l in status
                .into_iter()
                .chain(progress.map(Progress::status).unwrap_or_default())
            {
                let _ = writeln!(s, "\t{l}");
            }
            let _ = writeln!(s, "\tprintf(\"#h %x\\n\", arg1);\n}}");
            n += 1;
        }
        n
    }

    /// The attach sentinel, the script's last probe.
    pub fn attached_probe(&self) -> String {
        format!(
            "\n// bthost record: the last probe; when it fires, the others are attached.\n\
             uprobe:{}:{}\n/arg0 == {}/\n{{\n\tprintf(\"{ATTACHED_LINE}\\n\");\n}}\n",
            self.exe,
            names::ATTACHED,
            self.token
        )
    }
}
