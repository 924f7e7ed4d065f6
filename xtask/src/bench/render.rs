//! The report for people: the table, the sweep's table, the two charts,
//! and one line per run while the bench goes.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Result, bail};
use serde_json::Value;

use super::results::{Figures, MetricSummary, Report, Stats};
use super::scenarios::{
    Better, Cell, Driver, Generator, SWEEP_SIZES, ScenarioDef, Traffic, cpu_metric, p99_metric,
    peer_cells, size_label, sweep_cells,
};

fn arrow(b: Better) -> &'static str {
    match b {
        Better::Lower => "↓",
        Better::Higher => "↑",
    }
}

pub(crate) fn fmt_num(x: f64) -> String {
    let a = x.abs();
    if a >= 10_000.0 {
        let s = format!("{:.0}", x);
        // Thousands separators for readability.
        let (sign, digits) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        format!("{sign}{out}")
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn fmt_stats(s: Option<&Stats>, suffix: &str) -> String {
    match s {
        Some(s) => format!(
            "{}{suffix} [{}–{}]",
            fmt_num(s.median),
            fmt_num(s.min),
            fmt_num(s.max)
        ),
        None => "-".to_owned(),
    }
}

/// Whether a metric belongs to the size sweep or the second generator's
/// cells (their own table and chart).
pub(crate) fn is_cell_metric(m: &MetricSummary) -> bool {
    m.scenario.starts_with("sweep-") || m.scenario.starts_with("peer-")
}

/// The report as text: every metric (the sweep's in a table of its own),
/// the targets, the configuration and any failure.
pub(crate) fn render_table(report: &Report) -> String {
    let mut t = String::new();
    let m = &report.machine;
    let _ = writeln!(
        t,
        "\nws-provider vs baseline (tokio-tungstenite 0.30, tuned) — {} run, {} round(s) each, interleaved",
        report.mode, report.rounds
    );
    let _ = writeln!(
        t,
        "machine: {} core(s), {}; {}; load average at start {}, at the end {}",
        m.cores, m.cpu, m.pinning, m.load_before, report.load_after
    );
    let _ = writeln!(
        t,
        "figures: median [min–max] over rounds; ratio = ws-provider ÷ baseline of the same round\n"
    );
    let rows: Vec<[String; 5]> = report
        .metrics
        .iter()
        .filter(|x| !is_cell_metric(x))
        .map(|x| {
            let scenario = report.scenario(&x.scenario);
            let na_base = scenario.is_some_and(|s| s.baseline != "measured");
            let unavailable = scenario.is_some_and(|s| s.unavailable.is_some());
            [
                format!("{} {}", x.label, arrow(x.better)),
                x.unit.clone(),
                if na_base {
                    "n/a for baseline".to_owned()
                } else {
                    fmt_stats(x.baseline.as_ref(), "")
                },
                if unavailable {
                    "not available (no route)".to_owned()
                } else {
                    fmt_stats(x.ws_provider.as_ref(), "")
                },
                fmt_stats(x.ratio.as_ref(), "×"),
            ]
        })
        .collect();
    let header = [
        "metric (↓ lower is better, ↑ higher)".to_owned(),
        "unit".to_owned(),
        "baseline".to_owned(),
        "ws-provider".to_owned(),
        "ratio".to_owned(),
    ];
    let mut width = [0usize; 5];
    for r in std::iter::once(&header).chain(rows.iter()) {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |r: &[String; 5]| -> String {
        let mut s = String::new();
        for (i, (c, w)) in r.iter().zip(width).enumerate() {
            let pad = w - c.chars().count();
            if i >= 2 {
                let _ = write!(s, "  {}{c}", " ".repeat(pad));
            } else {
                let _ = write!(s, "{}{c}{}", if i > 0 { "  " } else { "" }, " ".repeat(pad));
            }
        }
        s.trim_end().to_owned()
    };
    let _ = writeln!(t, "{}", line(&header));
    let _ = writeln!(t, "{}", "-".repeat(width.iter().sum::<usize>() + 8));
    for r in &rows {
        let _ = writeln!(t, "{}", line(r));
    }
    let sweep = render_sweep(report);
    if !sweep.is_empty() {
        let _ = write!(t, "\n{sweep}");
    }
    let _ = writeln!(t, "\ntargets (issue 7; the sweep: issue 18):");
    for x in &report.metrics {
        let Some(g) = &x.target else {
            if let Some(goal) = &x.goal {
                let _ = writeln!(t, "  {:<64} {:<18} no data", x.label, goal);
            }
            continue;
        };
        let shown = if g.goal.contains('×') {
            format!("{}×", fmt_num(g.value))
        } else {
            format!("{} {}", fmt_num(g.value), x.unit)
        };
        let _ = writeln!(
            t,
            "  {:<64} {:<18} {:<14} {}",
            x.label,
            g.goal,
            shown,
            if g.met { "met" } else { "MISSED" }
        );
    }
    for s in &report.scenarios {
        if let Some(u) = &s.unavailable {
            let _ = writeln!(t, "\n{}: {u}", s.id);
        }
    }
    let cfg = &report.provider_config;
    let _ = writeln!(t, "\nws-provider config: {}", cfg.file);
    for a in &cfg.applied {
        let _ = writeln!(t, "  on:      {a}");
    }
    for a in &cfg.missing {
        let _ = writeln!(t, "  not on:  {a}");
    }
    if !report.failures.is_empty() {
        let _ = writeln!(t, "\nFAILED runs:");
        for x in &report.failures {
            let _ = writeln!(t, "  {x}");
        }
    }
    t
}

/// `chart.svg`: every ratio but the sweep's as a bar with its range.
pub(crate) fn draw_chart(path: &Path, report: &Report) -> Result<()> {
    use plotters::prelude::*;

    let bars: Vec<(String, f64, f64, f64, bool)> = report
        .metrics
        .iter()
        .filter(|m| !is_cell_metric(m))
        .filter_map(|m| {
            let r = m.ratio.as_ref()?;
            let good = match m.better {
                Better::Lower => r.median <= 1.0,
                Better::Higher => r.median >= 1.0,
            };
            Some((
                format!("{} {}", m.label, arrow(m.better)),
                r.median,
                r.min,
                r.max,
                good,
            ))
        })
        .collect();
    if bars.is_empty() {
        bail!("no ratios to draw");
    }
    let n = bars.len();
    // Far outliers (latency tails on a busy machine) would squash every
    // other bar: the axis stops at 4× and longer bars are cut there.
    let xmax = bars.iter().map(|b| b.3).fold(1.5f64, f64::max).min(4.0) * 1.1;
    let height = 90 + 34 * u32::try_from(n).unwrap_or(20);
    let root = SVGBackend::new(path, (1000, height)).into_drawing_area();
    let e = |e: DrawingAreaErrorKind<std::io::Error>| anyhow::anyhow!("{e:?}");
    root.fill(&WHITE).map_err(e)?;
    let title = format!(
        "ws-provider ÷ baseline ({} run, {} rounds; bar = median, whisker = min–max)",
        report.mode, report.rounds
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(380)
        .build_cartesian_2d(0f64..xmax, (0..n).into_segmented())
        .map_err(e)?;
    // The first metric at the top.
    let row = |i: usize| n - 1 - i;
    let labels: Vec<String> = bars.iter().rev().map(|b| b.0.clone()).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(WHITE)
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .x_desc("ratio (1.0 = same as baseline; green = ws-provider better or equal, red = worse)")
        .draw()
        .map_err(e)?;
    let green = RGBColor(46, 139, 87);
    let red = RGBColor(200, 60, 50);
    chart
        .draw_series(bars.iter().enumerate().map(|(i, b)| {
            let color = if b.4 { green } else { red };
            let mut r = Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(row(i))),
                    (b.1.min(xmax), SegmentValue::Exact(row(i) + 1)),
                ],
                color.mix(0.75).filled(),
            );
            r.set_margin(5, 5, 0, 0);
            r
        }))
        .map_err(e)?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, b)| {
            PathElement::new(
                vec![
                    (b.2.min(xmax), SegmentValue::CenterOf(row(i))),
                    (b.3.min(xmax), SegmentValue::CenterOf(row(i))),
                ],
                BLACK.stroke_width(2),
            )
        }))
        .map_err(e)?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, b)| {
            Text::new(
                format!("{:.2}×", b.1),
                (
                    (b.3.max(b.1) + xmax * 0.01).min(xmax * 0.93),
                    SegmentValue::CenterOf(row(i)),
                ),
                ("sans-serif", 12),
            )
        }))
        .map_err(e)?;
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(1.0, SegmentValue::Exact(0)), (1.0, SegmentValue::Exact(n))],
            BLACK.stroke_width(1),
        )))
        .map_err(e)?;
    root.present().map_err(e)?;
    Ok(())
}

