//! Where `ceremony run` spends its time: process-wide counters of wall time
//! per phase, read by the benchmark (`byok-bench`, feature `bench`).
//!
//! Timing is always on: one clock read at each end of a phase (tens of
//! nanoseconds) against milliseconds of HSM work per key. Phases may nest
//! (fsyncs happen inside bundle writes and transcript appends; token searches
//! inside key generation), so the counters do not add up to the total.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A phase of `ceremony run`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Opening the module, the token and logging in.
    Session,
    /// Self-tests (one per key spec × algorithm × wrapping-key size).
    SelfTest,
    /// `C_FindObjects` searches over the token (labels, IDs, existing keys).
    Search,
    /// `C_GenerateKey` / `C_GenerateKeyPair` of the keys to export.
    Generate,
    /// Reading key attributes back and computing check values (KCV, HMAC check, public key).
    Checks,
    /// One wrap: checking the parameters again, check values, importing the
    /// wrapping key, `C_WrapKey`, the manifest.
    Wrap,
    /// Bundle directories: the key's directory, leftovers of an interrupted
    /// run, staging, files, rename; fsyncs included.
    BundleWrite,
    /// Transcript appends, fsyncs included.
    Transcript,
    /// Every `fsync` (files and directories), wherever it happens.
    Fsync,
    /// Media summary and completion entry at the end.
    Finish,
}

/// Every phase, in report order.
pub(crate) const PHASES: [Phase; 10] = [
    Phase::Session,
    Phase::SelfTest,
    Phase::Search,
    Phase::Generate,
    Phase::Checks,
    Phase::Wrap,
    Phase::BundleWrite,
    Phase::Transcript,
    Phase::Fsync,
    Phase::Finish,
];

impl Phase {
    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Session => "session/login",
            Phase::SelfTest => "self-test",
            Phase::Search => "token searches",
            Phase::Generate => "generate",
            Phase::Checks => "attributes+check values",
            Phase::Wrap => "wrap (params, checks, C_WrapKey)",
            Phase::BundleWrite => "bundle writes",
            Phase::Transcript => "transcript appends",
            Phase::Fsync => "fsyncs (inside the above)",
            Phase::Finish => "summary+complete",
        }
    }
}

const N: usize = PHASES.len();
static NANOS: [AtomicU64; N] = [const { AtomicU64::new(0) }; N];
static COUNTS: [AtomicU64; N] = [const { AtomicU64::new(0) }; N];

/// Run `f`, adding its wall time to `phase`.
pub fn time<T>(phase: Phase, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
    NANOS[phase as usize].fetch_add(nanos, Ordering::Relaxed);
    COUNTS[phase as usize].fetch_add(1, Ordering::Relaxed);
    out
}

/// Set every counter to zero.
pub fn reset() {
    for i in 0..N {
        NANOS[i].store(0, Ordering::Relaxed);
        COUNTS[i].store(0, Ordering::Relaxed);
    }
}

/// The counters: per phase, total time and how many times it ran.
pub fn snapshot() -> Vec<(Phase, Duration, u64)> {
    PHASES
        .iter()
        .map(|&p| {
            (
                p,
                Duration::from_nanos(NANOS[p as usize].load(Ordering::Relaxed)),
                COUNTS[p as usize].load(Ordering::Relaxed),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_adds_to_its_phase_only() {
        let before = snapshot();
        let v = time(Phase::Finish, || {
            std::thread::sleep(Duration::from_millis(2));
            7
        });
        assert_eq!(v, 7);
        let after = snapshot();
        let finish = Phase::Finish as usize;
        assert!(after[finish].1 - before[finish].1 >= Duration::from_millis(2));
        assert!(after[finish].2 > before[finish].2);
    }
}
