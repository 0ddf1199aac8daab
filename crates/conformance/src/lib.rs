//! The behaviour every SmartWorker queue backend must show, written once against the
//! `QueueBackend` trait and run against each backend.
//!
//! A backend's test file supplies an async function that returns a fresh, empty
//! [`Subject`] and invokes [`suite!`] with it; the macro expands to one `#[tokio::test]` per
//! check in [`checks`] and [`worker_checks`], named after the behaviour it proves:
//!
//! ```text
//! async fn subject() -> smartworker_conformance::Subject { /* a fresh backend */ }
//! smartworker_conformance::suite!(subject);
//! ```
//!
//! Checks wait for real time (delays, backoff, lock expiry) with margins wide enough for a
//! busy machine; none asserts on speed.

pub mod checks;
pub mod worker_checks;

use smartworker_core::QueueBackend;
use std::any::Any;
use std::sync::Arc;

/// A backend under test and whatever must live as long as it (a server, a directory).
pub struct Subject {
    /// The backend, empty.
    pub backend: Arc<dyn QueueBackend>,
    /// Dropped after the check: stops the server, removes the directory.
    pub guard: Box<dyn Any + Send>,
}

impl Subject {
    /// A subject that needs nothing kept alive.
    pub fn new(backend: Arc<dyn QueueBackend>) -> Subject {
        Subject {
            backend,
            guard: Box::new(()),
        }
    }
}

/// Expands to one test per conformance check, each on a fresh subject from `$make`.
#[macro_export]
macro_rules! suite {
    ($make:path) => {
        $crate::suite!(@each $make; checks:
            claimed_job_is_active_and_completes_with_its_result,
            jobs_without_priority_run_first_then_lower_numbers_then_oldest,
            delayed_job_waits_for_its_time,
            failed_job_backs_off_then_is_dead_lettered_with_every_attempt,
            exponential_backoff_doubles_the_wait,
            dead_lettering_a_job_that_asks_for_healing_adds_its_heal_job,
            dead_lettering_a_job_that_does_not_ask_for_healing_adds_none,
            retry_from_dead_letter_queue_gives_fresh_attempts_and_keeps_history,
            finishing_with_a_stale_lock_changes_nothing,
            stalled_job_is_recovered_once_then_dead_lettered,
            extending_a_lock_keeps_the_job_from_stalling,
            custom_job_id_deduplicates_and_integer_ids_are_refused,
            bulk_add_stores_all_or_nothing,
            bulk_add_keeps_the_order_of_its_jobs,
            completed_jobs_beyond_the_retention_count_are_removed,
            wait_finished_returns_when_another_task_completes_the_job,
            wait_finished_on_a_missing_job_is_not_found,
            removing_an_active_job_is_refused,
            released_job_returns_to_waiting_without_using_an_attempt,
            counts_follow_a_job_through_its_states,
            queues_lists_every_queue_that_holds_jobs,
            claim_takes_at_most_the_requested_number
        );
        $crate::suite!(@each $make; worker_checks:
            worker_runs_jobs_with_at_most_the_configured_concurrency,
            worker_retries_then_dead_letters_with_each_error,
            worker_fails_a_job_over_its_timeout,
            worker_shutdown_lets_running_jobs_finish,
            worker_shutdown_past_the_grace_period_hands_jobs_back,
            worker_recovers_a_job_whose_worker_died,
            two_workers_share_many_jobs_and_complete_each_once
        );
    };
    (@each $make:path; $module:ident: $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let subject = $make().await;
                $crate::$module::$check(::std::sync::Arc::clone(&subject.backend)).await;
                drop(subject);
            }
        )*
    };
}
