//! The table of open client connections over all ports: admission at the cap, and which
//! connection to shed for a newcomer. It never touches a socket; a connection's task
//! watches its [`ConnState::close`] and closes itself. Time is passed in (`now`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Notify;

/// Shared state of one connection.
#[derive(Debug)]
pub struct ConnState {
    /// Requests (HTTP/2: streams) whose response has not been fully sent yet.
    in_flight: AtomicUsize,
    /// When the last request started or finished, or the connection was accepted.
    last_active: Mutex<Instant>,
    /// At least one request arrived (before that, the header-read timeout applies).
    used: AtomicBool,
    /// Set once the connection was asked to close; once idle it no longer counts against
    /// the cap.
    closing: AtomicBool,
    /// Woken when the table sheds this connection.
    pub close: Notify,
}

impl ConnState {
    fn new(now: Instant) -> ConnState {
        ConnState {
            in_flight: AtomicUsize::new(0),
            last_active: Mutex::new(now),
            used: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            close: Notify::new(),
        }
    }

    /// A request started; the returned guard ends it when dropped (after the response
    /// body was sent, or the request was abandoned).
    pub fn begin(self: &Arc<Self>, now: Instant) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.used.store(true, Ordering::SeqCst);
        self.touch(now);
        RequestGuard(self.clone())
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    pub fn used(&self) -> bool {
        self.used.load(Ordering::SeqCst)
    }

    pub fn last_active(&self) -> Instant {
        *self.last_active.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks the connection as closing (it stops counting against the cap).
    /// True the first time.
    pub fn mark_closing(&self) -> bool {
        !self.closing.swap(true, Ordering::SeqCst)
    }

    fn touch(&self, now: Instant) {
        *self.last_active.lock().unwrap_or_else(|p| p.into_inner()) = now;
    }

    /// Whether it counts against the cap: open and not closing, or closing but still
    /// answering a request that slipped in before the close (it stays until that ends).
    fn counts(&self) -> bool {
        !self.closing.load(Ordering::SeqCst) || self.in_flight() > 0
    }

    fn idle(&self) -> bool {
        self.in_flight() == 0 && !self.closing.load(Ordering::SeqCst)
    }
}

/// Ends one request of a connection on drop.
pub struct RequestGuard(Arc<ConnState>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.touch(Instant::now());
    }
}

/// What [`ConnTable::admit`] decided.
pub enum Admission {
    /// Serve it; the slot frees itself on drop.
    Admitted { slot: Slot, shed_one: bool },
    /// At the cap with no idle connection to shed.
    Refused,
}

/// All open connections, and the cap.
#[derive(Debug)]
pub struct ConnTable {
    max: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    conns: HashMap<u64, Arc<ConnState>>,
}

impl Inner {
    /// Asks the longest-idle connection to close; false when none is idle.
    fn close_longest_idle(&self) -> bool {
        let victim = self
            .conns
            .values()
            .filter(|c| c.idle())
            .min_by_key(|c| c.last_active());
        if let Some(victim) = victim {
            victim.mark_closing();
            victim.close.notify_one();
        }
        victim.is_some()
    }
}

impl ConnTable {
    pub fn new(max: usize) -> Arc<ConnTable> {
        Arc::new(ConnTable {
            max,
            inner: Mutex::new(Inner::default()),
        })
    }

    /// Admits a new connection if fewer than `max` are open and not closing. At the cap,
    /// asks the connection idle the longest (no request in flight) to close and admits
    /// the newcomer in its place; refuses when none is idle. Connections already asked to
    /// close do not count unless a request is still in flight on them, so the open total
    /// stays at most `max` plus idle ones closing (each gone within a second).
    pub fn admit(self: &Arc<Self>, now: Instant) -> Admission {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let live = inner.conns.values().filter(|c| c.counts()).count();
        let mut shed_one = false;
        if live >= self.max {
            if !inner.close_longest_idle() {
                return Admission::Refused;
            }
            shed_one = true;
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let state = Arc::new(ConnState::new(now));
        inner.conns.insert(id, state.clone());
        Admission::Admitted {
            slot: Slot {
                table: self.clone(),
                id,
                state,
            },
            shed_one,
        }
    }

    /// Asks the longest-idle connection to close (when accepting fails for lack of file
    /// descriptors). True when one was found.
    pub fn shed_idle(&self) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .close_longest_idle()
    }

    /// Connections open now, closing ones included.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .conns
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One admitted connection's place in the table; removed on drop.
pub struct Slot {
    table: Arc<ConnTable>,
    id: u64,
    pub state: Arc<ConnState>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut inner = self.table.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.conns.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn admitted(a: Admission) -> (Slot, bool) {
        match a {
            Admission::Admitted { slot, shed_one } => (slot, shed_one),
            Admission::Refused => panic!("refused"),
        }
    }

    #[test]
    fn below_the_cap_everyone_is_admitted_and_slots_free_themselves() {
        let t = ConnTable::new(2);
        let now = Instant::now();
        let (a, shed_a) = admitted(t.admit(now));
        let (_b, shed_b) = admitted(t.admit(now));
        assert!(!shed_a && !shed_b);
        assert_eq!(t.len(), 2);
        drop(a);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn at_the_cap_the_longest_idle_connection_is_shed() {
        let t = ConnTable::new(2);
        let t0 = Instant::now();
        let (old, _) = admitted(t.admit(t0));
        let (young, _) = admitted(t.admit(t0 + Duration::from_secs(5)));
        let (_new, shed) = admitted(t.admit(t0 + Duration::from_secs(6)));
        assert!(shed);
        assert!(old.state.closing.load(Ordering::SeqCst));
        assert!(!young.state.closing.load(Ordering::SeqCst));
    }

    #[test]
    fn busy_connections_are_never_shed_and_newcomers_are_refused() {
        let t = ConnTable::new(1);
        let now = Instant::now();
        let (busy, _) = admitted(t.admit(now));
        let _guard = busy.state.begin(now);
        assert!(matches!(t.admit(now), Admission::Refused));
        assert!(!busy.state.closing.load(Ordering::SeqCst));
    }

    #[test]
    fn a_connection_becomes_idle_again_when_its_request_ends() {
        let t = ConnTable::new(1);
        let now = Instant::now();
        let (conn, _) = admitted(t.admit(now));
        drop(conn.state.begin(now));
        assert!(conn.state.used());
        let (_new, shed) = admitted(t.admit(now));
        assert!(shed);
    }

    #[test]
    fn closing_connections_do_not_count_but_are_not_shed_twice() {
        let t = ConnTable::new(1);
        let now = Instant::now();
        let (_a, _) = admitted(t.admit(now));
        let (_b, shed_b) = admitted(t.admit(now)); // sheds a
        let (_c, shed_c) = admitted(t.admit(now)); // sheds b
        assert!(shed_b && shed_c);
        assert_eq!(t.len(), 3);
        let busy = &_c.state;
        let _g = busy.begin(now);
        assert!(matches!(t.admit(now), Admission::Refused));
    }
}
