//! Saving and loading the weights of any module that lists its parameters.
//!
//! The file is safetensors ([`crate::safetensors`]) and every tensor is
//! stored under its [`Params`] name (`text.blocks.0.attn.qkv.weight`) in its
//! PyTorch layout, so `model.load_state_dict(safetensors.torch.load_file(path))`
//! loads it into a PyTorch mirror of the same architecture, and back.
//!
//! Loading checks the file against the module before touching a single
//! weight: every name the module expects must be there with its shape, and
//! nothing else may be. All differences are reported at once.
//!
//! Writes are atomic: the bytes go to a temporary file beside the target,
//! which is flushed and then renamed over it. A crash leaves either the old
//! file or the new one, never half of one.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use embedding::Params;

use crate::safetensors::{self, FormatError};

/// Why weights could not be saved or loaded.
#[derive(Debug)]
pub enum WeightsError {
    /// The file could not be read or written.
    Io { path: PathBuf, source: io::Error },
    /// The file is not valid safetensors (truncated, corrupt header, …).
    Format { path: PathBuf, source: FormatError },
    /// The file is valid but does not hold this module's tensors.
    Mismatch {
        path: PathBuf,
        report: MismatchReport,
    },
}

/// How a weights file differs from the module it is loaded into.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MismatchReport {
    /// Names the module has and the file lacks.
    pub missing: Vec<String>,
    /// Names the file has and the module lacks.
    pub unexpected: Vec<String>,
    /// `(name, module's shape, file's shape)` for names in both with different shapes.
    pub wrong_shape: Vec<(String, Vec<usize>, Vec<usize>)>,
}

impl MismatchReport {
    fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.wrong_shape.is_empty()
    }
}

impl fmt::Display for MismatchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if !self.missing.is_empty() {
            parts.push(format!("missing {}", list(&self.missing)));
        }
        if !self.unexpected.is_empty() {
            parts.push(format!("unexpected {}", list(&self.unexpected)));
        }
        for (name, want, got) in &self.wrong_shape {
            parts.push(format!(
                "{name} is {got:?} in the file but {want:?} in the model"
            ));
        }
        write!(f, "{}", parts.join("; "))
    }
}

/// At most five names, then a count.
fn list(names: &[String]) -> String {
    let shown: Vec<&str> = names.iter().take(5).map(String::as_str).collect();
    match names.len() {
        n if n > 5 => format!("{} and {} more", shown.join(", "), n - 5),
        _ => shown.join(", "),
    }
}

impl fmt::Display for WeightsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WeightsError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            WeightsError::Format { path, source } => {
                write!(
                    f,
                    "{}: not a valid safetensors file: {source}",
                    path.display()
                )
            }
            WeightsError::Mismatch { path, report } => {
                write!(
                    f,
                    "{}: weights do not fit the model: {report}",
                    path.display()
                )
            }
        }
    }
}

impl std::error::Error for WeightsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WeightsError::Io { source, .. } => Some(source),
            WeightsError::Format { source, .. } => Some(source),
            WeightsError::Mismatch { .. } => None,
        }
    }
}

/// Writes `bytes` to a temporary file beside `path`, flushes it to disk, then
/// renames it over `path`.
///
/// # Errors
/// Any I/O error, with the temporary file removed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp); // best effort: the error that matters is `result`
    }
    result
}

// ANCHOR: save
/// Saves every parameter of `module` under its name, with `metadata` strings.
///
/// # Errors
/// [`WeightsError::Io`] if the file cannot be written.
pub fn save_weights<P: Params>(
    path: &Path,
    module: &P,
    metadata: &BTreeMap<String, String>,
) -> Result<(), WeightsError> {
    let bytes = safetensors::to_bytes(&module.params(), metadata);
    write_atomic(path, &bytes).map_err(|source| WeightsError::Io {
        path: path.to_path_buf(),
        source,
    })
}
// ANCHOR_END: save

