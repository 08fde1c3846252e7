//! The service's clock: the system's, or one a test moves by hand.
//!
//! Only the writer reads it, to stamp `accepted_at` on the leaves of a batch; the
//! core never does. A manual clock lets tests cross `not_after` deadlines or wait
//! 24 hours without sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::core::time::Timestamp;

#[derive(Debug, Clone, Default)]
pub enum Clock {
    #[default]
    System,
    /// Milliseconds since the Unix epoch, moved only by [`Clock::advance`].
    Manual(Arc<AtomicI64>),
}

impl Clock {
    pub fn manual(start: Timestamp) -> Clock {
        Clock::Manual(Arc::new(AtomicI64::new(start.unix_ms())))
    }

    pub fn now(&self) -> Timestamp {
        match self {
            Clock::System => {
                let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
                Timestamp::from_unix_ms(i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX))
            }
            Clock::Manual(unix_ms) => Timestamp::from_unix_ms(unix_ms.load(Ordering::SeqCst)),
        }
    }

    /// Moves a manual clock forward; the system clock cannot be moved.
    pub fn advance(&self, delta_ms: i64) {
        match self {
            Clock::System => panic!("only a manual clock can be advanced"),
            Clock::Manual(unix_ms) => {
                unix_ms.fetch_add(delta_ms, Ordering::SeqCst);
            }
        }
    }
}
