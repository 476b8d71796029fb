//! Owns what a training run leaves for people to read: the JSON-lines metrics log and
//! the loss-curve plot. Must never influence training (write-only, after the fact).

use plotters::prelude::*;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Failure writing a report file.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Could not write the file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The plotting library failed.
    #[error("{path}: could not draw the plot: {reason}")]
    Plot {
        /// The file.
        path: PathBuf,
        /// What the plotting library reported.
        reason: String,
    },
}

/// Appends one JSON object per line to `metrics.jsonl`.
pub struct MetricsLog {
    path: PathBuf,
    out: BufWriter<File>,
}

impl MetricsLog {
    /// Create (or truncate) `path`.
    pub fn create(path: &Path) -> Result<Self, ReportError> {
        let file = File::create(path).map_err(|source| ReportError::Io {
            path: path.to_owned(),
            source,
        })?;
        Ok(MetricsLog {
            path: path.to_owned(),
            out: BufWriter::new(file),
        })
    }

    /// Open `path` for appending (created if missing): a resumed run continues its log.
    pub fn append(path: &Path) -> Result<Self, ReportError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| ReportError::Io {
                path: path.to_owned(),
                source,
            })?;
        Ok(MetricsLog {
            path: path.to_owned(),
            out: BufWriter::new(file),
        })
    }

    /// Append one record and flush it (so a crash loses at most the current line).
    pub fn write(&mut self, record: &serde_json::Value) -> Result<(), ReportError> {
        let io = |source| ReportError::Io {
            path: self.path.clone(),
            source,
        };
        writeln!(self.out, "{record}").map_err(io)?;
        self.out.flush().map_err(|source| ReportError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

/// A named series of (step, value) points.
pub struct Series<'a> {
    /// Legend label.
    pub label: &'a str,
    /// Points.
    pub points: &'a [(f64, f64)],
}

/// Draw the series as lines into an SVG file, with an optional horizontal reference
/// line (for example the corpus's entropy floor).
pub fn plot_svg(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series<'_>],
    reference: Option<(&str, f64)>,
) -> Result<(), ReportError> {
    let fail = |reason: String| ReportError::Plot {
        path: path.to_owned(),
        reason,
    };
    let all = series.iter().flat_map(|s| s.points.iter());
    let (mut x_max, mut y_min, mut y_max) = (1.0f64, f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in all {
        x_max = x_max.max(x);
        y_min = y_min.min(y);
        y_max = y_max.max(y);
    }
    if let Some((_, r)) = reference {
        y_min = y_min.min(r);
        y_max = y_max.max(r);
    }
    if !y_min.is_finite() || !y_max.is_finite() {
        (y_min, y_max) = (0.0, 1.0);
    }
    let pad = ((y_max - y_min) * 0.05).max(1e-3);
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, (y_min - pad)..(y_max + pad))
        .map_err(|e| fail(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .draw()
        .map_err(|e| fail(e.to_string()))?;
    let colors = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
    for (i, s) in series.iter().enumerate() {
        let color = colors[i % colors.len()];
        chart
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| fail(e.to_string()))?
            .label(s.label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    if let Some((label, r)) = reference {
        chart
            .draw_series(LineSeries::new(
                vec![(0.0, r), (x_max, r)],
                BLACK.stroke_width(1),
            ))
            .map_err(|e| fail(e.to_string()))?
            .label(label)
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| fail(e.to_string()))?;
    root.present().map_err(|e| fail(e.to_string()))
}
