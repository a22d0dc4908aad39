//! The completion of the work that calls hand to a device, inferred from the host calls alone,
//! by the packs' `[completion]` rules (crate::pack::completion). On a GPU a launch, an async
//! copy or a collective only enqueues work on a queue (a stream) and returns; the work is done
//! later, and the host learns it only from a later call: a sync that returned success, a query
//! that answered it, an event recorded after the work that completed, a host callback that ran.
//!
//! The model is per process, on the log's clock: each queue keeps the time before which every
//! enqueue is proven done (`done_before`). A successful wait or query that began at `t` proves
//! the work enqueued (its call returned) before `t` done; a mark (an event) recorded at `r`
//! and proven reached proves its queue's work before `r`; a queue made to wait for a mark
//! passes the proof on when its own work behind the wait is proven. Calls are seen as they
//! finish, so every enqueue that a wait covers was seen before the wait. Nothing is guessed:
//! work with no such proof stays pending (sound: a hang is never hidden by an unrelated sync).
//!
//! Queues are named by their handle's value, with the special handles a pack declares: other
//! names of the null queue 0 (hipStreamLegacy), and the calling thread's default queue
//! (hipStreamPerThread; the null value in HIP's `_spt` calls), a queue of its own per thread,
//! [`per_thread_queue`], which synchronises with the null queue as a blocking stream does.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

use super::call::{Call, Strings, V};
use crate::pack::completion::{CompletionSpec, Does, Scope};

/// Work held per queue until proven done: past it the oldest is let go (unproven).
const MAX_ITEMS: usize = 1 << 16;
/// Waits for marks held per queue (its later work waits for another queue's mark).
const MAX_DEPS: usize = 4096;
/// Records of one mark remembered (an event is recorded again and again).
const MARK_HISTORY: usize = 4;

/// The queue that stands for thread `tid`'s default queue (hipStreamPerThread): no handle's
/// value (user-space pointers are below 2^47, and 2^63 is not a canonical address).
pub fn per_thread_queue(tid: u32) -> u64 {
    PER_THREAD | u64::from(tid)
}

/// The thread whose default queue `q` is, if it is one ([`per_thread_queue`]).
pub fn per_thread_of(q: u64) -> Option<u32> {
    (q & !u64::from(u32::MAX) == PER_THREAD).then_some(q as u32)
}

const PER_THREAD: u64 = 1 << 63;

/// One rule, with its names as ids in the current log's strings.
#[derive(Clone, Copy, Debug)]
struct Compiled {
    does: Does,
    queue: Option<u32>,
    marker: Option<u32>,
    scope: Option<Scope>,
    flags: Option<u32>,
    nonblocking: u64,
    null_is_per_thread: bool,
    /// Index into `Completion::answers`: the pack's `done` and `not_ready` values and its
    /// special queue values.
    answers: usize,
}

/// A pack's return values and special queue values.
#[derive(Clone, Debug)]
struct Answers {
    done: Vec<i64>,
    not_ready: Vec<i64>,
    null: Vec<u64>,
    per_thread: Vec<u64>,
}

/// What a call was, to the completion model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// Not a call the rules know.
    Other,
    /// It put work on `queue` (0: the null queue); `token` names that work in later [`Done`]s
    /// (0 when it was not asked to be tracked).
    Enqueued { token: u64, queue: u64 },
    /// An enqueue, record or observation that returned an error, or had not returned.
    Failed,
    /// A wait or query that proved work done (or, for a query, answered not ready).
    Observed { ready: bool },
    /// A queue created, a mark recorded, a dependency made.
    Noted,
}

/// How a piece of work's completion was learnt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Done {
    pub token: u64,
    pub pid: u32,
    /// When the host learnt it (the proving call's end); None: let go unproven (too much
    /// work held on its queue).
    pub at: Option<u64>,
    /// The proving call (its name id) and thread.
    pub by: u32,
    pub tid: u32,
}

/// A query that keeps answering not ready: the host polling work that does not complete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Poll {
    /// The query's name id, and what it asks about: a queue or a mark (its value).
    pub call: u32,
    pub object: u64,
    pub tid: u32,
    /// Not-ready answers in a row, the first one's start and the last one's end.
    pub answers: u64,
    pub since: u64,
    pub last: u64,
}

#[derive(Clone, Debug)]
struct Item {
    token: u64,
    enqueued: u64,
}

