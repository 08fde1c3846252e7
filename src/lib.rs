//! covoit: proximity carpooling paid in a local currency, on a signed ledger.
pub mod core;
