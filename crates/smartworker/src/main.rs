//! The `smartworker` command: server, demo and operator CLI.

fn main() {}
