//! The safetensors file format, read and written by hand.
//!
//! A safetensors file is three parts, in order:
//!
//! ```text
//! [ 8 bytes: N, the header length, little-endian u64 ]
//! [ N bytes: a JSON object, UTF-8                     ]
//! [ the data: every tensor's bytes, back to back      ]
//! ```
//!
//! The header maps each tensor's name to its dtype, shape and byte range in
//! the data part, plus an optional `"__metadata__"` object of strings:
//!
//! ```text
//! {"__metadata__":{"format":"pt"},
//!  "text.token_embedding.weight":{"dtype":"F32","shape":[512,64],"data_offsets":[0,131072]}}
//! ```
//!
//! Values are little-endian; we write and read `F32` only, which is all this
//! workspace's models hold. The format is the one of Hugging Face's
//! `safetensors` library (<https://github.com/huggingface/safetensors>), so
//! `safetensors.torch.load_file` in Python reads what we write, and we read
//! what it writes for f32 tensors.
//!
//! Reading never trusts the file: a short file, a header length past the end,
//! malformed JSON, an unknown dtype, a shape that does not match its byte
//! range, ranges that overlap or leave holes: each is an error that says what
//! was wrong, never a panic.

use std::collections::BTreeMap;
use std::fmt;

use ndarray::{ArrayD, ArrayViewD, IxDyn};

/// A tensor file's contents: named f32 tensors in file order, and metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensors {
    /// `(name, tensor)` in the order of their data.
    pub tensors: Vec<(String, ArrayD<f32>)>,
    /// The `__metadata__` strings (may be empty).
    pub metadata: BTreeMap<String, String>,
}

/// What is wrong with a safetensors byte string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatError {
    /// Fewer than 8 bytes, or a header length past the end of the file.
    Truncated { need: u64, have: u64 },
    /// The header is not the JSON object the format requires.
    Header(String),
    /// A tensor's dtype is not `F32`.
    Dtype { name: String, dtype: String },
    /// A tensor's byte range does not fit its shape, or lies outside the data.
    Range { name: String, reason: String },
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatError::Truncated { need, have } => {
                write!(f, "truncated: needs at least {need} bytes, has {have}")
            }
            FormatError::Header(why) => write!(f, "bad header: {why}"),
            FormatError::Dtype { name, dtype } => {
                write!(
                    f,
                    "tensor {name}: dtype {dtype} is not supported (only F32)"
                )
            }
            FormatError::Range { name, reason } => write!(f, "tensor {name}: {reason}"),
        }
    }
}

impl std::error::Error for FormatError {}

