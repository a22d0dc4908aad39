//! Hand-written bpftrace fragments, for what the declarative form of `pack.toml` cannot say
//! (e.g. a value read through a struct pointer).
//!
//! A fragment file holds sections, each a statement list that runs in a declared probe before
//! its record is written:
//!
//! ```text
//! // what this computes, which bpftrace versions
//! @entry hipModuleLaunchKernel {
//!     $grid = *(uint32*)(arg0 + 0x10);
//! }
//! ```
//!
//! bpftrace runs as root, so fragment text is never pasted unchecked: it is tokenized and each
//! token must be on an allow-list (scratch variables, the probe's arguments, casts, arithmetic,
//! `if`/`else`, `reg("..")`); braces and parentheses must balance. Probes, maps, printing and
//! every other builtin (`system`, `cat`, `signal`, ...) are refused. `{tid}` and `{pid}` stand
//! for the version-specific thread and process id expressions.

use std::path::Path;

/// A parsed fragment file.
#[derive(Clone, Debug)]
pub struct Fragment {
    /// The file's name, for the script's comments.
    pub name: String,
    pub sections: Vec<Section>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Where {
    Entry,
    Exit,
}

#[derive(Clone, Debug)]
pub struct Section {
    pub at: Where,
    pub function: String,
    /// Line of the section header in the file.
    pub line: usize,
    /// The checked statements, one per source line, placeholders unexpanded.
    pub body: Vec<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct FragmentError {
    pub line: usize,
    pub msg: String,
}

const ALLOWED_WORDS: &[&str] = &[
    "if", "else", "retval", "reg", "sizeof", "int8", "uint8", "int16", "uint16", "int32", "uint32",
    "int64", "uint64", "nsecs",
];

impl Fragment {
    pub fn parse(path: &Path, text: &str) -> Result<Fragment, FragmentError> {
        let mut sections = Vec::new();
        let mut current: Option<(Section, i32)> = None;
        for (i, raw_line) in text.lines().enumerate() {
            let line = i + 1;
            let code = strip_comment(raw_line).trim();
            if code.is_empty() {
                continue;
            }
            match current.as_mut() {
                None => {
                    sections.push(Section {
                        line,
                        ..parse_header(code, line)?
                    });
                    let sec = sections.pop().expect("just pushed");
                    current = Some((sec, 1));
                }
                Some((sec, depth)) => {
                    if code == "}" && *depth == 1 {
                        let (sec, _) = current.take().expect("inside a section");
                        sections.push(sec);
                        continue;
                    }
                    check_tokens(code, line, depth)?;
                    sec.body.push(code.to_string());
                }
            }
        }
        if let Some((sec, _)) = current {
            return Err(FragmentError {
                line: sec.line,
                msg: format!(
                    "section for {} is not closed with a line holding only `}}`",
                    sec.function
                ),
            });
        }
        Ok(Fragment {
            name: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            sections,
        })
    }

