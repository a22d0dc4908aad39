//! `report` and `convert` of a whole job at cluster scale: 16, 32, 64 and 128 generated node
//! logs of 8 ranks each (tests/src/genjob.rs: format 3 as `record` writes it, each node its own
//! clock; one rank never enters a collective, the others wait in it), each log
//! BTHOST_JOB_COLLECTIVES collectives per rank (default 5000: about 25 s of a training loop at
//! one AllReduce and one stream synchronization per 5 ms). Prints, per size, the logs' bytes,
//! and each command's wall time, CPU time and peak RSS (wait4 of the child) and MB/s; then
//! `report --jobs 1`'s and `convert --jobs 1`'s wall times and the default's speed-up over
//! each (the same report, checked; BTHOST_JOB_SIZES, e.g.
//! `16`, picks the sizes; default 16,32,64,128). BTHOST_JOB_KEEP=1 keeps each size's logs and
//! outputs (in target/release/e2e-scratch/bench-job-N) to measure by hand.
//!
//! `cargo build --release -p bthost && cargo bench -p bthost-tests --bench job_scale`

use std::process::Command;

use bthost_tests::*;

fn main() {
    let collectives: usize = std::env::var("BTHOST_JOB_COLLECTIVES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let bin = out_dir().join("bthost");
    assert!(
        bin.is_file(),
        "build bthost in release first: cargo build --release -p bthost"
    );
    let sizes: Vec<usize> = std::env::var("BTHOST_JOB_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![16, 32, 64, 128]);
    println!(
        "{:>5} {:>6} {:>9} | {:>8} {:>8} {:>7} {:>7} {:>9} {:>7} | {:>8} {:>8} {:>7} {:>7} | {:>9} {:>7}",
        "logs",
        "ranks",
        "MB",
        "report s",
        "cpu s",
        "MB/s",
        "RSS MB",
        "-j 1 s",
        "speedup",
        "convert s",
        "cpu s",
        "MB/s",
        "RSS MB",
        "--jobs 1 s",
        "speedup"
    );
    for nodes in sizes {
        let dir = scratch(&format!("bench-job-{nodes}"));
        let spec = JobSpec {
            nodes,
            ranks_per_node: 8,
            collectives,
            skip: Some((nodes * 4 + 5, collectives - 1)),
            asynchronous: false,
        };
        let logs = generate_job(&dir, &spec);
        let bytes: u64 = logs
            .iter()
            .map(|l| std::fs::metadata(l).unwrap().len())
            .sum();
        let mb = bytes as f64 / 1e6;
        let report = run_measured(Command::new(&bin).arg("report").args(&logs));
        assert!(
            report.output.status.success(),
            "{}",
            String::from_utf8_lossy(&report.output.stderr)
        );
        let said = String::from_utf8_lossy(&report.output.stdout);
        assert!(
            said.contains(&format!(
                "never entered #{}: rank {}",
                collectives,
                nodes * 4 + 5
            )),
            "{said}"
        );
        let report1 = run_measured(
            Command::new(&bin)
                .arg("report")
                .args(&logs)
                .arg("--jobs")
                .arg("1"),
        );
        assert_eq!(
            String::from_utf8_lossy(&report1.output.stdout),
            said,
            "report --jobs 1 says the same"
        );
        let convert = run_measured(
            Command::new(&bin)
                .arg("convert")
                .args(&logs)
                .arg("-o")
                .arg(dir.join("out")),
        );
        assert!(
            convert.output.status.success(),
            "{}",
            String::from_utf8_lossy(&convert.output.stderr)
        );
        let one = run_measured(
            Command::new(&bin)
                .arg("convert")
                .args(&logs)
                .arg("-o")
                .arg(dir.join("out1"))
                .arg("--jobs")
                .arg("1"),
        );
        assert!(
            one.output.status.success(),
            "{}",
            String::from_utf8_lossy(&one.output.stderr)
        );
        println!(
            "{:>5} {:>6} {:>9.0} | {:>8.2} {:>8.2} {:>7.0} {:>7} {:>9.2} {:>6.2}x | {:>9.2} {:>8.2} {:>7.0} {:>7} | {:>10.2} {:>6.2}x",
            nodes,
            nodes * 8,
            mb,
            report.wall_secs,
            report.cpu_secs,
            mb / report.wall_secs,
            report.maxrss_kib / 1024,
            report1.wall_secs,
            report1.wall_secs / report.wall_secs,
            convert.wall_secs,
            convert.cpu_secs,
            mb / convert.wall_secs,
            convert.maxrss_kib / 1024,
            one.wall_secs,
            one.wall_secs / convert.wall_secs
        );
        // The next size's logs need the room, unless kept to measure by hand.
        if std::env::var_os("BTHOST_JOB_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