/// Work behind a wait for a mark: once this queue's work up to `at` is done, `target`'s work
/// before `before` is too.
#[derive(Clone, Debug)]
struct Dep {
    at: u64,
    target: u64,
    before: u64,
}

#[derive(Clone, Debug, Default)]
struct Queue {
    done_before: u64,
    /// Known from its creation; None: created before the log, or the null queue.
    blocking: Option<bool>,
    items: VecDeque<Item>,
    deps: VecDeque<Dep>,
    /// Some completion of its work was ever proven.
    observed: bool,
}

#[derive(Clone, Debug, Default)]
struct Proc {
    queues: FxHashMap<u64, Queue>,
    /// Each mark's latest records: (queue, the record's start).
    marks: FxHashMap<u64, VecDeque<(u64, u64)>>,
    polls: Vec<Poll>,
}

/// The completion inference over one or several logs' calls (one log at a time).
pub struct Completion {
    specs: Vec<(String, CompletionSpec)>,
    rules: FxHashMap<u32, Compiled>,
    /// Per spec.
    answers: Vec<Answers>,
    ret: u32,
    /// By (log, pid): logs read one after another may reuse pids.
    procs: FxHashMap<(u16, u32), Proc>,
    log: u16,
    next_token: u64,
    done: Vec<Done>,
    /// Work let go unproven, counted.
    pub let_go: u64,
    /// Marks recorded are work too (see [`Completion::with_marks`]).
    marks_as_work: bool,
    /// Logs whose packs enqueue work but none observes its completion (rccl recorded without
    /// hip): their enqueues are read as calls that did their work, not as pending forever.
    pub unobserved_logs: u32,
}

fn field(c: &Call, id: u32) -> Option<u64> {
    if let Some(&(_, v)) = c.links.iter().find(|l| l.0 == id) {
        return Some(v);
    }
    c.value(id).and_then(V::as_i64).map(|v| v as u64)
}

impl Completion {
    /// For the packs' `[completion]` sections, as (pack, spec).
    pub fn new(specs: Vec<(String, CompletionSpec)>) -> Completion {
        Completion {
            answers: specs
                .iter()
                .map(|(_, s)| Answers {
                    done: s.done.clone(),
                    not_ready: s.not_ready.clone(),
                    null: s.null.clone(),
                    per_thread: s.per_thread.clone(),
                })
                .collect(),
            specs,
            rules: FxHashMap::default(),
            ret: 0,
            procs: FxHashMap::default(),
            log: 0,
            next_token: 1,
            done: Vec::new(),
            let_go: 0,
            marks_as_work: false,
            unobserved_logs: 0,
        }
    }

    /// The same, and the marks that calls record on a queue (an event record, a host
    /// callback) are work on it too: [`Completion::see`] answers [`Seen::Enqueued`] for them
    /// and says when they are reached, as for an enqueue (crate::convert draws them on the
    /// device tracks). A mark counts as placed when its record began, as the proofs through
    /// it take it; so a wait or query that proves the mark proves its record too. Off in
    /// [`Completion::new`]: the report follows enqueued operations only.
    pub fn with_marks(mut self) -> Completion {
        self.marks_as_work = true;
        self
    }

    /// The queue that `c` puts work on, if its rule is an enqueue (or, with marks as work, a
    /// record), whether or not it succeeded: what [`Completion::see`] would answer
    /// [`Seen::Enqueued`] with.
    pub fn enqueue_queue(&self, c: &Call) -> Option<u64> {
        let rule = self.rules.get(&c.name)?;
        match rule.does {
            Does::Enqueue => {}
            Does::Record if self.marks_as_work => {}
            _ => return None,
        }
        Some(self.queue_of(*rule, c))
    }

    /// The queue a call of `rule` names: its queue field's value (0, the null queue, when it
    /// has none), the special handles read as the pack declares them.
    fn queue_of(&self, rule: Compiled, c: &Call) -> u64 {
        let v = rule.queue.and_then(|f| field(c, f)).unwrap_or(0);
        let a = &self.answers[rule.answers];
        if a.per_thread.contains(&v) || (v == 0 && rule.null_is_per_thread) {
            per_thread_queue(c.tid)
        } else if a.null.contains(&v) {
            0
        } else {
            v
        }
    }

    /// Whether any pack declares completion rules.
    pub fn is_empty(&self) -> bool {
        self.specs.iter().all(|(_, s)| s.rules.is_empty())
    }

