//! A stack frame's name: its function, its file and line where debug info has them, and the
//! object it is in; for the stacks `record` takes (crate::stacks), whose return addresses are
//! looked up at the call (the address before), not at the instruction after it.

use std::path::Path;

use super::{maps, Symbolizer};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameName {
    /// The function, C++ names demangled (None: no symbol covers the address).
    pub function: Option<String>,
    /// The source file (its last component) and line, from DWARF.
    pub place: Option<(String, u32)>,
    /// The object's file name (`libc.so.6`), empty where no mapping holds the address.
    pub object: String,
    /// The address's offset in that object's file.
    pub offset: u64,
}

impl Symbolizer {
    /// Adds the memory map of `pid` from its text (`/proc/PID/maps` lines).
    pub fn add_maps_text(&mut self, pid: u32, text: &str) {
        self.maps.insert(pid, maps::parse(text));
    }

    /// Names the frame at `addr` of `pid`; `is_return`: it is a return address.
    pub fn frame(&mut self, pid: u32, addr: u64, is_return: bool) -> FrameName {
        let look = if is_return {
            addr.saturating_sub(1)
        } else {
            addr
        };
        let Some((mapping, off)) = self.maps.get(&pid).and_then(|m| maps::find(m, look)) else {
            return FrameName {
                function: None,
                place: None,
                object: String::new(),
                offset: addr,
            };
        };
        let path = mapping.path.clone();
        let object = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let found = self
            .files
            .entry(path.clone())
            .or_insert_with(|| super::elf::ElfSymbols::load(&path).ok())
            .as_ref()
            .and_then(|s| s.at_file_offset(off))
            .map(|(name, _, vaddr)| (demangle(name), vaddr));
        let Some((function, vaddr)) = found else {
            self.unresolved += 1;
            return FrameName {
                function: None,
                place: None,
                object,
                offset: off,
            };
        };
        self.resolved += 1;
        let place = self.location(&path, vaddr).and_then(|(file, line)| {
            let name = Path::new(&file).file_name()?.to_string_lossy().into_owned();
            Some((name, line))
        });
        FrameName {
            function: Some(function),
            place,
            object,
            offset: off,
        }
    }
}

/// A C++ name demangled, without its parameters (a report's line has no room for them).
fn demangle(name: &str) -> String {
    // Only mangled names: a C function `w` would read as the type `wchar_t`.
    if !name.starts_with("_Z") {
        return name.to_string();
    }
    let opts = cpp_demangle::DemangleOptions::new().no_params();
    cpp_demangle::Symbol::new(name)
        .ok()
        .and_then(|s| s.demangle(&opts).ok())
        .unwrap_or_else(|| name.to_string())
}
