//! From image files to the tensors a model reads, and back.
//!
//! 1. decode a PNG or JPEG file (or bytes) and convert it to 8-bit RGB
//!    ([`load_image`], [`load_image_bytes`]);
//! 2. resize it to the model's `H × W` (bilinear, "triangle" filter);
//! 3. scale to `[0, 1]` and normalise each channel: `x = (v/255 − mean_c) / std_c`
//!    ([`Preprocess::to_tensor`]), giving `[C = 3, H, W]`;
//! 4. stack several into a batch `[B, 3, H, W]` ([`stack_images`]).
//!
//! [`Preprocess::to_image`] undoes 3 and [`save_png`] writes a tensor out,
//! for figures. Files come from users, so every failure (a missing file, a
//! corrupt or truncated one, another format, something that is not a file
//! at all, a picture too large to decode) is an [`ImageError`] that names
//! the file; nothing here panics on bad input, and nothing reads or
//! allocates without a bound: at most [`MAX_FILE_BYTES`] are read, and a
//! header announcing more than [`MAX_SIDE`] pixels a side (a "decompression
//! bomb": a few bytes that inflate to gigabytes) is refused before
//! decoding.

use std::error::Error;
use std::fmt;
use std::io;
use std::path::Path;

use image::imageops::FilterType;
use image::{ImageFormat, ImageReader, RgbImage};
use ndarray::{Array3, Array4, ArrayRef3, Axis};

/// Everything that can go wrong between a file and a tensor.
#[derive(Debug)]
pub enum ImageError {
    /// The file could not be opened, read or written (missing, permissions, …).
    Io {
        /// The file.
        path: String,
        /// What the operating system said.
        source: io::Error,
    },
    /// Not a format this crate decodes (PNG and JPEG), or not an image at all.
    Unsupported {
        /// The file, or the name given to the bytes.
        path: String,
        /// What the decoder said.
        reason: String,
    },
    /// A PNG or JPEG whose data is broken: corrupt or truncated.
    Decode {
        /// The file, or the name given to the bytes.
        path: String,
        /// What the decoder said.
        reason: String,
    },
    /// A file larger than [`MAX_FILE_BYTES`], or a picture whose header
    /// announces more pixels than [`MAX_SIDE`] a side or more memory than
    /// [`MAX_DECODE_BYTES`] to decode.
    TooLarge {
        /// The file, or the name given to the bytes.
        path: String,
        /// What is too large.
        reason: String,
    },
    /// The PNG encoder failed while writing the file.
    Encode {
        /// The file that was being written.
        path: String,
        /// What the encoder said.
        reason: String,
    },
    /// A tensor that cannot be written as an image (`save_png` takes `[1 or 3, H, W]`).
    BadTensor {
        /// The file that was to be written.
        path: String,
        /// The tensor's shape.
        shape: Vec<usize>,
    },
    /// Images of different sizes in one batch.
    SizeMismatch {
        /// Position of the first image that differs.
        index: usize,
        /// Its shape `[C, H, W]`.
        got: (usize, usize, usize),
        /// The shape of image 0.
        want: (usize, usize, usize),
    },
    /// An empty list of images, where a batch needs at least one.
    EmptyBatch,
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageError::Io { path, source } => write!(f, "{path}: {source}"),
            ImageError::Unsupported { path, reason } => write!(
                f,
                "{path}: unsupported image format ({reason}); png and jpeg are supported"
            ),
            ImageError::Decode { path, reason } => {
                write!(f, "{path}: corrupt or truncated image ({reason})")
            }
            ImageError::TooLarge { path, reason } => {
                write!(f, "{path}: image too large ({reason})")
            }
            ImageError::Encode { path, reason } => {
                write!(f, "{path}: cannot encode the image ({reason})")
            }
            ImageError::BadTensor { path, shape } => write!(
                f,
                "{path}: cannot write a tensor of shape {shape:?} as an image; want [1 or 3, H, W]"
            ),
            ImageError::SizeMismatch { index, got, want } => write!(
                f,
                "image {index} is {got:?} but image 0 is {want:?}; resize them to one size first"
            ),
            ImageError::EmptyBatch => write!(f, "a batch needs at least one image"),
        }
    }
}

