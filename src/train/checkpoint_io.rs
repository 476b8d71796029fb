//! Owns the file-level mechanics of checkpoints: crash-safe writes and a validated
//! safetensors round trip of named f32 tensors that live in one flat buffer.
//! Must never know GPT-2 names or training semantics (the caller supplies the list of
//! tensors); never leave a half-written file under a final name.

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

/// One tensor stored in a flat buffer: its name, shape and offset (in floats).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// Name inside the safetensors file.
    pub name: String,
    /// Shape (row-major).
    pub shape: Vec<usize>,
    /// Offset of the first element in the flat buffer.
    pub offset: usize,
}

impl TensorSpec {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// What can go wrong reading or writing checkpoint files.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointIoError {
    /// An I/O failure, with the path it concerned.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not a valid safetensors file (truncated, corrupted header, ...).
    #[error("{path}: not a valid safetensors file: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What the parser reported.
        reason: String,
    },
    /// A tensor the model needs is absent.
    #[error("{path}: tensor `{name}` is missing")]
    Missing {
        /// The file.
        path: PathBuf,
        /// The tensor name.
        name: String,
    },
    /// A tensor has the wrong dtype.
    #[error("{path}: tensor `{name}` has dtype {found}, expected F32")]
    Dtype {
        /// The file.
        path: PathBuf,
        /// The tensor name.
        name: String,
        /// The dtype found.
        found: String,
    },
    /// A tensor has the wrong shape.
    #[error("{path}: tensor `{name}` has shape {found:?}, expected {expected:?}")]
    Shape {
        /// The file.
        path: PathBuf,
        /// The tensor name.
        name: String,
        /// The shape found.
        found: Vec<usize>,
        /// The shape the configuration implies.
        expected: Vec<usize>,
    },
    /// The file holds tensors the model does not have.
    #[error("{path}: unexpected tensor `{name}`")]
    Unexpected {
        /// The file.
        path: PathBuf,
        /// The tensor name.
        name: String,
    },
    /// The tensor list does not fit the flat buffer.
    #[error("tensor `{name}` ends at float {end}, past the buffer's {len}")]
    Layout {
        /// The tensor name.
        name: String,
        /// Its end offset.
        end: usize,
        /// The buffer length.
        len: usize,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointIoError + '_ {
    move |source| CheckpointIoError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Write `bytes` to `path` crash-safely: write a temporary file in the same
/// directory, fsync it, rename it over `path`, fsync the directory. A crash at any
/// point leaves either the old file or the new one under `path`, never a mix.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), CheckpointIoError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = File::create(&tmp).map_err(io_err(&tmp))?;
        file.write_all(bytes).map_err(io_err(&tmp))?;
        file.sync_all().map_err(io_err(&tmp))?;
        drop(file);
        fs::rename(&tmp, path).map_err(io_err(path))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Serialise the tensors `specs` (views into `flat`) as safetensors bytes, with
/// `metadata` in the header.
pub fn to_safetensors(
    specs: &[TensorSpec],
    flat: &[f32],
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<u8>, CheckpointIoError> {
    let bytes: Vec<u8> = flat.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut views = Vec::with_capacity(specs.len());
    for spec in specs {
        let end = spec.offset + spec.numel();
        if end > flat.len() {
            return Err(CheckpointIoError::Layout {
                name: spec.name.clone(),
                end,
                len: flat.len(),
            });
        }
        let data = &bytes[spec.offset * 4..end * 4];
        let view = TensorView::new(Dtype::F32, spec.shape.clone(), data).map_err(|e| {
            CheckpointIoError::Format {
                path: PathBuf::from("<memory>"),
                reason: e.to_string(),
            }
        })?;
        views.push((spec.name.clone(), view));
    }
    let bytes = safetensors::serialize(views, metadata).map_err(|e| CheckpointIoError::Format {
        path: PathBuf::from("<memory>"),
        reason: e.to_string(),
    })?;
    Ok(canonical_header(bytes))
}

/// The same safetensors bytes with the header's JSON keys in sorted order (the
/// library writes the metadata map in hash order), so equal tensors and metadata
/// always give equal files. The header stays padded with spaces to 8 bytes and the
/// data offsets are relative to the data section, which does not move.
fn canonical_header(bytes: Vec<u8>) -> Vec<u8> {
    let parsed = bytes
        .get(..8)
        .and_then(|n| Some(u64::from_le_bytes(n.try_into().ok()?) as usize))
        .and_then(|n| Some((n, bytes.get(8..8usize.checked_add(n)?)?)))
        .and_then(|(n, h)| Some((n, serde_json::from_slice::<serde_json::Value>(h).ok()?)));
    let Some((n, header)) = parsed else {
        return bytes; // not ours to fix: the library wrote it
    };
    // serde_json's map is ordered by key (no `preserve_order` feature).
    let Ok(mut json) = serde_json::to_vec(&header) else {
        return bytes;
    };
    json.resize(json.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + json.len() + bytes.len() - 8 - n);
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(&bytes[8 + n..]);
    out
}

/// Read a safetensors file into a flat buffer of `len` floats laid out by `specs`,
/// checking that every tensor is present, F32, of the expected shape, and that the
/// file holds nothing else. Returns the buffer and the header metadata.
pub fn read_safetensors(
    path: &Path,
    specs: &[TensorSpec],
    len: usize,
) -> Result<(Vec<f32>, HashMap<String, String>), CheckpointIoError> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    from_safetensors(path, &bytes, specs, len)
}

/// As [`read_safetensors`], from bytes already in memory (`path` names them in errors).
pub fn from_safetensors(
    path: &Path,
    bytes: &[u8],
    specs: &[TensorSpec],
    len: usize,
) -> Result<(Vec<f32>, HashMap<String, String>), CheckpointIoError> {
    let format = |reason: String| CheckpointIoError::Format {
        path: path.to_owned(),
        reason,
    };
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| format(e.to_string()))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let tensors = SafeTensors::deserialize(bytes).map_err(|e| format(e.to_string()))?;
    let mut flat = vec![0.0f32; len];
    for spec in specs {
        let view = tensors
            .tensor(&spec.name)
            .map_err(|_| CheckpointIoError::Missing {
                path: path.to_owned(),
                name: spec.name.clone(),
            })?;
        if view.dtype() != Dtype::F32 {
            return Err(CheckpointIoError::Dtype {
                path: path.to_owned(),
                name: spec.name.clone(),
                found: view.dtype().to_string(),
            });
        }
        if view.shape() != spec.shape.as_slice() {
            return Err(CheckpointIoError::Shape {
                path: path.to_owned(),
                name: spec.name.clone(),
                found: view.shape().to_vec(),
                expected: spec.shape.clone(),
            });
        }
        let end = spec.offset + spec.numel();
        let dst = flat
            .get_mut(spec.offset..end)
            .ok_or(CheckpointIoError::Layout {
                name: spec.name.clone(),
                end,
                len,
            })?;
        for (d, chunk) in dst.iter_mut().zip(view.data().chunks_exact(4)) {
            *d = f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
    }
    if let Some(extra) = tensors
        .names()
        .into_iter()
        .find(|n| !specs.iter().any(|s| s.name == **n))
    {
        return Err(CheckpointIoError::Unexpected {
            path: path.to_owned(),
            name: extra.to_string(),
        });
    }
    Ok((flat, metadata))
}
