//! Numbered schema migrations, compiled into the binary from `sql/`.
//!
//! Each migration runs once, in order, in its own transaction, and is recorded in
//! `schema_migrations` with the time it ran. A database that has run a migration this
//! binary does not know was written by a newer covoit and is not touched.

use rusqlite::{Connection, params};

use crate::store::StoreError;

/// Every migration, in order: (version, file name, SQL). A test checks that each file
/// in `sql/` is listed here exactly once.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "0001_ledger.sql", include_str!("../../sql/0001_ledger.sql")),
    (2, "0002_merkle.sql", include_str!("../../sql/0002_merkle.sql")),
    (3, "0003_rides.sql", include_str!("../../sql/0003_rides.sql")),
    (4, "0004_derived_apart.sql", include_str!("../../sql/0004_derived_apart.sql")),
    (5, "0005_merkle_in_order.sql", include_str!("../../sql/0005_merkle_in_order.sql")),
];

/// Applies the migrations the database has not run yet; returns how many ran.
pub fn migrate(connection: &mut Connection, now: &str) -> Result<usize, StoreError> {
    connection.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version INTEGER PRIMARY KEY,
             name TEXT NOT NULL,
             applied_at TEXT NOT NULL
         )",
    )?;
    let applied: i64 =
        connection.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |row| row.get(0))?;
    let known = MIGRATIONS.last().map_or(0, |(version, _, _)| *version);
    if applied > known {
        return Err(StoreError::NewerSchema { found: applied, known });
    }
    let mut ran = 0;
    for (version, name, sql) in MIGRATIONS.iter().filter(|(version, _, _)| *version > applied) {
        let transaction = connection.transaction()?;
        transaction.execute_batch(sql)?;
        transaction.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            params![version, name, now],
        )?;
        transaction.commit()?;
        tracing::info!(version, name, "applied migration");
        ran += 1;
    }
    Ok(ran)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sql_file_is_a_listed_migration_in_order() {
        let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sql");
        let mut files: Vec<String> = std::fs::read_dir(folder)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.ends_with(".sql"))
            .collect();
        files.sort();
        let listed: Vec<String> = MIGRATIONS.iter().map(|(_, name, _)| name.to_string()).collect();
        assert_eq!(files, listed);
        for (position, (version, name, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*version, position as i64 + 1);
            assert!(name.starts_with(&format!("{version:04}_")), "{name}");
        }
    }

    #[test]
    fn migrations_run_once_and_newer_schemas_are_refused() {
        let mut connection = Connection::open_in_memory().unwrap();
        assert_eq!(migrate(&mut connection, "2026-11-25T10:00:00.000Z").unwrap(), MIGRATIONS.len());
        assert_eq!(migrate(&mut connection, "2026-11-25T10:00:01.000Z").unwrap(), 0);
        connection.execute("INSERT INTO schema_migrations VALUES (999, 'future.sql', 'later')", []).unwrap();
        assert!(matches!(migrate(&mut connection, "now"), Err(StoreError::NewerSchema { found: 999, .. })));
    }
}
