//! (placeholder, filled in by the notify work)
