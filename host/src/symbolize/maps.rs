//! A process's memory map, as `/proc/PID/maps` shows it: which file backs each address.

use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    /// Offset in the file of `start`.
    pub offset: u64,
    pub path: PathBuf,
}

/// Parses maps text; lines without a file (heap, stack, anonymous) are skipped.
pub fn parse(text: &str) -> Vec<Mapping> {
    let mut v = Vec::new();
    for line in text.lines() {
        let mut w = line.split_whitespace();
        let (Some(range), Some(_perms), Some(offset), Some(_dev), Some(_inode)) =
            (w.next(), w.next(), w.next(), w.next(), w.next())
        else {
            continue;
        };
        let Some(path) = w.next().filter(|p| p.starts_with('/')) else {
            continue;
        };
        let Some((s, e)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end), Ok(offset)) = (
            u64::from_str_radix(s, 16),
            u64::from_str_radix(e, 16),
            u64::from_str_radix(offset, 16),
        ) else {
            continue;
        };
        v.push(Mapping {
            start,
            end,
            offset,
            path: PathBuf::from(path),
        });
    }
    v
}

pub fn load(path: &Path) -> Result<Vec<Mapping>, String> {
    std::fs::read_to_string(path)
        .map(|t| parse(&t))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The mapping holding `addr`, and the file offset it maps to.
pub fn find(maps: &[Mapping], addr: u64) -> Option<(&Mapping, u64)> {
    maps.iter()
        .find(|m| m.start <= addr && addr < m.end)
        .map(|m| (m, addr - m.start + m.offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_maps() {
        let m = parse(
            "55cc74054000-55cc74055000 r--p 00000000 fe:01 123 /tmp/hip_basic\n\
             55cc74055000-55cc74056000 r-xp 00001000 fe:01 123 /tmp/hip_basic\n\
             7ffe0000-7ffe1000 rw-p 00000000 00:00 0 [stack]\n",
        );
        assert_eq!(m.len(), 2);
        let (mapping, off) = find(&m, 0x55cc74055209).unwrap();
        assert_eq!(
            (mapping.path.as_path(), off),
            (Path::new("/tmp/hip_basic"), 0x1209)
        );
        assert!(find(&m, 0x10).is_none());
    }
}
