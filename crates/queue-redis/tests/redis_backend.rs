//! What only the Redis backend shows: BullMQ's layout as BullMQ's own Rust port reads and
//! writes it, the dead-letter queue as a queue of its own, the connection settings, and
//! surviving a Redis restart. Each test runs its own private redis-server.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly at the first unexpected error"
)]

use bullmq::options::RedisConnectionOptions;
use bullmq::{Queue, QueueOptions};
use serde_json::{Value, json};
use smartworker_core::{
    Attempt, ClaimRequest, FinishOutcome, FinishRequest, JobFailure, JobId, JobOptions, JobState,
    NewJob, QueueBackend,
};
use smartworker_queue_redis::testing::{RedisCluster, RedisServer, ServerOptions};
use smartworker_queue_redis::{ConnectError, RedisBackend, RedisOptions};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(30);

async fn backend(server: &RedisServer) -> RedisBackend {
    RedisBackend::connect(RedisOptions::new(server.url()))
        .await
        .unwrap()
}

async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(server.url()).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

async fn bullmq_queue(server: &RedisServer, name: &str) -> Queue {
    let connection = RedisConnectionOptions {
        url: server.url(),
        ..RedisConnectionOptions::default()
    };
    Queue::with_options(name, QueueOptions::new().connection(connection))
        .await
        .unwrap()
}

/// Claims one job and finishes it with `outcome`.
async fn run_once(
    b: &RedisBackend,
    queue: &str,
    outcome: Result<Value, JobFailure>,
) -> FinishOutcome {
    let req = ClaimRequest {
        queue,
        worker: "w1",
        max: 1,
        lock: LONG,
    };
    let active = b.claim(req).await.unwrap().remove(0);
    let error = outcome.as_ref().err().map(|f| f.message.clone());
    let attempt = Attempt {
        number: active.job.attempts_made,
        worker: "w1".into(),
        started_at: 1,
        finished_at: 2,
        error,
        stack: None,
    };
    let req = FinishRequest {
        id: active.job.id,
        token: active.token,
        attempt,
        outcome,
    };
    b.finish(vec![req]).await.unwrap().remove(0)
}

