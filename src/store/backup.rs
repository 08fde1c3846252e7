//! `covoit backup`: a consistent copy of a live database, taken with SQLite's online
//! backup API while the service keeps writing.
//!
//! The copy is made in **one** `sqlite3_backup_step(-1)`: SQLite then holds one read
//! transaction on the source for the whole copy, so in WAL mode the copy is exactly the
//! database as of one commit (one batch of the writer: leaves, tree, accounts and the
//! signed checkpoint together), and the service's writer is never blocked. Copying in
//! several small steps instead would release the read lock between steps, and SQLite's
//! documentation says a backup whose source is changed by another connection in the
//! middle restarts from the beginning: under a steady stream of payments it might
//! never finish.
//!
//! The copy goes to a temporary file beside the target. It is switched to a
//! single-file (rollback journal) database, opened again from disk and checked —
//! `PRAGMA integrity_check`, the checkpoint's signature by the ledger key, the log's
//! length and the stored Merkle tree against the checkpoint — then fsynced and only
//! then given its name, which never replaces an existing file. Whatever fails, the
//! temporary file is removed.
//!
//! The copy does not hold the ledger's key (`keys/ledger.key`): a service started on
//! a restored copy needs it, and backing it up is a separate, one-time thing.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::core::checkpoint::{self, Checkpoint};
use crate::core::policy::Genesis;
use crate::core::protocol::{base64_decode, base64_encode};
use crate::store;

/// A backup holds members' names: readable and writable by its owner only.
pub const BACKUP_FILE_MODE: u32 = 0o600;
/// How many times a copy is tried when the source stays locked (each try already
/// waits up to [`store::BUSY_TIMEOUT`]).
pub const COPY_TRIES_MAX: u32 = 3;

/// Why a backup was not made. Nothing is left behind in any of these cases.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0} already exists; a backup never replaces a file, so give a new name (with the date in it, say)")]
    Exists(PathBuf),
    #[error("there is no database at {0}")]
    NoDatabase(PathBuf),
    #[error("{path} does not hold a covoit ledger ({reason})")]
    NotLedger { path: PathBuf, reason: String },
    #[error("the folder {0} does not exist; create it first")]
    NoFolder(PathBuf),
    #[error("{what} failed: {error}")]
    Io { what: String, error: io::Error },
    #[error("copying {path} failed: {error}")]
    Copy { path: PathBuf, error: rusqlite::Error },
    #[error("{path} stayed locked by another program; no copy was made after {tries} tries")]
    Busy { path: PathBuf, tries: u32 },
    #[error("the copy failed its checks and was deleted: {0}")]
    BadCopy(String),
}

/// What a finished backup holds, as read back from the copy on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    /// The database that was copied.
    pub source: PathBuf,
    /// The new file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// The ledger's id (the checkpoints' origin).
    pub ledger: String,
    /// The leaves in the copy's log.
    pub leaves: u64,
    /// The copy's signed checkpoint, verified: its size equals `leaves`, and its root
    /// the root of the copy's stored tree.
    pub checkpoint: Checkpoint,
    /// The signed note itself, as stored (an auditor's `--since` file).
    pub note: String,
    /// How long the copy and its checks took.
    pub elapsed: Duration,
}

impl fmt::Display for BackupReport {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            out,
            "backed up {} to {} ({} bytes, one consistent snapshot, in {:.2} s)",
            self.source.display(),
            self.path.display(),
            self.bytes,
            self.elapsed.as_secs_f64()
        )?;
        writeln!(out, "ledger          {}", self.ledger)?;
        writeln!(out, "leaves          {}", self.leaves)?;
        writeln!(out, "tree size       {}", self.checkpoint.size)?;
        writeln!(out, "latest root     {}", base64_encode(&self.checkpoint.root))?;
        writeln!(
            out,
            "checks passed   PRAGMA integrity_check, the checkpoint's signature by the ledger key, \
             checkpoint size = leaves, stored Merkle tree = checkpoint root"
        )?;
        writeln!(
            out,
            "To serve this copy you also need the ledger's key, keys/ledger.key, which is not in it: \
             keep one copy of that key, made once, somewhere safe and apart from these backups."
        )?;
        writeln!(out, "To verify the whole ledger in the copy: covoit audit --db {}", self.path.display())
    }
}

