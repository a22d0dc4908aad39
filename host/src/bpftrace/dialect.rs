//! What the generated code must spell differently per bpftrace version.
//!
//! Facts measured on this project's machines (see DESIGN.md):
//! - 0.23.0 to 0.24.1 swap `pid` and `tid` inside a pid namespace; `curtask->pid` / `->tgid`
//!   (kernel BTF) give the right ids there, and `tid(init)` only exists from 0.24.0.
//! - `sarg0` is the first stack argument up to 0.20, deprecated from 0.21 and removed in 0.25;
//!   `*(uint64*)(reg("sp") + 8)` works everywhere (at a uprobe, sp points at the return address).
//! - 0.17 prints `Attaching N probes...` into the `-o` file; 0.24 moves it to stderr.

use semver::Version;

/// The version-specific spellings for one bpftrace version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dialect {
    pub version: Version,
    /// Expression for the (init-namespace) thread id.
    pub tid: &'static str,
    /// Expression for the (init-namespace) process id.
    pub pid: &'static str,
    /// Whether `sargN` is the way to read stack arguments (else `reg("sp")`).
    pub sarg: bool,
    /// Short description of the choices, written into the script's header comment.
    pub note: &'static str,
    /// The widest record (numbers after the tid) that may wait for its pair
    /// (crate::compose::pairing). The waiting tuple and the pair's printf must fit BPF's
    /// 512-byte stack: bpftrace 0.17 keeps both on it and fails to load the widest probes past
    /// 10 (measured), 0.23 loads every probe of the packs paired (widest: 14). Versions between
    /// were not measured and keep 0.17's bound.
    pub max_held_width: usize,
    /// Whether scripts may set bpftrace's options in a `config = { ... }` block (0.20 and
    /// later); older versions read them from `BPFTRACE_*` environment variables.
    pub config_block: bool,
    /// Whether bpftrace survives printing a map that a probe deletes from meanwhile. Before
    /// 0.19 its print took the kernel's ENOENT for an error and threw: bpftrace died (seen
    /// here with 0.17 under load). Scripts for those versions never delete, per call, from a
    /// map printed while the probes run.
    pub print_survives_deletes: bool,
}

impl Dialect {
    pub fn for_version(v: &Version) -> Dialect {
        let swapped = *v >= Version::new(0, 23, 0) && *v < Version::new(0, 24, 2);
        let (tid, pid, note) = if swapped {
            (
                "curtask->pid",
                "curtask->tgid",
                "0.23.0-0.24.1: pid/tid are swapped in pid namespaces; ids read from curtask (needs kernel BTF)",
            )
        } else if *v < Version::new(0, 23, 0) {
            (
                "tid",
                "pid",
                if *v < Version::new(0, 21, 0) {
                    "<0.21: tid and pid builtins; stack arguments via sargN"
                } else {
                    "0.21-0.22: tid and pid builtins; stack arguments via reg(\"sp\") (sargN is deprecated)"
                },
            )
        } else {
            (
                "tid",
                "pid",
                ">=0.24.2: tid and pid builtins; stack arguments via reg(\"sp\")",
            )
        };
        Dialect {
            version: v.clone(),
            tid,
            pid,
            sarg: *v < Version::new(0, 21, 0),
            note,
            max_held_width: if *v < Version::new(0, 23, 0) { 10 } else { 16 },
            config_block: *v >= Version::new(0, 20, 0),
            print_survives_deletes: *v >= Version::new(0, 19, 0),
        }
    }

    /// Expression for argument slot `index` at function entry (6 and above are on the stack).
    pub fn arg(&self, index: usize) -> String {
        if index < 6 {
            format!("arg{index}")
        } else if self.sarg {
            format!("sarg{}", index - 6)
        } else {
            format!("*(uint64*)(reg(\"sp\") + {})", 8 * (index - 5))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_per_version() {
        let d17 = Dialect::for_version(&Version::new(0, 17, 0));
        assert_eq!((d17.tid, d17.arg(6).as_str()), ("tid", "sarg0"));
        let d23 = Dialect::for_version(&Version::new(0, 23, 2));
        assert_eq!(d23.tid, "curtask->pid");
        assert_eq!(d23.arg(7), "*(uint64*)(reg(\"sp\") + 16)");
        assert_eq!(
            Dialect::for_version(&Version::new(0, 24, 1)).pid,
            "curtask->tgid"
        );
        assert_eq!(Dialect::for_version(&Version::new(0, 24, 2)).tid, "tid");
    }
}
