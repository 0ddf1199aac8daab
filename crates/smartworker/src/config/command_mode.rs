//! `[queues.<name>] mode` and `processes`: whether a queue's command runs once per job or as a
//! pool of long-lived processes answering one JSON line per job.

use smartworker_handler::CommandMode;

use super::ConfigError;
use super::value::Raw;

/// Reads `mode = "oneshot" | "persistent"`.
pub(crate) fn mode(raw: &Raw) -> Result<CommandMode, ConfigError> {
    let name = raw.choice(&CommandMode::NAMES)?;
    Ok(CommandMode::from_name(name).unwrap_or_default())
}

/// Refuses `processes` on a queue that does not keep processes, so the setting never sits
/// there doing nothing.
pub(crate) fn check_processes(
    mode: CommandMode,
    processes: Option<&Raw>,
) -> Result<(), ConfigError> {
    match processes {
        Some(raw) if mode != CommandMode::Persistent => Err(raw.invalid(
            "processes applies only to mode = \"persistent\"; one-shot commands start a process \
             per job"
                .to_owned(),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Config, LoadOptions};
    use expect_test::{Expect, expect};
    use smartworker_handler::CommandMode;

    fn load(toml: &str) -> Result<Config, String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("smartworker.toml"), toml).unwrap();
        let opts = LoadOptions {
            config_path: None,
            cwd: dir.path().to_owned(),
            env: Vec::new(),
        };
        Config::load(&opts).map_err(|e| e.to_string())
    }

    fn check_error(toml: &str, expect: Expect) {
        expect.assert_eq(&load(toml).unwrap_err());
    }

    #[test]
    fn persistent_queue_keeps_one_process_per_concurrent_job_unless_told() {
        let config = load(
            "[queues.a]\ncommand = [\"x\"]\nmode = \"persistent\"\nconcurrency = 3\n\n\
             [queues.b]\ncommand = [\"x\"]\nmode = \"persistent\"\nprocesses = 2\n\n\
             [queues.c]\ncommand = [\"x\"]\n",
        )
        .unwrap();
        let shown: Vec<_> = ["a", "b", "c"]
            .map(|q| (config.queues[q].mode, config.queues[q].process_count()))
            .into();
        assert_eq!(
            shown,
            [
                (CommandMode::Persistent, 3),
                (CommandMode::Persistent, 2),
                (CommandMode::OneShot, 1),
            ]
        );
    }

    #[test]
    fn wrong_mode_or_processes_is_refused_naming_the_line() {
        check_error(
            "[queues.a]\ncommand = [\"x\"]\nmode = \"daemon\"\n",
            expect![[
                r#"smartworker.toml:3: queues.a.mode: "daemon" is not one of oneshot, persistent"#
            ]],
        );
        check_error(
            "[queues.a]\ncommand = [\"x\"]\nprocesses = 4\n",
            expect![[
                r#"smartworker.toml:3: queues.a.processes: processes applies only to mode = "persistent"; one-shot commands start a process per job"#
            ]],
        );
        check_error(
            "[queues.a]\nprocesses = 0\ncommand = [\"x\"]\nmode = \"persistent\"\n",
            expect!["smartworker.toml:2: queues.a.processes: 0 is not a positive integer"],
        );
    }
}