/// A one-line summary of a result, for progress output.
pub(crate) fn brief(s: &ScenarioDef, v: &Figures) -> String {
    let mut out = brief_figures(s, v);
    // Accept-queue overflows and SYN retransmissions (1 s each) distort
    // rates; they are machine-wide, so another process may cause them.
    if let Some(k) = v
        .kernel_tcp
        .as_ref()
        .filter(|k| k.contains_key("ListenOverflows") || k.contains_key("TCPSynRetrans"))
    {
        let _ = write!(out, " [kernel TCP: {k:?}]");
    }
    out
}

fn brief_figures(s: &ScenarioDef, v: &Figures) -> String {
    let fields = serde_json::to_value(v).unwrap_or(Value::Null);
    let f = |k: &str| fields[k].as_f64().map_or("-".to_owned(), fmt_num);
    let scenario = match s.driver {
        Driver::Cell(c) => match c.traffic {
            Traffic::Pipelined => "echo64",
            Traffic::PingPong => "pingpong",
        },
        Driver::Fixed | Driver::Idle => s.id.as_str(),
    };
    match scenario {
        "echo64" | "echo16k" => format!(
            "{} msg/s, {} µs CPU/msg (server util {}, client util {})",
            f("rate"),
            f("server_cpu_us_per_event"),
            f("server_util"),
            f("client_util")
        ),
        "pingpong" => format!(
            "p50 {} µs, p99 {} µs, p99.9 {} µs, {} µs CPU per round trip",
            f("p50_us"),
            f("p99_us"),
            f("p999_us"),
            f("server_cpu_us_per_event")
        ),
        "idle" => format!(
            "{} conns: RSS {} KiB/conn, PSS {} KiB/conn",
            f("conns"),
            f("rss_per_conn_kib"),
            f("pss_per_conn_kib")
        ),
        "handshake" => format!(
            "{} handshakes/s, {} µs CPU each",
            f("rate"),
            f("server_cpu_us_per_event")
        ),
        "fanout" => format!("{} deliveries/s, p99 {} µs", f("rate"), f("p99_us")),
        "churn" => format!(
            "{} cycles/s (cycle p99 {} µs), fds {} → {}, RSS {} → {} KiB",
            f("rate"),
            fields["cycle"]["p99_us"]
                .as_f64()
                .map_or("-".to_owned(), fmt_num),
            f("fds_before"),
            f("fds_after"),
            f("rss_before_kib"),
            f("rss_after_kib")
        ),
        _ => fields.to_string(),
    }
}

