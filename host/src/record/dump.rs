//! `bthost dump`: asks running flight recorders to dump now. A recorder dumps on SIGUSR1
//! (crate::record::signals); this finds the `bthost record` processes of this machine by
//! their executable and command line.

/// Sends SIGUSR1 to the recorder `pid`, or to every `bthost record` here; how many were asked.
pub fn ask(pid: Option<u32>) -> Result<usize, String> {
    let pids = match pid {
        Some(p) => {
            if !is_recorder(p) {
                return Err(format!("process {p} is not a running `bthost record`"));
            }
            vec![p]
        }
        None => recorders(),
    };
    if pids.is_empty() {
        return Err("no `bthost record` is running here".into());
    }
    for &p in &pids {
        // SAFETY: kill(2) with a pid checked to be a recorder.
        if unsafe { libc::kill(p as i32, libc::SIGUSR1) } != 0 {
            return Err(format!(
                "cannot signal recorder {p}: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(pids.len())
}

fn recorders() -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id();
    let mut v: Vec<u32> = rd
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&p| p != me && is_recorder(p))
        .collect();
    v.sort();
    v
}

/// Whether `pid` runs a bthost executable with `record` as its command.
fn is_recorder(pid: u32) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let mut args = cmdline.split(|&b| b == 0).filter(|a| !a.is_empty());
    let exe_named_bthost = args
        .next()
        .and_then(|a| {
            std::path::Path::new(std::str::from_utf8(a).ok()?)
                .file_name()
                .map(|n| n == "bthost")
        })
        .unwrap_or(false);
    exe_named_bthost && args.any(|a| a == b"record")
}
