//! Warm workers: `pool_size` workers started, confined and waiting for their program, each used once. Taking
//! one starts its replacement in the background; with none warm, a run starts its own (a cold start). A start
//! that fails is retried with a growing pause (up to 30 s), and its reason is the pool's readiness until a
//! start succeeds.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, PoisonError, Weak},
    time::Duration,
};

use super::child::{Spawner, Worker};
use crate::protocol::Confinement;

/// The longest pause between two failed starts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The warm workers and how their starting goes.
pub(crate) struct Pool {
    spawner: Arc<Spawner>,
    size: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    warm: VecDeque<Worker>,
    starting: usize,
    /// Why the last start failed, until one succeeds.
    error: Option<String>,
    /// What the last worker to start said of its confinement.
    confinement: Option<Confinement>,
    /// The last cold and warm start, in milliseconds (spawn to `ready`; a warm one was waiting already).
    last_cold_ms: Option<u128>,
}

/// What `/status` shows of the pool.
pub(crate) struct Snapshot {
    pub(crate) size: usize,
    pub(crate) warm: usize,
    pub(crate) starting: usize,
    pub(crate) error: Option<String>,
    pub(crate) confinement: Option<Confinement>,
    pub(crate) last_cold_ms: Option<u128>,
}

impl Pool {
    /// A pool of `size` workers started by `spawner`; it fills once a tokio runtime is at hand (now, or at the
    /// first run).
    pub(crate) fn new(spawner: Arc<Spawner>, size: usize) -> Arc<Self> {
        let pool = Arc::new(Self { spawner, size, state: Mutex::default() });
        pool.refill();
        pool
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A worker for one program: a warm one, or a new one. `true` when it was warm.
    pub(crate) async fn take(self: &Arc<Self>) -> Result<(Worker, bool), String> {
        let warm = loop {
            let next = self.state().warm.pop_front();
            match next {
                Some(mut worker) => {
                    if !worker.exited() {
                        break Some(worker);
                    }
                }
                None => break None,
            }
        };
        self.refill();
        if let Some(worker) = warm {
            return Ok((worker, true));
        }
        let started = self.spawner.start().await;
        let mut state = self.state();
        match &started {
            Ok(worker) => {
                state.error = None;
                state.confinement.clone_from(&worker.confinement);
                state.last_cold_ms = Some(worker.start_time.as_millis());
            }
            Err(e) => state.error = Some(e.clone()),
        }
        started.map(|worker| (worker, false))
    }

    /// Start workers in the background until warm and starting ones make `size`.
    pub(crate) fn refill(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let mut state = self.state();
        while state.warm.len() + state.starting < self.size {
            state.starting += 1;
            runtime.spawn(fill(Arc::downgrade(self), self.spawner.clone()));
        }
    }

    /// Its state now.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let state = self.state();
        Snapshot {
            size: self.size,
            warm: state.warm.len(),
            starting: state.starting,
            error: state.error.clone(),
            confinement: state.confinement.clone(),
            last_cold_ms: state.last_cold_ms,
        }
    }
}

/// Start one worker for `pool`, retrying until it starts or the pool is gone.
async fn fill(pool: Weak<Pool>, spawner: Arc<Spawner>) {
    let mut pause = Duration::from_millis(100);
    loop {
        let started = spawner.start().await;
        // A pool dropped meanwhile drops (and so kills) the worker.
        let Some(pool) = pool.upgrade() else { return };
        {
            let mut state = pool.state();
            match started {
                Ok(worker) => {
                    state.error = None;
                    state.confinement.clone_from(&worker.confinement);
                    state.warm.push_back(worker);
                    state.starting -= 1;
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start a sandbox worker");
                    state.error = Some(e);
                }
            }
        }
        drop(pool);
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_BACKOFF);
    }
}
