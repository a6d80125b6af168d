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

/// Every heap block is wiped when it is freed: 1Password's `zeroizing-alloc` around the system
/// allocator. This crate wipes its own secrets (`Zeroizing`, `secrecy`), but libraries copy them
/// into buffers of their own that nothing here can reach: age's 64 KiB stream chunk holds the
/// report text and every grant's case key while it seals them, actix's read buffers hold the
/// request body, serde builds strings. Freed unwiped, those copies would stay readable in the
/// process's memory (core dumps are off, but swap, a VM snapshot or a later memory-disclosure bug
/// would reach them). Defined here, in the library, so that the tests and benches run on the
/// allocator the service runs on; the cost is in the README's performance notes.
#[global_allocator]
static ALLOCATOR: zeroizing_alloc::ZeroAlloc<std::alloc::System> =
    zeroizing_alloc::ZeroAlloc(std::alloc::System);
