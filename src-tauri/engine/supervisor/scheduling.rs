//! Scheduling: the table of runners up and loads under way, one loader per [`RunnerKey`] with the
//! requests waiting for it, the busy and load limits, eviction (the same weights with other
//! settings, then the least recently used), a request's hold on its runner ([`RunnerGuard`]),
//! unloading, and the keep-alive reaper. It must never hold the table while it starts, stops or
//! waits on a runner, and never stops a runner that a request holds.

use std::collections::HashMap;
use std::ops::Deref;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread;
use std::time::{Duration, Instant};

use super::process::{start_router, LoadedModel};
use super::{EngineConfig, EngineError, LoadSpec, RunnerKey, Supervisor};

/// The runners up and the loads under way. Never held while waiting on a runner.
#[derive(Default)]
pub(super) struct Table {
    models: Vec<Arc<LoadedModel>>,
    loading: HashMap<RunnerKey, Arc<PendingLoad>>,
}

/// A load in progress: the requests waiting for it, and its outcome once there.
#[derive(Default)]
struct PendingLoad {
    /// Requests waiting besides the loader (changed under the table lock only).
    waiters: AtomicUsize,
    outcome: Mutex<Option<Result<Arc<LoadedModel>, EngineError>>>,
    done: Condvar,
}

impl PendingLoad {
    fn finish(&self, outcome: Result<Arc<LoadedModel>, EngineError>) {
        *self.outcome.lock().unwrap() = Some(outcome);
        self.done.notify_all();
    }

    fn wait(&self) -> Result<Arc<LoadedModel>, EngineError> {
        let mut outcome = self.outcome.lock().unwrap();
        loop {
            if let Some(o) = outcome.as_ref() {
                return o.clone();
            }
            outcome = self.done.wait(outcome).unwrap();
        }
    }
}

/// The loader's claim on a key: whatever happens to the loader (an error, a panic), the key is
/// freed and its waiters get an outcome.
struct LoadClaim<'a> {
    sup: &'a Supervisor,
    key: RunnerKey,
    name: String,
    pending: Arc<PendingLoad>,
    settled: bool,
}

impl LoadClaim<'_> {
    /// Publishes the outcome: a started runner joins the table already held by the loader and
    /// by every waiter, so nothing can stop it before they get it.
    fn settle(mut self, started: Result<LoadedModel, EngineError>) -> Result<Arc<LoadedModel>, EngineError> {
        self.settled = true;
        let mut table = self.sup.table.lock().unwrap();
        table.loading.remove(&self.key);
        let holders = 1 + self.pending.waiters.load(Ordering::SeqCst);
        let outcome = started.map(|model| {
            let model = Arc::new(model);
            model.in_flight.store(holders, Ordering::SeqCst);
            start_router(&model);
            table.models.push(model.clone());
            model
        });
        drop(table);
        self.pending.finish(outcome.clone());
        outcome
    }
}

impl Drop for LoadClaim<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.sup.table.lock().unwrap_or_else(|e| e.into_inner()).loading.remove(&self.key);
            self.pending.finish(Err(EngineError::Load { model: self.name.clone(), message: "the load was abandoned (an internal error); try again".into() }));
        }
    }
}

/// A request's hold on a runner, from `load` until its reply ends (dropping it lets the
/// keep-alive clock run again). Derefs to the runner.
pub struct RunnerGuard {
    pub(super) model: Arc<LoadedModel>,
    keep_alive: Option<Duration>,
    released: bool,
}

impl RunnerGuard {
    pub fn model(&self) -> &Arc<LoadedModel> {
        &self.model
    }

