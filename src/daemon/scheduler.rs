//! Runs the daemon's work per key (an asset): at most one job per key at
//! a time, at most `concurrency` at once, a key backing off or settling
//! not at all yet.
//!
//! The scheduler knows nothing of Docker or plans: a job is any future,
//! keyed. Every pass offers the jobs it wants; [`Scheduler::admit`] says
//! whether a key may go now ([`Admission`]); [`Scheduler::dispatch`]
//! starts it on its own task, where it waits for a concurrency permit.
//! Level-triggered: a job refused now is not queued; the pass that comes
//! after the wait offers it again, planned afresh.
//!
//! Two delays per key:
//! - **wait**: the caller says how long the key must still wait: the
//!   backoff after failures (kept in the store, so a restart keeps them;
//!   [`backoff`] is the policy), or a stop still settling before its
//!   repair;
//! - **settle**: a settling job (a removal) runs only after every pass
//!   for [`SchedulerConfig::settle`] has planned it, and, when its file
//!   still exists, after that file has been quiet for
//!   [`SchedulerConfig::quiet`]. One that is waiting for its permit when
//!   a pass no longer plans it is dropped before it starts.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use crate::core::backoff::backoff;

/// A retry delay doubling from `first` to `max`, back to `first` on
/// success: for reconnects, whose failures are not kept anywhere.
#[derive(Clone, Copy, Debug)]
pub struct Doubling {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Doubling {
    pub fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            next: first,
        }
    }

    /// The delay after one more failure.
    pub fn failed(&mut self) -> Duration {
        let delay = self.next;
        self.next = (delay * 2).min(self.max);
        delay
    }

    pub fn succeeded(&mut self) {
        self.next = self.first;
    }

    /// Whether the delays have reached their cap (a long outage).
    pub fn at_max(&self) -> bool {
        self.next >= self.max
    }
}

#[derive(Clone, Copy, Debug)]
pub struct SchedulerConfig {
    /// How many jobs run at once.
    pub concurrency: usize,
    /// How long a settling job must stay planned, pass after pass.
    pub settle: Duration,
    /// How long the file of a settling job must have been quiet, when it
    /// still exists.
    pub quiet: Duration,
}

/// Whether a key may be dispatched now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    Go,
    /// A job of this key is queued or running; its end asks for a pass.
    Busy,
    /// Backing off or settling: offer it again after this long.
    Wait(Duration),
}

/// Called when a job that ran ends; `true` when no other job is queued
/// or running (the last of a batch).
pub type OnFinish = Arc<dyn Fn(bool) + Send + Sync>;

pub struct Scheduler<K, O> {
    permits: Arc<Semaphore>,
    /// Keys with a job queued or running: a key is in it from dispatch
    /// until its job has ended.
    in_flight: Arc<Mutex<BTreeSet<K>>>,
    /// `None`: the job never started (stopped, or no longer planned).
    tasks: JoinSet<Option<(K, O)>>,
    on_finish: OnFinish,
    /// Once cancelled, queued jobs are dropped instead of started;
    /// running ones finish.
    stop: CancellationToken,
    settle: Settle<K>,
    /// Settling jobs waiting for a permit; cancelled when a pass no
    /// longer plans them (the guards were checked at dispatch and must
    /// still hold when the job starts).
    waiting: Arc<Mutex<BTreeMap<K, CancellationToken>>>,
}

