//! One table from many runs: the JSON report lines of a `make bench`, one
//! row per (scenario, checked figure), one column per label (backend), each
//! value beside its target, and each label after the first compared with
//! the first (e.g. PostgreSQL against SQLite, the target being "within 2x").
//!
//! A label ending in [`BASELINE_SUFFIX`] is the same backend on an older
//! server (`sqlite-before`): its column comes right after its backend's,
//! followed by a column of how many times worse the new server is than the
//! old, the target being "no worse".
//!
//! The label [`RELAY`] is the benchmark's reference (`chat-relay`: the
//! seed API in memory, no database, no real auth): it is never the label
//! the others are compared with, and every other cell with a figure that
//! has a direction also gives its ratio to the relay's figure of the same
//! scenario in the same file ("0.44x relay": [`speed_of`]).

use std::fmt::Write as _;

use serde_json::Value;

use crate::report::{number, Expectation};

/// Labels are compared with the first label within this factor.
const WITHIN: f64 = 2.0;

/// `sqlite-before` is `sqlite` on the baseline server.
pub const BASELINE_SUFFIX: &str = "-before";

/// The relay's label (crates/bench/run.sh's backend `relay`).
pub const RELAY: &str = "relay";

/// How much worse than the baseline still counts as run-to-run noise on
/// this machine: three runs of the same closed loop spread 26,757-27,935
/// (4 %), see docs/performance.md.
const NOISE: f64 = 1.05;

#[derive(Debug, Clone)]
struct CheckResult {
    expectation: Expectation,
    value: Option<f64>,
    ratio: Option<f64>,
    met: bool,
}

#[derive(Debug, Clone)]
struct Run {
    name: String,
    label: String,
    error: Option<String>,
    /// Why the scenario was not run for this label (the relay and v2).
    skipped: Option<String>,
    checks: Vec<CheckResult>,
}

fn parse_line(line: &str) -> Option<Value> {
    let line = line.trim();
    if !line.starts_with('{') {
        return None;
    }
    serde_json::from_str(line).ok()
}

