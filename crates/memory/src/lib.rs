//! (placeholder, filled in by the memory work)
