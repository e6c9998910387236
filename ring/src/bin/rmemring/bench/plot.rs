//! The chart: records/s against record size, one line per path and mode,
//! one panel per workload, both axes logarithmic.

use std::path::Path;

use plotters::prelude::*;

use super::report::BPF_PUBLISHED;
use super::Results;
use crate::args::{
    bytes,
    si, //
};

/// One colour per path; modes differ by marker and line width.
fn colour(imp: &str) -> RGBColor {
    match imp {
        "rmemring" => RGBColor(0x1f, 0x77, 0xb4),
        "read" => RGBColor(0xd6, 0x27, 0x28),
        "bpf" => RGBColor(0x2c, 0xa0, 0x2c),
        "memcpy" => RGBColor(0x55, 0x55, 0x55),
        _ => RGBColor(0x94, 0x67, 0xbd),
    }
}

/// The chart's height in pixels.
const HEIGHT: u32 = 580;

pub(crate) fn svg(results: &Results, path: &Path) -> anyhow::Result<()> {
    // The paced workload is one size at a set rate: nothing to plot.
    let rows = || results.rows.iter().filter(|r| r.workload != "paced");
    let mut workloads: Vec<&str> = Vec::new();
    for r in rows() {
        if !workloads.contains(&r.workload.as_str()) {
            workloads.push(&r.workload);
        }
    }
    // Ticks at the measured sizes.
    let mut sizes: Vec<f64> = rows().map(|r| f64::from(r.size)).collect();
    sizes.sort_by(f64::total_cmp);
    sizes.dedup();
    let min_size = sizes.first().copied().unwrap_or(8.0).max(1.0);
    let max_size = sizes.last().copied().unwrap_or(65536.0).max(min_size * 2.0);
    let rates = rows().map(|r| r.records_per_s()).filter(|r| *r > 0.0);
    let lo = rates.clone().fold(f64::INFINITY, f64::min).min(1e6) / 2.0;
    let hi = rates.fold(0.0, f64::max).max(1e3) * 2.0;

    let width = 560 * workloads.len().max(1) as u32;
    let root = SVGBackend::new(path, (width, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let (title, rest) = root.split_vertically(60);
    let (body, foot) = rest.split_vertically(HEIGHT - 60 - 24);
    let subtitle = if results.env.cpu_model.is_empty() {
        String::new()
    } else {
        format!(
            "{}, {} CPUs, Linux {}; {}",
            results.env.cpu_model, results.env.cpus, results.env.kernel, results.env.virtualization
        )
    };
    title.draw(&Text::new(
        "rmemring: kernel producer to user consumer, records/s by record size",
        (10, 8),
        ("sans-serif", 20).into_font(),
    ))?;
    title.draw(&Text::new(
        subtitle,
        (10, 34),
        ("sans-serif", 13).into_font(),
    ))?;

    let panels = body.split_evenly((1, workloads.len().max(1)));
    for (panel, workload) in panels.iter().zip(&workloads) {
        let mut chart = ChartBuilder::on(panel)
            .caption(
                match *workload {
                    "headers" => "headers only",
                    "verify" => "every byte read and verified",
                    other => other,
                },
                ("sans-serif", 16),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(
                (min_size / 1.3..max_size * 1.3)
                    .log_scale()
                    .with_key_points(sizes.clone()),
                (lo..hi).log_scale(),
            )?;
        chart
            .configure_mesh()
            .x_desc("payload bytes per record")
            .y_desc("records/s")
            .x_label_formatter(&|x| bytes(x.round() as u64))
            .y_label_formatter(&|y| si(*y))
            .draw()?;

        let mut series: Vec<(String, String)> = Vec::new();
        for r in rows().filter(|r| r.workload == *workload) {
            let key = (r.imp.clone(), r.mode.clone());
            if !series.contains(&key) {
                series.push(key);
            }
        }
        for (imp, mode) in &series {
            let mut points: Vec<(f64, f64)> = results
                .rows
                .iter()
                .filter(|r| r.workload == *workload && &r.imp == imp && &r.mode == mode)
                .map(|r| (f64::from(r.size), r.records_per_s().max(lo)))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            let c = colour(imp);
            let width = if mode == "busy-poll" || mode == "one-core" {
                2
            } else {
                1
            };
            let label = if mode == "one-core" {
                imp.clone()
            } else {
                format!("{imp} {mode}")
            };
            chart
                .draw_series(LineSeries::new(points.clone(), c.stroke_width(width)))?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(width))
                });
            match mode.as_str() {
                "busy-poll" | "one-core" => {
                    chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, c.filled())))?;
                }
                "blocking" => {
                    chart.draw_series(
                        points
                            .iter()
                            .map(|&p| TriangleMarker::new(p, 4, c.filled())),
                    )?;
                }
                _ => {
                    chart
                        .draw_series(points.iter().map(|&p| Cross::new(p, 4, c.stroke_width(1))))?;
                }
            }
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .position(SeriesLabelPosition::LowerLeft)
            .label_font(("sans-serif", 12))
            .draw()?;
    }
    let note = format!("For scale: {BPF_PUBLISHED}.");
    foot.draw(&Text::new(note, (10, 6), ("sans-serif", 11).into_font()))?;
    root.present()?;
    Ok(())
}
