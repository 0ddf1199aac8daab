//! Decides which frames belong to the application. Without a project root it
//! reads paths and symbols: vendored packages, runtimes and job frameworks are
//! not the application, and the first frame a job framework calls is the job's
//! handler even when it was installed as a package. With a root, a frame is
//! in-app when its file lies under the root and outside vendored folders.

use std::path::{Component, Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;

use crate::context::{ProjectIndex, resolve_frame};
use crate::model::{Frame, Language};
use crate::normalize::re;
use crate::rust::symbol_crate;

/// Where a frame's code comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The application's own code.
    App,
    /// A third-party package.
    Library,
    /// A job framework: the code that calls the application's handlers.
    Framework,
    /// The language runtime, its standard library, or a pseudo-frame.
    Runtime,
}

/// Folders whose files are never the application's, even under the root.
const VENDORED_DIRS: [&str; 10] = [
    "node_modules",
    "site-packages",
    "dist-packages",
    ".venv",
    "venv",
    "target",
    "vendor",
    "__pypackages__",
    ".tox",
    ".eggs",
];

const PYTHON_FRAMEWORKS: [&str; 14] = [
    "celery",
    "billiard",
    "kombu",
    "rq",
    "dramatiq",
    "huey",
    "arq",
    "django_rq",
    "apscheduler",
    "django_q",
    "procrastinate",
    "taskiq",
    "saq",
    "rq_scheduler",
];
/// Packages a job framework calls that are still libraries, not handlers:
/// instrumentation wrappers and the clients frameworks use themselves.
const PYTHON_NEVER_APP: [&str; 16] = [
    "sentry_sdk",
    "newrelic",
    "ddtrace",
    "opentelemetry",
    "elasticapm",
    "scout_apm",
    "wrapt",
    "redis",
    "amqp",
    "vine",
    "requests",
    "urllib3",
    "sqlalchemy",
    "django",
    "flask",
    "asgiref",
];
const JS_FRAMEWORKS: [&str; 12] = [
    "bull",
    "bullmq",
    "bee-queue",
    "agenda",
    "pg-boss",
    "graphile-worker",
    "kue",
    "node-resque",
    "@nestjs/bull",
    "@nestjs/bullmq",
    "@temporalio/worker",
    "node-cron",
];
const JS_NEVER_APP: [&str; 14] = [
    "ioredis",
    "redis",
    "pg",
    "mysql2",
    "axios",
    "undici",
    "node-fetch",
    "lodash",
    "bluebird",
    "tslib",
    "rxjs",
    "dd-trace",
    "newrelic",
    "@sentry/node",
];
const RUBY_FRAMEWORKS: [&str; 9] = [
    "sidekiq",
    "activejob",
    "resque",
    "delayed_job",
    "good_job",
    "que",
    "sneakers",
    "shoryuken",
    "solid_queue",
];
/// Gems a job framework calls that are still libraries, not handlers.
const RUBY_NEVER_APP: [&str; 12] = [
    "activesupport",
    "activerecord",
    "activemodel",
    "actionpack",
    "actionmailer",
    "railties",
    "rack",
    "redis",
    "redis-client",
    "connection_pool",
    "newrelic_rpm",
    "sentry-ruby",
];
/// The JVM's own packages, and `_COROUTINE.` pseudo-frames that kotlinx
/// prints where it stitched a recovered coroutine stack together.
const JVM_RUNTIME: [&str; 9] = [
    "java.",
    "javax.",
    "jdk.",
    "sun.",
    "com.sun.",
    "kotlin.",
    "kotlinx.",
    "scala.",
    "_COROUTINE.",
];
const JVM_FRAMEWORKS: [&str; 5] = [
    "org.quartz.",
    "org.jobrunr.",
    "org.springframework.scheduling.",
    "org.springframework.batch.",
    "com.github.kagkarlsson.",
];
const JVM_LIBRARIES: [&str; 46] = [
    "org.codehaus.",
    "groovy.",
    "org.springframework.",
    "org.apache.",
    "org.hibernate.",
    "io.netty.",
    "com.google.",
    "com.fasterxml.",
    "ch.qos.",
    "org.slf4j.",
    "org.eclipse.",
    "org.glassfish.",
    "io.reactivex.",
    "reactor.",
    "okhttp3.",
    "retrofit2.",
    "org.junit.",
    "net.bytebuddy.",
    "com.zaxxer.",
    "org.postgresql.",
    "com.mysql.",
    "io.micrometer.",
    "io.grpc.",
    "akka.",
    "io.vertx.",
    "org.jboss.",
    "io.undertow.",
    "com.amazonaws.",
    "jakarta.",
    "org.jetbrains.",
    "io.lettuce.",
    "redis.clients.",
    "com.rabbitmq.",
    "com.mongodb.",
    "org.mongodb.",
    "io.opentelemetry.",
    "org.aspectj.",
    "org.mybatis.",
    "org.jooq.",
    "org.flywaydb.",
    "liquibase.",
    "io.ktor.",
    "io.quarkus.",
    "io.micronaut.",
    "software.amazon.",
    "org.elasticsearch.",
];
const RUST_RUNTIME: [&str; 6] = [
    "std",
    "core",
    "alloc",
    "backtrace",
    "panic_unwind",
    "rust_begin_unwind",
];
const RUST_LIBRARIES: [&str; 29] = [
    "anyhow",
    "eyre",
    "color_eyre",
    "tokio",
    "futures",
    "futures_util",
    "futures_core",
    "futures_executor",
    "hyper",
    "tower",
    "axum",
    "actix_rt",
    "actix_web",
    "async_std",
    "rayon",
    "rayon_core",
    "crossbeam",
    "crossbeam_channel",
    "serde",
    "serde_json",
    "tracing",
    "h2",
    "mio",
    "parking_lot",
    "reqwest",
    "sqlx",
    "tonic",
    "warp",
    "tokio_util",
];
const NATIVE_SYMBOLS: [&str; 8] = [
    "_start",
    "start_thread",
    "clone",
    "clone3",
    "main",
    "BaseThreadInitThunk",
    "RtlUserThreadStart",
    "thread_start",
];

