//! envoyproxy/ratelimit's YAML as a config: `--config` naming a `.yaml`/`.yml`
//! file, or a directory of them (every domain loaded, as envoyproxy/ratelimit
//! loads its runtime directory). The rules become the policy; everything
//! else (`[server]`, `[store]`) keeps its defaults, which `--http`, `--grpc`
//! and `--redis` override.

use std::path::{Path, PathBuf};

use limitree::policy::PolicyErrors;
use limitree::policy::envoy::{Domain, EnvoyConfig};

/// Most YAML files read from one directory.
pub const MAX_FILES: usize = 1_000;

/// Whether `path` is read as envoyproxy/ratelimit YAML rather than our TOML.
pub fn is_envoy(path: &Path) -> bool {
    path.is_dir()
        || path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"))
}

/// The domains in the file or directory `path`, or every problem found (each
/// naming its file and line).
pub fn load(path: &Path) -> Result<Vec<Domain>, Vec<String>> {
    let files = if path.is_dir() {
        yaml_files(path)?
    } else {
        vec![path.to_owned()]
    };
    let mut texts = Vec::with_capacity(files.len());
    let mut errors = Vec::new();
    for file in &files {
        let source = file.display().to_string();
        match std::fs::read(file) {
            Err(e) => errors.push(format!("{source}: cannot read the file: {e}")),
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => texts.push((source, text)),
                // The library names the line where the text stops being UTF-8.
                Err(e) => errors.extend(messages(
                    EnvoyConfig::from_yaml_bytes(e.as_bytes(), &source).err(),
                )),
            },
        }
    }
    let domains = EnvoyConfig::from_yaml_files(texts.iter().map(|(s, t)| (s.as_str(), t.as_str())));
    match domains {
        Ok(domains) if errors.is_empty() => Ok(domains),
        Ok(_) => Err(errors),
        Err(e) => {
            errors.extend(messages(Some(e)));
            Err(errors)
        }
    }
}

fn messages(errors: Option<PolicyErrors>) -> Vec<String> {
    errors
        .map(|e| e.errors().iter().map(ToString::to_string).collect())
        .unwrap_or_default()
}

/// The `.yaml`/`.yml` files directly in `dir`, by name (hidden files skipped,
/// as editors leave them).
fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>, Vec<String>> {
    let source = dir.display();
    let entries = std::fs::read_dir(dir)
        .map_err(|e| vec![format!("{source}: cannot read the directory: {e}")])?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| vec![format!("{source}: cannot read the directory: {e}")])?;
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden && path.is_file() && is_envoy(&path) {
            files.push(path);
        }
        if files.len() > MAX_FILES {
            return Err(vec![format!(
                "{source}: more than {MAX_FILES} YAML files; give a directory of one service's domains"
            )]);
        }
    }
    if files.is_empty() {
        return Err(vec![format!(
            "{source}: no .yaml or .yml files in the directory; put envoyproxy/ratelimit configs there, or give a TOML file"
        )]);
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example the README and `deploy/envoy/envoy.yaml` refer to loads.
    #[test]
    fn the_shipped_example_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/envoy/ratelimit");
        assert!(is_envoy(&dir));
        let domains = load(&dir).unwrap();
        assert_eq!(domains.len(), 1);
        assert_eq!(domains[0].name, "notifications");
        assert_eq!(domains[0].rules.len(), 4);
        let category = domains[0].matches(&[("category", "errors")]).unwrap();
        assert_eq!(category.rule.name, "category");
    }

    #[test]
    fn an_empty_directory_says_what_to_put_there() {
        let dir = tempfile::tempdir().unwrap();
        let errors = load(dir.path()).unwrap_err();
        assert!(errors[0].contains("no .yaml or .yml files"), "{errors:?}");
    }
}
