//! `make bench-curves`: how each cost grows with the work, drawn as PNGs.
//!
//! `crates/bench/curves.sh` runs every point of every curve as a scenario
//! named `curve-<curve>-<x>` (e.g. `curve-history-10000`: the history curve
//! at 10,000 messages), once per backend label, into a results file; this
//! module reads that file (`chat-bench --plot FILE --plot-dir DIR`) and
//! draws one PNG per [`FIGURES`] entry, one line per label.
//!
//! Text needs a TrueType font, read at run time (plotters' `ab_glyph`
//! backend: no fontconfig, no C library): `CHAT_BENCH_FONT`, or Debian's
//! DejaVu Sans (`fonts-dejavu-core`).

use std::path::{Path, PathBuf};

use plotters::prelude::*;
use serde_json::Value;

/// The font plotters draws text with, registered under this family name.
const FAMILY: &str = "sans-serif";

/// Where Debian's `fonts-dejavu-core` puts DejaVu Sans.
const DEJAVU: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Each picture's size in pixels.
const SIZE: (u32, u32) = (900, 560);

/// One picture: a figure of one curve's runs against the curve's `x`.
#[derive(Debug, Clone, Copy)]
pub struct Figure {
    /// The PNG's file name.
    pub file: &'static str,
    /// The runs drawn: those named `curve-<curve>-<x>`.
    pub curve: &'static str,
    /// The report figure on the y axis (a key of the report's `metrics`).
    pub metric: &'static str,
    pub title: &'static str,
    pub x_desc: &'static str,
    pub y_desc: &'static str,
    /// Logarithmic axes, for work that grows by factors of ten.
    pub log_x: bool,
    pub log_y: bool,
}

/// Every picture `make bench-curves` draws.
pub const FIGURES: &[Figure] = &[
    Figure {
        file: "sockets-throughput.png",
        curve: "sockets",
        metric: "delivered_per_s",
        title: "Closed loop: messages delivered per second",
        x_desc: "sockets (two per chat, each sending its next message on its echo)",
        y_desc: "delivered msg/s",
        log_x: true,
        log_y: false,
    },
    Figure {
        file: "sockets-p99.png",
        curve: "sockets",
        metric: "latency_p99_ms",
        title: "Closed loop: end-to-end latency p99",
        x_desc: "sockets (two per chat)",
        y_desc: "p99 ms (send to the peer's delivery)",
        log_x: true,
        log_y: true,
    },
    Figure {
        file: "rss-sockets.png",
        curve: "rss",
        metric: "server_rss_peak_mb",
        title: "Server memory against open sockets (each sending a message every 10 s)",
        x_desc: "open sockets",
        y_desc: "server RSS peak, MB",
        log_x: false,
        log_y: false,
    },
    Figure {
        file: "history-replay.png",
        curve: "history",
        metric: "replay_p99_ms",
        title: "Seed socket: full-history replay, both participants of 4 chats at once",
        x_desc: "messages in each chat",
        y_desc: "replay p99 ms (connect to last history frame)",
        log_x: true,
        log_y: true,
    },
    Figure {
        file: "v2-catchup.png",
        curve: "catchup",
        metric: "catchup_p99_ms",
        title: "Protocol v2: catch-up after missing messages (8 sockets, 4 chats)",
        x_desc: "messages missed per chat",
        y_desc: "catch-up p99 ms (connect to caught up)",
        log_x: true,
        log_y: true,
    },
    Figure {
        file: "chat-list.png",
        curve: "chat-list",
        metric: "list_p50_ms",
        title: "GET /api/chats/: one user's chat list",
        x_desc: "chats of the user",
        y_desc: "p50 ms (to the response's last byte)",
        log_x: true,
        log_y: true,
    },
];

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error(
        "no font for the plots' text: set CHAT_BENCH_FONT to a .ttf file, or install \
         Debian's fonts-dejavu-core ({DEJAVU})"
    )]
    NoFont,
    #[error("{path}: {source}")]
    Font {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: not a TrueType font plotters can read")]
    BadFont(PathBuf),
    #[error("{file}: {message}")]
    Draw { file: PathBuf, message: String },
}