/// .NET namespaces of the base class library and the runtime.
const DOTNET_RUNTIME: [&str; 3] = ["System.", "Microsoft.", "Internal."];
const DOTNET_FRAMEWORKS: [&str; 7] = [
    "Hangfire.",
    "Quartz.",
    "MassTransit.",
    "NServiceBus.",
    "Coravel.",
    "Rebus.",
    "DotNetCore.CAP.",
];
const DOTNET_LIBRARIES: [&str; 26] = [
    "Npgsql.",
    "Newtonsoft.",
    "Polly.",
    "Dapper.",
    "StackExchange.",
    "Serilog.",
    "NLog.",
    "log4net.",
    "Castle.",
    "MediatR.",
    "AutoMapper.",
    "FluentValidation.",
    "Grpc.",
    "Azure.",
    "Amazon.",
    "RabbitMQ.",
    "Confluent.",
    "MongoDB.",
    "MySqlConnector.",
    "Pomelo.",
    "Refit.",
    "RestSharp.",
    "Autofac.",
    "Google.",
    "Elastic.",
    "<StartupCode$FSharp-Core>",
];
/// Vendored PHP packages that run queued jobs.
const PHP_FRAMEWORKS: [&str; 5] = [
    "/vendor/laravel/framework/",
    "/vendor/laravel/horizon/",
    "/vendor/symfony/messenger/",
    "/vendor/symfony/console/",
    "/vendor/enqueue/",
];
/// Top-level modules of Elixir itself and its bundled applications.
const ELIXIR_RUNTIME: [&str; 44] = [
    "Access",
    "Agent",
    "Application",
    "Base",
    "Calendar",
    "Code",
    "Config",
    "Date",
    "DateTime",
    "DynamicSupervisor",
    "EEx",
    "Enum",
    "Enumerable",
    "ExUnit",
    "Exception",
    "File",
    "Float",
    "Function",
    "GenServer",
    "IEx",
    "IO",
    "Inspect",
    "Integer",
    "JSON",
    "Kernel",
    "Keyword",
    "List",
    "Logger",
    "Macro",
    "Map",
    "MapSet",
    "Mix",
    "Module",
    "NaiveDateTime",
    "Path",
    "Process",
    "Protocol",
    "Range",
    "Registry",
    "Stream",
    "String",
    "Supervisor",
    "Task",
    "URI",
];
const ELIXIR_FRAMEWORKS: [&str; 8] = [
    "Oban",
    "Exq",
    "Broadway",
    "Quantum",
    "Verk",
    "Honeydew",
    "Rihanna",
    "FaktoryWorker",
];
const ELIXIR_LIBRARIES: [&str; 22] = [
    "Ecto",
    "Postgrex",
    "DBConnection",
    "MyXQL",
    "Phoenix",
    "Plug",
    "Jason",
    "Poison",
    "Tesla",
    "Finch",
    "Mint",
    "Req",
    "HTTPoison",
    "Redix",
    "Swoosh",
    "Bamboo",
    "Absinthe",
    "Decimal",
    "Timex",
    "ExAws",
    "Cachex",
    "NimblePool",
];

