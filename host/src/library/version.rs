//! A library's own version, for packs whose probes or struct offsets differ between releases
//! (`[library] version_from` in pack.toml; variants and probes carry `library = "RANGE"`).
//!
//! Read from the file, never by calling it: a version call (`ncclGetVersion`) would load the
//! library into bthost, which runs as root, and run its constructors. Two sources:
//! - `file`: the numbers after `.so.` in the file's real name (links followed):
//!   `libamdhip64.so.5.2.21153` is 5.2.21153; `libcudart.so.12` (a soname only) is 12, said as
//!   "major only" and read as 12.0.0, so a range like `>=12` matches it and `>=12.4` does not.
//! - `text:PREFIX`: the first version printed after PREFIX in the file's bytes (NCCL carries
//!   `NCCL version 2.32.3+cuda12.9`), a colon between allowed (RCCL from ROCm 6.3 carries
//!   `RCCL version : 2.27.7`, with or without a `-<hash>` after).

use std::fmt;
use std::path::Path;

use semver::Version;

use super::mapped::Mapped;

/// Where a pack reads its library's version from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    File,
    Text(String),
}

impl Source {
    /// Parses a `version_from` entry.
    pub fn parse(s: &str) -> Result<Source, String> {
        if s == "file" {
            return Ok(Source::File);
        }
        match s.strip_prefix("text:") {
            Some(p) if !p.is_empty() && p.len() <= 64 && p.bytes().all(|b| (0x20..0x7f).contains(&b)) => {
                Ok(Source::Text(p.to_string()))
            }
            _ => Err(format!(
                "version source {s:?}: expected \"file\" (the numbers after .so. in the file's name) or \"text:PREFIX\" (the version printed after PREFIX in the file, 1 to 64 printable ASCII characters)"
            )),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File => f.write_str("file"),
            Source::Text(p) => write!(f, "text:{p}"),
        }
    }
}

/// A library's version and how it was learnt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LibVersion {
    pub version: Version,
    /// For messages: `from its file name libamdhip64.so.5.2.21153`.
    pub how: String,
}

/// The version of the library at `path`, from the first source that gives one.
pub fn read(path: &Path, sources: &[Source]) -> Option<LibVersion> {
    sources.iter().find_map(|s| match s {
        Source::File => from_file_name(path),
        Source::Text(prefix) => from_text(path, prefix),
    })
}

fn from_file_name(path: &Path) -> Option<LibVersion> {
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let name = real.file_name()?.to_str()?;
    let tail = &name[name.rfind(".so.")? + 4..];
    let (version, parts) = numbers(tail)?;
    if parts != tail.split('.').count() {
        return None;
    }
    let major_only = if parts == 1 { ", major only" } else { "" };
    Some(LibVersion {
        version,
        how: format!("from its file name {name}{major_only}"),
    })
}

fn from_text(path: &Path, prefix: &str) -> Option<LibVersion> {
    let map = Mapped::open(path).ok()?;
    let bytes = map.bytes();
    let mut from = 0;
    // The prefix may also appear in messages ("NCCL version %s"): take the first with numbers.
    while let Some(i) = memchr::memmem::find(&bytes[from..], prefix.as_bytes()) {
        let after = from + i + prefix.len();
        // Some releases put a colon between ("RCCL version : 2.27.7-2dfe7f9", ROCm 6.3 on).
        let start = after
            + bytes[after..]
                .iter()
                .take(4)
                .take_while(|b| b" :".contains(b))
                .count();
        let end = bytes[start..]
            .iter()
            .take(32)
            .position(|b| !(b.is_ascii_alphanumeric() || b"._+-".contains(b)))
            .map_or(start, |n| start + n);
        let text = std::str::from_utf8(&bytes[start..end]).unwrap_or("");
        if let Some((version, parts)) = numbers(text) {
            if parts >= 2 {
                return Some(LibVersion {
                    version,
                    how: format!(
                        "from the text \"{prefix}{}{text}\" in the file",
                        String::from_utf8_lossy(&bytes[after..start])
                    ),
                });
            }
        }
        from = start;
    }
    None
}

