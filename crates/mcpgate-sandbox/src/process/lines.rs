//! Bounded, cancel-safe line reading from a worker's stdout and stderr.

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt};

/// What reading a line gave.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// A line, without its newline.
    Complete(Vec<u8>),
    /// The other side closed; what was left without a newline is dropped.
    Eof,
    /// The line grew past the limit (nothing more is read from it).
    TooLong,
}

/// Lines from `R`. Dropping [`Lines::next`]'s future keeps what it had read for the next call.
pub(crate) struct Lines<R> {
    inner: R,
    partial: Vec<u8>,
}

impl<R: AsyncBufRead + Unpin> Lines<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self { inner, partial: Vec::new() }
    }

    /// The next line, of at most `limit` bytes.
    pub(crate) async fn next(&mut self, limit: usize) -> std::io::Result<Line> {
        loop {
            let available = self.inner.fill_buf().await?;
            if available.is_empty() {
                return Ok(Line::Eof);
            }
            let (taken, end) = match available.iter().position(|&b| b == b'\n') {
                Some(at) => (at + 1, true),
                None => (available.len(), false),
            };
            let body = if end { &available[..taken - 1] } else { available };
            if self.partial.len() + body.len() > limit {
                return Ok(Line::TooLong);
            }
            self.partial.extend_from_slice(body);
            self.inner.consume(taken);
            if end {
                return Ok(Line::Complete(std::mem::take(&mut self.partial)));
            }
        }
    }
}

/// What a worker wrote on stderr: the first [`Stderr::KEPT`] bytes are kept, the rest read and dropped.
pub(crate) struct Stderr<R> {
    inner: Option<R>,
    kept: Vec<u8>,
}

impl<R: AsyncRead + Unpin> Stderr<R> {
    /// Bytes kept for error messages.
    pub(crate) const KEPT: usize = 8 << 10;

    pub(crate) fn new(inner: Option<R>) -> Self {
        Self { inner, kept: Vec::new() }
    }

    /// Read some more; never resolves once the stream ended (so it can sit in a `select!`).
    pub(crate) async fn pump(&mut self) {
        let Some(inner) = self.inner.as_mut() else { return std::future::pending().await };
        let mut chunk = [0u8; 4096];
        match inner.read(&mut chunk).await {
            Ok(0) | Err(_) => self.inner = None,
            Ok(n) => {
                let room = Self::KEPT.saturating_sub(self.kept.len());
                self.kept.extend_from_slice(&chunk[..n.min(room)]);
            }
        }
    }

    /// Read until the stream ends or `within` passes.
    pub(crate) async fn finish(&mut self, within: std::time::Duration) {
        let _ = tokio::time::timeout(within, async {
            while self.inner.is_some() {
                self.pump().await;
            }
        })
        .await;
    }

    /// What was kept, as one line of text (empty when nothing was written).
    pub(crate) fn text(&self) -> String {
        let text = String::from_utf8_lossy(&self.kept);
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tokio::io::{AsyncWriteExt, BufReader};

    use super::*;

    #[tokio::test]
    async fn lines_are_bounded_and_survive_cancellation() {
        let (mut write, read) = tokio::io::duplex(64);
        let mut lines = Lines::new(BufReader::with_capacity(16, read));
        write.write_all(b"first\nsec").await.unwrap();
        assert_eq!(lines.next(100).await.unwrap(), Line::Complete(b"first".to_vec()));
        // Cancelled half-way through a line: what it read is kept.
        let waited = tokio::time::timeout(std::time::Duration::from_millis(20), lines.next(100)).await;
        assert!(waited.is_err());
        write.write_all(b"ond\n").await.unwrap();
        assert_eq!(lines.next(100).await.unwrap(), Line::Complete(b"second".to_vec()));
        let long = vec![b'x'; 1000];
        let writer = tokio::spawn(async move {
            let _ = write.write_all(&long).await;
            write
        });
        assert_eq!(lines.next(100).await.unwrap(), Line::TooLong, "a line over the limit is refused");
        drop(lines);
        drop(writer.await.unwrap());
        let (write, read) = tokio::io::duplex(64);
        drop(write);
        assert_eq!(Lines::new(BufReader::new(read)).next(10).await.unwrap(), Line::Eof);
    }

    #[tokio::test]
    async fn stderr_keeps_the_start() {
        let (mut write, read) = tokio::io::duplex(1 << 16);
        write.write_all(&vec![b'e'; 20_000]).await.unwrap();
        drop(write);
        let mut stderr = Stderr::new(Some(read));
        stderr.finish(std::time::Duration::from_secs(1)).await;
        assert_eq!(stderr.text().len(), Stderr::<tokio::io::DuplexStream>::KEPT);
    }
}
