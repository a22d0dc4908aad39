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

/// Where `bin` is: itself if it names a path, else the first executable of that name on PATH.
fn resolve(bin: &Path) -> Option<std::path::PathBuf> {
    if bin.components().count() > 1 {
        return Some(bin.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}

/// As root, bpftrace must be a file no other user can replace or change (nor any folder above
/// it): `record` and `build` run it as root. Says which path is unsafe and why.
pub fn check_runnable(bpftrace: &Path) -> Result<(), String> {
    if !crate::registry::trust::running_as_root() {
        return Ok(());
    }
    let Some(path) = resolve(bpftrace) else {
        return Err(format!(
            "{} not found on PATH: install bpftrace (apt-get install -y bpftrace) or give --bpftrace-bin",
            bpftrace.display()
        ));
    };
    crate::registry::trust::check_trusted(&path)
        .map_err(|why| format!("not running {} as root: {why}", path.display()))
}

/// Runs `bpftrace --version` and parses it.
pub fn detect(bpftrace: &Path) -> Result<Version, String> {
    check_runnable(bpftrace)?;
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