impl Error for ImageError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            ImageError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Sorts the `image` crate's error into ours, naming the file.
fn classify(path: &str, err: image::ImageError) -> ImageError {
    let path = path.to_string();
    match err {
        image::ImageError::IoError(source) => {
            // the decoders report a file that ends early as an I/O error
            if source.kind() == io::ErrorKind::UnexpectedEof {
                ImageError::Decode {
                    path,
                    reason: source.to_string(),
                }
            } else {
                ImageError::Io { path, source }
            }
        }
        image::ImageError::Unsupported(e) => ImageError::Unsupported {
            path,
            reason: e.to_string(),
        },
        image::ImageError::Limits(e) => ImageError::TooLarge {
            path,
            reason: format!(
                "{e}; at most {MAX_SIDE}×{MAX_SIDE} pixels and {} MiB to decode",
                MAX_DECODE_BYTES >> 20
            ),
        },
        other => ImageError::Decode {
            path,
            reason: other.to_string(),
        },
    }
}

/// The largest image file read: 64 MiB, several times a large photo.
pub const MAX_FILE_BYTES: u64 = 64 << 20;

/// The most pixels a side of a decoded image may have.
pub const MAX_SIDE: u32 = 8_192;

/// The most memory the decoder may allocate for one image: 256 MiB.
pub const MAX_DECODE_BYTES: u64 = 256 << 20;

// ANCHOR: load_image
/// Reads a PNG or JPEG file as 8-bit RGB (grey and alpha are converted).
///
/// The format is guessed from the content, not the extension. Only a
/// regular file is read (a FIFO would block forever, `/dev/zero` never
/// ends), and at most [`MAX_FILE_BYTES`] of it.
///
/// # Errors
/// [`ImageError::Io`] if the file cannot be read or is not a regular file,
/// [`ImageError::TooLarge`] if it is larger than [`MAX_FILE_BYTES`] or
/// announces too many pixels, [`ImageError::Unsupported`] if it is not a
/// PNG or JPEG, [`ImageError::Decode`] if it is corrupt or truncated.
pub fn load_image(path: impl AsRef<Path>) -> Result<RgbImage, ImageError> {
    use io::Read;
    let path = path.as_ref();
    let name = path.display().to_string();
    let io_error = |source| ImageError::Io {
        path: name.clone(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io_error)?; // follows symbolic links
    if !meta.is_file() {
        return Err(io_error(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        )));
    }
    let too_large = |len: u64| ImageError::TooLarge {
        path: name.clone(),
        reason: format!(
            "the file holds {len} bytes; at most {} MiB are read",
            MAX_FILE_BYTES >> 20
        ),
    };
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_large(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(io_error)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(bytes.len() as u64)); // it grew since `metadata`
    }
    load_image_bytes(&bytes, &name)
}

