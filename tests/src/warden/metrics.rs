//! Reading warden's `/metrics` (the Prometheus text exposition format).
//!
//! Tests assert that metric families exist with the right type and that counters move after
//! traffic, never on exact values (other tests share the proxy, and timing is not a property
//! of correctness).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, bail};

/// One sample: metric name, labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed scrape.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub samples: Vec<Sample>,
    /// `# TYPE` of each family.
    pub types: BTreeMap<String, String>,
}

impl Metrics {
    /// Parses the text exposition format.
    pub fn parse(text: &str) -> Result<Metrics> {
        let mut metrics = Metrics::default();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split_whitespace();
                if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                    metrics.types.insert(name.to_string(), kind.to_string());
                }
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let sample = parse_sample(line)
                .with_context(|| format!("bad metrics line {}: {line}", number + 1))?;
            metrics.samples.push(sample);
        }
        Ok(metrics)
    }

    /// The declared type of family `name` (`counter`, `gauge`, `histogram`...).
    pub fn family_type(&self, name: &str) -> Option<&str> {
        self.types.get(name).map(String::as_str)
    }

    /// Whether any sample is named `name`.
    pub fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|s| s.name == name)
    }

    /// The sum of the samples named `name` whose labels include all of `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }

    /// The values label `label` takes on samples named `name`.
    pub fn label_values(&self, name: &str, label: &str) -> BTreeSet<String> {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter_map(|s| s.labels.get(label).cloned())
            .collect()
    }
}

fn parse_sample(line: &str) -> Result<Sample> {
    let (name, rest) = match line.find(['{', ' ']) {
        Some(i) => line.split_at(i),
        None => bail!("no value"),
    };
    let mut labels = BTreeMap::new();
    let rest = if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        let end;
        loop {
            // key
            let mut key = String::new();
            while let Some(&(_, c)) = chars.peek() {
                if c == '=' || c == '}' {
                    break;
                }
                if c != ',' && !c.is_whitespace() {
                    key.push(c);
                }
                chars.next();
            }
            match chars.next() {
                Some((i, '}')) => {
                    end = i;
                    break;
                }
                Some((_, '=')) => {}
                _ => bail!("unterminated labels"),
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                bail!("label {key} has no quoted value");
            }
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c)) => value.push(c),
                        None => bail!("unterminated escape"),
                    },
                    Some((_, '"')) => break,
                    Some((_, c)) => value.push(c),
                    None => bail!("unterminated label value"),
                }
            }
            labels.insert(key, value);
        }
        &inner[end + 1..]
    } else {
        rest
    };
    let value_text = rest.split_whitespace().next().context("no value")?;
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse::<f64>().with_context(|| format!("bad value {v}"))?,
    };
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_families_labels_and_values() {
        let text = "# HELP warden_statements_total Statements.\n\
                    # TYPE warden_statements_total counter\n\
                    warden_statements_total{kind=\"select\",upstream=\"main\"} 3\n\
                    warden_statements_total{kind=\"insert\",upstream=\"main\"} 2\n\
                    # TYPE warden_statement_duration_seconds histogram\n\
                    warden_statement_duration_seconds_bucket{le=\"+Inf\"} 5\n\
                    warden_statement_duration_seconds_count 5\n\
                    weird{msg=\"a \\\"quoted\\\", value\"} 1e3\n";
        let m = Metrics::parse(text).unwrap();
        assert_eq!(m.family_type("warden_statements_total"), Some("counter"));
        assert_eq!(m.sum("warden_statements_total", &[]), 5.0);
        assert_eq!(m.sum("warden_statements_total", &[("kind", "insert")]), 2.0);
        assert_eq!(
            m.sum(
                "warden_statement_duration_seconds_bucket",
                &[("le", "+Inf")]
            ),
            5.0
        );
        assert_eq!(m.sum("weird", &[("msg", "a \"quoted\", value")]), 1000.0);
        assert_eq!(
            m.label_values("warden_statements_total", "kind"),
            ["insert".to_string(), "select".to_string()].into()
        );
    }
}
