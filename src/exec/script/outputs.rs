//! What a script left in its folder, checked before it is committed: exactly the declared
//! files, `metrics.json` a flat object of numbers, and `samples.safetensors` in the sample
//! format, for which difflow writes the `meta.json` that readers of samples expect.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use difflow_core::files::{self, Purpose};
use serde_json::json;

use crate::lang::check::script::SAMPLES_OUTPUT;

pub const METRICS_FILE: &str = "metrics.json";
/// The description of a sample set, as a `sample` stage writes it.
const META_FILE: &str = "meta.json";
/// The largest safetensors header read (the format's own limit is 100 MB).
const MAX_HEADER: u64 = 100 << 20;

/// Every declared output is a regular file in `dir` and nothing else is there; the files
/// difflow reads are well formed (`ignored`: difflow's own files there). Writes `meta.json`
/// beside `samples.safetensors`.
pub fn check_outputs(dir: &Path, declared: &[String], ignored: &[&str]) -> Result<(), String> {
    let mut found = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if ignored.contains(&name.as_str()) {
            continue;
        }
        let kind = entry.file_type().map_err(|e| format!("cannot read {}: {e}", entry.path().display()))?;
        if !kind.is_file() {
            return Err(format!(
                "the script left `{name}` in its folder, which is not a regular file (a folder or a link): outputs \
                 are plain files"
            ));
        }
        found.push(name);
    }
    let missing: Vec<&str> = declared.iter().filter(|d| !found.contains(d)).map(String::as_str).collect();
    if !missing.is_empty() {
        return Err(format!("the script did not write its declared output{}: {}", plural(&missing), quoted(&missing)));
    }
    let undeclared: Vec<&str> = found.iter().filter(|f| !declared.contains(f)).map(String::as_str).collect();
    if !undeclared.is_empty() {
        return Err(format!(
            "the script wrote file{} it does not declare: {}\nhelp: list {} in the stage's `outputs`, or write \
             {} somewhere else",
            plural(&undeclared),
            quoted(&undeclared),
            if undeclared.len() == 1 { "it" } else { "them" },
            if undeclared.len() == 1 { "it" } else { "them" }
        ));
    }
    if declared.iter().any(|d| d == METRICS_FILE) {
        read_metrics(&dir.join(METRICS_FILE))?;
    }
    if declared.iter().any(|d| d == SAMPLES_OUTPUT) {
        let meta = samples_meta(&dir.join(SAMPLES_OUTPUT))?;
        let text = serde_json::to_string_pretty(&meta).expect("json serialises");
        std::fs::write(dir.join(META_FILE), text).map_err(|e| format!("cannot write {}: {e}", dir.display()))?;
    }
    Ok(())
}

fn plural(items: &[&str]) -> &'static str {
    if items.len() == 1 {
        ""
    } else {
        "s"
    }
}

fn quoted(items: &[&str]) -> String {
    items.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", ")
}

/// A script's `metrics.json`: a JSON object whose every value is a number.
pub fn read_metrics(path: &Path) -> Result<BTreeMap<String, f64>, String> {
    let text = files::read_text(path, Purpose::Metadata).map_err(|e| format!("cannot read {METRICS_FILE}: {e}"))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("the script's {METRICS_FILE} is not JSON: {e}"))?;
    let serde_json::Value::Object(map) = value else {
        return Err(format!("the script's {METRICS_FILE} is not an object of name → number (found {value})"));
    };
    map.into_iter()
        .map(|(name, v)| match v.as_f64() {
            Some(x) => Ok((name, x)),
            None => {
                Err(format!("the script's {METRICS_FILE} is not an object of name → number: `{name}` is {}", short(&v)))
            }
        })
        .collect()
}

/// A JSON value in a message, cut short.
fn short(v: &serde_json::Value) -> String {
    let text = v.to_string();
    if text.chars().count() > 60 {
        format!("{}…", text.chars().take(60).collect::<String>())
    } else {
        text
    }
}

/// One tensor of a safetensors header.
#[derive(serde::Deserialize)]
struct TensorInfo {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: [u64; 2],
}

