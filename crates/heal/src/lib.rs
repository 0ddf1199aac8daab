//! (placeholder, filled in by the heal work)
