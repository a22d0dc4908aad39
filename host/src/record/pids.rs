//! `record --pid PID`: processes to trace (with every process they start from then on),
//! checked before anything starts.

/// Checks that each pid is a running process (not one of its threads).
pub fn check(pids: &[u32]) -> Result<(), String> {
    for &pid in pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map_err(|_| format!("--pid {pid}: there is no process {pid}"))?;
        let tgid = status
            .lines()
            .find_map(|l| l.strip_prefix("Tgid:"))
            .and_then(|v| v.trim().parse::<u32>().ok());
        match tgid {
            Some(t) if t != pid => {
                return Err(format!(
                    "--pid {pid}: {pid} is a thread of process {t}; give the process, --pid {t}"
                ))
            }
            Some(_) => {}
            None => return Err(format!("--pid {pid}: cannot read /proc/{pid}/status")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_that_does_not_exist_is_refused() {
        check(&[std::process::id()]).unwrap();
        // Pids beyond pid_max (at most 4194304) never exist.
        let e = check(&[4_194_305]).unwrap_err();
        assert_eq!(e, "--pid 4194305: there is no process 4194305");
    }

    #[test]
    fn a_thread_is_refused_with_its_process() {
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            tx.send(unsafe { libc::gettid() } as u32).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(200));
        });
        let tid = rx.recv().unwrap();
        let e = check(&[tid]).unwrap_err();
        assert!(e.contains("is a thread of process"), "{e}");
        t.join().unwrap();
    }
}
