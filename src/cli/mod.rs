//! Subcommands of the `oxidp` binary that live outside `main.rs`.

pub mod audit;
pub mod commerce;
pub mod role;