fn parse_run(line: &str) -> Option<Run> {
    let v = parse_line(line)?;
    let text = |key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
    let name = text("name").unwrap_or_else(|| {
        v.pointer("/scenario/mode")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned()
    });
    let checks = v
        .get("checks")
        .and_then(Value::as_array)
        .map(|checks| {
            checks
                .iter()
                .filter_map(|c| {
                    let expectation = Expectation {
                        metric: c.get("metric")?.as_str()?.to_owned(),
                        op: c.get("op")?.as_str()?.to_owned(),
                        target: c.get("target")?.as_f64()?,
                        relative_to: c
                            .get("relative_to")
                            .and_then(Value::as_str)
                            .map(str::to_owned),
                    };
                    Some(CheckResult {
                        expectation,
                        value: c.get("value").and_then(Value::as_f64),
                        ratio: c.get("ratio").and_then(Value::as_f64),
                        met: c.get("met").and_then(Value::as_bool).unwrap_or(false),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Some(Run {
        name,
        label: text("label").unwrap_or_else(|| "-".to_owned()),
        error: text("error"),
        skipped: text("skipped"),
        checks,
    })
}

/// Figure `metric` of the last report of `scenario` with `label` in the
/// report lines `text` (for relative targets).
pub fn reference_metric(text: &str, scenario: &str, label: &str, metric: &str) -> Option<f64> {
    // `SCENARIO:LABEL` names another label's run (the relay's).
    let (scenario, label) = scenario.split_once(':').unwrap_or((scenario, label));
    text.lines()
        .rev()
        .filter_map(parse_line)
        .find(|v| {
            v.get("name").and_then(Value::as_str) == Some(scenario)
                && v.get("label").and_then(Value::as_str).unwrap_or("-") == label
        })?
        .get("metrics")?
        .get(metric)?
        .as_f64()
}

/// How many times worse `value` is than `base` (below 1: better), for a
/// figure with a direction.
fn times_worse(e: &Expectation, base: f64, value: f64) -> Option<f64> {
    let higher = e.higher_is_better()?;
    let worse = if higher { base / value } else { value / base };
    worse.is_finite().then_some(worse)
}

/// `value` as a fraction of the relay's speed `relay` for a figure with a
/// direction: throughput over the relay's, the relay's time over this
/// time. 1 is the wire's speed; 0.44 is 44 % of it.
fn speed_of(e: &Expectation, relay: f64, value: f64) -> Option<f64> {
    let higher = e.higher_is_better()?;
    let speed = if higher { value / relay } else { relay / value };
    (speed.is_finite() && speed >= 0.0).then_some(speed)
}

/// One column of the table.
enum Column<'a> {
    Label(&'a str),
    /// `base` against `before`: how many times worse the new server is.
    VersusBefore {
        base: &'a str,
        before: &'a str,
    },
}

/// The baseline comparison's tally for one backend.
#[derive(Default)]
struct Versus {
    no_worse: usize,
    noise: usize,
    worse: Vec<String>,
}

/// The summary of the report lines in `text` (other lines are skipped).
pub fn summarize(text: &str) -> String {
    let runs: Vec<Run> = text.lines().filter_map(parse_run).collect();
    let mut labels: Vec<&str> = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for run in &runs {
        if !labels.contains(&run.label.as_str()) {
            labels.push(&run.label);
        }
        if !names.contains(&run.name.as_str()) {
            names.push(&run.name);
        }
    }
    let base_of = |label: &str| {
        label
            .strip_suffix(BASELINE_SUFFIX)
            .filter(|base| labels.contains(base))
            .map(str::to_owned)
    };
    let is_baseline = |label: &str| base_of(label).is_some();
    let mut columns: Vec<Column<'_>> = Vec::new();
    for &label in &labels {
        if is_baseline(label) {
            continue;
        }
        columns.push(Column::Label(label));
        if let Some(&before) = labels.iter().find(|l| base_of(l).as_deref() == Some(label)) {
            columns.push(Column::Label(before));
            columns.push(Column::VersusBefore {
                base: label,
                before,
            });
        }
    }
    // The label every other (non-baseline) label is compared with: never
    // the relay, which is the reference of a different kind.
    let first = labels
        .iter()
        .copied()
        .find(|l| !is_baseline(l) && *l != RELAY);
    let has_relay = labels.contains(&RELAY);
    let mut relay_ratios = 0;
    let find = |name: &str, label: &str| runs.iter().find(|r| r.name == name && r.label == label);

    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut header = vec![
        "scenario".to_owned(),
        "figure".to_owned(),
        "target".to_owned(),
    ];
    header.extend(columns.iter().map(|c| match c {
        Column::Label(l) => (*l).to_owned(),
        Column::VersusBefore { base, .. } => format!("{base} vs before"),
    }));
    rows.push(header);
    // Per label: (within WITHIN of the first, compared).
    let mut within: Vec<(&str, usize, usize)> = Vec::new();
    let mut versus: Vec<(&str, &str, Versus)> = Vec::new();
    for name in &names {
        // One row per figure checked in any label's run of this scenario,
        // whatever its target there: a backend may be allowed more than
        // another (PostgreSQL's), and the relay only shows the figures the
        // others are held to against it. The row's target is the first
        // backend's; a cell held to another says so.
        let mut expectations: Vec<&Expectation> = Vec::new();
        let relay_last = labels
            .iter()
            .filter(|l| **l != RELAY)
            .chain(labels.iter().filter(|l| **l == RELAY));
        for label in relay_last {
            if let Some(run) = find(name, label) {
                for c in &run.checks {
                    match expectations
                        .iter()
                        .position(|e| e.metric == c.expectation.metric)
                    {
                        None => expectations.push(&c.expectation),
                        // A target, where the first seen only showed it.
                        Some(at) if expectations[at].is_show() && !c.expectation.is_show() => {
                            expectations[at] = &c.expectation;
                        }
                        Some(_) => {}
                    }
                }
            }
        }
        if expectations.is_empty() {
            let mut row = vec![(*name).to_owned(), "-".to_owned(), "-".to_owned()];
            for column in &columns {
                row.push(match column {
                    Column::Label(label) => match find(name, label) {
                        Some(Run { error: Some(e), .. }) => format!("failed: {e}"),
                        Some(Run {
                            skipped: Some(_), ..
                        }) => "skipped".to_owned(),
                        Some(_) => "ran".to_owned(),
                        None => "-".to_owned(),
                    },
                    Column::VersusBefore { .. } => String::new(),
                });
            }
            rows.push(row);
            continue;
        }
        for (i, e) in expectations.iter().enumerate() {
            let mut row = vec![
                if i == 0 {
                    (*name).to_owned()
                } else {
                    String::new()
                },
                e.metric.clone(),
                e.target_text(),
            ];
            let check_of = |label: &str| {
                find(name, label)
                    .and_then(|r| r.checks.iter().find(|c| c.expectation.metric == e.metric))
            };
            let value_of = |label: &str| check_of(label).and_then(|c| c.value);
            let baseline = first.and_then(value_of);
            let relay = value_of(RELAY);
            for column in &columns {
                let cell = match column {
                    Column::Label(label) => {
                        let compare =
                            Some(*label) != first && !is_baseline(label) && *label != RELAY;
                        match (find(name, label), check_of(label)) {
                            (
                                Some(Run {
                                    error: Some(err), ..
                                }),
                                _,
                            ) => format!("failed: {err}"),
                            (
                                Some(Run {
                                    skipped: Some(_), ..
                                }),
                                _,
                            ) => "skipped".to_owned(),
                            (_, Some(c)) if c.value.is_some() => {
                                let value = c.value.unwrap_or_default();
                                let mut cell = number(value);
                                if let Some(ratio) = c.ratio {
                                    let _ = write!(cell, " ({}x)", number(ratio));
                                }
                                if !c.expectation.is_show() {
                                    cell.push_str(if c.met { " ok" } else { " MISSED" });
                                    if c.expectation != **e {
                                        let _ = write!(cell, " ({})", c.expectation.target_text());
                                    }
                                }
                                let worse = baseline.and_then(|b| times_worse(e, b, value));
                                if let (true, Some(worse)) = (compare, worse) {
                                    let _ = write!(cell, " ({worse:.2}x)");
                                    let entry = match within.iter().position(|w| w.0 == *label) {
                                        Some(at) => &mut within[at],
                                        None => {
                                            within.push((label, 0, 0));
                                            let last = within.len() - 1;
                                            &mut within[last]
                                        }
                                    };
                                    entry.2 += 1;
                                    if worse <= WITHIN {
                                        entry.1 += 1;
                                    }
                                }
                                let speed = relay.and_then(|r| speed_of(e, r, value));
                                if let (false, Some(speed)) = (*label == RELAY, speed) {
                                    let _ = write!(cell, ", {speed:.2}x relay");
                                    relay_ratios += 1;
                                }
                                cell
                            }
                            (Some(_), _) => "n/a".to_owned(),
                            (None, _) => "-".to_owned(),
                        }
                    }
                    Column::VersusBefore { base, before } => {
                        match value_of(base).zip(value_of(before)) {
                            Some((new, old)) => match times_worse(e, old, new) {
                                Some(worse) => {
                                    let entry = match versus.iter().position(|v| v.0 == *base) {
                                        Some(at) => &mut versus[at].2,
                                        None => {
                                            versus.push((base, before, Versus::default()));
                                            let last = versus.len() - 1;
                                            &mut versus[last].2
                                        }
                                    };
                                    let verdict = if worse <= 1.0 {
                                        entry.no_worse += 1;
                                        "ok"
                                    } else if worse <= NOISE {
                                        entry.noise += 1;
                                        "noise"
                                    } else {
                                        entry
                                            .worse
                                            .push(format!("{name} {} {worse:.2}x", e.metric));
                                        "WORSE"
                                    };
                                    format!("{worse:.2}x {verdict}")
                                }
                                None => String::new(),
                            },
                            None => String::new(),
                        }
                    }
                };
                row.push(cell);
            }
            rows.push(row);
        }
    }

    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            let _ = writeln!(out, "{}", rule.join("  "));
        }
    }
    if let Some(first) = first {
        for (label, ok, of) in &within {
            if *of > 0 {
                let _ = writeln!(
                    out,
                    "{label} vs {first}: {ok} of {of} figures within {WITHIN}x \
                     ((Nx) = how many times worse than {first}; below 1 is better)"
                );
            }
        }
    }
    if has_relay {
        let _ = writeln!(
            out,
            "relay: {relay_ratios} figure{} against it (Nx relay = the figure as a fraction of \
             the relay's speed in this run: throughput / the relay's, the relay's time / this \
             time; 1 = the wire's speed)",
            if relay_ratios == 1 { "" } else { "s" }
        );
        // The scenarios it could not serve, grouped by why.
        let mut skipped: Vec<(&str, Vec<&str>)> = Vec::new();
        for run in runs.iter().filter(|r| r.label == RELAY) {
            if let Some(why) = run.skipped.as_deref() {
                match skipped.iter_mut().find(|(w, _)| *w == why) {
                    Some((_, names)) => names.push(&run.name),
                    None => skipped.push((why, vec![&run.name])),
                }
            }
        }
        for (why, names) in skipped {
            let _ = writeln!(out, "relay skipped {}: {why}", names.join(", "));
        }
    }
    for (base, before, v) in &versus {
        let of = v.no_worse + v.noise + v.worse.len();
        let mut text = format!(
            "{base} vs {before}: {} of {of} figures no worse, {} within {:.0} % (run-to-run noise), {} worse",
            v.no_worse,
            v.noise,
            (NOISE - 1.0) * 100.0,
            v.worse.len()
        );
        if !v.worse.is_empty() {
            let _ = write!(text, ": {}", v.worse.join(", "));
        }
        let _ = writeln!(
            out,
            "{text} ((Nx) = how many times worse than {before}; 1 or below is no worse)"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(name: &str, label: &str, value: f64, met: bool) -> String {
        serde_json::json!({
            "name": name, "label": label,
            "checks": [
                {"metric": "delivered_per_s", "op": ">=", "target": 27000.0, "value": value, "met": met},
                {"metric": "lost", "op": "==", "target": 0.0, "value": 0.0, "met": true},
            ]
        })
        .to_string()
    }

    #[test]
    fn runs_line_up_by_scenario_and_label() {
        let text = [
            "chat-bench closed loop: ... (a table line, skipped)".to_owned(),
            line("closed-500", "sqlite", 30000.0, true),
            line("closed-500", "postgres", 10000.0, false),
            r#"{"name": "history-200", "label": "postgres", "error": "server did not start"}"#
                .to_owned(),
        ]
        .join("\n");
        let table = summarize(&text);
        assert!(table.contains("30000 ok"), "{table}");
        assert!(table.contains("10000 MISSED (3.00x)"), "{table}");
        assert!(table.contains("failed: server did not start"), "{table}");
        assert!(
            table.contains("postgres vs sqlite: 0 of 1 figures within 2x"),
            "{table}"
        );
    }

    #[test]
    fn a_baseline_label_sits_beside_its_backend_with_how_much_worse_the_new_one_is() {
        let text = [
            line("closed-500", "sqlite", 27000.0, true),
            line("closed-500", "memory", 54000.0, true),
            line("closed-500", "sqlite-before", 30000.0, true),
            line("rate", "sqlite", 10.0, false),
            line("rate", "sqlite-before", 10.2, false),
        ]
        .join("\n");
        let table = summarize(&text);
        let header = table.lines().next().unwrap();
        let at = |word: &str| header.find(word).unwrap();
        assert!(
            at("sqlite ") < at("sqlite-before") && at("sqlite-before") < at("sqlite vs before")
        );
        assert!(at("sqlite vs before") < at("memory"), "{table}");
        // 30,000 before, 27,000 now: 1.11x worse. 10.2 before, 10 now: noise.
        assert!(table.contains("1.11x WORSE"), "{table}");
        assert!(table.contains("1.02x noise"), "{table}");
        // The baseline is not compared with the first label.
        assert!(table.contains("memory vs sqlite: 1 of 1"), "{table}");
        assert!(!table.contains("sqlite-before vs sqlite:"), "{table}");
        assert!(
            table.contains("sqlite vs sqlite-before: 0 of 2 figures no worse, 1 within 5 % (run-to-run noise), 1 worse: closed-500 delivered_per_s 1.11x"),
            "{table}"
        );
    }

    /// issue 12's targets: against the relay's run, PostgreSQL allowed
    /// more. One row per figure still, the relay's shown figure in it.
    #[test]
    fn targets_that_differ_by_label_share_one_row_and_each_cell_says_its_own() {
        let run = |label: &str, check: serde_json::Value| {
            serde_json::json!({"name": "closed-500", "label": label, "checks": [check]}).to_string()
        };
        let relative = |factor: f64, value: f64, ratio: f64| {
            serde_json::json!({"metric": "delivered_per_s", "op": ">=", "target": factor,
                "relative_to": "closed-500:relay", "value": value, "reference_value": 40000.0,
                "ratio": ratio, "met": ratio >= factor})
        };
        let text = [
            run(
                "relay",
                serde_json::json!({"metric": "delivered_per_s", "op": "show", "target": 0.0,
                    "value": 40000.0, "met": true}),
            ),
            run("sqlite", relative(0.6, 28000.0, 0.7)),
            run("postgres", relative(0.5, 22000.0, 0.55)),
        ]
        .join("\n");
        let table = summarize(&text);
        let rows: Vec<&str> = table
            .lines()
            .filter(|l| l.contains("delivered_per_s"))
            .collect();
        assert_eq!(rows.len(), 1, "{table}");
        let row = rows[0];
        assert!(row.contains(">= 0.600x closed-500:relay"), "{table}");
        assert!(row.contains("40000"), "the relay's figure: {table}");
        assert!(row.contains("28000 (0.700x) ok, 0.70x relay"), "{table}");
        assert!(
            row.contains("22000 (0.550x) ok (>= 0.500x closed-500:relay)"),
            "{table}"
        );
        assert!(table.contains("postgres vs sqlite: 1 of 1"), "{table}");
    }

    #[test]
    fn every_other_cell_gives_its_ratio_to_the_relay_which_is_never_the_base() {
        let latency = |name: &str, label: &str, value: f64| {
            serde_json::json!({
                "name": name, "label": label,
                "checks": [
                    {"metric": "latency_p99_ms", "op": "<=", "target": 25.0, "value": value, "met": value <= 25.0},
                    {"metric": "lost", "op": "==", "target": 0.0, "value": 0.0, "met": true},
                ]
            })
            .to_string()
        };
        let text = [
            line("closed-500", "relay", 60000.0, true),
            line("closed-500", "sqlite", 30000.0, true),
            line("closed-500", "postgres", 15000.0, false),
            line("closed-500", "sqlite-before", 30000.0, true),
            latency("rate-1000x10", "relay", 2.0),
            latency("rate-1000x10", "sqlite", 8.0),
            r#"{"name": "v2-closed-500", "label": "relay", "skipped": "no v2"}"#.to_owned(),
            line("v2-closed-500", "sqlite", 20000.0, true),
        ]
        .join("\n");
        let table = summarize(&text);
        let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(header[3..5], ["relay", "sqlite"], "{table}");
        // Throughput: this over the relay's; times: the relay's over this.
        assert!(table.contains("30000 ok, 0.50x relay"), "{table}");
        assert!(
            table.contains("15000 MISSED (2.00x), 0.25x relay"),
            "{table}"
        );
        assert!(table.contains("8 ok, 0.25x relay"), "{table}");
        // The baseline gets one too; the relay's own cell and counts none.
        assert_eq!(table.matches("0.50x relay").count(), 2, "{table}");
        let relay_cell = table.lines().nth(2).unwrap();
        assert!(relay_cell.contains("60000 ok  "), "{table}");
        let counts = table.lines().filter(|l| l.contains(" lost "));
        assert!(
            counts.clone().count() == 3 && counts.clone().all(|l| !l.contains("x relay")),
            "{table}"
        );
        // PostgreSQL is still compared with SQLite, not with the relay.
        assert!(table.contains("postgres vs sqlite: 1 of 1"), "{table}");
        assert!(!table.contains("vs relay"), "{table}");
        let v2 = table
            .lines()
            .find(|l| l.starts_with("v2-closed-500"))
            .unwrap();
        assert!(v2.contains("skipped") && !v2.contains("x relay"), "{table}");
        assert!(table.contains("relay: 4 figures against it"), "{table}");
        assert!(
            table.contains("relay skipped v2-closed-500: no v2"),
            "{table}"
        );
        // Without a relay, nothing of it.
        let table = summarize(&line("closed-500", "sqlite", 30000.0, true));
        assert!(!table.contains("relay"), "{table}");
    }

    #[test]
    fn relative_and_shown_figures_read_well_and_references_are_found() {
        let run = serde_json::json!({
            "name": "v2-rate-typing", "label": "sqlite",
            "checks": [
                {"metric": "latency_p99_ms", "op": "<=", "target": 1.2, "relative_to": "v2-rate",
                 "value": 13.0, "reference_value": 12.0, "ratio": 1.0833, "met": true},
                {"metric": "typing_events", "op": "show", "target": 0.0, "value": 2000.0, "met": true},
            ],
            "metrics": {"latency_p99_ms": 13.0}
        })
        .to_string();
        let table = summarize(&run);
        assert!(table.contains("<= 1.20x v2-rate"), "{table}");
        assert!(table.contains("13 (1.08x) ok"), "{table}");
        let shown: Vec<&str> = table
            .lines()
            .find(|l| l.contains("typing_events"))
            .unwrap()
            .split_whitespace()
            .collect();
        // No target, no verdict.
        assert_eq!(shown, ["typing_events", "-", "2000"], "{table}");
        let older = run.replace("13.0}", "11.0}");
        let text = format!("# a comment\n{older}\nnot json\n{run}\n");
        assert_eq!(
            reference_metric(&text, "v2-rate-typing", "sqlite", "latency_p99_ms"),
            Some(13.0)
        );
        assert_eq!(
            reference_metric(&text, "v2-rate-typing", "memory", "latency_p99_ms"),
            None
        );
        assert_eq!(
            reference_metric(&text, "v2-rate-typing", "sqlite", "nope"),
            None
        );
        // Another label's run, named after the scenario.
        assert_eq!(
            reference_metric(&text, "v2-rate-typing:sqlite", "memory", "latency_p99_ms"),
            Some(13.0)
        );
        assert_eq!(
            reference_metric(&text, "v2-rate-typing:relay", "sqlite", "latency_p99_ms"),
            None
        );
    }
}
