//! The performance report as JSON, CSV (`section,metric,value`), Markdown or HTML.

use super::performance::{PerformanceReport, Stats, Trend};
pub use crate::domain::ReportFormat as Format;

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

/// A CSV cell a spreadsheet will not run: text starting with `=`, `+`, `-`, `@`, a tab or
/// a carriage return gets a leading `'` (OWASP's advice on CSV injection), unless it is a
/// plain number (a negative trend stays a number). Jenkins allows such job names.
pub fn csv_cell(s: &str) -> std::borrow::Cow<'_, str> {
    let risky = s.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if risky && s.parse::<f64>().is_err() {
        std::borrow::Cow::Owned(format!("'{s}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// Text from webhooks as Markdown shows it: HTML is written as entities (no tag or
/// `javascript:` link survives a renderer) and Markdown's own syntax is escaped.
fn escape_md(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\n' | '\r' => out.push(' '),
            '|' | '[' | ']' | '(' | ')' | '*' | '_' | '`' | '\\' | '!' | '#' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// One pool's frontier as an SVG chart (cost as a multiple of the oracle's agent-hours
/// against the share of builds started at once; the pool's current settings marked with
/// a cross) and a table of its points.
fn frontier_html(f: &super::frontier::Replayed) -> String {
    let fr = &f.frontier;
    let mut out = format!(
        "<h3>Pool {}</h3>\n<p>{} of its {} recorded builds in the range replayed; the oracle needs {:.1} agent-hours.</p>\n",
        escape_html(&f.pool),
        fr.builds,
        f.builds_in_range,
        fr.oracle_agent_hours
    );
    if fr.builds == 0 || fr.oracle_agent_hours <= 0.0 {
        return out;
    }
    let x_of = |p: &crate::sim::FrontierPoint| p.agent_hours / fr.oracle_agent_hours;
    let x_max = fr
        .frontier
        .iter()
        .chain([&fr.current])
        .map(x_of)
        .fold(1.0f64, f64::max)
        * 1.05;
    let (w, h, left, bottom) = (560.0, 320.0, 50.0, 40.0);
    let px = |x: f64| left + (x - 1.0).max(0.0) / (x_max - 1.0).max(1e-9) * (w - left - 10.0);
    let py = |y: f64| (h - bottom) - y * (h - bottom - 10.0);
    out.push_str(&format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" role=\"img\" \
         aria-label=\"frontier of pool {}\"><rect width=\"{w}\" height=\"{h}\" fill=\"#fff\"/>\
         <line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#333\"/>\
         <line x1=\"{left}\" y1=\"10\" x2=\"{left}\" y2=\"{}\" stroke=\"#333\"/>\
         <text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">agent-hours / oracle's (1 to {x_max:.2})</text>\
         <text x=\"12\" y=\"{}\" font-size=\"11\" transform=\"rotate(-90 12 {})\" text-anchor=\"middle\">% started at once</text>\n",
        escape_html(&f.pool),
        h - bottom,
        w - 10.0,
        h - bottom,
        h - bottom,
        (w + left) / 2.0,
        h - 8.0,
        (h - bottom) / 2.0,
        (h - bottom) / 2.0,
    ));
    for (family, color) in [
        ("window", "#95a5a6"),
        ("keep-idle", "#8e44ad"),
        ("headroom", "#16a085"),
        ("warm", "#2a6fdb"),
    ] {
        let mut pts: Vec<(f64, f64)> = fr
            .frontier
            .iter()
            .filter(|p| p.family == family)
            .map(|p| (px(x_of(p)), py(p.started_at_once)))
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let line: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
        out.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"><title>{family}</title></polyline>",
            line.join(" ")
        ));
        for (x, y) in pts {
            out.push_str(&format!(
                "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"{color}\"/>"
            ));
        }
    }
    let (cx, cy) = (px(x_of(&fr.current)), py(fr.current.started_at_once));
    out.push_str(&format!(
        "<path d=\"M{} {} L{} {} M{} {} L{} {}\" stroke=\"#c0392b\" stroke-width=\"3\"/>\
         <text x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"#c0392b\">current ({})</text></svg>\n",
        cx - 6.0,
        cy - 6.0,
        cx + 6.0,
        cy + 6.0,
        cx - 6.0,
        cy + 6.0,
        cx + 6.0,
        cy - 6.0,
        cx + 8.0,
        cy - 8.0,
        escape_html(&fr.current.setting)
    ));
    out.push_str(
        "<table><thead><tr><th>family</th><th>setting</th><th>agent-hours</th><th>x oracle</th>\
         <th>started at once</th><th>wait p95</th></tr></thead><tbody>\n",
    );
    for p in fr.frontier.iter().chain([&fr.current]) {
        out.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.2}x</td><td>{:.1} %</td><td>{:.0} s</td></tr>\n",
            escape_html(p.family),
            escape_html(&p.setting),
            p.agent_hours,
            x_of(p),
            p.started_at_once * 100.0,
            p.wait_p95_s
        ));
    }
    out.push_str("</tbody></table>\n");
    out
}

/// The frontiers a report in `format` draws: every pool's for the HTML report, none for
/// the other formats (they carry the report's figures only). `slot` is held until the
/// replay's thread is done.
pub async fn frontiers_drawn<S: Send + 'static>(
    store: &crate::store::Store,
    settings: std::sync::Arc<crate::config::Settings>,
    range: super::Range,
    format: Format,
    metrics: &crate::metrics::Metrics,
    slot: S,
) -> Result<Vec<super::frontier::Replayed>, crate::store::StoreError> {
    if format != Format::Html {
        return Ok(Vec::new());
    }
    super::frontier::pool_frontiers(store, settings, range, None, metrics, slot).await
}

/// The report in `format`; the HTML report also draws each pool's frontier of
/// `frontiers` (the other formats carry the report only).
pub fn render(
    r: &PerformanceReport,
    format: Format,
    frontiers: &[super::frontier::Replayed],
) -> String {
    match format {
        Format::Json => serde_json::to_string_pretty(r).expect("a report serializes"),
        Format::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record(["section", "metric", "value"])
                .expect("writing to memory");
            for (s, m, v) in rows(r) {
                w.write_record([csv_cell(&s), csv_cell(&m), csv_cell(&v)].map(|c| c.into_owned()))
                    .expect("writing to memory");
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
            out.push_str("</tbody></table>\n");
            if !frontiers.is_empty() {
                out.push_str(
                    "<h2>Frontier of each pool's history</h2>\n<p>The pool's recorded builds replayed under \
                     each scale-down window, keep-idle time, idle headroom and warm budget, and under its \
                     current settings (the cross): what each costs against how many builds start at once.</p>\n",
                );
                for f in frontiers {
                    out.push_str(&frontier_html(f));
                }
            }
            out.push_str("</body></html>\n");
            out
        }
    }
}
