//! contrib/slurm/bthost-run on a real Slurm (Debian's slurm-wlm with munge), as an emulated
//! cluster of 4 nodes on this machine (tests/slurm/cluster.sh): an 8-rank stand-in job (ranks
//! from SLURM_PROCID/SLURM_NTASKS, the unique id through a file in the shared folder) in which
//! rank 5 skips its second collective, recorded on every node, then cancelled as a user cancels
//! a hung job (scancel): each node's log holds exactly that node's ranks, and the report names
//! the skipping rank, its node and the collective. And bad input: a recorder that cannot start
//! on one node, a job step that cannot start, an output folder that cannot be written.
//!
//! The nodes share one kernel: each recorder traces only its node's tasks, which the job
//! step's task prolog announces to it (crate::record::announce).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bthost_tests::*;

/// Starts the cluster once per test binary (the tests run side by side).
fn cluster_up() {
    static UP: std::sync::Once = std::sync::Once::new();
    UP.call_once(start_cluster);
}

fn start_cluster() {
    let o = Command::new("sh")
        .arg(root().join("tests/slurm/cluster.sh"))
        .arg("start")
        .output()
        .expect("tests/slurm/cluster.sh");
    assert!(
        o.status.success(),
        "the emulated Slurm cluster did not start: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Submits `script` (a batch script's body) on 4 nodes, 8 tasks; returns the job id.
fn sbatch(dir: &Path, script: &str) -> String {
    let path = dir.join("job.sh");
    std::fs::write(&path, format!("#!/bin/bash\n{script}\n")).unwrap();
    let o = Command::new("sbatch")
        .args(["-N", "4", "-n", "8", "-O", "--parsable", "-o"])
        .arg(dir.join("job.out"))
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "sbatch: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn job_out(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("job.out")).unwrap_or_default()
}

fn gone(job: &str) -> bool {
    let o = Command::new("squeue")
        .args(["-h", "-j", job])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).trim().is_empty()
}

/// Waits (a liveness bound of three minutes) until `cond` holds of the job's output.
fn wait_out(dir: &Path, job: &str, cond: impl Fn(&str) -> bool, what: &str) -> String {
    let t = Instant::now();
    loop {
        let out = job_out(dir);
        if cond(&out) {
            return out;
        }
        assert!(t.elapsed() < Duration::from_secs(180), "{what}:\n{out}");
        if gone(job) && !cond(&job_out(dir)) {
            panic!("job {job} ended: {what}:\n{}", job_out(dir));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn wait_gone(job: &str) {
    let t = Instant::now();
    while !gone(job) {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "job {job} did not end"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn recipe() -> PathBuf {
    root().join("contrib/slurm/bthost-run")
}

/// The job's ranks: (rank, pid, node), from `rank r pid P node N` lines.
fn ranks(out: &str) -> Vec<(u32, u32, String)> {
    let mut v: Vec<(u32, u32, String)> = out
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            match w.as_slice() {
                ["rank", r, "pid", p, "node", n] => {
                    Some((r.parse().ok()?, p.parse().ok()?, n.to_string()))
                }
                _ => None,
            }
        })
        .collect();
    v.sort();
    v
}

/// The processes whose threads a log names (its `T` lines).
fn pids_in(log: &Path) -> Vec<u32> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut v: Vec<u32> = text
        .lines()
        .filter_map(|l| l.strip_prefix("T "))
        .filter_map(|l| u32::from_str_radix(l.split(' ').next()?, 16).ok())
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The 8-rank job under bthost-run (with `recipe_args`), recording into DIR/out, once it
/// hangs: rank 5 skipped its second collective and all 8 finished their first. Its id, and
/// what it printed by then.
fn hanging_job(dir: &Path, recipe_args: &str) -> (String, String) {
    let standins = build_standins(&dir.join("standins"));
    let out = dir.join("out");
    let job = sbatch(
        dir,
        &format!(
            "exec {} {recipe_args} --bthost {} --packs rccl --lib rccl={} -o {} -- -O {} -S {}/uid -k 3 -s 5:1 -t 600000",
            recipe().display(),
            bthost_bin().display(),
            standins.join("librccl.so.1").display(),
            out.display(),
            standins.join("rccl_ranks").display(),
            out.display()
        ),
    );
    let printed = wait_out(
        dir,
        &job,
        |o| o.contains("SKIPPED") && o.matches("coll#0 AllReduce -> ok").count() == 8,
        "the job did not reach its hang",
    );
    (job, printed)
}

#[test]
fn a_slurm_job_is_recorded_on_every_node() {
    if skip_root_tests() {
        return;
    }
    cluster_up();
    let dir = scratch("slurm-job");
    let out = dir.join("out");
    let _serial = system_wide_lock();
    // --sudo, as a user who is not root runs it (root's sudo needs no rule).
    let (job, printed) = hanging_job(&dir, "--sudo");
    std::thread::sleep(Duration::from_secs(2));
    // What a user does to a hung job.
    let o = Command::new("scancel").arg(&job).output().unwrap();
    assert!(o.status.success());
    wait_gone(&job);
    let all = job_out(&dir);
    assert!(all.contains("bthost-run: 4 of 4 nodes recording"), "{all}");

    // Each node's log holds exactly that node's ranks.
    let ranks = ranks(&printed);
    assert_eq!(ranks.len(), 8, "{printed}");
    for node in ["n1", "n2", "n3", "n4"] {
        let mut want: Vec<u32> = ranks.iter().filter(|r| r.2 == node).map(|r| r.1).collect();
        want.sort_unstable();
        assert_eq!(want.len(), 2, "{printed}");
        let log = out.join(format!("{node}.log"));
        assert_eq!(pids_in(&log), want, "{node}");
        let err = std::fs::read_to_string(out.join(format!("{node}.stderr"))).unwrap();
        assert!(err.contains("bthost: the log is complete"), "{node}: {err}");
        // Each recorder says what it cost its node: its BPF maps are real kernel memory.
        let maps_mib: f64 = err
            .split(" MiB of BPF maps")
            .next()
            .and_then(|s| s.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{node}: no recorder cost: {err}"));
        assert!(maps_mib >= 1.0, "{node}: {err}");
    }
    // The report names the skipping rank, its node and the collective.
    let report = std::fs::read_to_string(out.join("report.txt"))
        .unwrap_or_else(|e| panic!("no report.txt ({e}):\n{all}"));
    let rank5 = &ranks[5];
    assert!(report.contains("4 logs (n[1-4])"), "{report}");
    assert!(
        report.contains("#2 ncclAllReduce(") && report.contains("entered by ranks 0-4,6-7 (7)"),
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "never entered #2: rank 5 ({} pid {}): last #1 ncclAllReduce(",
            rank5.2, rank5.1
        )),
        "{report}"
    );
    // The job's own output is all there: every rank's lines, and Slurm's own.
    assert!(
        all.contains("rank 5 pid") && all.contains("CANCELLED"),
        "{all}"
    );
}

#[test]
fn a_node_whose_recorder_cannot_start_is_named_and_the_job_waits() {
    if skip_root_tests() {
        return;
    }
    cluster_up();
    let dir = scratch("slurm-missing");
    // A bpftrace that is missing on node n2.
    let fake = dir.join("bpftrace");
    std::fs::write(
        &fake,
        "#!/bin/sh\nif [ \"$SLURMD_NODENAME\" = n2 ]; then echo \"bpftrace: not installed here\" >&2; exit 127; fi\nexec bpftrace \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = dir.join("out");
    let _serial = system_wide_lock();
    let job = sbatch(
        &dir,
        &format!(
            "exec {} --bthost {} --packs hsa --bpftrace-bin {} -o {} -- -O /bin/echo the job ran",
            recipe().display(),
            bthost_bin().display(),
            fake.display(),
            out.display()
        ),
    );
    wait_gone(&job);
    let o = job_out(&dir);
    assert!(
        o.contains("bthost-run: node n2: the recorder could not start: bthost: error:"),
        "{o}"
    );
    assert!(o.contains("not starting the job: no recorder on n2"), "{o}");
    assert!(!o.contains("the job ran"), "{o}");

    // With --allow-missing it runs, on the nodes that record.
    let job = sbatch(
        &dir,
        &format!(
            "exec {} --allow-missing --bthost {} --packs hsa --bpftrace-bin {} -o {} -- -O /bin/echo the job ran",
            recipe().display(),
            bthost_bin().display(),
            fake.display(),
            out.display()
        ),
    );
    wait_gone(&job);
    let o = job_out(&dir);
    assert!(o.contains("3 of 4 nodes recording"), "{o}");
    assert_eq!(o.matches("the job ran").count(), 8, "{o}");
}

#[test]
fn a_step_that_cannot_start_and_a_folder_that_cannot_be_written_are_said() {
    if skip_root_tests() {
        return;
    }
    cluster_up();
    let dir = scratch("slurm-bad");
    let out = dir.join("out");
    let _serial = system_wide_lock();
    let job = sbatch(
        &dir,
        &format!(
            "exec {} --bthost {} --packs hsa -o {} -- -O /no/such/program",
            recipe().display(),
            bthost_bin().display(),
            out.display()
        ),
    );
    wait_gone(&job);
    let o = job_out(&dir);
    // srun names the nodes and the program; the recorders are stopped, their logs complete.
    assert!(o.contains("/no/such/program"), "{o}");
    assert!(o.contains("bthost-run: job step ended (status"), "{o}");
    for node in ["n1", "n2", "n3", "n4"] {
        let err = std::fs::read_to_string(out.join(format!("{node}.stderr"))).unwrap();
        assert!(err.contains("bthost: the log is complete"), "{node}: {err}");
    }

    // An output folder that is a file.
    let file = dir.join("a-file");
    std::fs::write(&file, "").unwrap();
    let job = sbatch(
        &dir,
        &format!(
            "exec {} --bthost {} --packs hsa -o {}/sub -- -O /bin/true",
            recipe().display(),
            bthost_bin().display(),
            file.display()
        ),
    );
    wait_gone(&job);
    let o = job_out(&dir);
    assert!(
        o.contains(&format!("bthost-run: cannot create {}/sub", file.display())),
        "{o}"
    );
}

/// The `bthost record` of `node` for `job` (not the sudo or shell around it).
fn recorder_of(job: &str, node: &str) -> Option<u32> {
    let token = format!("slurm:{job}:{node}");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        let args: Vec<&[u8]> = cmd.split(|&b| b == 0).collect();
        let exe = Path::new(std::str::from_utf8(args.first()?).ok()?);
        (exe.file_name()? == "bthost"
            && args.contains(&&b"record"[..])
            && args.contains(&token.as_bytes()))
        .then_some(pid)
    })
}

#[test]
fn a_node_whose_recorder_dies_mid_step_is_named_and_the_others_go_on() {
    if skip_root_tests() {
        return;
    }
    cluster_up();
    let dir = scratch("slurm-recorder-dies");
    let out = dir.join("out");
    let _serial = system_wide_lock();
    let (job, printed) = hanging_job(&dir, "");
    // The kill comes once n3's log holds what its ranks did before the hang: both ranks'
    // thread lines, and two drains begun after all 8 ranks returned from #1 (the first may
    // have begun before). Killed earlier, the log would rightly lack them (CI saw that).
    let n3_log = out.join("n3.log");
    let n3_pids: Vec<u32> = {
        let mut v: Vec<u32> = ranks(&printed)
            .into_iter()
            .filter(|r| r.2 == "n3")
            .map(|r| r.1)
            .collect();
        v.sort_unstable();
        v
    };
    let drains = |log: &Path| {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("#D "))
            .count()
    };
    let before = drains(&n3_log);
    wait_out(
        &dir,
        &job,
        |_| drains(&n3_log) >= before + 2 && pids_in(&n3_log) == n3_pids,
        "n3's log did not get its ranks' records",
    );
    // n3's recorder (the node of rank 5, which skips) killed as the OOM killer would, while
    // the job step runs.
    let rec = recorder_of(&job, "n3").unwrap_or_else(|| panic!("no recorder of n3:\n{printed}"));
    let st = Command::new("kill")
        .args(["-KILL", &rec.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let said = wait_out(
        &dir,
        &job,
        |o| o.contains("bthost-run: node n3: its recorder stopped"),
        "bthost-run did not say that n3's recorder stopped",
    );
    assert!(
        said.contains("the recorder was killed by signal 9 (SIGKILL: the OOM killer? see dmesg on n3); the other nodes go on"),
        "{said}"
    );
    // The others still record: n1's recorder is alive.
    assert!(recorder_of(&job, "n1").is_some(), "{said}");
    let o = Command::new("scancel").arg(&job).output().unwrap();
    assert!(o.status.success());
    wait_gone(&job);
    let all = job_out(&dir);
    for node in ["n1", "n2", "n4"] {
        let err = std::fs::read_to_string(out.join(format!("{node}.stderr"))).unwrap();
        assert!(err.contains("bthost: the log is complete"), "{node}: {err}");
    }
    // report.txt names the node and why first, then reports on every log, n3's as far as it
    // goes: the skipping rank 5 is still named, with the caveat that its node's tracing
    // stopped.
    let report = std::fs::read_to_string(out.join("report.txt"))
        .unwrap_or_else(|e| panic!("no report.txt ({e}):\n{all}"));
    let first = report.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("bthost-run: node n3: its recorder stopped at ")
            && first.contains("killed by signal 9"),
        "{report}"
    );
    assert!(report.contains("4 logs (n[1-4])"), "{report}");
    assert!(
        report.contains("n3.log: the log ends without its end mark: its recorder was killed"),
        "{report}"
    );
    let rank5 = &ranks(&printed)[5];
    assert!(
        report.contains(&format!(
            "never entered #2: rank 5 ({} pid {})",
            rank5.2, rank5.1
        )) && report.contains(
            "(tracing on n3 did not run all along: what rank 5 seems not to have done may have \
             happened while nothing was traced)"
        ),
        "{report}"
    );
}
