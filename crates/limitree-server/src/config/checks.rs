//! Checks that span sections, in one place: each section validates itself
//! when parsed; what one section requires of another is decided here.

use limitree::Policy;
use limitree::policy::{PolicyError, Step, TomlDocument};

use super::fields::Section;
use super::server::ServerConfig;
use crate::notify::config::NotifyConfig;

/// Pushes to `errors` every problem between the sections that parsed (a
/// check whose sections did not is skipped; their own errors are reported;
/// a `[notify] tree` is still checked against the tree names when the policy
/// has errors), each naming the file, the line and the keys:
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
    server: Option<&ServerConfig>,
    policy: Option<&Policy>,
    notify: Option<&NotifyConfig>,
    doc: &TomlDocument<'_>,
    errors: &mut Vec<String>,
) {
    let section = Section::new(doc, "notify");
    match (policy, notify) {
        (Some(policy), Some(notify)) => notify_tree(policy, notify, &section, errors),
        // The policy has errors of its own: still say when `[notify] tree`
        // names no tree of the file at all.
        (None, Some(notify)) => notify_tree_named(doc, notify, &section, errors),
        _ => {}
    }
    if let (Some(server), Some(notify)) = (server, notify)
        && notify.drain >= server.shutdown_grace
    {
        // At `drain` when the file sets it, else at `shutdown_grace`.
        let key =
            |section: &str, key: &str| [Step::Key(section.to_owned()), Step::Key(key.to_owned())];
        let location = doc
            .location_of(&key("notify", "drain"))
            .filter(|_| doc.has("notify"))
            .or_else(|| doc.location_of(&key("server", "shutdown_grace")));
        errors.push(
                PolicyError::located(
                    doc.source(),
                    location,
                    "[notify] drain",
                    format!(
                        "{} must be shorter than [server] shutdown_grace ({}), so deliveries stop before the server stops waiting for them; set [notify] drain below it",
                        duration_text(notify.drain),
                        duration_text(server.shutdown_grace),
                    ),
                )
                .to_string(),
            );
    }
}

/// `[notify] tree` against the names of the file's `[[trees]]`, read on their
/// own (when the policy as a whole has errors).
fn notify_tree_named(
    doc: &TomlDocument<'_>,
    notify: &NotifyConfig,
    section: &Section<'_, '_>,
    errors: &mut Vec<String>,
) {
    #[derive(serde::Deserialize)]
    struct Named {
        name: Option<String>,
    }
    let (Some(tree), true) = (&notify.tree, doc.has("trees")) else {
        return;
    };
    let (Some(trees), _) = doc.deserialize::<Vec<Named>>("trees") else {
        return;
    };
    let known: Vec<&str> = trees.iter().filter_map(|t| t.name.as_deref()).collect();
    if !known.contains(&tree.as_str()) {
        errors.push(undefined_tree(section, tree, &known));
    }
}

fn undefined_tree(section: &Section<'_, '_>, tree: &str, known: &[&str]) -> String {
    let hint = limitree::policy::closest(tree, known.iter().copied())
        .map(|best| format!("did you mean `{best}`? "))
        .unwrap_or_default();
    section.error(
        "tree",
        format!(
            "`{}` is not defined; {hint}defined trees: {}",
            limitree::policy::cut(tree, limitree::policy::MAX_ECHO),
            known.join(", ")
        ),
    )
}

fn notify_tree(
    policy: &Policy,
    notify: &NotifyConfig,
    section: &Section<'_, '_>,
    errors: &mut Vec<String>,
) {
    if let Some(tree) = &notify.tree {
        if policy.tree(tree).is_none() {
            let known: Vec<&str> = policy.trees().iter().map(|t| t.name.as_str()).collect();
            errors.push(undefined_tree(section, tree, &known));
        }
        if let Some(t) = policy.tree(tree) {
            if !t.levels.iter().any(|l| l.by == ["category"]) {
                errors.push(section.error(
                    "tree",
                    format!("`{tree}` has no level by `category`; notifications are limited per category, so add a level with by = [\"category\"]"),
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
                    errors.push(section.error(
                        "tree",
                        format!(
                            "level `{}` of `{tree}` needs descriptor `{}`, which a notification does not carry (it has only `category`); make the level optional or pick another tree",
                            level.name,
                            other.join("`, `")
                        ),
                    ));
                }
            }
        }
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
                .any(|e| e
                    .starts_with("c.toml: line 2, column 8: [notify] tree: `nope` is not defined")),
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
                errors.iter().any(|e| e.starts_with("c.toml: line ")
                    && e.contains(": [notify] drain: ")
                    && e.contains("shorter than [server] shutdown_grace (2s)")),
                "{text}: {errors:?}"
            );
        }
    }
}
