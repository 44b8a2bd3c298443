//! `mcpgate-bench-rate`: a small open-loop, fixed-rate HTTP/1.1 load generator
//! for `bench/run.sh`, with coordinated-omission correction and a fresh
//! JSON-RPC id on every request.
//!
//! Why not just `oha -q`: oha sends one fixed body (or a random line of a
//! file), so JSON-RPC ids repeat. Within one MCP session (the 2025-11-25 shape)
//! ids must be unique, and a duplicate in-flight id makes the server cancel one
//! of the two requests. Here request `i` carries id `1_000_000 + i`.
//!
//! Model (like wrk2 / oha `--latency-correction`): request `i` is scheduled at
//! `t0 + i / rate`. `conns` keep-alive connections take the next ticket as soon
//! as they are free. If a connection takes a ticket whose time has already
//! passed (every connection was busy: the server is behind), its latency is
//! counted from the *scheduled* time, so stalls are not hidden. If it is early,
//! it sleeps until the scheduled time and counts from when it actually sends,
//! so the client's own timer granularity (tokio: 1 ms) is not charged to the
//! server. Tickets not taken by the end of the duration are not sent (then the
//! achieved rate is below the target: "not sustained"). Requests in flight at
//! the deadline are awaited.
//!
//! A response counts as ok only if it is 2xx and (with `--expect`) its body
//! contains the expected text.
//!
//! Usage:
//! ```text
//! mcpgate-bench-rate --url http://127.0.0.1:PORT/mcp --rate 20000 --duration 10
//!     --conns 64 --body FILE --headers FILE [--expect hello] [--timeout 5]
//! ```
//! The body file must start with `{"jsonrpc":"2.0","id":1,`. The headers file
//! has one `Name: value` per line. Prints one JSON object on stdout.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::header::{HOST, HeaderName, HeaderValue};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpStream;
use tokio::time::Instant;

const ID_PREFIX: &str = r#"{"jsonrpc":"2.0","id":"#;
const ID_BASE: u64 = 1_000_000;

struct Opts {
    authority: String,
    path: String,
    rate: f64,
    duration: Duration,
    conns: usize,
    body_pre: String,
    body_post: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    expect: Option<Vec<u8>>,
    timeout: Duration,
}

#[derive(Default)]
struct Stats {
    ok: u64,
    non2xx: u64,
    bad_body: u64,
    timeouts: u64,
    io_errors: u64,
    /// Corrected latency (from the scheduled time when late), microseconds.
    lat_us: Vec<u64>,
    /// Uncorrected latency (from the actual send), microseconds.
    raw_us: Vec<u64>,
    last_done: Option<Instant>,
}

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("mcpgate-bench-rate: {msg}");
    std::process::exit(2);
}