// ANCHOR: write
/// Serialises named f32 tensors and metadata to safetensors bytes.
pub fn to_bytes(
    tensors: &[(String, ArrayViewD<'_, f32>)],
    metadata: &BTreeMap<String, String>,
) -> Vec<u8> {
    // the header: names, dtypes, shapes and byte ranges, as JSON
    let mut header = String::from("{");
    if !metadata.is_empty() {
        header += "\"__metadata__\":{";
        let entries: Vec<String> = metadata
            .iter()
            .map(|(k, v)| format!("{}:{}", json_string(k), json_string(v)))
            .collect();
        header += &entries.join(",");
        header += "},";
    }
    let mut offset = 0usize;
    let mut entries = Vec::with_capacity(tensors.len());
    for (name, tensor) in tensors {
        let bytes = tensor.len() * 4;
        let shape: Vec<String> = tensor.shape().iter().map(|d| d.to_string()).collect();
        entries.push(format!(
            "{}:{{\"dtype\":\"F32\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
            json_string(name),
            shape.join(","),
            offset,
            offset + bytes
        ));
        offset += bytes;
    }
    header += &entries.join(",");
    header += "}";
    // pad with spaces so the data starts 8-byte aligned, as the reference library does
    while (8 + header.len()) % 8 != 0 {
        header.push(' ');
    }

    let mut out = Vec::with_capacity(8 + header.len() + offset);
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for (_, tensor) in tensors {
        for &v in tensor.iter() {
            out.extend_from_slice(&v.to_le_bytes()); // row-major order, whatever the view's strides
        }
    }
    out
}
// ANCHOR_END: write

// ANCHOR: read
/// Parses safetensors bytes, checking every claim the header makes.
///
/// # Errors
/// [`FormatError`] for a truncated file, a malformed header, a dtype other
/// than F32, or byte ranges that do not match shapes, overlap, leave holes or
/// run past the end.
pub fn from_bytes(bytes: &[u8]) -> Result<Tensors, FormatError> {
    let have = bytes.len() as u64;
    if have < 8 {
        return Err(FormatError::Truncated { need: 8, have });
    }
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()); // 8 bytes, checked above
    let data_start = 8u64.checked_add(header_len).filter(|&end| end <= have);
    let Some(data_start) = data_start else {
        return Err(FormatError::Truncated {
            need: 8u64.saturating_add(header_len),
            have,
        });
    };
    let header = std::str::from_utf8(&bytes[8..data_start as usize])
        .map_err(|e| FormatError::Header(format!("not UTF-8: {e}")))?;
    let Json::Object(entries) = Json::parse(header).map_err(FormatError::Header)? else {
        return Err(FormatError::Header("not a JSON object".into()));
    };
    let data = &bytes[data_start as usize..];

    let mut metadata = BTreeMap::new();
    let mut found = Vec::new(); // (begin, end, name, shape)
    for (name, value) in entries {
        if name == "__metadata__" {
            let Json::Object(pairs) = value else {
                return Err(FormatError::Header("__metadata__ is not an object".into()));
            };
            for (k, v) in pairs {
                let Json::String(v) = v else {
                    return Err(FormatError::Header(format!(
                        "__metadata__.{k} is not a string"
                    )));
                };
                metadata.insert(k, v);
            }
            continue;
        }
        let info = TensorInfo::from_json(&name, &value)?;
        if info.dtype != "F32" {
            return Err(FormatError::Dtype {
                name,
                dtype: info.dtype,
            });
        }
        found.push((info.begin, info.end, name, info.shape));
    }

    // the ranges must tile the data exactly: sorted, no overlap, no hole, no overrun
    found.sort();
    let mut expected_begin = 0u64;
    let mut tensors = Vec::with_capacity(found.len());
    for (begin, end, name, shape) in found {
        let range_error = |reason: String| FormatError::Range {
            name: name.clone(),
            reason,
        };
        if begin != expected_begin {
            return Err(range_error(format!(
                "data starts at byte {begin}, expected {expected_begin} (overlap or hole)"
            )));
        }
        let elements = shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
        let want = elements.and_then(|n| n.checked_mul(4));
        if end < begin || want != Some(end - begin) {
            return Err(range_error(format!(
                "shape {shape:?} needs {want:?} bytes, range is [{begin}, {end})"
            )));
        }
        if end > data.len() as u64 {
            return Err(FormatError::Truncated {
                need: data_start + end,
                have,
            });
        }
        let values: Vec<f32> = data[begin as usize..end as usize]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap())) // chunks of exactly 4
            .collect();
        let tensor = ArrayD::from_shape_vec(IxDyn(&shape), values)
            .map_err(|e| range_error(e.to_string()))?;
        tensors.push((name, tensor));
        expected_begin = end;
    }
    if expected_begin != data.len() as u64 {
        return Err(FormatError::Header(format!(
            "{} bytes of data follow the last tensor",
            data.len() as u64 - expected_begin
        )));
    }
    Ok(Tensors { tensors, metadata })
}
// ANCHOR_END: read

/// One header entry.
struct TensorInfo {
    dtype: String,
    shape: Vec<usize>,
    begin: u64,
    end: u64,
}

