//! Values as the one integer type records are stored in (`uint64`), spelled so that no
//! bpftrace warns about them.
//!
//! A record's values share one tuple type, so each is cast to `uint64`. bpftrace 0.27 warns of
//! every cast of what already is a `uint64` ("Unnecessary cast": 428 warnings in the packs'
//! script), and of every `uint64` it converts to `int64` itself, as it does for both sides of a
//! subtraction (crate::bpftrace::dialect::Spelling::elapsed). The expressions the composer writes are few and known:
//! those below are `uint64` on every bpftrace (0.17 to 0.27), the rest are cast.

/// `expr` as a `uint64`: itself when it already is one, else cast.
pub fn to_u64(expr: &str) -> String {
    if is_u64(expr) {
        expr.to_string()
    } else {
        format!("(uint64)({expr})")
    }
}

/// Whether `expr` is `uint64` on every bpftrace: the time, the ids and the raw registers
/// (`nsecs`, `pid`, `tid`, `argN`, `retval`; `$now` and stored entries `$e.N`/`$held.N` hold those), a read through a
/// `uint64*`, or a value already cast. A stored entry is a raw argument or was cast when
/// stored (crate::compose::emit::stored).
fn is_u64(expr: &str) -> bool {
    let numbered = |prefix: &str| {
        expr.strip_prefix(prefix)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    matches!(expr, "nsecs" | "retval" | "$now" | "pid" | "tid")
        || numbered("arg")
        || numbered("$e.")
        || numbered("$held.")
        || (expr.starts_with("(uint64)") && !expr.contains(' '))
        || (expr.starts_with("*(uint64*)") && one_operand(&expr["*(uint64*)".len()..]))
}

/// Whether `rest` (what follows a cast or a dereference) is one operand: a variable, a
/// tuple field or one parenthesized expression, not the start of a longer expression.
fn one_operand(rest: &str) -> bool {
    if let Some(inner) = rest.strip_prefix('(') {
        // Balanced up to its last character only.
        let mut depth = 1usize;
        for (i, c) in inner.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        return i + 1 == inner.len();
                    }
                }
                _ => {}
            }
        }
        return false;
    }
    rest.starts_with('$')
        && rest[1..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn casts_only_what_is_not_already_uint64() {
        for e in [
            "$now",
            "retval",
            "arg3",
            "$e.12",
            "$held.1",
            "(uint64)0x104",
        ] {
            assert_eq!(to_u64(e), e);
        }
        assert_eq!(
            to_u64("*(uint64*)(reg(\"sp\") + 8)"),
            "*(uint64*)(reg(\"sp\") + 8)"
        );
        assert_eq!(to_u64("*(uint64*)$e.2"), "*(uint64*)$e.2");
        for e in [
            "*(int32*)$e.1",
            "$n",
            "@c_hip_device[$t]",
            "(int64)($now) - (int64)($s)",
            "*(uint64*)$e.2 + 1",
            "(uint64)$a + $b",
            "arg",
            "$frag_x",
        ] {
            assert_eq!(to_u64(e), format!("(uint64)({e})"), "{e}");
        }
    }
}
