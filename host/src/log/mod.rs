//! Reading the log: classifying each line, without interpreting records (that is decode's job).

pub mod anchor;
pub mod diag;
pub mod line;

pub use diag::{Diagnostics, Severity};
pub use line::{classify, LineKind};
