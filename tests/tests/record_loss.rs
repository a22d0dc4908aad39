//! A drain that cannot keep up: maps far too small for the call rate (`--map-keys 16`, a loop
//! of 20,000 calls). Records are lost in the kernel, and that is never silent: `record` counts
//! them (each thread's record count against the records in the log), and `convert` names the
//! threads and the record numbers missing, in its summary and in log.txt.

use std::process::Command;

use bthost_tests::*;

#[test]
fn a_full_map_is_counted_and_reported() {
    if skip_root_tests() {
        return;
    }
    for (bin, version) in &available_bpftraces() {
        let dir = scratch(&format!("record-loss-{version}"));
        let standins = build_standins(&dir.join("standins"));
        let loop_bin =
            compile_on_standins("tests/bench/call_loop.c", &standins, &dir.join("call_loop"));
        let log = dir.join("run.log");
        let o = {
            let _serial = system_wide_lock();
            Command::new(bthost_bin())
                .args(["record", "--packs", "hip", "--bpftrace-bin"])
                .arg(bin)
                .arg("--lib")
                .arg(format!(
                    "hip={}",
                    standins.join("libamdhip64.so.5").display()
                ))
                .args(["--map-keys", "16", "-o"])
                .arg(&log)
                .arg("--")
                .arg(&loop_bin)
                .args(["hipStreamSynchronize", "20000"])
                .output()
                .unwrap()
        };
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{version}: {err}");
        let said: u64 = err
            .lines()
            .filter(|l| l.contains("records were lost in the kernel"))
            .find_map(|l| l.strip_prefix("bthost: warning: "))
            .and_then(|l| l.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{version}: record said nothing of lost records: {err}"));
        assert!(said > 0, "{version}: {err}");

        let out = dir.join("out");
        let summary = bthost_convert(&log, &out, &[]);
        let lost: u64 = summary
            .split(" records LOST in the kernel")
            .next()
            .and_then(|p| p.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{version}: {summary}"));
        // Both count the same gaps: what the threads numbered and the log lacks.
        assert_eq!(lost, said, "{version}: {summary} / {err}");
        let txt = std::fs::read_to_string(out.join("log.txt")).unwrap();
        assert!(
            txt.contains(&format!("# WARNING: {lost} records never reached the log"))
                && txt.contains("never reached the log: a map was full"),
            "{version}: {}",
            txt.lines().take(20).collect::<Vec<_>>().join("\n")
        );
    }
}
