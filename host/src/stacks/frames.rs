//! A thread's stack as people read it: frames named offline (crate::symbolize, from the maps
//! kept with the stacks) and trimmed to those that tell. Trimmed away: the innermost frames in
//! libc, the dynamic loader and the vDSO (the wait wrapper every blocked thread is in:
//! `clock_nanosleep`, `__futex_abstimed_wait_common`, `poll`), and, where Python frames are
//! known, the interpreter's own native frames (the eval loop, ctypes, libffi) between the
//! program's innermost native call and its Python code.

use super::format::{ProcStacks, ThreadStack};
use super::uretprobe::HIDDEN;
use crate::symbolize::frame::FrameName;
use crate::symbolize::Symbolizer;

/// Native frames kept in a summary (innermost first), without Python frames, and with them.
const NATIVE_ALONE: usize = 5;
const NATIVE_WITH_PYTHON: usize = 3;
/// Python frames kept (innermost first).
const PYTHON: usize = 5;

/// One frame, named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// `load_batch (train.py:14)`, `hipMemcpy (hip_standin.c:321)`, `?? (libx.so+0x1f00)`.
    pub text: String,
    /// The function alone (`load_batch`), or the object and offset when unknown.
    pub function: String,
    pub python: bool,
    /// libc, the loader or the vDSO: a wait wrapper.
    pub system: bool,
    /// The interpreter's own native code.
    pub interpreter: bool,
    /// No symbol covers it (garbage past the frames that unwound, or stripped code).
    pub unknown: bool,
}

/// Frames left out of a summary.
static ELLIPSIS: Frame = Frame {
    text: String::new(),
    function: String::new(),
    python: false,
    system: false,
    interpreter: false,
    unknown: false,
};

fn is_system(object: &str) -> bool {
    object.is_empty()
        || [
            "libc.so",
            "libc-",
            "ld-linux",
            "libpthread",
            "linux-vdso",
            "libstdc++",
        ]
        .iter()
        .any(|p| object.starts_with(p))
}

fn is_interpreter(object: &str) -> bool {
    ["libpython", "python3", "libffi", "_ctypes"]
        .iter()
        .any(|p| object.starts_with(p))
}

pub(crate) fn native(n: FrameName) -> Frame {
    let function = n
        .function
        .clone()
        .unwrap_or_else(|| format!("{}+{:#x}", n.object, n.offset));
    let text = match (&n.function, &n.place) {
        (Some(f), Some((file, line))) => format!("{f} ({file}:{line})"),
        (Some(f), None) => format!("{f} ({})", n.object),
        (None, _) if n.object.is_empty() => format!("?? ({:#x})", n.offset),
        (None, _) => format!("?? ({}+{:#x})", n.object, n.offset),
    };
    Frame {
        text,
        function,
        python: false,
        system: is_system(&n.object),
        interpreter: is_interpreter(&n.object),
        unknown: n.function.is_none(),
    }
}

/// A caller whose return address a uretprobe hid (crate::stacks::uretprobe): its function
/// and file where the call named it, its line unknown (`run_rank (torch_loop.c:?)`).
fn hidden(n: FrameName, unknown: bool) -> Frame {
    let mut f = native(n.clone());
    match (&n.function, &n.place) {
        _ if unknown || n.function.is_none() => {
            f.text = "?? (a traced call's caller)".into();
            f.unknown = true;
        }
        (Some(func), Some((file, _))) => f.text = format!("{func} ({file}:?)"),
        (Some(func), None) => f.text = format!("{func} ({}:?)", n.object),
        _ => {}
    }
    f
}

/// Loads a process's maps (as taken with its stacks) into `sym`, under the pid `key`.
pub fn add_maps(sym: &mut Symbolizer, key: u32, p: &ProcStacks) {
    sym.add_maps_text(key, &p.maps.join("\n"));
}