    /// The calls that follow are of log `log`, written with `packs` (None: unknown, every
    /// spec applies), their names in `strings`.
    pub fn start_log(&mut self, log: u16, strings: &mut Strings, packs: Option<&[String]>) {
        self.log = log;
        self.ret = strings.id("ret");
        self.rules.clear();
        for (i, (pack, spec)) in self.specs.iter().enumerate() {
            if matches!(packs, Some(p) if !p.contains(pack)) {
                continue;
            }
            for r in &spec.rules {
                let compiled = Compiled {
                    does: r.does,
                    queue: r.queue.as_deref().map(|f| strings.id(f)),
                    marker: r.marker.as_deref().map(|f| strings.id(f)),
                    scope: r.scope,
                    flags: r.flags.as_deref().map(|f| strings.id(f)),
                    nonblocking: r.nonblocking,
                    null_is_per_thread: r.null_is_per_thread,
                    answers: i,
                };
                for call in &r.calls {
                    self.rules.insert(strings.id(call), compiled);
                }
            }
        }
        // Nothing can prove work done without a wait or a query (the GPU runtime's pack):
        // then an enqueue is no more than a call that returned.
        let observes = self
            .rules
            .values()
            .any(|r| matches!(r.does, Does::Wait | Does::Query | Does::Ran));
        if !observes {
            let before = self.rules.len();
            self.rules.retain(|_, r| r.does != Does::Enqueue);
            if self.rules.len() < before {
                self.unobserved_logs += 1;
            }
        }
    }

