//! The converter's memory is bounded by `--memory`, not by the log: a log whose calls and text
//! would need about 100 MB in memory converts in a few tens of MB with `--memory 4` (the
//! sorted runs go to disk; the text log streams into its file). Alone in its test binary, so that the peak RSS of
//! this process's children is the converter's.

use bthost_tests::*;

#[test]
fn peak_memory_follows_the_budget_not_the_log() {
    let dir = scratch("convert-memory");
    let log = dir.join("gen.log");
    generate_log(&log, 16 << 20);
    let out = dir.join("out");
    let err = bthost_convert(&log, &out, &["-v", "--memory", "4"]);
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