/// One label's line: `(x, y)` points sorted by `x`.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// The point of a run name: `curve-history-10000` is `("history", 10000)`.
pub fn point_of(name: &str) -> Option<(&str, f64)> {
    let (curve, x) = name.strip_prefix("curve-")?.rsplit_once('-')?;
    let x: f64 = x.parse().ok()?;
    (!curve.is_empty() && x.is_finite()).then_some((curve, x))
}

/// `metric` of every run of `curve` in the report lines `text`, one
/// series per label in the order labels first appear. A later run of the
/// same point and label replaces an earlier one; runs that failed (no such
/// figure) are left out.
pub fn series(text: &str, curve: &str, metric: &str) -> Vec<Series> {
    let mut out: Vec<Series> = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| l.starts_with('{')) {
        let Ok(run) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let Some((c, x)) = run.get("name").and_then(Value::as_str).and_then(point_of) else {
            continue;
        };
        let Some(y) = run
            .pointer(&format!("/metrics/{metric}"))
            .and_then(Value::as_f64)
        else {
            continue;
        };
        if c != curve || !y.is_finite() {
            continue;
        }
        let label = run.get("label").and_then(Value::as_str).unwrap_or("-");
        let index = match out.iter().position(|s| s.label == label) {
            Some(i) => i,
            None => {
                out.push(Series {
                    label: label.to_owned(),
                    points: Vec::new(),
                });
                out.len() - 1
            }
        };
        let points = &mut out[index].points;
        points.retain(|&(px, _)| px != x);
        points.push((x, y));
    }
    for s in &mut out {
        s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

/// The font file: `CHAT_BENCH_FONT`, or DejaVu Sans where Debian puts it.
pub fn font_path() -> Option<PathBuf> {
    match std::env::var_os("CHAT_BENCH_FONT") {
        Some(path) => Some(PathBuf::from(path)),
        None => Some(PathBuf::from(DEJAVU)).filter(|p| p.is_file()),
    }
}

/// Reads the font and gives it to plotters (once per process: the bytes
/// live as long as it does).
pub fn load_font() -> Result<(), PlotError> {
    let path = font_path().ok_or(PlotError::NoFont)?;
    let bytes = std::fs::read(&path).map_err(|source| PlotError::Font {
        path: path.clone(),
        source,
    })?;
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font(FAMILY, FontStyle::Normal, bytes)
        .map_err(|_| PlotError::BadFont(path))
}

/// Draws every figure with points in `text` into `dir`; returns the files
/// written. A figure with no points is skipped, and said so on stderr.
pub fn plot_all(text: &str, dir: &Path) -> Result<Vec<PathBuf>, PlotError> {
    load_font()?;
    let mut written = Vec::new();
    for figure in FIGURES {
        let series = series(text, figure.curve, figure.metric);
        let file = dir.join(figure.file);
        let drawable =
            |&(x, y): &(f64, f64)| (!figure.log_x || x > 0.0) && (!figure.log_y || y > 0.0);
        if !series.iter().any(|s| s.points.iter().any(drawable)) {
            eprintln!(
                "chat-bench: {}: no runs of curve-{}-* with {} that can be drawn: not drawn",
                file.display(),
                figure.curve,
                figure.metric
            );
            continue;
        }
        draw(figure, &series, &file).map_err(|message| PlotError::Draw {
            file: file.clone(),
            message,
        })?;
        written.push(file);
    }
    Ok(written)
}

/// A line's colour: the same label the same colour in every picture.
fn colour_of(label: &str) -> RGBColor {
    match label {
        "relay" => RGBColor(110, 110, 110),
        "sqlite" => RGBColor(31, 119, 180),
        "postgres" => RGBColor(214, 39, 40),
        "memory" => RGBColor(44, 160, 44),
        _ => RGBColor(148, 103, 189),
    }
}

/// A tick's text: 1000 as `1k`, 16000 as `16k`, 0.25 as `0.25`.
fn compact(v: f64) -> String {
    let trim = |s: String| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            s
        }
    };
    let a = v.abs();
    if a >= 1e6 {
        format!("{}M", trim(format!("{:.1}", v / 1e6)))
    } else if a >= 1e3 {
        format!("{}k", trim(format!("{:.1}", v / 1e3)))
    } else if a >= 10.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        trim(format!("{v:.1}"))
    } else {
        trim(format!("{v:.2}"))
    }
}

