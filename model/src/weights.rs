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
//! It also checks what it reads before allocating or trusting it: a file
//! much larger (or smaller) than the module's tensors is refused before it
//! is read, and a tensor holding a NaN or an infinity is refused by name,
//! so a damaged checkpoint never reaches the model.
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
    /// The file's size is far from what the module's tensors take (see
    /// [`sizes_fit`]): it is not read.
    Size {
        path: PathBuf,
        /// Bytes in the file.
        file: u64,
        /// Bytes the module's tensors take.
        tensors: u64,
    },
    /// A tensor holds NaN or infinite values: the file is damaged, or was
    /// saved from a training that diverged.
    NonFinite {
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// How many of its values are not finite.
        count: usize,
    },
}

/// Whether a weights file of `file` bytes can hold tensors of `tensors`
/// bytes: neither may be more than twice the other plus 1 MiB (the header
/// and some slack). Anything further apart cannot be the same tensors, so
/// the file is refused before it is read or a model of that size is built;
/// anything closer gets the tensor-by-tensor comparison of [`load_weights`].
pub fn sizes_fit(file: u64, tensors: u64) -> bool {
    const SLACK: u64 = 1 << 20;
    let within = |a: u64, b: u64| a <= b.saturating_mul(2).saturating_add(SLACK);
    within(file, tensors) && within(tensors, file)
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
            WeightsError::Size {
                path,
                file,
                tensors,
            } => write!(
                f,
                "{}: the file holds {file} bytes but the model's tensors take {tensors}: \
                 they do not belong together",
                path.display()
            ),
            WeightsError::NonFinite { path, name, count } => write!(
                f,
                "{}: tensor {name} holds {count} NaN or infinite value(s): \
                 the weights are damaged or come from a training that diverged",
                path.display()
            ),
        }
    }
}

impl std::error::Error for WeightsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WeightsError::Io { source, .. } => Some(source),
            WeightsError::Format { source, .. } => Some(source),
            WeightsError::Mismatch { .. }
            | WeightsError::Size { .. }
            | WeightsError::NonFinite { .. } => None,
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

