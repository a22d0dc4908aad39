//! A file written by a thread of its own: the converter fills 1 MiB buffers and hands them
//! over, so the kernel's copying of gigabytes into the page cache (a third of a conversion's
//! time) runs beside the encoding instead of after it. At most a few buffers are in flight.
//! The outputs are written with direct I/O where the file system takes it (direct.rs): no
//! copy into the page cache at all. Each buffer's bytes start at a block-aligned address and
//! each buffer handed over holds exactly one chunk (whole blocks), so that a direct write
//! goes from the buffer itself, with no copy into aligned staging.

use std::fs::File;
use std::io::{self, Write};

use super::direct::{DirectFile, BLOCK};
use super::worker::Worker;

const CHUNK: usize = 1 << 20;
const IN_FLIGHT: usize = 2;
/// Room beyond a chunk: the alignment's padding, and the packet that crosses the chunk's end
/// (a larger one reallocates, and that buffer's chunk goes out through the staging copy).
const CAPACITY: usize = CHUNK + BLOCK + (64 << 10);

/// A buffer, and where its bytes start (the padding before is not written).
type Chunk = (Vec<u8>, usize);

pub struct BgWriter {
    /// Its bytes from `pad` on.
    buf: Vec<u8>,
    pad: usize,
    /// Writes the chunks handed over, and hands their buffers back.
    thread: Worker<Chunk, ()>,
}

impl BgWriter {
    /// Through the page cache: for files read back soon (the sorter's spills).
    pub fn new(file: File) -> BgWriter {
        Self::start(file, false)
    }

    /// An output: with direct I/O where the file system takes it, if `direct`.
    pub fn output(file: File, direct: bool) -> BgWriter {
        Self::start(file, direct)
    }

    fn start(file: File, direct: bool) -> BgWriter {
        let thread = Worker::start(
            "writer",
            IN_FLIGHT,
            DirectFile::new(file, CHUNK, direct),
            |file, (b, pad): &mut Chunk| file.write_all(&b[*pad..]),
            DirectFile::finish,
        );
        let (buf, pad) = aligned(Vec::with_capacity(CAPACITY));
        BgWriter { buf, pad, thread }
    }

    /// Hands over one chunk (or, at the end, what there is); the bytes past it start the next
    /// buffer.
    fn send(&mut self) -> io::Result<()> {
        let spare = self
            .thread
            .spare()
            .map_or_else(|| Vec::with_capacity(CAPACITY), |(b, _)| b);
        let (mut next, pad) = aligned(spare);
        let end = (self.pad + CHUNK).min(self.buf.len());
        next.extend_from_slice(&self.buf[end..]);
        self.buf.truncate(end);
        let full = (std::mem::replace(&mut self.buf, next), self.pad);
        self.pad = pad;
        self.thread.send(full)
    }

    /// Waits for the thread (at once, if it has been waited for).
    fn join(&mut self) -> io::Result<()> {
        self.thread.join().unwrap_or(Ok(()))
    }

    /// Lets `fill` append straight to the buffer being filled (no copy through a caller's
    /// buffer: a trace packet is assembled in place, once per file). For small pieces: what
    /// passes a chunk's end is copied into the next buffer.
    pub fn append(&mut self, fill: impl FnOnce(&mut Vec<u8>)) -> io::Result<()> {
        fill(&mut self.buf);
        self.send_full()
    }

    /// Writes what is left and waits for the thread: the file is complete when this returns.
    pub fn finish(mut self) -> io::Result<()> {
        self.flush()?;
        self.join()
    }

    /// Sends the chunks the buffer has filled.
    fn send_full(&mut self) -> io::Result<()> {
        while self.buf.len() - self.pad >= CHUNK {
            self.send()?;
        }
        Ok(())
    }
}

impl Write for BgWriter {
    /// Filled up to each chunk's end, then sent: a large piece is not copied again from
    /// buffer to buffer, as the excess past a chunk is.
    fn write(&mut self, mut b: &[u8]) -> io::Result<usize> {
        let n = b.len();
        loop {
            let room = (self.pad + CHUNK).saturating_sub(self.buf.len());
            let (now, rest) = b.split_at(room.min(b.len()));
            self.buf.extend_from_slice(now);
            b = rest;
            self.send_full()?;
            if b.is_empty() {
                return Ok(n);
            }
        }
    }

    fn write_all(&mut self, b: &[u8]) -> io::Result<()> {
        self.write(b).map(|_| ())
    }

    /// Hands the buffer over (it does not wait for the disk; [`BgWriter::finish`] does).
    fn flush(&mut self) -> io::Result<()> {
        while self.buf.len() > self.pad {
            self.send()?;
        }
        Ok(())
    }
}

/// `buf` emptied, and padded so that what is appended next starts at a block boundary.
fn aligned(mut buf: Vec<u8>) -> Chunk {
    buf.clear();
    let pad = (buf.as_ptr() as usize).wrapping_neg() % BLOCK;
    buf.resize(pad, 0);
    (buf, pad)
}

impl Drop for BgWriter {
    fn drop(&mut self) {
        let _ = self.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Numbered lines (several chunks of them) written through a writer, read back whole.
    fn writes_in_order(direct: bool) {
        // The build folder: on a disk file system (direct I/O is taken there; /tmp may be
        // tmpfs).
        let exe = std::env::current_exe().unwrap();
        let path = exe
            .parent()
            .unwrap()
            .join(format!("bthost-bgwrite-{direct}-{}", std::process::id()));
        let mut w = BgWriter::output(File::create(&path).unwrap(), direct);
        let mut want = Vec::new();
        for i in 0..400_000u32 {
            let line = format!("{i}\n");
            w.write_all(line.as_bytes()).unwrap();
            want.extend_from_slice(line.as_bytes());
            // Now and then a piece larger than a buffer (it reallocates: that chunk is no
            // longer aligned).
            if i % 150_000 == 0 {
                let big: Vec<u8> = (0..CAPACITY + 12_345).map(|j| (j % 241) as u8).collect();
                w.write_all(&big).unwrap();
                want.extend_from_slice(&big);
            }
        }
        w.finish().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), want);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn writes_everything_in_order() {
        writes_in_order(false);
    }

    #[test]
    fn a_direct_writer_writes_everything_in_order() {
        writes_in_order(true);
    }

    #[test]
    fn a_write_error_is_reported() {
        for direct in [false, true] {
            // /dev/full fails every write with ENOSPC.
            let Ok(f) = File::options().write(true).open("/dev/full") else {
                return;
            };
            let mut w = BgWriter::output(f, direct);
            let big = vec![0u8; 3 * CHUNK];
            let r = w.write_all(&big).and_then(|()| w.finish());
            let e = r.expect_err("a full device");
            assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "direct {direct}: {e}");
        }
    }
}
