//! The dashboard's traffic chart as an inline SVG, drawn on the server: no script, no
//! library and nothing fetched, so it works offline and without JavaScript. Two panels share
//! the time axis: gateway results per minute (sent, failed) above, the backlog (recipients
//! waiting) below, each with its own scale, since a backlog of 100,000 would flatten a rate
//! of 120 a minute to nothing.
//!
//! Everything written into the SVG is a number or a label built here (times, figures), and
//! the one free text (the time zone's name) is escaped, so the template may mark it safe.

use std::fmt::Write;

use chrono::{DateTime, Duration, DurationRound, Utc};

use crate::view::DisplayTz;
use smsgate_core::history::repo::{BacklogMinute, TrafficMinute};

const WIDTH: f64 = 760.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 12.0;
const PANEL_HEIGHT: f64 = 110.0;
const TOP: f64 = 30.0;
const GAP: f64 = 34.0;
const AXIS_LABELS: f64 = 22.0;

/// The chart's input: one value per minute from `start`, `minutes` long.
#[derive(Debug, Clone, PartialEq)]
pub struct TrafficSeries {
    pub start: DateTime<Utc>,
    pub minutes: usize,
    pub sent: Vec<i64>,
    pub failed: Vec<i64>,
    /// `None` where the releaser took no sample (it was not running).
    pub backlog: Vec<Option<i64>>,
}

impl TrafficSeries {
    /// Lays rows out on the minutes of the `minutes` long window that ends at `now`'s
    /// minute: a minute without a results row had no results, one without a backlog row
    /// is a gap.
    pub fn from_rows(
        now: DateTime<Utc>,
        minutes: usize,
        results: &[TrafficMinute],
        backlog: &[BacklogMinute],
    ) -> TrafficSeries {
        let end = now.duration_trunc(Duration::minutes(1)).unwrap_or(now);
        let start = end - Duration::minutes(minutes as i64 - 1);
        let slot = |at: DateTime<Utc>| {
            let index = (at - start).num_minutes();
            (0..minutes as i64)
                .contains(&index)
                .then_some(index as usize)
        };
        let mut series = TrafficSeries {
            start,
            minutes,
            sent: vec![0; minutes],
            failed: vec![0; minutes],
            backlog: vec![None; minutes],
        };
        for row in results {
            if let Some(i) = slot(row.minute) {
                series.sent[i] += row.sent;
                series.failed[i] += row.failed;
            }
        }
        for row in backlog {
            if let Some(i) = slot(row.minute) {
                series.backlog[i] = Some(row.pending);
            }
        }
        series
    }

    /// True when nothing happened: no result and nothing waiting all along (an idle
    /// releaser samples a backlog of 0 every minute, which is no traffic either).
    pub fn is_empty(&self) -> bool {
        self.sent.iter().chain(&self.failed).all(|v| *v == 0)
            && self.backlog.iter().all(|v| v.unwrap_or(0) == 0)
    }
}