impl TensorInfo {
    fn from_json(name: &str, value: &Json) -> Result<TensorInfo, FormatError> {
        let bad = |what: &str| FormatError::Header(format!("tensor {name}: {what}"));
        let Json::Object(fields) = value else {
            return Err(bad("entry is not an object"));
        };
        let field = |key: &str| fields.iter().find(|(k, _)| k == key).map(|(_, v)| v);
        let Some(Json::String(dtype)) = field("dtype") else {
            return Err(bad("missing string \"dtype\""));
        };
        let Some(Json::Array(shape)) = field("shape") else {
            return Err(bad("missing array \"shape\""));
        };
        let Some(Json::Array(offsets)) = field("data_offsets") else {
            return Err(bad("missing array \"data_offsets\""));
        };
        let shape = shape
            .iter()
            .map(|d| d.as_u64().map(|d| d as usize))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad("shape holds something other than whole numbers"))?;
        let [begin, end] = &offsets[..] else {
            return Err(bad("data_offsets is not [begin, end]"));
        };
        let (Some(begin), Some(end)) = (begin.as_u64(), end.as_u64()) else {
            return Err(bad("data_offsets holds something other than whole numbers"));
        };
        Ok(TensorInfo {
            dtype: dtype.clone(),
            shape,
            begin,
            end,
        })
    }
}

/// `s` as a JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out += "\\\"",
            '\\' => out += "\\\\",
            '\n' => out += "\\n",
            '\r' => out += "\\r",
            '\t' => out += "\\t",
            c if (c as u32) < 0x20 => out += &format!("\\u{:04x}", c as u32),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The JSON values a safetensors header uses, parsed by a small recursive-descent reader.
#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    /// The number's text, so whole numbers up to u64::MAX stay exact.
    Number(String),
    String(String),
    Array(Vec<Json>),
    /// Fields in file order.
    Object(Vec<(String, Json)>),
}

impl Json {
    fn as_u64(&self) -> Option<u64> {
        match self {
            Json::Number(text) => text.parse().ok(),
            _ => None,
        }
    }

    fn parse(text: &str) -> Result<Json, String> {
        let mut reader = JsonReader {
            bytes: text.as_bytes(),
            at: 0,
            depth: 0,
        };
        let value = reader.value()?;
        reader.skip_space();
        if reader.at != reader.bytes.len() {
            return Err(format!("unexpected text at byte {}", reader.at));
        }
        Ok(value)
    }
}

struct JsonReader<'a> {
    bytes: &'a [u8],
    at: usize,
    depth: usize,
}

