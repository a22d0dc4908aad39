//! The converter's memory is bounded by `--memory`, not by the log: a log whose calls and text
//! would need about 100 MB in memory converts in a few tens of MB with `--memory 4` (the
//! sorted runs and the text go to disk). Alone in its test binary, so that the peak RSS of
//! this process's children is the converter's.

use std::process::Command;

use bthost_tests::*;

#[repr(C)]
#[derive(Default)]
struct Rusage {
    utime: [i64; 2],
    stime: [i64; 2],
    maxrss: i64,
    rest: [i64; 13],
}

extern "C" {
    fn getrusage(who: i32, usage: *mut Rusage) -> i32;
}

/// The largest peak RSS (KiB) among the children waited for.
fn children_maxrss_kib() -> i64 {
    let mut r = Rusage::default();
    // SAFETY: RUSAGE_CHILDREN (-1) fills the struct, which has the kernel's layout.
    unsafe { getrusage(-1, &mut r) };
    r.maxrss
}

#[test]
fn peak_memory_follows_the_budget_not_the_log() {
    let dir = scratch("convert-memory");
    let log = dir.join("gen.log");
    generate_log(&log, 16 << 20);
    let o = Command::new(bthost_bin())
        .args(["-v", "convert"])
        .arg(&log)
        .arg("-o")
        .arg(dir.join("out"))
        .args(["--memory", "4"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("(0 sorted runs spilled)"), "{err}");
    let rss_mib = children_maxrss_kib() / 1024;
    let text = std::fs::metadata(dir.join("out/log.txt")).unwrap().len() >> 20;
    assert!(text > 40, "the text log alone is {text} MiB");
    // The budget, the reader's 5 MiB block, the writer threads' buffers, the binary.
    assert!(
        rss_mib < 64,
        "peak RSS {rss_mib} MiB for a 16 MiB log with --memory 4 (text log: {text} MiB)"
    );
}
