//! An ELF file's function symbols, by address, and the map from file offsets to addresses.

use std::path::Path;

use object::{Object, ObjectSegment, ObjectSymbol, SymbolKind};

pub struct ElfSymbols {
    /// (address, size, name), sorted by address.
    syms: Vec<(u64, u64, String)>,
    /// Loadable segments: (file offset, file size, virtual address).
    segments: Vec<(u64, u64, u64)>,
}

impl ElfSymbols {
    pub fn load(path: &Path) -> Result<ElfSymbols, String> {
        let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let file = object::File::parse(&*data).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut syms: Vec<(u64, u64, String)> = file
            .symbols()
            .chain(file.dynamic_symbols())
            .filter(|s| s.kind() == SymbolKind::Text && s.is_definition() && s.address() != 0)
            .filter_map(|s| Some((s.address(), s.size(), s.name().ok()?.to_string())))
            .collect();
        syms.sort();
        syms.dedup_by(|a, b| a.0 == b.0);
        let segments = file
            .segments()
            .map(|s| {
                let (off, size) = s.file_range();
                (off, size, s.address())
            })
            .collect();
        Ok(ElfSymbols { syms, segments })
    }

    /// The symbol holding the code at file offset `off`: (name, offset into it, the address
    /// in the file's own address space, which debug info is indexed by).
    pub fn at_file_offset(&self, off: u64) -> Option<(&str, u64, u64)> {
        let &(seg_off, _, vaddr) = self
            .segments
            .iter()
            .find(|(o, sz, _)| *o <= off && off < o + sz)?;
        let addr = off - seg_off + vaddr;
        let i = self.syms.partition_point(|s| s.0 <= addr).checked_sub(1)?;
        let (start, size, name) = &self.syms[i];
        // A symbol without a size covers up to the next one.
        let end = if *size > 0 {
            start + size
        } else {
            self.syms.get(i + 1).map_or(u64::MAX, |n| n.0)
        };
        (addr < end).then(|| (name.as_str(), addr - start, addr))
    }
}