/// Decodes PNG or JPEG bytes as 8-bit RGB; `name` labels them in errors.
///
/// # Errors
/// [`ImageError::Unsupported`] if the bytes are not a PNG or JPEG,
/// [`ImageError::Decode`] if they are corrupt or truncated,
/// [`ImageError::TooLarge`] if the header announces more than [`MAX_SIDE`]
/// pixels a side or more than [`MAX_DECODE_BYTES`] to decode.
pub fn load_image_bytes(bytes: &[u8], name: &str) -> Result<RgbImage, ImageError> {
    let mut reader = ImageReader::new(io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|source| ImageError::Io {
            path: name.to_string(),
            source,
        })?;
    match reader.format() {
        Some(ImageFormat::Png | ImageFormat::Jpeg) => {}
        Some(other) => {
            return Err(ImageError::Unsupported {
                path: name.to_string(),
                reason: format!("{other:?}"),
            });
        }
        None => {
            return Err(ImageError::Unsupported {
                path: name.to_string(),
                reason: "not a known image format".to_string(),
            });
        }
    }
    // the JPEG decoder fills a file cut short with grey and says nothing:
    // check that the data reaches its end-of-image marker first
    if reader.format() == Some(ImageFormat::Jpeg) && !jpeg_is_complete(bytes) {
        return Err(ImageError::Decode {
            path: name.to_string(),
            reason: "the JPEG data ends before its end-of-image marker".to_string(),
        });
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let image = reader.decode().map_err(|e| classify(name, e))?;
    Ok(image.to_rgb8())
}
// ANCHOR_END: load_image

// ANCHOR: jpeg_is_complete
/// Whether JPEG bytes run from the start-of-image marker (`FF D8`) to the
/// end-of-image marker (`FF D9`), walking the file's segments: each marker
/// `FF xx` is followed by a two-byte length and its data (so a thumbnail
/// inside the EXIF segment is skipped whole), except the restart markers
/// `FF D0`–`FF D7`; after a start-of-scan segment (`FF DA`) comes the
/// compressed data, where a literal `FF` byte is written `FF 00`, so the
/// next `FF` not followed by `00` or a restart marker is the next marker.
/// Bytes after the end-of-image marker are allowed (some cameras append
/// data there).
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return false;
    }
    let mut i = 2;
    loop {
        // a marker: one or more FF bytes (the extra ones are fill), then its code
        if bytes.get(i) != Some(&0xFF) {
            return false;
        }
        while bytes.get(i) == Some(&0xFF) {
            i += 1;
        }
        let Some(&marker) = bytes.get(i) else {
            return false;
        };
        i += 1;
        match marker {
            0xD9 => return true,            // end of image
            0xD0..=0xD7 | 0x01 => continue, // restart markers and TEM carry no length
            _ => {}
        }
        let Some(length) = bytes.get(i..i + 2) else {
            return false;
        };
        let length = u16::from_be_bytes([length[0], length[1]]) as usize;
        if length < 2 {
            return false;
        }
        i += length; // the length counts its own two bytes
        if i > bytes.len() {
            return false;
        }
        if marker == 0xDA {
            // compressed data until a real marker
            loop {
                let Some(at) = bytes[i..].iter().position(|&b| b == 0xFF) else {
                    return false;
                };
                i += at;
                match bytes.get(i + 1) {
                    None => return false,
                    Some(0x00 | 0xD0..=0xD7) => i += 2, // a literal FF, or a restart
                    Some(_) => break,                   // a marker (FF fill bytes included)
                }
            }
        }
    }
}
// ANCHOR_END: jpeg_is_complete

/// How pixels become model input: the size and the per-channel normalisation.
#[derive(Debug, Clone, PartialEq)]
pub struct Preprocess {
    /// Output height `H` in pixels.
    pub height: usize,
    /// Output width `W` in pixels.
    pub width: usize,
    /// Per-channel mean (R, G, B) subtracted after scaling to `[0, 1]`.
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided by after the mean.
    pub std: [f32; 3],
}

// ANCHOR: preprocess_presets
impl Default for Preprocess {
    /// 32×32, `mean = std = 0.5`: pixel values land in `[−1, 1]`, centred.
    /// (The model the `train` crate trains keeps its pixels in `[0, 1]`
    /// instead, with mean 0 and std 1: `train::data::folder::preprocess`.)
    fn default() -> Self {
        Preprocess {
            height: 32,
            width: 32,
            mean: [0.5; 3],
            std: [0.5; 3],
        }
    }
}

impl Preprocess {
    /// ImageNet's statistics at 224×224, what pretrained torchvision models expect.
    pub fn imagenet() -> Self {
        Preprocess {
            height: 224,
            width: 224,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
        }
    }
    // ANCHOR_END: preprocess_presets

