//! Which copies of the packs' libraries the traced processes loaded, and whether those are the
//! files probed. A process that loaded another copy (another ROCm install, a wheel's copy, a
//! private copy through its runpath) makes no record at all: record says so at the stop, with
//! the `--lib` that would probe its copy.
//!
//! What a process loaded is read from /proc/PID/maps: the copies `record` keeps in LOG.maps/
//! (processes that made records, crate::record::maps), and a watch that reads the maps of the
//! traced processes while tracing runs (a process that made no record has no copy there). The
//! watch reads a new process at once and again soon after (a process seen between its fork
//! and its exec, or before it loads the library), then every 2 s (libraries loaded later).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::maps::MapsKeeper;
use crate::library::job::maps_line_file;
use crate::library::search::{base_name, file_id};

/// What the processes loaded: pid -> (file as listed, its inode).
pub type Loaded = BTreeMap<u32, BTreeSet<(PathBuf, u64)>>;

/// Which processes the watch reads.
#[derive(Clone, Debug)]
pub enum Scope {
    /// Every process (system-wide tracing).
    All,
    /// These processes and those they start (`--pid`, record's command with a filter).
    Tree(Vec<u32>),
}

/// The files of `maps` (the lines of a /proc/PID/maps) whose base name is one of `bases`.
pub fn matching<'a>(
    maps: impl IntoIterator<Item = &'a str>,
    bases: &[String],
) -> BTreeSet<(PathBuf, u64)> {
    maps.into_iter()
        .filter_map(maps_line_file)
        .filter(|(_, p)| {
            let name = Path::new(p)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("");
            bases.iter().any(|b| b == base_name(name))
        })
        .map(|(ino, p)| (PathBuf::from(p), ino))
        .collect()
}

/// The libraries loaded by the processes whose maps `record` copied (LOG.maps/).
pub fn from_keeper(keeper: &MapsKeeper, bases: &[String]) -> Loaded {
    let mut out = Loaded::new();
    for (pid, lines) in keeper.copied() {
        let files = matching(lines.iter().map(String::as_str), bases);
        if !files.is_empty() {
            out.entry(pid).or_default().extend(files);
        }
    }
    out
}

/// The watch thread.
pub struct Watch {
    stop: Arc<AtomicBool>,
    roots: Arc<Mutex<Vec<u32>>>,
    handle: Option<JoinHandle<Loaded>>,
}