/// Copies the database at `db` (the service may be running and writing) to the new
/// file `out`, checks the copy and says what it holds.
pub fn backup(db: &Path, out: &Path) -> Result<BackupReport, BackupError> {
    let started = Instant::now();
    if !db.is_file() {
        return Err(BackupError::NoDatabase(db.to_owned()));
    }
    if fs::symlink_metadata(out).is_ok() {
        return Err(BackupError::Exists(out.to_owned()));
    }
    let folder = match out.parent() {
        Some(folder) if !folder.as_os_str().is_empty() => folder.to_owned(),
        _ => PathBuf::from("."),
    };
    if !folder.is_dir() {
        return Err(BackupError::NoFolder(folder));
    }
    let name = out.file_name().ok_or_else(|| BackupError::Io {
        what: format!("naming the backup {}", out.display()),
        error: io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"),
    })?;

    let source = store::open_reader(db).map_err(|error| not_ledger(db, error))?;
    match store::has_ledger(&source) {
        Ok(true) => {}
        Ok(false) => return Err(not_ledger(db, "its ledger table is empty")),
        Err(error) => return Err(not_ledger(db, error)),
    }

    let partial = Partial::create(&folder, &name.to_string_lossy())?;
    copy(&source, db, &partial.path)?;
    drop(source);
    let (summary, note) = check_copy(&partial.path)?;
    partial.sync()?;
    let bytes = fs::metadata(&partial.path).map_err(|error| io_error("reading the copy's size", error))?.len();
    partial.place(out)?;
    sync_folder(&folder)?;
    Ok(BackupReport {
        source: db.to_owned(),
        path: out.to_owned(),
        bytes,
        ledger: summary.origin.clone(),
        leaves: summary.size,
        checkpoint: summary,
        note,
        elapsed: started.elapsed(),
    })
}

/// The whole source database into `to`, in one step: one read transaction, so one
/// consistent snapshot.
fn copy(source: &Connection, db: &Path, to: &Path) -> Result<(), BackupError> {
    let copy_error = |error| BackupError::Copy { path: db.to_owned(), error };
    let mut destination = Connection::open(to).map_err(copy_error)?;
    {
        let backup = Backup::new(source, &mut destination).map_err(copy_error)?;
        let mut tries = 0;
        loop {
            tries += 1;
            // -1: every page in one step, under one read lock of the source.
            match backup.step(-1).map_err(copy_error)? {
                StepResult::Done => break,
                // The source's busy handler (BUSY_TIMEOUT) already waited.
                StepResult::Busy | StepResult::Locked | StepResult::More if tries < COPY_TRIES_MAX => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                _ => return Err(BackupError::Busy { path: db.to_owned(), tries }),
            }
        }
    }
    destination.close().map_err(|(_, error)| copy_error(error))
}

/// Opens the copy again from disk, makes it a single file (rollback journal: no
/// `-wal` beside it to forget; the service turns WAL back on when it opens it) and
/// checks it. Returns its verified checkpoint and the signed note.
fn check_copy(path: &Path) -> Result<(Checkpoint, String), BackupError> {
    let bad = |reason: String| BackupError::BadCopy(reason);
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = Connection::open_with_flags(path, flags).map_err(|error| bad(error.to_string()))?;
    let mode: String = connection
        .query_row("PRAGMA journal_mode = DELETE", [], |row| row.get(0))
        .map_err(|error| bad(format!("it cannot leave WAL mode: {error}")))?;
    if !mode.eq_ignore_ascii_case("delete") {
        return Err(bad(format!("it stays in {mode} mode")));
    }
    let problems: Vec<String> = connection
        .prepare("PRAGMA integrity_check")
        .and_then(|mut statement| statement.query_map([], |row| row.get(0))?.collect())
        .map_err(|error| bad(format!("PRAGMA integrity_check failed: {error}")))?;
    if problems != ["ok"] {
        return Err(bad(format!("PRAGMA integrity_check says: {}", problems.join("; "))));
    }
    let checked = check_ledger(&connection).map_err(bad)?;
    connection.close().map_err(|(_, error)| bad(error.to_string()))?;
    Ok(checked)
}