/// Reads a file a user may have pointed anywhere: only a regular file (not
/// a FIFO that blocks forever, not `/dev/zero` that never ends), and at
/// most `limit` bytes of it.
///
/// # Errors
/// The I/O error; [`io::ErrorKind::InvalidInput`] for something that is
/// not a regular file, [`io::ErrorKind::FileTooLarge`] for a file longer
/// than `limit`.
pub fn read_limited(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    use io::Read;
    let meta = fs::metadata(path)?; // follows symbolic links
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let too_large = |len: u64| {
        io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("the file holds {len} bytes, more than the {limit} allowed"),
        )
    };
    if meta.len() > limit {
        return Err(too_large(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    fs::File::open(path)?
        .take(limit + 1) // the file may have grown since `metadata`
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
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
/// Nothing is changed unless every name and shape matches and every value
/// is finite.
///
/// # Errors
/// [`WeightsError::Io`] for an unreadable file, [`WeightsError::Size`] for
/// one whose size cannot match the module's (not read),
/// [`WeightsError::Format`] for a truncated or corrupt one,
/// [`WeightsError::Mismatch`] listing every missing, unexpected or wrongly
/// shaped tensor, [`WeightsError::NonFinite`] naming the first tensor that
/// holds a NaN or an infinity.
pub fn load_weights<P: Params>(
    path: &Path,
    module: &mut P,
) -> Result<BTreeMap<String, String>, WeightsError> {
    let io_error = |source| WeightsError::Io {
        path: path.to_path_buf(),
        source,
    };
    // the file is read only if it can hold the module's tensors
    let tensors = 4 * module.num_params() as u64;
    let file = fs::metadata(path).map_err(io_error)?.len();
    if !sizes_fit(file, tensors) {
        return Err(WeightsError::Size {
            path: path.to_path_buf(),
            file,
            tensors,
        });
    }
    let limit = tensors.saturating_mul(2).saturating_add(1 << 20);
    let bytes = read_limited(path, limit).map_err(io_error)?;
    load_weights_from_bytes(&bytes, path, module)
}

/// [`load_weights`] on the bytes of a file already read; `path` names it
/// in errors.
///
/// # Errors
/// As [`load_weights`], [`WeightsError::Size`] included.
pub fn load_weights_from_bytes<P: Params>(
    bytes: &[u8],
    path: &Path,
    module: &mut P,
) -> Result<BTreeMap<String, String>, WeightsError> {
    let tensors = 4 * module.num_params() as u64;
    if !sizes_fit(bytes.len() as u64, tensors) {
        return Err(WeightsError::Size {
            path: path.to_path_buf(),
            file: bytes.len() as u64,
            tensors,
        });
    }
    let file = safetensors::from_bytes(bytes).map_err(|source| WeightsError::Format {
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
    // a NaN would silently poison every output (`argmax` of NaN logits,
    // "NaN %" probabilities): refuse it here, by name
    for (name, tensor) in &stored {
        let count = tensor.iter().filter(|v| !v.is_finite()).count();
        if count > 0 {
            return Err(WeightsError::NonFinite {
                path: path.to_path_buf(),
                name: name.clone(),
                count,
            });
        }
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
    fn a_non_finite_value_is_refused_by_name_and_nothing_is_changed() {
        let path = temp("nan.safetensors");
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut saved = two_layers(0);
            saved[1].weight[[1, 2]] = bad;
            save_weights(&path, &saved, &BTreeMap::new()).unwrap();
            let mut target = two_layers(3);
            let before = target.clone();
            let err = load_weights(&path, &mut target).unwrap_err();
            assert!(
                matches!(&err, WeightsError::NonFinite { name, count: 1, .. } if name == "1.weight"),
                "{err}"
            );
            assert!(
                err.to_string()
                    .contains("nan.safetensors: tensor 1.weight holds 1 NaN or infinite value"),
                "{err}"
            );
            assert_eq!(target, before);
        }
    }

    #[test]
    fn a_file_far_larger_than_the_module_is_not_read() {
        let path = temp("huge.safetensors");
        // 600k floats: 2.4 MB, against a module of 24 floats
        let big = vec![
            LinearConfig {
                c_in: 1000,
                c_out: 600,
                bias: false,
            }
            .init(&mut StdRng::seed_from_u64(0)),
        ];
        save_weights(&path, &big, &BTreeMap::new()).unwrap();
        let err = load_weights(&path, &mut two_layers(0)).unwrap_err();
        assert!(
            matches!(err, WeightsError::Size { tensors: 96, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("do not belong together"), "{err}");
        // and the other way round: a module far larger than the file
        save_weights(&path, &two_layers(0), &BTreeMap::new()).unwrap();
        let err = load_weights(&path, &mut big.clone()).unwrap_err();
        assert!(matches!(err, WeightsError::Size { .. }), "{err}");
        assert!(sizes_fit(100, 4_000));
        assert!(!sizes_fit(3 << 20, 100));
        assert!(!sizes_fit(0, u64::MAX));
    }

    #[test]
    fn only_regular_files_of_bounded_size_are_read() {
        let path = temp("limited.bin");
        fs::write(&path, [7u8; 100]).unwrap();
        assert_eq!(read_limited(&path, 100).unwrap().len(), 100);
        let err = read_limited(&path, 99).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::FileTooLarge, "{err}");
        assert!(err.to_string().contains("100 bytes"), "{err}");
        // a folder, and a device that never ends
        let err = read_limited(path.parent().unwrap(), 1 << 20).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        if Path::new("/dev/zero").exists() {
            let err = read_limited(Path::new("/dev/zero"), 1 << 20).unwrap_err();
            assert!(err.to_string().contains("not a regular file"), "{err}");
        }
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
