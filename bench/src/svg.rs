//! The chart: throughput of each configuration as a ratio to the direct connection, one group
//! of bars per workload, with the reference lines of the targets (1.0, 0.95, 0.90, and 0.85
//! for encrypted lookups against the plaintext copy). Plain SVG
//! written by hand: a few rectangles and lines do not need a plotting library.

use std::fmt::Write as _;

use crate::catalog::{CONFIGURATIONS, ConfigId};
use crate::report::{Row, Status};

const COLOURS: &[(ConfigId, &str)] = &[
    (ConfigId::PgBouncer, "#8c8c8c"),
    (ConfigId::Passthrough, "#2b6cb0"),
    (ConfigId::Audit, "#c05621"),
    (ConfigId::Encryption, "#2f855a"),
    (ConfigId::MaskingFirewall, "#6b46c1"),
];

/// Text escaped for XML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The SVG document for `rows`, titled `title`.
pub fn chart(rows: &[Row], title: &str) -> String {
    let mut workloads: Vec<&str> = Vec::new();
    for r in rows {
        if !workloads.contains(&r.workload) {
            workloads.push(r.workload);
        }
    }
    let bar_w = 14.0;
    let gap = 26.0;
    let group_w = COLOURS.len() as f64 * bar_w + gap;
    let (left, top, plot_h) = (60.0, 50.0, 300.0);
    let width = left + group_w * workloads.len().max(1) as f64 + 190.0;
    let height = top + plot_h + 150.0;
    let max = rows
        .iter()
        .filter(|r| r.config_id != ConfigId::Direct)
        .filter_map(|r| r.ratio_to_direct)
        .fold(1.2_f64, f64::max)
        .min(5.0);
    let y = |v: f64| top + plot_h - (v.min(max) / max) * plot_h;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        s,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{left}" y="24" font-size="14" font-weight="bold">{}</text>"#,
        esc(title)
    );
    // Axis and grid.
    let mut tick = 0.0;
    while tick <= max + 1e-9 {
        let _ = writeln!(
            s,
            "<line x1=\"{left}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#eee\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{tick:.1}</text>",
            width - 190.0,
            left - 6.0,
            y(tick) + 4.0,
            y = y(tick)
        );
        tick += if max > 2.0 { 0.5 } else { 0.2 };
    }
    let _ = writeln!(
        s,
        "<text transform=\"translate(16,{:.1}) rotate(-90)\" text-anchor=\"middle\">TPS / direct TPS</text>",
        top + plot_h / 2.0
    );
    for (value, dash, label) in [
        (1.0, "", "1.0 = direct"),
        (0.95, "6,3", "0.95 passthrough target"),
        (0.90, "2,3", "0.90 audit target"),
        (0.85, "1,4", "0.85 encrypted lookup target"),
    ] {
        let _ = writeln!(
            s,
            "<line x1=\"{left}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#333\" stroke-dasharray=\"{dash}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" fill=\"#333\">{label}</text>",
            width - 190.0,
            width - 186.0,
            y(value) + 4.0,
            y = y(value)
        );
    }
    // Bars.
    for (g, workload) in workloads.iter().enumerate() {
        let x0 = left + g as f64 * group_w + gap / 2.0;
        for (b, (config, colour)) in COLOURS.iter().enumerate() {
            let x = x0 + b as f64 * bar_w;
            let row = rows
                .iter()
                .find(|r| r.workload == *workload && r.config_id == *config);
            match row.and_then(|r| r.ratio_to_direct.map(|v| (r, v))) {
                Some((r, v)) => {
                    let _ = writeln!(
                        s,
                        "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{colour}\"><title>{} {}: {v:.3}</title></rect>",
                        y(v),
                        bar_w - 2.0,
                        top + plot_h - y(v),
                        esc(r.workload),
                        esc(r.config)
                    );
                }
                None => {
                    let why = match row.map(|r| &r.status) {
                        Some(Status::NotAvailable(w)) => format!("not available: {w}"),
                        Some(Status::NotApplicable(w)) => format!("not applicable: {w}"),
                        Some(Status::NotMeasured(w)) => format!("not measured: {w}"),
                        Some(Status::Failed(_)) => "failed".into(),
                        _ => "no ratio".into(),
                    };
                    let _ = writeln!(
                        s,
                        "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"9\" fill=\"#999\" text-anchor=\"middle\"><title>{}</title>×</text>",
                        x + (bar_w - 2.0) / 2.0,
                        top + plot_h - 3.0,
                        esc(&why)
                    );
                }
            }
        }
        let _ = writeln!(
            s,
            "<text transform=\"translate({:.1},{:.1}) rotate(40)\">{}</text>",
            x0 + 4.0,
            top + plot_h + 14.0,
            esc(workload)
        );
    }
    let _ = writeln!(
        s,
        "<line x1=\"{left}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#000\"/>",
        width - 190.0,
        top + plot_h,
        top + plot_h
    );
    // Legend.
    for (i, (config, colour)) in COLOURS.iter().enumerate() {
        let c = CONFIGURATIONS.iter().find(|c| c.id == *config);
        let name = c.map(|c| c.name).unwrap_or("?");
        let suffix = c
            .and_then(|c| c.needs)
            .map(|n| format!(" (needs {n})"))
            .unwrap_or_default();
        let ly = top + 60.0 + i as f64 * 18.0;
        let _ = writeln!(
            s,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{colour}\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            width - 186.0,
            ly - 9.0,
            width - 172.0,
            ly,
            esc(&format!("{name}{suffix}"))
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#999\">× = no bar (hover for why)</text>",
        width - 186.0,
        top + 60.0 + COLOURS.len() as f64 * 18.0
    );
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{configuration, workload};
    use crate::run::{Cell, Outcome, Sample};

    #[test]
    fn draws_bars_for_ratios_and_marks_for_the_rest() {
        let w = workload("pg-select-simple").unwrap();
        let measured = |tps| {
            Outcome::Measured(vec![Sample {
                tps,
                transactions: 1,
                statements: 1,
                ..Sample::default()
            }])
        };
        let cells = vec![
            Cell {
                workload: w,
                config: configuration(ConfigId::Direct),
                outcome: measured(1000.0),
                note: None,
            },
            Cell {
                workload: w,
                config: configuration(ConfigId::Passthrough),
                outcome: measured(900.0),
                note: None,
            },
            Cell {
                workload: w,
                config: configuration(ConfigId::MaskingFirewall),
                outcome: Outcome::NotAvailable("needs issue 6 <mask>".into()),
                note: None,
            },
        ];
        let svg = chart(&crate::report::rows(&cells), "ratios & more");
        assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("pg-select-simple warden-pass: 0.900"));
        assert!(svg.contains("not available: needs issue 6 &lt;mask&gt;"));
        assert!(svg.contains("ratios &amp; more"));
        // Bars: one measured ratio (direct is the baseline and gets no bar).
        assert_eq!(svg.matches("<rect x=").count(), 1 + COLOURS.len());
    }
}