static PYTHON_STDLIB: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)/lib/python\d+(?:\.\d+)?t?/|/python\d*[^/]*/lib/"));
static GO_ROOT: LazyLock<Regex> = LazyLock::new(|| re(r"/(?:go|libexec|goroot[^/]*)/src/([^/]+)/"));
static RUBY_GEM: LazyLock<Regex> = LazyLock::new(|| re(r"/gems/([A-Za-z0-9_\-]+?)-\d"));

/// Marks every frame's `in_app` and returns their origins (in-app frames
/// count as `App`).
pub(crate) fn classify(
    language: Language,
    frames: &mut [Frame],
    mut root: Option<&mut Rooted>,
) -> Vec<Origin> {
    let mut origins: Vec<Origin> = frames.iter().map(|f| origin(language, f)).collect();
    promote_handlers(language, frames, &mut origins);
    for (frame, origin) in frames.iter_mut().zip(origins.iter_mut()) {
        if let Some(rooted) = root.as_deref_mut() {
            *origin = rooted_origin(frame, *origin, rooted);
        }
        frame.in_app = *origin == Origin::App;
    }
    origins
}

fn origin(language: Language, frame: &Frame) -> Origin {
    let file = frame.file.replace('\\', "/");
    let function = frame.function.as_deref().unwrap_or("");
    match language {
        Language::Python => python_origin(&file),
        Language::JavaScript => javascript_origin(&file),
        Language::Java => jvm_origin(&file, function),
        Language::Go => go_origin(&file, function),
        Language::Rust => rust_origin(&file, function),
        Language::Ruby => ruby_origin(&file),
        Language::DotNet => dotnet_origin(function),
        Language::Php => php_origin(&file),
        Language::Elixir => elixir_origin(&file, function),
        Language::Unknown => Origin::App,
    }
}

fn python_origin(file: &str) -> Origin {
    if file.is_empty() || file.starts_with("<frozen") || file == "<string>" {
        return Origin::Runtime;
    }
    if let Some(package) = package_after(file, &["/site-packages/", "/dist-packages/"]) {
        let package = package.trim_end_matches(".py");
        return framework_or_library(PYTHON_FRAMEWORKS.contains(&package));
    }
    if has_dir(file, &[".venv", "venv", ".tox", "__pypackages__", ".eggs"]) {
        return Origin::Library;
    }
    if PYTHON_STDLIB.is_match(file) {
        return Origin::Runtime;
    }
    Origin::App
}

