//! The functions an ELF file defines, read from its dynamic and static symbol tables, and
//! whether bpftrace can probe each.

use std::collections::HashSet;
use std::path::Path;

use object::{Object, ObjectSymbol, SymbolKind};

/// A library's functions: those bpftrace can probe, and zero-size aliases it refuses
/// ("Offset outside the function bounds"); such an alias shares its address with a sized
/// function, which is the one to probe.
#[derive(Clone, Debug, Default)]
pub struct Functions {
    sized: HashSet<String>,
    zero_size: HashSet<String>,
}

impl Functions {
    /// Every name probeable (for tests and for callers that know the names exist).
    pub fn from_names<I: IntoIterator<Item = String>>(names: I) -> Functions {
        Functions {
            sized: names.into_iter().collect(),
            zero_size: HashSet::new(),
        }
    }

    pub fn probeable(&self, f: &str) -> bool {
        self.sized.contains(f)
    }

    /// Why `f` cannot be probed (for messages); `None` when it can.
    pub fn why_not(&self, f: &str) -> Option<&'static str> {
        if self.sized.contains(f) {
            None
        } else if self.zero_size.contains(f) {
            Some("is a zero-size alias in the library, which bpftrace cannot probe (probe the function it aliases)")
        } else {
            Some("is not in the library")
        }
    }

    /// Removes `f` (tests: a library without it).
    pub fn remove(&mut self, f: &str) {
        self.sized.remove(f);
    }
}

/// Reads the functions `path` defines (exported or local).
pub fn functions(path: &Path) -> Result<Functions, String> {
    let data = crate::library::mapped::Mapped::open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let file = object::File::parse(data.bytes()).map_err(|e| {
        format!(
            "{}: not an ELF file bpftrace can probe: {e}",
            path.display()
        )
    })?;
    let mut f = Functions::default();
    for sym in file.dynamic_symbols().chain(file.symbols()) {
        if sym.is_definition() && sym.kind() == SymbolKind::Text {
            if let Ok(n) = sym.name() {
                if sym.size() > 0 {
                    f.sized.insert(n.to_string());
                } else {
                    f.zero_size.insert(n.to_string());
                }
            }
        }
    }
    // A name defined with a size anywhere (e.g. in .symtab) is probeable.
    let sized = f.sized.clone();
    f.zero_size.retain(|n| !sized.contains(n));
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// HIP exports every function with a symbol version (`hipMalloc@@hip_4.2`, from HIP 6
    /// `hipGetDevicePropertiesR0600@@hip_6.0`): the version lives in .gnu.version, not in the
    /// name, so the functions are known by their plain names, which bpftrace attaches by.
    #[test]
    fn versioned_symbols_are_known_by_their_plain_names() {
        let sid = "/var/cache/bthost/sid/usr/lib/x86_64-linux-gnu";
        let libs = [
            ("/lib/x86_64-linux-gnu/libamdhip64.so.5".to_string(), false),
            (format!("{sid}/libamdhip64.so.6"), true),
            (format!("{sid}/libamdhip64.so.7"), true),
        ];
        let mut checked = 0;
        for (lib, six) in &libs {
            let path = Path::new(lib);
            if !path.exists() {
                continue; // the conformance tests require them
            }
            let f = functions(path).unwrap();
            assert!(f.probeable("hipMalloc"), "{lib}");
            assert!(f.probeable("hipGetDeviceProperties"), "{lib}");
            assert_eq!(f.probeable("hipGetDevicePropertiesR0600"), *six, "{lib}");
            assert_eq!(f.probeable("hipEventRecord_spt"), *six, "{lib}");
            assert!(
                f.sized.iter().chain(&f.zero_size).all(|n| !n.contains('@')),
                "{lib}: a name with its version"
            );
            checked += 1;
        }
        eprintln!("checked {checked} HIP runtimes");
    }
}
