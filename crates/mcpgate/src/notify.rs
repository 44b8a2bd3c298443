//! What systemd (`Type=notify`) is told, over `NOTIFY_SOCKET`: `READY=1` once the gateway listens,
//! `RELOADING=1` (with the monotonic time it began) and `READY=1` around a SIGHUP reload, `STOPPING=1` when it
//! drains. Without `NOTIFY_SOCKET` nothing is sent; a failure to send is logged and changes nothing else.

use sd_notify::NotifyState;

/// The gateway listens and serves.
pub(crate) fn ready() {
    send(&[NotifyState::Ready], "ready");
}

/// A reload begins.
pub(crate) fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now], "reloading"),
        Err(error) => tracing::debug!(%error, "cannot read the monotonic clock for systemd"),
    }
}

/// The gateway drains and stops.
pub(crate) fn stopping() {
    send(&[NotifyState::Stopping], "stopping");
}

fn send(state: &[NotifyState<'_>], what: &str) {
    if let Err(error) = sd_notify::notify(state) {
        tracing::warn!(%error, what, "cannot tell systemd");
    }
}
