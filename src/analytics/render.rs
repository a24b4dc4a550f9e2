//! The performance report as JSON, CSV (`section,metric,value`), Markdown or HTML.

use super::performance::{PerformanceReport, Stats, Trend};
use serde::Serialize;

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Json,
    Csv,
    Md,
    Html,
}

impl Format {
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "json" => Ok(Self::Json),
            "csv" => Ok(Self::Csv),
            "md" | "markdown" => Ok(Self::Md),
            "html" => Ok(Self::Html),
            _ => Err("must be json, csv, md or html".into()),
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Csv => "csv",
            Self::Md => "md",
            Self::Html => "html",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Csv => "text/csv; charset=utf-8",
            Self::Md => "text/markdown; charset=utf-8",
            Self::Html => "text/html; charset=utf-8",
        }
    }
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(String::new, |v| v.to_string())
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(String::new, |v| format!("{:.1}", v * 100.0))
}

/// `(section, metric, value)` rows: the one flat view every text format is made from.
pub fn rows(r: &PerformanceReport) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = Vec::new();
    let mut push = |s: &str, m: &str, v: String| out.push((s.into(), m.into(), v));
    push("range", "from", r.range.from.to_rfc3339());
    push("range", "to", r.range.to.to_rfc3339());
    for (k, v) in [
        ("controller", &r.filter.controller),
        ("job", &r.filter.job),
        ("label", &r.filter.label),
    ] {
        if let Some(v) = v {
            push("filter", k, v.clone());
        }
    }
    push("builds", "count", r.builds.to_string());
    push("builds", "success_rate_percent", pct(r.success_rate));
    push("builds", "error_rate_percent", pct(r.error_rate));
    push(
        "builds",
        "demand_per_hour",
        format!("{:.3}", r.demand_per_hour),
    );
    for (result, n) in &r.results {
        push("results", result, n.to_string());
    }
    let mut stats = |name: &str, s: &Stats| {
        push(name, "count", s.count.to_string());
        push(name, "mean_ms", opt(s.mean_ms));
        push(name, "p50_ms", opt(s.p50_ms));
        push(name, "p95_ms", opt(s.p95_ms));
    };
    stats("queue_wait", &r.queue_wait);
    stats("duration", &r.duration);
    push("scaling", "scale_ups", r.scaling.scale_ups.to_string());
    push("scaling", "scale_downs", r.scaling.scale_downs.to_string());
    push("cost", "currency", r.cost.currency.clone());
    push("cost", "total", format!("{:.4}", r.cost.total));
    push("cost", "idle", format!("{:.4}", r.cost.idle));
    push("cost", "efficiency_percent", pct(r.cost.efficiency));
    push(
        "cost",
        "monthly_projection",
        format!("{:.2}", r.cost.monthly_projection),
    );
    let mut trend = |name: &str, t: &Trend| {
        let s = format!("trend_{name}");
        push(&s, "value", opt(t.value));
        push(&s, "previous", opt(t.previous));
        push(&s, "change_percent", opt(t.change_percent));
        push(&s, "slope_per_day", opt(t.slope_per_day));
    };
    trend("duration_ms", &r.trends.duration);
    trend("queue_wait_ms", &r.trends.queue_wait);
    trend("demand_per_hour", &r.trends.demand);
    trend("cost", &r.trends.cost);
    for g in &r.regressions {
        push(
            "regression",
            &g.job,
            format!(
                "median {:.0} ms against {:.0} ms ({:+.1} %){}",
                g.median_ms,
                g.baseline_median_ms,
                g.change_percent,
                g.first_slow_build
                    .as_ref()
                    .map(|b| format!(", first slow build #{}", b.number))
                    .unwrap_or_default()
            ),
        );
    }
    for (i, rec) in r.recommendations.iter().enumerate() {
        push("recommendation", &(i + 1).to_string(), rec.clone());
    }
    out
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn escape_md(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The report in `format`.
pub fn render(r: &PerformanceReport, format: Format) -> String {
    match format {
        Format::Json => serde_json::to_string_pretty(r).expect("a report serializes"),
        Format::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record(["section", "metric", "value"])
                .expect("writing to memory");
            for (s, m, v) in rows(r) {
                w.write_record([s, m, v]).expect("writing to memory");
            }
            String::from_utf8(w.into_inner().expect("flushing to memory")).expect("UTF-8")
        }
        Format::Md => {
            let mut out = format!(
                "# CI performance report\n\n{} to {}\n\n| section | metric | value |\n|---|---|---|\n",
                r.range.from.to_rfc3339(),
                r.range.to.to_rfc3339()
            );
            for (s, m, v) in rows(r) {
                out.push_str(&format!(
                    "| {} | {} | {} |\n",
                    escape_md(&s),
                    escape_md(&m),
                    escape_md(&v)
                ));
            }
            out
        }
        Format::Html => {
            let mut out = format!(
                "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>CI performance report</title>\
                 <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}\
                 td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}</style></head><body>\
                 <h1>CI performance report</h1><p>{} to {}</p><table><thead><tr><th>section</th>\
                 <th>metric</th><th>value</th></tr></thead><tbody>\n",
                r.range.from.to_rfc3339(),
                r.range.to.to_rfc3339()
            );
            for (s, m, v) in rows(r) {
                out.push_str(&format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                    escape_html(&s),
                    escape_html(&m),
                    escape_html(&v)
                ));
            }
            out.push_str("</tbody></table></body></html>\n");
            out
        }
    }
}