fn javascript_origin(file: &str) -> Origin {
    // Source-mapped bundles print `webpack:///./src/x.ts` or
    // `webpack://app/./src/x.ts`; judge the path inside the bundle.
    let file = strip_webpack_scheme(file);
    // Deno and browsers load libraries from URLs.
    if file.starts_with("https://") || file.starts_with("http://") {
        return Origin::Library;
    }
    let pseudo = ["<anonymous>", "native", "[native code]", "unknown location"];
    if file.is_empty() || pseudo.contains(&file) {
        return Origin::Runtime;
    }
    let runtime_prefixes = [
        "node:",
        "internal/",
        "bun:",
        "index ",
        "evalmachine.",
        "webpack/",
        "(webpack)/",
        "ext:",
    ];
    if runtime_prefixes.iter().any(|p| file.starts_with(p)) {
        return Origin::Runtime;
    }
    if let Some(package) = node_package(file).or_else(|| cached_package(file)) {
        return framework_or_library(JS_FRAMEWORKS.contains(&package));
    }
    // Old Node printed its core modules as bare names (`events.js:116:13`).
    if !file.contains('/') {
        return Origin::Runtime;
    }
    Origin::App
}

/// The path after a `webpack://` scheme and its optional namespace.
fn strip_webpack_scheme(file: &str) -> &str {
    let Some(rest) = file.strip_prefix("webpack://") else {
        return file;
    };
    let rest = rest.trim_start_matches('/');
    let rest = rest.strip_prefix("./").unwrap_or(rest);
    // `webpack://app-name/./src/x.ts`: a namespace before `./`.
    match rest.split_once("/./") {
        Some((namespace, path)) if !namespace.contains('/') => path,
        _ => rest,
    }
}

fn jvm_origin(file: &str, function: &str) -> Origin {
    if JVM_RUNTIME.iter().any(|p| function.starts_with(p)) {
        return Origin::Runtime;
    }
    if JVM_FRAMEWORKS.iter().any(|p| function.starts_with(p)) {
        return Origin::Framework;
    }
    let generated = function.contains("$$EnhancerBy") || function.contains("$Proxy");
    if generated || file == "<generated>" || JVM_LIBRARIES.iter().any(|p| function.starts_with(p)) {
        return Origin::Library;
    }
    Origin::App
}

fn go_origin(file: &str, function: &str) -> Origin {
    if function == "panic" || function.starts_with("runtime.") || file.contains("/src/runtime/") {
        return Origin::Runtime;
    }
    let stdlib_dir = GO_ROOT
        .captures(file)
        .and_then(|caps| caps.get(1))
        .is_some_and(|dir| !dir.as_str().contains('.'));
    if stdlib_dir {
        return Origin::Runtime;
    }
    if file.contains("/pkg/mod/") || has_dir(file, &["vendor"]) {
        let frameworks = [
            "hibiken/asynq",
            "riverqueue/river",
            "gocraft/work",
            "RichardKnop/machinery",
        ];
        return framework_or_library(frameworks.iter().any(|f| file.contains(f)));
    }
    Origin::App
}

fn rust_origin(file: &str, function: &str) -> Origin {
    if !file.is_empty() {
        if file.starts_with("/rustc/")
            || has_any(
                file,
                &["/library/std/", "/library/core/", "/library/alloc/"],
            )
        {
            return Origin::Runtime;
        }
        // Any `CARGO_HOME` (`~/.cargo`, a container's `/usr/local/cargo`)
        // and the vendored crates Nix builds with.
        let registry = ["cargo/registry/", "cargo/git/", "-vendor-cargo-deps/"];
        if has_any(file, &registry) || has_dir(file, &["vendor"]) {
            return Origin::Library;
        }
        // A C file of libc, or an inlined std frame, still names its symbol.
        if function.is_empty() {
            return Origin::App;
        }
    }
    rust_symbol_origin(function)
}