/// The groups of cells drawn and tabled together: (generator, traffic,
/// text) and a name.
fn groups() -> Vec<((Generator, Traffic, bool), String)> {
    let mut v: Vec<((Generator, Traffic, bool), String)> = Vec::new();
    for c in sweep_cells().into_iter().chain(peer_cells()) {
        let key = (c.generator, c.traffic, c.text);
        if !v.iter().any(|(k, _)| *k == key) {
            let name = format!(
                "{} {} ({})",
                match c.traffic {
                    Traffic::Pipelined => "pipelined",
                    Traffic::PingPong => "ping-pong",
                },
                if c.text { "text" } else { "binary" },
                c.generator.name()
            );
            v.push((key, name));
        }
    }
    v
}

/// The cell of `key` at `size`, when there is one.
fn cell_of(key: (Generator, Traffic, bool), size: usize) -> Option<Cell> {
    sweep_cells()
        .into_iter()
        .chain(peer_cells())
        .find(|c| (c.generator, c.traffic, c.text) == key && c.size == size)
}

/// The size sweep as text: per group a row per size (server CPU per
/// message of both servers, their ratio with its range; for ping-pong the
/// p99 ratio too), then both load generators' ratios side by side.
pub(crate) fn render_sweep(report: &Report) -> String {
    let mut t = String::new();
    for (key, name) in groups() {
        let rows: Vec<(usize, &MetricSummary)> = SWEEP_SIZES
            .iter()
            .filter_map(|&size| {
                let c = cell_of(key, size)?;
                Some((size, report.metric(&cpu_metric(c))?))
            })
            .collect();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(
            t,
            "size sweep, {name}: server CPU per {} (µs), median [min–max]",
            if key.1 == Traffic::Pipelined {
                "echo"
            } else {
                "round trip"
            }
        );
        let _ = writeln!(
            t,
            "  {:>7}  {:>22}  {:>22}  {:>22}{}",
            "size",
            "baseline",
            "ws-provider",
            "ratio",
            if key.1 == Traffic::PingPong {
                format!("  {:>22}", "p99 ratio")
            } else {
                String::new()
            }
        );
        for (size, m) in rows {
            let p99 = if key.1 == Traffic::PingPong {
                let r = cell_of(key, size)
                    .and_then(|c| report.metric(&p99_metric(c)))
                    .and_then(|m| m.ratio.as_ref());
                format!("  {:>22}", fmt_stats(r, "×"))
            } else {
                String::new()
            };
            let _ = writeln!(
                t,
                "  {:>7}  {:>22}  {:>22}  {:>22}{p99}",
                size_label(size),
                fmt_stats(m.baseline.as_ref(), ""),
                fmt_stats(m.ws_provider.as_ref(), ""),
                fmt_stats(m.ratio.as_ref(), "×"),
            );
        }
        t.push('\n');
    }
    // Both generators side by side where both ran the cell.
    let mut side = String::new();
    for p in peer_cells() {
        let ours = Cell {
            generator: Generator::WsBench,
            ..p
        };
        let (Some(a), Some(b)) = (
            report.metric(&cpu_metric(ours)),
            report.metric(&cpu_metric(p)),
        ) else {
            continue;
        };
        let what = format!(
            "{} {} {}",
            match p.traffic {
                Traffic::Pipelined => "pipelined",
                Traffic::PingPong => "ping-pong",
            },
            if p.text { "text" } else { "binary" },
            size_label(p.size)
        );
        let _ = writeln!(
            side,
            "  {what:<26} {:>22}  {:>22}",
            fmt_stats(a.ratio.as_ref(), "×"),
            fmt_stats(b.ratio.as_ref(), "×")
        );
    }
    if !side.is_empty() {
        let _ = writeln!(
            t,
            "server CPU per message, ws-provider ÷ baseline, by load generator\n  {:<26} {:>22}  {:>22}\n{side}",
            "cell", "ws-bench", "ws-bench-peer"
        );
    }
    t
}