impl<K, O> Scheduler<K, O>
where
    K: Ord + Clone + std::fmt::Display + Send + 'static,
    O: Send + 'static,
{
    pub fn new(config: SchedulerConfig, stop: CancellationToken, on_finish: OnFinish) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(config.concurrency.max(1))),
            in_flight: Default::default(),
            tasks: JoinSet::new(),
            on_finish,
            stop,
            settle: Settle::new(config.settle, config.quiet),
            waiting: Default::default(),
        }
    }

    /// Keys with a job queued or running.
    pub fn in_flight(&self) -> BTreeSet<K> {
        self.in_flight.lock().expect("in-flight lock").clone()
    }

    /// The settling jobs this pass plans: starts their clocks, forgets
    /// the others and drops those of them waiting for a permit.
    pub fn plan_settling(&mut self, keys: BTreeSet<K>, now: Instant) {
        for (key, token) in self.waiting.lock().expect("waiting lock").iter() {
            if !keys.contains(key) {
                token.cancel();
            }
        }
        self.settle.observe(keys, now);
    }

    /// Whether `key` may go now. `wait`: how long the caller says it
    /// must still wait (a backoff, a stop settling); `quiet_for`: how
    /// long its file has not changed (`None`: gone), asked only of a
    /// settling key.
    pub fn admit(
        &self,
        key: &K,
        wait: Option<Duration>,
        quiet_for: impl FnOnce() -> Option<Duration>,
        now: Instant,
    ) -> Admission {
        if self.in_flight.lock().expect("in-flight lock").contains(key) {
            return Admission::Busy;
        }
        let settle = self.settle.wait(key, now, quiet_for);
        match settle.max(wait.filter(|d| !d.is_zero())) {
            Some(wait) => Admission::Wait(wait),
            None => Admission::Go,
        }
    }

    /// Starts `work` for `key` on its own task once a permit is free;
    /// `false` (and nothing started) when a job of `key` is in flight.
    pub fn dispatch<F>(&mut self, key: K, work: F) -> bool
    where
        F: Future<Output = O> + Send + 'static,
    {
        if !self
            .in_flight
            .lock()
            .expect("in-flight lock")
            .insert(key.clone())
        {
            return false;
        }
        let dropped = self.settle.is_settling(&key).then(|| {
            let token = CancellationToken::new();
            let mut waiting = self.waiting.lock().expect("waiting lock");
            waiting.insert(key.clone(), token.clone());
            token
        });
        let job = Job {
            key,
            permits: self.permits.clone(),
            in_flight: self.in_flight.clone(),
            waiting: self.waiting.clone(),
            on_finish: self.on_finish.clone(),
            stop: self.stop.clone(),
            dropped,
        };
        self.tasks.spawn(job.run(work));
        true
    }

    /// The jobs that have ended since the last call, with their outputs.
    pub fn reap(&mut self) -> Vec<(K, O)> {
        let mut finished = Vec::new();
        while let Some(result) = self.tasks.try_join_next() {
            if let Ok(Some(done)) = result {
                finished.push(done);
            }
        }
        finished
    }

    /// Waits for every job to end (after `stop`, queued ones end at
    /// once); returns those that ran, like [`Scheduler::reap`].
    pub async fn drain(&mut self) -> Vec<(K, O)> {
        let mut finished = Vec::new();
        while let Some(result) = self.tasks.join_next().await {
            if let Ok(Some(done)) = result {
                finished.push(done);
            }
        }
        finished
    }
}

/// One dispatched job and what it shares with the scheduler.
struct Job<K> {
    key: K,
    permits: Arc<Semaphore>,
    in_flight: Arc<Mutex<BTreeSet<K>>>,
    waiting: Arc<Mutex<BTreeMap<K, CancellationToken>>>,
    on_finish: OnFinish,
    stop: CancellationToken,
    /// A settling job's token: cancelled when no longer planned.
    dropped: Option<CancellationToken>,
}

impl<K: Ord + std::fmt::Display> Job<K> {
    async fn run<O>(self, work: impl Future<Output = O>) -> Option<(K, O)> {
        let permit = tokio::select! {
            biased;
            _ = self.stop.cancelled() => None,
            permit = self.permits.clone().acquire_owned() => permit.ok(),
        };
        if self.dropped.is_some() {
            self.waiting.lock().expect("waiting lock").remove(&self.key);
        }
        let dropped = self.dropped.as_ref().is_some_and(|t| t.is_cancelled());
        if dropped {
            tracing::info!(asset = %self.key, "removal no longer planned; dropped before it started");
        }
        let output = match permit {
            // Stopping: the next start plans this key again.
            None => None,
            Some(_) if dropped => None,
            Some(permit) => {
                let output = work.await;
                drop(permit);
                Some(output)
            }
        };
        let idle = {
            let mut in_flight = self.in_flight.lock().expect("in-flight lock");
            in_flight.remove(&self.key);
            in_flight.is_empty()
        };
        let output = output?;
        (self.on_finish)(idle);
        Some((self.key, output))
    }
}

/// Since when each settling job has been planned without interruption.
#[derive(Debug)]
struct Settle<K> {
    time: Duration,
    /// How long a file that still exists must have been quiet before a
    /// document gone from it counts as removed.
    quiet: Duration,
    since: BTreeMap<K, Instant>,
}

impl<K: Ord + Clone> Settle<K> {
    fn new(time: Duration, quiet: Duration) -> Self {
        Self {
            time,
            quiet,
            since: BTreeMap::new(),
        }
    }

    /// Starts the clock of new keys; forgets those no longer planned (the
    /// file came back, or the whole directory is now held).
    fn observe(&mut self, planned: BTreeSet<K>, now: Instant) {
        self.since.retain(|key, _| planned.contains(key));
        for key in planned {
            self.since.entry(key).or_insert(now);
        }
    }

