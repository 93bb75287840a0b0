//! The PNG chart of BENCHMARKS.md: keep-alive requests/s and new connections/s per
//! configuration, as two panels of horizontal bars.
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use plotters::prelude::*;

use super::report::Results;

/// Debian's fonts-dejavu-core (installed by `cargo xtask deps`): plotters draws text with
/// ab_glyph from a TTF file, without fontconfig.
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

pub fn draw(results: &Results, path: &Path) -> Result<()> {
    let bytes =
        std::fs::read(FONT).with_context(|| format!("reading the chart's font {FONT} (package fonts-dejavu-core)"))?;
    // plotters keeps fonts for the life of the process.
    plotters::style::register_font("sans-serif", FontStyle::Normal, Box::leak(bytes.into_boxed_slice()))
        .map_err(|_| anyhow!("{FONT} is not a usable font"))?;

    let labels: Vec<String> = results.rows.iter().map(|r| r.label.clone()).collect();
    let n = labels.len() as u32;
    let root = BitMapBackend::new(path, (1400, 120 + 60 * n)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let (top, bottom) = root.split_vertically(60 + 30 * n);
    let panels = [
        (
            top,
            "keep-alive requests/s",
            results.rows.iter().map(|r| r.keep_alive.requests_per_sec).collect::<Vec<_>>(),
            &BLUE,
        ),
        (bottom, "new connections/s", results.rows.iter().map(|r| r.new_connections.requests_per_sec).collect(), &RED),
    ];
    for (area, title, values, color) in panels {
        let max = values.iter().copied().fold(1.0, f64::max) * 1.1;
        let mut chart = ChartBuilder::on(&area)
            .caption(format!("{title} (median of {} rounds)", results.rounds), ("sans-serif", 22))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(260)
            .build_cartesian_2d(0.0..max, (0..n).into_segmented())
            .map_err(|e| anyhow!("{e}"))?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .light_line_style(WHITE)
            .y_labels(n as usize)
            .y_label_formatter(&|v| match v {
                // Bar 0 at the top: the row order of BENCHMARKS.md.
                SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                    labels.get((n - 1).wrapping_sub(*i) as usize).cloned().unwrap_or_default()
                }
                SegmentValue::Last => String::new(),
            })
            .x_label_formatter(&|x| format!("{:.0}k", x / 1000.0))
            .label_style(("sans-serif", 15))
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
        chart
            .draw_series(values.iter().enumerate().map(|(i, v)| {
                let i = n - 1 - i as u32;
                let mut bar = Rectangle::new(
                    [(0.0, SegmentValue::Exact(i)), (*v, SegmentValue::Exact(i + 1))],
                    color.mix(0.6).filled(),
                );
                bar.set_margin(4, 4, 0, 0);
                bar
            }))
            .map_err(|e| anyhow!("{e}"))?;
    }
    root.present().map_err(|e| anyhow!("writing {}: {e}", path.display()))?;
    Ok(())
}