// ANCHOR: load
/// Loads the weights in `path` into `module` and returns the file's metadata.
///
/// Nothing is changed unless every name and shape matches.
///
/// # Errors
/// [`WeightsError::Io`] for an unreadable file, [`WeightsError::Format`] for
/// a truncated or corrupt one, [`WeightsError::Mismatch`] listing every
/// missing, unexpected or wrongly shaped tensor.
pub fn load_weights<P: Params>(
    path: &Path,
    module: &mut P,
) -> Result<BTreeMap<String, String>, WeightsError> {
    let bytes = fs::read(path).map_err(|source| WeightsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let file = safetensors::from_bytes(&bytes).map_err(|source| WeightsError::Format {
        path: path.to_path_buf(),
        source,
    })?;
    let mut stored: BTreeMap<String, ndarray::ArrayD<f32>> = file.tensors.into_iter().collect();

    // compare before writing anything
    let mut report = MismatchReport::default();
    for (name, param) in module.params() {
        match stored.get(&name) {
            None => report.missing.push(name),
            Some(t) if t.shape() != param.shape() => {
                report
                    .wrong_shape
                    .push((name, param.shape().to_vec(), t.shape().to_vec()))
            }
            Some(_) => {}
        }
    }
    let expected: std::collections::BTreeSet<String> =
        module.params().into_iter().map(|(n, _)| n).collect();
    report.unexpected = stored
        .keys()
        .filter(|n| !expected.contains(*n))
        .cloned()
        .collect();
    if !report.is_empty() {
        return Err(WeightsError::Mismatch {
            path: path.to_path_buf(),
            report,
        });
    }

    for (name, mut param) in module.params_mut() {
        let tensor = stored.remove(&name).unwrap(); // every name checked above
        param.assign(&tensor);
    }
    Ok(file.metadata)
}
// ANCHOR_END: load

#[cfg(test)]
mod tests {
    use super::*;
    use embedding::{LinearConfig, init};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("model-weights-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    fn two_layers(seed: u64) -> Vec<embedding::Linear> {
        let mut rng = StdRng::seed_from_u64(seed);
        vec![
            LinearConfig {
                c_in: 3,
                c_out: 4,
                bias: true,
            }
            .init(&mut rng),
            LinearConfig {
                c_in: 4,
                c_out: 2,
                bias: false,
            }
            .init(&mut rng),
        ]
    }

    #[test]
    fn save_then_load_restores_every_value_and_metadata() {
        let path = temp("round.safetensors");
        let saved = two_layers(0);
        let meta = BTreeMap::from([("step".to_string(), "42".to_string())]);
        save_weights(&path, &saved, &meta).unwrap();
        let mut loaded = two_layers(1);
        assert_ne!(loaded, saved);
        assert_eq!(load_weights(&path, &mut loaded).unwrap(), meta);
        assert_eq!(loaded, saved);
    }

    #[test]
    fn mismatches_are_all_listed_and_nothing_is_changed() {
        let path = temp("mismatch.safetensors");
        let mut other = two_layers(0);
        other[0].weight = init::normal((5, 3), 1.0, &mut StdRng::seed_from_u64(2)); // wrong shape
        save_weights(&path, &vec![other[0].clone()], &BTreeMap::new()).unwrap(); // no "1.weight"

        let mut target = two_layers(3);
        let before = target.clone();
        let err = load_weights(&path, &mut target).unwrap_err();
        let WeightsError::Mismatch { report, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(report.missing, ["1.weight"]);
        assert!(report.unexpected.is_empty());
        assert_eq!(
            report.wrong_shape,
            [("0.weight".to_string(), vec![4, 3], vec![5, 3])]
        );
        assert!(
            err.to_string().contains(
                "missing 1.weight; 0.weight is [5, 3] in the file but [4, 3] in the model"
            ),
            "{err}"
        );
        assert_eq!(target, before);

        other[0].weight = before[0].weight.clone();
        other[1].bias = Some(ndarray::Array1::zeros(2)); // the file has "1.bias", the model not
        save_weights(&path, &other, &BTreeMap::new()).unwrap();
        let WeightsError::Mismatch { report, .. } = load_weights(&path, &mut target).unwrap_err()
        else {
            panic!("expected a mismatch")
        };
        assert_eq!((report.missing.len(), report.wrong_shape.len()), (0, 0));
        assert_eq!(report.unexpected, ["1.bias"]);
    }

    #[test]
    fn truncated_and_missing_files_are_named() {
        let path = temp("cut.safetensors");
        save_weights(&path, &two_layers(0), &BTreeMap::new()).unwrap();
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let err = load_weights(&path, &mut two_layers(0)).unwrap_err();
        assert!(matches!(err, WeightsError::Format { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("cut.safetensors: not a valid safetensors file: truncated"),
            "{err}"
        );

        let err = load_weights(&temp("nope.safetensors"), &mut two_layers(0)).unwrap_err();
        assert!(matches!(err, WeightsError::Io { .. }), "{err}");
        assert!(err.to_string().contains("nope.safetensors"), "{err}");
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary() {
        let path = temp("atomic.bin");
        write_atomic(&path, b"old").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        let leftovers = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains(".atomic.bin.tmp")
            })
            .count();
        assert_eq!(leftovers, 0);
    }
}
