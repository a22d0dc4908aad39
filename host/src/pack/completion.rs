//! A pack's `[completion]` section: how the work its calls hand to a device completes, as
//! data (crate::calls::completion infers it from the calls). On a GPU a launch, an async copy
//! or a collective only enqueues work on a queue (a stream) and returns; the host learns that
//! the work is done only from a later call that waits for it or asks about it. The section says
//! which calls create queues, enqueue on them, mark a point on them (an event), make one queue
//! wait for another's mark, wait for or query a queue, a mark or every queue, and which return
//! values mean "done" and "not yet"; and which queue values are special handles: other names
//! of the null queue (hipStreamLegacy), the calling thread's own default queue
//! (hipStreamPerThread), and the calls in which the null value means that thread's queue (HIP's
//! `_spt` forms).

use serde::Deserialize;
use toml::Spanned;

/// What a call does to the work on queues.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Does {
    /// Creates the queue its `queue` field names (an output); `flags` with a `nonblocking`
    /// bit exempts it from the null queue's implicit synchronisation.
    Create,
    /// Puts work on its queue and returns (a launch, an async copy, a collective).
    Enqueue,
    /// Puts a mark (its `marker`, an event) on its queue: the mark completes when the queue
    /// reaches it.
    Record,
    /// Makes its queue's later work wait for the mark `marker` (on another queue).
    Depend,
    /// Returns once its queue, its mark, or every queue of its `scope` is done.
    Wait,
    /// Answers whether its queue, mark or scope is done (`done`) or not yet (`not_ready`).
    Query,
    /// Runs when its mark is reached: a host callback the queue ran.
    Ran,
}

impl Does {
    const NAMES: [(&'static str, Does); 7] = [
        ("create", Does::Create),
        ("enqueue", Does::Enqueue),
        ("record", Does::Record),
        ("depend", Does::Depend),
        ("wait", Does::Wait),
        ("query", Does::Query),
        ("ran", Does::Ran),
    ];

    pub fn name(self) -> &'static str {
        Does::NAMES
            .iter()
            .find(|(_, d)| *d == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }
}

/// Which queues a wait or query with neither a queue nor a mark covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Every queue of the process (a device synchronisation).
    All,
    /// The null queue and the queues that synchronise with it (those not created
    /// non-blocking): a synchronous copy on the legacy default stream.
    Blocking,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub does: Does,
    pub calls: Vec<String>,
    /// The field naming the queue (a stream handle; 0 is the null queue).
    pub queue: Option<String>,
    /// The field naming the mark (an event handle, a callback's user data).
    pub marker: Option<String>,
    pub scope: Option<Scope>,
    /// Create: the field with the queue's flags, and the bit that makes it non-blocking.
    pub flags: Option<String>,
    pub nonblocking: u64,
    /// In these calls the null queue value 0 (or no queue: a synchronous copy) is the calling
    /// thread's default queue (HIP's `_spt` forms, hipMemcpy_spt).
    pub null_is_per_thread: bool,
}

impl Rule {
    /// A rule on `queue` and `marker` fields, with no scope or flags (the common shape).
    pub fn new(does: Does, calls: &[&str], queue: Option<&str>, marker: Option<&str>) -> Rule {
        Rule {
            does,
            calls: calls.iter().map(|s| s.to_string()).collect(),
            queue: queue.map(str::to_string),
            marker: marker.map(str::to_string),
            scope: None,
            flags: None,
            nonblocking: 0,
            null_is_per_thread: false,
        }
    }
}

/// A checked `[completion]` section.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct CompletionSpec {
    /// Return values that mean the call did what it says (enqueued, waited to the end).
    pub done: Vec<i64>,
    /// Return values of a query that mean "not yet".
    pub not_ready: Vec<i64>,
    /// Queue values that name the null queue too (hipStreamLegacy, 1).
    pub null: Vec<u64>,
    /// Queue values that name the calling thread's default queue (hipStreamPerThread, 2): a
    /// queue of its own per thread, which synchronises with the null queue.
    pub per_thread: Vec<u64>,
    pub rules: Vec<Rule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCompletion {
    #[serde(default)]
    done: Vec<i64>,
    #[serde(default)]
    not_ready: Vec<i64>,
    #[serde(default)]
    null: Vec<Spanned<u64>>,
    #[serde(default)]
    per_thread: Vec<Spanned<u64>>,
    #[serde(default, rename = "rule")]
    rules: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    does: Spanned<String>,
    calls: Vec<Spanned<String>>,
    queue: Option<Spanned<String>>,
    marker: Option<Spanned<String>>,
    scope: Option<Spanned<String>>,
    flags: Option<Spanned<String>>,
    #[serde(default)]
    nonblocking: u64,
    #[serde(default)]
    null_is_per_thread: bool,
}

/// What the checks need to know of the pack: for a function, the names of its probe's fields
/// (None: not one of the pack's probes); and the pack's link keys.
pub(super) struct Probed<'a> {
    pub fields: &'a dyn Fn(&str) -> Option<Vec<String>>,
    pub links: &'a [String],
}

