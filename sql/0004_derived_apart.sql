-- The derived tables move to a database file of their own, written behind the log
-- by the indexer (src/store/derived.rs, schema in sql/derived/schema.sql). What a
-- commit must make durable is only the log: leaves, tree nodes and the ledger row.
-- Accounts, postings, rides and the (account, seq) lookup are functions of the log;
-- keeping their per-account indexes out of the commit is what lets a batch write a
-- few sequential pages instead of several random pages per command.
--
-- An existing ledger's derived tables are rebuilt from its log at the next start.

CREATE TABLE leaves_apart (
    leaf_index INTEGER PRIMARY KEY CHECK (leaf_index >= 0),
    bytes BLOB NOT NULL,
    kind TEXT NOT NULL,
    account TEXT,
    seq INTEGER,
    tx BLOB,
    memo TEXT,
    accepted_at TEXT NOT NULL,
    CHECK ((account IS NULL) = (seq IS NULL)),
    CHECK ((account IS NULL) = (tx IS NULL))
);
INSERT INTO leaves_apart (leaf_index, bytes, kind, account, seq, tx, memo, accepted_at)
    SELECT leaf_index, bytes, kind, account, seq, tx, memo, accepted_at FROM leaves;
DROP TABLE leaves;
ALTER TABLE leaves_apart RENAME TO leaves;

DROP TABLE postings;
DROP TABLE accounts;
DROP TABLE ride_objects;
