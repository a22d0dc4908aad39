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

/// The fields of a `/proc/PID/stat` line after the command name (field 3, the state, is the
/// first): the name may hold spaces and parentheses, so it is cut at the last `)`.
pub fn after_comm(stat: &str) -> Option<Vec<&str>> {
    Some(
        stat[stat.rfind(')')? + 1..]
            .split_ascii_whitespace()
            .collect(),
    )
}

fn stat_of(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()
}

/// The state letter of `pid` (`R`, `S`, `T` for stopped, `Z`...).
pub fn state(pid: u32) -> Option<char> {
    after_comm(&stat_of(pid)?)?.first()?.chars().next()
}

/// The parent of `pid`.
pub fn parent(pid: u32) -> Option<u32> {
    after_comm(&stat_of(pid)?)?.get(1)?.parse().ok()
}

/// Every process's children, by parent.
pub fn children_map() -> std::collections::HashMap<u32, Vec<u32>> {
    let mut m: std::collections::HashMap<u32, Vec<u32>> = std::collections::HashMap::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return m;
    };
    for pid in rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()) {
        if let Some(pp) = parent(pid) {
            m.entry(pp).or_default().push(pid);
        }
    }
    m
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
    fn a_command_with_spaces_and_parentheses_in_its_name() {
        let f = after_comm("42 (a) b (c)) S 1 42").unwrap();
        assert_eq!(f, vec!["S", "1", "42"]);
        assert_eq!(
            parent(std::process::id()),
            Some(std::os::unix::process::parent_id())
        );
        assert!(matches!(state(std::process::id()), Some('R' | 'S')));
        let kids = children_map();
        assert!(kids[&std::os::unix::process::parent_id()].contains(&std::process::id()));
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