/// The leading `N[.N[.N]]` of `s`, as a version (missing parts 0), and how many parts it had.
fn numbers(s: &str) -> Option<(Version, usize)> {
    let mut parts = Vec::new();
    for p in s.split('.').take(3) {
        let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
        if digits.is_empty() {
            break;
        }
        parts.push(digits.parse::<u64>().ok()?);
        if digits.len() != p.len() {
            break;
        }
    }
    let n = parts.len();
    if n == 0 {
        return None;
    }
    parts.resize(3, 0);
    Some((Version::new(parts[0], parts[1], parts[2]), n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_and_refuse() {
        assert_eq!(Source::parse("file"), Ok(Source::File));
        assert_eq!(
            Source::parse("text:NCCL version "),
            Ok(Source::Text("NCCL version ".into()))
        );
        assert!(Source::parse("text:").is_err());
        assert!(Source::parse("call:ncclGetVersion").is_err());
        assert!(Source::parse("text:\n").is_err());
    }

    #[test]
    fn numbers_of_names_and_texts() {
        assert_eq!(numbers("5.2.21153"), Some((Version::new(5, 2, 21153), 3)));
        assert_eq!(
            numbers("2.32.3+cuda12.9"),
            Some((Version::new(2, 32, 3), 3))
        );
        assert_eq!(numbers("12"), Some((Version::new(12, 0, 0), 1)));
        assert_eq!(numbers("2.21a"), Some((Version::new(2, 21, 0), 2)));
        assert_eq!(numbers("%s"), None);
    }

    #[test]
    fn versions_from_a_file_name_and_its_text() {
        let dir = std::env::temp_dir().join(format!("bthost-libver-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let real = dir.join("libfoo.so.2.21.5");
        std::fs::write(
            &real,
            b"\x7fELF..NCCL version %s..NCCL version 2.21.5+cuda12.4\0",
        )
        .unwrap();
        let link = dir.join("libfoo.so.2");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let v = read(&link, &[Source::File]).unwrap();
        assert_eq!(v.version, Version::new(2, 21, 5));
        assert_eq!(v.how, "from its file name libfoo.so.2.21.5");
        let t = read(&link, &[Source::Text("NCCL version ".into())]).unwrap();
        assert_eq!(t.version, Version::new(2, 21, 5));
        assert!(t.how.contains("NCCL version 2.21.5+cuda12.4"), "{}", t.how);
        let major = dir.join("libbar.so.12");
        std::fs::write(&major, b"nothing").unwrap();
        let m = read(
            &major,
            &[Source::Text("NCCL version ".into()), Source::File],
        )
        .unwrap();
        assert_eq!(m.version, Version::new(12, 0, 0));
        assert!(m.how.ends_with("major only"));
        assert_eq!(read(&dir.join("libbaz.so"), &[Source::File]), None);
        // RCCL from ROCm 6.3: a colon, and the commit after the version.
        let rccl = dir.join("librccl.so.1.0");
        std::fs::write(&rccl, b"RCCL version %s\0RCCL version : 2.24.3-7a84c52\n").unwrap();
        let r = read(&rccl, &[Source::Text("RCCL version ".into())]).unwrap();
        assert_eq!(r.version, Version::new(2, 24, 3));
        assert_eq!(
            r.how,
            "from the text \"RCCL version : 2.24.3-7a84c52\" in the file"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The real RCCLs the tests use: Debian 13's 5.4.3 (NCCL API 2.13.4) and sid's 7.2.4 (NCCL
    /// API 2.27.7, which also carries "RCCL version : 2.27.7"), read as the rccl pack reads
    /// them. A file that is absent is skipped here: the conformance tests require them.
    #[test]
    fn the_real_rccl_versions() {
        let prefix = [Source::Text("RCCL version ".into())];
        for (path, want) in [
            (
                "/var/cache/bthost/librccl/usr/lib/x86_64-linux-gnu/librccl.so.1",
                Version::new(2, 13, 4),
            ),
            (
                "/var/cache/bthost/sid/usr/lib/x86_64-linux-gnu/librccl.so.1",
                Version::new(2, 27, 7),
            ),
        ] {
            let path = Path::new(path);
            if !path.exists() {
                eprintln!("{} is absent: not checked here", path.display());
                continue;
            }
            let v = read(path, &prefix).unwrap_or_else(|| panic!("{}: no version", path.display()));
            assert_eq!(v.version, want, "{}: {}", path.display(), v.how);
        }
    }
}