/// An axis: values mapped to where they are drawn (log10 on a log axis;
/// points that cannot be drawn there, 0 and below, are left out), and the
/// drawn range with a margin. Drawing log10 on a linear axis, with ticks
/// labelled by the value, keeps one chart type for every figure.
struct Axis {
    log: bool,
}

impl Axis {
    fn drawn_at(&self, v: f64) -> Option<f64> {
        match self.log {
            true => (v > 0.0).then(|| v.log10()),
            false => Some(v),
        }
    }

    fn value_at(&self, v: f64) -> f64 {
        if self.log {
            10f64.powf(v)
        } else {
            v
        }
    }

    fn range(&self, values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
        let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        if !lo.is_finite() {
            return 0.0..1.0;
        }
        // A linear axis starts at zero, so heights compare as ratios.
        if !self.log {
            return 0.0..(hi * 1.08).max(1e-9);
        }
        let span = (hi - lo).max(0.5);
        lo - span * 0.08..hi + span * 0.08
    }
}

fn draw(figure: &Figure, series: &[Series], file: &Path) -> Result<(), String> {
    let (x_axis, y_axis) = (Axis { log: figure.log_x }, Axis { log: figure.log_y });
    let drawn: Vec<(String, Vec<(f64, f64)>)> = series
        .iter()
        .map(|s| {
            let points = s
                .points
                .iter()
                .filter_map(|&(x, y)| Some((x_axis.drawn_at(x)?, y_axis.drawn_at(y)?)))
                .collect();
            (s.label.clone(), points)
        })
        .collect();
    let all = || drawn.iter().flat_map(|(_, p)| p.iter().copied());
    let x_range = x_axis.range(all().map(|p| p.0));
    let y_range = y_axis.range(all().map(|p| p.1));
    let error = |e: &dyn std::fmt::Display| e.to_string();

    let root = BitMapBackend::new(file, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| error(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(figure.title, (FAMILY, 22))
        .margin(16)
        .x_label_area_size(52)
        .y_label_area_size(72)
        .build_cartesian_2d(x_range, y_range)
        .map_err(|e| error(&e))?;
    let x_label = |v: &f64| compact(x_axis.value_at(*v));
    let y_label = |v: &f64| compact(y_axis.value_at(*v));
    chart
        .configure_mesh()
        .x_desc(figure.x_desc)
        .y_desc(figure.y_desc)
        .x_label_formatter(&x_label)
        .y_label_formatter(&y_label)
        .label_style((FAMILY, 15))
        .axis_desc_style((FAMILY, 16))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(|e| error(&e))?;
    for (label, points) in &drawn {
        let colour = colour_of(label);
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                colour.stroke_width(2),
            ))
            .map_err(|e| error(&e))?
            .label(label.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], colour.stroke_width(2))
            });
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 4, colour.filled())))
            .map_err(|e| error(&e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FAMILY, 16))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| error(&e))?;
    root.present().map_err(|e| error(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_names_give_their_curve_and_point() {
        assert_eq!(point_of("curve-history-10000"), Some(("history", 10000.0)));
        assert_eq!(point_of("curve-chat-list-10"), Some(("chat-list", 10.0)));
        assert_eq!(point_of("history-200"), None);
        assert_eq!(point_of("curve-history"), None);
        assert_eq!(point_of("curve--5"), None);
        assert_eq!(point_of("curve-x-many"), None);
    }

    #[test]
    fn series_are_per_label_sorted_and_the_last_run_of_a_point_wins() {
        let text = r#"# chat-bench 2026-12-07 abc1234
{"name":"curve-history-1000","label":"sqlite","metrics":{"replay_p99_ms":40.0}}
{"name":"curve-history-100","label":"sqlite","metrics":{"replay_p99_ms":5.0}}
{"name":"curve-history-100","label":"relay","metrics":{"replay_p99_ms":2.0}}
{"name":"curve-history-1000","label":"sqlite","metrics":{"replay_p99_ms":42.0}}
{"name":"curve-history-10000","label":"sqlite","error":"chat-bench exited with 124"}
{"name":"curve-sockets-1000","label":"sqlite","metrics":{"replay_p99_ms":9.0}}
{"name":"history-200","label":"sqlite","metrics":{"replay_p99_ms":700.0}}
not json
"#;
        let s = series(text, "history", "replay_p99_ms");
        assert_eq!(
            s,
            vec![
                Series {
                    label: "sqlite".into(),
                    points: vec![(100.0, 5.0), (1000.0, 42.0)]
                },
                Series {
                    label: "relay".into(),
                    points: vec![(100.0, 2.0)]
                },
            ]
        );
        assert!(series(text, "history", "nope").is_empty());
    }

    #[test]
    fn ticks_read_as_people_write_them() {
        assert_eq!(compact(16000.0), "16k");
        assert_eq!(compact(1500.0), "1.5k");
        assert_eq!(compact(2_000_000.0), "2M");
        assert_eq!(compact(250.0), "250");
        assert_eq!(compact(2.5), "2.5");
        assert_eq!(compact(0.25), "0.25");
        assert_eq!(compact(0.0), "0");
    }

    #[test]
    fn a_log_axis_leaves_out_what_it_cannot_draw() {
        let log = Axis { log: true };
        assert_eq!(log.drawn_at(1000.0), Some(3.0));
        assert_eq!(log.drawn_at(0.0), None);
        assert!((log.value_at(2.0) - 100.0).abs() < 1e-9);
        let r = log.range([2.0, 5.0].into_iter());
        assert!(r.start < 2.0 && r.end > 5.0, "{r:?}");
        let linear = Axis { log: false };
        let r = linear.range([100.0, 250.0].into_iter());
        assert!(r.start == 0.0 && r.end > 250.0, "{r:?}");
    }

    /// Draws every figure from a small results file. Needs the font; where
    /// it is missing this says so loudly and passes, unless REQUIRE_FONTS=1
    /// (which CI sets) makes the absence a failure.
    #[test]
    fn every_figure_is_drawn_as_a_png() {
        if font_path().is_none() {
            let message =
                "PLOT TEST SKIPPED: no font (install fonts-dejavu-core or set CHAT_BENCH_FONT)";
            eprintln!("\n######## {message} ########\n");
            assert_ne!(
                std::env::var("REQUIRE_FONTS").as_deref(),
                Ok("1"),
                "{message}"
            );
            return;
        }
        let mut text = String::new();
        for (label, scale) in [("relay", 1.0), ("sqlite", 2.5), ("postgres", 3.0)] {
            for x in [10.0, 100.0, 1000.0, 10000.0] {
                let metrics = serde_json::json!({
                    "delivered_per_s": 50000.0 / scale,
                    "latency_p99_ms": x / 100.0 * scale,
                    "server_rss_peak_mb": 20.0 + x * 0.02 * scale,
                    "replay_p99_ms": x / 10.0 * scale,
                    "catchup_p99_ms": 1.0 + x / 50.0 * scale,
                    "list_p50_ms": 0.1 + x / 400.0 * scale,
                });
                for curve in ["sockets", "rss", "history", "catchup", "chat-list"] {
                    let run = serde_json::json!({
                        "name": format!("curve-{curve}-{x}"), "label": label, "metrics": metrics,
                    });
                    text.push_str(&format!("{run}\n"));
                }
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let written = plot_all(&text, dir.path()).expect("the figures are drawn");
        assert_eq!(written.len(), FIGURES.len());
        for file in written {
            let bytes = std::fs::read(&file).unwrap();
            assert!(
                bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
                "{}",
                file.display()
            );
            // A drawn picture, not an empty canvas: a blank 900x560 PNG
            // compresses to well under 10 KB.
            assert!(
                bytes.len() > 10_000,
                "{}: {} bytes",
                file.display(),
                bytes.len()
            );
        }
    }
}
