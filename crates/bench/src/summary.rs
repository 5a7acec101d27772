//! One table from many runs: the JSON report lines of a `make bench`, one
//! row per (scenario, checked figure), one column per label (backend), each
//! value beside its target, and each label after the first compared with
//! the first (e.g. PostgreSQL against SQLite, the target being "within 2x").

use std::fmt::Write as _;

use serde_json::Value;

use crate::report::{number, Expectation};

/// Labels are compared with the first label within this factor.
const WITHIN: f64 = 2.0;

#[derive(Debug, Clone)]
struct Run {
    name: String,
    label: String,
    error: Option<String>,
    checks: Vec<(Expectation, Option<f64>, bool)>,
}

fn parse_run(line: &str) -> Option<Run> {
    let v: Value = serde_json::from_str(line.trim()).ok()?;
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
                    let e = Expectation {
                        metric: c.get("metric")?.as_str()?.to_owned(),
                        op: c.get("op")?.as_str()?.to_owned(),
                        target: c.get("target")?.as_f64()?,
                    };
                    let met = c.get("met").and_then(Value::as_bool).unwrap_or(false);
                    Some((e, c.get("value").and_then(Value::as_f64), met))
                })
                .collect()
        })
        .unwrap_or_default();
    Some(Run {
        name,
        label: text("label").unwrap_or_else(|| "-".to_owned()),
        error: text("error"),
        checks,
    })
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
    let find = |name: &str, label: &str| runs.iter().find(|r| r.name == name && r.label == label);

    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut header = vec![
        "scenario".to_owned(),
        "figure".to_owned(),
        "target".to_owned(),
    ];
    header.extend(labels.iter().map(|l| (*l).to_owned()));
    rows.push(header);
    // Per label after the first: (within WITHIN of the first, compared).
    let mut within: Vec<(usize, usize)> = vec![(0, 0); labels.len()];
    for name in &names {
        // Every figure checked in any label's run of this scenario.
        let mut expectations: Vec<&Expectation> = Vec::new();
        for label in &labels {
            if let Some(run) = find(name, label) {
                for (e, _, _) in &run.checks {
                    if !expectations.contains(&e) {
                        expectations.push(e);
                    }
                }
            }
        }
        if expectations.is_empty() {
            let mut row = vec![(*name).to_owned(), "-".to_owned(), "-".to_owned()];
            for label in &labels {
                row.push(match find(name, label) {
                    Some(Run { error: Some(e), .. }) => format!("failed: {e}"),
                    Some(_) => "ran".to_owned(),
                    None => "-".to_owned(),
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
                format!("{} {}", e.op, number(e.target)),
            ];
            let value_of = |label: &str| {
                find(name, label).and_then(|r| {
                    r.checks
                        .iter()
                        .find(|(x, _, _)| x == *e)
                        .map(|(_, value, met)| (*value, *met))
                })
            };
            let baseline = labels
                .first()
                .and_then(|l| value_of(l))
                .and_then(|(v, _)| v);
            for (col, label) in labels.iter().enumerate() {
                let cell = match (find(name, label), value_of(label)) {
                    (
                        Some(Run {
                            error: Some(err), ..
                        }),
                        _,
                    ) => format!("failed: {err}"),
                    (_, Some((Some(value), met))) => {
                        let mut cell =
                            format!("{} {}", number(value), if met { "ok" } else { "MISSED" });
                        if col > 0 {
                            if let (Some(base), Some(higher)) = (baseline, e.higher_is_better()) {
                                let worse = if higher { base / value } else { value / base };
                                if worse.is_finite() {
                                    let _ = write!(cell, " ({worse:.2}x)");
                                    within[col].1 += 1;
                                    if worse <= WITHIN {
                                        within[col].0 += 1;
                                    }
                                }
                            }
                        }
                        cell
                    }
                    (Some(_), _) => "n/a".to_owned(),
                    (None, _) => "-".to_owned(),
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
    if let Some(first) = labels.first() {
        for (col, label) in labels.iter().enumerate().skip(1) {
            let (ok, of) = within[col];
            if of > 0 {
                let _ = writeln!(
                    out,
                    "{label} vs {first}: {ok} of {of} figures within {WITHIN}x \
                     ((Nx) = how many times worse than {first}; below 1 is better)"
                );
            }
        }
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
}
