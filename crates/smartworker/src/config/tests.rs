//! Tests of loading: layering, every error form, `.env` syntax, and secrets kept out of `Debug`.

use std::path::Path;

use expect_test::{Expect, expect};
use tempfile::TempDir;

use super::*;

/// A project directory to load configuration from.
struct Project {
    dir: TempDir,
}

impl Project {
    fn new() -> Project {
        Project {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file relative to the project directory.
    fn file(&self, name: &str, text: &str) -> &Project {
        let path = self.root().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        self
    }

    fn load_with(&self, config: Option<&str>, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let opts = LoadOptions {
            config_path: config.map(PathBuf::from),
            cwd: self.root().to_owned(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        Config::load(&opts)
    }

    fn load(&self, env: &[(&str, &str)]) -> Config {
        self.load_with(None, env).unwrap()
    }

    /// Debug output with the temporary directory replaced by `<root>`.
    fn debug(&self, value: &impl fmt::Debug) -> String {
        format!("{value:#?}\n").replace(&self.root().display().to_string(), "<root>")
    }
}

fn check_error(project: &Project, config: Option<&str>, env: &[(&str, &str)], expect: Expect) {
    let error = project.load_with(config, env).unwrap_err();
    expect.assert_eq(&error.to_string());
}

#[test]
fn defaults_apply_when_no_file_or_variable_is_set() {
    let project = Project::new();
    let config = project.load(&[("HOME", "/root"), ("PATH", "/usr/bin")]);
    expect![[r#"
        Config {
            root_dir: "<root>",
            state_dir: "<root>/.smartworker",
            execution_context: Host,
            server: ServerConfig {
                host: "127.0.0.1",
                port: 9090,
                max_body_bytes: 1048576,
                api_token: None,
            },
            redis: RedisConfig {
                host: None,
                port: 6379,
            },
            queue_store: QueueStoreConfig {
                backend: Sqlite,
                redis_url: None,
                redis_prefix: "bull",
                redis_max_stalled: 1,
                redis_cluster: false,
            },
            smtp: SmtpConfig {
                host: None,
                port: 25,
                user: None,
                pass: None,
                to: None,
                from: "smartworker@localhost",
            },
            db: DbConfig {
                host: None,
                port: 5432,
                user: None,
                password: None,
                name: None,
                url: None,
            },
            memory_backend: Sqlite,
            llm: LlmConfig {
                url: "http://localhost:8100/v1",
                model: "qwen2.5-coder-3b-instruct",
                api_key: None,
                timeout_secs: 120,
            },
            embed: EmbedConfig {
                url: "http://localhost:8110/v1",
                model: "bge-large-en-v1.5",
                api_key: None,
                timeout_secs: 10,
                batch_size: 32,
                dimensions: None,
            },
            memory: MemoryConfig {
                model_dir: None,
                group_threshold: 0.82,
                search_min_similarity: 0.3,
            },
            heal: HealConfig {
                rounds: 2,
                sandbox: Auto,
                sandbox_image: None,
                sandbox_uid: 61000,
                sandbox_memory_mb: 2048,
                sandbox_write_mb: 256,
                workspace_dir: None,
                check_command: None,
            },
            queues: {},
            sources: [],
        }
    "#]]
    .assert_eq(&project.debug(&config));
    assert_eq!(config.redis_url(), None);
    assert_eq!(config.database_url(), None);
    assert_eq!(config.smtp(), None);
}

#[test]
fn each_layer_overrides_the_one_before() {
    let project = Project::new();
    project.file(
        "smartworker.toml",
        "[server]\nport = 9100\nhost = \"0.0.0.0\"\n[llm]\nmodel = \"toml-model\"\n",
    );
    let config = project.load(&[]);
    assert_eq!(
        (config.server.port, config.server.host.as_str()),
        (9100, "0.0.0.0")
    );
    assert_eq!(config.llm.model, "toml-model");

    project.file(".env", "APP_PORT=9200\n");
    let config = project.load(&[]);
    assert_eq!(
        (config.server.port, config.server.host.as_str()),
        (9200, "0.0.0.0")
    );

    let config = project.load(&[("APP_PORT", "9300"), ("APP_HOST", "::1")]);
    assert_eq!(
        (config.server.port, config.server.host.as_str()),
        (9300, "::1")
    );
    assert_eq!(config.listen_addr(), "[::1]:9300");
    assert_eq!(config.llm.model, "toml-model");
    assert_eq!(config.heal.rounds, 2);
    expect![[r#"
        [
            "<root>/smartworker.toml",
            "<root>/.env",
        ]
    "#]]
    .assert_eq(&project.debug(&config.sources));
}

#[test]
fn an_empty_value_counts_as_not_set() {
    let project = Project::new();
    project.file("smartworker.toml", "[smtp]\nhost = \"mail.test\"\n");
    project.file(".env", "APP_SMTP_HOST=\n");
    let config = project.load(&[("APP_PORT", "")]);
    assert_eq!(config.smtp.host.as_deref(), Some("mail.test"));
    assert_eq!(config.server.port, 9090);
}

#[test]
fn a_wrong_toml_value_names_file_line_and_key() {
    let project = Project::new();
    project.file(
        "smartworker.toml",
        "[server]\nport = 9100\n\n[queues.signup]\ncommand = [\"python3\", \"handlers/signup.py\"]\nattempts = \"three\"\n",
    );
    check_error(
        &project,
        None,
        &[],
        expect![[
            r#"smartworker.toml:6: queues.signup.attempts: expected a positive integer, found "three""#
        ]],
    );
}

#[test]
fn a_wrong_dotenv_value_names_file_line_and_variable() {
    let project = Project::new();
    project.file(".env", "# ports\nAPP_HOST=127.0.0.1\nAPP_PORT=90x0\n");
    check_error(
        &project,
        None,
        &[],
        expect![[r#".env:3: APP_PORT: "90x0" is not a port number"#]],
    );
}

#[test]
fn a_wrong_environment_value_names_the_variable() {
    let project = Project::new();
    let env = [("EXECUTION_CONTEXT", "cloud")];
    check_error(
        &project,
        None,
        &env,
        expect![[r#"environment: EXECUTION_CONTEXT: "cloud" is not one of host, sandbox"#]],
    );
}

#[test]
fn an_out_of_range_port_is_refused() {
    let project = Project::new();
    project.file("smartworker.toml", "[redis]\nport = 70000\n");
    check_error(
        &project,
        None,
        &[],
        expect!["smartworker.toml:2: redis.port: 70000 is not a port number"],
    );
}

/// Reported: `dead_letter_queue = "smartworker-heal"` made every failure a heal order.
#[test]
fn the_heal_queue_cannot_be_a_dead_letter_queue() {
    let project = Project::new();
    project.file(
        "smartworker.toml",
        "[queues.calc]\ncommand = [\"x\"]\ndead_letter_queue = \"smartworker-heal\"\n",
    );
    check_error(
        &project,
        None,
        &[],
        expect![[
            r#"smartworker.toml:3: queues.calc.dead_letter_queue: "smartworker-heal" is SmartWorker's own healing queue; a failed job copied there would be run as a heal order"#
        ]],
    );
}

/// Reported: `[queues.smartworker-heal]` was taken and ignored.
#[test]
fn the_heal_queue_cannot_be_configured_as_a_queue() {
    let project = Project::new();
    project.file(
        "smartworker.toml",
        "[queues.smartworker-heal]\ncommand = [\"x\"]\n",
    );
    check_error(
        &project,
        None,
        &[],
        expect![
            "smartworker.toml:1: queues.smartworker-heal: this is SmartWorker's own healing queue; configure healing under [heal] (rounds, sandbox, check_command)"
        ],
    );
}

/// Reported: `lock_ms = 1` was taken, and renewed the lock every half millisecond.
#[test]
fn a_lock_shorter_than_a_second_is_refused() {
    let project = Project::new();
    project.file(
        "smartworker.toml",
        "[queues.signup]\ncommand = [\"x\"]\nlock_ms = 1\n",
    );
    check_error(
        &project,
        None,
        &[],
        expect![
            "smartworker.toml:3: queues.signup.lock_ms: 1 ms is too short: a lock is renewed at half its length; use at least 1000"
        ],
    );
}

#[test]
fn an_unknown_toml_key_is_refused_with_the_allowed_ones() {
    let project = Project::new();
    project.file("smartworker.toml", "[server]\nprot = 9100\n");
    check_error(
        &project,
        None,
        &[],
        expect![
            "smartworker.toml:2: server.prot: unknown key; expected one of host, port, max_body_bytes, api_token"
        ],
    );

    project.file(
        "smartworker.toml",
        "[queues.signup]\ncommand = [\"x\"]\natempts = 3\n",
    );
    check_error(
        &project,
        None,
        &[],
        expect![
            "smartworker.toml:3: queues.signup.atempts: unknown key; expected one of command, concurrency, attempts, backoff, timeout_ms, lock_ms, autofix, env, mode, processes, dead_letter_queue, sandbox, sandbox_image"
        ],
    );

    project.file("smartworker.toml", "rootdir = \".\"\n");
    check_error(
        &project,
        None,
        &[],
        expect![
            "smartworker.toml:1: rootdir: unknown key; expected one of root_dir, state_dir, execution_context, server, redis, queue, smtp, db, llm, embed, memory, heal, queues"
        ],
    );
}

#[test]
fn invalid_toml_is_refused_with_its_line() {
    let project = Project::new();
    project.file("smartworker.toml", "[server]\nport = 1\n[server\n");
    check_error(
        &project,
        None,
        &[],
        expect!["smartworker.toml:3: unclosed table, expected `]`"],
    );

    project.file("smartworker.toml", "[server]\nport = 1\nport = 2\n");
    check_error(
        &project,
        None,
        &[],
        expect![[r#"smartworker.toml:3: duplicate key "port""#]],
    );
}

#[test]
fn invalid_dotenv_syntax_is_refused_with_its_line() {
    let project = Project::new();
    project.file(".env", "APP_PORT=1\nAPP_HOST\n");
    check_error(
        &project,
        None,
        &[],
        expect![[r#".env:2: expected KEY=VALUE, found "APP_HOST""#]],
    );
}

#[test]
fn a_missing_explicit_config_file_is_an_error_but_a_missing_default_is_not() {
    let project = Project::new();
    assert!(project.load_with(None, &[]).is_ok());
    check_error(
        &project,
        Some("conf/sw.toml"),
        &[],
        expect!["config file conf/sw.toml does not exist"],
    );
}

#[test]
fn queues_are_read_with_their_defaults() {
    let project = Project::new();
    project.file(
        "smartworker.toml",
        r#"
[queues.signup]
command = ["python3", "handlers/signup.py"]
concurrency = 4
attempts = 3
backoff = { type = "exponential", delay = 1000 }
timeout_ms = 30000
autofix = true
env = ["DATABASE_URL", "STRIPE_KEY"]

[queues."emails.send"]
command = ["node", "handlers/email.js"]
"#,
    );
    let config = project.load(&[]);
    expect![[r#"
        {
            "emails.send": QueueConfig {
                command: [
                    "node",
                    "handlers/email.js",
                ],
                concurrency: 1,
                attempts: 1,
                backoff: None,
                timeout_ms: None,
                lock_ms: 30000,
                autofix: false,
                env: [],
                mode: OneShot,
                processes: None,
                dead_letter_queue: None,
                sandbox: None,
                sandbox_image: None,
            },
            "signup": QueueConfig {
                command: [
                    "python3",
                    "handlers/signup.py",
                ],
                concurrency: 4,
                attempts: 3,
                backoff: Some(
                    Exponential {
                        delay: 1000,
                    },
                ),
                timeout_ms: Some(
                    30000,
                ),
                lock_ms: 30000,
                autofix: true,
                env: [
                    "DATABASE_URL",
                    "STRIPE_KEY",
                ],
                mode: OneShot,
                processes: None,
                dead_letter_queue: None,
                sandbox: None,
                sandbox_image: None,
            },
        }
    "#]]
    .assert_eq(&project.debug(&config.queues));
    let options = config.queues["signup"].job_options();
    assert_eq!(
        (options.attempts, options.timeout, options.autofix),
        (3, Some(30000), true)
    );
}

#[test]
fn queue_mistakes_are_refused() {
    let project = Project::new();
    let cases = [
        (
            "[queues.signup]\nattempts = 2\n",
            expect![[
                r#"smartworker.toml:1: queues.signup: missing required key "command" (the handler's argv)"#
            ]],
        ),
        (
            "[queues.\"sign up\"]\ncommand = [\"x\"]\n",
            expect![[
                r#"smartworker.toml:1: queues.sign up: queue name "sign up" is invalid: use at most 128 letters, digits, '-', '_' or '.'"#
            ]],
        ),
        (
            "[queues.a]\ncommand = []\n",
            expect![[
                "smartworker.toml:2: queues.a.command: the command is empty; give at least the program to run"
            ]],
        ),
        (
            "[queues.a]\ncommand = \"python3 x.py\"\n",
            expect![[
                r#"smartworker.toml:2: queues.a.command: expected an array of strings such as ["python3", "job.py"], found "python3 x.py""#
            ]],
        ),
        (
            "[queues.a]\ncommand = [\"x\"]\nbackoff = { type = \"linear\", delay = 5 }\n",
            expect![[
                r#"smartworker.toml:3: queues.a.backoff.type: "linear" is not one of exponential, fixed"#
            ]],
        ),
        (
            "[queues.a]\ncommand = [\"x\"]\nenv = [\"A B\"]\n",
            expect![[r#"smartworker.toml:3: queues.a.env: "A B" is not a variable name"#]],
        ),
        (
            "[queues.a]\ncommand = [\"x\"]\nconcurrency = 0\n",
            expect![["smartworker.toml:3: queues.a.concurrency: 0 is not a positive integer"]],
        ),
    ];
    for (toml, expect) in cases {
        project.file("smartworker.toml", toml);
        check_error(&project, None, &[], expect);
    }
}

#[test]
fn dotenv_quotes_comments_and_export_are_understood() {
    let project = Project::new();
    project.file(
        ".env",
        "# mail\nexport APP_SMTP_HOST=mail.test # the relay\nAPP_SMTP_USER='bot'\n\
         APP_SMTP_PASS=\"p#ss \\\"w\\\"\"\nAPP_SMTP_TO_USER=reviewer@example.test\nOTHER=ignored\n",
    );
    let config = project.load(&[]);
    assert_eq!(config.smtp.host.as_deref(), Some("mail.test"));
    assert_eq!(config.smtp.to.as_deref(), Some("reviewer@example.test"));
    let server = config.smtp().unwrap();
    let (user, pass) = server.credentials.unwrap();
    assert_eq!((user.as_str(), pass.expose()), ("bot", "p#ss \"w\""));
}

#[test]
fn the_dotenv_next_to_the_config_file_is_read_when_the_working_directory_has_none() {
    let project = Project::new();
    project.file(
        "app/smartworker.toml",
        "root_dir = \"./src/..\"\nstate_dir = \"state\"\n",
    );
    project.file("app/.env", "APP_PORT=9400\n");
    let config = project
        .load_with(Some("app/smartworker.toml"), &[])
        .unwrap();
    assert_eq!(config.server.port, 9400);
    expect![[r#"
        (
            "<root>/app/src/..",
            "<root>/app/state",
        )
    "#]]
    .assert_eq(&project.debug(&(&config.root_dir, config.state_dir())));

    project.file(".env", "APP_PORT=9500\n");
    let config = project
        .load_with(Some("app/smartworker.toml"), &[])
        .unwrap();
    assert_eq!(config.server.port, 9500);
}

#[test]
fn the_root_defaults_to_the_config_files_directory() {
    let project = Project::new();
    project.file("app/smartworker.toml", "");
    let config = project
        .load_with(Some("app/smartworker.toml"), &[("APP_STATE_DIR", "st")])
        .unwrap();
    expect![[r#"
        (
            "<root>/app",
            "<root>/st",
        )
    "#]]
    .assert_eq(&project.debug(&(&config.root_dir, &config.state_dir)));
}

#[test]
fn debug_output_hides_secrets_and_secrets_lists_them() {
    let project = Project::new();
    project.file(
        "smartworker.toml",
        "[smtp]\nhost = \"mail.test\"\nuser = \"bot\"\npass = \"smtp-hunter2\"\n[llm]\napi_key = \"sk-hunter2\"\n",
    );
    let env = [
        ("APP_DB_HOST", "db.test"),
        ("APP_DB_USER", "sw"),
        ("APP_DB_PASSWORD", "p@ss/word"),
    ];
    let config = project.load(&env);
    let debug = format!("{config:?} {:?} {:?}", config.database_url(), config.smtp());
    for secret in ["smtp-hunter2", "sk-hunter2", "p@ss/word", "p%40ss%2Fword"] {
        assert!(!debug.contains(secret), "{secret} shows in {debug}");
    }
    expect![[r#"["smtp-hunter2", "p%40ss%2Fword", "p@ss/word", "sk-hunter2"]"#]]
        .assert_eq(&format!("{:?}", config.secrets()));
}

#[test]
fn a_secret_of_the_wrong_type_is_not_repeated_in_the_error() {
    let project = Project::new();
    project.file(
        "smartworker.toml",
        "[db]\nuser = \"sw\"\npassword = 12345678\n",
    );
    check_error(
        &project,
        None,
        &[],
        expect!["smartworker.toml:3: db.password: expected a string, found an integer"],
    );
}

#[test]
fn half_a_login_is_refused() {
    let project = Project::new();
    project.file(".env", "APP_SMTP_HOST=mail.test\nAPP_SMTP_USER=bot\n");
    check_error(
        &project,
        None,
        &[],
        expect![".env:2: APP_SMTP_USER: set without smtp.pass (or APP_SMTP_PASS)"],
    );
    let project = Project::new();
    check_error(
        &project,
        None,
        &[("APP_DB_PASSWORD", "x")],
        expect!["environment: APP_DB_PASSWORD: set without db.user (or APP_DB_USER)"],
    );
}

#[test]
fn service_urls_are_built_from_hosts_and_ports() {
    let project = Project::new();
    let env = [
        ("APP_REDIS_HOST", "redis.test"),
        ("APP_REDIS_PORT", "6380"),
        ("APP_DB_HOST", "db.test"),
        ("APP_DB_USER", "sw"),
        ("APP_DB_PASSWORD", "p@ss"),
        ("APP_DB_NAME", "smart worker"),
        ("APP_LLM_URL", "https://llm.test/v1/"),
    ];
    let config = project.load(&env);
    assert_eq!(
        config.redis_url().as_deref(),
        Some("redis://redis.test:6380")
    );
    let url = config.database_url().unwrap();
    assert_eq!(
        url.expose(),
        "postgres://sw:p%40ss@db.test:5432/smart%20worker"
    );
    assert_eq!(config.llm.url, "https://llm.test/v1");

    check_error(
        &project,
        None,
        &[("APP_LLM_URL", "localhost:8100")],
        expect![[r#"environment: APP_LLM_URL: "localhost:8100" is not an http or https URL"#]],
    );
}

#[test]
fn redis_backend_settings_come_from_every_layer() {
    let project = Project::new();
    project.file(
        "smartworker.toml",
        "[queue]\nbackend = \"redis\"\n[queues.login]\ncommand = [\"x\"]\n\
         dead_letter_queue = \"loginDLQ\"\n",
    );
    let url = "redis://:pa%2Fss@redis.test:6380/2";
    let config = project.load(&[("APP_REDIS_URL", url), ("APP_REDIS_PREFIX", "{sw}")]);
    assert_eq!(config.queue_store.backend, QueueBackendKind::Redis);
    assert_eq!(config.redis_connection_url().unwrap().expose(), url);
    assert_eq!(config.queue_store.redis_prefix, "{sw}");
    assert_eq!(
        config.queues["login"].dead_letter_queue.as_deref(),
        Some("loginDLQ")
    );
    assert!(config.secrets().contains(&"pa%2Fss".to_owned()));
    assert!(!format!("{config:?}").contains("pa%2Fss"));

    let by_host = project.load(&[("APP_REDIS_HOST", "10.0.0.5")]);
    let url = by_host.redis_connection_url().unwrap();
    assert_eq!(url.expose(), "redis://10.0.0.5:6379");
}

#[test]
fn redis_settings_mistakes_are_refused_without_echoing_the_url() {
    let project = Project::new();
    check_error(
        &project,
        None,
        &[("APP_QUEUE_BACKEND", "redis")],
        expect![[
            r#"environment: APP_QUEUE_BACKEND: "redis" needs redis.url (APP_REDIS_URL) or redis.host (APP_REDIS_HOST)"#
        ]],
    );
    check_error(
        &project,
        None,
        &[("APP_REDIS_URL", "http://:secret@h")],
        expect![[
            "environment: APP_REDIS_URL: expected a redis:// or rediss:// URL (value hidden: it may hold a password)"
        ]],
    );
    check_error(
        &project,
        None,
        &[("APP_REDIS_CLUSTER", "true")],
        expect![[
            r#"environment: APP_REDIS_CLUSTER: a cluster needs a hash-tagged redis.prefix (APP_REDIS_PREFIX) such as "{sw}"; "bull" has none"#
        ]],
    );
    check_error(
        &project,
        None,
        &[("APP_QUEUE_BACKEND", "valkey")],
        expect![[r#"environment: APP_QUEUE_BACKEND: "valkey" is not one of sqlite, redis"#]],
    );
    project.file(
        "smartworker.toml",
        "[queues.login]\ncommand = [\"x\"]\ndead_letter_queue = \"login:dlq\"\n",
    );
    check_error(
        &project,
        None,
        &[],
        expect![[
            r#"smartworker.toml:3: queues.login.dead_letter_queue: queue name "login:dlq" is invalid: use at most 128 letters, digits, '-', '_' or '.'"#
        ]],
    );
}

#[test]
fn sandbox_backend_image_and_uid_are_read_globally_and_per_queue() {
    let project = Project::new();
    project.file(
        "smartworker.toml",
        "[heal]\nsandbox = \"bubblewrap\"\nsandbox_uid = 62000\n\
         [queues.signup]\ncommand = [\"x\"]\nsandbox = \"docker\"\nsandbox_image = \"py:1\"\n",
    );
    let config = project.load(&[("APP_HEAL_SANDBOX_IMAGE", "base:2")]);
    assert_eq!(config.heal.sandbox, SandboxKind::Bubblewrap);
    assert_eq!(config.heal.sandbox_image.as_deref(), Some("base:2"));
    assert_eq!(config.heal.sandbox_uid, 62000);
    let signup = &config.queues["signup"];
    assert_eq!(signup.sandbox, Some(SandboxKind::Docker));
    assert_eq!(signup.sandbox_image.as_deref(), Some("py:1"));
}

#[test]
fn sandbox_limits_and_workspace_dir_are_read_and_checked() {
    let project = Project::new();
    let elsewhere = tempfile::tempdir().unwrap();
    let outside = elsewhere.path().to_string_lossy().into_owned();
    let config = project.load(&[
        ("APP_HEAL_SANDBOX_MEMORY_MB", "512"),
        ("APP_HEAL_SANDBOX_WRITE_MB", "32"),
        ("APP_HEAL_WORKSPACE_DIR", &outside),
    ]);
    assert_eq!(config.heal.sandbox_memory_mb, 512);
    assert_eq!(config.heal.sandbox_write_mb, 32);
    let real = std::fs::canonicalize(elsewhere.path()).unwrap();
    assert_eq!(config.heal.workspace_dir, Some(real));

    let refused = |name: &str, value: &str| {
        let err = project.load_with(None, &[(name, value)]).unwrap_err();
        err.to_string()
            .replace(&project.root().display().to_string(), "<root>")
    };
    expect!["environment: APP_HEAL_SANDBOX_MEMORY_MB: 16 MiB is out of range: expected 64 to 1048576 MiB"]
        .assert_eq(&refused("APP_HEAL_SANDBOX_MEMORY_MB", "16"));
    expect![[r#"environment: APP_HEAL_SANDBOX_WRITE_MB: "0" is not a positive integer"#]]
        .assert_eq(&refused("APP_HEAL_SANDBOX_WRITE_MB", "0"));
    expect!["environment: APP_HEAL_WORKSPACE_DIR: /nonexistent/ws does not exist"]
        .assert_eq(&refused("APP_HEAL_WORKSPACE_DIR", "/nonexistent/ws"));
    // A workspace made inside the project would be copied into the next one.
    std::fs::create_dir(project.root().join("scratch")).unwrap();
    let inside = refused("APP_HEAL_WORKSPACE_DIR", "scratch");
    assert!(inside.contains("is inside the project root"), "{inside}");
}

#[test]
fn root_sandbox_uid_and_unknown_backends_are_refused() {
    let project = Project::new();
    check_error(
        &project,
        None,
        &[("APP_HEAL_SANDBOX_UID", "0")],
        expect![[r#"environment: APP_HEAL_SANDBOX_UID: "0" is not a positive integer"#]],
    );
    // (uid_t)-1 and its 16-bit form mean "unchanged" to setresuid: root would stay root.
    for unchanged in ["4294967295", "65535"] {
        let err = project
            .load_with(None, &[("APP_HEAL_SANDBOX_UID", unchanged)])
            .unwrap_err();
        assert!(err.to_string().contains("leave the id unchanged"), "{err}");
    }
    project.file(
        "smartworker.toml",
        "[queues.signup]\ncommand = [\"x\"]\nsandbox = \"podman\"\n",
    );
    check_error(
        &project,
        None,
        &[],
        expect![[
            r#"smartworker.toml:3: queues.signup.sandbox: "podman" is not one of auto, bubblewrap, docker"#
        ]],
    );
    project.file(
        "smartworker.toml",
        "[queues.signup]\ncommand = [\"x\"]\nsandbox_image = \"my image\"\n",
    );
    check_error(
        &project,
        None,
        &[],
        expect![[
            r#"smartworker.toml:3: queues.signup.sandbox_image: "my image" is not a docker image name"#
        ]],
    );
}

#[test]
fn redis_max_stalled_defaults_to_bullmqs_and_refuses_non_numbers() {
    let project = Project::new();
    project.file("smartworker.toml", "[redis]\nmax_stalled = 20\n");
    assert_eq!(project.load(&[]).queue_store.redis_max_stalled, 20);
    let from_env = project.load(&[("APP_REDIS_MAX_STALLED", "3")]);
    assert_eq!(from_env.queue_store.redis_max_stalled, 3);
    project.file("smartworker.toml", "");
    assert_eq!(project.load(&[]).queue_store.redis_max_stalled, 1);
    check_error(
        &project,
        None,
        &[("APP_REDIS_MAX_STALLED", "many")],
        expect![[r#"environment: APP_REDIS_MAX_STALLED: "many" is not a positive integer"#]],
    );
}

#[test]
fn embedder_and_memory_settings_are_read_from_every_layer() {
    let project = Project::new();
    project.file(
        "smartworker.toml",
        "[memory]\nmodel_dir = \"models/minilm\"\ngroup_threshold = 0.85\nsearch_min_similarity = 0\n\n[embed]\nbatch_size = 8\n",
    );
    let env = [
        ("APP_LLM_API_KEY", "llm-key"),
        ("APP_EMBED_DIMENSIONS", "1024"),
        ("APP_EMBED_TIMEOUT_SECS", "3"),
    ];
    let config = project.load(&env);
    assert_eq!(
        config.memory.model_dir,
        Some(project.root().join("models/minilm"))
    );
    assert!((config.memory.group_threshold - 0.85).abs() < 1e-6);
    assert!(config.memory.search_min_similarity.abs() < 1e-6);
    let env_floor = project.load(&[("APP_MEMORY_SEARCH_MIN_SIMILARITY", "0.55")]);
    assert!((env_floor.memory.search_min_similarity - 0.55).abs() < 1e-6);
    assert_eq!(
        (
            config.embed.batch_size,
            config.embed.dimensions,
            config.embed.timeout_secs
        ),
        (8, Some(1024), 3)
    );
    // Without its own key, the embeddings server gets the model server's.
    assert_eq!(
        config.embed.api_key.as_ref().map(Secret::expose),
        Some("llm-key")
    );

    let own = project.load(&[
        ("APP_LLM_API_KEY", "llm-key"),
        ("APP_EMBED_API_KEY", "emb-key"),
    ]);
    assert_eq!(
        own.embed.api_key.as_ref().map(Secret::expose),
        Some("emb-key")
    );
    assert!(own.secrets().contains(&"emb-key".to_owned()));
}

#[test]
fn a_group_threshold_outside_0_to_1_is_refused() {
    let project = Project::new();
    check_error(
        &project,
        None,
        &[("APP_MEMORY_GROUP_THRESHOLD", "1.5")],
        expect![[
            r#"environment: APP_MEMORY_GROUP_THRESHOLD: "1.5" is not a similarity above 0 and at most 1"#
        ]],
    );
    project.file("smartworker.toml", "[memory]\ngroup_threshold = \"high\"\n");
    check_error(
        &project,
        None,
        &[],
        expect![[
            r#"smartworker.toml:2: memory.group_threshold: expected a number above 0 and at most 1, found "high""#
        ]],
    );
}

#[test]
fn a_search_floor_outside_0_to_1_is_refused() {
    let project = Project::new();
    check_error(
        &project,
        None,
        &[("APP_MEMORY_SEARCH_MIN_SIMILARITY", "-0.1")],
        expect![[
            r#"environment: APP_MEMORY_SEARCH_MIN_SIMILARITY: "-0.1" is not a similarity from 0 to 1"#
        ]],
    );
}

/// Reported: `dead_letter_queue` naming the queue itself made 1,321 jobs in 5 s on Redis.
#[test]
fn a_dead_letter_queue_that_leads_back_to_its_queue_is_refused() {
    let project = Project::new();
    project.file(
        "smartworker.toml",
        "[queues.loop]\ncommand = [\"false\"]\ndead_letter_queue = \"loop\"\n",
    );
    check_error(
        &project,
        None,
        &[],
        expect![[
            "smartworker.toml:1: queues.loop.dead_letter_queue: dead-lettered jobs would go round for ever: loop -> loop"
        ]],
    );
    project.file(
        "smartworker.toml",
        "[queues.a]\ncommand = [\"x\"]\ndead_letter_queue = \"b\"\n\
         [queues.b]\ncommand = [\"x\"]\ndead_letter_queue = \"a\"\n",
    );
    check_error(
        &project,
        None,
        &[],
        expect![[
            "smartworker.toml:1: queues.a.dead_letter_queue: dead-lettered jobs would go round for ever: a -> b -> a"
        ]],
    );
    // A queue that consumes another's dead-letter queue is fine: its own go elsewhere.
    project.file(
        "smartworker.toml",
        "[queues.a]\ncommand = [\"x\"]\n[queues.a-dlq]\ncommand = [\"x\"]\n",
    );
    assert!(project.load_with(None, &[]).is_ok());
}
