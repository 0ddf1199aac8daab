//! `smartworker doctor`: checks that the services the configuration names answer, and says
//! what SmartWorker does without each one.
//!
//! Every check gives up after [`CHECK_TIMEOUT`], and only the hosts in the configuration (whose
//! defaults are localhost) and the local Docker socket are contacted; HTTP proxies from the
//! environment are ignored so that nothing else is.

use std::fmt::Write as _;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;

use crate::config::{Config, QueueBackendKind};
use smartworker_queue_redis::{RedisBackend, RedisOptions, redact};

/// How long one check may take.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Where Docker listens.
const DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// The outcome of one check.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    /// What was checked, such as `redis`.
    pub name: String,
    /// Whether SmartWorker can use it as configured (an optional service left unconfigured is ok).
    pub ok: bool,
    /// What was found: the answer, or the error.
    pub detail: String,
    /// What SmartWorker does, or cannot do, when this is missing.
    pub consequence: String,
}

impl Check {
    fn new(name: &str, consequence: &str, outcome: Result<String, String>) -> Check {
        let (ok, detail) = match outcome {
            Ok(detail) => (true, detail),
            Err(detail) => (false, detail),
        };
        Check {
            name: name.to_owned(),
            ok,
            detail,
            consequence: consequence.to_owned(),
        }
    }
}

/// Runs every check at once and returns them in a fixed order.
pub async fn run_checks(cfg: &Config) -> Vec<Check> {
    let images = sandbox_images(cfg);
    let (redis, postgres, model, embeddings, smtp, bubblewrap, docker) = tokio::join!(
        redis(cfg),
        postgres(cfg),
        model(cfg),
        embeddings(cfg),
        smtp(cfg),
        bubblewrap(),
        docker(Path::new(DOCKER_SOCKET), &images),
    );
    vec![redis, postgres, model, embeddings, smtp, bubblewrap, docker]
}

/// Renders checks as a table; a failed check is followed by its consequence.
pub fn render(checks: &[Check]) -> String {
    let width = checks
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(0)
        .max("check".len());
    let mut out = format!("{:width$}  status  detail\n", "check");
    for check in checks {
        let status = if check.ok { "ok" } else { "FAIL" };
        let _ = writeln!(out, "{:width$}  {status:6}  {}", check.name, check.detail);
        if !check.ok {
            let _ = writeln!(out, "{:width$}          -> {}", "", check.consequence);
        }
    }
    let failed = checks.iter().filter(|c| !c.ok).count();
    let _ = writeln!(
        out,
        "{} of {} checks passed",
        checks.len() - failed,
        checks.len()
    );
    out
}

/// Runs `check` with the time limit.
async fn limited(check: impl Future<Output = Result<String, String>>) -> Result<String, String> {
    match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(outcome) => outcome,
        Err(_) => Err(format!("no answer within {} s", CHECK_TIMEOUT.as_secs())),
    }
}

async fn connect(host: &str, port: u16) -> Result<TcpStream, String> {
    TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))
}

async fn redis(cfg: &Config) -> Check {
    const CONSEQUENCE: &str = "queues on Redis are unavailable; set queue.backend = \"sqlite\" \
                               (APP_QUEUE_BACKEND) to use the embedded store";
    let backend = match cfg.queue_store.backend {
        QueueBackendKind::Sqlite => "the embedded SQLite store",
        QueueBackendKind::Redis => "redis",
    };
    if let Some(url) = &cfg.queue_store.redis_url {
        let outcome = limited(ping_redis_url(cfg, url.expose())).await;
        return Check::new(
            "redis",
            CONSEQUENCE,
            outcome.map(|d| format!("{d}; queues use {backend}")),
        );
    }
    let Some(host) = cfg.redis.host.as_deref() else {
        let detail = "not configured: queues use the embedded SQLite store".to_owned();
        return Check::new("redis", CONSEQUENCE, Ok(detail));
    };
    Check::new(
        "redis",
        CONSEQUENCE,
        limited(ping_redis(host, cfg.redis.port)).await,
    )
}

