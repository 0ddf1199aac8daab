//! Where memory lives: `memory.backend` (`APP_MEMORY_BACKEND`) picks the embedded SQLite store
//! (the default) or PostgreSQL, which `[db]` reaches: `APP_DB_HOST` and friends, or one
//! `postgres://` URL in `db.url` (`APP_DB_URL`).
//!
//! Setting `APP_DB_*` alone does not move memory to PostgreSQL: the Bun system's `.env` always
//! carried them, and a database without pgvector would stop SmartWorker from starting. Only
//! `memory.backend = "postgres"` does; `doctor` still checks the database either way.

use super::value::Raw;
use super::{ConfigError, Layers, Secret};

/// Which store keeps memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MemoryBackendKind {
    /// The embedded store in the queue's SQLite file (the default).
    #[default]
    Sqlite,
    /// PostgreSQL with pgvector, reached through `[db]`.
    Postgres,
}

/// `memory.backend`; `postgres` needs `db.host` or `db.url`.
pub(super) fn memory_backend(
    layers: &Layers,
    has_database: bool,
) -> Result<MemoryBackendKind, ConfigError> {
    let kind = layers.read("memory.backend", |r| r.choice(&["sqlite", "postgres"]))?;
    if kind != Some("postgres") {
        return Ok(MemoryBackendKind::Sqlite);
    }
    if let (false, Some(raw)) = (has_database, layers.get("memory.backend")) {
        return Err(raw.invalid(
            "is postgres, but neither db.host (APP_DB_HOST) nor db.url (APP_DB_URL) is set"
                .to_owned(),
        ));
    }
    Ok(MemoryBackendKind::Postgres)
}

/// `db.url`: a `postgres://` or `postgresql://` URL, never together with `db.host`.
pub(super) fn db_url(layers: &Layers) -> Result<Option<Secret>, ConfigError> {
    let Some(raw) = layers.get("db.url") else {
        return Ok(None);
    };
    let url = raw.secret()?;
    let scheme_ok = ["postgres://", "postgresql://"]
        .iter()
        .any(|s| url.expose().starts_with(s));
    if !scheme_ok {
        // The URL may hold a password, so only its scheme is named.
        let scheme = url.expose().split("://").next().unwrap_or_default();
        return Err(raw.invalid(format!(
            "expected a postgres:// or postgresql:// URL, found scheme {scheme:?}"
        )));
    }
    if let Some(host) = layers.get("db.host") {
        return Err(both_set(raw, host));
    }
    Ok(Some(url))
}

fn both_set(url: &Raw, host: &Raw) -> ConfigError {
    url.invalid(format!(
        "is set together with {} ({}); set one of them",
        host.key, host.origin
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::MemoryBackendKind;
    use crate::config::{Config, LoadOptions};

    fn load(env: &[(&str, &str)]) -> Result<Config, String> {
        let dir = tempfile::tempdir().unwrap();
        let opts = LoadOptions {
            config_path: None,
            cwd: dir.path().to_owned(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        Config::load(&opts).map_err(|e| e.to_string())
    }

    #[test]
    fn db_settings_alone_keep_memory_in_sqlite() {
        let config = load(&[("APP_DB_HOST", "db.internal"), ("APP_DB_USER", "app")]).unwrap();
        assert_eq!(config.memory_backend, MemoryBackendKind::Sqlite);
    }

    #[test]
    fn postgres_memory_uses_the_db_settings_or_the_url() {
        let config = load(&[("APP_MEMORY_BACKEND", "postgres"), ("APP_DB_HOST", "db")]).unwrap();
        assert_eq!(config.memory_backend, MemoryBackendKind::Postgres);
        assert_eq!(
            config.database_url().unwrap().expose(),
            "postgres://db:5432"
        );

        let url = "postgresql://app:p%40ss@db:6543/mem";
        let config = load(&[("APP_MEMORY_BACKEND", "postgres"), ("APP_DB_URL", url)]).unwrap();
        assert_eq!(config.database_url().unwrap().expose(), url);
        assert!(config.secrets().contains(&"p%40ss".to_owned()));
        assert!(!format!("{config:?}").contains("p%40ss"));
    }

    #[test]
    fn the_toml_chooses_postgres_in_the_memory_section() {
        let dir = tempfile::tempdir().unwrap();
        let toml = "[memory]\nbackend = \"postgres\"\n[db]\nurl = \"postgres://db/mem\"\n";
        std::fs::write(dir.path().join("smartworker.toml"), toml).unwrap();
        let opts = LoadOptions {
            config_path: None,
            cwd: dir.path().to_owned(),
            env: Default::default(),
        };
        let config = Config::load(&opts).unwrap();
        assert_eq!(config.memory_backend, MemoryBackendKind::Postgres);
        assert_eq!(config.database_url().unwrap().expose(), "postgres://db/mem");
    }

    #[test]
    fn postgres_memory_without_a_database_is_an_error() {
        let err = load(&[("APP_MEMORY_BACKEND", "postgres")]).unwrap_err();
        assert_eq!(
            err,
            "environment: APP_MEMORY_BACKEND: is postgres, but neither db.host (APP_DB_HOST) nor \
             db.url (APP_DB_URL) is set"
        );
        let err = load(&[("APP_MEMORY_BACKEND", "mysql")]).unwrap_err();
        assert!(
            err.contains("\"mysql\" is not one of sqlite, postgres"),
            "{err}"
        );
    }

    #[test]
    fn a_db_url_must_be_postgres_and_alone() {
        let err = load(&[("APP_DB_URL", "mysql://root:hunter2@db/x")]).unwrap_err();
        assert!(err.contains("found scheme \"mysql\""), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let both = [("APP_DB_URL", "postgres://db/x"), ("APP_DB_HOST", "db")];
        let err = load(&both).unwrap_err();
        assert!(err.contains("set together with APP_DB_HOST"), "{err}");
    }
}
