//! Validation of every name that reaches a bpftrace script.
//!
//! bpftrace runs as root, so pack text is never pasted into a script: each name is checked
//! against a strict grammar first, and anything else is refused with the reason.

use std::fmt;

/// What kind of name is being checked; it decides the grammar and appears in the error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentKind {
    /// A pack name: `[a-z][a-z0-9_]*`, at most 32 characters.
    Pack,
    /// A C symbol (also C++ mangled names): `[A-Za-z_][A-Za-z0-9_]*`, at most 512 characters.
    Symbol,
    /// An argument, link-key or enum name: `[A-Za-z_][A-Za-z0-9_]*`, at most 64 characters.
    Field,
}

impl fmt::Display for IdentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdentKind::Pack => "pack name",
            IdentKind::Symbol => "function name",
            IdentKind::Field => "name",
        })
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid {kind} {value:?}: {why}")]
pub struct IdentError {
    pub kind: IdentKind,
    pub value: String,
    pub why: &'static str,
}

/// Checks `s` as a name of `kind`.
pub fn check(kind: IdentKind, s: &str) -> Result<(), IdentError> {
    let err = |why| {
        Err(IdentError {
            kind,
            value: s.chars().take(80).collect(),
            why,
        })
    };
    let max = match kind {
        IdentKind::Pack => 32,
        IdentKind::Symbol => 512,
        IdentKind::Field => 64,
    };
    let Some(first) = s.chars().next() else {
        return err("it is empty");
    };
    if s.len() > max {
        return err("it is too long");
    }
    let first_ok = match kind {
        IdentKind::Pack => first.is_ascii_lowercase(),
        _ => first.is_ascii_alphabetic() || first == '_',
    };
    if !first_ok {
        return err(match kind {
            IdentKind::Pack => "it must start with a lower-case letter",
            _ => "it must start with a letter or '_'",
        });
    }
    let rest_ok = s.chars().all(|c| match kind {
        IdentKind::Pack => c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_',
        _ => c.is_ascii_alphanumeric() || c == '_',
    });
    if !rest_ok {
        return err(match kind {
            IdentKind::Pack => "only a-z, 0-9 and '_' are allowed",
            _ => "only ASCII letters, digits and '_' are allowed",
        });
    }
    Ok(())
}

/// Checks a library path that will be written into a probe specifier (`uprobe:PATH:func`):
/// absolute, and only characters that need no quoting in bpftrace.
pub fn check_lib_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("library path {path:?} is not absolute"));
    }
    if let Some(c) = path
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "/._+-".contains(*c)))
    {
        return Err(format!(
            "library path {path:?} has the character {c:?}; only letters, digits and / . _ + - \
             can be written into a probe (link the library from a plain path)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_and_mangled_symbols() {
        check(IdentKind::Symbol, "hipMalloc").unwrap();
        check(IdentKind::Symbol, "_ZN8hip_impl22hipLaunchKernelGGLImplEm").unwrap();
        check(IdentKind::Pack, "hip").unwrap();
        check(IdentKind::Field, "sharedMemBytes").unwrap();
    }

    #[test]
    fn refuses_injection() {
        for bad in [
            "hipMalloc { system(\"id\") }",
            "a;b",
            "x\ny",
            "a/*",
            "",
            "1abc",
            "a b",
        ] {
            assert!(check(IdentKind::Symbol, bad).is_err(), "{bad:?} accepted");
        }
        assert!(check(IdentKind::Pack, "Hip").is_err());
        assert!(check(IdentKind::Pack, "hip-2").is_err());
        let e = check(IdentKind::Field, "a\"b").unwrap_err();
        assert!(e.to_string().contains("only ASCII letters"), "{e}");
    }

    #[test]
    fn library_paths() {
        check_lib_path("/lib/x86_64-linux-gnu/libamdhip64.so.5").unwrap();
        assert!(check_lib_path("lib.so").is_err());
        assert!(check_lib_path("/tmp/a b.so").is_err());
        assert!(check_lib_path("/tmp/a:b.so").is_err());
        assert!(check_lib_path("/tmp/a\".so").is_err());
    }
}