    fn is_settling(&self, key: &K) -> bool {
        self.since.contains_key(key)
    }

    /// How long `key` must still wait, if it is settling.
    fn wait(
        &self,
        key: &K,
        now: Instant,
        quiet_for: impl FnOnce() -> Option<Duration>,
    ) -> Option<Duration> {
        let due = *self.since.get(key)? + self.time;
        let planned = due.saturating_duration_since(now);
        let file = quiet_for().map_or(Duration::ZERO, |q| self.quiet.saturating_sub(q));
        Some(planned.max(file)).filter(|d| !d.is_zero())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    const SETTLE: Duration = Duration::from_secs(1);
    const QUIET: Duration = Duration::from_secs(5);

    fn scheduler(concurrency: usize) -> (Scheduler<String, u32>, Arc<AtomicUsize>) {
        let finished = Arc::new(AtomicUsize::new(0));
        let counted = finished.clone();
        let config = SchedulerConfig {
            concurrency,
            settle: SETTLE,
            quiet: QUIET,
        };
        let on_finish: OnFinish = Arc::new(move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
        });
        (
            Scheduler::new(config, CancellationToken::new(), on_finish),
            finished,
        )
    }

    fn keys(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    /// A job that takes `secs` of (paused) time and counts how many run
    /// at once.
    fn job(
        secs: u64,
        running: &Arc<AtomicUsize>,
        most: &Arc<AtomicUsize>,
    ) -> impl Future<Output = u32> + Send + 'static {
        let (running, most) = (running.clone(), most.clone());
        async move {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(secs)).await;
            running.fetch_sub(1, Ordering::SeqCst);
            7
        }
    }

    #[tokio::test(start_paused = true)]
    async fn one_job_per_key_at_a_time_and_a_second_offer_is_busy() {
        let (mut s, finished) = scheduler(4);
        let counters = (Arc::default(), Arc::default());
        assert!(s.dispatch("a".into(), job(2, &counters.0, &counters.1)));
        assert!(!s.dispatch("a".into(), job(2, &counters.0, &counters.1)));
        let now = Instant::now();
        assert_eq!(s.admit(&"a".into(), None, || None, now), Admission::Busy);
        assert_eq!(s.admit(&"b".into(), None, || None, now), Admission::Go);
        assert_eq!(s.drain().await, vec![("a".to_string(), 7)]);
        assert_eq!(
            finished.load(Ordering::SeqCst),
            1,
            "the duplicate never ran"
        );
        assert_eq!(s.admit(&"a".into(), None, || None, now), Admission::Go);
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_the_concurrency_limit_runs_at_once() {
        let (mut s, _) = scheduler(2);
        let (running, most) = (Arc::default(), Arc::default());
        for key in ["a", "b", "c", "d", "e"] {
            assert!(s.dispatch(key.into(), job(1, &running, &most)));
        }
        let started = Instant::now();
        assert_eq!(s.drain().await.len(), 5);
        assert_eq!(most.load(Ordering::SeqCst), 2);
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(3),
            "three rounds of two"
        );
        assert!(s.in_flight().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_backing_off_waits_and_the_others_go() {
        let (s, _) = scheduler(1);
        let now = Instant::now();
        let wait = Some(Duration::from_secs(4));
        assert_eq!(
            s.admit(&"a".into(), wait, || None, now),
            Admission::Wait(Duration::from_secs(4))
        );
        assert_eq!(s.admit(&"b".into(), None, || None, now), Admission::Go);
        assert_eq!(
            s.admit(&"a".into(), Some(Duration::ZERO), || None, now),
            Admission::Go,
            "expired"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_settling_job_goes_only_after_staying_planned_for_the_settle_time() {
        let (mut s, _) = scheduler(1);
        let a = "a".to_string();
        s.plan_settling(keys(&["a"]), Instant::now());
        assert_eq!(
            s.admit(&a, None, || None, Instant::now()),
            Admission::Wait(SETTLE)
        );
        tokio::time::advance(SETTLE / 2).await;
        s.plan_settling(keys(&["a"]), Instant::now());
        assert_eq!(
            s.admit(&a, None, || None, Instant::now()),
            Admission::Wait(SETTLE / 2)
        );
        // A pass that does not plan it restarts its clock.
        s.plan_settling(keys(&[]), Instant::now());
        assert_eq!(s.admit(&a, None, || None, Instant::now()), Admission::Go);
        s.plan_settling(keys(&["a"]), Instant::now());
        assert_eq!(
            s.admit(&a, None, || None, Instant::now()),
            Admission::Wait(SETTLE)
        );
        tokio::time::advance(SETTLE).await;
        assert_eq!(s.admit(&a, None, || None, Instant::now()), Admission::Go);
    }

    #[tokio::test(start_paused = true)]
    async fn a_settling_job_waits_until_its_file_has_been_quiet() {
        let (mut s, _) = scheduler(1);
        let a = "a".to_string();
        s.plan_settling(keys(&["a"]), Instant::now());
        tokio::time::advance(SETTLE).await;
        let quiet = || Some(Duration::from_millis(2300));
        assert_eq!(
            s.admit(&a, None, quiet, Instant::now()),
            Admission::Wait(Duration::from_millis(2700))
        );
        assert_eq!(
            s.admit(&a, None, || Some(QUIET), Instant::now()),
            Admission::Go
        );
        let mut asked = false;
        let b = "b".to_string();
        let _ = s.admit(
            &b,
            None,
            || {
                asked = true;
                None
            },
            Instant::now(),
        );
        assert!(
            !asked,
            "the file of a key that is not settling is not looked at"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_settling_job_no_longer_planned_is_dropped_before_it_starts() {
        let (mut s, finished) = scheduler(1);
        let (running, most) = (Arc::default(), Arc::default());
        assert!(s.dispatch("busy".into(), job(10, &running, &most)));
        s.plan_settling(keys(&["gone"]), Instant::now());
        tokio::time::advance(SETTLE).await;
        assert!(s.dispatch("gone".into(), job(1, &running, &most)));
        // The next pass no longer plans the removal (its file came back).
        s.plan_settling(keys(&[]), Instant::now());
        assert_eq!(s.drain().await, vec![("busy".to_string(), 7)]);
        assert_eq!(finished.load(Ordering::SeqCst), 1);
        assert!(s.in_flight().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn after_stop_queued_jobs_are_dropped_and_running_ones_finish() {
        let stop = CancellationToken::new();
        let config = SchedulerConfig {
            concurrency: 1,
            settle: SETTLE,
            quiet: QUIET,
        };
        let mut s: Scheduler<String, u32> = Scheduler::new(config, stop.clone(), Arc::new(|_| {}));
        let (running, most) = (Arc::default(), Arc::default());
        s.dispatch("running".into(), job(5, &running, &most));
        s.dispatch("queued".into(), job(5, &running, &most));
        tokio::task::yield_now().await;
        stop.cancel();
        let started = Instant::now();
        assert_eq!(s.drain().await, vec![("running".to_string(), 7)]);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn the_end_of_the_last_job_of_a_batch_says_so() {
        let idle = Arc::new(Mutex::new(Vec::new()));
        let seen = idle.clone();
        let config = SchedulerConfig {
            concurrency: 2,
            settle: SETTLE,
            quiet: QUIET,
        };
        let on_finish: OnFinish = Arc::new(move |last| seen.lock().unwrap().push(last));
        let mut s: Scheduler<String, u32> =
            Scheduler::new(config, CancellationToken::new(), on_finish);
        let (running, most) = (Arc::default(), Arc::default());
        s.dispatch("a".into(), job(1, &running, &most));
        s.dispatch("b".into(), job(2, &running, &most));
        tokio::task::yield_now().await;
        assert!(s.reap().is_empty(), "none has ended yet");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(s.reap(), vec![("a".to_string(), 7)]);
        assert_eq!(s.drain().await, vec![("b".to_string(), 7)]);
        assert_eq!(*idle.lock().unwrap(), vec![false, true]);
    }

    #[test]
    fn a_reconnect_delay_doubles_to_its_cap_and_starts_over_after_a_success() {
        let mut delay = Doubling::new(Duration::from_millis(250), Duration::from_secs(1));
        let delays: Vec<u128> = (0..4).map(|_| delay.failed().as_millis()).collect();
        assert_eq!(delays, vec![250, 500, 1000, 1000]);
        assert!(delay.at_max());
        delay.succeeded();
        assert_eq!(delay.failed(), Duration::from_millis(250));
    }

    #[test]
    fn backoff_doubles_from_one_second_to_five_minutes() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(5), Duration::from_secs(16));
        assert_eq!(backoff(9), Duration::from_secs(256));
        assert_eq!(backoff(10), Duration::from_secs(300));
        assert_eq!(backoff(1000), Duration::from_secs(300));
    }
}
