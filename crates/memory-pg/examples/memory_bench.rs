//! Measures both memory stores: insert throughput, search latency (p50, p99) and, for
//! PostgreSQL, recall at 10 of the HNSW index against exact search, with a `halfvec` index
//! beside a full-precision `vector` one. `bench/memory.sh` runs it; bench/MEMORY.md explains
//! the numbers.
//!
//! Vectors are realistic: the lexical embedder (384 dimensions) over generated failures, each
//! drawn from one of 2,000 bug templates whose words vary, so failures cluster the way repeats
//! of one bug do. Each failure is stored with one vector (its error line and innermost frame).

#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    reason = "a benchmark program: it stops at the first error and prints its table"
)]

use serde_json::{Value, json};
use smartworker_memory::{
    Chunk, ChunkKind, EmbeddedChunks, FailureInput, LEXICAL_DIMENSIONS, LEXICAL_MODEL,
    LexicalEmbedder, MemoryStore,
};
use smartworker_memory_pg::PgBackend;
use smartworker_memory_pg::testing::TestPostgres;
use std::sync::Arc;
use std::time::Instant;

const TEMPLATES: u64 = 2_000;
const QUERIES: usize = 100;
const K: usize = 10;
const WRITERS: usize = 8;

const ERRORS: &[&str] = &[
    "TypeError",
    "KeyError",
    "ValueError",
    "AttributeError",
    "RangeError",
    "ReferenceError",
    "IndexError",
    "ConnectionError",
    "TimeoutError",
    "PermissionError",
    "ZeroDivisionError",
    "AssertionError",
];
const WORDS: &[&str] = &[
    "user",
    "email",
    "password",
    "order",
    "invoice",
    "customer",
    "address",
    "cart",
    "item",
    "price",
    "quantity",
    "token",
    "session",
    "account",
    "profile",
    "payment",
    "refund",
    "coupon",
    "shipment",
    "tracking",
    "warehouse",
    "stock",
    "report",
    "export",
    "upload",
    "image",
    "thumbnail",
    "webhook",
    "signature",
    "tenant",
    "plan",
    "subscription",
    "trial",
    "discount",
    "currency",
    "locale",
    "timezone",
    "schedule",
    "reminder",
    "notification",
    "template",
    "render",
    "queue",
    "batch",
    "retry",
    "lock",
    "cache",
    "config",
    "feature",
    "flag",
];
const SHAPES: &[&str] = &[
    "cannot read properties of undefined (reading '{a}')",
    "'{a}' is not defined in {b} handler",
    "{a}.{b} is not a function",
    "missing key '{a}' in {b} payload",
    "invalid {a} for {b}: expected {c}",
    "{a} service refused the {b} request",
    "list index out of range while reading {a} {b}",
    "{a} must be positive when computing {b} {c}",
];

/// A small deterministic generator, so every run stores the same failures.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