/// Every frame of a thread, innermost first: the Python frames (where known) after the
/// native ones that are not the interpreter's.
pub fn named(sym: &mut Symbolizer, key: u32, t: &ThreadStack) -> Vec<Frame> {
    let mut v: Vec<Frame> = t
        .pcs
        .iter()
        .enumerate()
        .map(|(i, &pc)| match pc & HIDDEN {
            0 => native(sym.frame(key, pc, i > 0)),
            _ => hidden(sym.frame(key, pc & !HIDDEN, false), pc == HIDDEN),
        })
        .collect();
    if !t.python.is_empty() {
        // The native frames above the interpreter's first are its own (main, Py_RunMain):
        // the Python frames stand there instead.
        let first_interp = v.iter().position(|f| f.interpreter).unwrap_or(v.len());
        v.truncate(first_interp);
        v.extend(t.python.iter().map(|p| Frame {
            text: format!(
                "{} ({}:{})",
                p.function,
                std::path::Path::new(&p.file)
                    .file_name()
                    .map_or(p.file.clone(), |n| n.to_string_lossy().into_owned()),
                p.line
            ),
            function: p.function.clone(),
            python: true,
            system: false,
            interpreter: false,
            unknown: false,
        }));
    }
    v
}

/// The frames that tell, innermost first (see the module's comment); the whole stack if
/// trimming would leave nothing.
pub fn telling(all: &[Frame]) -> Vec<&Frame> {
    let start = all.iter().position(|f| !f.system).unwrap_or(0);
    let rest = &all[start..];
    let has_python = rest.iter().any(|f| f.python);
    let mut v: Vec<&Frame> = Vec::new();
    if has_python {
        // The program's native frames under the Python code: the innermost that tell and the
        // outermost (the call Python made: `hipMemcpy`), with `...` between when there are more.
        let run: Vec<&Frame> = rest
            .iter()
            .take_while(|f| !f.python && !f.interpreter && !f.unknown)
            .collect();
        if run.len() > NATIVE_WITH_PYTHON {
            v.extend(&run[..NATIVE_WITH_PYTHON - 1]);
            v.push(&ELLIPSIS);
            v.push(run[run.len() - 1]);
        } else {
            v.extend(run);
        }
        v.extend(rest.iter().filter(|f| f.python).take(PYTHON));
    } else {
        v.extend(rest.iter().filter(|f| !f.system).take(NATIVE_ALONE));
    }
    if v.is_empty() {
        v.extend(all.iter().take(NATIVE_ALONE));
    }
    v
}

/// `a (f.c:1) <- b (f.c:9) <- ...`: the telling frames of a thread.
pub fn summary(all: &[Frame]) -> String {
    let t = telling(all);
    let mut s: Vec<&str> = t
        .iter()
        .map(|f| {
            if f.text.is_empty() {
                "..."
            } else {
                f.text.as_str()
            }
        })
        .collect();
    if s.is_empty() {
        s.push("(no frames)");
    }
    s.join(" <- ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(text: &str, system: bool, interpreter: bool, python: bool) -> Frame {
        Frame {
            text: text.into(),
            function: text.into(),
            python,
            system,
            interpreter,
            unknown: false,
        }
    }

    #[test]
    fn trims_the_wait_wrapper_and_the_interpreter() {
        let v = vec![
            f("clock_nanosleep", true, false, false),
            f("nanosleep", true, false, false),
            f("sleep_ms", false, false, false),
            f("wait_stream", false, false, false),
            f("hipMemcpy", false, false, false),
            f("ffi_call", false, true, false),
            f("_PyEval_EvalFrameDefault", false, true, false),
            f("step (t.py:9)", false, false, true),
            f("<module> (t.py:20)", false, false, true),
        ];
        assert_eq!(
            summary(&v),
            "sleep_ms <- wait_stream <- hipMemcpy <- step (t.py:9) <- <module> (t.py:20)"
        );
        let mut deeper = v.clone();
        deeper.insert(4, f("enqueue", false, false, false));
        assert_eq!(
            summary(&deeper),
            "sleep_ms <- wait_stream <- ... <- hipMemcpy <- step (t.py:9) <- <module> (t.py:20)"
        );
        let c = vec![
            f("__futex_abstimed_wait_common", true, false, false),
            f("pause", true, false, false),
            f("load_batch (l.c:3)", false, false, false),
            f("main (l.c:9)", false, false, false),
            f("__libc_start_call_main", true, false, false),
        ];
        assert_eq!(summary(&c), "load_batch (l.c:3) <- main (l.c:9)");
        // Nothing but libc: shown as it is.
        assert_eq!(summary(&c[..2]), "__futex_abstimed_wait_common <- pause");
        assert_eq!(summary(&[]), "(no frames)");
    }
}
