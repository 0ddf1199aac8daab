//! More real failure cases, in `fixtures/more_traces.jsonl`: traces captured
//! from the runtimes installed here and shaped after public bug reports, each
//! wrapped the way a log or a chat tool wraps it. Checked like `cases.rs`.

mod support;

const FIXTURES: &str = include_str!("fixtures/more_traces.jsonl");

support::cases! {
    m01_celery_traceback_behind_journald_prefix => "m01",
    m02_rq_traceback_behind_kubernetes_cri_prefix => "m02",
    m03_dramatiq_on_heroku_skips_the_heroku_python_dir => "m03",
    m04_recursion_error_with_repeated_line_marker => "m04",
    m05_explicit_cause_chain_reports_the_first_error => "m05",
    m06_exception_group_reports_its_first_sub_exception => "m06",
    m07_syntax_error_in_task_module_keeps_the_file_frame => "m07",
    m08_traceback_in_json_after_a_text_prefix => "m08",
    m09_html_escaped_python2_celery_traceback => "m09",
    m10_hand_elided_arq_traceback_with_cause => "m10",
    m11_flattened_windows_celery_traceback => "m11",
    m12_markdown_quoted_huey_traceback => "m12",
    m13_multi_line_library_error_message_keeps_first_line => "m13",
    m14_bullmq_async_frames_with_method_alias => "m14",
    m15_node_error_cause_block_is_the_root => "m15",
    m16_node_esm_file_urls_after_source_caret => "m16",
    m17_node_eval_frame_points_at_eval_site => "m17",
    m18_node_aggregate_error_reports_first_error => "m18",
    m19_webpack_source_mapped_nest_bull_frames => "m19",
    m20_node14_unhandled_rejection_warning_with_agenda => "m20",
    m21_pg_boss_pretty_json_output => "m21",
    m22_graphile_worker_error_without_app_frames => "m22",
    m23_flattened_bull_error_glued_to_message => "m23",
    m24_deno_remote_modules_are_libraries => "m24",
    m25_bun_error_after_source_gutter => "m25",
    m26_html_escaped_nest_bullmq_consumer => "m26",
    m27_java_executor_chain_with_suppressed_block => "m27",
    m28_java_stream_lambda_behind_kubernetes_prefix => "m28",
    m29_spring_batch_logback_common_frames_omitted => "m29",
    m30_kotlin_coroutine_with_suppressed_diagnostics => "m30",
    m31_groovy_quartz_job_skips_groovy_runtime => "m31",
    m32_spring_scheduled_logstash_json_stack_trace => "m32",
    m33_rust_backtrace_behind_journald_prefix => "m33",
    m34_rust_full_backtrace_with_crate_hashes => "m34",
    m35_rust_unnumbered_inlined_frame_in_compose => "m35",
    m36_rust_first_panic_wins_over_propagation => "m36",
    m37_anyhow_error_with_stack_backtrace => "m37",
    m38_go_nil_map_write_in_goroutine => "m38",
    m39_go_repanic_roots_below_the_runtime_panic => "m39",
    m40_go_error_value_panic_behind_compose => "m40",
    m41_go_recovered_panic_logged_with_debug_stack => "m41",
    m42_go_concurrent_map_writes_with_goroutine_dump => "m42",
    m43_ruby_uncaught_error_with_error_highlight => "m43",
    m44_ruby_cause_printed_after_the_wrapper => "m44",
    m45_resque_failure_json_record => "m45",
    m46_sidekiq_log_prefix_on_every_backtrace_line => "m46",
    m47_ruby34_quoting_in_good_job => "m47",
    m48_java_root_cause_gets_app_frames_from_common_frames_omitted => "m48",
    m49_rails_active_job_error_class_in_parentheses_form => "m49",
    m50_sidekiq_namespaced_error_without_error_suffix => "m50",
    m51_go_error_value_printed_with_its_stack => "m51",
}

#[test]
fn fixture_has_a_test_for_every_case() {
    support::check_every_case_tested(FIXTURES, include_str!("more_cases.rs"));
}

/// The same wrappings `cases.rs` checks: CRLF, a compose prefix, a Markdown
/// quote, a JSON log record and one flattened line.
#[test]
fn every_case_survives_crlf_prefixes_quotes_json_records_and_flattening() {
    support::check_variants(FIXTURES, &[]);
}
