//! bthost's own functions that its scripts probe (crate::compose::hooks): calling one is how
//! `record` tells the running bpftrace something, and learns when bpftrace has read everything
//! before it. Each takes the recorder's token first: every recorder on the machine probes the
//! same functions, and acts only on its own calls.
//!
//! Each body differs (a different constant) so that the compiler cannot merge two of them into
//! one address: a probe on one would then fire for the other's calls.

use std::hint::black_box;

use crate::compose::hooks::names;

#[no_mangle]
#[inline(never)]
pub extern "C" fn bthost_attached_sentinel(token: u64) -> u64 {
    black_box(token).wrapping_add(1)
}

#[no_mangle]
#[inline(never)]
pub extern "C" fn bthost_barrier(token: u64, n: u64) -> u64 {
    black_box(token).wrapping_add(black_box(n)).wrapping_add(2)
}

#[no_mangle]
#[inline(never)]
pub extern "C" fn bthost_drain_request(token: u64) -> u64 {
    black_box(token).wrapping_add(3)
}

#[no_mangle]
#[inline(never)]
pub extern "C" fn bthost_dump_request(token: u64, n: u64) -> u64 {
    black_box(token).wrapping_add(black_box(n)).wrapping_add(4)
}

#[no_mangle]
#[inline(never)]
pub extern "C" fn bthost_status_request(token: u64, n: u64) -> u64 {
    black_box(token).wrapping_add(black_box(n)).wrapping_add(5)
}

#[no_mangle]
#[inline(never)]
pub extern "C" fn bthost_maps_taken(token: u64, pid: u64) -> u64 {
    black_box(token)
        .wrapping_add(black_box(pid))
        .wrapping_add(6)
}

#[no_mangle]
#[inline(never)]
pub extern "C" fn bthost_trace_pid(token: u64, pid: u64) -> u64 {
    black_box(token)
        .wrapping_add(black_box(pid))
        .wrapping_add(7)
}

#[no_mangle]
#[inline(never)]
pub extern "C" fn bthost_maps_wanted(token: u64, pid: u64) -> u64 {
    black_box(token)
        .wrapping_add(black_box(pid))
        .wrapping_add(8)
}

/// Every sentinel, so that none is dropped from the binary and all can be checked present.
pub const ALL: [&str; 8] = [
    names::ATTACHED,
    names::BARRIER,
    names::DRAIN,
    names::DUMP,
    names::STATUS,
    names::MAPS_TAKEN,
    names::TRACE_PID,
    names::MAPS_WANTED,
];

/// The channel to one recorder's script.
#[derive(Clone, Copy, Debug)]
pub struct Channel {
    pub token: u64,
}

impl Channel {
    pub fn attached(&self) {
        bthost_attached_sentinel(self.token);
    }
    pub fn barrier(&self, n: u64) {
        bthost_barrier(self.token, n);
    }
    pub fn drain(&self) {
        bthost_drain_request(self.token);
    }
    pub fn dump(&self, n: u64) {
        bthost_dump_request(self.token, n);
    }
    pub fn status(&self, n: u64) {
        bthost_status_request(self.token, n);
    }
    /// `pid`'s memory map is copied (0: stop holding processes at their exit).
    pub fn maps_taken(&self, pid: u32) {
        bthost_maps_taken(self.token, u64::from(pid));
    }
    /// Trace `pid` too (with a pid filter); safe between fork and exec.
    pub fn trace_pid(&self, pid: u32) {
        bthost_trace_pid(self.token, u64::from(pid));
    }
    /// Copy `pid`'s memory map before it exits; safe between fork and exec.
    pub fn maps_wanted(&self, pid: u32) {
        bthost_maps_wanted(self.token, u64::from(pid));
    }
}

/// bthost's executable, if its sentinels can be probed there: its path is written into a
/// root-run script, so only plain path characters pass (it is not validated pack text), and a
/// stripped binary has no symbols to probe.
///
/// The script names it `/proc/<bthost's pid>/exe`: the kernel resolves that link to the file
/// this process runs, even if the path now holds another (bthost reinstalled, or rebuilt,
/// between its start and bpftrace's attach: a probe on the new file never fired, and record
/// waited for its attach sentinel forever).
pub fn probeable_exe() -> Result<String, String> {
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find bthost's executable: {e}"))?;
    let path = exe
        .to_str()
        .ok_or_else(|| format!("{}: not UTF-8", exe.display()))?;
    crate::ident::check_lib_path(path)?;
    let f = crate::library::symbols::functions(&exe)?;
    if let Some(missing) = ALL.iter().find(|n| !f.probeable(n)) {
        return Err(format!(
            "{path} has no probeable {missing} (a stripped binary?)"
        ));
    }
    Ok(format!("/proc/{}/exe", std::process::id()))
}
