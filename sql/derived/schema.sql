-- The state derived from the log, in its own file beside the ledger's database and
-- written behind it by the indexer (src/store/derived.rs). Everything here is a
-- function of the leaves: a missing, stale or foreign file is rebuilt from the log,
-- and `covoit audit --db` compares it with its own replay.

-- One row: how much of the log this file covers, and the state's totals there.
CREATE TABLE derived (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    ledger_id TEXT NOT NULL,
    -- Leaves covered: 0 .. size - 1.
    size INTEGER NOT NULL CHECK (size >= 1),
    -- The Merkle leaf hash of leaf size - 1: a file from another history is told apart.
    last_leaf_hash BLOB NOT NULL CHECK (length(last_leaf_hash) = 32),
    last_accepted_at TEXT NOT NULL,
    issued INTEGER NOT NULL CHECK (issued >= 0),
    redeemed INTEGER NOT NULL CHECK (redeemed >= 0 AND redeemed <= issued),
    -- The policy in force, as JSON.
    policy TEXT NOT NULL
);

-- Every account's current state, operator and reserve included. Written before the
-- rows that name it: the tables below name an account by its `num`, a few bytes
-- where its id is 36 characters, which keeps their keys and pages small.
CREATE TABLE accounts (
    num INTEGER PRIMARY KEY,
    account TEXT NOT NULL UNIQUE,
    -- The Ed25519 public key that signs for it; NULL for the reserve.
    key BLOB CHECK (key IS NULL OR length(key) = 32),
    name TEXT,
    status TEXT NOT NULL CHECK (status IN ('pending', 'active', 'operator', 'reserve')),
    balance INTEGER NOT NULL,
    held INTEGER NOT NULL CHECK (held >= 0),
    -- NULL for the operator and the reserve, which have no floor.
    floor INTEGER CHECK (floor IS NULL OR floor <= 0),
    next_seq INTEGER NOT NULL CHECK (next_seq >= 0),
    -- A custodial account has no key: the desk signs its commands, saying so ("by").
    custodial INTEGER NOT NULL DEFAULT 0 CHECK (custodial IN (0, 1)),
    CHECK (floor IS NULL OR balance - held >= floor),
    CHECK (status <> 'reserve' OR balance <= 0)
);

-- No two accounts share a key.
CREATE UNIQUE INDEX accounts_by_key ON accounts (key);

-- Every accepted command by signer (its `num`) and seq: an identical envelope posted
-- again is answered with its stored receipt.
CREATE TABLE commands (
    account INTEGER NOT NULL,
    seq INTEGER NOT NULL CHECK (seq >= 0),
    leaf_index INTEGER NOT NULL,
    tx BLOB NOT NULL CHECK (length(tx) = 32),
    PRIMARY KEY (account, seq)
) WITHOUT ROWID;

-- Each leaf's postings, in the leaf's order. Per leaf they sum to zero (checked in
-- SQL before each commit here, and by the audit).
CREATE TABLE postings (
    leaf_index INTEGER NOT NULL,
    position INTEGER NOT NULL CHECK (position >= 0),
    -- The account's `num` in accounts (no foreign key: `covoit audit --db` checks it).
    account INTEGER NOT NULL,
    amount INTEGER NOT NULL CHECK (amount <> 0),
    PRIMARY KEY (leaf_index, position)
) WITHOUT ROWID;

CREATE INDEX postings_by_account ON postings (account, leaf_index);

-- Rides: meeting points, offers, requests, the day's ride of an offer ("occurrence",
-- with its stops) and bookings. One row per object, its whole state as JSON, with the
-- columns reads look things up by.
CREATE TABLE ride_objects (
    kind TEXT NOT NULL CHECK (kind IN ('point', 'offer', 'request', 'occurrence', 'booking')),
    id TEXT NOT NULL,
    -- Who it belongs to: the driver of an offer or booking, the passenger of a
    -- request or booking; NULL for meeting points and occurrences.
    driver TEXT,
    passenger TEXT,
    state TEXT NOT NULL CHECK (json_valid(state)),
    PRIMARY KEY (kind, id)
) WITHOUT ROWID;

CREATE INDEX ride_objects_by_driver ON ride_objects (driver, kind) WHERE driver IS NOT NULL;
CREATE INDEX ride_objects_by_passenger ON ride_objects (passenger, kind) WHERE passenger IS NOT NULL;