/// The `meta.json` of a `samples.safetensors` a script wrote: `images` uint8 [N,C,H,W] or
/// `points` float32 [N,D], with `labels` int64 [N]; its classes are `__metadata__`'s
/// `classes` when given, else the largest label plus one.
pub fn samples_meta(path: &Path) -> Result<serde_json::Value, String> {
    let bad = |why: String| format!("the script's {SAMPLES_OUTPUT} is not in the sample format: {why}");
    let mut file = files::open_regular(path).map_err(|e| format!("cannot read {SAMPLES_OUTPUT}: {e}"))?;
    let len = file.metadata().map_err(|e| format!("cannot read {SAMPLES_OUTPUT}: {e}"))?.len();
    let mut head = [0u8; 8];
    file.read_exact(&mut head).map_err(|_| bad("it is shorter than a safetensors header".into()))?;
    let header_len = u64::from_le_bytes(head);
    if header_len > MAX_HEADER || header_len > len - 8 {
        return Err(bad(format!("its header claims {header_len} bytes")));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(|e| bad(e.to_string()))?;
    let mut tensors: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| bad(format!("its header is not safetensors JSON: {e}")))?;
    let metadata = tensors.remove("__metadata__");
    let info = |name: &str| -> Result<Option<TensorInfo>, String> {
        tensors
            .get(name)
            .map(|v| serde_json::from_value(v.clone()).map_err(|e| bad(format!("tensor `{name}`: {e}"))))
            .transpose()
    };
    let data_len = len - 8 - header_len;
    let (key, values, want_dtype, width) = match (info("images")?, info("points")?) {
        (Some(t), None) => ("images", t, "U8", 1),
        (None, Some(t)) => ("points", t, "F32", 4),
        _ => return Err(bad("it must hold exactly one of `images` (uint8) and `points` (float32)".into())),
    };
    let expected_rank = if key == "images" { 4 } else { 2 };
    if values.dtype != want_dtype || values.shape.len() != expected_rank {
        return Err(bad(format!(
            "`{key}` is {} {:?}; it must be {want_dtype} with {expected_rank} dimensions",
            values.dtype, values.shape
        )));
    }
    let count = values.shape[0];
    let labels = info("labels")?.ok_or_else(|| bad("it has no `labels` tensor (int64 [N])".into()))?;
    if labels.dtype != "I64" || labels.shape != [count] {
        return Err(bad(format!("`labels` is {} {:?}; it must be I64 [{count}]", labels.dtype, labels.shape)));
    }
    for (name, t, size) in [(key, &values, width), ("labels", &labels, 8)] {
        let bytes = t.shape.iter().try_fold(size, |acc: u64, d| acc.checked_mul(*d));
        let [begin, end] = t.data_offsets;
        if bytes != end.checked_sub(begin) || end > data_len {
            return Err(bad(format!("`{name}`'s data offsets do not match its shape and the file")));
        }
    }
    if count == 0 {
        return Err(bad("it holds no samples".into()));
    }
    file.seek(SeekFrom::Start(8 + header_len + labels.data_offsets[0])).map_err(|e| bad(e.to_string()))?;
    let mut raw = vec![0u8; (count * 8) as usize];
    file.read_exact(&mut raw).map_err(|e| bad(e.to_string()))?;
    let label_values: Vec<i64> =
        raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes"))).collect();
    if let Some(negative) = label_values.iter().find(|&&l| l < 0) {
        return Err(bad(format!("a label is negative ({negative})")));
    }
    let largest = label_values.iter().copied().max().unwrap_or(0);
    let classes = match metadata.as_ref().and_then(|m| m.get("classes")) {
        Some(c) => {
            let n = c.as_str().and_then(|s| s.parse::<i64>().ok()).filter(|&n| n > largest);
            n.ok_or_else(|| bad(format!("`__metadata__.classes` is {c}: a count above every label, as a string")))?
        }
        None => largest + 1,
    };
    Ok(json!({
        "type": key,
        "shape": values.shape[1..],
        "classes": classes,
        "count": count,
        "flip": false,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A safetensors file of the given tensors (name, dtype, shape, raw bytes).
    fn safetensors(path: &Path, tensors: &[(&str, &str, Vec<u64>, Vec<u8>)], metadata: Option<serde_json::Value>) {
        let mut header = serde_json::Map::new();
        let mut data = Vec::new();
        for (name, dtype, shape, bytes) in tensors {
            let begin = data.len();
            data.extend_from_slice(bytes);
            header
                .insert(name.to_string(), json!({"dtype": dtype, "shape": shape, "data_offsets": [begin, data.len()]}));
        }
        if let Some(m) = metadata {
            header.insert("__metadata__".into(), m);
        }
        let header = serde_json::to_vec(&serde_json::Value::Object(header)).unwrap();
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend(header);
        out.extend(data);
        std::fs::write(path, out).unwrap();
    }

    fn labels(values: &[i64]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn sample_sets_are_described_from_their_header_and_labels() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join(SAMPLES_OUTPUT);
        let images = ("images", "U8", vec![3, 1, 2, 2], vec![0u8; 12]);
        safetensors(&path, &[images.clone(), ("labels", "I64", vec![3], labels(&[0, 4, 2]))], None);
        let meta = samples_meta(&path).unwrap();
        assert_eq!(meta, json!({"type": "images", "shape": [1, 2, 2], "classes": 5, "count": 3, "flip": false}));
        let given = Some(json!({"classes": "10"}));
        safetensors(&path, &[images.clone(), ("labels", "I64", vec![3], labels(&[0, 4, 2]))], given);
        assert_eq!(samples_meta(&path).unwrap()["classes"], 10);
        safetensors(&path, &[images.clone(), ("labels", "I64", vec![3], labels(&[0, -1, 2]))], None);
        assert!(samples_meta(&path).unwrap_err().contains("negative"));
        let floats = ("images", "F32", vec![3, 1, 2, 2], vec![0u8; 48]);
        safetensors(&path, &[floats, ("labels", "I64", vec![3], labels(&[0, 1, 2]))], None);
        assert!(samples_meta(&path).unwrap_err().contains("must be U8"));
        safetensors(&path, &[images], None);
        assert!(samples_meta(&path).unwrap_err().contains("no `labels`"));
        std::fs::write(&path, b"\xff\xff\xff\xff\xff\xff\xff\xff{}").unwrap();
        assert!(samples_meta(&path).unwrap_err().contains("header claims"));
    }

    #[test]
    fn metrics_are_an_object_of_numbers() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join(METRICS_FILE);
        std::fs::write(&path, r#"{"mean": 0.5, "count": 3}"#).unwrap();
        assert_eq!(read_metrics(&path).unwrap().len(), 2);
        std::fs::write(&path, r#"{"mean": "high"}"#).unwrap();
        assert!(read_metrics(&path).unwrap_err().contains("`mean` is \"high\""));
        std::fs::write(&path, "[1, 2]").unwrap();
        assert!(read_metrics(&path).unwrap_err().contains("not an object"));
    }

    #[test]
    fn outputs_are_exactly_the_declared_files() {
        let d = tempfile::tempdir().unwrap();
        let declared = vec!["a.txt".to_string(), "b.png".to_string()];
        std::fs::write(d.path().join("a.txt"), "").unwrap();
        assert!(check_outputs(d.path(), &declared, &[])
            .unwrap_err()
            .contains("did not write its declared output: `b.png`"));
        std::fs::write(d.path().join("b.png"), "").unwrap();
        check_outputs(d.path(), &declared, &[]).unwrap();
        std::fs::write(d.path().join("junk.csv"), "").unwrap();
        assert!(check_outputs(d.path(), &declared, &[]).unwrap_err().contains("does not declare: `junk.csv`"));
        std::fs::remove_file(d.path().join("junk.csv")).unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        assert!(check_outputs(d.path(), &declared, &[]).unwrap_err().contains("not a regular file"));
    }
}
