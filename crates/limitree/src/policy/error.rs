//! Policy errors that say where (file, tree, level, field) and how to fix it.

use std::fmt;

/// One problem in a policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}: {place}{message}")]
pub struct PolicyError {
    /// The file (or other source) the policy came from.
    pub source_name: String,
    /// "tree `t`, level `l`: " or empty.
    place: String,
    /// What was wrong and how to fix it.
    pub message: String,
}

impl PolicyError {
    pub(crate) fn new(source_name: &str, place: &str, message: impl Into<String>) -> Self {
        let place = if place.is_empty() {
            String::new()
        } else {
            format!("{place}: ")
        };
        PolicyError {
            source_name: source_name.to_owned(),
            place,
            message: message.into(),
        }
    }
}

/// Every problem found in a policy (validation does not stop at the first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl PolicyErrors {
    /// The individual errors.
    pub fn errors(&self) -> &[PolicyError] {
        &self.0
    }
}

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}