fn rust_symbol_origin(symbol: &str) -> Origin {
    if symbol.is_empty() || symbol.starts_with("__") || NATIVE_SYMBOLS.contains(&symbol) {
        return Origin::Runtime;
    }
    let krate = mangled_crate(symbol).unwrap_or_else(|| symbol_crate(symbol));
    if RUST_RUNTIME.contains(&krate) || symbol.starts_with("rust_") {
        return Origin::Runtime;
    }
    if RUST_LIBRARIES.contains(&krate) {
        return Origin::Library;
    }
    Origin::App
}

/// The first identifier of a legacy-mangled symbol (`_ZN4core3fmt5write...`).
fn mangled_crate(symbol: &str) -> Option<&str> {
    let rest = symbol.strip_prefix("_ZN")?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let len: usize = rest[..digits].parse().ok()?;
    rest.get(digits..digits + len)
}

fn ruby_origin(file: &str) -> Origin {
    if file.starts_with("<internal:") {
        return Origin::Runtime;
    }
    if let Some(gem) = RUBY_GEM.captures(file).and_then(|caps| caps.get(1)) {
        return framework_or_library(RUBY_FRAMEWORKS.contains(&gem.as_str()));
    }
    let library_dirs = [
        "/gems/",
        "/bundle/",
        "/rubygems/",
        "/lib/ruby/",
        "/.rbenv/",
        "/.rvm/",
        "/rubies/",
    ];
    if file.starts_with("[GEM_ROOT]") || has_any(file, &library_dirs) {
        return Origin::Library;
    }
    Origin::App
}

fn dotnet_origin(function: &str) -> Origin {
    if DOTNET_RUNTIME.iter().any(|p| function.starts_with(p)) {
        return Origin::Runtime;
    }
    if DOTNET_FRAMEWORKS.iter().any(|p| function.starts_with(p)) {
        return Origin::Framework;
    }
    // Expression-tree and proxy code the runtime generates at run time.
    let generated = function.starts_with("lambda_method") || function.starts_with("DynamicClass");
    if generated || DOTNET_LIBRARIES.iter().any(|p| function.starts_with(p)) {
        return Origin::Library;
    }
    Origin::App
}

fn php_origin(file: &str) -> Origin {
    // `[internal function]` and `{main}` frames print no file.
    if file.is_empty() {
        return Origin::Runtime;
    }
    // `artisan` and `bin/console` start Laravel's and Symfony's workers.
    let entry = file.ends_with("/artisan") || file.ends_with("/bin/console");
    if entry || PHP_FRAMEWORKS.iter().any(|dir| file.contains(dir)) {
        return Origin::Framework;
    }
    if has_dir(file, &["vendor"]) {
        return Origin::Library;
    }
    Origin::App
}

fn elixir_origin(file: &str, function: &str) -> Origin {
    // `anonymous fn/1 in MyApp.Worker.perform/1` lies in `MyApp.Worker`.
    let function = function.rsplit_once(" in ").map_or(function, |(_, m)| m);
    let top = function.split(['.', '/']).next().unwrap_or(function);
    let erlang = function.starts_with(':') || (file.ends_with(".erl") && !file.contains('/'));
    if erlang || ELIXIR_RUNTIME.contains(&top) {
        return Origin::Runtime;
    }
    if ELIXIR_FRAMEWORKS.contains(&top) {
        return Origin::Framework;
    }
    if has_dir(file, &["deps"]) || ELIXIR_LIBRARIES.contains(&top) {
        return Origin::Library;
    }
    Origin::App
}

fn framework_or_library(is_framework: bool) -> Origin {
    if is_framework {
        Origin::Framework
    } else {
        Origin::Library
    }
}

