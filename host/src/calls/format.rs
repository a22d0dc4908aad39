//! How a call reads for people: its values and its `name(args) = ret` text, shared by the
//! text log (crate::convert::text) and the report (crate::report).

use std::fmt::Write as _;

use super::call::{Call, Strings, V};
use super::numfmt::{push_hex, push_i64, push_u64};

/// Formats a value for people.
pub fn value(s: &mut String, v: V, strings: &Strings) {
    let _ = match v {
        V::Int(i) => {
            push_i64(s, i);
            Ok(())
        }
        V::UInt(u) => {
            push_u64(s, u);
            Ok(())
        }
        V::Hex(h) => {
            push_hex(s, h);
            Ok(())
        }
        V::Enum { raw, name } => {
            s.push_str(strings.get(name));
            s.push('(');
            push_i64(s, raw);
            s.push(')');
            Ok(())
        }
        V::Code(a) => {
            s.push_str("code:");
            push_hex(s, a);
            Ok(())
        }
        V::Str(id) => {
            s.push_str(strings.get(id));
            Ok(())
        }
        V::Bool(b) => write!(s, "{b}"),
        V::Float(f) => write!(s, "{f}"),
    };
}

/// `name(args) = ret -> result=...`: a call's text without its times.
pub fn call_text(s: &mut String, c: &Call, strings: &Strings) {
    s.push_str(strings.get(c.name));
    s.push('(');
    for (i, &(name, v)) in c.args.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(strings.get(name));
        s.push('=');
        value(s, v, strings);
    }
    s.push(')');
    for (i, &(name, v)) in c.results.iter().enumerate() {
        let n = strings.get(name);
        if i == 0 && n == "ret" {
            s.push_str(" = ");
        } else {
            s.push_str(" -> ");
            s.push_str(n);
            s.push('=');
        }
        value(s, v, strings);
    }
}
