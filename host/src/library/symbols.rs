//! The functions an ELF file defines, read from its dynamic and static symbol tables.

use std::collections::HashSet;
use std::path::Path;

use object::{Object, ObjectSymbol, SymbolKind};

/// Names of the functions `path` defines (exported or local).
pub fn defined_functions(path: &Path) -> Result<HashSet<String>, String> {
    let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file = object::File::parse(&*data).map_err(|e| {
        format!(
            "{}: not an ELF file bpftrace can probe: {e}",
            path.display()
        )
    })?;
    let mut names = HashSet::new();
    for sym in file.dynamic_symbols().chain(file.symbols()) {
        if sym.is_definition() && sym.kind() == SymbolKind::Text {
            if let Ok(n) = sym.name() {
                names.insert(n.to_string());
            }
        }
    }
    Ok(names)
}
