//! covoit: proximity carpooling paid in a local currency, on a signed double-entry
//! ledger that anyone can audit.
//!
//! # Bird's-eye view
//!
//! Every change of state is a *command*: a canonical JSON body signed with Ed25519 by
//! the account that issues it. The service checks each command, and each one it
//! accepts becomes a *leaf* of an append-only log, together with the *postings* (the
//! money moved) that the state machine computed for it. The log is the truth: balances,
//! holds and accounts are state derived from it by one pure function,
//! `core::ledger::apply`, which the service runs to decide and an auditor runs to
//! replay.
//!
//! A command's way through the service:
//!
//! ```text
//! POST /v1/commands -> http: read body (limit, timeout)
//!                   -> core::protocol::prepare_envelope: JSON, base64, canonical body,
//!                        verify_strict up to its last step ([s]B - [k]A)
//!                   -> store::writer (one thread, group commit):
//!                        core::protocol::finish_verification (the batch's encodings of [s]B - [k]A
//!                          against each R, one field inversion for all)
//!                        -> core::ledger::apply -> core::leaf::encode -> SQLite (one fdatasync per batch)
//!                   -> receipt {index, tx, accepted_at, ...}
//!                   (behind: store::derived's indexer -> balances, postings, rides)
//! ```
//!
//! Each batch the writer commits also extends the log's Merkle tree (RFC 6962) and
//! signs a checkpoint with the ledger key. What the batch changed in balances,
//! histories and rides goes to the indexer thread, which writes the derived tables in
//! their own file (`covoit-derived.db`) behind the log. Reads (`GET /v1/...`) go to
//! read-only SQLite connections beside the writer (WAL) and wait for the derived tables
//! to cover what was committed when they began. `covoit audit` replays a whole log
//! through the same `core` and checks it against the signed checkpoint.
//!
//! # Codemap
//!
//! - `main.rs` — the `covoit` command: `serve`, `keygen` and the signing client.
//! - `config.rs` — `serve` flags and environment variables → `Config`.
//! - `service.rs` — start-up (keys, migrations, genesis, writer, listener) and clean stop.
//! - `core/` — pure, no I/O:
//!   - `money.rs` — `Amount`, `Floor`: decimal strings ↔ minor units, strictly.
//!   - `ids.rs` — `AccountId`, `Seq`, `LedgerId`, `Text` (names, memos).
//!   - `time.rs` — `Timestamp`: RFC 3339 UTC to the millisecond; dates, local time
//!     (`Zone`, EU summer time).
//!   - `canonical.rs` — RFC 8785 canonical JSON and the duplicate-refusing parser.
//!   - `protocol.rs` — envelope, signed message, `open_envelope` (and its two halves,
//!     `prepare_envelope` and `finish_verification`), `sign_body`, batch verification.
//!   - `body.rs` — command bodies: the flat wire form (`BodyFields`), the typed view
//!     clients build (`BodyWire`, `CommandWire`), the domain form (`Body`, `Command`).
//!   - `policy.rs` — `Policy` (Ayen's defaults) and `Rules` (parsed), `Currency`, the
//!     server events (genesis, ride settlement and expiry).
//!   - `ledger.rs` — `State`, `apply` = `decide` + `commit`, `apply_event`,
//!     `due_events`, `Refusal`, the invariants.
//!   - `rides.rs` — offers, requests, occurrences, bookings; how each ride command and
//!     event changes them and the money (holds, fares, sponsor shares, anti-fraud).
//!   - `geo.rs` — `Point`, the one road-distance function.
//!   - `matching.rs` — the insertion rule (detour, seats, windows).
//!   - `board.rs` — the ride board: open offers in a space-time R-tree, matches,
//!     the public listing, notifications for live streams.
//!   - `leaf.rs` — the leaf's exact bytes (`encode`, `decode`), `Posting`, the zero-sum assertion.
//!   - `merkle.rs` — RFC 6962 hashes, the tree's right edge (`Frontier`), proofs, the
//!     order hashes are stored in (`stored_index`).
//!   - `checkpoint.rs` — C2SP checkpoints in signed notes: sign, open strictly.
//! - `store/` — SQLite:
//!   - `mod.rs` — connections and their pragmas, genesis, the tree at start (rebuilt
//!     and checked against the checkpoint when its hashes are missing).
//!   - `migrate.rs` — the numbered migrations of `sql/`, compiled in.
//!   - `writer.rs` — the single writer thread (real-time priority when allowed,
//!     `Priority`), group commit (and its wait for more commands when many clients
//!     are connected, `Pacing`), receipts, idempotency,
//!     due server events, the tree and the checkpoint of each batch, the after-commit
//!     hook that refreshes the ride board.
//!   - `derived.rs` — the derived tables' file: the indexer thread that writes them
//!     behind the log, `Progress` (what reads wait for), the catch-up at start (replay
//!     of the leaves the file lacks; a stale or foreign file is rebuilt).
//!   - `read.rs` — the read pool, the live accounts, the queries behind `GET` routes.
//!   - `backup.rs` — `covoit backup`: a consistent copy of a live database, checked.
//!   - `checkpointer.rs` — WAL checkpoints in the background, off the writer's path.
//! - `http/` — warp:
//!   - `mod.rs` — routes (`ROUTES`), handlers (ride reads and the live streams too),
//!     body limits and timeouts.
//!   - `server.rs` — the accept loop: hyper HTTP/1.1, connection limits (`Counts`, which
//!     also counts live streams per address), header timeout, `Allow` on 405s,
//!     graceful stop.
//!   - `limit.rs` — the per-client rate limit.
//!   - `error.rs` — `ApiError`, every status and code, the rejection handler.
//!   - `replies.rs` — JSON shapes of successful replies.
//!   - `web.rs` — the web page (`web/`, embedded) at `/` and `/assets/`.
//!   - `openapi.json` — the API description served at `/openapi.json`.
//! - `audit.rs` — the offline auditor (`covoit audit`), its sources (URL, database,
//!   export) and `covoit export`.
//! - `keys.rs` — key files (PKCS#8 PEM, mode 0600).
//! - `client.rs` — the blocking HTTP client the CLI uses.
//! - `load.rs` — the load generator (`covoit load`) of the throughput benchmarks.
//! - `clock.rs` — the system clock, or a manual one for tests.
//!
//! # Invariants
//!
//! - The postings of every leaf sum to zero (asserted when built, checked again in
//!   SQL before each commit), so the balances of all accounts sum to zero.
//! - No member's `balance − held` is below its floor; the reserve is never above zero,
//!   and −balance(reserve) = Σ issued − Σ redeemed.
//! - Each signer's seq is used once, in order, without gaps.
//! - A refused command leaves no trace; a 2xx reply means the leaf is on disk.
//! - `core` never names warp, rusqlite or tokio (a test checks).

pub mod audit;
pub mod client;
pub mod clock;
pub mod config;
pub mod core;
pub mod http;
pub mod keys;
pub mod load;
pub mod service;
pub mod store;