impl JsonReader<'_> {
    fn skip_space(&mut self) {
        while self.at < self.bytes.len()
            && matches!(self.bytes[self.at], b' ' | b'\t' | b'\n' | b'\r')
        {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_space();
        self.bytes.get(self.at).copied()
    }

    fn expect(&mut self, byte: u8) -> Result<(), String> {
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(format!("expected '{}' at byte {}", byte as char, self.at))
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.depth += 1;
        if self.depth > 64 {
            return Err("nested too deeply".into());
        }
        let value = match self.peek() {
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => self.string().map(Json::String),
            Some(b't') => self.word("true", Json::Bool(true)),
            Some(b'f') => self.word("false", Json::Bool(false)),
            Some(b'n') => self.word("null", Json::Null),
            Some(b'-' | b'0'..=b'9') => Ok(self.number()),
            Some(other) => Err(format!(
                "unexpected '{}' at byte {}",
                other as char, self.at
            )),
            None => Err("unexpected end of header".into()),
        };
        self.depth -= 1;
        value
    }

    fn word(&mut self, word: &str, value: Json) -> Result<Json, String> {
        if self.bytes[self.at..].starts_with(word.as_bytes()) {
            self.at += word.len();
            Ok(value)
        } else {
            Err(format!("unexpected text at byte {}", self.at))
        }
    }

    fn number(&mut self) -> Json {
        let start = self.at;
        while self.at < self.bytes.len()
            && matches!(
                self.bytes[self.at],
                b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
            )
        {
            self.at += 1;
        }
        Json::Number(String::from_utf8_lossy(&self.bytes[start..self.at]).into_owned())
    }

    fn string(&mut self) -> Result<String, String> {
        self.expect(b'"')?;
        let mut out = String::new();
        loop {
            let Some(&byte) = self.bytes.get(self.at) else {
                return Err("unterminated string".into());
            };
            self.at += 1;
            match byte {
                b'"' => return Ok(out),
                b'\\' => {
                    let Some(&escape) = self.bytes.get(self.at) else {
                        return Err("unterminated string".into());
                    };
                    self.at += 1;
                    match escape {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let high = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&high) {
                                // a surrogate pair: \uD83D\uDE00
                                if !self.bytes[self.at..].starts_with(b"\\u") {
                                    return Err("lone surrogate in string".into());
                                }
                                self.at += 2;
                                let low = self.hex4()?;
                                0x10000
                                    + ((high - 0xD800) << 10)
                                    + (low.wrapping_sub(0xDC00) & 0x3FF)
                            } else {
                                high
                            };
                            out.push(char::from_u32(code).ok_or("bad \\u escape")?);
                        }
                        other => return Err(format!("bad escape '\\{}'", other as char)),
                    }
                }
                _ => {
                    // copy the whole UTF-8 sequence this byte starts (the header was checked UTF-8)
                    let start = self.at - 1;
                    while self.at < self.bytes.len() && (self.bytes[self.at] & 0xC0) == 0x80 {
                        self.at += 1;
                    }
                    out.push_str(
                        std::str::from_utf8(&self.bytes[start..self.at])
                            .map_err(|e| e.to_string())?,
                    );
                }
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self
            .bytes
            .get(self.at..self.at + 4)
            .ok_or("short \\u escape")?;
        self.at += 4;
        let text = std::str::from_utf8(digits).map_err(|e| e.to_string())?;
        u32::from_str_radix(text, 16).map_err(|_| format!("bad \\u escape '{text}'"))
    }

    fn array(&mut self) -> Result<Json, String> {
        self.expect(b'[')?;
        let mut items = Vec::new();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(Json::Array(items));
        }
        loop {
            items.push(self.value()?);
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(Json::Array(items));
                }
                _ => return Err(format!("expected ',' or ']' at byte {}", self.at)),
            }
        }
    }

    fn object(&mut self) -> Result<Json, String> {
        self.expect(b'{')?;
        let mut fields: Vec<(String, Json)> = Vec::new();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(Json::Object(fields));
        }
        loop {
            if self.peek() != Some(b'"') {
                return Err(format!("expected a field name at byte {}", self.at));
            }
            let key = self.string()?;
            if fields.iter().any(|(k, _)| *k == key) {
                return Err(format!("field \"{key}\" appears twice"));
            }
            self.expect(b':')?;
            let value = self.value()?;
            fields.push((key, value));
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(Json::Object(fields));
                }
                _ => return Err(format!("expected ',' or '}}' at byte {}", self.at)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, array};

    type Metadata = BTreeMap<String, String>;

    fn sample() -> (Vec<(String, ArrayD<f32>)>, Metadata) {
        let tensors = vec![
            (
                "blocks.0.weight".to_string(),
                array![[1.0f32, -2.0, 3.5], [0.0, 1e-8, -7.25]].into_dyn(),
            ),
            (
                "scale".to_string(),
                ArrayD::from_elem(IxDyn(&[]), 2.6593f32),
            ),
            ("bias".to_string(), array![0.5f32, 0.25].into_dyn()),
        ];
        let metadata = BTreeMap::from([
            ("format".to_string(), "pt".to_string()),
            ("note".to_string(), "a \"quoted\" ✓".to_string()),
        ]);
        (tensors, metadata)
    }

    fn encode(tensors: &[(String, ArrayD<f32>)], metadata: &BTreeMap<String, String>) -> Vec<u8> {
        let views: Vec<_> = tensors.iter().map(|(n, t)| (n.clone(), t.view())).collect();
        to_bytes(&views, metadata)
    }

    #[test]
    fn round_trip_keeps_names_shapes_values_and_metadata() {
        let (tensors, metadata) = sample();
        let bytes = encode(&tensors, &metadata);
        assert_eq!(
            (8 + u64::from_le_bytes(bytes[..8].try_into().unwrap())) % 8,
            0
        );
        let back = from_bytes(&bytes).unwrap();
        assert_eq!(back.tensors, tensors);
        assert_eq!(back.metadata, metadata);
    }

    #[test]
    fn a_transposed_view_is_written_row_major() {
        let a = Array2::from_shape_vec((2, 3), vec![1.0f32, 2., 3., 4., 5., 6.]).unwrap();
        let bytes = to_bytes(&[("t".into(), a.t().into_dyn())], &BTreeMap::new());
        let back = from_bytes(&bytes).unwrap();
        assert_eq!(back.tensors[0].1, a.t().to_owned().into_dyn());
    }

    #[test]
    fn reads_a_file_written_by_the_python_library() {
        // safetensors.torch.save_file({"a": torch.tensor([[1., 2.]])}) writes this header
        let header = br#"{"a":{"dtype":"F32","shape":[1,2],"data_offsets":[0,8]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&1.0f32.to_le_bytes());
        bytes.extend_from_slice(&2.0f32.to_le_bytes());
        let back = from_bytes(&bytes).unwrap();
        assert_eq!(
            back.tensors,
            vec![("a".to_string(), array![[1.0f32, 2.0]].into_dyn())]
        );
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let (tensors, metadata) = sample();
        let bytes = encode(&tensors, &metadata);
        for len in 0..bytes.len() {
            let err = from_bytes(&bytes[..len]).unwrap_err();
            assert!(
                matches!(err, FormatError::Truncated { .. } | FormatError::Header(_)),
                "{len}: {err}"
            );
        }
    }

    #[test]
    fn corrupt_headers_are_named() {
        let with_header = |h: &str, data: usize| {
            let mut b = (h.len() as u64).to_le_bytes().to_vec();
            b.extend_from_slice(h.as_bytes());
            b.extend(std::iter::repeat_n(0u8, data));
            from_bytes(&b).unwrap_err().to_string()
        };
        assert_eq!(with_header("[1]", 0), "bad header: not a JSON object");
        assert!(with_header("{\"a\":", 0).starts_with("bad header: unexpected end"));
        assert_eq!(
            with_header(
                r#"{"a":{"dtype":"F16","shape":[1],"data_offsets":[0,2]}}"#,
                2
            ),
            "tensor a: dtype F16 is not supported (only F32)"
        );
        assert_eq!(
            with_header(
                r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
                8
            ),
            "tensor a: shape [3] needs Some(12) bytes, range is [0, 8)"
        );
        assert!(
            with_header(
                r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
                4
            )
            .contains("overlap or hole")
        );
        assert_eq!(
            with_header(
                r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
                12
            ),
            "bad header: 8 bytes of data follow the last tensor"
        );
        assert!(
            with_header(
                r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":1}"#,
                4
            )
            .contains("appears twice")
        );
    }

    #[test]
    fn huge_header_length_is_truncation() {
        let mut bytes = u64::MAX.to_le_bytes().to_vec();
        bytes.extend_from_slice(b"{}");
        assert!(matches!(
            from_bytes(&bytes),
            Err(FormatError::Truncated { .. })
        ));
    }

    #[test]
    fn json_strings_round_trip_through_escapes() {
        let text = "tab\t quote\" back\\ nl\n ctl\u{1} emoji 😀";
        let Json::String(back) = Json::parse(&json_string(text)).unwrap() else {
            panic!()
        };
        assert_eq!(back, text);
        let Json::String(pair) = Json::parse(r#""\ud83d\ude00""#).unwrap() else {
            panic!()
        };
        assert_eq!(pair, "😀");
    }
}
