//! The shared memory behaviour suite against PostgreSQL with pgvector: one test server for
//! this file, a fresh database per test.

use smartworker_memory::MemoryStore;
use smartworker_memory_pg::PgBackend;
use smartworker_memory_pg::testing::TestPostgres;
use std::sync::Arc;

async fn store() -> MemoryStore {
    let pg = match TestPostgres::shared() {
        Ok(pg) => pg,
        Err(e) => panic!("the postgres tests need their own server: {e}"),
    };
    let db = match pg.fresh_database() {
        Ok(db) => db,
        Err(e) => panic!("cannot create a test database: {e}"),
    };
    match PgBackend::connect(pg.options(&db)).await {
        Ok(backend) => MemoryStore::from_backend(Arc::new(backend)),
        Err(e) => panic!("cannot connect to test database {db}: {e}"),
    }
}

smartworker_memory::conformance_tests!(store);
smartworker_memory::group_conformance_tests!(store);
