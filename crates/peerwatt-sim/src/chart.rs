//! The SVG chart of the run: per interval, the community's load, PV, grid import and export
//! as lines and the energy traded locally as bars, in kWh per interval.

use std::fmt::Write as _;

use crate::report::Report;

const WIDTH: u64 = 960;
const HEIGHT: u64 = 420;
const LEFT: u64 = 60;
const RIGHT: u64 = 150;
const TOP: u64 = 40;
const BOTTOM: u64 = 50;

/// A line of the chart: its name, colour and value per interval.
type Series = (&'static str, &'static str, fn(&crate::kpi::IntervalReport) -> u64);

/// The chart as an SVG document.
pub fn svg(report: &Report) -> String {
    let rows = &report.intervals;
    let n = rows.len().max(1) as u64;
    let peak = rows
        .iter()
        .flat_map(|r| {
            [r.figures.load_wh, r.figures.pv_wh, r.figures.import_wh, r.figures.export_wh, r.figures.traded_wh]
        })
        .max()
        .unwrap_or(0);
    let top_wh = nice_ceiling(peak.max(1));
    let (plot_w, plot_h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let x = |i: u64| LEFT + plot_w * (2 * i + 1) / (2 * n);
    let y = |wh: u64| TOP + plot_h - plot_h * wh.min(top_wh) / top_wh;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="22" font-size="15">peerwatt demo: {} households, {} to {}</text>"#,
        report.households.len(),
        escape(report.start.get(..16).unwrap_or("")),
        escape(report.end.get(..16).unwrap_or(""))
    );
    // Grid lines and the energy axis.
    for k in 0..=4 {
        let wh = top_wh * k / 4;
        let yy = y(wh);
        let _ = writeln!(s, r##"<line x1="{LEFT}" y1="{yy}" x2="{}" y2="{yy}" stroke="#ddd"/>"##, LEFT + plot_w);
        let _ = writeln!(s, r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#, LEFT - 6, yy + 4, kwh_label(wh));
    }
    let _ = writeln!(
        s,
        r#"<text x="14" y="{}" transform="rotate(-90 14 {})">kWh per interval</text>"#,
        TOP + plot_h / 2,
        TOP + plot_h / 2
    );
    // Time labels every three hours (12 intervals).
    for (i, r) in rows.iter().enumerate().step_by(12) {
        let xx = x(i as u64);
        let _ = writeln!(
            s,
            r#"<text x="{xx}" y="{}" text-anchor="middle">{}</text>"#,
            TOP + plot_h + 18,
            escape(r.start.get(11..16).unwrap_or(""))
        );
    }
    // Local trades as bars.
    let bar = (plot_w / n).saturating_sub(1).max(1);
    for (i, r) in rows.iter().enumerate() {
        if r.figures.traded_wh > 0 {
            let (xx, yy) = (x(i as u64) - bar / 2, y(r.figures.traded_wh));
            let _ = writeln!(
                s,
                r##"<rect x="{xx}" y="{yy}" width="{bar}" height="{}" fill="#9ecae1"/>"##,
                TOP + plot_h - yy
            );
        }
    }
    let series: [Series; 4] = [
        ("load", "#444", |r| r.load_wh),
        ("PV", "#f5a623", |r| r.pv_wh),
        ("grid import", "#d0021b", |r| r.import_wh),
        ("grid export", "#417505", |r| r.export_wh),
    ];
    for (name, colour, value) in series {
        let points: Vec<String> =
            rows.iter().enumerate().map(|(i, r)| format!("{},{}", x(i as u64), y(value(&r.figures)))).collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"><title>{name}</title></polyline>"#,
            points.join(" ")
        );
    }
    // Legend.
    let legend = [
        ("load", "#444"),
        ("PV", "#f5a623"),
        ("grid import", "#d0021b"),
        ("grid export", "#417505"),
        ("traded locally", "#9ecae1"),
    ];
    for (k, (name, colour)) in legend.iter().enumerate() {
        let yy = TOP + 10 + 20 * k as u64;
        let lx = WIDTH - RIGHT + 16;
        let _ = writeln!(s, r#"<rect x="{lx}" y="{}" width="14" height="10" fill="{colour}"/>"#, yy - 9);
        let _ = writeln!(s, r#"<text x="{}" y="{yy}">{name}</text>"#, lx + 20);
    }
    let c = &report.community;
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="{}">{} trades, {} kWh traded, market efficiency {}, savings {}</text>"#,
        HEIGHT - 10,
        c.trades,
        crate::report::kwh(c.traded_wh),
        escape(&crate::report::percent(c.efficiency_bp)),
        crate::report::money(c.savings),
    );
    s.push_str("</svg>\n");
    s
}

/// The smallest of 1, 2, 5 × 10ⁿ Wh at or above `wh`.
fn nice_ceiling(wh: u64) -> u64 {
    let mut unit = 1u64;
    loop {
        for m in [1, 2, 5] {
            if unit.saturating_mul(m) >= wh {
                return unit * m;
            }
        }
        unit = unit.saturating_mul(10);
    }
}

/// Wh as kWh for an axis: no trailing zeros (1250 → "1.25", 2000 → "2").
fn kwh_label(wh: u64) -> String {
    let text = format!("{}.{:03}", wh / 1_000, wh % 1_000);
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_ceilings_are_round() {
        assert_eq!(nice_ceiling(1), 1);
        assert_eq!(nice_ceiling(13_400), 20_000);
        assert_eq!(nice_ceiling(50_000), 50_000);
        assert_eq!(nice_ceiling(50_001), 100_000);
        assert_eq!(
            (kwh_label(2_500), kwh_label(1_250), kwh_label(2_000), kwh_label(0)),
            ("2.5".into(), "1.25".into(), "2".into(), "0".into())
        );
    }
}