    /// The statements to run at `at` of `function`, from every section for it.
    pub fn body_for<'a>(
        &'a self,
        at: &'a Where,
        function: &'a str,
    ) -> impl Iterator<Item = &'a String> + 'a {
        self.sections
            .iter()
            .filter(move |s| &s.at == at && s.function == function)
            .flat_map(|s| s.body.iter())
    }
}

fn strip_comment(line: &str) -> &str {
    match line.find("//") {
        Some(i) => &line[..i],
        None => line,
    }
}

fn parse_header(code: &str, line: usize) -> Result<Section, FragmentError> {
    let err = || {
        FragmentError {
        line,
        msg: format!("expected a section header like `@entry FUNCTION {{` or `@exit FUNCTION {{`, found {code:?}"),
    }
    };
    let mut words = code.split_whitespace();
    let at = match words.next() {
        Some("@entry") => Where::Entry,
        Some("@exit") => Where::Exit,
        _ => return Err(err()),
    };
    let function = words.next().ok_or_else(err)?;
    if words.next() != Some("{") || words.next().is_some() {
        return Err(err());
    }
    crate::ident::check(crate::ident::IdentKind::Symbol, function).map_err(|e| FragmentError {
        line,
        msg: e.to_string(),
    })?;
    Ok(Section {
        at,
        function: function.to_string(),
        line,
        body: Vec::new(),
    })
}

/// Checks one statement line against the allow-list, tracking brace depth across lines.
fn check_tokens(code: &str, line: usize, depth: &mut i32) -> Result<(), FragmentError> {
    let err = |msg: String| Err(FragmentError { line, msg });
    let b = code.as_bytes();
    let mut i = 0;
    let mut parens = 0i32;
    while i < b.len() {
        let c = b[i] as char;
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == '{' {
            if code[i..].starts_with("{tid}") || code[i..].starts_with("{pid}") {
                i += 5;
            } else {
                *depth += 1;
                i += 1;
            }
        } else if c == '}' {
            *depth -= 1;
            if *depth < 1 {
                return err("unbalanced `}`: a fragment cannot close its probe".into());
            }
            i += 1;
        } else if c == '(' || c == ')' {
            parens += if c == '(' { 1 } else { -1 };
            if parens < 0 {
                return err("unbalanced `)`".into());
            }
            i += 1;
        } else if c == '$' || c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            i += 1;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            let word = &code[start..i];
            let ok = word.starts_with('$') && word.len() > 1
                || ALLOWED_WORDS.contains(&word)
                || word.strip_prefix("arg").is_some_and(|n| {
                    n.len() == 1
                        && n.as_bytes()[0].is_ascii_digit()
                        && n != "6"
                        && n != "7"
                        && n != "8"
                        && n != "9"
                });
            if !ok {
                return err(format!(
                    "`{word}` is not allowed in a fragment (allowed: $scratch variables, arg0..arg5, {})",
                    ALLOWED_WORDS.join(", ")
                ));
            }
        } else if c.is_ascii_digit() {
            while i < b.len() && (b[i].is_ascii_hexdigit() || b[i] == b'x') {
                i += 1;
            }
        } else if c == '"' {
            // Only short register names, as in reg("sp").
            let end = code[i + 1..].find('"').map(|e| i + 1 + e);
            let Some(end) = end else {
                return err("unterminated string".into());
            };
            let s = &code[i + 1..end];
            if s.is_empty()
                || !s
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                || s.len() > 4
            {
                return err(format!(
                    "string {s:?} is not allowed (only register names, as in reg(\"sp\"))"
                ));
            }
            i = end + 1;
        } else if "+-*/%&|^!<>=?:;,.[]~".contains(c) {
            i += 1;
        } else {
            return err(format!("character {c:?} is not allowed in a fragment"));
        }
    }
    if parens != 0 {
        return err("unbalanced parentheses".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<Fragment, FragmentError> {
        Fragment::parse(Path::new("x.bt"), t)
    }

    #[test]
    fn parses_sections() {
        let f = parse(
            "// header\n@entry hipFoo {\n  $g = *(uint32*)(arg0 + 0x10); // grid\n  if ($g > 4) { $g = 4; }\n}\n@exit hipFoo {\n $r = retval;\n}\n",
        )
        .unwrap();
        assert_eq!(f.sections.len(), 2);
        assert_eq!(
            f.sections[0].body,
            vec!["$g = *(uint32*)(arg0 + 0x10);", "if ($g > 4) { $g = 4; }"]
        );
        assert_eq!(f.sections[1].at, Where::Exit);
    }

    #[test]
    fn refuses_what_could_escape() {
        let cases = [
            ("@entry f {\n system(\"id\");\n}\n", 2, "`system`"),
            (
                "@entry f {\n $a = 1; }\nuprobe:/bin/sh:main { exit(); }\n}\n",
                2,
                "unbalanced `}`",
            ),
            ("@entry f {\n printf(\"x\");\n}\n", 2, "`printf`"),
            ("@entry f {\n @m[1] = 1;\n}\n", 2, "'@'"),
            ("@entry f {\n $a = \"/etc/shadow\";\n}\n", 2, "string"),
            ("@entry f {\n $a = 1;\n", 1, "not closed"),
            ("uprobe:/x:y {\n}\n", 1, "section header"),
            ("@entry f {\n $a = arg7;\n}\n", 2, "`arg7`"),
        ];
        for (text, line, what) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e:?}");
            assert!(e.msg.contains(what), "{text:?}: {}", e.msg);
        }
    }
}
