-- The log and the state derived from it.
--
-- `leaves` is the truth: each row holds the exact RFC 8785 bytes of one leaf, as
-- signed (commands) and as hashed (the Merkle tree). Every other table is derived
-- from the leaves by the state machine and is kept here so that a restart does not
-- have to replay the log; `covoit audit` recomputes all of it from the leaves alone.

-- One row: the ledger's founding facts and running totals.
CREATE TABLE ledger (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    ledger_id TEXT NOT NULL,
    -- The genesis event as JSON (the same object as in leaf 0).
    genesis TEXT NOT NULL,
    -- The policy in force, as JSON.
    policy TEXT NOT NULL,
    -- Number of leaves, genesis included: the next leaf's index.
    size INTEGER NOT NULL CHECK (size >= 1),
    last_accepted_at TEXT NOT NULL,
    -- Minor units issued and redeemed since genesis: -balance(reserve) = issued - redeemed.
    issued INTEGER NOT NULL CHECK (issued >= 0),
    redeemed INTEGER NOT NULL CHECK (redeemed >= 0 AND redeemed <= issued)
);

-- The log. Columns after `bytes` are read from the leaf, for lookups and listings.
CREATE TABLE leaves (
    leaf_index INTEGER PRIMARY KEY CHECK (leaf_index >= 0),
    bytes BLOB NOT NULL,
    -- The command's `type` or the event's.
    kind TEXT NOT NULL,
    -- Signer and seq of a command; NULL for server events.
    account TEXT,
    seq INTEGER,
    -- SHA-256 of the command's body bytes.
    tx BLOB,
    memo TEXT,
    accepted_at TEXT NOT NULL,
    CHECK ((account IS NULL) = (seq IS NULL)),
    CHECK ((account IS NULL) = (tx IS NULL)),
    UNIQUE (account, seq)
);

-- Each leaf's postings, in the leaf's order. Per leaf they sum to zero (checked by
-- the writer in SQL before each commit, and by the audit).
CREATE TABLE postings (
    leaf_index INTEGER NOT NULL,
    position INTEGER NOT NULL CHECK (position >= 0),
    account TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount <> 0),
    PRIMARY KEY (leaf_index, position)
) WITHOUT ROWID;

CREATE INDEX postings_by_account ON postings (account, leaf_index);

-- Every account's current state, operator and reserve included.
CREATE TABLE accounts (
    account TEXT PRIMARY KEY,
    -- The Ed25519 public key that signs for it; NULL for the reserve.
    key BLOB CHECK (key IS NULL OR length(key) = 32),
    name TEXT,
    status TEXT NOT NULL CHECK (status IN ('pending', 'active', 'operator', 'reserve')),
    balance INTEGER NOT NULL,
    held INTEGER NOT NULL CHECK (held >= 0),
    -- NULL for the operator and the reserve, which have no floor.
    floor INTEGER CHECK (floor IS NULL OR floor <= 0),
    next_seq INTEGER NOT NULL CHECK (next_seq >= 0),
    CHECK (floor IS NULL OR balance - held >= floor),
    CHECK (status <> 'reserve' OR balance <= 0)
) WITHOUT ROWID;

-- No two accounts share a key.
CREATE UNIQUE INDEX accounts_by_key ON accounts (key);
