//! (placeholder, filled in by the edits work)
