//! Problems found while reading a log: each with its line, a few shown in full, all counted.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Note,
    Warning,
}

/// How many messages of one category are kept in full; the rest are only counted.
const KEEP_PER_CATEGORY: usize = 5;

#[derive(Debug, Clone)]
pub struct Message {
    pub line: u64,
    pub severity: Severity,
    pub text: String,
}

/// Collected diagnostics of one log.
#[derive(Debug, Default)]
pub struct Diagnostics {
    pub file: PathBuf,
    /// By category (e.g. "garbage line"): count and the first few messages.
    pub categories: BTreeMap<&'static str, (u64, Vec<Message>)>,
}

impl Diagnostics {
    pub fn new(file: PathBuf) -> Self {
        Diagnostics {
            file,
            categories: BTreeMap::new(),
        }
    }

    pub fn add(
        &mut self,
        category: &'static str,
        severity: Severity,
        line: u64,
        text: impl Into<String>,
    ) {
        let e = self.categories.entry(category).or_default();
        e.0 += 1;
        if e.1.len() < KEEP_PER_CATEGORY {
            e.1.push(Message {
                line,
                severity,
                text: text.into(),
            });
        }
    }

    pub fn count(&self, category: &str) -> u64 {
        self.categories.get(category).map_or(0, |c| c.0)
    }

    pub fn is_empty(&self) -> bool {
        self.categories.is_empty()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (cat, (n, msgs)) in &self.categories {
            for m in msgs {
                let sev = match m.severity {
                    Severity::Note => "note",
                    Severity::Warning => "warning",
                };
                writeln!(f, "{}:{}: {sev}: {}", self.file.display(), m.line, m.text)?;
            }
            if *n > msgs.len() as u64 {
                writeln!(
                    f,
                    "{}: ... {} more of: {cat}",
                    self.file.display(),
                    *n - msgs.len() as u64
                )?;
            }
        }
        Ok(())
    }
}
