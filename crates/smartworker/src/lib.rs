//! SmartWorker's server, CLI commands and wiring, as a library so tests can drive them.
//!
//! The `smartworker` binary is a thin layer over these modules.

pub mod app;
pub mod cli;
pub mod config;
pub mod demo;
pub mod doctor;
pub mod example;
pub mod server;
