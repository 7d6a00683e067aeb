//! `GET /metrics` read by a real Prometheus text parser: the Prometheus
//! project's Python client (`prometheus_client.parser`, Debian's
//! `python3-prometheus-client`, which `scripts/test` installs), run as a child
//! process on the exposition. Its parser unescapes label values and refuses a
//! malformed line, so a test that reads a sample back through it has seen the
//! text a scraper would.

use std::io::Write as _;
use std::process::{Command, Stdio};

use serde::Deserialize;

/// Parses stdin with prometheus_client and prints every sample as JSON.
const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append({"family": family.name, "kind": family.type, "name": s.name,
                    "labels": s.labels, "value": s.value})
json.dump(out, sys.stdout)
"#;

/// One parsed sample.
#[derive(Debug, Clone, Deserialize)]
pub struct Sample {
    /// The family's name as the parser reports it (`_total` stripped).
    pub family: String,
    /// The family's `# TYPE`: `counter`, `gauge`, `histogram`, …
    pub kind: String,
    /// The sample's own name (`…_total`, `…_bucket`, `…_count`).
    pub name: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed exposition.
#[derive(Debug, Clone)]
pub struct Exposition {
    pub samples: Vec<Sample>,
    pub text: String,
}

/// The Python with Debian's `python3-prometheus-client`: `LIMITREE_TEST_PYTHON`,
/// else the system's `/usr/bin/python3` (a pyenv shim earlier on `PATH` would
/// not see Debian's packages), else `python3`.
fn python() -> String {
    std::env::var("LIMITREE_TEST_PYTHON").unwrap_or_else(|_| {
        if std::path::Path::new("/usr/bin/python3").exists() {
            "/usr/bin/python3".to_owned()
        } else {
            "python3".to_owned()
        }
    })
}

impl Exposition {
    /// Parses `text`; panics with the parser's message if it refuses it.
    pub fn parse(text: &str) -> Exposition {
        let python = python();
        let mut child = Command::new(&python)
            .args(["-c", PARSE])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {python} ({e}); install python3-prometheus-client (scripts/test does)")
            });
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "prometheus_client refused the exposition: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        Exposition {
            samples: serde_json::from_slice(&out.stdout).unwrap(),
            text: text.to_owned(),
        }
    }

    /// `GET base/metrics`, parsed.
    pub async fn scrape(client: &reqwest::Client, base: &str) -> Exposition {
        let response = client.get(format!("{base}/metrics")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        Exposition::parse(&response.text().await.unwrap())
    }

    /// The value of the sample `name` whose labels include all of `labels`
    /// (exactly one must match); `None` if none does.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect();
        assert!(
            matching.len() <= 1,
            "{name} {labels:?} matches {} samples: {matching:?}",
            matching.len()
        );
        matching.first().map(|s| s.value)
    }

    /// [`Exposition::get`], which must exist.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no sample {name} {labels:?} in\n{}", self.text))
    }

    /// Every sample of `name`.
    pub fn all(&self, name: &str) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.name == name).collect()
    }
}
