//! Figures, the printed table, `docs/benchmarks.md` and the SVG plot.

use std::fmt::Write as _;

/// One measured figure and its verdict against the target.
#[derive(Debug, Clone)]
pub struct Figure {
    pub name: String,
    pub target: String,
    pub measured: String,
    /// `None` when there is no target, or nothing could be measured.
    pub pass: Option<bool>,
    pub note: String,
}

impl Figure {
    pub fn at_most(name: &str, value: f64, limit: f64, fmt: impl Fn(f64) -> String) -> Figure {
        Figure {
            name: name.into(),
            target: format!("≤ {}", fmt(limit)),
            measured: fmt(value),
            pass: Some(value <= limit),
            note: String::new(),
        }
    }

    pub fn at_least(name: &str, value: f64, floor: f64, fmt: impl Fn(f64) -> String) -> Figure {
        Figure {
            name: name.into(),
            target: format!("≥ {}", fmt(floor)),
            measured: fmt(value),
            pass: Some(value >= floor),
            note: String::new(),
        }
    }

    pub fn within(
        name: &str,
        value: f64,
        expected: f64,
        tolerance: f64,
        fmt: impl Fn(f64) -> String,
    ) -> Figure {
        Figure {
            name: name.into(),
            target: format!("{} ± {:.0} %", fmt(expected), tolerance * 100.0),
            measured: fmt(value),
            pass: Some((value - expected).abs() <= expected * tolerance),
            note: String::new(),
        }
    }

    /// A figure that must land in `low..=high` (a share, where "± n %" would read as relative).
    pub fn between(
        name: &str,
        value: f64,
        low: f64,
        high: f64,
        fmt: impl Fn(f64) -> String,
    ) -> Figure {
        Figure {
            name: name.into(),
            target: format!("{} – {}", fmt(low), fmt(high)),
            measured: fmt(value),
            pass: Some((low..=high).contains(&value)),
            note: String::new(),
        }
    }

    pub fn not_measured(name: &str, target: &str, why: &str) -> Figure {
        Figure {
            name: name.into(),
            target: target.into(),
            measured: "—".into(),
            pass: None,
            note: why.into(),
        }
    }

    pub fn informational(name: &str, measured: String) -> Figure {
        Figure {
            name: name.into(),
            target: "—".into(),
            measured,
            pass: None,
            note: String::new(),
        }
    }

    pub fn failed(name: &str, error: &anyhow::Error) -> Figure {
        Figure {
            name: name.into(),
            target: "—".into(),
            measured: "error".into(),
            pass: Some(false),
            note: format!("{error:#}"),
        }
    }

    pub fn with_note(mut self, note: &str) -> Figure {
        self.note = note.into();
        self
    }

    /// The same figure without a verdict: a smoke run's tiny sizes can't meet the targets,
    /// and a "FAIL" in CI's log would only mislead.
    pub fn not_judged(mut self) -> Figure {
        self.pass = None;
        self
    }

    pub fn verdict(&self) -> &'static str {
        match self.pass {
            Some(true) => "pass",
            Some(false) => "FAIL",
            None => "n/a",
        }
    }
}

/// Recipients completed over time, sampled while a bulk drains.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    /// (seconds since the request started, recipients done)
    pub points: Vec<(f64, usize)>,
}

impl Timeline {
    /// Recipients per second between 10 % and 90 % done: ramp-up and tail excluded.
    pub fn steady_rate(&self) -> f64 {
        let total = self.points.last().map_or(0, |p| p.1) as f64;
        let at = |share: f64| {
            self.points
                .iter()
                .find(|p| p.1 as f64 >= total * share)
                .copied()
        };
        match (at(0.1), at(0.9)) {
            (Some(a), Some(b)) if b.0 > a.0 => (b.1 - a.1) as f64 / (b.0 - a.0),
            _ => total / self.points.last().map_or(1.0, |p| p.0.max(0.001)),
        }
    }

