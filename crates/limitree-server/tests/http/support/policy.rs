//! Policies as TOML: the built-in default tree written out once, and the
//! pieces the tests build their variants from.
//!
//! `notifications_with(&[GLOBAL.limit(1000).window("1m")])` reads as "the
//! default tree, with only a global level of 1000 per minute".

use std::fmt::Write as _;

/// One `[[trees.levels]]` table.
#[derive(Debug, Clone, Copy)]
pub struct Level {
    pub name: &'static str,
    /// The descriptor it is keyed by, if any.
    pub by: Option<&'static str>,
    pub limit: u64,
    pub window: &'static str,
    pub algorithm: &'static str,
}

/// The default policy's `global` level: 100 per 30m, sliding_log.
pub const GLOBAL: Level = Level {
    name: "global",
    by: None,
    limit: 100,
    window: "30m",
    algorithm: "sliding_log",
};

/// The default policy's `category` level: 10 per 30m by `category`,
/// sliding_log.
pub const CATEGORY: Level = Level {
    name: "category",
    by: Some("category"),
    limit: 10,
    window: "30m",
    algorithm: "sliding_log",
};

impl Level {
    pub const fn limit(self, limit: u64) -> Level {
        Level { limit, ..self }
    }

    pub const fn window(self, window: &'static str) -> Level {
        Level { window, ..self }
    }

    pub const fn algorithm(self, algorithm: &'static str) -> Level {
        Level { algorithm, ..self }
    }
}

/// A `[[trees]]` table called `name` with `levels`, outermost first.
pub fn tree(name: &str, levels: &[Level]) -> String {
    let mut text = format!("\n[[trees]]\nname = \"{name}\"\n");
    for level in levels {
        let Level {
            name,
            by,
            limit,
            window,
            algorithm,
        } = level;
        write!(text, "[[trees.levels]]\nname = \"{name}\"\n").unwrap();
        if let Some(by) = by {
            writeln!(text, "by = [\"{by}\"]").unwrap();
        }
        write!(
            text,
            "limit = {limit}\nwindow = \"{window}\"\nalgorithm = \"{algorithm}\"\n"
        )
        .unwrap();
    }
    text
}

/// The `notifications` tree with other `levels` (the default tree's name, so
/// the relay charges it).
pub fn notifications_with(levels: &[Level]) -> String {
    tree("notifications", levels)
}

/// The built-in default policy (`Config::builtin()`), as a config file
/// states it.
pub fn default_tree() -> String {
    notifications_with(&[GLOBAL, CATEGORY])
}

#[test]
fn default_tree_is_the_builtin_policy() {
    let config = limitree_server::config::Config::from_toml_str(&default_tree(), "test.toml")
        .expect("valid test config");
    assert_eq!(
        config.policy,
        limitree_server::config::Config::builtin().policy
    );
}
