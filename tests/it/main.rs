//! The integration tests: one binary, the real service over real HTTP on 127.0.0.1,
//! a real SQLite file in a temporary folder, real signatures.

mod audit;
mod backup;
mod cli;
mod commands;
mod concurrency;
mod connections;
mod crash;
mod derived;
mod faults;
mod idempotency;
mod layers;
mod openapi;
mod refusals;
mod restart;
mod rides;
mod security;
mod support;
