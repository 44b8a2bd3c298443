//! What one connection is doing — awaiting a request head, serving requests, or idle, and since when — fed by
//! its reads and its requests, and the watchdog that says when a timeout has passed.
//!
//! **Cost.** A read costs one relaxed load, except the first read after the connection went idle, which starts a
//! request head (one clock read and one compare-and-swap). A request costs an atomic add when it starts and a
//! compare-and-swap when its answer has been sent (plus a clock read if it was the last in flight). Nothing
//! allocates, locks or wakes anything: the watchdog looks at the state on its own, at least once per
//! `min(header_read_timeout, idle_timeout)`, which is soon enough for every deadline (see [`Activity::expired`]).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use http::Version;
use tokio::time::Instant;

use super::Limits;

/// Bits 0..43 of the state: a time, in milliseconds after the accept (2^43 ms: 278 years).
const STAMP_BITS: u32 = 43;
const STAMP: u64 = (1 << STAMP_BITS) - 1;
/// Bit 43: a request head is awaited (since the stamp).
const HEAD: u64 = 1 << STAMP_BITS;
/// Bits 44..: requests in flight (an HTTP/2 connection serves many at once).
const REQUEST_SHIFT: u32 = STAMP_BITS + 1;
const REQUEST: u64 = 1 << REQUEST_SHIFT;

/// Which timeout passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expired {
    /// No complete request head within `header_read_timeout`.
    HeaderRead,
    /// No request in progress for `idle_timeout`.
    Idle,
}

/// The phase a state word describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// At least one request in flight: no timeout applies.
    Serving,
    /// A request head is awaited since the stamp (the accept, or the first byte of a later request).
    Head(u64),
    /// Nothing in progress since the stamp (the last answer sent).
    Idle(u64),
}

fn phase(state: u64) -> Phase {
    if state >= REQUEST {
        Phase::Serving
    } else if state & HEAD != 0 {
        Phase::Head(state & STAMP)
    } else {
        Phase::Idle(state & STAMP)
    }
}

/// One connection's activity, shared by its transport (reads), its service (requests) and its watchdog.
#[derive(Debug)]
pub(super) struct Activity {
    /// Requests in flight, whether a head is awaited, and since when — one word, so that a request ending while
    /// another starts (HTTP/2) cannot leave it torn, and the watchdog can tell "nothing changed" by comparing it.
    state: AtomicU64,
    /// HTTP/2: bytes on a connection without requests are control frames (PING, SETTINGS), not a request head.
    h2: AtomicBool,
    born: Instant,
    header_read_ms: u64,
    idle_ms: u64,
}

// === impl Activity ===

impl Activity {
    /// A connection accepted now: its first request head is awaited from now on.
    pub(super) fn new(limits: &Limits) -> Self {
        Self {
            state: AtomicU64::new(HEAD),
            h2: AtomicBool::new(false),
            born: Instant::now(),
            header_read_ms: ceil_ms(limits.header_read_timeout),
            idle_ms: ceil_ms(limits.idle_timeout),
        }
    }

    /// Milliseconds since the accept, rounded up: a deadline computed from it is never early.
    fn now_ms(&self) -> u64 {
        ceil_ms(self.born.elapsed()).min(STAMP)
    }

    /// The transport read some bytes. On an idle HTTP/1 connection they begin a request head. Bytes read while a
    /// request is in flight begin none: a pipelined head left incomplete after it is bound by the idle timeout.
    pub(super) fn read(&self) {
        let state = self.state.load(Ordering::Relaxed);
        // Serving, or a head is already awaited: nothing changes (the common case, one load).
        if state >= HEAD || self.h2.load(Ordering::Relaxed) {
            return;
        }
        // Lost to a request that started meanwhile (HTTP/1 pipelining): then no head is awaited.
        let _ = self.state.compare_exchange(state, HEAD | self.now_ms(), Ordering::AcqRel, Ordering::Relaxed);
    }

    /// The service was called: a request head is complete. Its answer is in progress until the [`Busy`] drops.
    pub(super) fn request(self: &Arc<Self>, version: Version) -> Busy {
        if version == Version::HTTP_2 {
            self.h2.store(true, Ordering::Relaxed);
        }
        self.state.fetch_add(REQUEST, Ordering::AcqRel);
        Busy(self.clone())
    }

