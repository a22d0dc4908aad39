//! `bthost record` end to end on the real HIP runtime with real bpftrace: it builds the
//! script for the bpftrace it is given, runs the workload once the probes are attached, stops
//! tracing when the workload exits, and keeps the workload's memory map beside the log, so
//! that `convert` symbolizes the kernel's address with nothing more on its command line; with
//! records stored in maps (the default) and printed (`--records printf`).

use std::process::Command;

use bthost_tests::*;

#[test]
fn record_traces_a_command_and_keeps_its_memory_map() {
    if skip_root_tests() {
        return;
    }
    require_hip();
    let versions = available_bpftraces();
    assert!(!versions.is_empty(), "no bpftrace (scripts/setup)");
    for ((bin, version), way) in versions
        .iter()
        .flat_map(|v| ["maps", "printf"].map(move |w| (v, w)))
    {
        let dir = scratch(&format!("record-{version}-{way}"));
        let prog = compile_workload("hip_basic", &dir, &["-l:libamdhip64.so.5", "-lpthread"]);
        let log = dir.join("run.log");
        let o = {
            let _serial = system_wide_lock();
            Command::new(bthost_bin())
                .args([
                    "record",
                    "--packs",
                    "hip",
                    "--records",
                    way,
                    "--bpftrace-bin",
                ])
                .arg(bin)
                .arg("-o")
                .arg(&log)
                .arg("--")
                .arg(&prog)
                .output()
                .unwrap()
        };
        let stdout = String::from_utf8_lossy(&o.stdout);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "bthost record: {stderr}");
        let kernel = stdout
            .lines()
            .find_map(|l| l.strip_prefix("kernel 0x"))
            .unwrap_or_else(|| panic!("the workload did not run under record: {stdout}"));
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            text.starts_with("Attaching ") || text.contains("\n#bthost "),
            "{text}"
        );
        assert!(
            text.contains(&format!("bpftrace={version}")),
            "script built for {version}"
        );
        // The workload's own calls are in the log, and its map beside it.
        let pid = text
            .lines()
            .filter_map(|l| l.strip_prefix("T "))
            .find(|l| l.ends_with(" hip_basic"))
            .and_then(|l| l.split(' ').next())
            .map(|p| u32::from_str_radix(p, 16).unwrap())
            .unwrap_or_else(|| panic!("no thread line of hip_basic in {text}"));
        let maps = dir.join("run.log.maps").join(format!("{pid}.maps"));
        let maps_text = std::fs::read_to_string(&maps)
            .unwrap_or_else(|e| panic!("{}: {e}; stderr: {stderr}", maps.display()));
        assert!(maps_text.contains("libamdhip64"), "{maps_text}");

        let out = dir.join("out");
        let err = bthost_convert(&log, &out, &[]);
        assert!(
            err.contains("code addresses: 1 symbolized, 0 left as addresses"),
            "{err}"
        );
        let txt = std::fs::read_to_string(out.join("log.txt")).unwrap();
        // The workload started once the probes were attached: its very first call is there.
        assert!(
            txt.contains("hipGetDeviceCount(count=0) = hipErrorNoDevice(100)"),
            "{txt}"
        );
        let want = "function=bthost_demo_kernel+0x0 at ";
        assert!(
            txt.contains(want) && txt.contains(&format!("(0x{})", kernel.trim())),
            "wanted {want:?} in {txt}"
        );
    }
}

#[test]
fn record_says_why_when_bpftrace_cannot_start() {
    let dir = scratch("record-fail");
    let o = Command::new(bthost_bin())
        .args(["record", "--packs", "hip", "--bpftrace-bin"])
        .arg(dir.join("no-such-bpftrace"))
        .arg("-o")
        .arg(dir.join("x.log"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("no-such-bpftrace"), "{err}");
}
