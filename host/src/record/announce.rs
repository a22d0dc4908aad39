//! Processes that tell a recorder "trace me": `record --announced TOKEN` traces only the
//! processes announced with its token (and those they start from then on), and
//! `bthost announce --token TOKEN` announces its parent process. Run as srun's `--task-prolog`
//! (contrib/slurm/bthost-run), the announcer's parent is the task itself, before it runs the
//! program: the recorder traces the job's tasks on its node from their first call, and no
//! other process. The announcement is a call of a bthost function that the recorder's script
//! probes (crate::compose::hooks), so announcer and recorder must run the same bthost file.
//!
//! `auto` derives the token from Slurm's environment (`SLURM_JOB_ID`, `SLURMD_NODENAME`), the
//! same for a job's recorder and tasks on one node, different on every other node: with
//! several emulated nodes on one kernel, each recorder still gets only its node's tasks.

use super::sentinel::Channel;

/// A token as given: a number, `auto` (from Slurm's environment), or `slurm:JOB:NODE` (the
/// same, given explicitly: a recorder started through sudo, which clears the environment).
pub fn token(arg: &str) -> Result<u64, String> {
    if let Some(rest) = arg.strip_prefix("slurm:") {
        return match rest.split_once(':') {
            Some((job, node)) if !job.is_empty() && !node.is_empty() => Ok(slurm_token(job, node)),
            _ => Err(format!("token {arg:?}: expected slurm:JOB_ID:NODE_NAME")),
        };
    }
    if arg != "auto" {
        return arg
            .parse()
            .ok()
            .filter(|&t| t > 0 && t < 1 << 31)
            .ok_or_else(|| {
                format!("token {arg:?}: expected a number from 1 to 2^31-1, or `auto`")
            });
    }
    let job = std::env::var("SLURM_JOB_ID")
        .map_err(|_| "token auto: SLURM_JOB_ID is not set (not inside a Slurm job)".to_string())?;
    let node = std::env::var("SLURMD_NODENAME").map_err(|_| {
        "token auto: SLURMD_NODENAME is not set (not a step on a Slurm node)".to_string()
    })?;
    Ok(slurm_token(&job, &node))
}

/// The token of Slurm job `job` on node `node`: in [2^30, 2^31), above any pid (Linux's are
/// below 2^22) and a positive number of any integer type a script compares it as (a token
/// above 2^63 became a negative literal in bpftrace 0.17, and never matched).
pub fn slurm_token(job: &str, node: &str) -> u64 {
    let h = crate::hash::fnv1a64(format!("slurm {job} {node}").as_bytes());
    (h & ((1 << 30) - 1)) | (1 << 30)
}

/// Announces process `pid` (by default the caller's parent) to the recorder of `token`.
pub fn announce(token: u64, pid: Option<u32>) -> u32 {
    // SAFETY: getppid cannot fail.
    let pid = pid.unwrap_or_else(|| unsafe { libc::getppid() } as u32);
    Channel { token }.trace_pid(pid);
    pid
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_slurm_token_is_auto_s() {
        assert_eq!(token("slurm:7:n1"), Ok(slurm_token("7", "n1")));
        assert!(token("slurm:7").is_err());
        assert!(token("slurm::n1").is_err());
    }

    #[test]
    fn tokens_differ_per_node_and_job() {
        let a = slurm_token("7", "n1");
        assert_eq!(a, slurm_token("7", "n1"));
        assert_ne!(a, slurm_token("7", "n2"));
        assert_ne!(a, slurm_token("8", "n1"));
        assert!((1 << 30..1 << 31).contains(&a));
        assert_eq!(token("42"), Ok(42));
        assert!(token("x").unwrap_err().contains("expected a number"));
        assert!(token("18446744073709551615").is_err());
    }
}