/// The text of the `n`-th failure: a template (its bug) with one word in three swapped.
fn failure_text(rng: &mut Rng) -> (u64, String) {
    let template = rng.next() % TEMPLATES;
    let mut t = Rng(template.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let error = t.pick(ERRORS);
    let shape = t.pick(SHAPES);
    let mut words: Vec<&str> = (0..6).map(|_| t.pick(WORDS)).collect();
    if rng.next().is_multiple_of(3) {
        let slot = (rng.next() % 6) as usize;
        words[slot] = rng.pick(WORDS);
    }
    let message = shape
        .replace("{a}", words[0])
        .replace("{b}", words[1])
        .replace("{c}", words[2]);
    let text = format!(
        "{error}: {message}\nsrc/{}/{}.py:{} in {}_{}",
        words[3],
        words[4],
        rng.next() % 400,
        words[5],
        words[3]
    );
    (template, text)
}

fn failure(n: u64, template: u64, text: &str) -> (FailureInput, EmbeddedChunks) {
    let input = FailureInput {
        job_id: n.to_string(),
        queue: format!("queue-{}", template % 7),
        job_name: "job".into(),
        fingerprint: format!("bug-{template}"),
        error_type: text.split(':').next().unwrap_or_default().to_owned(),
        message: text.lines().next().unwrap_or_default().to_owned(),
        stack: text.to_owned(),
        frames: vec![],
        payload: json!({}),
    };
    let chunk = Chunk {
        kind: ChunkKind::Error,
        text: text.to_owned(),
    };
    let vector = LexicalEmbedder.embed_text(text);
    let vectors =
        EmbeddedChunks::new(LEXICAL_MODEL, LEXICAL_DIMENSIONS, vec![chunk], vec![vector]).unwrap();
    (input, vectors)
}

/// Inserts failures `from..to` with `writers` concurrent writers; failures per second.
async fn insert(store: &MemoryStore, from: u64, to: u64, writers: usize) -> f64 {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers as u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = from + w;
            while n < to {
                let mut rng = Rng(n.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
                let (template, text) = failure_text(&mut rng);
                let (input, vectors) = failure(n, template, &text);
                store.record_failure(input, vectors).await.unwrap();
                n += writers as u64;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (to - from) as f64 / start.elapsed().as_secs_f64()
}

/// Query vectors: new failures of the same templates, as a repeat of a known bug would be.
fn queries() -> Vec<Vec<f32>> {
    let mut rng = Rng(0xdead_beef);
    (0..QUERIES)
        .map(|_| LexicalEmbedder.embed_text(&failure_text(&mut rng).1))
        .collect()
}

/// p50 and p99 of `similar_failures(k = 10)` in milliseconds.
async fn search_latency(store: &MemoryStore, queries: &[Vec<f32>]) -> (f64, f64) {
    let mut ms = Vec::with_capacity(queries.len());
    for q in queries {
        let start = Instant::now();
        let found = store
            .similar_failures(LEXICAL_MODEL, q, K, None)
            .await
            .unwrap();
        ms.push(start.elapsed().as_secs_f64() * 1000.0);
        assert!(!found.is_empty());
    }
    ms.sort_by(f64::total_cmp);
    let at = |p: f64| ms[((ms.len() as f64 - 1.0) * p).round() as usize];
    (at(0.50), at(0.99))
}

fn vector_literal(v: &[f32]) -> String {
    let parts: Vec<String> = v.iter().map(ToString::to_string).collect();
    format!("[{}]", parts.join(","))
}

/// Recall at 10 of the nearest chunks through `order` (an index expression) against exact
/// search; a returned chunk counts when it is no farther than the exact 10th (ties count).
async fn recall(client: &tokio_postgres::Client, queries: &[Vec<f32>], cast: &str) -> f64 {
    let mut total = 0.0;
    for q in queries {
        let lit = vector_literal(q);
        let approx = format!(
            "SELECT embedding <=> '{lit}'::vector FROM mem_chunks
             WHERE model_id = 1 AND failure_id IS NOT NULL AND indexed
             ORDER BY embedding::{cast} <=> '{lit}'::{cast} LIMIT {K}"
        );
        let exact = format!(
            "SELECT embedding <=> '{lit}'::vector AS d FROM mem_chunks
             WHERE model_id = 1 AND failure_id IS NOT NULL AND indexed ORDER BY d LIMIT {K}"
        );
        let got: Vec<f64> = client
            .query(&approx, &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let want: Vec<f64> = client
            .query(&exact, &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let kth = want.last().copied().unwrap_or(0.0);
        let hits = got.iter().filter(|d| **d <= kth + 1e-6).count();
        total += hits as f64 / K as f64;
    }
    total / queries.len() as f64
}

async fn psql_client(pg: &TestPostgres, db: &str) -> tokio_postgres::Client {
    let (client, conn) = pg.config(db).connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

async fn size_of(client: &tokio_postgres::Client, relation: &str) -> i64 {
    let row = client
        .query_one("SELECT pg_relation_size($1::text::regclass)", &[&relation])
        .await
        .unwrap();
    row.get(0)
}

#[tokio::main]
async fn main() {
    let sizes: Vec<u64> = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "10000,100000".into())
        .split(',')
        .map(|s| s.parse().unwrap())
        .collect();
    let queries = queries();
    let mut results: Vec<Value> = Vec::new();

    let dir = tempfile::tempdir().unwrap();
    let sqlite = MemoryStore::open(&dir.path().join("memory.db")).unwrap();
    let pg = TestPostgres::start().unwrap();
    pg.create_database("bench").unwrap();
    let backend = PgBackend::connect(pg.options("bench")).await.unwrap();
    let postgres = MemoryStore::from_backend(Arc::new(backend));
    let client = psql_client(&pg, "bench").await;
    client
        .batch_execute("SET hnsw.iterative_scan = relaxed_order")
        .await
        .unwrap();

    let mut stored = 0;
    for &size in &sizes {
        let sqlite_rate = insert(&sqlite, stored, size, 1).await;
        let (s50, s99) = search_latency(&sqlite, &queries).await;
        let pg_rate = insert(&postgres, stored, size, WRITERS).await;
        client
            .batch_execute("VACUUM ANALYZE mem_chunks")
            .await
            .unwrap();
        let (p50, p99) = search_latency(&postgres, &queries).await;
        let half_recall = recall(&client, &queries, "halfvec(384)").await;
        let half_size = size_of(&client, "mem_chunks_hnsw_1").await;

        let build = Instant::now();
        client
            .batch_execute(
                "CREATE INDEX bench_full ON mem_chunks
                 USING hnsw ((embedding::vector(384)) vector_cosine_ops)
                 WHERE model_id = 1 AND failure_id IS NOT NULL AND indexed",
            )
            .await
            .unwrap();
        let full_build_s = build.elapsed().as_secs_f64();
        let full_recall = recall(&client, &queries, "vector(384)").await;
        let full_size = size_of(&client, "bench_full").await;
        client.batch_execute("DROP INDEX bench_full").await.unwrap();
        stored = size;

        let row = json!({
            "failures": size,
            "sqlite": {"insert_per_s": sqlite_rate, "search_p50_ms": s50, "search_p99_ms": s99,
                       "recall_at_10": 1.0},
            "postgres": {"insert_per_s": pg_rate, "writers": WRITERS,
                         "search_p50_ms": p50, "search_p99_ms": p99,
                         "recall_at_10_halfvec": half_recall, "index_bytes_halfvec": half_size,
                         "recall_at_10_vector": full_recall, "index_bytes_vector": full_size,
                         "vector_index_build_s": full_build_s},
        });
        println!("{}", serde_json::to_string(&row).unwrap());
        results.push(row);
    }
    let out = json!({"queries": QUERIES, "k": K, "templates": TEMPLATES,
                     "model": LEXICAL_MODEL, "dimensions": LEXICAL_DIMENSIONS,
                     "results": results});
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
}