/// The smallest 1, 2 or 5 × 10ⁿ at or above `max` (at least 1): a scale whose halves are
/// round numbers.
pub fn nice_ceiling(max: i64) -> i64 {
    let max = max.max(1);
    let mut step = 1i64;
    loop {
        for m in [1, 2, 5] {
            if let Some(v) = step.checked_mul(m) {
                if v >= max {
                    return v;
                }
            }
        }
        match step.checked_mul(10) {
            Some(next) => step = next,
            None => return max,
        }
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `12 345` style thousands for axis labels.
fn figure(n: i64) -> String {
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('\u{202f}');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

struct Panel {
    top: f64,
    ceiling: i64,
}

impl Panel {
    fn y(&self, value: i64) -> f64 {
        self.top + PANEL_HEIGHT - (value as f64 / self.ceiling as f64) * PANEL_HEIGHT
    }
}

fn x(series: &TrafficSeries, index: usize) -> f64 {
    let span = (series.minutes.max(2) - 1) as f64;
    LEFT + (WIDTH - LEFT - RIGHT) * index as f64 / span
}

/// Polyline paths for a series; `None` values break the line.
fn path(
    series: &TrafficSeries,
    panel: &Panel,
    values: impl Iterator<Item = Option<i64>>,
) -> String {
    let mut d = String::new();
    let mut pen_down = false;
    for (i, value) in values.enumerate() {
        match value {
            Some(v) => {
                let command = if pen_down { 'L' } else { 'M' };
                let _ = write!(d, "{command}{:.1} {:.1}", x(series, i), panel.y(v));
                pen_down = true;
            }
            None => pen_down = false,
        }
    }
    d
}

fn frame(svg: &mut String, panel: &Panel, title: &str) {
    let bottom = panel.top + PANEL_HEIGHT;
    let _ = write!(
        svg,
        r##"<text x="{LEFT}" y="{:.1}" class="chart-title">{}</text>"##,
        panel.top - 6.0,
        escape(title)
    );
    for (value, y) in [
        (0, bottom),
        (panel.ceiling / 2, panel.top + PANEL_HEIGHT / 2.0),
        (panel.ceiling, panel.top),
    ] {
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" class="chart-grid"/><text x="{:.1}" y="{:.1}" text-anchor="end" class="chart-label">{}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            figure(value)
        );
    }
}

/// The chart as an `<svg>` element, its times labelled in `tz`.
pub fn render(series: &TrafficSeries, tz: &DisplayTz) -> String {
    let sends = Panel {
        top: TOP,
        ceiling: nice_ceiling(
            series
                .sent
                .iter()
                .chain(&series.failed)
                .copied()
                .max()
                .unwrap_or(0),
        ),
    };
    let backlog = Panel {
        top: TOP + PANEL_HEIGHT + GAP,
        ceiling: nice_ceiling(series.backlog.iter().flatten().copied().max().unwrap_or(0)),
    };
    let height = backlog.top + PANEL_HEIGHT + AXIS_LABELS;
    let hours = series.minutes as f64 / 60.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" class="chart" role="img" aria-labelledby="chart-desc" data-testid="traffic-chart"><desc id="chart-desc">Gateway results per minute (sent, failed) and recipients waiting, over the last {hours:.0} hours, times in {}</desc>"##,
        escape(tz.name())
    );
    // Legend.
    let mut lx = LEFT;
    for (class, label) in [
        ("chart-sent", "Sent / min"),
        ("chart-failed", "Failed / min"),
        ("chart-backlog", "Waiting"),
    ] {
        let _ = write!(
            svg,
            r##"<line x1="{lx:.1}" x2="{:.1}" y1="8" y2="8" class="{class}"/><text x="{:.1}" y="12" class="chart-label">{label}</text>"##,
            lx + 18.0,
            lx + 23.0
        );
        lx += 110.0;
    }
    frame(&mut svg, &sends, "Results per minute");
    frame(&mut svg, &backlog, "Recipients waiting");
    // Time labels under the lower panel: the window's start, quarters and end.
    let bottom = backlog.top + PANEL_HEIGHT;
    for quarter in 0..=4usize {
        let index = (series.minutes.saturating_sub(1)) * quarter / 4;
        let at = series.start + Duration::minutes(index as i64);
        let anchor = match quarter {
            0 => "start",
            4 => "end",
            _ => "middle",
        };
        let label = at.with_timezone(&tz.0).format("%H:%M").to_string();
        let _ = write!(
            svg,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{:.1}" y2="{:.1}" class="chart-grid"/><text x="{x:.1}" y="{:.1}" text-anchor="{anchor}" class="chart-label">{label}</text>"##,
            sends.top,
            bottom,
            bottom + 16.0,
            x = x(series, index)
        );
    }
    if series.is_empty() {
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" class="chart-note" data-testid="chart-empty">No traffic in the last {hours:.0} hours.</text>"##,
            (LEFT + WIDTH - RIGHT) / 2.0,
            sends.top + PANEL_HEIGHT / 2.0
        );
    } else {
        for (class, d) in [
            (
                "chart-sent",
                path(series, &sends, series.sent.iter().map(|v| Some(*v))),
            ),
            (
                "chart-failed",
                path(series, &sends, series.failed.iter().map(|v| Some(*v))),
            ),
            (
                "chart-backlog",
                path(series, &backlog, series.backlog.iter().copied()),
            ),
        ] {
            if !d.is_empty() {
                let _ = write!(svg, r##"<path d="{d}" class="{class}" fill="none"/>"##);
            }
        }
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn scales_end_on_round_numbers() {
        assert_eq!(nice_ceiling(0), 1);
        assert_eq!(nice_ceiling(1), 1);
        assert_eq!(nice_ceiling(3), 5);
        assert_eq!(nice_ceiling(7), 10);
        assert_eq!(nice_ceiling(120), 200);
        assert_eq!(nice_ceiling(100_001), 200_000);
        assert_eq!(nice_ceiling(i64::MAX), i64::MAX);
    }

    #[test]
    fn rows_land_on_their_minutes_and_outsiders_are_dropped() {
        let now = at("2026-12-06T10:00:30Z");
        let results = [
            TrafficMinute {
                minute: at("2026-12-06T09:58:00Z"),
                sent: 5,
                failed: 1,
            },
            TrafficMinute {
                minute: at("2026-12-06T08:00:00Z"),
                sent: 99,
                failed: 0,
            },
        ];
        let backlog = [BacklogMinute {
            minute: at("2026-12-06T10:00:00Z"),
            pending: 40,
        }];
        let s = TrafficSeries::from_rows(now, 3, &results, &backlog);
        assert_eq!(s.start, at("2026-12-06T09:58:00Z"));
        assert_eq!(s.sent, vec![5, 0, 0]);
        assert_eq!(s.failed, vec![1, 0, 0]);
        assert_eq!(s.backlog, vec![None, None, Some(40)]);
        assert!(!s.is_empty());
    }

    #[test]
    fn an_empty_window_renders_axes_and_a_note() {
        let idle = [BacklogMinute {
            minute: at("2026-12-06T09:59:00Z"),
            pending: 0,
        }];
        let s = TrafficSeries::from_rows(at("2026-12-06T10:00:00Z"), 1440, &[], &idle);
        assert!(s.is_empty());
        let svg = render(&s, &DisplayTz::default());
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("No traffic in the last 24 hours."));
        assert!(!svg.contains("<path"));
        // The window ends at 18:00 Hong Kong time and starts 23 h 59 min before.
        assert!(svg.contains(">18:00<") && svg.contains(">18:01<"), "{svg}");
    }

    #[test]
    fn data_draws_three_series_with_a_legend_and_gaps_break_the_backlog_line() {
        let now = at("2026-12-06T10:04:00Z");
        let results: Vec<TrafficMinute> = (0..5)
            .map(|m| TrafficMinute {
                minute: at("2026-12-06T10:00:00Z") + Duration::minutes(m),
                sent: 100 + m,
                failed: m,
            })
            .collect();
        let backlog = [
            BacklogMinute {
                minute: at("2026-12-06T10:00:00Z"),
                pending: 900,
            },
            BacklogMinute {
                minute: at("2026-12-06T10:01:00Z"),
                pending: 800,
            },
            BacklogMinute {
                minute: at("2026-12-06T10:04:00Z"),
                pending: 100,
            },
        ];
        let svg = render(
            &TrafficSeries::from_rows(now, 5, &results, &backlog),
            &DisplayTz::default(),
        );
        for class in ["chart-sent", "chart-failed", "chart-backlog"] {
            assert!(
                svg.contains(&format!(r#"class="{class}" fill="none""#)),
                "{class}"
            );
        }
        assert!(svg.contains("Sent / min") && svg.contains("Waiting"));
        // Scales: 104 a minute rounds to 200, 900 waiting to 1 000.
        assert!(
            svg.contains(">200<") && svg.contains(">1\u{202f}000<"),
            "{svg}"
        );
        let backlog_path = svg
            .split(r#"class="chart-backlog" fill="none""#)
            .next()
            .and_then(|s| s.rsplit("<path d=\"").next())
            .unwrap();
        assert_eq!(backlog_path.matches('M').count(), 2, "{backlog_path}");
        assert!(!svg.contains("No traffic"));
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(escape("<a&\"b>"), "&lt;a&amp;&quot;b&gt;");
    }
}
