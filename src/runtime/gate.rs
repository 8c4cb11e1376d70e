//! Keeps a load's measurements apart from other loads' work. Start-up and polls load
//! several models at once, but the memory probe reads one process-wide peak (another
//! load's allocations would count as the probe's) and calibration times runs (another
//! load's work on the cores would slow them, and shrink the batch size chosen). So loads
//! build and warm up their sessions side by side, holding [`loading`] shared, and measure
//! one at a time, holding [`measuring`] alone: while one model measures, no other load
//! builds, warms up or measures. Requests being served are not held back.

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static GATE: RwLock<()> = RwLock::new(());

/// Held while a load builds or warms up sessions: any number at once, none while a load
/// measures.
pub fn loading() -> RwLockReadGuard<'static, ()> {
    GATE.read().unwrap_or_else(|p| p.into_inner())
}

/// Proof that no other load works meanwhile; the measurements ask for it.
pub struct Measuring {
    _held: RwLockWriteGuard<'static, ()>,
}

/// Waits until no other load builds, warms up or measures, and holds them off until dropped.
pub fn measuring() -> Measuring {
    Measuring {
        _held: GATE.write().unwrap_or_else(|p| p.into_inner()),
    }
}
