//! Python frames, by the `py-spy` binary where it is installed (`pip install py-spy`).
//!
//! The binary rather than the py-spy crate: the crate brings a large tree (remoteprocess,
//! goblin, a CPython struct layout per version) into every bthost build for a feature only
//! Python jobs use, and users already install py-spy in the job's environment. Its JSON output
//! (`dump --json`) rather than the text: thread ids, function, file and line as fields, no
//! parsing of a layout meant for people.
//!
//! py-spy runs after bthost has let the process go (two tracers cannot hold one thread) and
//! pauses it itself while it reads the frames (its default; `--nonblocking` would read a
//! running interpreter and can return torn stacks), a few milliseconds after its own start.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// One Python frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PyFrame {
    pub function: String,
    pub file: String,
    pub line: u32,
}

/// One thread's Python frames, innermost first.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PyThread {
    pub tid: u32,
    pub frames: Vec<PyFrame>,
}

/// Where py-spy is: `$BTHOST_PY_SPY`, else on PATH (sudo's PATH included: the venv bthost runs
/// from, beside its own executable).
pub fn py_spy() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BTHOST_PY_SPY") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("py-spy")));
    let path = std::env::var_os("PATH").unwrap_or_default();
    beside
        .into_iter()
        .chain(std::env::split_paths(&path).map(|d| d.join("py-spy")))
        .find(|p| p.is_file())
}

/// Whether `pid` runs CPython: its executable or a mapped library is a python (libpython3.x
/// or a static python3.x).
pub fn is_cpython(pid: u32) -> bool {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    maps.lines().any(|l| {
        l.rsplit('/').next().is_some_and(|name| {
            name.starts_with("libpython3") || (name.starts_with("python3") && l.contains("r-xp"))
        })
    })
}

#[derive(Deserialize)]
struct SpyThread {
    os_thread_id: Option<u32>,
    #[serde(default)]
    frames: Vec<SpyFrame>,
}

#[derive(Deserialize)]
struct SpyFrame {
    name: String,
    filename: String,
    #[serde(default)]
    line: i64,
}

/// A started `py-spy dump`, read by [`Spy::finish`].
pub struct Spy {
    child: std::process::Child,
    started: Instant,
}

impl Spy {
    pub fn start(bin: &std::path::Path, pid: u32) -> Result<Spy, String> {
        let child = Command::new(bin)
            .args(["dump", "--json", "--pid", &pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{}: {e}", bin.display()))?;
        Ok(Spy {
            child,
            started: Instant::now(),
        })
    }

    /// Its threads, waiting at most `limit` (then it is killed).
    pub fn finish(mut self, limit: Duration) -> Result<Vec<PyThread>, String> {
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if self.started.elapsed() < limit => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return Err(format!("py-spy took over {:.1} s", limit.as_secs_f64()));
                }
            }
        }
        let (mut out, mut err) = (String::new(), String::new());
        if let Some(mut o) = self.child.stdout.take() {
            let _ = o.read_to_string(&mut out);
        }
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        parse(&out).map_err(|why| {
            let said = err.lines().last().unwrap_or("").trim().to_string();
            if said.is_empty() {
                why
            } else {
                format!("py-spy: {said}")
            }
        })
    }
}

/// Parses `py-spy dump --json`.
pub fn parse(json: &str) -> Result<Vec<PyThread>, String> {
    let threads: Vec<SpyThread> =
        serde_json::from_str(json).map_err(|e| format!("py-spy's output: {e}"))?;
    Ok(threads
        .into_iter()
        .filter_map(|t| {
            Some(PyThread {
                tid: t.os_thread_id?,
                frames: t
                    .frames
                    .into_iter()
                    .map(|f| PyFrame {
                        function: f.name,
                        file: f.filename,
                        line: u32::try_from(f.line).unwrap_or(0),
                    })
                    .collect(),
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_py_spy_json() {
        let t = parse(
            r#"[{"pid":7,"thread_id":1,"thread_name":"MainThread","os_thread_id":7,
              "active":false,"owns_gil":false,"frames":[
               {"name":"load_batch","filename":"/tmp/st.py","module":null,
                "short_filename":"st.py","line":3,"locals":null,"is_entry":false},
               {"name":"<module>","filename":"/tmp/st.py","line":6}],
              "process_info":null}]"#,
        )
        .unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].tid, 7);
        assert_eq!(
            t[0].frames[0],
            PyFrame {
                function: "load_batch".into(),
                file: "/tmp/st.py".into(),
                line: 3
            }
        );
        assert!(parse("Error: no python").is_err());
    }
}