impl Watch {
    /// Starts reading the maps of the processes of `scope` for files of `bases`.
    pub fn start(bases: Vec<String>, scope: Scope) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let (all, roots) = match scope {
            Scope::All => (true, Vec::new()),
            Scope::Tree(r) => (false, r),
        };
        let roots = Arc::new(Mutex::new(roots));
        let (s, r) = (stop.clone(), roots.clone());
        let handle = std::thread::Builder::new()
            .name("bthost-loads".into())
            .spawn(move || run(&bases, all, &r, &s))
            .ok();
        Watch {
            stop,
            roots,
            handle,
        }
    }

    /// Watches `pid` (and what it starts) too: record's command.
    pub fn add_root(&self, pid: u32) {
        if let Ok(mut r) = self.roots.lock() {
            r.push(pid);
        }
    }

    /// Stops the watch; what it saw.
    pub fn finish(mut self) -> Loaded {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

struct Proc {
    first: Instant,
    next: Instant,
}

fn run(bases: &[String], all: bool, roots: &Mutex<Vec<u32>>, stop: &AtomicBool) -> Loaded {
    let me = std::process::id();
    let mut out = Loaded::new();
    let mut procs: HashMap<u32, Proc> = HashMap::new();
    let mut in_scope: HashSet<u32> = HashSet::new();
    let mut out_of_scope: HashSet<u32> = HashSet::new();
    loop {
        let last = stop.load(Ordering::Relaxed);
        let now = Instant::now();
        let mut pids: Vec<u32> = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        pids.sort_unstable();
        let alive: HashSet<u32> = pids.iter().copied().collect();
        procs.retain(|p, _| alive.contains(p));
        // A pid used again is a new process.
        in_scope.retain(|p| alive.contains(p));
        out_of_scope.retain(|p| alive.contains(p));
        if !all {
            in_scope.extend(roots.lock().map(|r| r.clone()).unwrap_or_default());
        }
        for pid in pids {
            if pid == me {
                continue;
            }
            if !all && !in_scope.contains(&pid) {
                if out_of_scope.contains(&pid) {
                    continue;
                }
                // A process of the tree: its parent is (parents come first, by pid, mostly).
                match super::pids::parent(pid) {
                    Some(pp) if in_scope.contains(&pp) => {
                        in_scope.insert(pid);
                    }
                    _ => {
                        out_of_scope.insert(pid);
                        continue;
                    }
                }
            }
            let p = procs.entry(pid).or_insert(Proc {
                first: now,
                next: now,
            });
            if now < p.next && !last {
                continue;
            }
            // Soon after it is first seen, then less and less often, at most every 2 s.
            let age = now.duration_since(p.first);
            p.next = now + (age / 2 + Duration::from_millis(50)).min(Duration::from_secs(2));
            let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
                continue;
            };
            if text.is_empty() {
                // A kernel thread (or a process gone): never again.
                p.next = now + Duration::from_secs(3600);
                continue;
            }
            for (path, ino) in matching(text.lines(), bases) {
                // As the host sees it: a process in another mount namespace through its root.
                let host_path = if file_id(&path).is_some_and(|(_, i)| i == ino) {
                    path
                } else {
                    let inside = PathBuf::from(format!("/proc/{pid}/root{}", path.display()));
                    if file_id(&inside).is_some_and(|(_, i)| i == ino) {
                        inside
                    } else {
                        path
                    }
                };
                out.entry(pid).or_default().insert((host_path, ino));
            }
        }
        if last {
            return out;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A pack's probed files, for telling another copy from them.
pub struct Probed {
    pub pack: String,
    pub bases: Vec<String>,
    /// The pack's file names (soname and `also`), to name a copy by its usual name.
    pub names: Vec<String>,
    pub files: Vec<PathBuf>,
}

/// A process that loaded a copy of a pack's library other than those probed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    pub pack: String,
    pub pids: Vec<u32>,
    /// The file it loaded (by its usual name where a link of that name beside it leads to it).
    pub loaded: PathBuf,
    pub probed: Vec<PathBuf>,
}

impl Mismatch {
    /// `bthost: warning: pid 4242 loaded /opt/rocm-7.2.4/lib/libamdhip64.so.7; the hip probes
    /// were on /usr/lib/x86_64-linux-gnu/libamdhip64.so.6: use --lib hip=/opt/rocm-7.2.4/lib/libamdhip64.so.7`
    pub fn message(&self) -> String {
        let mut pids: Vec<String> = self.pids.iter().take(8).map(|p| p.to_string()).collect();
        if self.pids.len() > 8 {
            pids.push(format!("and {} more", self.pids.len() - 8));
        }
        let on: Vec<String> = self
            .probed
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        format!(
            "bthost: warning: {} {} loaded {}; the {} probes were on {}: use --lib {}={}",
            if self.pids.len() == 1 { "pid" } else { "pids" },
            pids.join(", "),
            self.loaded.display(),
            self.pack,
            on.join(" and "),
            self.pack,
            self.loaded.display()
        )
    }
}

/// The copies the processes loaded that no probe was on, one per (pack, file).
pub fn mismatches(loaded: &Loaded, packs: &[Probed]) -> Vec<Mismatch> {
    let mut out: Vec<Mismatch> = Vec::new();
    for p in packs {
        let ids: Vec<(u64, u64)> = p.files.iter().filter_map(|f| file_id(f)).collect();
        let reals: Vec<PathBuf> = p
            .files
            .iter()
            .filter_map(|f| std::fs::canonicalize(f).ok())
            .collect();
        for (pid, files) in loaded {
            for (path, ino) in files {
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if !p.bases.iter().any(|b| b == base_name(name)) {
                    continue;
                }
                // The same file: its inode (the maps' own, for a path this host cannot open),
                // or its real path.
                let same = ids.iter().any(|(_, i)| i == ino)
                    || std::fs::canonicalize(path).is_ok_and(|r| reals.contains(&r));
                if same {
                    continue;
                }
                let shown = usual_name(path, &p.names);
                match out
                    .iter_mut()
                    .find(|m| m.pack == p.pack && m.loaded == shown)
                {
                    Some(m) => {
                        if !m.pids.contains(pid) {
                            m.pids.push(*pid);
                        }
                    }
                    None => out.push(Mismatch {
                        pack: p.pack.clone(),
                        pids: vec![*pid],
                        loaded: shown,
                        probed: p.files.clone(),
                    }),
                }
            }
        }
    }
    out
}

/// `path` by the name of a link beside it that leads to it (`libamdhip64.so.7` for
/// `libamdhip64.so.7.2.53211`), else as it is.
fn usual_name(path: &Path, names: &[String]) -> PathBuf {
    let (Some(dir), Some(id)) = (path.parent(), file_id(path)) else {
        return path.to_path_buf();
    };
    names
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.as_path() != path && file_id(p) == Some(id))
        .unwrap_or_else(|| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_files_of_a_maps_text() {
        let maps = "\
55d0c0000000-55d0c0001000 r--p 00000000 fe:01 1234                       /tmp/prog
7f0000000000-7f0000100000 r-xp 00010000 fe:01 5678                       /opt/rocm-7.2.4/lib/libamdhip64.so.7.2.53211
7f0000100000-7f0000200000 r--p 00000000 fe:01 9012                       /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000200000-7f0000300000 r--p 00000000 fe:01 3456                       /usr/lib/x86_64-linux-gnu/libamdhip64.so.5.2.21153 (deleted)
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
";
        let m = matching(maps.lines(), &["libamdhip64.so".to_string()]);
        assert_eq!(
            m.into_iter().collect::<Vec<_>>(),
            [(
                PathBuf::from("/opt/rocm-7.2.4/lib/libamdhip64.so.7.2.53211"),
                5678
            )]
        );
    }

    #[test]
    fn another_copy_is_named_with_the_lib_to_use() {
        let dir = std::env::temp_dir().join(format!("bthost-loads-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a")).unwrap();
        std::fs::create_dir_all(dir.join("b")).unwrap();
        let a = dir.join("a/libfoo.so.1.2.3");
        let b = dir.join("b/libfoo.so.1.2.3");
        std::fs::write(&a, b"a").unwrap();
        std::fs::write(&b, b"b").unwrap();
        let link = dir.join("b/libfoo.so.1");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("libfoo.so.1.2.3", &link).unwrap();
        let ino = |p: &Path| file_id(p).unwrap().1;
        let mut loaded = Loaded::new();
        loaded.entry(10).or_default().insert((a.clone(), ino(&a)));
        loaded.entry(11).or_default().insert((b.clone(), ino(&b)));
        loaded.entry(12).or_default().insert((b.clone(), ino(&b)));
        let probed = [Probed {
            pack: "foo".into(),
            bases: vec!["libfoo.so".into()],
            names: vec!["libfoo.so.1".into()],
            files: vec![a.clone()],
        }];
        let m = mismatches(&loaded, &probed);
        assert_eq!(m.len(), 1, "{m:?}");
        assert_eq!(m[0].pids, [11, 12]);
        assert_eq!(m[0].loaded, link);
        assert_eq!(
            m[0].message(),
            format!(
                "bthost: warning: pids 11, 12 loaded {}; the foo probes were on {}: use --lib foo={}",
                link.display(),
                a.display(),
                link.display()
            )
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