fn parse_args() -> Opts {
    let mut args = std::env::args().skip(1);
    let (mut url, mut rate, mut duration, mut conns) = (None, None, None, 64usize);
    let (mut body, mut headers, mut expect, mut timeout) = (None, None, None, 5.0f64);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| fail(format!("{a} needs a value")));
        let num = |s: String| s.parse::<f64>().unwrap_or_else(|_| fail(format!("bad number: {s}")));
        match a.as_str() {
            "--url" => url = Some(val()),
            "--rate" => rate = Some(num(val())),
            "--duration" => duration = Some(num(val())),
            "--conns" => conns = num(val()) as usize,
            "--body" => body = Some(val()),
            "--headers" => headers = Some(val()),
            "--expect" => expect = Some(val().into_bytes()),
            "--timeout" => timeout = num(val()),
            "-h" | "--help" => {
                eprintln!(
                    "usage: mcpgate-bench-rate --url URL --rate RPS --duration SECS [--conns N] \
                     --body FILE [--headers FILE] [--expect TEXT] [--timeout SECS]"
                );
                std::process::exit(0);
            }
            _ => fail(format!("unknown argument {a}")),
        }
    }
    let url = url.unwrap_or_else(|| fail("--url is required"));
    let rest = url.strip_prefix("http://").unwrap_or_else(|| fail("--url must be http://HOST:PORT/PATH"));
    let (authority, path) = match rest.find('/') {
        Some(i) => (rest[..i].to_owned(), rest[i..].to_owned()),
        None => (rest.to_owned(), "/".to_owned()),
    };
    let body_path = body.unwrap_or_else(|| fail("--body is required"));
    let body = std::fs::read_to_string(&body_path).unwrap_or_else(|e| fail(format!("{body_path}: {e}")));
    let body_post = body
        .strip_prefix(ID_PREFIX)
        .and_then(|r| r.strip_prefix('1'))
        .filter(|r| r.starts_with(','))
        .unwrap_or_else(|| fail(format!("{body_path} must start with {ID_PREFIX}1,")))
        .to_owned();
    let mut hdrs = Vec::new();
    if let Some(p) = headers {
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| fail(format!("{p}: {e}")));
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (k, v) = line.split_once(':').unwrap_or_else(|| fail(format!("bad header line: {line}")));
            let k = HeaderName::from_bytes(k.trim().as_bytes()).unwrap_or_else(|e| fail(e));
            let v = HeaderValue::from_str(v.trim()).unwrap_or_else(|e| fail(e));
            hdrs.push((k, v));
        }
    }
    let rate = rate.unwrap_or_else(|| fail("--rate is required"));
    let duration = duration.unwrap_or_else(|| fail("--duration is required"));
    if rate <= 0.0 || duration <= 0.0 || conns == 0 {
        fail("--rate, --duration and --conns must be positive");
    }
    Opts {
        authority,
        path,
        rate,
        duration: Duration::from_secs_f64(duration),
        conns,
        body_pre: ID_PREFIX.to_owned(),
        body_post,
        headers: hdrs,
        expect,
        timeout: Duration::from_secs_f64(timeout),
    }
}

type Sender = http1::SendRequest<Full<Bytes>>;

async fn connect(authority: &str) -> std::io::Result<Sender> {
    let stream = TcpStream::connect(authority).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

enum Outcome {
    Ok,
    Non2xx,
    BadBody,
    Io,
}

async fn one(sender: &mut Sender, opts: &Opts, id: u64) -> Outcome {
    let body = format!("{}{}{}", opts.body_pre, id, opts.body_post);
    let mut req = Request::builder().method(Method::POST).uri(opts.path.as_str());
    if let Some(h) = req.headers_mut() {
        if let Ok(v) = HeaderValue::from_str(&opts.authority) {
            h.insert(HOST, v);
        }
        for (k, v) in &opts.headers {
            h.insert(k.clone(), v.clone());
        }
    }
    let Ok(req) = req.body(Full::new(Bytes::from(body))) else {
        return Outcome::Io;
    };
    let resp = match sender.send_request(req).await {
        Ok(r) => r,
        Err(_) => return Outcome::Io,
    };
    let status = resp.status();
    let bytes = match resp.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Outcome::Io,
    };
    if !status.is_success() {
        Outcome::Non2xx
    } else if opts.expect.as_deref().is_some_and(|e| !contains(&bytes, e)) {
        Outcome::BadBody
    } else {
        Outcome::Ok
    }
}