/// Checks the section; errors are (byte span, message).
pub(super) fn resolve(
    raw: &RawCompletion,
    probed: &Probed,
) -> Result<CompletionSpec, (std::ops::Range<usize>, String)> {
    let mut rules = Vec::new();
    for r in &raw.rules {
        let does = Does::NAMES
            .iter()
            .find(|(n, _)| *n == r.does.get_ref())
            .map(|(_, d)| *d)
            .ok_or_else(|| {
                let names: Vec<_> = Does::NAMES.iter().map(|(n, _)| *n).collect();
                (
                    r.does.span(),
                    format!(
                        "[[completion.rule]] does = {:?}; expected one of {}",
                        r.does.get_ref(),
                        names.join(", ")
                    ),
                )
            })?;
        let scope = match &r.scope {
            None => None,
            Some(s) => Some(match s.get_ref().as_str() {
                "all" => Scope::All,
                "blocking" => Scope::Blocking,
                other => {
                    return Err((
                        s.span(),
                        format!(
                            "scope {other:?}; expected \"all\" (every queue) or \"blocking\" (the null queue and those that synchronise with it)"
                        ),
                    ))
                }
            }),
        };
        let has = |f: &Option<Spanned<String>>| f.is_some();
        let need = |what: &str, ok: bool| -> Result<(), (std::ops::Range<usize>, String)> {
            if ok {
                Ok(())
            } else {
                Err((
                    r.does.span(),
                    format!("[[completion.rule]] does = \"{}\" {what}", does.name()),
                ))
            }
        };
        match does {
            Does::Create => need("needs `queue` (the created queue)", has(&r.queue))?,
            Does::Enqueue => need("needs `queue`", has(&r.queue) && !has(&r.marker))?,
            Does::Record | Does::Depend => need(
                "needs `queue` and `marker`",
                has(&r.queue) && has(&r.marker),
            )?,
            Does::Wait | Does::Query => {
                let objects = [has(&r.queue), has(&r.marker), scope.is_some()]
                    .iter()
                    .filter(|x| **x)
                    .count();
                // With `null_is_per_thread` and none: the calling thread's default queue.
                need(
                    "needs one of `queue`, `marker` or `scope` (or none, with `null_is_per_thread`: the calling thread's default queue)",
                    objects == 1 || (objects == 0 && r.null_is_per_thread),
                )?;
                if r.null_is_per_thread && objects == 1 && !has(&r.queue) {
                    need(
                        "with `null_is_per_thread` takes a `queue` (or none), not a `marker` or `scope`",
                        false,
                    )?;
                }
            }
            Does::Ran => need("needs `marker`", has(&r.marker))?,
        }
        if scope.is_some() && !matches!(does, Does::Wait | Does::Query) {
            need("takes no `scope`", false)?;
        }
        if (r.flags.is_some() || r.nonblocking != 0) && does != Does::Create {
            need("takes no `flags` or `nonblocking`", false)?;
        }
        if r.null_is_per_thread && matches!(does, Does::Create | Does::Ran) {
            need(
                "takes no `null_is_per_thread` (it names no queue of the call's thread)",
                false,
            )?;
        }
        if r.calls.is_empty() {
            return Err((r.does.span(), "[[completion.rule]] lists no `calls`".into()));
        }
        let mut calls = Vec::new();
        for c in &r.calls {
            let Some(fields) = (probed.fields)(c.get_ref()) else {
                return Err((
                    c.span(),
                    format!(
                        "[completion] {} is not one of the pack's probes",
                        c.get_ref()
                    ),
                ));
            };
            for f in [&r.queue, &r.marker, &r.flags].into_iter().flatten() {
                if !fields.contains(f.get_ref()) && !probed.links.contains(f.get_ref()) {
                    return Err((
                        f.span(),
                        format!(
                            "[completion] {} has no field {:?} (its fields: {}; the pack's link keys: {})",
                            c.get_ref(),
                            f.get_ref(),
                            fields.join(", "),
                            probed.links.join(", ")
                        ),
                    ));
                }
            }
            calls.push(c.get_ref().clone());
        }
        rules.push(Rule {
            does,
            calls,
            queue: r.queue.as_ref().map(|s| s.get_ref().clone()),
            marker: r.marker.as_ref().map(|s| s.get_ref().clone()),
            scope,
            flags: r.flags.as_ref().map(|s| s.get_ref().clone()),
            nonblocking: r.nonblocking,
            null_is_per_thread: r.null_is_per_thread,
        });
    }
    if let Some(v) = raw
        .per_thread
        .iter()
        .find(|v| raw.null.iter().any(|n| n.get_ref() == v.get_ref()))
    {
        return Err((
            v.span(),
            format!(
                "[completion] queue value {} is in both `null` and `per_thread`",
                v.get_ref()
            ),
        ));
    }
    Ok(CompletionSpec {
        done: if raw.done.is_empty() {
            vec![0]
        } else {
            raw.done.clone()
        },
        not_ready: raw.not_ready.clone(),
        null: raw.null.iter().map(|v| *v.get_ref()).collect(),
        per_thread: raw.per_thread.iter().map(|v| *v.get_ref()).collect(),
        rules,
    })
}
