//! The transcript writer's CPU priority: below all other work while it
//! keeps up, raised while it is behind.
//!
//! A thread that is running when the relay (or the MTA, or the milter)
//! wakes up can delay it by up to a scheduler time slice: a millisecond or
//! more, where a whole milter step takes tens of microseconds. At nice 10
//! the writer still did that often enough to dominate the relayed steps'
//! p99 on a busy 2-core machine (docs/performance.md). A thread in Linux's
//! idle scheduling class (`SCHED_IDLE`) is preempted at once by any normal
//! thread that wakes, so the writer then only uses CPU nobody else wants.
//!
//! On a machine that stays busy, such a thread may hardly run at all, and
//! recording would stop (the queue fills up). So when a relay finds the
//! writer's queue three quarters full, it raises the writer to the normal class
//! at nice 10 (where it gets a share of the CPU), and the writer goes back
//! to the idle class once it has emptied its queue.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// The writer's niceness in the normal class (while behind).
const NICENESS: i32 = 10;

/// The writer's priority, shared by the writer thread and the relays.
#[derive(Debug, Default)]
pub struct WriterPriority {
    /// Change priorities at all (tests that run the writer on their own
    /// thread leave it off).
    enabled: bool,
    /// The writer's thread id, once it has started (0 before).
    tid: AtomicI32,
    /// The writer is in the normal class (behind).
    raised: AtomicBool,
    /// The writer uses the idle class (this process may raise it again).
    use_idle: AtomicBool,
}

impl WriterPriority {
    /// Priorities that change (the proxy's).
    pub fn new() -> WriterPriority {
        WriterPriority {
            enabled: true,
            ..WriterPriority::default()
        }
    }

    /// On the writer thread, first: it goes to nice 10 and the idle class.
    pub fn start_on_writer(&self) {
        if !self.enabled {
            return;
        }
        let tid = rustix::thread::gettid();
        self.tid
            .store(tid.as_raw_nonzero().get(), Ordering::Release);
        // The niceness is kept across class changes: it applies whenever a
        // relay raises the writer to the normal class.
        if let Err(e) = rustix::process::setpriority_process(Some(tid), NICENESS) {
            tracing::debug!("cannot lower the transcript writer's priority: {e}");
        }
        // Only where the writer can be raised again: leaving the idle
        // class takes CAP_SYS_NICE or an RLIMIT_NICE that allows nice 10
        // (sched(7)). Without either, a writer put in the idle class would
        // stay there for good and, on a busy machine, recording would stop;
        // it stays in the normal class at nice 10 instead.
        if may_leave_idle_class() {
            self.use_idle.store(true, Ordering::Release);
            set_class(tid.as_raw_nonzero().get(), Class::Idle);
        } else {
            tracing::debug!(
                "the transcript writer stays at nice {NICENESS}: this process may not \
                 raise a thread out of the idle scheduling class (no CAP_SYS_NICE, RLIMIT_NICE)"
            );
        }
    }

    /// On the writer thread, when its queue is empty: back to the idle
    /// class if a relay raised it.
    pub fn caught_up(&self) {
        if self.enabled
            && self.use_idle.load(Ordering::Acquire)
            && self.raised.swap(false, Ordering::AcqRel)
        {
            set_class(self.tid.load(Ordering::Acquire), Class::Idle);
        }
    }

