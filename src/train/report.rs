//! Owns what a training run leaves for people to read: the JSON-lines metrics log and
//! the loss-curve plot, and how a resumed run cuts its log back to its checkpoint so
//! every step appears once. Must never influence training (the log is read back only
//! to be trimmed and plotted, never to restore state).

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

    /// Reopen the log of a run resumed at `step`: keep every complete record up to
    /// and including `step`, drop the records the crashed or interrupted run wrote
    /// past it and a torn last line (a process killed mid-write), then append from
    /// there. The trimmed log replaces the old one atomically, so a crash while
    /// trimming leaves the old log (trimmed again at the next resume). Returns the
    /// log and the records kept, in order. A missing log is created empty.
    pub fn resume(path: &Path, step: u64) -> Result<(Self, Vec<serde_json::Value>), ReportError> {
        let io = |source| ReportError::Io {
            path: path.to_owned(),
            source,
        };
        let text = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(e)),
        };
        let (kept, records) = records_up_to(&text, step);
        if kept != text {
            crate::train::checkpoint_io::atomic_write(path, &kept).map_err(|e| match e {
                crate::train::checkpoint_io::CheckpointIoError::Io { source, .. } => io(source),
                other => io(std::io::Error::other(other.to_string())),
            })?;
        }
        Ok((Self::append(path)?, records))
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

/// The part of a metrics log a run resumed at `step` keeps, and its records.
///
/// A line counts only if it ends in a newline and is a JSON object with a `step`:
/// anything else is a torn write and is dropped. A per-step record (one with a
/// `loss`) whose step is not after the last kept per-step record marks a rewind (a
/// log written by a resume that did not trim): the records it repeats are dropped in
/// favour of the later ones. Finally every record past `step` is dropped.
pub fn records_up_to(text: &[u8], step: u64) -> (Vec<u8>, Vec<serde_json::Value>) {
    let mut kept: Vec<(&[u8], serde_json::Value, u64)> = Vec::new();
    let mut rest = text;
    while let Some(end) = rest.iter().position(|&b| b == b'\n') {
        let line = &rest[..=end];
        rest = &rest[end + 1..];
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        let Some(s) = value.get("step").and_then(|s| s.as_u64()) else {
            continue;
        };
        if value.get("loss").is_some() {
            // A rewind: the records at or past this step were superseded.
            while kept.last().is_some_and(|(_, _, k)| *k >= s) {
                kept.pop();
            }
        }
        kept.push((line, value, s));
    }
    kept.retain(|(_, _, s)| *s <= step);
    let bytes = kept.iter().flat_map(|(line, _, _)| line.iter().copied());
    let bytes = bytes.collect();
    (bytes, kept.into_iter().map(|(_, v, _)| v).collect())
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

#[cfg(test)]
mod tests {
    use super::records_up_to;

    fn steps(text: &str, at: u64) -> (String, Vec<u64>) {
        let (bytes, records) = records_up_to(text.as_bytes(), at);
        let steps = records
            .iter()
            .map(|r| r["step"].as_u64().unwrap())
            .collect();
        (String::from_utf8(bytes).unwrap(), steps)
    }

    #[test]
    fn keeps_records_up_to_the_resumed_step_and_drops_a_torn_line() {
        let log = "{\"step\":1,\"loss\":3}\n{\"step\":2,\"loss\":2}\n{\"step\":3,\"loss\":1}\n{\"step\":4,\"lo";
        let (kept, s) = steps(log, 2);
        assert_eq!(s, [1, 2]);
        assert_eq!(kept, "{\"step\":1,\"loss\":3}\n{\"step\":2,\"loss\":2}\n");
        // Resumed at the last complete step: only the torn line goes.
        assert_eq!(steps(log, 3).1, [1, 2, 3]);
        // A complete but unterminated last line is torn too (its newline never came).
        assert_eq!(steps("{\"step\":1,\"loss\":3}", 5).1, Vec::<u64>::new());
    }

    #[test]
    fn a_rewound_log_keeps_each_step_once_and_the_later_copy() {
        // Steps 1-3, a resume at 1 that did not trim, then 2-3 again.
        let log = concat!(
            "{\"step\":1,\"loss\":1}\n{\"step\":2,\"loss\":9}\n{\"step\":3,\"loss\":9}\n",
            "{\"step\":2,\"loss\":2}\n{\"step\":3,\"loss\":3}\n{\"step\":3,\"threads\":1}\n",
        );
        let (bytes, records) = records_up_to(log.as_bytes(), 3);
        let losses: Vec<f64> = records.iter().filter_map(|r| r["loss"].as_f64()).collect();
        assert_eq!(losses, [1.0, 2.0, 3.0]);
        assert_eq!(records.len(), 4, "the run summary stays");
        assert!(String::from_utf8(bytes)
            .unwrap()
            .ends_with("{\"step\":3,\"threads\":1}\n"));
    }
}
