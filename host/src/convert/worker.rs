//! A thread of its own fed batches through a bounded channel, each handed back once done for
//! reuse: the converter's writer threads (bgwrite.rs: a file's chunks; perfetto/handoff.rs:
//! the trace files' packets). A failure stops the thread; the next hand-over, or the join,
//! says why.

use std::io;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

pub struct Worker<B, R> {
    tx: Option<SyncSender<B>>,
    /// Batches the thread is done with, back for reuse.
    spare: Receiver<B>,
    thread: Option<JoinHandle<io::Result<R>>>,
    /// What the thread is, for the errors that say it stopped.
    what: &'static str,
}

impl<B: Send + 'static, R: Send + 'static> Worker<B, R> {
    /// At most `in_flight` batches wait; `work` does each, in order, with `state`; `end`
    /// makes the result of the state once the last is done.
    pub fn start<S: Send + 'static>(
        what: &'static str,
        in_flight: usize,
        mut state: S,
        mut work: impl FnMut(&mut S, &mut B) -> io::Result<()> + Send + 'static,
        end: impl FnOnce(S) -> io::Result<R> + Send + 'static,
    ) -> Worker<B, R> {
        let (tx, rx) = sync_channel::<B>(in_flight);
        let (back, spare) = sync_channel::<B>(in_flight + 1);
        let thread = std::thread::spawn(move || -> io::Result<R> {
            for mut b in rx {
                work(&mut state, &mut b)?;
                let _ = back.try_send(b);
            }
            end(state)
        });
        Worker {
            tx: Some(tx),
            spare,
            thread: Some(thread),
            what,
        }
    }

    /// A batch the thread is done with, if one is back.
    pub fn spare(&self) -> Option<B> {
        self.spare.try_recv().ok()
    }

    /// Hands `b` over; if the thread stopped, why.
    pub fn send(&mut self, b: B) -> io::Result<()> {
        if self.tx.as_ref().is_some_and(|tx| tx.send(b).is_ok()) {
            return Ok(());
        }
        Err(match self.join() {
            Some(Err(e)) => e,
            _ => self.stopped(),
        })
    }

    /// Closes the channel and waits for the thread's result (None: already waited for).
    pub fn join(&mut self) -> Option<io::Result<R>> {
        self.tx = None;
        let t = self.thread.take()?;
        Some(t.join().unwrap_or_else(|_| {
            Err(io::Error::other(format!(
                "the {} thread panicked",
                self.what
            )))
        }))
    }

    /// The error of a thread found stopped.
    pub fn stopped(&self) -> io::Error {
        io::Error::other(format!("the {} thread stopped", self.what))
    }
}