    /// A line chart of recipients done over time, as a standalone SVG.
    pub fn to_svg(&self, title: &str) -> String {
        let (w, h, left, bottom, top, right) = (720.0, 360.0, 70.0, 40.0, 30.0, 20.0);
        let max_t = self.points.iter().map(|p| p.0).fold(1.0_f64, f64::max);
        let max_n = self.points.iter().map(|p| p.1).max().unwrap_or(1).max(1) as f64;
        let x = |t: f64| left + t / max_t * (w - left - right);
        let y = |n: f64| h - bottom - n / max_n * (h - bottom - top);
        let mut svg = String::new();
        let _ = write!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
        );
        let _ = write!(
            svg,
            r#"<rect width="100%" height="100%" fill="white"/><text x="{}" y="18" text-anchor="middle" font-size="14">{title}</text>"#,
            w / 2.0
        );
        let _ = write!(
            svg,
            r#"<line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="black"/><line x1="{left}" y1="{top}" x2="{left}" y2="{}" stroke="black"/>"#,
            h - bottom,
            w - right,
            h - bottom,
            h - bottom
        );
        for i in 0..=5 {
            let t = max_t * f64::from(i) / 5.0;
            let n = max_n * f64::from(i) / 5.0;
            let _ = write!(
                svg,
                r#"<text x="{:.1}" y="{}" text-anchor="middle">{t:.1} s</text>"#,
                x(t),
                h - bottom + 16.0
            );
            let _ = write!(
                svg,
                r#"<text x="{}" y="{:.1}" text-anchor="end">{n:.0}</text>"#,
                left - 6.0,
                y(n) + 4.0
            );
            let _ = write!(
                svg,
                r##"<line x1="{left}" y1="{:.1}" x2="{}" y2="{:.1}" stroke="#ddd"/>"##,
                y(n),
                w - right,
                y(n)
            );
        }
        let path: Vec<String> = self
            .points
            .iter()
            .map(|(t, n)| format!("{:.1},{:.1}", x(*t), y(*n as f64)))
            .collect();
        let _ = write!(
            svg,
            r##"<polyline fill="none" stroke="#1f6feb" stroke-width="2" points="{}"/>"##,
            path.join(" ")
        );
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">time since the request (s)</text></svg>"#,
            (w + left) / 2.0,
            h - 4.0
        );
        svg
    }
}

/// The table printed to the terminal.
pub fn table(figures: &[Figure]) -> String {
    let width = figures
        .iter()
        .map(|f| f.name.chars().count())
        .max()
        .unwrap_or(10);
    let mut out = format!(
        "{:width$}  {:>22}  {:>22}  {}\n",
        "figure", "target", "measured", "result"
    );
    for f in figures {
        let _ = writeln!(
            out,
            "{:width$}  {:>22}  {:>22}  {}  {}",
            f.name,
            f.target,
            f.measured,
            f.verdict(),
            f.note
        );
    }
    out
}

/// The figures as a markdown table.
pub fn markdown_table(figures: &[Figure]) -> String {
    let mut out =
        String::from("| figure | target | measured | result | note |\n|---|---|---|---|---|\n");
    for f in figures {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            f.name,
            f.target,
            f.measured,
            f.verdict(),
            f.note
        );
    }
    out
}

/// Marks the part of `docs/benchmarks.md` that `make bench` rewrites; everything outside
/// the markers is hand-written and kept.
const BEGIN: &str =
    "<!-- bench:begin (generated by `make bench`; edits inside are overwritten) -->";
const END: &str = "<!-- bench:end -->";

/// `document` with its generated block replaced by `generated` (appended if it has none).
pub fn splice_generated(document: &str, generated: &str) -> String {
    let block = format!("{BEGIN}\n{generated}\n{END}");
    match (document.find(BEGIN), document.find(END)) {
        (Some(start), Some(end)) if end > start => {
            format!(
                "{}{block}{}",
                &document[..start],
                &document[end + END.len()..]
            )
        }
        _ if document.trim().is_empty() => format!("{block}\n"),
        _ => format!("{}\n\n{block}\n", document.trim_end()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_block_is_replaced_and_the_prose_kept() {
        let first = splice_generated("# Benchmarks\n\nprose\n", "table 1");
        assert!(first.starts_with("# Benchmarks\n\nprose"));
        let second = splice_generated(&(first.clone() + "\nmore prose\n"), "table 2");
        assert!(second.contains("table 2") && !second.contains("table 1"));
        assert!(second.contains("prose") && second.ends_with("more prose\n"));
        assert_eq!(second.matches(BEGIN).count(), 1);
    }

    #[test]
    fn steady_rate_ignores_ramp_and_tail() {
        let timeline = Timeline {
            points: vec![
                (0.0, 0),
                (1.0, 0),
                (2.0, 100),
                (3.0, 200),
                (4.0, 300),
                (5.0, 400),
                (10.0, 400),
            ],
        };
        assert!((timeline.steady_rate() - 100.0).abs() < 1e-9);
    }

    #[test]
    fn verdicts_follow_the_targets() {
        assert_eq!(
            Figure::at_most("x", 1.0, 2.0, |v| v.to_string()).verdict(),
            "pass"
        );
        assert_eq!(
            Figure::at_least("x", 1.0, 2.0, |v| v.to_string()).verdict(),
            "FAIL"
        );
        assert_eq!(
            Figure::within("x", 520.0, 500.0, 0.05, |v| v.to_string()).verdict(),
            "pass"
        );
        assert_eq!(
            Figure::within("x", 530.0, 500.0, 0.05, |v| v.to_string()).verdict(),
            "FAIL"
        );
        assert_eq!(
            Figure::between("x", 60.0, 40.0, 60.0, |v| v.to_string()).verdict(),
            "pass"
        );
        assert_eq!(
            Figure::between("x", 39.9, 40.0, 60.0, |v| v.to_string()).verdict(),
            "FAIL"
        );
    }

    #[test]
    fn the_plot_is_an_svg_with_one_line() {
        let svg = Timeline {
            points: vec![(0.0, 0), (1.0, 50)],
        }
        .to_svg("t");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 1);
    }
}