/// Connects as the queue backend does (password, database, TLS) and sends `PING`.
async fn ping_redis_url(cfg: &Config, url: &str) -> Result<String, String> {
    let mut opts = RedisOptions::new(url);
    opts.prefix.clone_from(&cfg.queue_store.redis_prefix);
    opts.cluster = cfg.queue_store.redis_cluster;
    opts.connect_timeout = CHECK_TIMEOUT;
    let shown = redact(url);
    RedisBackend::connect(opts)
        .await
        .map_err(|e| e.to_string())?;
    Ok(format!("{shown} answered PONG"))
}

/// Sends `PING` and expects `+PONG`.
async fn ping_redis(host: &str, port: u16) -> Result<String, String> {
    let stream = connect(host, port).await?;
    let mut stream = BufReader::new(stream);
    stream
        .write_all(b"PING\r\n")
        .await
        .map_err(|e| format!("{host}:{port}: cannot send PING: {e}"))?;
    let reply = first_line(&mut stream)
        .await
        .map_err(|e| format!("{host}:{port}: {e}"))?;
    if reply == "+PONG" {
        return Ok(format!("{host}:{port} answered PONG"));
    }
    Err(format!("{host}:{port} answered {reply:?} instead of +PONG"))
}

/// Reads one line of at most 512 bytes, without its line ending.
async fn first_line(stream: &mut BufReader<TcpStream>) -> Result<String, String> {
    let mut line = String::new();
    let mut limited = (&mut *stream).take(512);
    let read = limited
        .read_line(&mut line)
        .await
        .map_err(|e| format!("cannot read: {e}"))?;
    if read == 0 {
        return Err("closed the connection without answering".to_owned());
    }
    Ok(line.trim_end().to_owned())
}

async fn postgres(cfg: &Config) -> Check {
    const CONSEQUENCE: &str = "memory is unavailable; unset APP_DB_HOST to use the embedded store";
    let Some(host) = cfg.db.host.as_deref() else {
        let detail = "not configured: memory uses the embedded store".to_owned();
        return Check::new("postgresql", CONSEQUENCE, Ok(detail));
    };
    let port = cfg.db.port;
    let outcome = limited(async move {
        connect(host, port).await?;
        Ok(format!("{host}:{port} accepts connections"))
    });
    Check::new("postgresql", CONSEQUENCE, outcome.await)
}

async fn model(cfg: &Config) -> Check {
    let api_key = cfg.llm.api_key.as_ref().map(|k| k.expose());
    let outcome = limited(list_models(&cfg.llm.url, api_key, &cfg.llm.model)).await;
    Check::new(
        "model server",
        "healing cannot ask the model for fixes",
        outcome,
    )
}

async fn embeddings(cfg: &Config) -> Check {
    let outcome = limited(list_models(&cfg.embed.url, None, &cfg.embed.model)).await;
    Check::new(
        "embeddings server",
        "similar failures are found with lexical fallback embeddings",
        outcome,
    )
}

/// `GET {base}/models` on an OpenAI-compatible server; says whether `model` is listed.
async fn list_models(base: &str, api_key: Option<&str>, model: &str) -> Result<String, String> {
    let url = format!("{base}/models");
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(CHECK_TIMEOUT)
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    let mut request = client.get(&url);
    if let Some(key) = api_key {
        request = request.bearer_auth(key);
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("{url}: {}", root_cause(&e)))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("{url} answered {status}"));
    }
    let body: serde_json::Value = response
        .json()
        .await
        .map_err(|e| format!("{url}: not a model list: {e}"))?;
    let ids: Vec<&str> = body["data"]
        .as_array()
        .map(|models| models.iter().filter_map(|m| m["id"].as_str()).collect())
        .unwrap_or_default();
    if ids.contains(&model) {
        return Ok(format!("{url} lists {model}"));
    }
    // Many servers (llama.cpp among them) serve one model under its file name and accept any
    // name in requests, so an unlisted name is worth saying but not a failure.
    Ok(format!(
        "{url} answers; {model:?} is not among its models ({})",
        ids.join(", ")
    ))
}

/// The innermost cause of an error, which is where reqwest says "connection refused".
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

async fn smtp(cfg: &Config) -> Check {
    const CONSEQUENCE: &str = "e-mails wait in the outbox until the SMTP server answers";
    let Some(server) = cfg.smtp() else {
        let detail = "not configured: e-mails go to the outbox".to_owned();
        return Check::new("smtp", CONSEQUENCE, Ok(detail));
    };
    Check::new(
        "smtp",
        CONSEQUENCE,
        limited(smtp_banner(&server.host, server.port)).await,
    )
}

