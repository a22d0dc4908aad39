//! What the generated code must spell differently per bpftrace version.
//!
//! Facts measured on this project's machines (see DESIGN.md):
//! - 0.23.0 to 0.24.1 swap `pid` and `tid` inside a pid namespace; `curtask->pid` / `->tgid`
//!   (kernel BTF) give the right ids there, and `tid(init)` only exists from 0.24.0.
//! - `sarg0` is the first stack argument up to 0.20, deprecated from 0.21 and removed in 0.25;
//!   `*(uint64*)(reg("sp") + 8)` works everywhere (at a uprobe, sp points at the return address).
//! - 0.17 prints `Attaching N probes...` into the `-o` file; 0.24 moves it to stderr.
//! - `delete` returns a value from 0.24, and 0.25 warns when a statement discards it;
//!   0.27 warns of the sign conversions of a subtraction and of casts that change nothing
//!   ([`Spelling`], crate::compose::emit::widen).

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
    /// 512-byte stack: bpftrace 0.17 keeps both on it and fails to load some probes at 10
    /// (measured: ncclBcast's uretprobe, once its records carried the call site; 11 failed
    /// before), so 9; 0.23 loads every probe of the packs paired (widest: 14). Versions
    /// between were not measured and keep 0.17's bound.
    pub max_held_width: usize,
    /// Whether scripts may set bpftrace's options in a `config = { ... }` block (0.20 and
    /// later); older versions read them from `BPFTRACE_*` environment variables.
    pub config_block: bool,
    /// Whether bpftrace survives printing a map that a probe deletes from meanwhile. Before
    /// 0.19 its print took the kernel's ENOENT for an error and threw: bpftrace died (seen
    /// here with 0.17 under load). Scripts for those versions never delete, per call, from a
    /// map printed while the probes run.
    pub print_survives_deletes: bool,
    /// How statements and expressions that newer versions warn about are spelled.
    pub spell: Spelling,
}

/// Spellings that keep a script free of warnings where bpftrace added them, and unchanged
/// where it did not (each measured: 0.17, 0.23 and 0.27.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spelling {
    /// From 0.25 `delete` returns whether the key was there, and a statement that drops the
    /// value warns once per site: 80 warnings for the packs' script, each with its source
    /// line, on every run (0.27.1). Before 0.24 there is no value to assign (an error).
    delete_returns: bool,
    /// 0.27 converts both sides of a subtraction of `uint64`s to `int64` itself, and warns of
    /// each (3,284 warnings in printf mode). 0.23 cannot cast a tuple's field (`$held.1`):
    /// "Cannot cast from none".
    explicit_sub: bool,
}

impl Spelling {
    /// `delete(@m[k]);`, or `$del = delete(@m[k]);` where delete returns a value.
    pub fn delete(self, target: &str) -> String {
        if self.delete_returns {
            format!("$del = delete({target});")
        } else {
            format!("delete({target});")
        }
    }

    /// `now - start`, both `uint64` times (a duration is never negative, nor near 2^63 ns).
    pub fn elapsed(self, now: &str, start: &str) -> String {
        if self.explicit_sub {
            format!("(int64)({now}) - (int64)({start})")
        } else {
            format!("{now} - {start}")
        }
    }
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
            max_held_width: if *v < Version::new(0, 23, 0) { 9 } else { 16 },
            config_block: *v >= Version::new(0, 20, 0),
            print_survives_deletes: *v >= Version::new(0, 19, 0),
            spell: Spelling {
                delete_returns: *v >= Version::new(0, 25, 0),
                explicit_sub: *v >= Version::new(0, 27, 0),
            },
        }
    }

    /// The return address at function entry: the word at the stack pointer (x86-64). A plain
    /// dereference on every version (`sarg` starts one word above it), parenthesized so that
    /// it reads as one `uint64` (crate::compose::emit::widen).
    pub fn return_address(&self) -> String {
        "*(uint64*)(reg(\"sp\"))".to_string()
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
        // The return address is the word below the first stack argument, on every version,
        // and reads as a uint64 (no cast for bpftrace 0.27 to warn of).
        for d in [&d17, &d23] {
            let ra = d.return_address();
            assert_eq!(ra, "*(uint64*)(reg(\"sp\"))");
            assert_eq!(crate::compose::emit::widen::to_u64(&ra), ra);
        }
        assert_eq!(
            Dialect::for_version(&Version::new(0, 24, 1)).pid,
            "curtask->tgid"
        );
        assert_eq!(Dialect::for_version(&Version::new(0, 24, 2)).tid, "tid");
        assert_eq!(d23.spell.delete("@a[$t]"), "delete(@a[$t]);");
        assert_eq!(d23.spell.elapsed("$now", "$held.1"), "$now - $held.1");
        let d27 = Dialect::for_version(&Version::new(0, 27, 1));
        assert_eq!(d27.spell.delete("@a[$t]"), "$del = delete(@a[$t]);");
        assert_eq!(
            d27.spell.elapsed("$now", "$held.1"),
            "(int64)($now) - (int64)($held.1)"
        );
    }
}