/// A job framework calls the job's handler: a packaged frame whose nearest
/// caller outside the runtime is a framework frame is the handler, unless it
/// is a known library (instrumentation wrapping the call, a client).
fn promote_handlers(language: Language, frames: &[Frame], origins: &mut [Origin]) {
    let never_app: &[&str] = match language {
        Language::Python => &PYTHON_NEVER_APP,
        Language::JavaScript => &JS_NEVER_APP,
        Language::Ruby => &RUBY_NEVER_APP,
        Language::Go => &[],
        _ => return,
    };
    for index in 0..frames.len() {
        if origins[index] != Origin::Library {
            continue;
        }
        let caller = origins[index + 1..].iter().find(|o| **o != Origin::Runtime);
        if caller != Some(&Origin::Framework) {
            continue;
        }
        let package = package_of(language, &frames[index].file.replace('\\', "/"));
        if package.is_some_and(|p| !never_app.contains(&p.as_str())) {
            origins[index] = Origin::App;
        }
    }
}

fn package_of(language: Language, file: &str) -> Option<String> {
    let package = match language {
        Language::Python => package_after(file, &["/site-packages/", "/dist-packages/"])?,
        Language::JavaScript => node_package(file)?,
        Language::Ruby => RUBY_GEM.captures(file)?.get(1)?.as_str(),
        _ => file,
    };
    Some(package.trim_end_matches(".py").to_owned())
}

/// The path segment after the last of `markers` (`site-packages/<pkg>/...`).
fn package_after<'a>(file: &'a str, markers: &[&str]) -> Option<&'a str> {
    let lower = file.to_ascii_lowercase();
    let end = markers
        .iter()
        .filter_map(|m| lower.rfind(m).map(|at| at + m.len()))
        .max()?;
    file[end..].split('/').next()
}

/// Folders where runtimes other than Node keep installed packages: Deno's
/// npm and remote-module caches, Bun's install cache, Yarn's Plug'n'Play
/// archives. A frame in them is never the application's.
const JS_PACKAGE_CACHES: [&str; 6] = [
    "/deno/npm/",
    "/deno/remote/",
    "/deno/deps/",
    "/.bun/install/cache/",
    "/.yarn/cache/",
    "/.yarn/__virtual__/",
];

/// The package of a file in one of `JS_PACKAGE_CACHES`: the path segment
/// after the registry host in Deno's npm cache, else the cache's first
/// segment (scoped names included), without the `@version` Bun adds.
fn cached_package(file: &str) -> Option<&str> {
    let (_, rest) = JS_PACKAGE_CACHES
        .iter()
        .find_map(|cache| file.split_once(cache))?;
    let rest = rest
        .split_once("registry.npmjs.org/")
        .map_or(rest, |(_, after)| after);
    let mut parts = rest.splitn(3, '/');
    let first = parts.next().filter(|part| !part.is_empty())?;
    let unversioned = |name: &str| name.split('@').next().map_or(0, str::len);
    if !first.starts_with('@') {
        return Some(&first[..unversioned(first)]);
    }
    let second = parts.next()?;
    Some(&rest[..first.len() + 1 + unversioned(second)])
}

/// The npm package of a `node_modules` path, scoped names included.
fn node_package(file: &str) -> Option<&str> {
    let at = match file.rfind("/node_modules/") {
        Some(at) => at + "/node_modules/".len(),
        None => file
            .strip_prefix("node_modules/")
            .map(|_| "node_modules/".len())?,
    };
    let rest = &file[at..];
    let mut parts = rest.splitn(3, '/');
    let first = parts.next()?;
    if !first.starts_with('@') {
        return Some(first);
    }
    let second = parts.next()?;
    Some(&rest[..first.len() + 1 + second.len()])
}

fn has_any(file: &str, needles: &[&str]) -> bool {
    needles.iter().any(|needle| file.contains(needle))
}

fn has_dir(file: &str, dirs: &[&str]) -> bool {
    file.split('/').any(|segment| dirs.contains(&segment))
}