    // ANCHOR: to_tensor
    /// Resizes (if needed) and normalises an RGB image.
    ///
    /// # Shapes
    /// - image `W_img × H_img` → `[3, H, W]`
    pub fn to_tensor(&self, image: &RgbImage) -> Array3<f32> {
        let resized;
        let image =
            if (image.height() as usize, image.width() as usize) == (self.height, self.width) {
                image
            } else {
                resized = image::imageops::resize(
                    image,
                    self.width as u32,
                    self.height as u32,
                    FilterType::Triangle, // bilinear: smooth, and cheap at these sizes
                );
                &resized
            };
        Array3::from_shape_fn((3, self.height, self.width), |(c, y, x)| {
            let v = image.get_pixel(x as u32, y as u32)[c] as f32 / 255.0; // [0, 1]
            (v - self.mean[c]) / self.std[c]
        })
    }
    // ANCHOR_END: to_tensor

    /// Undoes the normalisation: `[3, H, W]` back to an RGB image (values clamped to `0..=255`).
    ///
    /// # Panics
    /// If the tensor does not have 3 channels.
    #[track_caller]
    pub fn to_image(&self, tensor: &ArrayRef3<f32>) -> RgbImage {
        let (channels, height, width) = tensor.dim();
        assert_eq!(
            channels,
            3,
            "to_image: tensor is {:?}, want [3, H, W]",
            tensor.dim()
        );
        RgbImage::from_fn(width as u32, height as u32, |x, y| {
            image::Rgb(std::array::from_fn(|c| {
                let v = tensor[[c, y as usize, x as usize]] * self.std[c] + self.mean[c];
                (v * 255.0).round().clamp(0.0, 255.0) as u8
            }))
        })
    }

    /// [`load_image`] then [`Preprocess::to_tensor`]: a file to `[3, H, W]`.
    ///
    /// # Errors
    /// As [`load_image`].
    pub fn load(&self, path: impl AsRef<Path>) -> Result<Array3<f32>, ImageError> {
        Ok(self.to_tensor(&load_image(path)?))
    }

    /// Several files to one batch `[B, 3, H, W]`.
    ///
    /// # Errors
    /// The first file's [`ImageError`], or [`ImageError::EmptyBatch`] for no paths.
    pub fn load_batch<P: AsRef<Path>>(&self, paths: &[P]) -> Result<Array4<f32>, ImageError> {
        let tensors = paths
            .iter()
            .map(|p| self.load(p))
            .collect::<Result<Vec<_>, _>>()?;
        stack_images(&tensors)
    }
}

/// Stacks `[C, H, W]` tensors into a batch `[B, C, H, W]`.
///
/// # Errors
/// [`ImageError::SizeMismatch`] if the shapes differ, [`ImageError::EmptyBatch`] for none.
pub fn stack_images(images: &[Array3<f32>]) -> Result<Array4<f32>, ImageError> {
    let first = images.first().ok_or(ImageError::EmptyBatch)?;
    let want = first.dim();
    if let Some((index, image)) = images.iter().enumerate().find(|(_, im)| im.dim() != want) {
        return Err(ImageError::SizeMismatch {
            index,
            got: image.dim(),
            want,
        });
    }
    let views: Vec<_> = images.iter().map(|im| im.view()).collect();
    Ok(ndarray::stack(Axis(0), &views).unwrap()) // shapes checked above
}

