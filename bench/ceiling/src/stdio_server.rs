//! `--stdio`: the ceiling as a stdio MCP server, the floor stdio relay's child.
//! It reads newline-delimited JSON-RPC on stdin and writes one line per answer
//! on stdout, with the same [`handle_rpc`] as the HTTP ceiling.
//!
//! When stdin and stdout are both pipes (as under a proxy) they are read and written
//! on tokio's event loop (`tokio::net::unix::pipe`), not on blocking threads,
//! and answers are buffered: everything already readable is answered first,
//! then written in one go. Anything else (a terminal, a file) goes through
//! tokio's blocking stdin/stdout, written after each read.

use std::io::{self, ErrorKind};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;

use hyper::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;

use crate::rpc::{self, INVALID_REQUEST, Reply, handle_rpc};
use crate::serve::MAX_BODY;

/// Bytes read from stdin at a time.
const READ_BUF: usize = 64 * 1024;
/// Answers buffered beyond this are written before reading more.
const FLUSH_AT: usize = 64 * 1024;

/// Serves stdin until it ends (or stdout is closed).
pub async fn run() -> io::Result<()> {
    let (mut input, mut output) = open()?;
    let mut lines = Lines::default();
    let mut out = Vec::with_capacity(FLUSH_AT);
    let mut chunk = vec![0u8; READ_BUF];
    loop {
        let n = input.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        lines.feed(&chunk[..n], &mut out);
        // Answer everything already readable before writing: a burst gets one write.
        let mut eof = false;
        while out.len() < FLUSH_AT {
            match input.try_read(&mut chunk) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => lines.feed(&chunk[..n], &mut out),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        output.write_all(&out).await?;
        out.clear();
        if eof {
            break;
        }
    }
    lines.finish(&mut out);
    output.write_all(&out).await
}

/// Splits input into lines across reads and answers each complete one.
#[derive(Default)]
struct Lines {
    /// The start of a line whose newline has not arrived yet.
    partial: Vec<u8>,
    /// The current line outgrew [`MAX_BODY`]: skip to its end, then answer an error.
    oversized: bool,
}

impl Lines {
    /// Answers every line completed by `data` into `out`, keeping the rest.
    fn feed(&mut self, mut data: &[u8], out: &mut Vec<u8>) {
        while let Some(i) = data.iter().position(|&b| b == b'\n') {
            let (line, rest) = (&data[..i], &data[i + 1..]);
            if self.oversized {
                self.oversized = false;
                answer_too_long(out);
            } else if self.partial.is_empty() {
                answer(line, out);
            } else {
                self.partial.extend_from_slice(line);
                answer(&self.partial, out);
                self.partial.clear();
            }
            data = rest;
        }
        if self.oversized {
            return;
        }
        if self.partial.len() + data.len() > MAX_BODY {
            self.oversized = true;
            self.partial.clear();
        } else {
            self.partial.extend_from_slice(data);
        }
    }

    /// At end of input: a last line without a newline is answered too.
    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.oversized {
            answer_too_long(out);
        } else if !self.partial.is_empty() {
            let last = std::mem::take(&mut self.partial);
            answer(&last, out);
        }
    }
}

/// Appends the answer to one line (if it gets one) to `out`.
fn answer(line: &[u8], out: &mut Vec<u8>) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        return;
    }
    match handle_rpc(line) {
        Reply::Json(_, body) => {
            out.extend_from_slice(&body);
            out.push(b'\n');
        }
        Reply::Accepted => {}
    }
}

fn answer_too_long(out: &mut Vec<u8>) {
    let message = format!("message longer than {MAX_BODY} bytes");
    if let Reply::Json(_, body) = rpc::error(StatusCode::BAD_REQUEST, &Value::Null, INVALID_REQUEST, &message)
    {
        out.extend_from_slice(&body);
        out.push(b'\n');
    }
}

/// Stdin and stdout: both pipes on the event loop when both are pipes, else tokio's blocking stdin and stdout.
/// Both are checked before either is taken over, so the blocking path never meets a descriptor made
/// non-blocking; a pipe that then cannot be taken over is an error, not a quiet switch to the other path.
fn open() -> io::Result<(Input, Output)> {
    let fifo = |fd: &OwnedFd| -> io::Result<bool> {
        Ok(std::fs::File::from(fd.try_clone()?).metadata()?.file_type().is_fifo())
    };
    let stdin = io::stdin().as_fd().try_clone_to_owned()?;
    let stdout = io::stdout().as_fd().try_clone_to_owned()?;
    if !fifo(&stdin)? || !fifo(&stdout)? {
        return Ok((Input::Other(tokio::io::stdin()), Output::Other(tokio::io::stdout())));
    }
    Ok((
        Input::Pipe(pipe::Receiver::from_owned_fd(stdin)?),
        Output::Pipe(pipe::Sender::from_owned_fd(stdout)?),
    ))
}

/// Stdin: a pipe on the event loop, or tokio's blocking stdin.
enum Input {
    Pipe(pipe::Receiver),
    Other(tokio::io::Stdin),
}

impl Input {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Pipe(rx) => rx.read(buf).await,
            Self::Other(stdin) => stdin.read(buf).await,
        }
    }

    /// Reads what is readable right now; `WouldBlock` when nothing is (always, off a pipe).
    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Pipe(rx) => rx.try_read(buf),
            Self::Other(_) => Err(ErrorKind::WouldBlock.into()),
        }
    }
}

/// Stdout: a pipe on the event loop, or tokio's blocking stdout.
enum Output {
    Pipe(pipe::Sender),
    Other(tokio::io::Stdout),
}

impl Output {
    async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        match self {
            Self::Pipe(tx) => tx.write_all(buf).await,
            Self::Other(stdout) => {
                stdout.write_all(buf).await?;
                stdout.flush().await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALL: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hello"}}}"#;

    fn answers(out: &[u8]) -> Vec<Value> {
        out.split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect()
    }

    #[test]
    fn lines_split_across_reads_get_one_answer_each_and_notifications_none() {
        let mut input = CALL.to_vec();
        input.extend_from_slice(b"\r\n\n{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n");
        input.extend_from_slice(CALL);
        input.push(b'\n');
        input.extend_from_slice(CALL); // the last line has no newline
        for cut in [1, 7, CALL.len(), CALL.len() + 1, input.len() - 3] {
            let (mut lines, mut out) = (Lines::default(), Vec::new());
            lines.feed(&input[..cut], &mut out);
            lines.feed(&input[cut..], &mut out);
            lines.finish(&mut out);
            let got = answers(&out);
            assert_eq!(got.len(), 3, "cut at {cut}");
            assert!(got.iter().all(|a| a["result"]["content"][0]["text"] == "hello"));
        }
    }

    #[test]
    fn bad_and_oversized_lines_get_errors_and_the_next_line_is_served() {
        let (mut lines, mut out) = (Lines::default(), Vec::new());
        lines.feed(b"{oops\n", &mut out);
        lines.feed(&vec![b' '; MAX_BODY + 1], &mut out);
        lines.feed(b"x\n", &mut out);
        lines.feed(CALL, &mut out);
        lines.feed(b"\n", &mut out);
        let got = answers(&out);
        assert_eq!(got[0]["error"]["code"], rpc::PARSE_ERROR);
        assert_eq!(got[1]["error"]["code"], INVALID_REQUEST);
        assert_eq!(got[2]["result"]["content"][0]["text"], "hello");
    }
}