    /// From a relay that found the writer's queue filling up: the writer
    /// goes to the normal class (once, until it has caught up).
    pub fn behind(&self) {
        if !self.enabled
            || !self.use_idle.load(Ordering::Acquire)
            || self.raised.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let tid = self.tid.load(Ordering::Acquire);
        if tid != 0 {
            set_class(tid, Class::Normal);
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Class {
    Idle,
    Normal,
}

/// Puts thread `tid` in a scheduling class (Linux only; elsewhere the
/// writer keeps its niceness alone).
/// Whether this process may move a thread from the idle class back to the
/// normal class at nice 10. Tried on a short-lived thread of its own (a
/// new thread has its creator's credentials): the rule depends on
/// capabilities and limits, and trying is the one sure way to know.
fn may_leave_idle_class() -> bool {
    std::thread::spawn(|| {
        let tid = rustix::thread::gettid();
        rustix::process::setpriority_process(Some(tid), NICENESS).is_ok()
            && set_class(tid.as_raw_nonzero().get(), Class::Idle)
            && set_class(tid.as_raw_nonzero().get(), Class::Normal)
    })
    .join()
    .unwrap_or(false)
}

/// Puts thread `tid` in `class`; false (logged) if the kernel refused.
fn set_class(tid: i32, class: Class) -> bool {
    #[cfg(target_os = "linux")]
    {
        let policy = match class {
            Class::Idle => libc::SCHED_IDLE,
            Class::Normal => libc::SCHED_OTHER,
        };
        let param = libc::sched_param { sched_priority: 0 };
        // `unsafe` is needed because neither rustix nor nix wraps
        // sched_setscheduler(2). SAFETY: the call only reads `param`, a
        // valid, initialised `sched_param` that outlives the call, and keeps
        // no pointer to it; `tid` names a thread of this process (a stale
        // id at worst makes the call fail with ESRCH, which is reported).
        let r = unsafe { libc::sched_setscheduler(tid, policy, &param) };
        if r != 0 {
            tracing::debug!(
                "cannot put the transcript writer in the {class:?} scheduling class: {}",
                std::io::Error::last_os_error()
            );
        }
        r == 0
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (tid, class);
        false
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::mpsc::channel;

    /// (scheduling policy, niceness) of thread `tid`, from /proc.
    fn policy_and_nice(tid: i32) -> (u32, i32) {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
        // Fields after the command name (which ends with ')'): field 3 is
        // the first, niceness is field 19, policy field 41.
        let f: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        (f[41 - 3].parse().unwrap(), f[19 - 3].parse().unwrap())
    }

    #[test]
    fn idle_while_keeping_up_normal_at_nice_10_while_behind() {
        let p = Arc::new(WriterPriority::new());
        let (to_writer, from_test) = channel::<()>();
        let (to_test, from_writer) = channel::<i32>();
        let writer = {
            let p = p.clone();
            std::thread::spawn(move || {
                p.start_on_writer();
                to_test.send(p.tid.load(Ordering::Acquire)).unwrap();
                from_test.recv().unwrap();
                p.caught_up();
                to_test.send(0).unwrap();
                from_test.recv().unwrap();
            })
        };
        let tid = from_writer.recv().unwrap();
        const IDLE: u32 = libc::SCHED_IDLE as u32;
        if !may_leave_idle_class() {
            // Not root (no CAP_SYS_NICE) here: the other test covers it.
            assert_eq!(policy_and_nice(tid), (0, 10), "normal class, nice 10");
            to_writer.send(()).unwrap();
            from_writer.recv().unwrap();
            to_writer.send(()).unwrap();
            writer.join().unwrap();
            return;
        }
        assert_eq!(policy_and_nice(tid), (IDLE, 10), "idle class to start");
        p.behind();
        assert_eq!(
            policy_and_nice(tid),
            (0, 10),
            "raised: normal class, nice 10"
        );
        p.behind();
        assert_eq!(policy_and_nice(tid), (0, 10), "raised once");
        to_writer.send(()).unwrap();
        from_writer.recv().unwrap();
        assert_eq!(policy_and_nice(tid).0, IDLE, "back once caught up");
        to_writer.send(()).unwrap();
        writer.join().unwrap();
        // Off (the tests' writers): nothing changes.
        let off = WriterPriority::default();
        off.start_on_writer();
        off.behind();
        assert_eq!(off.tid.load(Ordering::Acquire), 0);
    }

    /// A process that may not raise a thread out of the idle class (no
    /// CAP_SYS_NICE, RLIMIT_NICE 0: an ordinary user) keeps its writer in
    /// the normal class at nice 10 for good: in the idle class it could
    /// never be raised when behind. Made here by dropping CAP_SYS_NICE from
    /// the writer thread alone (capabilities are per thread, and threads it
    /// starts inherit them).
    #[test]
    fn without_the_right_to_raise_it_the_writer_never_enters_the_idle_class() {
        use rustix::process::{Resource, getrlimit};
        use rustix::thread::{CapabilitySet, capabilities, set_capabilities};
        // An RLIMIT_NICE of 10 or more allows nice 10 without the capability.
        let rlimit_allows = getrlimit(Resource::Nice).current.is_some_and(|n| n >= 10);
        let p = Arc::new(WriterPriority::new());
        let q = p.clone();
        let (tid, states) = std::thread::spawn(move || {
            let mut caps = capabilities(None).unwrap();
            caps.effective.remove(CapabilitySet::SYS_NICE);
            caps.permitted.remove(CapabilitySet::SYS_NICE);
            set_capabilities(None, caps).unwrap();
            q.start_on_writer();
            let tid = q.tid.load(Ordering::Acquire);
            let mut states = vec![policy_and_nice(tid)];
            q.behind();
            states.push(policy_and_nice(tid));
            q.caught_up();
            states.push(policy_and_nice(tid));
            (tid, states)
        })
        .join()
        .unwrap();
        assert_ne!(tid, 0);
        if rlimit_allows {
            assert_eq!(states[0].0, libc::SCHED_IDLE as u32, "{states:?}");
        } else {
            assert_eq!(states, [(0, 10); 3], "normal class, nice 10, throughout");
        }
        // The relays' side never asked for the idle class either.
        assert!(rlimit_allows || !p.use_idle.load(Ordering::Acquire));
    }
}
