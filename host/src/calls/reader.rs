//! Lines of a log, read in large blocks and split with memchr, without a copy or an
//! allocation per line (the converter's floor is how fast this goes).

use std::io::{self, Read};

/// Lines longer than this are not records: they are reported and skipped.
pub const MAX_LINE: usize = 1 << 20;

const BLOCK: usize = 4 << 20;

/// One line, without its newline.
pub enum Line<'a> {
    /// A whole line.
    Full(&'a [u8]),
    /// The last line of the input, with no newline (bpftrace stopped mid-write).
    Unterminated(&'a [u8]),
    /// A line longer than [`MAX_LINE`]; its bytes are skipped.
    Overlong,
}

pub struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    /// The unread bytes are `buf[pos..end]`.
    pos: usize,
    end: usize,
    eof: bool,
    /// Skipping the rest of an overlong line.
    skipping: bool,
    /// Bytes handed out so far (for progress).
    pub consumed: u64,
}

impl<R: Read> LineReader<R> {
    pub fn new(inner: R) -> Self {
        LineReader {
            inner,
            buf: vec![0; BLOCK + MAX_LINE],
            pos: 0,
            end: 0,
            eof: false,
            skipping: false,
            consumed: 0,
        }
    }

    /// The next line, or `None` at the end of the input.
    pub fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        loop {
            if let Some(i) = memchr::memchr(b'\n', &self.buf[self.pos..self.end]) {
                let start = self.pos;
                self.pos += i + 1;
                self.consumed += i as u64 + 1;
                if self.skipping {
                    self.skipping = false;
                    continue;
                }
                if i >= MAX_LINE {
                    return Ok(Some(Line::Overlong));
                }
                return Ok(Some(Line::Full(&self.buf[start..start + i])));
            }
            // No newline in what is buffered.
            if self.end - self.pos >= MAX_LINE {
                self.consumed += (self.end - self.pos) as u64;
                self.pos = self.end;
                if !self.skipping {
                    self.skipping = true;
                    return Ok(Some(Line::Overlong));
                }
            }
            if self.eof {
                if self.pos == self.end || self.skipping {
                    return Ok(None);
                }
                let start = self.pos;
                self.consumed += (self.end - start) as u64;
                self.pos = self.end;
                return Ok(Some(Line::Unterminated(&self.buf[start..self.end])));
            }
            self.fill()?;
        }
    }

    /// Moves the partial line to the front and reads another block after it.
    fn fill(&mut self) -> io::Result<()> {
        self.buf.copy_within(self.pos..self.end, 0);
        self.end -= self.pos;
        self.pos = 0;
        while self.end < self.buf.len() {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => {
                    self.end += n;
                    if self.end >= BLOCK {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8]) -> Vec<String> {
        let mut r = LineReader::new(input);
        let mut out = Vec::new();
        // Long lines shortened, so that a failure prints something readable.
        let short = |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(40)]).into_owned();
        while let Some(l) = r.next_line().unwrap() {
            out.push(match l {
                Line::Full(b) => format!("F:{}", short(b)),
                Line::Unterminated(b) => format!("U:{}", short(b)),
                Line::Overlong => "O".into(),
            });
        }
        assert_eq!(r.consumed, input.len() as u64);
        out
    }

    #[test]
    fn splits_lines_and_keeps_a_cut_last_line() {
        assert_eq!(lines(b"a\nbb\n\nc"), ["F:a", "F:bb", "F:", "U:c"]);
        assert_eq!(lines(b"a\n"), ["F:a"]);
        assert!(lines(b"").is_empty());
    }

    #[test]
    fn skips_an_overlong_line_and_goes_on() {
        let mut input = vec![b'x'; MAX_LINE + 10];
        input.extend_from_slice(b"\nok\n");
        assert_eq!(lines(&input), ["O", "F:ok"]);
        let mut input = b"first\n".to_vec();
        input.extend(std::iter::repeat_n(b'y', 3 * MAX_LINE));
        assert_eq!(lines(&input), ["F:first", "O"]);
    }

    #[test]
    fn lines_across_blocks_are_whole() {
        let line = b"0123456789abcdef0123456789\n";
        let input: Vec<u8> = line
            .iter()
            .copied()
            .cycle()
            .take(line.len() * 400_000)
            .collect();
        let got = lines(&input);
        assert_eq!(got.len(), 400_000);
        assert!(got.iter().all(|l| l == "F:0123456789abcdef0123456789"));
    }
}