    /// Ends the hold: the keep-alive starts from now (the request's, else the runner's).
    pub(super) fn release(&mut self) {
        if !self.released {
            self.released = true;
            // Expiry first, so the reaper never sees an unheld runner with a stale deadline.
            self.model.touch(self.keep_alive);
            self.model.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Deref for RunnerGuard {
    type Target = Arc<LoadedModel>;
    fn deref(&self) -> &Arc<LoadedModel> {
        &self.model
    }
}

impl Drop for RunnerGuard {
    fn drop(&mut self) {
        self.release();
    }
}

impl Supervisor {
    pub fn new(cfg: EngineConfig) -> Arc<Self> {
        let avoid_amx = AtomicBool::new(cfg.avoid_amx);
        let sup = Arc::new(Supervisor {
            cfg,
            table: Mutex::new(Table::default()),
            avoid_amx,
            next_id: AtomicU64::new(1),
            runner_starts: AtomicU64::new(0),
            runner_crashes: Arc::default(),
            live_runners: Arc::default(),
        });
        let weak = Arc::downgrade(&sup);
        thread::Builder::new().name("keep-alive".into()).spawn(move || reap_expired(weak)).expect("spawn keep-alive thread");
        sup
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// The models loaded now (for `ps`).
    pub fn loaded(&self) -> Vec<Arc<LoadedModel>> {
        self.table.lock().unwrap().models.iter().filter(|m| m.is_alive()).cloned().collect()
    }

    /// The loads under way, each with the requests waiting for it (its loader included).
    pub fn loading(&self) -> Vec<(RunnerKey, usize)> {
        self.table.lock().unwrap().loading.iter().map(|(k, p)| (k.clone(), 1 + p.waiters.load(Ordering::SeqCst))).collect()
    }

    /// Requests waiting for a slot of a loaded model or for a load to finish.
    pub fn waiting(&self) -> usize {
        let table = self.table.lock().unwrap();
        let queued: usize = table.models.iter().map(|m| m.in_flight.load(Ordering::SeqCst).saturating_sub(m.info.n_parallel.max(1) as usize)).sum();
        queued + table.loading.values().map(|p| p.waiters.load(Ordering::SeqCst)).sum::<usize>()
    }

    /// Runners started while another runner of the same key (weights, context, …) was still
    /// alive, counted from each runner's start to its reaping: it must stay 0.
    pub fn runner_overlaps(&self) -> u64 {
        self.live_runners.overlaps.load(Ordering::SeqCst)
    }

    /// Runners that exited on their own (a crash, a kill from outside) while loaded.
    pub fn runner_crashes(&self) -> u64 {
        self.runner_crashes.load(Ordering::SeqCst)
    }

    /// Runner processes this supervisor has started (retries of one load count each, except the
    /// restart without the CPU's AMX kernels after they crashed).
    pub fn runner_starts(&self) -> u64 {
        self.runner_starts.load(Ordering::SeqCst)
    }

    /// Returns the runner for `spec` held for the caller, starting one if none has its key (a
    /// different context size means a different runner, as in Ollama). `keep_alive` is how long
    /// the runner stays after this request (`None`: what it had).
    ///
    /// Never waits for another key's load; waits for a load of the same key (the wait counts
    /// toward the busy limit, like a queued request).
    pub fn load(&self, spec: &LoadSpec, keep_alive: Option<Duration>) -> Result<RunnerGuard, EngineError> {
        let key = spec.key();
        let busy_limit = |parallel: u32| parallel.max(1) as usize + self.cfg.max_queue;
        let (claim, to_stop) = {
            let mut table = self.table.lock().unwrap();
            table.models.retain(|m| m.is_alive());
            if let Some(m) = table.models.iter().find(|m| m.key == key) {
                let holders = m.in_flight.load(Ordering::SeqCst);
                if holders >= busy_limit(m.info.n_parallel) {
                    return Err(EngineError::Busy { model: spec.name.clone(), waiting: holders });
                }
                m.in_flight.fetch_add(1, Ordering::SeqCst);
                return Ok(RunnerGuard { model: m.clone(), keep_alive, released: false });
            }
            if let Some(pending) = table.loading.get(&key).cloned() {
                let waiting = 1 + pending.waiters.load(Ordering::SeqCst);
                if waiting >= busy_limit(spec.parallel) {
                    return Err(EngineError::Busy { model: spec.name.clone(), waiting });
                }
                pending.waiters.fetch_add(1, Ordering::SeqCst);
                drop(table);
                // The loader counted this request as a holder when it published the runner.
                return pending.wait().map(|model| RunnerGuard { model, keep_alive, released: false });
            }
            let max_loaded = self.cfg.max_loaded.max(1);
            if table.loading.len() >= max_loaded {
                return Err(EngineError::TooManyLoads { model: spec.name.clone(), loading: table.loading.len() });
            }
            let pending = Arc::new(PendingLoad::default());
            table.loading.insert(key.clone(), pending.clone());
            let claim = LoadClaim { sup: self, key: key.clone(), name: spec.name.clone(), pending, settled: false };
            // Make room: the same weights with other settings, then the least recently used,
            // counting loads under way; only runners nobody holds.
            let idle = |m: &Arc<LoadedModel>| m.in_flight.load(Ordering::SeqCst) == 0;
            let mut out: Vec<_> = table.models.iter().filter(|m| m.key.weights == key.weights && m.key.embedding == key.embedding && idle(m)).cloned().collect();
            table.models.retain(|m| !out.iter().any(|o| Arc::ptr_eq(o, m)));
            while table.models.len() + table.loading.len() > max_loaded {
                let lru = table.models.iter().enumerate().filter(|(_, m)| idle(m)).min_by_key(|(_, m)| m.expires_at()).map(|(i, _)| i);
                match lru {
                    Some(i) => out.push(table.models.remove(i)),
                    None => break,
                }
            }
            (claim, out)
        };
        for m in to_stop {
            m.shut_down();
        }
        let started = self.start(spec);
        let model = claim.settle(started)?;
        Ok(RunnerGuard { model, keep_alive, released: false })
    }

    /// Unloads the runners of the weights at `weights` (every name that shares them): those
    /// nobody holds stop now, the others as soon as their last request ends. Returns whether
    /// one was loaded.
    pub fn unload(&self, weights: &Path) -> bool {
        let (stopped, found) = {
            let mut table = self.table.lock().unwrap();
            let mut found = false;
            for m in table.models.iter().filter(|m| m.key.weights == weights) {
                found = true;
                *m.keep_alive.lock().unwrap() = Duration::ZERO;
                *m.expires.lock().unwrap() = Instant::now();
            }
            let (gone, keep): (Vec<_>, Vec<_>) = table.models.drain(..).partition(|m| m.key.weights == weights && m.in_flight.load(Ordering::SeqCst) == 0);
            table.models = keep;
            (gone, found)
        };
        for m in &stopped {
            m.shut_down();
        }
        found
    }

    pub fn unload_all(&self) {
        let all: Vec<_> = self.table.lock().unwrap_or_else(|e| e.into_inner()).models.drain(..).collect();
        for m in all {
            m.shut_down();
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.unload_all();
    }
}

/// Unloads models whose keep-alive ran out; stops when the supervisor is gone.
fn reap_expired(sup: Weak<Supervisor>) {
    loop {
        thread::sleep(Duration::from_millis(200));
        let Some(sup) = sup.upgrade() else { return };
        let now = Instant::now();
        let expired: Vec<_> = {
            let mut table = sup.table.lock().unwrap();
            // A runner a request holds is never stopped here, however late its deadline.
            let (gone, keep): (Vec<_>, Vec<_>) = table
                .models
                .drain(..)
                .partition(|m| !m.is_alive() || (m.in_flight.load(Ordering::SeqCst) == 0 && m.expires_at() <= now));
            table.models = keep;
            gone
        };
        for m in expired {
            m.shut_down();
        }
    }
}
