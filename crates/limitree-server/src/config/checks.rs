//! Checks that span sections, in one place: each section validates itself
//! when parsed; what one section requires of another is decided here.

use limitree::Policy;

use super::server::ServerConfig;
use crate::notify::config::NotifyConfig;

/// Pushes to `errors` every problem between the parsed sections (each naming
/// `source` and the keys):
/// - `[notify] tree`, when named, must be a tree of the policy keyed by
///   `category`: a notification is decided with the one descriptor
///   `category`, so the tree needs a level by `category` (else nothing is
///   limited per category and digests mean nothing), and no required level
///   may need another key (else every notification is refused). Without a
///   name the relay uses the only tree, and a config that never notifies is
///   not held to this.
/// - `[notify] drain` must be shorter than `[server] shutdown_grace`, so
///   workers finish their last call before the server stops waiting for them.
///   A default `drain` that does not fit is reported too, not shortened: the
///   file then says the drain it runs with.
pub fn across_sections(
    server: &ServerConfig,
    policy: &Policy,
    notify: &NotifyConfig,
    source: &str,
    errors: &mut Vec<String>,
) {
    if let Some(tree) = &notify.tree {
        if policy.tree(tree).is_none() {
            let known: Vec<&str> = policy.trees().iter().map(|t| t.name.as_str()).collect();
            errors.push(format!(
                "{source}: [notify] tree: `{tree}` is not defined; defined trees: {}",
                known.join(", ")
            ));
        }
        if let Some(t) = policy.tree(tree) {
            if !t.levels.iter().any(|l| l.by == ["category"]) {
                errors.push(format!(
                    "{source}: [notify] tree: `{tree}` has no level by `category`; notifications are limited per category, so add a level with by = [\"category\"]"
                ));
            }
            for level in &t.levels {
                let other: Vec<&str> = level
                    .by
                    .iter()
                    .map(String::as_str)
                    .filter(|key| *key != "category")
                    .collect();
                if level.required && !other.is_empty() {
                    errors.push(format!(
                        "{source}: [notify] tree: level `{}` of `{tree}` needs descriptor `{}`, which a notification does not carry (it has only `category`); make the level optional or pick another tree",
                        level.name,
                        other.join("`, `")
                    ));
                }
            }
        }
    }
    if notify.drain >= server.shutdown_grace {
        errors.push(format!(
            "{source}: [notify] drain: {} must be shorter than [server] shutdown_grace ({}), so deliveries stop before the server stops waiting for them; set [notify] drain below it",
            duration_text(notify.drain),
            duration_text(server.shutdown_grace),
        ));
    }
}

fn duration_text(d: std::time::Duration) -> String {
    limitree::policy::format_duration(limitree::clock::duration_to_micros(d))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::Config;

    #[test]
    fn the_notify_tree_must_exist() {
        let text = "[notify]\ntree = \"nope\"\n";
        let errors = Config::from_toml_str(text, "c.toml").unwrap_err().0;
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("c.toml: [notify] tree: `nope` is not defined")),
            "{errors:?}"
        );
    }

    #[test]
    fn a_named_notify_tree_must_be_keyed_by_category() {
        const TREES: &str = "[[trees]]\nname = \"n\"\n[[trees.levels]]\nname = \"category\"\nby = [\"category\"]\nlimit = 10\nwindow = \"30m\"\n[[trees]]\nname = \"users\"\n[[trees.levels]]\nname = \"user\"\nby = [\"user\"]\nlimit = 10\nwindow = \"30m\"\n";
        let ok = format!("[notify]\ntree = \"n\"\n{TREES}");
        assert!(Config::from_toml_str(&ok, "c.toml").is_ok());
        // Unnamed: a config that never notifies is not held to it.
        let users_only = "[[trees]]\nname = \"users\"\n[[trees.levels]]\nname = \"user\"\nby = [\"user\"]\nlimit = 10\nwindow = \"30m\"\n";
        assert!(Config::from_toml_str(users_only, "c.toml").is_ok());
        let bad = format!("[notify]\ntree = \"users\"\n{TREES}");
        let errors = Config::from_toml_str(&bad, "c.toml").unwrap_err().0;
        assert!(
            errors
                .iter()
                .any(|e| e.contains("`users` has no level by `category`")),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("level `user` of `users` needs descriptor `user`")),
            "{errors:?}"
        );
    }

    #[test]
    fn drain_must_end_before_the_grace_even_by_default() {
        let text = "[server]\nshutdown_grace = \"2s\"\n[notify]\ndrain = \"1s\"\n";
        let config = Config::from_toml_str(text, "c.toml").unwrap();
        assert_eq!(config.notify.drain, Duration::from_secs(1));
        for text in [
            "[server]\nshutdown_grace = \"2s\"\n",
            "[server]\nshutdown_grace = \"2s\"\n[notify]\ndrain = \"2s\"\n",
        ] {
            let errors = Config::from_toml_str(text, "c.toml").unwrap_err().0;
            assert!(
                errors
                    .iter()
                    .any(|e| e.starts_with("c.toml: [notify] drain: ")
                        && e.contains("shorter than [server] shutdown_grace (2s)")),
                "{text}: {errors:?}"
            );
        }
    }
}
