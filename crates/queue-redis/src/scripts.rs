//! SmartWorker's Lua scripts on BullMQ's key layout, each with the shared helpers prepended.
//!
//! Each script is one atomic step, as the `QueueBackend` trait asks; the batch scripts (add,
//! claim, finish, extend) do a whole batch in one round trip.

use redis::Script;

macro_rules! script {
    ($file:literal) => {
        Script::new(concat!(
            include_str!("../lua/common.lua"),
            "\n",
            include_str!(concat!("../lua/", $file))
        ))
    };
}

/// Every script the backend runs, hashed once.
pub(crate) struct Scripts {
    pub(crate) add: Script,
    pub(crate) claim: Script,
    pub(crate) finish: Script,
    pub(crate) extend: Script,
    pub(crate) release: Script,
    pub(crate) stalled: Script,
    pub(crate) retry: Script,
    pub(crate) remove: Script,
    pub(crate) read: Script,
    pub(crate) counts: Script,
}

impl Scripts {
    pub(crate) fn new() -> Scripts {
        Scripts {
            add: script!("add.lua"),
            claim: script!("claim.lua"),
            finish: script!("finish.lua"),
            extend: script!("extend.lua"),
            release: script!("release.lua"),
            stalled: script!("stalled.lua"),
            retry: script!("retry.lua"),
            remove: script!("remove.lua"),
            read: script!("read.lua"),
            counts: script!("counts.lua"),
        }
    }
}
