//! Handlers written as Rust functions, for teams that embed the queue as a library.

use async_trait::async_trait;
use serde_json::Value;
use smartworker_core::{Handler, Job, JobFailure};
use std::future::Future;

/// A handler that calls an async function with a copy of each job.
#[derive(Clone, Debug)]
pub struct FnHandler<F> {
    f: F,
}

/// Wraps an async closure `Fn(Job) -> Future<Output = Result<Value, JobFailure>>` as a handler.
pub fn handler_fn<F, Fut>(f: F) -> FnHandler<F>
where
    F: Fn(Job) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, JobFailure>> + Send + 'static,
{
    FnHandler { f }
}

#[async_trait]
impl<F, Fut> Handler for FnHandler<F>
where
    F: Fn(Job) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, JobFailure>> + Send + 'static,
{
    async fn run(&self, job: &Job) -> Result<Value, JobFailure> {
        (self.f)(job.clone()).await
    }
}
