//! Offline symbolization of code addresses (kernel function pointers, call sites): the
//! traced process's memory map, recorded with the trace or handed over with `--maps`, says
//! which file and offset an address is; that file's ELF symbols say which function. C++ names
//! are demangled. An address that cannot be resolved stays an address, and is counted.

pub mod elf;
pub mod frame;
pub mod maps;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use elf::ElfSymbols;
use maps::Mapping;

#[derive(Default)]
pub struct Symbolizer {
    maps: HashMap<u32, Vec<Mapping>>,
    files: HashMap<PathBuf, Option<ElfSymbols>>,
    /// Debug info (DWARF) of each file, for file:line; None where the file has none.
    lines: HashMap<PathBuf, Option<addr2line::Loader>>,
    pub resolved: u64,
    pub unresolved: u64,
}

impl Symbolizer {
    /// Adds the memory map of process `pid`.
    pub fn add_maps(&mut self, pid: u32, path: &Path) -> Result<(), String> {
        self.maps.insert(pid, maps::load(path)?);
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.maps.is_empty()
    }

    /// `function+0xoff` for `addr` in process `pid`, C++ names demangled.
    pub fn resolve(&mut self, pid: u32, addr: u64) -> Option<String> {
        let found = self.lookup(pid, addr);
        match found {
            Some(_) => self.resolved += 1,
            None => self.unresolved += 1,
        }
        found
    }

    fn lookup(&mut self, pid: u32, addr: u64) -> Option<String> {
        let (mapping, off) = maps::find(self.maps.get(&pid)?, addr)?;
        let path = mapping.path.clone();
        let syms = self
            .files
            .entry(path.clone())
            .or_insert_with(|| ElfSymbols::load(&path).ok())
            .as_ref()?;
        let (name, within, vaddr) = syms.at_file_offset(off)?;
        let name = cpp_demangle::Symbol::new(name)
            .ok()
            .and_then(|s| s.demangle(&Default::default()).ok())
            .unwrap_or_else(|| name.to_string());
        // A code address inside a function (not at its start, as a function pointer is) is a
        // call site's return address: the call is the instruction before it, and its line
        // is the caller's line (the next instruction may be on the next line).
        let at = if within > 0 { vaddr - 1 } else { vaddr };
        let place = self
            .location(&path, at)
            .map(|(file, line)| format!(" at {file}:{line}"))
            .unwrap_or_default();
        Some(format!("{name}+{within:#x}{place}"))
    }

    /// The source file and line of `vaddr` in the ELF file `path`, from its DWARF (loaded once
    /// per file).
    fn location(&mut self, path: &std::path::Path, vaddr: u64) -> Option<(String, u32)> {
        let loader = self
            .lines
            .entry(path.to_path_buf())
            .or_insert_with(|| addr2line::Loader::new(path).ok());
        let loc = loader.as_ref()?.find_location(vaddr).ok().flatten()?;
        Some((loc.file?.to_string(), loc.line?))
    }
}

/// Parses a `--maps` argument: `PID=FILE`.
pub fn parse_maps_arg(s: &str) -> Result<(u32, PathBuf), String> {
    let (pid, file) = s
        .split_once('=')
        .ok_or_else(|| format!("--maps {s:?}: expected PID=FILE (a copy of /proc/PID/maps)"))?;
    let pid = pid
        .parse()
        .map_err(|_| format!("--maps {s:?}: {pid:?} is not a process id"))?;
    Ok((pid, PathBuf::from(file)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use object::{Object, ObjectSymbol};

    /// A C++ function of the real HIP runtime, through a memory map like the kernel's (the
    /// file mapped whole at a base address): demangled, with the offset into it.
    #[test]
    fn resolves_and_demangles_through_a_map() {
        let lib = Path::new("/lib/x86_64-linux-gnu/libamdhip64.so.5");
        let Ok(data) = std::fs::read(lib) else {
            return; // the end-to-end tests require the library and fail without it
        };
        let file = object::File::parse(&*data).unwrap();
        let sym = file
            .dynamic_symbols()
            .find(|s| {
                s.name()
                    .is_ok_and(|n| n.starts_with("_ZN8hip_impl22hipLaunchKernelGGLImpl"))
            })
            .expect("a mangled HIP symbol");
        // Shared objects here map file offset == virtual address for their code segment.
        let base = 0x7f00_0000_0000u64;
        let dir = std::env::temp_dir().join(format!("bthost-sym-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let maps = dir.join("maps");
        std::fs::write(
            &maps,
            format!(
                "{base:x}-{:x} r-xp 00000000 fe:01 1 {}\n",
                base + 0x4000_0000,
                lib.display()
            ),
        )
        .unwrap();
        let mut s = Symbolizer::default();
        s.add_maps(42, &maps).unwrap();
        let got = s.resolve(42, base + sym.address() + 4).unwrap();
        assert!(
            got.starts_with("hip_impl::hipLaunchKernelGGLImpl(") && got.ends_with("+0x4"),
            "{got}"
        );
        assert_eq!(s.resolve(42, 0x10), None);
        assert_eq!(s.resolve(7, base), None, "no map for that process");
        assert_eq!((s.resolved, s.unresolved), (1, 2));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn maps_argument() {
        assert_eq!(
            parse_maps_arg("12=/tmp/m").unwrap(),
            (12, PathBuf::from("/tmp/m"))
        );
        assert!(parse_maps_arg("/tmp/m").is_err());
        assert!(parse_maps_arg("x=/tmp/m").is_err());
    }
}