    /// Completions proven by the calls seen since the last take.
    pub fn take_done(&mut self) -> std::vec::Drain<'_, Done> {
        self.done.drain(..)
    }

    /// The queries of process `pid` of the current log answering not ready, in a row.
    pub fn polls(&self, pid: u32) -> &[Poll] {
        self.procs
            .get(&(self.log, pid))
            .map_or(&[], |p| p.polls.as_slice())
    }

    /// Whether any completion of work on `queue` of `pid` (current log) was ever proven.
    pub fn observed(&self, pid: u32, queue: u64) -> bool {
        self.procs
            .get(&(self.log, pid))
            .and_then(|p| p.queues.get(&queue))
            .is_some_and(|q| q.observed)
    }

    /// One call, as it finished (or, with no end, as it was when its log ended). `track`: give
    /// the work it enqueues a token and say when it is done.
    pub fn see(&mut self, c: &Call, track: bool) -> Seen {
        let Some(&rule) = self.rules.get(&c.name) else {
            return Seen::Other;
        };
        let Answers {
            done: done_values,
            not_ready,
            ..
        } = &self.answers[rule.answers];
        // A return value is a number (a code address or a bool says nothing of success).
        let ret = c
            .results
            .iter()
            .find(|r| r.0 == self.ret)
            .map(|r| r.1)
            .filter(|v| !matches!(v, V::Code(_) | V::Bool(_)))
            .and_then(V::as_i64);
        let (Some(end), Some(start)) = (c.end, c.start.or(c.end)) else {
            return Seen::Failed;
        };
        // A call without a return value (void) did what it says.
        let ok = ret.is_none_or(|r| done_values.contains(&r));
        let is_not_ready = ret.is_some_and(|r| not_ready.contains(&r));
        let q = self.queue_of(rule, c);
        match rule.does {
            Does::Create => {
                if !ok {
                    return Seen::Failed;
                }
                let blocking = rule
                    .flags
                    .and_then(|f| field(c, f))
                    .is_none_or(|fl| fl & rule.nonblocking == 0);
                let p = self.procs.entry((self.log, c.pid)).or_default();
                // A handle reused after a destroy is a new queue.
                p.queues.insert(
                    q,
                    Queue {
                        blocking: Some(blocking),
                        ..Queue::default()
                    },
                );
                Seen::Noted
            }
            Does::Enqueue => {
                if !ok {
                    return Seen::Failed;
                }
                let token = if track {
                    let t = self.next_token;
                    self.next_token += 1;
                    t
                } else {
                    0
                };
                if token != 0 {
                    self.hold(c, q, token, end);
                }
                Seen::Enqueued { token, queue: q }
            }
            Does::Record => {
                if !ok {
                    return Seen::Failed;
                }
                let Some(m) = rule.marker.and_then(|f| field(c, f)) else {
                    return Seen::Failed;
                };
                let p = self.procs.entry((self.log, c.pid)).or_default();
                queue(p, q);
                let h = p.marks.entry(m).or_default();
                h.push_back((q, start));
                if h.len() > MARK_HISTORY {
                    h.pop_front();
                }
                if self.marks_as_work {
                    let token = if track {
                        let t = self.next_token;
                        self.next_token += 1;
                        self.hold(c, q, t, start);
                        t
                    } else {
                        0
                    };
                    return Seen::Enqueued { token, queue: q };
                }
                Seen::Noted
            }
            Does::Depend => {
                if !ok {
                    return Seen::Failed;
                }
                let Some(m) = rule.marker.and_then(|f| field(c, f)) else {
                    return Seen::Failed;
                };
                let p = self.procs.entry((self.log, c.pid)).or_default();
                let Some((target, before)) = mark_before(p, m, start) else {
                    // A mark never recorded (in the log) is complete: nothing to wait for.
                    return Seen::Noted;
                };
                let queue = queue(p, q);
                queue.deps.push_back(Dep {
                    at: end,
                    target,
                    before,
                });
                if queue.deps.len() > MAX_DEPS {
                    queue.deps.pop_front();
                }
                Seen::Noted
            }
            Does::Wait | Does::Query | Does::Ran => {
                let object = rule
                    .marker
                    .and_then(|f| field(c, f))
                    .map(|m| (true, m))
                    .or_else(|| {
                        (rule.queue.is_some() || rule.null_is_per_thread).then_some((false, q))
                    });
                if rule.does == Does::Query && is_not_ready {
                    let p = self.procs.entry((self.log, c.pid)).or_default();
                    let obj = object.map_or(u64::MAX, |o| o.1);
                    match p
                        .polls
                        .iter_mut()
                        .find(|x| x.call == c.name && x.object == obj && x.tid == c.tid)
                    {
                        Some(x) => {
                            x.answers += 1;
                            x.last = end;
                        }
                        None => p.polls.push(Poll {
                            call: c.name,
                            object: obj,
                            tid: c.tid,
                            answers: 1,
                            since: start,
                            last: end,
                        }),
                    }
                    return Seen::Observed { ready: false };
                }
                if !ok {
                    return Seen::Failed;
                }
                let proof = (end, c.name, c.tid);
                let p = self.procs.entry((self.log, c.pid)).or_default();
                let obj = object.map_or(u64::MAX, |o| o.1);
                // A "done" answers every thread's question about it.
                p.polls.retain(|x| !(x.call == c.name && x.object == obj));
                let mut targets: Vec<(u64, u64)> = Vec::new();
                match object {
                    Some((true, m)) => {
                        if let Some(t) = mark_before(p, m, start) {
                            targets.push(t);
                        }
                    }
                    Some((false, q)) if q != 0 => targets.push((q, start)),
                    // The null queue, or a scope: every queue it synchronises with.
                    other => {
                        let scope = if other.is_some() {
                            Scope::Blocking
                        } else {
                            rule.scope.unwrap_or(Scope::All)
                        };
                        p.queues.entry(0).or_default();
                        for (&q, queue) in &p.queues {
                            let covered = match scope {
                                Scope::All => true,
                                Scope::Blocking => q == 0 || queue.blocking == Some(true),
                            };
                            if covered {
                                targets.push((q, start));
                            }
                        }
                    }
                }
                for (q, before) in targets {
                    advance(p, c.pid, q, before, proof, &mut self.done);
                }
                Seen::Observed { ready: true }
            }
        }
    }
}

impl Completion {
    /// Holds work `token` of call `c`, enqueued on `q` at `enqueued`, until proven done.
    fn hold(&mut self, c: &Call, q: u64, token: u64, enqueued: u64) {
        let p = self.procs.entry((self.log, c.pid)).or_default();
        let queue = queue(p, q);
        // Kept in order of their enqueue (threads' calls can finish out of order).
        let at = queue.items.partition_point(|i| i.enqueued <= enqueued);
        queue.items.insert(at, Item { token, enqueued });
        if queue.items.len() > MAX_ITEMS {
            let old = queue.items.pop_front().expect("over the limit");
            self.let_go += 1;
            self.done.push(Done {
                token: old.token,
                pid: c.pid,
                at: None,
                by: c.name,
                tid: c.tid,
            });
        }
    }
}

