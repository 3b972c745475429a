//! A run's report as one HTML page with SVG plots (no script, no server: open the file),
//! next to the JSON ([`crate::engine::Report`] serialised).

use crate::engine::{Percentiles, Report};

/// The report as an HTML page.
pub fn html(r: &Report) -> String {
    let mut h = String::new();
    h.push_str(&format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>tailgate-sim: {name}</title>\
<style>body{{font:14px system-ui,sans-serif;margin:2em;max-width:980px}}table{{border-collapse:collapse;margin:1em 0}}\
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}th{{background:#f4f4f4}}td:first-child,th:first-child{{text-align:left}}\
svg{{border:1px solid #ddd;margin:.5em 0}}</style></head><body><h1>tailgate-sim: {name}</h1>",
        name = escape(&r.scenario)
    ));
    h.push_str(&format!(
        "<p>Seed {seed}; {sim:.0} s simulated in {wall:.1} s; gateways {g0} at the start, {g1} at most; {routers} routers. \
<b>Recommended: {rec} gateways</b> (CPU p99 ≤ 70%, RSS ≤ 80% of the limit, one to lose). Membership settled at {settled:.0} s.</p>",
        seed = r.seed,
        sim = r.simulated_seconds,
        wall = r.wall_seconds,
        g0 = r.gateways.0,
        g1 = r.gateways.1,
        routers = r.routers,
        rec = r.recommended_gateways,
        settled = r.membership_settled_s,
    ));
    h.push_str("<h2>Spans</h2><table><tr><th>fate</th><th>spans (estimated)</th><th>share</th><th>followed spans</th></tr>");
    let e = &r.spans;
    let f = &r.spans_followed;
    for (label, v, w) in [
        ("sent", e.sent, f.sent),
        ("kept (at the backend)", e.kept, f.kept),
        ("dropped by policy", e.dropped, f.dropped),
        ("refused to senders", e.refused, f.refused),
        ("lost: gateway killed", e.lost_killed, f.lost_killed),
        ("lost: router gave up", e.lost_router, f.lost_router),
        ("lost: exporter gave up", e.lost_export, f.lost_export),
        (
            "lost: dropped part of a kept trace",
            e.lost_split,
            f.lost_split,
        ),
    ] {
        h.push_str(&format!(
            "<tr><td>{label}</td><td>{}</td><td>{:.4}%</td><td>{}</td></tr>",
            count(v),
            100.0 * v / e.sent.max(1e-9),
            count(w)
        ));
    }
    h.push_str("</table>");
    let t = &r.traces;
    h.push_str(&format!(
        "<h2>Traces</h2><table><tr><th>traces</th><th>estimated</th></tr>\
<tr><td>sent</td><td>{}</td></tr><tr><td>kept</td><td>{}</td></tr>\
<tr><td>kept but incomplete</td><td>{} ({:.4}% of kept)</td></tr><tr><td>decided in parts</td><td>{}</td></tr>\
<tr><td>followed span by span</td><td>{}</td></tr></table>",
        count(t.sent),
        count(t.kept),
        count(t.kept_incomplete),
        100.0 * t.incomplete_share,
        count(t.split),
        t.followed
    ));
    h.push_str("<h2>Policies</h2><table><tr><th>policy</th><th>kept share</th><th>undisturbed share</th></tr>");
    for p in &r.policies {
        h.push_str(&format!(
            "<tr><td>{}</td><td>{:.3}%</td><td>{:.3}%</td></tr>",
            escape(&p.name),
            100.0 * p.kept_share,
            100.0 * p.undisturbed_share
        ));
    }
    h.push_str("</table>");
    h.push_str(&format!(
        "<h2>Latency</h2><table><tr><th></th><th>p50</th><th>p99</th><th>max</th></tr>{}{}</table>",
        row("decision delay (s)", &r.decision_delay_s, 1.0),
        row("export delay (s)", &r.export_delay_s, 1.0)
    ));
    h.push_str(&format!(
        "<h2>Gateways</h2><table><tr><th></th><th>p50</th><th>p99</th><th>max</th></tr>{}{}</table><p>Routers' CPU at most {:.1}%. Spans arriving while their gateway decides early (its buffer at early_decision_bytes, or num_traces held): {:.2}%.</p>",
        row("CPU (% of cores)", &r.gateway_cpu, 100.0),
        row("RSS (MiB)", &r.gateway_rss_bytes, 1.0 / 1048576.0)
            + &row("RSS a full decision_wait needs (MiB)", &r.gateway_wanted_rss_bytes, 1.0 / 1048576.0),
        100.0 * r.router_cpu_max,
        100.0 * r.early_decision_share
    ));
    for (title, _, svg) in charts(r) {
        h.push_str(&format!("<h3>{}</h3>{svg}", escape(&title)));
    }
    h.push_str("</body></html>\n");
    h
}

/// One line of a chart: label, colour, values.
pub type Series<'a> = (&'a str, &'a str, Vec<f64>);

/// The report's plots: (title, file name, standalone SVG).
pub fn charts(r: &Report) -> Vec<(String, &'static str, String)> {
    let ts: Vec<f64> = r.series.iter().map(|p| p.t).collect();
    let pick =
        |f: &dyn Fn(&crate::engine::Point) -> f64| r.series.iter().map(f).collect::<Vec<f64>>();
    let plots: [(&str, &'static str, Vec<Series<'_>>); 4] = [
        (
            "Offered spans/s",
            "rate.svg",
            vec![("rate", "#444", pick(&|p| p.rate))],
        ),
        (
            "Gateway CPU (share of cores)",
            "cpu.svg",
            vec![
                ("p50", "#1f77b4", pick(&|p| p.cpu.p50)),
                ("p99", "#ff7f0e", pick(&|p| p.cpu.p99)),
                ("max", "#d62728", pick(&|p| p.cpu.max)),
            ],
        ),
        (
            "Gateway RSS (MiB)",
            "rss.svg",
            vec![
                ("p50", "#1f77b4", pick(&|p| p.rss.p50 / 1048576.0)),
                ("p99", "#ff7f0e", pick(&|p| p.rss.p99 / 1048576.0)),
                ("max", "#d62728", pick(&|p| p.rss.max / 1048576.0)),
            ],
        ),
        (
            "Gateways running, and share of spans refused (%)",
            "gateways.svg",
            vec![
                ("gateways", "#2ca02c", pick(&|p| p.gateways as f64)),
                ("refused %", "#d62728", pick(&|p| 100.0 * p.refused_share)),
            ],
        ),
    ];
    plots
        .into_iter()
        .map(|(title, file, series)| (title.to_owned(), file, chart(title, &ts, &series)))
        .collect()
}

fn row(label: &str, p: &Percentiles, scale: f64) -> String {
    format!(
        "<tr><td>{label}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td></tr>",
        p.p50 * scale,
        p.p99 * scale,
        p.max * scale
    )
}

fn count(v: f64) -> String {
    if v >= 1e9 {
        format!("{:.2} G", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A line chart of `series` over `xs` (seconds), 900 × 220, axes labelled; a standalone
/// SVG document.
pub fn chart(title: &str, xs: &[f64], series: &[Series<'_>]) -> String {
    let (w, h, left, bottom) = (900.0, 220.0, 60.0, 30.0);
    let xmax = xs.iter().copied().fold(1e-9, f64::max);
    let ymax = series
        .iter()
        .flat_map(|(_, _, v)| v.iter().copied())
        .fold(1e-9, f64::max)
        * 1.1;
    let x = |v: f64| left + (w - left - 10.0) * v / xmax;
    let y = |v: f64| (h - bottom) - (h - bottom - 20.0) * v / ymax;
    let mut svg = format!(
        "<svg viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" xmlns=\"http://www.w3.org/2000/svg\"><title>{}</title><rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>",
        escape(title)
    );
    svg.push_str(&format!(
        "<line x1=\"{left}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#999\"/><line x1=\"{left}\" y1=\"20\" x2=\"{left}\" y2=\"{b}\" stroke=\"#999\"/>\
<text x=\"{left}\" y=\"{ty}\" font-size=\"11\">0 s</text><text x=\"{r}\" y=\"{ty}\" font-size=\"11\" text-anchor=\"end\">{xmax:.0} s</text>\
<text x=\"{lx}\" y=\"{b}\" font-size=\"11\" text-anchor=\"end\">0</text><text x=\"{lx}\" y=\"24\" font-size=\"11\" text-anchor=\"end\">{ytop}</text>",
        b = h - bottom,
        r = w - 10.0,
        ty = h - 10.0,
        lx = left - 4.0,
        ytop = short(ymax),
    ));
    for (i, (label, colour, values)) in series.iter().enumerate() {
        let points: Vec<String> = xs
            .iter()
            .zip(values)
            .map(|(a, b)| format!("{:.1},{:.1}", x(*a), y(*b)))
            .collect();
        svg.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"/><text x=\"{}\" y=\"14\" font-size=\"11\" fill=\"{colour}\">{}</text>",
            points.join(" "),
            left + 10.0 + 90.0 * i as f64,
            escape(label)
        ));
    }
    svg.push_str("</svg>");
    svg
}

fn short(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if v >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}
