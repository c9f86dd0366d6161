//! `chart.svg`: viewers, delivered bitrate, stalls, latency and the load generator's own
//! lateness over the run, one panel each, on a shared time axis — the picture that goes into a
//! report.

use std::path::Path;

use plotters::prelude::*;

use super::sampler::Point;

/// Draws the timeline into an SVG file at `path`.
pub(crate) fn render(path: &Path, timeline: &[Point]) -> Result<(), String> {
    let root = SVGBackend::new(path, (960, 1200)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let x_max = timeline.last().map_or(1.0, |p| p.t_s).max(1.0);
    type Series = (
        &'static str,
        &'static str,
        RGBColor,
        fn(&Point) -> Option<f64>,
    );
    let panels: [Series; 5] = [
        ("viewers playing", "viewers", BLUE, |p| {
            Some(p.viewers as f64)
        }),
        ("delivered to viewers", "Mbit/s", GREEN, |p| Some(p.mbit_s)),
        ("stall time / viewer time", "%", RED, |p| {
            Some(p.stall_percent)
        }),
        ("end-to-end latency, median", "ms", MAGENTA, |p| {
            p.latency_p50_ms
        }),
        (
            "load generator's latest wake (late: its viewers stall with it)",
            "ms",
            BLACK,
            |p| Some(p.generator_late_ms as f64),
        ),
    ];
    let areas = root.split_evenly((panels.len(), 1));
    for (area, (title, unit, color, value)) in areas.iter().zip(panels) {
        let points: Vec<(f64, f64)> = timeline
            .iter()
            .filter_map(|p| value(p).map(|v| (p.t_s, v)))
            .collect();
        let y_max = points.iter().map(|p| p.1).fold(0.0, f64::max);
        let y_max = if y_max > 0.0 { y_max * 1.15 } else { 1.0 };
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(28)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("s")
            .y_desc(unit)
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}