async fn worker(opts: Arc<Opts>, ticket: Arc<AtomicU64>, t0: Instant, total: u64, first: Sender) -> Stats {
    let mut st = Stats::default();
    let interval = 1.0 / opts.rate;
    let end = t0 + opts.duration;
    let mut sender: Option<Sender> = Some(first);
    loop {
        let i = ticket.fetch_add(1, Ordering::Relaxed);
        if i >= total {
            break;
        }
        let sched = t0 + Duration::from_secs_f64(i as f64 * interval);
        let now = Instant::now();
        if now >= end {
            break; // the run is over; remaining tickets are not sent
        }
        let start = if now < sched {
            tokio::time::sleep_until(sched).await;
            Instant::now()
        } else {
            sched // late: the server kept every connection busy; count the wait
        };
        let sent = Instant::now();
        let mut s = match sender.take() {
            Some(s) if !s.is_closed() => s,
            _ => match tokio::time::timeout(opts.timeout, connect(&opts.authority)).await {
                Ok(Ok(s)) => s,
                _ => {
                    st.io_errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        match tokio::time::timeout(opts.timeout, one(&mut s, &opts, ID_BASE + i)).await {
            Err(_) => st.timeouts += 1, // connection dropped with `s`
            Ok(out) => {
                let done = Instant::now();
                match out {
                    Outcome::Ok => {
                        st.ok += 1;
                        st.lat_us.push((done - start).as_micros() as u64);
                        st.raw_us.push((done - sent).as_micros() as u64);
                        st.last_done = Some(done);
                        sender = Some(s);
                    }
                    Outcome::Non2xx => {
                        st.non2xx += 1;
                        sender = Some(s);
                    }
                    Outcome::BadBody => {
                        st.bad_body += 1;
                        sender = Some(s);
                    }
                    Outcome::Io => st.io_errors += 1,
                }
            }
        }
    }
    st
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[idx.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

fn summary(v: &mut [u64]) -> serde_json::Value {
    v.sort_unstable();
    let mean = if v.is_empty() { f64::NAN } else { v.iter().sum::<u64>() as f64 / v.len() as f64 / 1000.0 };
    json!({
        "p50": pct(v, 50.0), "p90": pct(v, 90.0), "p99": pct(v, 99.0), "p999": pct(v, 99.9),
        "max": pct(v, 100.0), "mean": mean,
    })
}

#[tokio::main]
async fn main() {
    let opts = Arc::new(parse_args());
    let total = (opts.rate * opts.duration.as_secs_f64()).round() as u64;
    let ticket = Arc::new(AtomicU64::new(0));
    // Open the connections first, so the schedule does not include handshakes.
    let mut senders = Vec::with_capacity(opts.conns);
    for _ in 0..opts.conns {
        senders.push(connect(&opts.authority).await.unwrap_or_else(|e| fail(format!("connect: {e}"))));
    }
    let t0 = Instant::now() + Duration::from_millis(20);
    let mut tasks = Vec::with_capacity(opts.conns);
    for s in senders {
        tasks.push(tokio::spawn(worker(opts.clone(), ticket.clone(), t0, total, s)));
    }
    let mut all = Stats::default();
    for t in tasks {
        let st = t.await.unwrap_or_else(|e| fail(e));
        all.ok += st.ok;
        all.non2xx += st.non2xx;
        all.bad_body += st.bad_body;
        all.timeouts += st.timeouts;
        all.io_errors += st.io_errors;
        all.lat_us.extend(st.lat_us);
        all.raw_us.extend(st.raw_us);
        all.last_done = all.last_done.max(st.last_done);
    }
    let elapsed = all.last_done.map_or(0.0, |d| (d - t0).as_secs_f64());
    let window = opts.duration.as_secs_f64();
    let out = json!({
        "tool": "mcpgate-bench-rate",
        "target_rps": opts.rate,
        "duration_s": window,
        "conns": opts.conns,
        "scheduled": total,
        "ok": all.ok,
        "non2xx": all.non2xx,
        "bad_body": all.bad_body,
        "timeouts": all.timeouts,
        "io_errors": all.io_errors,
        "elapsed_s": elapsed,
        "achieved_rps": all.ok as f64 / window.max(elapsed),
        "latency_ms": summary(&mut all.lat_us),
        "uncorrected_latency_ms": summary(&mut all.raw_us),
    });
    // The single result line on stdout is this program's output.
    #[allow(clippy::print_stdout)]
    {
        println!("{out}");
    }
}