impl Completion {
    /// What the work still pending waits behind, on the device: for each pending tracked piece
    /// of work, the pending work it cannot start before, as (waiting token, awaited token).
    /// A queue runs in order, so work waits for the pending work before it on its queue; and
    /// work behind a wait for a mark waits for the pending work before that mark on the mark's
    /// queue. (Two collectives that each wait behind the other, through their streams on two
    /// ranks, are a deadlock on the device that no host call shows.)
    pub fn waits(&self) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        for p in self.procs.values() {
            for queue in p.queues.values() {
                for (a, b) in queue.items.iter().zip(queue.items.iter().skip(1)) {
                    out.push((b.token, a.token));
                }
                for d in &queue.deps {
                    let Some(first_after) = queue.items.iter().find(|i| i.enqueued > d.at) else {
                        continue;
                    };
                    let Some(target) = p.queues.get(&d.target) else {
                        continue;
                    };
                    if let Some(last_before) =
                        target.items.iter().rev().find(|i| i.enqueued <= d.before)
                    {
                        out.push((first_after.token, last_before.token));
                    }
                }
            }
        }
        out
    }
}

/// Queue `q` of process `p`, made when first named: a thread's default queue synchronises
/// with the null queue (it is blocking); any other queue not seen created may not.
fn queue(p: &mut Proc, q: u64) -> &mut Queue {
    p.queues.entry(q).or_insert_with(|| Queue {
        blocking: per_thread_of(q).map(|_| true),
        ..Queue::default()
    })
}

/// The queue and time of mark `m`'s latest record begun before `t`.
fn mark_before(p: &Proc, m: u64, t: u64) -> Option<(u64, u64)> {
    p.marks.get(&m)?.iter().rev().find(|r| r.1 <= t).copied()
}

