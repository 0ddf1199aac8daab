//! The shared memory behaviour suite against the embedded SQLite store.

use smartworker_memory::MemoryStore;

async fn store() -> MemoryStore {
    match MemoryStore::open_in_memory() {
        Ok(store) => store,
        Err(e) => panic!("cannot open an in-memory sqlite store: {e}"),
    }
}

smartworker_memory::conformance_tests!(store);
smartworker_memory::group_conformance_tests!(store);