async fn hash(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> HashMap<String, String> {
    redis::cmd("HGETALL")
        .arg(key)
        .query_async(conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn job_hash_holds_bullmqs_fields_in_bullmqs_forms() {
    let server = RedisServer::start().unwrap();
    let b = backend(&server).await;
    let mut job = NewJob::new("signup", "welcome", json!({"email": "a@example.com"}));
    job.opts.attempts = 3;
    job.opts.priority = 2;
    let id = b.add(job).await.unwrap();
    assert_eq!(id, JobId::from("signup:1"));
    run_once(&b, "signup", Ok(json!({"sent": true}))).await;

    let mut conn = raw(&server).await;
    let fields = hash(&mut conn, "bull:signup:1").await;
    assert_eq!(fields["name"], "welcome");
    assert_eq!(fields["data"], r#"{"email":"a@example.com"}"#);
    let opts: Value = serde_json::from_str(&fields["opts"]).unwrap();
    assert_eq!(
        (opts["attempts"].clone(), opts["priority"].clone()),
        (json!(3), json!(2))
    );
    assert_eq!(fields["priority"], "2");
    assert_eq!(fields["atm"], "1");
    assert_eq!(fields["returnvalue"], r#"{"sent":true}"#);
    assert!(fields.contains_key("finishedOn") && fields.contains_key("processedOn"));
    let score: Option<f64> = redis::cmd("ZSCORE")
        .arg("bull:signup:completed")
        .arg("1")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(score.is_some(), "not in the completed set");
    let events: Value = redis::cmd("XRANGE")
        .arg("bull:signup:events")
        .arg("-")
        .arg("+")
        .query_async::<redis::Value>(&mut conn)
        .await
        .map(|v| json!(format!("{v:?}")))
        .unwrap();
    for event in ["added", "waiting", "active", "completed"] {
        assert!(
            events.to_string().contains(event),
            "no {event} event: {events}"
        );
    }
}

#[tokio::test]
async fn job_added_by_bullmqs_queue_is_run_here_and_read_back_by_bullmq() {
    let server = RedisServer::start().unwrap();
    let b = backend(&server).await;
    let queue = bullmq_queue(&server, "mail").await;
    let added = queue
        .add("send", json!({"to": "b@example.com"}))
        .attempts(2)
        .await
        .unwrap();
    let id = JobId(format!("mail:{}", added.id()));
    let job = b.get(&id).await.unwrap().unwrap();
    assert_eq!((job.state, job.opts.attempts), (JobState::Waiting, 2));
    assert_eq!(job.data, json!({"to": "b@example.com"}));

    let outcome = run_once(&b, "mail", Ok(json!({"queued": 1}))).await;
    assert_eq!(outcome, FinishOutcome::Completed);
    let seen = queue.get_job(added.id()).await.unwrap().unwrap();
    assert_eq!(seen.returnvalue(), r#"{"queued":1}"#);
    assert_eq!(seen.attempts_made(), 1);
    assert_eq!(
        queue.get_job_state(added.id()).await.unwrap().as_str(),
        "completed"
    );
    assert_eq!(queue.get_job_counts().await.unwrap().completed, 1);
}

#[tokio::test]
async fn job_added_here_is_run_by_bullmqs_worker() {
    let server = RedisServer::start().unwrap();
    let b = backend(&server).await;
    let id = b
        .add(NewJob::new("resize", "thumb", json!({"w": 64})))
        .await
        .unwrap();
    let connection = RedisConnectionOptions {
        url: server.url(),
        ..RedisConnectionOptions::default()
    };
    let opts = bullmq::WorkerOptions {
        connection,
        ..bullmq::WorkerOptions::default()
    };
    let worker = bullmq::Worker::with_options(
        "resize",
        |job: bullmq::Job, _cancel| async move {
            Ok(json!({"doubled": job.data()["w"].as_u64().unwrap_or(0) * 2}))
        },
        opts,
    )
    .await
    .unwrap();
    let done = b.wait_finished(&id, Duration::from_secs(20)).await.unwrap();
    worker.close(5_000).await.unwrap();
    assert_eq!(done.state, JobState::Completed);
    assert_eq!(done.result, Some(json!({"doubled": 128})));
}

#[tokio::test]
async fn dead_lettered_job_is_failed_in_its_queue_and_copied_to_its_dead_letter_queue() {
    let server = RedisServer::start().unwrap();
    let mut opts = RedisOptions::new(server.url());
    opts.dead_letter_queues
        .insert("login".into(), "loginDLQ".into());
    let b = RedisBackend::connect(opts).await.unwrap();
    for queue in ["login", "signup"] {
        b.add(NewJob::new(queue, "t", json!({"user": 1})))
            .await
            .unwrap();
        let failure = JobFailure::with_stack("TypeError: x is undefined", "at login.js:3");
        let outcome = run_once(&b, queue, Err(failure)).await;
        assert_eq!(outcome, FinishOutcome::DeadLettered { heal_job: None });
    }

    // BullMQ sees each job failed in its own queue, with reason and stack trace.
    let login = bullmq_queue(&server, "login").await;
    let failed = login.get_failed(0, -1).await.unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].failed_reason(), "TypeError: x is undefined");
    let mut conn = raw(&server).await;
    let fields = hash(&mut conn, "bull:login:1").await;
    assert_eq!(fields["stacktrace"], r#"["at login.js:3"]"#);

    // And a copy waits in the dead-letter queue, named or default.
    let dlq = bullmq_queue(&server, "loginDLQ").await;
    assert_eq!(dlq.get_job_counts().await.unwrap().waiting, 1);
    let copy = b.list("loginDLQ", JobState::Waiting, 10).await.unwrap();
    assert_eq!(copy[0].data, json!({"user": 1}));
    let copy_fields = hash(&mut conn, "bull:loginDLQ:1").await;
    assert_eq!(copy_fields["sw:origin"], "login:1");
    assert_eq!(copy_fields["failedReason"], "TypeError: x is undefined");
    assert_eq!(b.counts("signup-dlq").await.unwrap().waiting, 1);

    // Retry through the copy's id puts the original back and removes the copy.
    b.retry_dead(&copy[0].id).await.unwrap();
    let original = b.get(&JobId::from("login:1")).await.unwrap().unwrap();
    assert_eq!(
        (original.state, original.attempts_made),
        (JobState::Waiting, 0)
    );
    assert_eq!(b.counts("loginDLQ").await.unwrap().waiting, 0);
    assert_eq!(login.get_job_counts().await.unwrap().failed, 0);
}

#[tokio::test]
async fn a_dead_letter_queue_name_that_is_not_a_queue_name_is_refused() {
    let mut opts = RedisOptions::new("redis://127.0.0.1:1");
    opts.dead_letter_queues
        .insert("login".into(), "login dlq".into());
    let Err(err) = RedisBackend::connect(opts).await else {
        panic!("accepted a bad dead-letter queue name");
    };
    assert!(
        matches!(err, ConnectError::BadDeadLetterQueue { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn every_key_shares_a_hash_tagged_prefix() {
    let server = RedisServer::start().unwrap();
    let mut opts = RedisOptions::new(server.url());
    opts.prefix = "{sw}".into();
    let b = RedisBackend::connect(opts).await.unwrap();
    let asks = NewJob::new("signup", "t", json!({"reasoning_fix": true}));
    b.add(asks).await.unwrap();
    run_once(&b, "signup", Err(JobFailure::new("boom"))).await;
    b.add(NewJob::new("mail", "t", json!(1))).await.unwrap();
    run_once(&b, "mail", Ok(json!(null))).await;

    let mut conn = raw(&server).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        keys.iter().any(|k| k.starts_with("{sw}:smartworker-heal:")),
        "{keys:?}"
    );
    assert!(
        keys.iter().any(|k| k.starts_with("{sw}:signup-dlq:")),
        "{keys:?}"
    );
    let stray: Vec<&String> = keys.iter().filter(|k| !k.starts_with("{sw}:")).collect();
    assert!(stray.is_empty(), "keys outside the hash tag: {stray:?}");
    assert_eq!(
        b.queues().await.unwrap(),
        ["mail", "signup", "signup-dlq", "smartworker-heal"]
    );
}

#[tokio::test]
async fn url_password_and_database_are_used_and_the_password_never_shows() {
    let server = RedisServer::start_with(ServerOptions {
        password: Some("s3cret-pw".into()),
        ..ServerOptions::default()
    })
    .unwrap();
    let url = format!("redis://:s3cret-pw@127.0.0.1:{}/3", server.port());
    let b = RedisBackend::connect(RedisOptions::new(url.clone()))
        .await
        .unwrap();
    b.add(NewJob::new("q", "t", json!(1))).await.unwrap();
    let mut conn = redis::Client::open(url.clone())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let exists: bool = redis::cmd("EXISTS")
        .arg("bull:q:1")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(exists, "job not in database 3");

    let wrong = format!("redis://:wrong-pw@127.0.0.1:{}/3", server.port());
    let Err(err) = RedisBackend::connect(RedisOptions::new(wrong)).await else {
        panic!("connected with a wrong password");
    };
    let err = err.to_string();
    assert!(err.contains(":***@127.0.0.1"), "{err}");
    assert!(!err.contains("wrong-pw"), "{err}");
    assert!(err.contains("refused the credentials"), "{err}");

    // `serve` opens without waiting for Redis, but a refused password is not an outage.
    for url in [
        format!("redis://:wrong-pw@127.0.0.1:{}/3", server.port()),
        format!("redis://127.0.0.1:{}/3", server.port()),
    ] {
        let Err(err) = RedisBackend::open_checked(RedisOptions::new(url.clone())).await else {
            panic!("opened {url} although redis refuses it");
        };
        assert!(matches!(err, ConnectError::Refused { .. }), "{url}: {err}");
    }
    let right = RedisBackend::open_checked(RedisOptions::new(url)).await;
    assert!(right.is_ok(), "the right password was refused");
}

#[tokio::test]
async fn open_checked_waits_for_a_redis_that_is_away() {
    // A port nothing listens on: bound, read, and let go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    RedisBackend::open_checked(RedisOptions::new(url.clone()))
        .await
        .expect("an unreachable redis is an outage, not a refusal");
    let Err(err) = RedisBackend::connect(RedisOptions::new(url)).await else {
        panic!("connected to nothing");
    };
    assert!(matches!(err, ConnectError::Unreachable { .. }), "{err}");
}

/// Collects log lines for one test.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn count(&self, text: &str) -> usize {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .matches(text)
            .count()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn restarted_redis_is_reconnected_and_logged_once_each_way() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut server = RedisServer::start_with(ServerOptions {
        append_only: true,
        ..ServerOptions::default()
    })
    .unwrap();
    let b = backend(&server).await;
    let id = b.add(NewJob::new("q", "t", json!(1))).await.unwrap();
    // An idle worker's wait leaves a blocking connection in the pool, to die with the server.
    b.wait_for_work("idle", Duration::from_millis(50)).await;

    server.kill().unwrap();
    for _ in 0..5 {
        assert!(b.counts("q").await.is_err(), "counted with redis down");
    }
    server.restart().unwrap();
    let mut back = false;
    for _ in 0..100 {
        if b.counts("q").await.is_ok() {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "never reconnected after the restart");
    for _ in 0..5 {
        b.wait_for_work("idle", Duration::from_millis(20)).await;
        b.counts("q").await.unwrap();
    }
    assert_eq!(b.get(&id).await.unwrap().unwrap().state, JobState::Waiting);
    assert_eq!(logs.count("lost the connection to redis"), 1);
    assert_eq!(logs.count("redis is reachable again"), 1);
}

#[tokio::test]
async fn options_of_a_job_survive_the_trip_through_redis() {
    let server = RedisServer::start().unwrap();
    let b = backend(&server).await;
    let opts: JobOptions = serde_json::from_value(json!({
        "attempts": 4, "backoff": {"type": "exponential", "delay": 1000},
        "removeOnComplete": {"count": 10}, "removeOnFail": true, "timeout": 900,
        "autofix": true, "jobId": "order-7"
    }))
    .unwrap();
    let id = b
        .add(NewJob {
            opts: opts.clone(),
            ..NewJob::new("orders", "t", json!(null))
        })
        .await
        .unwrap();
    assert_eq!(id, JobId::from("orders:order-7"));
    assert_eq!(b.get(&id).await.unwrap().unwrap().opts, opts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_runs_the_conformance_checks_under_hash_tagged_prefixes() {
    use smartworker_conformance::{checks, worker_checks};
    let cluster = RedisCluster::start().unwrap();
    let connect = |tag: &str| {
        let mut opts = RedisOptions::new(cluster.url());
        opts.cluster = true;
        // A tag per check: each starts empty, and the tags land on different nodes.
        opts.prefix = format!("{{{tag}}}");
        async move { Arc::new(RedisBackend::connect(opts).await.unwrap()) as Arc<dyn QueueBackend> }
    };
    checks::claimed_job_is_active_and_completes_with_its_result(connect("a").await).await;
    checks::dead_lettering_a_job_that_asks_for_healing_adds_its_heal_job(connect("b").await).await;
    checks::stalled_job_is_recovered_once_then_dead_lettered(connect("c").await).await;
    checks::queues_lists_every_queue_that_holds_jobs(connect("d").await).await;
    checks::delayed_job_waits_for_its_time(connect("e").await).await;
    worker_checks::two_workers_share_many_jobs_and_complete_each_once(connect("f").await).await;

    let mut untagged = RedisOptions::new(cluster.url());
    untagged.cluster = true;
    let Err(err) = RedisBackend::connect(untagged).await else {
        panic!("a cluster accepted a prefix without a hash tag");
    };
    assert!(
        matches!(err, ConnectError::PrefixWithoutHashTag(_)),
        "{err}"
    );
}

/// A handler that succeeds at once.
struct Noop;

#[async_trait::async_trait]
impl smartworker_core::Handler for Noop {
    async fn run(
        &self,
        _job: &smartworker_core::Job,
    ) -> Result<Value, smartworker_core::JobFailure> {
        Ok(Value::Null)
    }
}

#[tokio::test(flavor = "current_thread")]
async fn worker_reports_a_dead_redis_once_and_its_return_once() {
    use smartworker_worker::{Worker, WorkerOptions};
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut server = RedisServer::start_with(ServerOptions {
        append_only: true,
        ..ServerOptions::default()
    })
    .unwrap();
    let b: Arc<dyn QueueBackend> = Arc::new(backend(&server).await);
    let opts = WorkerOptions {
        idle_poll: Duration::from_millis(50),
        ..WorkerOptions::default()
    };
    let worker = Worker::spawn(Arc::clone(&b), "q", Arc::new(Noop), opts);

    // Down long enough for the worker to fail to claim several times, a second apart.
    server.kill().unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    server.restart().unwrap();
    let mut added = None;
    for _ in 0..100 {
        if let Ok(id) = b.add(NewJob::new("q", "t", json!(1))).await {
            added = Some(id);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let id = added.expect("redis never came back");
    let job = b.wait_finished(&id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(job.state, JobState::Completed);
    worker.shutdown().await;

    assert_eq!(logs.count("cannot take jobs"), 1);
    assert_eq!(logs.count("taking jobs again"), 1);
}