/// Reads the server's greeting, expects `220`, and says goodbye.
async fn smtp_banner(host: &str, port: u16) -> Result<String, String> {
    let mut stream = BufReader::new(connect(host, port).await?);
    let banner = first_line(&mut stream)
        .await
        .map_err(|e| format!("{host}:{port}: {e}"))?;
    if !banner.starts_with("220") {
        return Err(format!(
            "{host}:{port} greeted with {banner:?} instead of 220"
        ));
    }
    // The goodbye is a courtesy; the check has already passed.
    let _ = stream.write_all(b"QUIT\r\n").await;
    Ok(format!("{host}:{port} greets: {banner}"))
}

async fn bubblewrap() -> Check {
    Check::new(
        "bubblewrap",
        "healing cannot verify fixes: apt-get install bubblewrap",
        limited(try_bubblewrap()).await,
    )
}

/// `bwrap --version`, then a trivial isolated run of `true`.
async fn try_bubblewrap() -> Result<String, String> {
    let version = run("bwrap", &["--version".to_owned()]).await?;
    run("bwrap", &trial_args())
        .await
        .map_err(|e| format!("{version}, but {e}"))?;
    Ok(format!("{version}; an isolated trial run works"))
}

/// Arguments for a sandbox holding only `/usr`, plus `/bin`, `/lib`, `/lib64` and `/sbin` as the
/// host has them (symbolic links into `/usr` on merged-usr systems), so that `true` can start.
fn trial_args() -> Vec<String> {
    let mut args: Vec<String> = ["--ro-bind", "/usr", "/usr"].map(String::from).to_vec();
    for dir in ["/bin", "/lib", "/lib64", "/sbin"] {
        if let Ok(target) = std::fs::read_link(dir) {
            args.extend([
                "--symlink".to_owned(),
                target.display().to_string(),
                dir.to_owned(),
            ]);
        } else if Path::new(dir).is_dir() {
            args.extend(["--ro-bind", dir, dir].map(String::from));
        }
    }
    args.extend(["--unshare-all", "true"].map(String::from));
    args
}

/// Runs a program and returns the first line of its output, or why it failed.
async fn run(program: &str, args: &[String]) -> Result<String, String> {
    let output = Command::new(program)
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        let reason = stderr.lines().next().unwrap_or("no message");
        return Err(format!("{program} failed ({}): {reason}", output.status));
    }
    Ok(stdout.lines().next().unwrap_or_default().to_owned())
}

/// Every Docker image the configuration names, `heal.sandbox_image` first.
fn sandbox_images(cfg: &Config) -> Vec<String> {
    let mut images: Vec<String> = cfg.heal.sandbox_image.iter().cloned().collect();
    for image in cfg.queues.values().filter_map(|q| q.sandbox_image.clone()) {
        if !images.contains(&image) {
            images.push(image);
        }
    }
    images
}

/// The engine answers, and holds every configured image (they are never pulled).
async fn docker(socket: &Path, images: &[String]) -> Check {
    let outcome = async {
        let answer = ping_docker(socket).await?;
        for image in images {
            let opts = smartworker_sandbox::DockerOptions {
                socket: socket.to_owned(),
                image: image.clone(),
            };
            smartworker_sandbox::DockerSandbox::connect(&opts)
                .await
                .map_err(|e| e.to_string())?;
        }
        match images {
            [] => Ok(answer),
            _ => Ok(format!("{answer}; image {} present", images.join(", "))),
        }
    };
    Check::new(
        "docker",
        "docker sandbox unavailable; queues that ask for docker cannot heal, auto uses bubblewrap",
        limited(outcome).await,
    )
}

/// `GET /_ping` over HTTP/1.0 on the Docker socket; expects a 200.
async fn ping_docker(socket: &Path) -> Result<String, String> {
    let shown = socket.display();
    let mut stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| format!("cannot connect to {shown}: {e}"))?;
    stream
        .write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        .await
        .map_err(|e| format!("{shown}: cannot send: {e}"))?;
    let mut reply = Vec::new();
    (&mut stream)
        .take(4096)
        .read_to_end(&mut reply)
        .await
        .map_err(|e| format!("{shown}: cannot read: {e}"))?;
    let reply = String::from_utf8_lossy(&reply);
    let status_line = reply.lines().next().unwrap_or_default();
    if status_line.split_whitespace().nth(1) == Some("200") {
        return Ok(format!("{shown} answers the ping"));
    }
    Err(format!("{shown} answered {status_line:?}"))
}

