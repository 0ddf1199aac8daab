//! Helpers shared by the handler tests.

/// Checks a timeout's message: it names the time the job ran, which a loaded machine may stretch
/// past the limit, never cut short of it.
pub fn assert_timed_out_after(message: &str, limit_secs: f64) {
    let secs = message
        .strip_prefix("timed out after ")
        .and_then(|rest| rest.strip_suffix('s'))
        .and_then(|n| n.parse::<f64>().ok());
    assert!(
        secs.is_some_and(|s| s >= limit_secs),
        "{message:?} does not say it timed out after at least {limit_secs}s"
    );
}