/// The copy's checkpoint, signed by the key its genesis names, covers exactly its log,
/// and its stored tree has the checkpoint's root.
fn check_ledger(connection: &Connection) -> Result<(Checkpoint, String), String> {
    let row: Option<(String, String, i64, Option<String>)> = connection
        .query_row("SELECT ledger_id, genesis, size, checkpoint FROM ledger WHERE id = 1", [], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })
        .optional()
        .map_err(|error| error.to_string())?;
    let (ledger, genesis, size, note) = row.ok_or("it holds no ledger")?;
    let note = note.ok_or("it holds no signed checkpoint")?;
    let genesis: Genesis = store::from_json("genesis", &genesis).map_err(|error| error.to_string())?;
    let key: [u8; 32] = base64_decode(&genesis.ledger_key)
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or("its genesis does not name a ledger key")?;
    let checkpoint = checkpoint::open_checkpoint(&note, &ledger, &key)
        .map_err(|error| format!("its checkpoint is refused: {error}"))?;
    let (count, next): (i64, i64) = connection
        .query_row("SELECT COUNT(*), COALESCE(MAX(leaf_index) + 1, 0) FROM leaves", [], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .map_err(|error| error.to_string())?;
    if count != next || count != size {
        return Err(format!("its log holds {count} leaves numbered up to {next} but its ledger records {size}"));
    }
    if checkpoint.size != size as u64 {
        return Err(format!("its checkpoint is for {} leaves but its log has {size}", checkpoint.size));
    }
    let root = store::stored_root_at(connection, checkpoint.size)
        .map_err(|error| format!("its Merkle tree cannot be read: {error}"))?;
    if root != checkpoint.root {
        return Err("its stored Merkle tree does not have the checkpoint's root".into());
    }
    Ok((checkpoint, note))
}

/// The temporary file beside the target; removed (with any SQLite side files) when
/// dropped, unless it was renamed into place.
struct Partial {
    path: PathBuf,
    placed: bool,
}

impl Partial {
    fn create(folder: &Path, name: &str) -> Result<Partial, BackupError> {
        let mut random = [0u8; 6];
        getrandom::fill(&mut random).map_err(|error| io_error("drawing a temporary name", io::Error::other(error)))?;
        let suffix: String = random.iter().map(|byte| format!("{byte:02x}")).collect();
        let path = folder.join(format!(".{name}.partial-{suffix}"));
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(BACKUP_FILE_MODE)
            .open(&path)
            .map_err(|error| io_error(&format!("creating {}", path.display()), error))?;
        Ok(Partial { path, placed: false })
    }

    fn sync(&self) -> Result<(), BackupError> {
        File::open(&self.path)
            .and_then(|file| file.sync_all())
            .map_err(|error| io_error(&format!("writing {} to disk", self.path.display()), error))
    }

    /// Gives the copy its name, never replacing a file: a hard link fails if the name
    /// is taken (atomically); where links are not supported, a rename after a check.
    /// After a link, dropping `self` removes the temporary name.
    fn place(mut self, out: &Path) -> Result<(), BackupError> {
        match fs::hard_link(&self.path, out) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Err(BackupError::Exists(out.to_owned())),
            Err(_) => {
                if fs::symlink_metadata(out).is_ok() {
                    return Err(BackupError::Exists(out.to_owned()));
                }
                fs::rename(&self.path, out)
                    .map_err(|error| io_error(&format!("renaming the copy to {}", out.display()), error))?;
                self.placed = true;
                Ok(())
            }
        }
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        let mut leftovers = vec![];
        if !self.placed {
            leftovers.push(self.path.clone());
        }
        for side in ["-journal", "-wal", "-shm"] {
            let mut name = self.path.clone().into_os_string();
            name.push(side);
            leftovers.push(PathBuf::from(name));
        }
        for path in leftovers {
            let _ = fs::remove_file(path);
        }
    }
}

/// Makes the new name durable: fsync the folder that holds it.
fn sync_folder(folder: &Path) -> Result<(), BackupError> {
    File::open(folder)
        .and_then(|file| file.sync_all())
        .map_err(|error| io_error(&format!("writing the folder {} to disk", folder.display()), error))
}

fn io_error(what: &str, error: io::Error) -> BackupError {
    BackupError::Io { what: what.to_owned(), error }
}

fn not_ledger(path: &Path, reason: impl fmt::Display) -> BackupError {
    BackupError::NotLedger { path: path.to_owned(), reason: reason.to_string() }
}
