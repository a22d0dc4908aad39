//! Interning of schema names as `&'static str`, so events can carry them across the plugin
//! boundary as `RStr<'static>` without allocating per event. A log's schema is small and
//! bounded, and each distinct name is leaked once per process.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

pub fn intern(s: &str) -> &'static str {
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut set = NAMES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(&n) = set.get(s) {
        return n;
    }
    let leaked: &'static str = Box::leak(s.to_owned().into_boxed_str());
    set.insert(leaked);
    leaked
}
