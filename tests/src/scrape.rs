//! Reading a Prometheus text page in tests: each sample by metric name and labels.

use std::collections::BTreeMap;

/// One scrape of a `/metrics` page.
#[derive(Debug)]
pub struct Scrape {
    pub text: String,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Scrape {
    /// Parses the sample lines (`name{k="v",…} value`); comments and blank lines are skipped.
    pub fn parse(text: &str) -> Scrape {
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .filter_map(parse_sample)
            .collect();
        Scrape {
            text: text.to_owned(),
            samples,
        }
    }

    /// The sum of the samples named `name` whose labels include every pair of `labels`;
    /// `None` when there is no such sample.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<f64> = self
            .samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).is_some_and(|have| have == v))
            })
            .map(|(_, _, value)| *value)
            .collect();
        (!matching.is_empty()).then(|| matching.iter().sum())
    }

    /// Every distinct value of `label` among the samples named `name`.
    pub fn label_values(&self, name: &str, label: &str) -> Vec<String> {
        let mut values: Vec<String> = self
            .samples
            .iter()
            .filter(|(n, _, _)| n == name)
            .filter_map(|(_, l, _)| l.get(label).cloned())
            .collect();
        values.sort();
        values.dedup();
        values
    }
}

fn parse_sample(line: &str) -> Option<(String, BTreeMap<String, String>, f64)> {
    let (series, value) = line.rsplit_once(' ')?;
    let value = value.parse().ok()?;
    let Some((name, labels)) = series.split_once('{') else {
        return Some((series.to_owned(), BTreeMap::new(), value));
    };
    let labels = labels
        .strip_suffix('}')?
        .split("\",")
        .filter(|pair| !pair.is_empty())
        .filter_map(|pair| {
            let (key, value) = pair.split_once("=\"")?;
            Some((key.to_owned(), value.trim_end_matches('"').to_owned()))
        })
        .collect();
    Some((name.to_owned(), labels, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_found_by_name_and_labels() {
        let scrape = Scrape::parse(
            "# HELP x_total X.\n# TYPE x_total counter\n\
             x_total{method=\"POST\",route=\"/api/sms\",status=\"2xx\"} 3\n\
             x_total{method=\"GET\",route=\"/api/sms/{id}\",status=\"2xx\"} 2\n\
             y 7\n",
        );
        assert_eq!(scrape.sum("x_total", &[("route", "/api/sms")]), Some(3.0));
        assert_eq!(scrape.sum("x_total", &[("status", "2xx")]), Some(5.0));
        assert_eq!(scrape.sum("x_total", &[("method", "PUT")]), None);
        assert_eq!(scrape.sum("y", &[]), Some(7.0));
        assert_eq!(
            scrape.label_values("x_total", "route"),
            ["/api/sms", "/api/sms/{id}"]
        );
    }
}
