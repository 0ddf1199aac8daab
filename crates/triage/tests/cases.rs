//! The real failure cases in `fixtures/traces.jsonl`, one test each: every
//! test checks the error, the in-app frames innermost first, the root frame
//! (or the library frame when no app frame is visible) and the extra facts a
//! case carries.

mod support;

const FIXTURES: &str = include_str!("fixtures/traces.jsonl");

support::cases! {
    c01_celery_keyerror_behind_compose_prefix => "c01",
    c03_rq_job_in_site_packages_behind_honcho_prefix => "c03",
    c05_dramatiq_keyerror_raised_inside_third_party_library => "c05",
    c07_headerless_fragment_with_project_virtualenv => "c07",
    c09_celery_remote_traceback_chain_on_windows_without_app_frames => "c09",
    c10_bull_compiled_typescript_with_old_node_internals => "c10",
    c11_bullmq_async_frames_behind_nest_log_prefix => "c11",
    c13_bullmq_second_error_stays_secondary => "c13",
    c16_pkg_bundled_windows_unhandled_rejection => "c16",
    c18_bun_error_with_source_gutter_and_no_app_frames => "c18",
    c19_bun_compiled_bundle_frames => "c19",
    c21_rust_old_panic_format_with_short_backtrace => "c21",
    c22_rust_new_panic_format_with_symbolless_backtrace => "c22",
    c24_rust_2015_panic_in_markdown_quote_between_log_lines => "c24",
    c27_go_created_by_in_goroutine_without_tab_indent => "c27",
    c29_go16_panic_frame_in_gopath_layout => "c29",
    c31_airbrake_markdown_ruby_backtrace => "c31",
    c33_bugsnag_html_escaped_ruby_frame => "c33",
    c35_quartz_npe_logged_twice_as_cause => "c35",
}

#[test]
fn fixture_has_a_test_for_every_case() {
    support::check_every_case_tested(FIXTURES, include_str!("cases.rs"));
}

/// Every case parses the same with CRLF endings, behind another compose
/// prefix, quoted in Markdown, inside a JSON log record and flattened onto
/// one line; error-tracker reports (already Markdown) only take CRLF.
#[test]
fn every_case_survives_crlf_prefixes_quotes_json_records_and_flattening() {
    support::check_variants(FIXTURES, &[]);
}
