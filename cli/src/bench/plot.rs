//! The chart: records/s against record size, one line per path and mode,
//! one panel per workload, both axes logarithmic; SVG or PNG by the file's
//! extension.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::register_font;

use super::report::BPF_PUBLISHED;
use super::Results;
use crate::args::{
    bytes,
    si, //
};

/// One colour per path (its entry in the peer table); modes differ by
/// marker and line width.
fn colour(imp: &str) -> RGBColor {
    let (r, g, b) = super::peer::find(imp).map_or((0x94, 0x67, 0xbd), |p| p.colour);
    RGBColor(r, g, b)
}

/// The chart's height in pixels.
const HEIGHT: u32 = 580;

/// The chart formats, by file extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    Svg,
    Png,
}

impl Format {
    /// The format `path` asks for: `.svg` or `.png` (any case).
    pub(crate) fn of(path: &Path) -> Result<Self, String> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("svg") => Ok(Format::Svg),
            Some("png") => Ok(Format::Png),
            _ => Err("the chart is SVG or PNG: name the file *.svg or *.png".to_owned()),
        }
    }
}

/// Writes the chart to `path`, as its extension says.
pub(crate) fn write(results: &Results, path: &Path) -> anyhow::Result<()> {
    let format = Format::of(path).map_err(anyhow::Error::msg)?;
    register_fonts()?;
    let size = (width(results), HEIGHT);
    match format {
        Format::Svg => draw(results, SVGBackend::new(path, size).into_drawing_area()),
        Format::Png => draw(results, BitMapBackend::new(path, size).into_drawing_area()),
    }
}

/// plotters draws text with ab_glyph, from fonts registered by name: the
/// embedded DejaVu Sans is "sans-serif" (an SVG viewer uses its own
/// sans-serif font; plotters measures the text with this one).
fn register_fonts() -> anyhow::Result<()> {
    register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
        .map_err(|_| anyhow::anyhow!("the embedded DejaVu Sans font did not load"))
}

/// The workloads plotted: every one but the paced one (one size at a set
/// rate: nothing to plot).
fn workloads(results: &Results) -> Vec<&str> {
    let mut workloads: Vec<&str> = Vec::new();
    for r in results.rows.iter().filter(|r| r.workload != "paced") {
        if !workloads.contains(&r.workload.as_str()) {
            workloads.push(&r.workload);
        }
    }
    workloads
}

/// One panel per workload.
fn width(results: &Results) -> u32 {
    560 * workloads(results).len().max(1) as u32
}

fn draw<DB>(results: &Results, root: DrawingArea<DB, Shift>) -> anyhow::Result<()>
where
    DB: DrawingBackend,
    DB::ErrorType: 'static,
{
    let rows = || results.rows.iter().filter(|r| r.workload != "paced");
    let workloads = workloads(results);
    // Ticks at the measured sizes.
    let mut sizes: Vec<f64> = rows().map(|r| f64::from(r.size)).collect();
    sizes.sort_by(f64::total_cmp);
    sizes.dedup();
    let min_size = sizes.first().copied().unwrap_or(8.0).max(1.0);
    let max_size = sizes.last().copied().unwrap_or(65536.0).max(min_size * 2.0);
    let rates = rows().map(|r| r.records_per_s()).filter(|r| *r > 0.0);
    let lo = rates.clone().fold(f64::INFINITY, f64::min).min(1e6) / 2.0;
    let hi = rates.fold(0.0, f64::max).max(1e3) * 2.0;

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
            .caption(super::report::workload_short(workload), ("sans-serif", 16))
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

#[cfg(test)]
mod tests {
    use super::super::row::sample as row;
    use super::*;

    fn results() -> Results {
        Results {
            rows: vec![
                row("rmemring", "busy-poll", "blank-headers", 64, 4_000_000),
                row("rmemring", "busy-poll", "blank-headers", 4096, 3_000_000),
                row("read", "blocking", "blank-headers", 64, 2_000_000),
                row("read", "blocking", "blank-headers", 4096, 100_000),
                row("memcpy", "one-core", "filled-bytes", 64, 9_000_000),
                row("memcpy", "one-core", "filled-bytes", 4096, 200_000),
            ],
            ..Results::default()
        }
    }

    #[test]
    fn the_extension_picks_the_format() {
        assert_eq!(Format::of(Path::new("a/chart.svg")), Ok(Format::Svg));
        assert_eq!(Format::of(Path::new("chart.PNG")), Ok(Format::Png));
        for bad in ["chart.jpg", "chart", "chart.svg.gz"] {
            let err = Format::of(Path::new(bad)).unwrap_err();
            assert!(err.contains("*.svg or *.png"), "{bad}: {err}");
        }
    }

    #[test]
    fn charts_are_written_as_svg_and_png() {
        let dir = std::env::temp_dir().join(format!("rmemring-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let results = results();

        let svg = dir.join("chart.svg");
        write(&results, &svg).unwrap();
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(text.starts_with("<svg"), "{}", &text[..40.min(text.len())]);
        assert!(text.contains("rmemring busy-poll"));

        let png = dir.join("chart.png");
        write(&results, &png).unwrap();
        let bytes = std::fs::read(&png).unwrap();
        // The PNG signature, then the IHDR chunk: width and height.
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&bytes[12..16], b"IHDR");
        let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
        assert_eq!((be(16), be(20)), (2 * 560, HEIGHT));

        assert!(write(&results, &dir.join("chart.jpg")).is_err());
        assert!(!dir.join("chart.jpg").exists());
        let _ = std::fs::remove_dir_all(dir);
    }
}
