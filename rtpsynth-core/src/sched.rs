//! Deadline scheduling of many periodic jobs on one named worker thread,
//! free of GStreamer.
//!
//! librtpsynth's `RtpProc` keeps its jobs in a list sorted by insertion
//! (O(n) per packet); here a binary heap orders them (O(log n)), and a job's
//! next deadline is computed by the job from its own start time, so no error
//! accumulates from one wake to the next.

use std::cmp::Reverse;
use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard, Weak};
use std::thread::{self, ThreadId};
use std::time::Duration;

/// Jobs due within this much of the one that woke the worker run in the same
/// wake. Thousands of periodic jobs with scattered phases would otherwise
/// wake the thread once each (10,000 wakes a second for 200 calls at 20 ms);
/// with the slack it wakes at most once per `SLACK_NS`, and a job runs at
/// most this much before its deadline (its own timing, e.g. RTP timestamps,
/// is unchanged).
pub const SLACK_NS: u64 = 1_000_000;

/// Nanoseconds on CLOCK_MONOTONIC, the clock GStreamer's system clock reads
/// by default, so deadlines computed from pipeline clock times line up.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we pass it.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Work a worker runs when its deadline comes.
pub trait Job: Send + Sync {
    /// Runs the job at `now` (monotonic ns). Returns the next deadline, or
    /// None to leave the worker.
    fn run(&self, now: u64) -> Option<u64>;
}

/// A job's handle on its worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JobId(u64);

struct Scheduled {
    job: Arc<dyn Job>,
    deadline: u64,
}

#[derive(Default)]
struct Queue {
    /// (deadline, id); entries whose deadline no longer matches the job's
    /// are stale (the job was rescheduled or removed) and are skipped.
    heap: BinaryHeap<Reverse<(u64, u64)>>,
    jobs: HashMap<u64, Scheduled>,
    next_id: u64,
    running: Option<u64>,
    /// Removers waiting for `running` to change; only they need a wake-up
    /// after each job, and a futex wake is a system call.
    waiters: usize,
    shutdown: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Wakes the worker (an earlier deadline, shutdown) and the removers
    /// waiting for a running job to finish.
    cv: Condvar,
}

