//! (placeholder, filled in by the worker work)