    /// An answer was sent (or dropped); the last one in flight leaves the connection idle from now.
    fn answered(&self) {
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            let next = if state >> REQUEST_SHIFT == 1 { self.now_ms() } else { state - REQUEST };
            match self.state.compare_exchange_weak(state, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return,
                Err(current) => state = current,
            }
        }
    }

    /// An idle connection was asked to close: give it a fresh idle period to do so (an HTTP/2 client may still
    /// open a stream it sent before it saw the GOAWAY).
    pub(super) fn idle_again(&self) {
        let state = self.state.load(Ordering::Relaxed);
        if let Phase::Idle(_) = phase(state) {
            let _ = self.state.compare_exchange(state, self.now_ms(), Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    /// Resolves when a timeout has passed: a request head awaited for `header_read_timeout`, or nothing in
    /// progress for `idle_timeout`. Never while a request is in flight.
    ///
    /// Nobody tells the watchdog of a change; it looks at least once per `min(header_read_timeout,
    /// idle_timeout)`. That is soon enough: a change (a head begins, the last answer is sent) sets a deadline
    /// at least that far after it, and the watchdog's next look, no later than that after its previous one
    /// (which came before the change), arms its timer for it. It costs one timer reset per period, not one per
    /// request.
    pub(super) async fn expired(&self) -> Expired {
        let look_every = self.header_read_ms.min(self.idle_ms).max(1);
        let sleep = tokio::time::sleep_until(self.at(self.header_read_ms));
        tokio::pin!(sleep);
        loop {
            let state = self.state.load(Ordering::Acquire);
            let next_look = self.now_ms() + look_every;
            let (deadline, verdict) = match phase(state) {
                Phase::Serving => (next_look, None),
                Phase::Head(since) => (since + self.header_read_ms, Some(Expired::HeaderRead)),
                Phase::Idle(since) => (since + self.idle_ms, Some(Expired::Idle)),
            };
            let at = self.at(deadline.min(next_look));
            if sleep.deadline() != at {
                sleep.as_mut().reset(at);
            }
            sleep.as_mut().await;
            if let Some(verdict) = verdict
                && deadline <= next_look
                && self.state.load(Ordering::Acquire) == state
            {
                return verdict;
            }
        }
    }

    fn at(&self, ms: u64) -> Instant {
        self.born + Duration::from_millis(ms)
    }
}

fn ceil_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros().div_ceil(1000)).unwrap_or(u64::MAX)
}

/// A request in progress on its connection, from the call of the service until its answer has been sent. Moves
/// from the service's future into the response body.
#[derive(Debug)]
pub(super) struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.answered();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1,
            cap_name: "server.max_connections",
        }
    }

    async fn expires_after(activity: &Activity) -> (Expired, Duration) {
        let start = Instant::now();
        let verdict = activity.expired().await;
        (verdict, start.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_sends_nothing_expires_after_the_header_read_timeout() {
        let activity = Activity::new(&limits());
        assert_eq!(expires_after(&activity).await, (Expired::HeaderRead, Duration::from_secs(10)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickled_head_expires_from_its_first_byte() {
        let activity = Arc::new(Activity::new(&limits()));
        // The first request is served, the connection then idles 30 s and a head begins: 10 s from there.
        drop(activity.request(Version::HTTP_11));
        let watchdog = tokio::spawn({
            let activity = activity.clone();
            async move { expires_after(&activity).await }
        });
        tokio::time::sleep(Duration::from_secs(30)).await;
        for _ in 0..20 {
            activity.read();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        assert_eq!(watchdog.await.unwrap(), (Expired::HeaderRead, Duration::from_secs(40)));
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_expires_after_the_idle_timeout_from_its_last_answer() {
        let activity = Arc::new(Activity::new(&limits()));
        let busy = activity.request(Version::HTTP_11);
        let watchdog = tokio::spawn({
            let activity = activity.clone();
            async move { expires_after(&activity).await }
        });
        // A request in flight for five minutes (an open SSE stream, say) is never cut.
        tokio::time::sleep(Duration::from_secs(300)).await;
        assert!(!watchdog.is_finished());
        drop(busy);
        assert_eq!(watchdog.await.unwrap(), (Expired::Idle, Duration::from_secs(360)));
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_timeout_shorter_than_the_header_read_timeout_is_kept_after_a_head() {
        let limits = Limits { idle_timeout: Duration::from_secs(2), ..limits() };
        let activity = Arc::new(Activity::new(&limits));
        // The watchdog is waiting for the first head (10 s) when a request comes and goes at 1 s.
        let watchdog = tokio::spawn({
            let activity = activity.clone();
            async move { expires_after(&activity).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(activity.request(Version::HTTP_11));
        assert_eq!(watchdog.await.unwrap(), (Expired::Idle, Duration::from_secs(3)));
    }

    #[tokio::test(start_paused = true)]
    async fn http2_control_frames_on_an_idle_connection_are_not_a_request_head() {
        let activity = Arc::new(Activity::new(&limits()));
        drop(activity.request(Version::HTTP_2));
        let watchdog = tokio::spawn({
            let activity = activity.clone();
            async move { expires_after(&activity).await }
        });
        for _ in 0..50 {
            activity.read();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        assert_eq!(watchdog.await.unwrap(), (Expired::Idle, Duration::from_secs(60)));
    }

    #[tokio::test(start_paused = true)]
    async fn overlapping_requests_keep_the_connection_serving_until_the_last_answer() {
        let activity = Arc::new(Activity::new(&limits()));
        let (first, second) = (activity.request(Version::HTTP_2), activity.request(Version::HTTP_2));
        let watchdog = tokio::spawn({
            let activity = activity.clone();
            async move { expires_after(&activity).await }
        });
        tokio::time::sleep(Duration::from_secs(100)).await;
        drop(first);
        tokio::time::sleep(Duration::from_secs(100)).await;
        assert!(!watchdog.is_finished());
        drop(second);
        assert_eq!(watchdog.await.unwrap(), (Expired::Idle, Duration::from_secs(260)));
    }
}
