//! incident-vault: a sealed intake for reprisal reports from human-rights defenders.
//!
//! Data flows one way: `routes → services → (crypto, storage)`. See DESIGN.md for the threat
//! model and the key hierarchy.

pub mod cli;
pub mod configuration;
pub mod crypto;
pub mod domain;
pub mod error;
pub mod routes;
pub mod services;
pub mod startup;
pub mod storage;
pub mod telemetry;