fn lock(m: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One worker thread and the jobs it runs. Dropping the last handle stops
/// the thread.
pub struct Worker {
    name: String,
    shared: Arc<Shared>,
    thread_id: ThreadId,
    thread: Option<thread::JoinHandle<()>>,
}

static WORKERS: LazyLock<Mutex<HashMap<String, Weak<Worker>>>> = LazyLock::new(Default::default);

impl Worker {
    /// The process-wide worker named `name`, started on first use.
    pub fn named(name: &str) -> std::io::Result<Arc<Worker>> {
        let mut workers = WORKERS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = workers.get(name).and_then(Weak::upgrade) {
            return Ok(w);
        }
        let w = Arc::new(Worker::spawn(name)?);
        workers.retain(|_, w| w.strong_count() > 0);
        workers.insert(name.to_string(), Arc::downgrade(&w));
        Ok(w)
    }

    fn spawn(name: &str) -> std::io::Result<Worker> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            cv: Condvar::new(),
        });
        let s = shared.clone();
        // Thread names are limited to 15 bytes on Linux.
        let thread_name: String = format!("sched:{name}").chars().take(15).collect();
        let thread = thread::Builder::new()
            .name(thread_name)
            .spawn(move || run_worker(&s))?;
        Ok(Worker {
            name: name.to_string(),
            shared,
            thread_id: thread.thread().id(),
            thread: Some(thread),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Schedules `job` to run first at `deadline` (monotonic ns).
    pub fn add(&self, job: Arc<dyn Job>, deadline: u64) -> JobId {
        let mut q = lock(&self.shared.queue);
        let id = q.next_id;
        q.next_id += 1;
        q.jobs.insert(id, Scheduled { job, deadline });
        let earliest = q.heap.peek().is_none_or(|Reverse((d, _))| deadline < *d);
        q.heap.push(Reverse((deadline, id)));
        drop(q);
        if earliest {
            self.shared.cv.notify_all();
        }
        JobId(id)
    }

    /// Removes a job. When it returns the job is not running and will not run
    /// again, unless called from the job itself (then it stops after this run).
    pub fn remove(&self, id: JobId) {
        let mut q = lock(&self.shared.queue);
        q.jobs.remove(&id.0);
        if thread::current().id() != self.thread_id {
            while q.running == Some(id.0) {
                q.waiters += 1;
                q = self.shared.cv.wait(q).unwrap_or_else(|e| e.into_inner());
                q.waiters -= 1;
            }
        }
    }

    /// Jobs scheduled now.
    pub fn len(&self) -> usize {
        lock(&self.shared.queue).jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        lock(&self.shared.queue).shutdown = true;
        self.shared.cv.notify_all();
        if let Some(t) = self.thread.take()
            && t.thread().id() != thread::current().id()
        {
            let _ = t.join();
        }
    }
}

fn run_worker(shared: &Shared) {
    let mut q = lock(&shared.queue);
    loop {
        if q.shutdown {
            return;
        }
        let Some(&Reverse((deadline, id))) = q.heap.peek() else {
            q = shared.cv.wait(q).unwrap_or_else(|e| e.into_inner());
            continue;
        };
        let live = q.jobs.get(&id).is_some_and(|s| s.deadline == deadline);
        if !live {
            q.heap.pop();
            continue;
        }
        let now = monotonic_ns();
        // Sleep until the earliest deadline itself (not SLACK_NS before it),
        // then run every job due within the slack after it.
        if deadline > now + SLACK_NS {
            q = shared
                .cv
                .wait_timeout(q, Duration::from_nanos(deadline - now))
                .unwrap_or_else(|e| e.into_inner())
                .0;
            continue;
        }
        q.heap.pop();
        let Some(job) = q.jobs.get(&id).map(|s| s.job.clone()) else {
            continue;
        };
        q.running = Some(id);
        drop(q);
        let next = job.run(now);
        q = lock(&shared.queue);
        q.running = None;
        match (next, q.jobs.entry(id)) {
            (Some(next), Entry::Occupied(mut e)) => {
                e.get_mut().deadline = next;
                q.heap.push(Reverse((next, id)));
            }
            (None, Entry::Occupied(e)) => {
                e.remove();
            }
            (_, Entry::Vacant(_)) => {}
        }
        if q.waiters > 0 {
            shared.cv.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Runs `count` times, every `period` ns from `start`.
    struct Periodic {
        start: u64,
        period: u64,
        runs: AtomicU64,
        count: u64,
        lateness: Mutex<Vec<u64>>,
    }

    impl Job for Periodic {
        fn run(&self, now: u64) -> Option<u64> {
            let k = self.runs.fetch_add(1, Ordering::SeqCst);
            let due = self.start + k * self.period;
            self.lateness.lock().unwrap().push(now.saturating_sub(due));
            assert!(now + SLACK_NS >= due, "never earlier than the slack");
            (k + 1 < self.count).then(|| self.start + (k + 1) * self.period)
        }
    }

    fn periodic(start: u64, period: u64, count: u64) -> Arc<Periodic> {
        Arc::new(Periodic {
            start,
            period,
            runs: AtomicU64::new(0),
            count,
            lateness: Mutex::new(vec![]),
        })
    }

    #[test]
    fn many_jobs_run_on_time_on_one_thread() {
        let w = Worker::spawn("t-many").unwrap();
        let start = monotonic_ns() + 5_000_000;
        let jobs: Vec<_> = (0..500)
            .map(|i| periodic(start + i * 20_000, 10_000_000, 10))
            .collect();
        for j in &jobs {
            w.add(j.clone(), j.start);
        }
        thread::sleep(Duration::from_millis(150));
        for j in &jobs {
            assert_eq!(j.runs.load(Ordering::SeqCst), 10);
        }
        assert!(w.is_empty(), "jobs that return None leave");
        let mut late: Vec<u64> = jobs
            .iter()
            .flat_map(|j| j.lateness.lock().unwrap().clone())
            .collect();
        late.sort_unstable();
        assert!(
            late[late.len() / 2] < 5_000_000,
            "median lateness {} ns",
            late[late.len() / 2]
        );
    }

    /// Voluntary context switches of the thread named `name` (how often it
    /// slept), once that thread has started and named itself.
    fn sleeps_of(name: &str) -> u64 {
        for _ in 0..1000 {
            for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
                let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
                if comm.trim() == name {
                    let status = std::fs::read_to_string(task.path().join("status")).unwrap();
                    let line = status
                        .lines()
                        .find(|l| l.starts_with("voluntary_ctxt_switches:"))
                        .unwrap();
                    return line.split_whitespace().nth(1).unwrap().parse().unwrap();
                }
            }
            thread::sleep(Duration::from_millis(1));
        }
        panic!("no thread {name}");
    }

    #[test]
    fn scattered_deadlines_share_wakes() {
        let w = Worker::spawn("coalesce").unwrap();
        // 1,000 jobs every 10 ms, phases spread over the whole period: one
        // wake per job would be 1,000 wakes per period.
        let start = monotonic_ns() + 5_000_000;
        let jobs: Vec<_> = (0..1000)
            .map(|i| periodic(start + i * 10_000, 10_000_000, 10))
            .collect();
        for j in &jobs {
            w.add(j.clone(), j.start);
        }
        let before = sleeps_of("sched:coalesce");
        thread::sleep(Duration::from_millis(150));
        let sleeps = sleeps_of("sched:coalesce") - before;
        assert!(jobs.iter().all(|j| j.runs.load(Ordering::SeqCst) == 10));
        // 10 periods of 10 ms, one wake per SLACK_NS at most: about 100.
        assert!(sleeps < 300, "{sleeps} wakes for 10,000 runs");
    }

    struct Recorder {
        order: Arc<Mutex<Vec<u32>>>,
        tag: u32,
    }
    impl Job for Recorder {
        fn run(&self, _now: u64) -> Option<u64> {
            self.order.lock().unwrap().push(self.tag);
            None
        }
    }

    #[test]
    fn runs_in_deadline_order_whatever_the_insertion_order() {
        let w = Worker::spawn("t-order").unwrap();
        let order = Arc::new(Mutex::new(vec![]));
        let base = monotonic_ns() + 20_000_000;
        for (tag, offset) in [
            (3u32, 3_000_000u64),
            (1, 1_000_000),
            (4, 4_000_000),
            (2, 2_000_000),
            (0, 0),
        ] {
            w.add(
                Arc::new(Recorder {
                    order: order.clone(),
                    tag,
                }),
                base + offset,
            );
        }
        thread::sleep(Duration::from_millis(60));
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4]);
    }

    struct Slow {
        inside: AtomicU64,
        done: AtomicU64,
    }
    impl Job for Slow {
        fn run(&self, now: u64) -> Option<u64> {
            self.inside.store(1, Ordering::SeqCst);
            thread::sleep(Duration::from_millis(30));
            self.done.fetch_add(1, Ordering::SeqCst);
            self.inside.store(0, Ordering::SeqCst);
            Some(now + 1_000_000)
        }
    }

    #[test]
    fn remove_waits_for_a_running_job_and_stops_it() {
        let w = Worker::spawn("t-remove").unwrap();
        let job = Arc::new(Slow {
            inside: AtomicU64::new(0),
            done: AtomicU64::new(0),
        });
        let id = w.add(job.clone(), monotonic_ns());
        while job.inside.load(Ordering::SeqCst) == 0 {
            thread::sleep(Duration::from_millis(1));
        }
        w.remove(id);
        assert_eq!(
            job.inside.load(Ordering::SeqCst),
            0,
            "not running after remove"
        );
        let runs = job.done.load(Ordering::SeqCst);
        thread::sleep(Duration::from_millis(50));
        assert_eq!(job.done.load(Ordering::SeqCst), runs, "never runs again");
    }

    #[test]
    fn named_workers_are_shared_and_stop_with_their_last_user() {
        let a = Worker::named("t-shared").unwrap();
        let b = Worker::named("t-shared").unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let c = Worker::named("t-other").unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
        drop((a, b));
        let d = Worker::named("t-shared").unwrap();
        assert_eq!(d.name(), "t-shared");
    }
}
