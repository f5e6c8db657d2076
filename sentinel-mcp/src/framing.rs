//! Newline-delimited framing with a hard line-length limit.
//!
//! A line longer than the limit is never buffered whole: the reader keeps
//! nothing of it, skips to the next newline and reports it as too long, so a
//! peer cannot make the proxy hold an unbounded message in memory.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// The default line limit: 4 MiB.
pub const DEFAULT_MAX_LINE: usize = 4 * 1024 * 1024;

/// One frame read from a stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A line without its trailing `\n`.
    Line(Vec<u8>),
    /// A line longer than the limit, discarded.
    TooLong,
}

/// Reads frames of at most `max_line` bytes.
pub struct LineReader<R> {
    inner: R,
    max_line: usize,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    pub fn new(inner: R, max_line: usize) -> Self {
        Self { inner, max_line }
    }

    /// The next frame, or `None` at end of stream. A final line without a
    /// newline is still returned.
    pub async fn next_frame(&mut self) -> std::io::Result<Option<Frame>> {
        let mut line = Vec::new();
        let mut too_long = false;
        loop {
            let available = self.inner.fill_buf().await?;
            if available.is_empty() {
                return Ok(match (too_long, line.is_empty()) {
                    (true, _) => Some(Frame::TooLong),
                    (false, true) => None,
                    (false, false) => Some(Frame::Line(line)),
                });
            }
            let (chunk, found_newline) = match memchr(available) {
                Some(pos) => (&available[..pos], true),
                None => (available, false),
            };
            if !too_long {
                if line.len() + chunk.len() > self.max_line {
                    too_long = true;
                    line = Vec::new();
                } else {
                    line.extend_from_slice(chunk);
                }
            }
            let consumed = chunk.len() + usize::from(found_newline);
            self.inner.consume(consumed);
            if found_newline {
                return Ok(Some(if too_long {
                    Frame::TooLong
                } else {
                    Frame::Line(line)
                }));
            }
        }
    }
}

fn memchr(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn splits_lines_and_skips_over_long_ones() {
        let input: &[u8] = b"{\"a\":1}\n0123456789abcdef\nok\nlast";
        let mut reader = LineReader::new(tokio::io::BufReader::with_capacity(4, input), 10);
        assert_eq!(
            reader.next_frame().await.unwrap(),
            Some(Frame::Line(b"{\"a\":1}".to_vec()))
        );
        assert_eq!(reader.next_frame().await.unwrap(), Some(Frame::TooLong));
        assert_eq!(
            reader.next_frame().await.unwrap(),
            Some(Frame::Line(b"ok".to_vec()))
        );
        assert_eq!(
            reader.next_frame().await.unwrap(),
            Some(Frame::Line(b"last".to_vec()))
        );
        assert_eq!(reader.next_frame().await.unwrap(), None);
    }
}