/// Queue `q`'s work enqueued before `before` is proven done (by `proof`: end, call, thread),
/// and with it the work its waits for marks were behind.
fn advance(
    p: &mut Proc,
    pid: u32,
    q: u64,
    before: u64,
    proof: (u64, u32, u32),
    out: &mut Vec<Done>,
) {
    // Most queues hold nothing to prove (only tracked work and waits for marks are held):
    // no work list for them.
    {
        let queue = queue(p, q);
        queue.observed = true;
        if queue.items.is_empty() && queue.deps.is_empty() {
            queue.done_before = queue.done_before.max(before);
            return;
        }
    }
    let mut work = vec![(q, before)];
    while let Some((q, before)) = work.pop() {
        let queue = queue(p, q);
        queue.observed = true;
        if before <= queue.done_before {
            continue;
        }
        queue.done_before = before;
        while queue.items.front().is_some_and(|i| i.enqueued <= before) {
            let i = queue.items.pop_front().expect("front");
            out.push(Done {
                token: i.token,
                pid,
                at: Some(proof.0),
                by: proof.1,
                tid: proof.2,
            });
        }
        while queue.deps.front().is_some_and(|d| d.at <= before) {
            let d = queue.deps.pop_front().expect("front");
            work.push((d.target, d.before));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::completion::Rule;

    fn rule(does: Does, calls: &[&str], queue: Option<&str>, marker: Option<&str>) -> Rule {
        Rule::new(does, calls, queue, marker)
    }

    /// The hip pack's rules, in short.
    fn hip() -> (Completion, Strings) {
        let mut rules = vec![
            rule(
                Does::Enqueue,
                &["launch", "allreduce"],
                Some("stream"),
                None,
            ),
            rule(Does::Record, &["record"], Some("stream"), Some("event")),
            rule(Does::Depend, &["waitevent"], Some("stream"), Some("event")),
            rule(Does::Wait, &["ssync"], Some("stream"), None),
            rule(Does::Wait, &["esync"], None, Some("event")),
            rule(Does::Query, &["equery"], None, Some("event")),
            rule(Does::Query, &["squery"], Some("stream"), None),
            rule(Does::Wait, &["memcpy"], None, None),
            rule(Does::Wait, &["devsync"], None, None),
            rule(Does::Create, &["create"], Some("stream"), None),
            // The `_spt` forms: the null value is the calling thread's default stream.
            rule(Does::Enqueue, &["launch_spt"], Some("stream"), None),
            rule(Does::Wait, &["ssync_spt"], Some("stream"), None),
            rule(Does::Wait, &["memcpy_spt"], None, None),
        ];
        rules[7].scope = Some(Scope::Blocking);
        rules[8].scope = Some(Scope::All);
        rules[9].flags = Some("flags".into());
        rules[9].nonblocking = 1;
        for r in &mut rules[10..] {
            r.null_is_per_thread = true;
        }
        let spec = CompletionSpec {
            done: vec![0],
            not_ready: vec![600],
            null: vec![1],       // hipStreamLegacy
            per_thread: vec![2], // hipStreamPerThread
            rules,
        };
        let mut c = Completion::new(vec![("hip".into(), spec)]);
        let mut s = Strings::default();
        c.start_log(0, &mut s, None);
        (c, s)
    }

    struct Log {
        c: Completion,
        s: Strings,
        t: u64,
    }

    impl Log {
        fn new() -> Log {
            let (c, s) = hip();
            Log { c, s, t: 0 }
        }

        /// A call on thread `tid` lasting 10 ns from now, with `fields` and `ret`.
        fn call(&mut self, tid: u32, name: &str, fields: &[(&str, u64)], ret: i64) -> Seen {
            self.t += 100;
            let call = Call {
                start: Some(self.t),
                end: Some(self.t + 10),
                pid: 1,
                tid,
                name: self.s.id(name),
                args: fields
                    .iter()
                    .map(|(n, v)| (self.s.id(n), V::Hex(*v)))
                    .collect(),
                results: vec![(self.s.id("ret"), V::Int(ret))],
                ..Call::default()
            };
            self.c.see(&call, true)
        }

        fn token(&mut self, name: &str, stream: u64) -> u64 {
            self.token_on(1, name, stream)
        }

        /// Work enqueued by thread `tid`: its token.
        fn token_on(&mut self, tid: u32, name: &str, stream: u64) -> u64 {
            match self.call(tid, name, &[("stream", stream)], 0) {
                Seen::Enqueued { token, .. } => token,
                other => panic!("{other:?}"),
            }
        }

        fn sorted_done(&mut self) -> Vec<u64> {
            let mut d = self.done();
            d.sort_unstable();
            d
        }

        fn done(&mut self) -> Vec<u64> {
            self.c.take_done().map(|d| d.token).collect()
        }
    }

    #[test]
    fn a_stream_sync_proves_what_was_enqueued_before_it() {
        let mut l = Log::new();
        let a = l.token("launch", 7);
        let b = l.token("allreduce", 7);
        let other = l.token("launch", 8);
        assert!(l.done().is_empty(), "nothing is done at the enqueue");
        l.call(1, "ssync", &[("stream", 7)], 0);
        assert_eq!(l.done(), vec![a, b]);
        let later = l.token("launch", 7);
        l.call(1, "ssync", &[("stream", 7)], 999); // an error proves nothing
        assert!(l.done().is_empty());
        l.call(1, "devsync", &[], 0);
        let mut d = l.done();
        d.sort_unstable();
        assert_eq!(d, vec![other, later]);
    }

    #[test]
    fn an_event_proves_its_stream_up_to_its_record_and_passes_through_waits() {
        let mut l = Log::new();
        let coll = l.token("allreduce", 7);
        l.call(1, "record", &[("event", 0xe), ("stream", 7)], 0);
        let after = l.token("launch", 7);
        // Stream 9 waits for the event; a copy on 9 behind it completes.
        l.call(1, "waitevent", &[("stream", 9), ("event", 0xe)], 0);
        let copy = l.token("launch", 9);
        assert_eq!(
            l.call(2, "equery", &[("event", 0xe)], 600),
            Seen::Observed { ready: false }
        );
        assert!(l.done().is_empty());
        l.call(1, "ssync", &[("stream", 9)], 0);
        assert_eq!(l.done(), vec![copy, coll], "through the wait for the event");
        l.call(2, "equery", &[("event", 0xe)], 0);
        assert!(
            l.done().is_empty(),
            "the event's record came before `after`"
        );
        let _ = after;
    }

    #[test]
    fn polls_count_not_ready_answers_until_one_says_done() {
        let mut l = Log::new();
        let coll = l.token("allreduce", 7);
        l.call(1, "record", &[("event", 0xe), ("stream", 7)], 0);
        for _ in 0..5 {
            l.call(2, "equery", &[("event", 0xe)], 600);
        }
        let p = l.c.polls(1).to_vec();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].answers, 5);
        assert_eq!(l.s.get(p[0].call), "equery");
        l.call(2, "equery", &[("event", 0xe)], 0);
        assert!(l.c.polls(1).is_empty());
        assert_eq!(l.done(), vec![coll]);
    }

    #[test]
    fn a_synchronous_copy_does_not_prove_a_non_blocking_stream() {
        let mut l = Log::new();
        l.call(1, "create", &[("stream", 5), ("flags", 1)], 0);
        l.call(1, "create", &[("stream", 6), ("flags", 0)], 0);
        let nb = l.token("allreduce", 5);
        let blocking = l.token("launch", 6);
        let null = l.token("launch", 0);
        let unknown = l.token("launch", 4); // created before the log
        l.call(1, "memcpy", &[], 0);
        let mut d = l.done();
        d.sort_unstable();
        assert_eq!(d, vec![blocking, null]);
        l.call(1, "ssync", &[("stream", 0)], 0);
        assert!(
            l.done().is_empty(),
            "stream 0 is the null stream: the same scope"
        );
        l.call(1, "devsync", &[], 0);
        let mut d = l.done();
        d.sort_unstable();
        assert_eq!(d, vec![nb, unknown]);
    }

    #[test]
    fn a_wait_covers_only_what_returned_before_it_began() {
        let mut l = Log::new();
        // Thread 2's launch ends after thread 1's sync began: not covered.
        let call = |l: &mut Log, tid, name: &str, s, e, f: &[(&str, u64)]| {
            let c = Call {
                start: Some(s),
                end: Some(e),
                pid: 1,
                tid,
                name: l.s.id(name),
                args: f.iter().map(|(n, v)| (l.s.id(n), V::Hex(*v))).collect(),
                results: vec![(l.s.id("ret"), V::Int(0))],
                ..Call::default()
            };
            l.c.see(&c, true)
        };
        let Seen::Enqueued { token: early, .. } =
            call(&mut l, 2, "launch", 10, 20, &[("stream", 7)])
        else {
            panic!()
        };
        let Seen::Enqueued { token: late, .. } =
            call(&mut l, 2, "launch", 40, 60, &[("stream", 7)])
        else {
            panic!()
        };
        call(&mut l, 1, "ssync", 50, 90, &[("stream", 7)]);
        assert_eq!(l.done(), vec![early]);
        let _ = late;
    }

    #[test]
    fn pending_work_waits_behind_its_queue_and_the_marks_it_waits_for() {
        let mut l = Log::new();
        let a1 = l.token("allreduce", 7);
        l.call(1, "record", &[("event", 0xe), ("stream", 7)], 0);
        l.call(1, "waitevent", &[("stream", 9), ("event", 0xe)], 0);
        let b1 = l.token("allreduce", 9);
        let b2 = l.token("allreduce", 9);
        let mut w = l.c.waits();
        w.sort_unstable();
        assert_eq!(w, vec![(b1, a1), (b2, b1)]);
    }

    #[test]
    fn without_a_wait_or_query_an_enqueue_is_a_call_that_returned() {
        let spec = CompletionSpec {
            done: vec![0],
            rules: vec![rule(Does::Enqueue, &["allreduce"], Some("stream"), None)],
            ..CompletionSpec::default()
        };
        let mut c = Completion::new(vec![("rccl".into(), spec)]);
        let mut s = Strings::default();
        c.start_log(0, &mut s, None);
        assert_eq!(c.unobserved_logs, 1);
        let call = Call {
            start: Some(1),
            end: Some(2),
            name: s.id("allreduce"),
            ..Call::default()
        };
        assert_eq!(c.see(&call, true), Seen::Other);
    }

    #[test]
    fn calls_in_flight_and_failed_enqueues_prove_nothing() {
        let mut l = Log::new();
        let t = l.token("launch", 7);
        assert_eq!(l.call(1, "launch", &[("stream", 7)], 1), Seen::Failed);
        let open = Call {
            start: Some(5_000),
            end: None,
            pid: 1,
            tid: 1,
            name: l.s.id("ssync"),
            args: vec![(l.s.id("stream"), V::Hex(7))],
            ..Call::default()
        };
        assert_eq!(l.c.see(&open, true), Seen::Failed);
        assert!(l.done().is_empty());
        assert!(!l.c.observed(1, 7));
        l.call(1, "squery", &[("stream", 7)], 0);
        assert_eq!(l.done(), vec![t]);
        assert!(l.c.observed(1, 7));
    }

    #[test]
    fn with_marks_a_record_is_work_proven_with_its_mark() {
        let mut l = Log::new();
        l.c = std::mem::replace(&mut l.c, Completion::new(Vec::new())).with_marks();
        let copy = l.token("launch", 7);
        let Seen::Enqueued {
            token: mark,
            queue: 7,
        } = l.call(1, "record", &[("event", 0xe), ("stream", 7)], 0)
        else {
            panic!("a record is work on its queue")
        };
        let probe = |c: &Completion, s: &mut Strings, name: &str| {
            c.enqueue_queue(&Call {
                name: s.id(name),
                args: vec![(s.id("stream"), V::Hex(9))],
                ..Call::default()
            })
        };
        assert_eq!(probe(&l.c, &mut l.s, "record"), Some(9));
        assert_eq!(probe(&l.c, &mut l.s, "launch"), Some(9));
        assert_eq!(probe(&l.c, &mut l.s, "ssync"), None);
        let later = l.token("launch", 7);
        l.call(2, "equery", &[("event", 0xe)], 600);
        assert!(l.done().is_empty());
        l.call(2, "equery", &[("event", 0xe)], 0);
        assert_eq!(
            l.done(),
            vec![copy, mark],
            "the event's query proves its record"
        );
        l.call(1, "ssync", &[("stream", 7)], 0);
        assert_eq!(l.done(), vec![later]);
        // Without marks as work a record is only noted, as before.
        let mut plain = Log::new();
        assert_eq!(
            plain.call(1, "record", &[("event", 0xe), ("stream", 7)], 0),
            Seen::Noted
        );
        assert_eq!(probe(&plain.c, &mut plain.s, "record"), None);
    }

    #[test]
    fn the_legacy_stream_is_the_null_stream() {
        let mut l = Log::new();
        let legacy = l.token("launch", 1);
        let null = l.token("launch", 0);
        l.call(1, "create", &[("stream", 5), ("flags", 1)], 0);
        let nb = l.token("launch", 5);
        l.call(1, "ssync", &[("stream", 1)], 0);
        assert_eq!(
            l.sorted_done(),
            vec![legacy, null],
            "a sync of hipStreamLegacy is one of the null stream: not of a non-blocking one"
        );
        let again = l.token("launch", 1);
        l.call(1, "memcpy", &[], 0);
        assert_eq!(l.done(), vec![again]);
        let _ = nb;
    }

    #[test]
    fn each_thread_has_its_own_default_stream() {
        let mut l = Log::new();
        // Thread 1 enqueues on its default stream both ways: hipStreamPerThread (2), and the
        // null value in an `_spt` call; thread 2 on its own.
        let a1 = l.token_on(1, "launch", 2);
        let a2 = l.token_on(1, "launch_spt", 0);
        let b1 = l.token_on(2, "launch_spt", 0);
        let b2 = l.token_on(2, "launch_spt", 2);
        let null = l.token_on(2, "launch", 0);
        assert_eq!(
            l.c.enqueue_queue(&Call {
                name: l.s.id("launch_spt"),
                tid: 7,
                args: vec![(l.s.id("stream"), V::Hex(0))],
                ..Call::default()
            }),
            Some(per_thread_queue(7))
        );
        assert_eq!(per_thread_of(per_thread_queue(7)), Some(7));
        assert_eq!(per_thread_of(0x7f00_1234_5000), None);
        // A third thread's syncs of "its" default stream prove nothing of theirs.
        l.call(3, "ssync_spt", &[("stream", 0)], 0);
        l.call(3, "memcpy_spt", &[], 0);
        l.call(3, "ssync", &[("stream", 2)], 0);
        assert!(l.done().is_empty());
        // Thread 1's sync of hipStreamPerThread: its own stream only.
        l.call(1, "ssync", &[("stream", 2)], 0);
        assert_eq!(l.sorted_done(), vec![a1, a2]);
        // Thread 2's synchronous copy on its default stream: that stream, not the null one.
        l.call(2, "memcpy_spt", &[], 0);
        assert_eq!(l.sorted_done(), vec![b1, b2]);
        // A legacy synchronous copy waits for the per-thread streams too (they are blocking).
        let a3 = l.token_on(1, "launch_spt", 0);
        l.call(3, "memcpy", &[], 0);
        assert_eq!(l.sorted_done(), vec![null, a3]);
    }
}
