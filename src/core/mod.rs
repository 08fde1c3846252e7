//! The pure core: money, the protocol, the ledger's state machine, the leaf format.
//!
//! Nothing here does I/O, reads a clock or draws a random number (key generation
//! aside, which only clients use): the server and the auditor run the same code and
//! must get the same answers. `tests/it/layers.rs` checks that no file here names the
//! outer layers' crates.

pub mod board;
pub mod body;
pub mod canonical;
pub mod checkpoint;
pub mod geo;
pub mod ids;
pub mod leaf;
pub mod ledger;
pub mod matching;
pub mod merkle;
pub mod money;
pub mod policy;
pub mod protocol;
pub mod rides;
pub mod time;