#[cfg(test)]
mod tests {
    use expect_test::expect;
    use tokio::net::{TcpListener, UnixListener};
    use tokio::task::JoinHandle;

    use super::*;
    use crate::config::LoadOptions;
    use smartworker_queue_redis::testing::{RedisServer, ServerOptions};

    /// A configuration from environment variables alone, rooted in a fresh directory.
    fn config(env: &[(&str, String)]) -> Config {
        let opts = LoadOptions {
            config_path: None,
            cwd: tempfile::tempdir().unwrap().path().to_owned(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        };
        Config::load(&opts).unwrap()
    }

    /// A loopback port with nothing listening on it.
    async fn closed_port() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    }

    /// Serves one connection: sends `greeting`, reads until `until` is seen, sends `reply`, and
    /// returns what it read.
    async fn serve_once(
        greeting: &'static str,
        until: &'static str,
        reply: String,
    ) -> (u16, JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            stream.write_all(greeting.as_bytes()).await.unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 1024];
            while !String::from_utf8_lossy(&seen).contains(until) {
                let n = stream.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&buf[..n]);
            }
            stream.write_all(reply.as_bytes()).await.unwrap();
            String::from_utf8(seen).unwrap()
        });
        (port, server)
    }

    fn http_json(body: &str) -> String {
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    #[tokio::test]
    async fn redis_passes_when_the_server_answers_pong() {
        let (port, server) = serve_once("", "\r\n", "+PONG\r\n".to_owned()).await;
        let cfg = config(&[
            ("APP_REDIS_HOST", "127.0.0.1".into()),
            ("APP_REDIS_PORT", port.to_string()),
        ]);
        let check = redis(&cfg).await;
        assert_eq!(server.await.unwrap(), "PING\r\n");
        assert!(check.ok, "{check:?}");
        assert_eq!(check.detail, format!("127.0.0.1:{port} answered PONG"));
    }

    #[tokio::test]
    async fn redis_fails_when_the_server_answers_something_else() {
        let (port, _server) =
            serve_once("", "\r\n", "-NOAUTH Authentication required.\r\n".into()).await;
        let cfg = config(&[
            ("APP_REDIS_HOST", "127.0.0.1".into()),
            ("APP_REDIS_PORT", port.to_string()),
        ]);
        let check = redis(&cfg).await;
        assert!(!check.ok);
        assert_eq!(
            check.detail,
            format!(
                "127.0.0.1:{port} answered \"-NOAUTH Authentication required.\" instead of +PONG"
            )
        );
    }

    #[tokio::test]
    async fn redis_url_with_password_and_database_is_checked_as_the_backend_connects() {
        let server = RedisServer::start_with(ServerOptions {
            password: Some("pw-1".into()),
            ..ServerOptions::default()
        })
        .unwrap();
        let url = format!("redis://:pw-1@127.0.0.1:{}/2", server.port());
        let cfg = config(&[
            ("APP_REDIS_URL", url),
            ("APP_QUEUE_BACKEND", "redis".into()),
        ]);
        let check = redis(&cfg).await;
        assert!(check.ok, "{check:?}");
        let expected = format!(
            "redis://:***@127.0.0.1:{}/2 answered PONG; queues use redis",
            server.port()
        );
        assert_eq!(check.detail, expected);

        let wrong = format!("redis://:not-pw@127.0.0.1:{}/2", server.port());
        let check = redis(&config(&[("APP_REDIS_URL", wrong)])).await;
        assert!(!check.ok, "{check:?}");
        assert!(!check.detail.contains("not-pw"), "{}", check.detail);
    }

    #[tokio::test]
    async fn a_server_that_never_answers_fails_after_the_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cfg = config(&[
            ("APP_REDIS_HOST", "127.0.0.1".into()),
            ("APP_REDIS_PORT", port.to_string()),
        ]);
        let started = std::time::Instant::now();
        let check = redis(&cfg).await;
        assert!(!check.ok);
        assert_eq!(check.detail, "no answer within 2 s");
        assert!(started.elapsed() < CHECK_TIMEOUT + Duration::from_secs(1));
        drop(listener);
    }

    #[tokio::test]
    async fn smtp_passes_on_a_220_banner_and_says_quit() {
        let (port, server) =
            serve_once("220 mail.test ESMTP ready\r\n", "QUIT\r\n", String::new()).await;
        let cfg = config(&[
            ("APP_SMTP_HOST", "127.0.0.1".into()),
            ("APP_SMTP_PORT", port.to_string()),
        ]);
        let check = smtp(&cfg).await;
        assert!(check.ok, "{check:?}");
        assert_eq!(
            check.detail,
            format!("127.0.0.1:{port} greets: 220 mail.test ESMTP ready")
        );
        assert_eq!(server.await.unwrap(), "QUIT\r\n");
    }

    #[tokio::test]
    async fn smtp_fails_on_a_refusing_banner() {
        let (port, _server) = serve_once("554 go away\r\n", "\r\n", String::new()).await;
        let cfg = config(&[
            ("APP_SMTP_HOST", "127.0.0.1".into()),
            ("APP_SMTP_PORT", port.to_string()),
        ]);
        let check = smtp(&cfg).await;
        assert!(!check.ok);
        assert_eq!(
            check.detail,
            format!("127.0.0.1:{port} greeted with \"554 go away\" instead of 220")
        );
    }

    #[tokio::test]
    async fn closed_ports_fail_with_their_consequence() {
        let port = closed_port().await.to_string();
        let cfg = config(&[
            ("APP_REDIS_HOST", "127.0.0.1".into()),
            ("APP_REDIS_PORT", port.clone()),
            ("APP_SMTP_HOST", "127.0.0.1".into()),
            ("APP_SMTP_PORT", port.clone()),
            ("APP_DB_HOST", "127.0.0.1".into()),
            ("APP_DB_PORT", port.clone()),
            ("APP_LLM_URL", format!("http://127.0.0.1:{port}/v1")),
            ("APP_EMBED_URL", format!("http://127.0.0.1:{port}/v1")),
        ]);
        let checks = [
            redis(&cfg).await,
            smtp(&cfg).await,
            postgres(&cfg).await,
            model(&cfg).await,
            embeddings(&cfg).await,
        ];
        let shown = render(&checks).replace(&port, "<port>");
        expect![[r#"
            check              status  detail
            redis              FAIL    cannot connect to 127.0.0.1:<port>: Connection refused (os error 111)
                                       -> queues on Redis are unavailable; set queue.backend = "sqlite" (APP_QUEUE_BACKEND) to use the embedded store
            smtp               FAIL    cannot connect to 127.0.0.1:<port>: Connection refused (os error 111)
                                       -> e-mails wait in the outbox until the SMTP server answers
            postgresql         FAIL    cannot connect to 127.0.0.1:<port>: Connection refused (os error 111)
                                       -> memory is unavailable; unset APP_DB_HOST to use the embedded store
            model server       FAIL    http://127.0.0.1:<port>/v1/models: Connection refused (os error 111)
                                       -> healing cannot ask the model for fixes
            embeddings server  FAIL    http://127.0.0.1:<port>/v1/models: Connection refused (os error 111)
                                       -> similar failures are found with lexical fallback embeddings
            0 of 5 checks passed
        "#]]
        .assert_eq(&shown);
    }

    #[tokio::test]
    async fn unconfigured_optional_services_pass_and_say_what_replaces_them() {
        let cfg = config(&[]);
        let checks = [redis(&cfg).await, postgres(&cfg).await, smtp(&cfg).await];
        expect![[r#"
            check       status  detail
            redis       ok      not configured: queues use the embedded SQLite store
            postgresql  ok      not configured: memory uses the embedded store
            smtp        ok      not configured: e-mails go to the outbox
            3 of 3 checks passed
        "#]]
        .assert_eq(&render(&checks));
    }

    #[tokio::test]
    async fn the_model_check_lists_models_with_the_api_key() {
        let body =
            r#"{"object":"list","data":[{"id":"qwen2.5-coder-3b-instruct","object":"model"}]}"#;
        let (port, server) = serve_once("", "\r\n\r\n", http_json(body)).await;
        let cfg = config(&[
            ("APP_LLM_URL", format!("http://127.0.0.1:{port}/v1/")),
            ("APP_LLM_API_KEY", "sk-test".into()),
        ]);
        let check = model(&cfg).await;
        assert!(check.ok, "{check:?}");
        assert_eq!(
            check.detail,
            format!("http://127.0.0.1:{port}/v1/models lists qwen2.5-coder-3b-instruct")
        );
        let request = server.await.unwrap();
        assert!(
            request.starts_with("GET /v1/models HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(
            request
                .to_ascii_lowercase()
                .contains("authorization: bearer sk-test\r\n"),
            "{request}"
        );
    }

    #[tokio::test]
    async fn an_embeddings_server_without_the_model_still_passes_but_says_so() {
        let (port, _server) =
            serve_once("", "\r\n\r\n", http_json(r#"{"data":[{"id":"other"}]}"#)).await;
        let cfg = config(&[("APP_EMBED_URL", format!("http://127.0.0.1:{port}/v1"))]);
        let check = embeddings(&cfg).await;
        assert!(check.ok, "{check:?}");
        let expected = format!(
            "http://127.0.0.1:{port}/v1/models answers; \"bge-large-en-v1.5\" is not among its models (other)"
        );
        assert_eq!(check.detail, expected);
    }

    #[tokio::test]
    async fn docker_passes_when_its_socket_answers_the_ping() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("docker.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 1024];
            let n = stream.read(&mut request).await.unwrap();
            stream
                .write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nOK")
                .await
                .unwrap();
            String::from_utf8_lossy(&request[..n]).into_owned()
        });
        let check = docker(&socket, &[]).await;
        assert!(check.ok, "{check:?}");
        assert!(server.await.unwrap().starts_with("GET /_ping HTTP/1.0\r\n"));
    }

    #[tokio::test]
    async fn docker_fails_when_a_configured_image_is_missing() {
        let socket = Path::new(DOCKER_SOCKET);
        let missing = docker(socket, &["smartworker-no-such-image:9".to_owned()]).await;
        assert!(!missing.ok, "{}", missing.detail);
        assert!(
            missing.detail.contains("is not on this engine"),
            "{}",
            missing.detail
        );
        let image = std::env::var("SMARTWORKER_SANDBOX_IMAGE")
            .unwrap_or_else(|_| "smartworker-sandbox-test:3".into());
        let present = docker(socket, &[image]).await;
        assert!(present.ok, "{}", present.detail);
    }

    #[tokio::test]
    async fn docker_fails_without_its_socket() {
        let dir = tempfile::tempdir().unwrap();
        let check = docker(&dir.path().join("docker.sock"), &[]).await;
        assert!(!check.ok);
        assert_eq!(
            check.consequence,
            "docker sandbox unavailable; queues that ask for docker cannot heal, auto uses bubblewrap"
        );
        assert!(
            check.detail.contains("No such file or directory"),
            "{}",
            check.detail
        );
    }

    #[tokio::test]
    async fn bubblewrap_check_matches_whether_bwrap_can_run_here() {
        let check = bubblewrap().await;
        let installed = std::process::Command::new("bwrap")
            .arg("--version")
            .output()
            .is_ok();
        if !installed {
            assert!(!check.ok);
            assert!(
                check.detail.starts_with("cannot run bwrap"),
                "{}",
                check.detail
            );
            return;
        }
        let trial = std::process::Command::new("bwrap")
            .args(trial_args())
            .status()
            .unwrap();
        assert_eq!(check.ok, trial.success(), "{check:?}");
    }

    #[tokio::test]
    async fn all_checks_run_in_a_fixed_order() {
        let port = closed_port().await;
        let cfg = config(&[
            ("APP_LLM_URL", format!("http://127.0.0.1:{port}/v1")),
            ("APP_EMBED_URL", format!("http://127.0.0.1:{port}/v1")),
        ]);
        let names: Vec<String> = run_checks(&cfg).await.into_iter().map(|c| c.name).collect();
        expect![[r#"["redis", "postgresql", "model server", "embeddings server", "smtp", "bubblewrap", "docker"]"#]]
            .assert_eq(&format!("{names:?}"));
    }
}