// ANCHOR: save_png
/// Writes a tensor with values in `[0, 1]` as a PNG: `[3, H, W]` as colour,
/// `[1, H, W]` as grey. Values outside `[0, 1]` are clamped.
///
/// # Errors
/// [`ImageError::BadTensor`] for another channel count, [`ImageError::Io`]
/// if the file cannot be written, [`ImageError::Encode`] if encoding fails.
pub fn save_png(tensor: &ArrayRef3<f32>, path: impl AsRef<Path>) -> Result<(), ImageError> {
    let path = path.as_ref();
    let name = path.display().to_string();
    let (channels, height, width) = tensor.dim();
    let to_byte = |v: f32| (v * 255.0).round().clamp(0.0, 255.0) as u8;
    let result = match channels {
        3 => RgbImage::from_fn(width as u32, height as u32, |x, y| {
            image::Rgb(std::array::from_fn(|c| {
                to_byte(tensor[[c, y as usize, x as usize]])
            }))
        })
        .save_with_format(path, ImageFormat::Png),
        1 => image::GrayImage::from_fn(width as u32, height as u32, |x, y| {
            image::Luma([to_byte(tensor[[0, y as usize, x as usize]])])
        })
        .save_with_format(path, ImageFormat::Png),
        _ => {
            return Err(ImageError::BadTensor {
                path: name,
                shape: tensor.shape().to_vec(),
            });
        }
    };
    result.map_err(|e| match e {
        image::ImageError::IoError(source) => ImageError::Io { path: name, source },
        other => ImageError::Encode {
            path: name,
            reason: other.to_string(),
        },
    })
}
// ANCHOR_END: save_png

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A fresh directory under the system temp dir, unique to this test.
    fn temp_dir(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vision-images-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A small RGB picture with a different value in every pixel and channel.
    fn gradient(width: u32, height: u32) -> RgbImage {
        RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x * 40) as u8, (y * 30) as u8, ((x + y) * 10) as u8])
        })
    }

    fn encoded(image: &RgbImage, format: ImageFormat) -> Vec<u8> {
        let mut bytes = io::Cursor::new(Vec::new());
        image.write_to(&mut bytes, format).unwrap();
        bytes.into_inner()
    }

    #[test]
    fn png_round_trip_through_a_tensor() {
        let dir = temp_dir("png_round_trip");
        let path = dir.join("a.png");
        let original = gradient(5, 4);
        original.save(&path).unwrap();

        let pre = Preprocess {
            height: 4,
            width: 5,
            ..Preprocess::default()
        };
        let tensor = pre.load(&path).unwrap();
        assert_eq!(tensor.dim(), (3, 4, 5));
        // pixel (x = 2, y = 1), red = 80: (80/255 − 0.5)/0.5
        assert!((tensor[[0, 1, 2]] - (80.0 / 255.0 - 0.5) / 0.5).abs() < 1e-6);
        assert_eq!(pre.to_image(&tensor), original);
    }

    #[test]
    fn jpeg_and_grey_images_become_rgb() {
        let jpeg = encoded(&gradient(8, 8), ImageFormat::Jpeg);
        assert_eq!(
            load_image_bytes(&jpeg, "x.jpg").unwrap().dimensions(),
            (8, 8)
        );

        let grey = image::GrayImage::from_pixel(3, 2, image::Luma([200]));
        let mut png = io::Cursor::new(Vec::new());
        grey.write_to(&mut png, ImageFormat::Png).unwrap();
        let rgb = load_image_bytes(png.get_ref(), "grey.png").unwrap();
        assert_eq!(rgb.get_pixel(2, 1), &image::Rgb([200, 200, 200]));
    }

    #[test]
    fn resize_to_model_size() {
        let pre = Preprocess::default();
        let tensor = pre.to_tensor(&gradient(50, 20));
        assert_eq!(tensor.dim(), (3, 32, 32));
        let flat = pre.to_tensor(&RgbImage::from_pixel(7, 9, image::Rgb([255, 0, 127])));
        assert!(
            flat.index_axis(Axis(0), 0)
                .iter()
                .all(|&v| (v - 1.0).abs() < 1e-6)
        );
        assert!(
            flat.index_axis(Axis(0), 1)
                .iter()
                .all(|&v| (v + 1.0).abs() < 1e-6)
        );
    }

    #[test]
    fn missing_file_is_an_io_error_naming_it() {
        let path = temp_dir("missing").join("nope.png");
        let err = load_image(&path).unwrap_err();
        assert!(matches!(err, ImageError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains("nope.png"), "{err}");
        assert!(err.source().is_some());
    }

    #[test]
    fn corrupt_file_is_unsupported_naming_it() {
        let path = temp_dir("corrupt").join("noise.png");
        std::fs::write(&path, b"this is not an image at all, just text").unwrap();
        let err = load_image(&path).unwrap_err();
        assert!(matches!(err, ImageError::Unsupported { .. }), "{err:?}");
        assert!(err.to_string().contains("noise.png"), "{err}");
    }

    #[test]
    fn empty_file_is_an_error() {
        let path = temp_dir("empty").join("empty.jpg");
        std::fs::write(&path, b"").unwrap();
        let err = load_image(&path).unwrap_err();
        assert!(err.to_string().contains("empty.jpg"), "{err}");
    }

    #[test]
    fn truncated_png_is_a_decode_error() {
        let dir = temp_dir("truncated_png");
        let bytes = encoded(&gradient(16, 16), ImageFormat::Png);
        let path = dir.join("cut.png");
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let err = load_image(&path).unwrap_err();
        assert!(matches!(err, ImageError::Decode { .. }), "{err:?}");
        assert!(err.to_string().contains("cut.png"), "{err}");
    }

    #[test]
    fn corrupt_png_body_is_a_decode_error() {
        let mut bytes = encoded(&gradient(16, 16), ImageFormat::Png);
        let n = bytes.len();
        for b in &mut bytes[40..n - 20] {
            *b ^= 0x5a; // scramble everything after the header
        }
        let err = load_image_bytes(&bytes, "scrambled.png").unwrap_err();
        assert!(matches!(err, ImageError::Decode { .. }), "{err:?}");
    }

    #[test]
    fn truncated_jpeg_is_a_decode_error() {
        let bytes = encoded(&gradient(16, 16), ImageFormat::Jpeg);
        let err = load_image_bytes(&bytes[..20], "cut.jpg").unwrap_err();
        assert!(matches!(err, ImageError::Decode { .. }), "{err:?}");
        assert!(err.to_string().contains("cut.jpg"), "{err}");
    }

    #[test]
    fn a_jpeg_cut_anywhere_is_a_decode_error() {
        // large enough for several restart-free scan bytes and a real header
        let image = RgbImage::from_fn(40, 24, |x, y| {
            image::Rgb([(x * 6) as u8, (y * 9) as u8, 77])
        });
        let bytes = encoded(&image, ImageFormat::Jpeg);
        assert!(load_image_bytes(&bytes, "whole.jpg").is_ok());
        for cut in (4..bytes.len())
            .step_by(7)
            .chain([bytes.len() - 2, bytes.len() - 1])
        {
            let err = load_image_bytes(&bytes[..cut], "cut.jpg").unwrap_err();
            assert!(
                matches!(err, ImageError::Decode { .. }),
                "cut at {cut} of {}: {err:?}",
                bytes.len()
            );
            assert!(err.to_string().contains("cut.jpg"), "{err}");
        }
        // bytes after the end-of-image marker are not a truncation
        let mut trailing = bytes.clone();
        trailing.extend_from_slice(b"camera data");
        assert!(load_image_bytes(&trailing, "trailing.jpg").is_ok());
    }

    /// CRC-32 (IEEE), as PNG chunks carry it.
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn a_decompression_bomb_is_too_large_not_corrupt() {
        // a real 1×1 PNG whose header then claims 100000 × 100000 pixels (30 GB)
        let mut bytes = encoded(&gradient(1, 1), ImageFormat::Png);
        // signature (8), length (4), "IHDR" (4), width, height, ...
        bytes[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        bytes[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let crc = crc32(&bytes[12..29]); // type and 13 bytes of data
        bytes[29..33].copy_from_slice(&crc.to_be_bytes());
        let err = load_image_bytes(&bytes, "bomb.png").unwrap_err();
        assert!(matches!(err, ImageError::TooLarge { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("bomb.png: image too large"), "{text}");
        assert!(!text.contains("corrupt"), "{text}");
    }

    #[test]
    fn only_regular_files_of_bounded_size_are_read() {
        let dir = temp_dir("not_files");
        let err = load_image(&dir).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        if Path::new("/dev/zero").exists() {
            let err = load_image("/dev/zero").unwrap_err();
            assert!(
                err.to_string().contains("/dev/zero: not a regular file"),
                "{err}"
            );
        }
        let fifo = dir.join("fifo.png");
        let _ = std::fs::remove_file(&fifo);
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            // reading it would block until a writer came: it is refused instead
            let err = load_image(&fifo).unwrap_err();
            assert!(err.to_string().contains("not a regular file"), "{err}");
        }
        // a sparse file one byte over the limit: refused before reading
        let big = dir.join("big.png");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(MAX_FILE_BYTES + 1)
            .unwrap();
        let err = load_image(&big).unwrap_err();
        assert!(matches!(err, ImageError::TooLarge { .. }), "{err:?}");
        std::fs::remove_file(&big).unwrap();
    }

    #[test]
    fn other_formats_are_unsupported() {
        // a valid 1×1 BMP header and pixel: a real image, in a format we do not decode
        let mut bmp = Vec::new();
        bmp.extend_from_slice(b"BM");
        bmp.extend_from_slice(&58u32.to_le_bytes()); // file size
        bmp.extend_from_slice(&[0; 4]);
        bmp.extend_from_slice(&54u32.to_le_bytes()); // pixel data offset
        bmp.extend_from_slice(&40u32.to_le_bytes()); // info header size
        bmp.extend_from_slice(&1i32.to_le_bytes()); // width
        bmp.extend_from_slice(&1i32.to_le_bytes()); // height
        bmp.extend_from_slice(&1u16.to_le_bytes()); // planes
        bmp.extend_from_slice(&24u16.to_le_bytes()); // bits per pixel
        bmp.extend_from_slice(&[0; 24]);
        bmp.extend_from_slice(&[0, 0, 255, 0]); // one red pixel, padded row
        let err = load_image_bytes(&bmp, "photo.bmp").unwrap_err();
        assert!(matches!(err, ImageError::Unsupported { .. }), "{err:?}");
        assert!(err.to_string().contains("photo.bmp"), "{err}");
        assert!(err.to_string().contains("png and jpeg"), "{err}");
    }

    #[test]
    fn batch_of_files_and_mismatched_sizes() {
        let dir = temp_dir("batch");
        let (a, b) = (dir.join("a.png"), dir.join("b.png"));
        gradient(6, 6).save(&a).unwrap();
        gradient(3, 9).save(&b).unwrap();
        let pre = Preprocess {
            height: 8,
            width: 8,
            ..Preprocess::default()
        };
        assert_eq!(pre.load_batch(&[&a, &b]).unwrap().dim(), (2, 3, 8, 8));
        let err = pre.load_batch(&[a.clone(), dir.join("c.png")]).unwrap_err();
        assert!(err.to_string().contains("c.png"), "{err}");

        let err = stack_images(&[Array3::zeros((3, 4, 4)), Array3::zeros((3, 4, 5))]).unwrap_err();
        assert!(
            matches!(
                err,
                ImageError::SizeMismatch {
                    index: 1,
                    got: (3, 4, 5),
                    want: (3, 4, 4)
                }
            ),
            "{err:?}"
        );
        assert!(matches!(stack_images(&[]), Err(ImageError::EmptyBatch)));
    }

    #[test]
    fn save_png_writes_grey_and_colour_and_rejects_other_shapes() {
        let dir = temp_dir("save");
        let grey = Array3::from_shape_fn((1, 2, 3), |(_, y, x)| (y * 3 + x) as f32 / 5.0);
        save_png(&grey, dir.join("g.png")).unwrap();
        let back = image::open(dir.join("g.png")).unwrap().to_luma8();
        assert_eq!(back.get_pixel(2, 1), &image::Luma([255]));
        assert_eq!(back.get_pixel(1, 0), &image::Luma([51]));

        let colour = Array3::from_elem((3, 2, 2), 2.0); // clamped to white
        save_png(&colour, dir.join("c.png")).unwrap();
        assert_eq!(
            load_image(dir.join("c.png")).unwrap().get_pixel(0, 0),
            &image::Rgb([255; 3])
        );

        let err = save_png(&Array3::zeros((2, 2, 2)), dir.join("two.png")).unwrap_err();
        assert!(matches!(err, ImageError::BadTensor { .. }), "{err:?}");
        let err = save_png(&grey, dir.join("no-such-dir").join("x.png")).unwrap_err();
        assert!(matches!(err, ImageError::Io { .. }), "{err:?}");
    }
}
