//! (placeholder, filled in by the handler work)
