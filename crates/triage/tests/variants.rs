//! Over-fitting checks: the same failures wrapped the other ways logs and
//! chat tools wrap traces, real traces captured from the runtimes installed
//! here, and hostile input.

use smartworker_triage::{Language, ParseOptions, Trace, parse};

const PYTHON: &str = r#"Traceback (most recent call last):
  File "/usr/local/lib/python3.11/site-packages/dramatiq/worker.py", line 485, in process_message
    res = actor(*message.args, **message.kwargs)
          ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/srv/shop/orders/tasks.py", line 40, in sync_order
    total = compute_total(order)
            ^^^^^^^^^^^^^^^^^^^^
  File "/srv/shop/orders/pricing.py", line 12, in compute_total
    return order["lines"][0]["price"]
           ~~~~~~~~~~~~~~^^^
IndexError: list index out of range"#;

fn parse_default(text: &str) -> Trace {
    parse(text, &ParseOptions::default())
}

/// (file, line, function) of every in-app frame.
fn app(trace: &Trace) -> Vec<(String, Option<u32>, Option<String>)> {
    trace
        .app_frames()
        .map(|f| (f.file.clone(), f.line, f.function.clone()))
        .collect()
}

fn assert_python_baseline(trace: &Trace, how: &str) {
    assert_eq!(trace.language, Language::Python, "{how}");
    assert_eq!(trace.error_type, "IndexError", "{how}");
    assert_eq!(trace.message, "list index out of range", "{how}");
    assert_eq!(
        app(trace),
        vec![
            (
                "/srv/shop/orders/pricing.py".to_owned(),
                Some(12),
                Some("compute_total".to_owned())
            ),
            (
                "/srv/shop/orders/tasks.py".to_owned(),
                Some(40),
                Some("sync_order".to_owned())
            ),
        ],
        "{how}"
    );
    assert_eq!(trace.root_frame, Some(0), "{how}");
}

