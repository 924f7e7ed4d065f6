//! The server's memory budget: one bound on the bytes it holds for its
//! clients, whatever their number.
//!
//! A server holds bytes on its clients' behalf in three places: messages a
//! client has partly sent (the server waits for the rest), messages queued
//! for a client that reads slowly, and publications waiting for the
//! broker. Each is bounded per connection or per queue, but their sum is
//! not: a thousand clients that each trickle in a message just under the
//! size limit make the server hold a thousand such messages. A
//! [`MemoryBudget`] bounds that sum. Every holder counts what it holds
//! beyond a small allowance ([`MemoryBudget::UNCOUNTED`], the size of one
//! read: what every busy connection holds anyway), and what would take the
//! total past the limit is refused: the server closes the connection that
//! would have grown it (1009 for a message being received, 1013 for a
//! queue) or refuses the publication, and the process does not grow.
//!
//! Counting touches one shared atomic only for holders past their
//! allowance: a connection exchanging small messages never does.
//!
//! ```
//! use ws_core::budget::MemoryBudget;
//!
//! let budget = MemoryBudget::new(100_000);
//! let a = MemoryBudget::UNCOUNTED;
//! // Holding its allowance costs nothing.
//! budget.adjust(0, a).unwrap();
//! assert_eq!(budget.used(), 0);
//! // Beyond it, every byte counts.
//! budget.adjust(a, a + 60_000).unwrap();
//! assert_eq!(budget.used(), 60_000);
//! let err = budget.adjust(0, a + 60_000).unwrap_err();
//! assert_eq!(err.limit, 100_000);
//! // Giving back never fails.
//! budget.adjust(a + 60_000, 0).unwrap();
//! assert_eq!(budget.used(), 0);
//! ```

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A limit on the bytes a server holds for its clients, shared by every
/// holder. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct MemoryBudget(Arc<Inner>);

struct Inner {
    limit: usize,
    used: AtomicUsize,
}

impl fmt::Debug for MemoryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBudget")
            .field("limit", &self.0.limit)
            .field("used", &self.used())
            .finish()
    }
}

impl Default for MemoryBudget {
    /// [`MemoryBudget::unlimited`].
    fn default() -> Self {
        Self::unlimited()
    }
}

/// Why [`MemoryBudget::adjust`] refused: the budget has no room for the
/// bytes asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "server memory budget exhausted: {requested} more bytes would exceed \
     max_buffered_memory ({limit} bytes, {used} in use)"
)]
#[non_exhaustive]
pub struct OverBudget {
    /// The bytes asked for.
    pub requested: usize,
    /// The bytes counted when they were asked for.
    pub used: usize,
    /// The budget's limit.
    pub limit: usize,
}

impl MemoryBudget {
    /// Bytes each holder (a connection's incoming message, a connection's
    /// outgoing queue) may hold without counting them: the size of one
    /// read, which a busy connection holds anyway. So exchanging small
    /// messages never touches the shared counter; and at most this much
    /// per holder is outside the budget.
    pub const UNCOUNTED: usize = 16 * 1024;

    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self(Arc::new(Inner {
            limit,
            used: AtomicUsize::new(0),
        }))
    }

    /// A budget that never refuses (it still counts).
    pub fn unlimited() -> Self {
        Self::new(usize::MAX)
    }

    /// The limit, in bytes.
    pub fn limit(&self) -> usize {
        self.0.limit
    }

    /// The bytes counted now.
    pub fn used(&self) -> usize {
        self.0.used.load(Ordering::Relaxed)
    }

    /// A holder that held `from` bytes now holds `to`: counts the change of
    /// what it holds beyond [`UNCOUNTED`](Self::UNCOUNTED).
    ///
    /// # Errors
    /// [`OverBudget`] when the growth does not fit; then nothing is
    /// counted, and the holder must not keep the bytes. Shrinking never
    /// fails.
    #[inline]
    pub fn adjust(&self, from: usize, to: usize) -> Result<(), OverBudget> {
        let (before, after) = (
            from.saturating_sub(Self::UNCOUNTED),
            to.saturating_sub(Self::UNCOUNTED),
        );
        if after > before {
            self.charge(after - before)
        } else {
            if before > after {
                self.release(before - after);
            }
            Ok(())
        }
    }

    /// Counts `n` more bytes.
    ///
    /// # Errors
    /// [`OverBudget`] when they do not fit; nothing is counted then.
    pub fn charge(&self, n: usize) -> Result<(), OverBudget> {
        let used = self.0.used.fetch_add(n, Ordering::Relaxed);
        if used.saturating_add(n) > self.0.limit {
            self.0.used.fetch_sub(n, Ordering::Relaxed);
            return Err(OverBudget {
                requested: n,
                used,
                limit: self.0.limit,
            });
        }
        Ok(())
    }

    /// Gives back `n` bytes counted before.
    pub fn release(&self, n: usize) {
        self.0.used.fetch_sub(n, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowance_limit_and_refusal_leave_nothing_counted() {
        let b = MemoryBudget::new(10);
        let u = MemoryBudget::UNCOUNTED;
        b.adjust(0, u + 10).unwrap();
        assert_eq!(b.used(), 10);
        let e = b.adjust(0, u + 1).unwrap_err();
        assert_eq!((e.requested, e.used, e.limit), (1, 10, 10));
        assert_eq!(b.used(), 10, "a refusal counts nothing");
        assert!(e.to_string().contains("max_buffered_memory"), "{e}");
        b.adjust(u + 10, u + 4).unwrap();
        assert_eq!(b.used(), 4);
        b.adjust(u + 4, 3).unwrap();
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn holders_share_one_limit_across_threads() {
        let b = MemoryBudget::new(1_000_000);
        let u = MemoryBudget::UNCOUNTED;
        std::thread::scope(|s| {
            for _ in 0..4 {
                let b = b.clone();
                s.spawn(move || {
                    for _ in 0..10_000 {
                        b.adjust(u, u + 100).unwrap();
                        b.adjust(u + 100, 0).unwrap();
                    }
                });
            }
        });
        assert_eq!(b.used(), 0);
        assert_eq!(MemoryBudget::unlimited().limit(), usize::MAX);
    }
}