/// `sweep.svg`: the CPU-per-message ratio against message size, a line per
/// group (pipelined/ping-pong, binary/text, each load generator), the
/// median with the min–max range as whiskers.
pub(crate) fn draw_sweep_chart(path: &Path, report: &Report) -> Result<()> {
    use plotters::prelude::*;

    let series: Vec<(String, Vec<(f64, Stats)>)> = groups()
        .into_iter()
        .filter_map(|(key, name)| {
            let points: Vec<(f64, Stats)> = SWEEP_SIZES
                .iter()
                .enumerate()
                .filter_map(|(i, &size)| {
                    let m = report.metric(&cpu_metric(cell_of(key, size)?))?;
                    #[allow(clippy::cast_precision_loss)]
                    Some((i as f64, m.ratio.clone()?))
                })
                .collect();
            (!points.is_empty()).then_some((name, points))
        })
        .collect();
    if series.is_empty() {
        bail!("no sweep ratios to draw");
    }
    let ymax = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(_, s)| s.max))
        .fold(1.3f64, f64::max)
        .min(3.0)
        * 1.05;
    let ymin = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(_, s)| s.min))
        .fold(0.8f64, f64::min)
        .max(0.0)
        * 0.95;
    let root = SVGBackend::new(path, (1000, 600)).into_drawing_area();
    let e = |e: DrawingAreaErrorKind<std::io::Error>| anyhow::anyhow!("{e:?}");
    root.fill(&WHITE).map_err(e)?;
    let title = format!(
        "server CPU per message, ws-provider ÷ baseline, against size ({} run, {} rounds; median, whisker = min–max)",
        report.mode, report.rounds
    );
    #[allow(clippy::cast_precision_loss)]
    let xmax = (SWEEP_SIZES.len() - 1) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 15))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(-0.3f64..xmax + 0.3, ymin..ymax)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_labels(SWEEP_SIZES.len())
        .x_label_formatter(&|x| {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let i = x.round().max(0.0) as usize;
            if (x - x.round()).abs() < 0.01 {
                SWEEP_SIZES
                    .get(i)
                    .map(|&s| size_label(s))
                    .unwrap_or_default()
            } else {
                String::new()
            }
        })
        .x_desc("message size")
        .y_desc("ratio (1.0 = baseline; below = ws-provider cheaper)")
        .draw()
        .map_err(e)?;
    for (y, color) in [(1.0, BLACK), (1.05, RGBColor(200, 60, 50))] {
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(-0.3, y), (xmax + 0.3, y)],
                color.stroke_width(1),
            )))
            .map_err(e)?;
    }
    for (i, (name, points)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        // Each series a little to the side, so whiskers do not overlap.
        #[allow(clippy::cast_precision_loss)]
        let dx = (i as f64 - series.len() as f64 / 2.0) * 0.02;
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|(x, s)| (x + dx, s.median)),
                color.stroke_width(2),
            ))
            .map_err(e)?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart
            .draw_series(points.iter().map(|(x, s)| {
                PathElement::new(
                    vec![(x + dx, s.min), (x + dx, s.max)],
                    color.stroke_width(1),
                )
            }))
            .map_err(e)?;
        chart
            .draw_series(
                points
                    .iter()
                    .map(|(x, s)| Circle::new((x + dx, s.median), 3, color.filled())),
            )
            .map_err(e)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(e)?;
    root.present().map_err(e)?;
    Ok(())
}
