//! Background WAL checkpoints.
//!
//! A commit appends pages to the WAL; a checkpoint copies them back into the database
//! file. SQLite's automatic checkpoint does that on the committing connection, so the
//! writer would stop taking commands while it copies. Instead this thread runs a
//! PASSIVE checkpoint every [`CHECKPOINT_INTERVAL`] on its own connection: it copies
//! what is committed without waiting for (or blocking) the writer or the readers. The
//! writer keeps a high automatic threshold as a backstop, which finds the pages
//! already copied and lets the WAL start over from its beginning.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use crate::store::StoreError;

/// How often committed pages are copied from the WAL into the database file.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);

/// The checkpoint thread; stops when dropped.
pub struct Checkpointer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    pub fn start(path: &Path) -> Result<Checkpointer, StoreError> {
        let connection = Connection::open(path)?;
        // Never wait: a checkpoint that cannot run now runs at the next tick.
        connection.busy_timeout(Duration::ZERO)?;
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let signal = stop.clone();
        let thread = std::thread::Builder::new()
            .name("covoit-checkpoint".into())
            .spawn(move || {
                let (stopped, wake) = &*signal;
                let mut stopped = stopped.lock().expect("the checkpointer's lock");
                while !*stopped {
                    stopped = wake.wait_timeout(stopped, CHECKPOINT_INTERVAL).expect("the checkpointer's lock").0;
                    if let Err(error) = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                        tracing::debug!(%error, "a background checkpoint did not run");
                    }
                }
            })
            .map_err(StoreError::Thread)?;
        Ok(Checkpointer { stop, thread: Some(thread) })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let (stopped, wake) = &*self.stop;
        *stopped.lock().expect("the checkpointer's lock") = true;
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