/// With a root, a frame is in-app when its file is under the root, or when
/// the heuristic called it in-app and it resolves to a file under the root;
/// never when it lies in a vendored folder.
fn rooted_origin(frame: &Frame, heuristic: Origin, rooted: &mut Rooted) -> Origin {
    let file = frame.file.replace('\\', "/");
    if file.is_empty() || has_dir(&file, &VENDORED_DIRS) {
        return heuristic.min_library();
    }
    let path = Path::new(&frame.file);
    let under_root = if path.is_absolute() {
        [rooted.given.as_path(), rooted.index.root()]
            .iter()
            .any(|root| path.strip_prefix(root).is_ok_and(|rel| !is_vendored(rel)))
    } else {
        rooted.index.root().join(path).is_file()
    };
    if under_root {
        return Origin::App;
    }
    let resolved = heuristic == Origin::App
        && resolve_frame(&mut rooted.index, frame).is_some_and(|rel| !is_vendored(&rel));
    if resolved {
        Origin::App
    } else {
        heuristic.min_library()
    }
}

/// The project root, as given and as indexed.
pub(crate) struct Rooted {
    /// The root exactly as the caller gave it.
    pub(crate) given: PathBuf,
    /// The canonical root's file index.
    pub(crate) index: ProjectIndex,
}

impl Rooted {
    /// `None` when the root does not exist.
    pub(crate) fn new(root: &Path) -> Option<Self> {
        let canonical = root.canonicalize().ok()?;
        Some(Self {
            given: root.to_path_buf(),
            index: ProjectIndex::new(&canonical),
        })
    }
}

fn is_vendored(relative: &Path) -> bool {
    relative.components().any(|c| match c {
        Component::Normal(name) => name.to_str().is_some_and(|n| VENDORED_DIRS.contains(&n)),
        _ => false,
    })
}

impl Origin {
    /// Demotes `App` to `Library`; keeps the other origins.
    fn min_library(self) -> Self {
        if self == Origin::App {
            Origin::Library
        } else {
            self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scoped_node_package_keeps_its_scope() {
        assert_eq!(
            node_package("/app/node_modules/@nestjs/bull/dist/x.js"),
            Some("@nestjs/bull")
        );
        assert_eq!(
            node_package("/app/node_modules/bull/lib/queue.js"),
            Some("bull")
        );
    }

    #[test]
    fn packages_in_other_runtimes_caches_are_named() {
        assert_eq!(
            cached_package(
                "file:///home/u/.cache/deno/npm/registry.npmjs.org/@scope/pkg/1.0.0/index.js"
            ),
            Some("@scope/pkg")
        );
        assert_eq!(
            cached_package("/root/.bun/install/cache/bullmq@5.1.0/dist/esm/index.js"),
            Some("bullmq")
        );
        assert_eq!(cached_package("/srv/app/deno/npm_helpers.ts"), None);
    }

    #[test]
    fn rust_symbols_are_sorted_by_crate() {
        assert_eq!(
            rust_symbol_origin(
                "<core::future::from_generator::GenFuture<T> as core::future::future::Future>::poll"
            ),
            Origin::Runtime
        );
        assert_eq!(
            rust_symbol_origin("futures_util::future::future::FutureExt::poll_unpin"),
            Origin::Library
        );
        assert_eq!(
            rust_symbol_origin("full_node::start_network::{{closure}}"),
            Origin::App
        );
        assert_eq!(
            rust_symbol_origin("_ZN4core3fmt5write17h0123456789abcdefE"),
            Origin::Runtime
        );
        assert_eq!(rust_symbol_origin("__mh_execute_header"), Origin::Runtime);
    }

    #[test]
    fn rust_files_in_any_cargo_home_are_libraries() {
        for file in [
            "/home/u/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/tokio-1.47.1/src/a.rs",
            "/usr/local/cargo/registry/src/index.crates.io-6f17d22bba15001f/backoff-0.4.0/src/b.rs",
            "/home/u/.cargo/git/checkouts/sqlx-8f1a/2c3d/src/c.rs",
        ] {
            assert_eq!(rust_origin(file, ""), Origin::Library, "{file}");
        }
    }
}