fn prefixed(text: &str, prefix: impl Fn(usize) -> String) -> String {
    text.lines()
        .enumerate()
        .map(|(i, line)| format!("{}{line}", prefix(i)))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn python_trace_parses_plain() {
    assert_python_baseline(&parse_default(PYTHON), "plain");
}

#[test]
fn python_trace_parses_with_crlf_line_endings() {
    assert_python_baseline(&parse_default(&PYTHON.replace('\n', "\r\n")), "crlf");
}

#[test]
fn python_trace_parses_behind_a_kubernetes_timestamp_prefix() {
    let text = prefixed(PYTHON, |i| {
        format!("2024-05-01T12:00:{:02}.{:06}Z stderr F ", i % 60, i * 7919)
    });
    assert_python_baseline(&parse_default(&text), "k8s prefix");
}

#[test]
fn python_trace_parses_behind_a_docker_compose_prefix_of_another_service() {
    let text = prefixed(PYTHON, |_| "shop-worker-2  | ".to_owned());
    assert_python_baseline(&parse_default(&text), "compose prefix");
}

#[test]
fn python_trace_parses_quoted_in_markdown() {
    let text = format!(
        "The job keeps failing:\n\n{}\n\nAny idea?",
        prefixed(PYTHON, |_| "> ".to_owned())
    );
    assert_python_baseline(&parse_default(&text), "markdown quote");
}

#[test]
fn python_trace_parses_inside_a_markdown_fence() {
    let text = format!("Log:\n```python\n{PYTHON}\n```\n");
    assert_python_baseline(&parse_default(&text), "markdown fence");
}

#[test]
fn python_trace_parses_flattened_onto_one_line() {
    let text = PYTHON.lines().map(str::trim).collect::<Vec<_>>().join(" ");
    assert_python_baseline(&parse_default(&text), "flattened");
}

#[test]
fn python_trace_parses_json_escaped_in_a_structured_log_line() {
    let escaped = serde_json::to_string(PYTHON).expect("string serialises");
    let text = format!(r#"{{"level":"error","event":"job failed","exc_info":{escaped}}}"#);
    assert_python_baseline(&parse_default(&text), "json log line");
}

#[test]
fn python_trace_parses_html_escaped() {
    let text = PYTHON.replace('"', "&quot;").replace('\'', "&#39;");
    assert_python_baseline(&parse_default(&text), "html escaped");
}

#[test]
fn python_trace_parses_with_ansi_colours() {
    let text = PYTHON.replace("IndexError", "\x1b[31mIndexError\x1b[0m");
    assert_python_baseline(&parse_default(&text), "ansi colours");
}

#[test]
fn python_chain_reports_the_first_exception_as_root_cause() {
    let text = include_str!("fixtures/python_cause.txt");
    let trace = parse_default(text);
    assert_eq!(
        (trace.error_type.as_str(), trace.message.as_str()),
        ("KeyError", "'pro'")
    );
    let chain: Vec<&str> = trace.chain.iter().map(|e| e.error_type.as_str()).collect();
    assert_eq!(chain, vec!["KeyError", "ChargeFailed"]);
    assert_eq!(
        app(&trace),
        vec![
            (
                "/app/jobs/billing.py".to_owned(),
                Some(11),
                Some("price_for".to_owned())
            ),
            (
                "/app/jobs/billing.py".to_owned(),
                Some(16),
                Some("charge".to_owned())
            ),
        ]
    );
}

#[test]
fn python_during_handling_chain_keeps_the_original_error_as_root() {
    let text = "Traceback (most recent call last):\n  File \"/app/jobs.py\", line 3, in load\n    \
                return cache[key]\nKeyError: 'user:1'\n\nDuring handling of the above exception, \
                another exception occurred:\n\nTraceback (most recent call last):\n  File \
                \"/app/jobs.py\", line 5, in load\n    return db.fetch(key)\nConnectionError: db down";
    let trace = parse_default(text);
    assert_eq!(trace.error_type, "KeyError");
    assert_eq!(trace.chain.len(), 2);
    assert_eq!(trace.chain[1].error_type, "ConnectionError");
}

#[test]
fn node_cause_chain_captured_from_node_reports_the_cause() {
    let trace = parse_default(include_str!("fixtures/node_cause.txt"));
    assert_eq!(trace.language, Language::JavaScript);
    assert_eq!(trace.error_type, "TypeError");
    assert_eq!(
        trace.message,
        "Cannot read properties of undefined (reading 'name')"
    );
    assert_eq!(trace.chain.len(), 2);
    assert_eq!(trace.chain[1].message, "send_email failed for job 42");
    assert_eq!(
        app(&trace),
        vec![
            (
                "/srv/app/jobs/send_email.js".to_owned(),
                Some(3),
                Some("renderGreeting".to_owned())
            ),
            (
                "/srv/app/jobs/send_email.js".to_owned(),
                Some(8),
                Some("sendEmail".to_owned())
            ),
            (
                "/srv/app/worker.js".to_owned(),
                Some(5),
                Some("runJob".to_owned())
            ),
            (
                "/srv/app/worker.js".to_owned(),
                Some(8),
                Some("Object.<anonymous>".to_owned())
            ),
        ]
    );
}

#[test]
fn node_trace_parses_flattened_and_behind_a_prefix() {
    let text = "worker-3 | Error: connect ECONNREFUSED 127.0.0.1:6379 at TCPConnectWrap.afterConnect \
                [as oncomplete] (node:net:1555:16) at async sendMail (/srv/app/mail.js:20:5) at async \
                Worker.run (/srv/app/node_modules/bullmq/dist/cjs/classes/worker.js:10:2)";
    let trace = parse_default(text);
    assert_eq!(trace.error_type, "Error");
    assert_eq!(trace.message, "connect ECONNREFUSED 127.0.0.1:6379");
    assert_eq!(
        app(&trace),
        vec![(
            "/srv/app/mail.js".to_owned(),
            Some(20),
            Some("sendMail".to_owned())
        )]
    );
}

#[test]
fn java_cause_chain_captured_from_the_jvm_reports_the_cause() {
    let trace = parse_default(include_str!("fixtures/java_cause.txt"));
    assert_eq!(trace.language, Language::Java);
    assert_eq!(trace.error_type, "java.lang.ArrayIndexOutOfBoundsException");
    assert_eq!(trace.message, "Index 0 out of bounds for length 0");
    assert_eq!(
        trace.chain.last().map(|e| e.error_type.as_str()),
        Some("java.lang.IllegalStateException")
    );
    let functions: Vec<String> = app(&trace).into_iter().filter_map(|(_, _, f)| f).collect();
    assert_eq!(
        functions,
        vec![
            "com.acme.jobs.ReportJob.firstRow",
            "com.acme.jobs.ReportJob.run",
            "com.acme.jobs.ReportJob.main"
        ]
    );
    assert_eq!(trace.root_frame, Some(1));
}

#[test]
fn rust_full_backtrace_captured_from_rustc_keeps_only_app_frames() {
    let trace = parse_default(include_str!("fixtures/rust_full_backtrace.txt"));
    assert_eq!(trace.language, Language::Rust);
    assert_eq!(trace.thread.as_deref(), Some("main"));
    assert_eq!(
        trace.message,
        "attempts must be a number: ParseIntError { kind: InvalidDigit }"
    );
    assert_eq!(
        app(&trace),
        vec![
            (
                "/build/worker/src/main.rs".to_owned(),
                Some(2),
                Some("main::parse_attempts".to_owned())
            ),
            (
                "/build/worker/src/main.rs".to_owned(),
                Some(6),
                Some("main::main".to_owned())
            ),
        ]
    );
}

#[test]
fn go_panic_with_tabs_keeps_stdlib_and_module_cache_out_of_the_app() {
    let text = "panic: send on closed channel [recovered]\n\ngoroutine 7 [running]:\n\
                net/http.(*conn).serve.func1()\n\t/usr/local/go/src/net/http/server.go:1898 +0xbe\n\
                github.com/acme/jobs/mailer.(*Mailer).Send(0xc0001, {0x10, 0x2})\n\t/app/mailer/send.go:31 +0x1a\n\
                github.com/hibiken/asynq.(*processor).exec.func1()\n\t/go/pkg/mod/github.com/hibiken/asynq@v0.24.1/processor.go:212 +0x7a\n\
                created by github.com/hibiken/asynq.(*processor).exec in goroutine 5\n\t/go/pkg/mod/github.com/hibiken/asynq@v0.24.1/processor.go:208 +0x1f\n\n\
                goroutine 1 [select]:\nmain.main()\n\t/app/main.go:12 +0x20";
    let trace = parse_default(text);
    assert_eq!(
        (trace.error_type.as_str(), trace.message.as_str()),
        ("panic", "send on closed channel")
    );
    assert_eq!(
        app(&trace),
        vec![(
            "/app/mailer/send.go".to_owned(),
            Some(31),
            Some("github.com/acme/jobs/mailer.(*Mailer).Send".to_owned())
        )]
    );
}

#[test]
fn ruby_uncaught_error_line_names_type_message_and_first_frame() {
    let text = "/app/jobs/sync_job.rb:14:in `perform': undefined method `id' for nil (NoMethodError)\n\
                \tfrom /usr/local/bundle/gems/sidekiq-7.1.0/lib/sidekiq/processor.rb:202:in `execute_job'\n\
                \tfrom /app/lib/runner.rb:3:in 'Runner#call'";
    let trace = parse_default(text);
    assert_eq!(
        (trace.error_type.as_str(), trace.message.as_str()),
        ("NoMethodError", "undefined method `id' for nil")
    );
    assert_eq!(
        app(&trace),
        vec![
            (
                "/app/jobs/sync_job.rb".to_owned(),
                Some(14),
                Some("perform".to_owned())
            ),
            (
                "/app/lib/runner.rb".to_owned(),
                Some(3),
                Some("Runner#call".to_owned())
            ),
        ]
    );
}

#[test]
fn returned_error_with_a_cause_list_reports_the_last_cause() {
    let trace = parse_default(
        "Error: failed to send mail\n\nCaused by:\n    0: smtp handshake\n    1: connection refused (os error 111)",
    );
    assert_eq!(trace.message, "connection refused (os error 111)");
    let chain: Vec<&str> = trace.chain.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(
        chain,
        vec![
            "connection refused (os error 111)",
            "smtp handshake",
            "failed to send mail"
        ]
    );
}

#[test]
fn garbage_input_gives_an_unknown_trace_without_frames() {
    for text in [
        "",
        "   \n\n",
        "hello world",
        "\u{0}\u{1}\u{fffd}binary",
        "at at at (((:::",
        "File \"x",
    ] {
        let trace = parse_default(text);
        assert_eq!(trace.language, Language::Unknown, "{text:?}");
        assert!(trace.frames.is_empty(), "{text:?}");
    }
}

#[test]
fn unknown_input_keeps_a_best_effort_error_line() {
    let trace = parse_default("starting worker\nsomething failed: disk full\nbye");
    assert_eq!(trace.language, Language::Unknown);
    assert_eq!(trace.message, "something failed: disk full");
}

/// How long this takes is measured by the triage benchmark, not asserted here.
#[test]
fn two_megabyte_input_says_it_was_cut() {
    let noise = "x".repeat(1000) + " at foo (/a.js:1:1) File \"/a.py\", line 1, in f\n";
    let text = noise.repeat(2100) + PYTHON;
    let trace = parse_default(&text);
    assert!(trace.input_truncated);
}

#[test]
fn two_megabyte_single_line_of_open_parentheses_is_cut_not_parsed_whole() {
    let text = "(".repeat(1 << 20) + &"at x (".repeat(200_000);
    let trace = parse_default(&text);
    assert!(trace.input_truncated);
    assert!(trace.frames.is_empty());
}

#[test]
fn two_megabyte_flattened_line_with_a_prefix_on_every_frame_is_cut() {
    let frames = [
        "worker-1  |     at run (/app/a.js:1:2)",
        "worker-1  |   File \"/app/a.py\", line 3, in run",
        "worker-1  | \t/src/app/main.go:12 +0x5d",
        "worker-1  |    4: app::run",
        "worker-1  |              at ./src/main.rs:4:27",
        "worker-1  | \tfrom /app/job.rb:3:in `perform'",
        "worker-1  | \tat com.acme.Job.run(Job.java:8)",
    ]
    .join(" ");
    let text = format!("worker-1  | Error: boom {}", frames.repeat(8_000));
    assert!(text.len() > 2 << 20);
    let trace = parse_default(&text);
    assert!(trace.input_truncated);
}

#[test]
fn two_megabytes_of_joined_json_records_behind_prefixes_are_cut() {
    let line = r#"w-1 | {"msg":"Error: a","job":{"error_class":"E","error_message":"m","error_backtrace":["/a.rb:1:in `x'"]}} w-1 | {"msg":"x"} junk {"a":1}"#;
    let text = format!("{line}\n").repeat((2 << 20) / line.len());
    let trace = parse_default(&text);
    assert!(trace.input_truncated);
}
