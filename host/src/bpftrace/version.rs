//! Finding bpftrace and reading its version.

use std::path::Path;
use std::process::Command;

use semver::Version;

/// Parses what `bpftrace --version` prints ("bpftrace v0.17.0", "bpftrace v0.23.2-dirty",
/// "bpftrace v0.24.1-42-gabcdef") or a plain "0.17" / "0.17.0" given on the command line.
pub fn parse_version(s: &str) -> Option<Version> {
    let word = s.split_whitespace().find(|w| {
        w.trim_start_matches('v')
            .starts_with(|c: char| c.is_ascii_digit())
    })?;
    let core: String = word
        .trim_start_matches('v')
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let nums: Vec<u64> = core
        .split('.')
        .filter(|p| !p.is_empty())
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    match nums.as_slice() {
        [major, minor] => Some(Version::new(*major, *minor, 0)),
        [major, minor, patch, ..] => Some(Version::new(*major, *minor, *patch)),
        _ => None,
    }
}

/// Runs `bpftrace --version` and parses it.
pub fn detect(bpftrace: &Path) -> Result<Version, String> {
    let out = Command::new(bpftrace)
        .arg("--version")
        .output()
        .map_err(|e| {
            format!(
                "cannot run {} --version: {e}; install bpftrace or give its version with --bpftrace X.Y.Z",
                bpftrace.display()
            )
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_version(&text).ok_or_else(|| {
        format!(
            "cannot read a version from `{} --version`: {:?}",
            bpftrace.display(),
            text.trim()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_release_strings() {
        assert_eq!(
            parse_version("bpftrace v0.17.0\n"),
            Some(Version::new(0, 17, 0))
        );
        assert_eq!(
            parse_version("bpftrace v0.23.2-dirty"),
            Some(Version::new(0, 23, 2))
        );
        assert_eq!(
            parse_version("bpftrace v0.24.1-42-gabcdef"),
            Some(Version::new(0, 24, 1))
        );
        assert_eq!(parse_version("0.17"), Some(Version::new(0, 17, 0)));
        assert_eq!(parse_version("garbage"), None);
    }
}
