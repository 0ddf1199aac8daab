//! (placeholder, filled in by the triage work)
