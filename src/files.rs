//! Guards for the files a user names (models, labels): they must be regular files of a bounded
//! size, checked before anything is opened or read, so a device (`/dev/zero`), a FIFO nobody
//! writes, or a huge sparse file gives a clear error instead of a hang or an exhausted memory.

use std::io::Read;
use std::path::Path;

/// ONNX files are protobuf messages, which cannot exceed 2 GiB (larger models keep their weights
/// in external data files, which this element does not load).
pub const MAX_MODEL_BYTES: u64 = (2 << 30) - 1;

/// Labels files hold one class name per line: even 21,000 ImageNet classes fit in far less.
pub const MAX_LABELS_BYTES: u64 = 4 << 20;

/// Checks that `path` is a regular file of at most `max_bytes` without opening it (opening a
/// FIFO blocks until someone writes to it) and returns its size. `what` names the file in errors.
pub fn check_regular_file(path: &Path, what: &str, max_bytes: u64) -> Result<u64, String> {
    let metadata =
        std::fs::metadata(path).map_err(|e| format!("Could not open {what} {}: {e}", path.display()))?;
    if !metadata.is_file() {
        return Err(format!(
            "{} {} is not a regular file",
            capitalised(what),
            path.display()
        ));
    }
    if metadata.len() > max_bytes {
        return Err(format!(
            "{} {} is {} bytes, more than the {max_bytes} bytes a {what} may have",
            capitalised(what),
            path.display(),
            metadata.len()
        ));
    }
    Ok(metadata.len())
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// Reads a file checked by [`check_regular_file`], never more than `max_bytes` even if it grew
/// since.
pub fn read_bounded(path: &Path, what: &str, max_bytes: u64) -> Result<Vec<u8>, String> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("Could not read {what} {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("Could not read {what} {}: {e}", path.display()))?;
    if bytes.len() as u64 > max_bytes {
        return Err(format!(
            "{} {} grew past the {max_bytes} bytes a {what} may have",
            capitalised(what),
            path.display()
        ));
    }
    Ok(bytes)
}

/// [`check_regular_file`] then [`read_bounded`]: the whole file, refused before it is opened if
/// it is not a regular file of at most `max_bytes`.
pub fn read_regular_file(path: &Path, what: &str, max_bytes: u64) -> Result<Vec<u8>, String> {
    check_regular_file(path, what, max_bytes)?;
    read_bounded(path, what, max_bytes)
}

/// What is wrong with a model file whose first bytes are `head`, if they cannot start an ONNX
/// model: a protobuf message starts with a field tag (field number from 1, wire type 0 to 5),
/// and ONNX exporters write `ir_version` (field 1) or another low-numbered field first. Known
/// formats of other frameworks are named, with what to do.
pub fn not_onnx(head: &[u8]) -> Option<String> {
    if head.is_empty() {
        return Some("is an empty file".into());
    }
    if head.len() >= 8 && &head[4..8] == b"TFL3" {
        return Some(
            "is a TensorFlow Lite model, not ONNX: convert it with tf2onnx \
             (`python -m tf2onnx.convert --tflite MODEL.tflite --output MODEL.onnx`)"
                .into(),
        );
    }
    if head.starts_with(b"PK\x03\x04") {
        return Some(
            "is a zip archive (a PyTorch .pt/.pth checkpoint?), not ONNX: export the model with \
             `torch.onnx.export`"
                .into(),
        );
    }
    if head.starts_with(b"\x89HDF") {
        return Some("is a Keras/HDF5 model, not ONNX: convert it with tf2onnx".into());
    }
    let tag = head[0];
    let (field, wire_type) = (tag >> 3, tag & 7);
    if field == 0 || wire_type > 5 {
        return Some(format!(
            "does not start like an ONNX model (first byte {tag:#04x}); is it an ONNX file?"
        ));
    }
    None
}

/// The first bytes of a file, for [`not_onnx`].
pub fn head(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("Could not read {what} {}: {e}", path.display()))?;
    let mut head = Vec::with_capacity(16);
    file.take(16)
        .read_to_end(&mut head)
        .map_err(|e| format!("Could not read {what} {}: {e}", path.display()))?;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_fifos_and_directories_are_not_regular_files() {
        let error = check_regular_file(Path::new("/dev/zero"), "labels file", MAX_LABELS_BYTES).unwrap_err();
        assert!(
            error.contains("/dev/zero") && error.contains("not a regular file"),
            "{error}"
        );
        let error = check_regular_file(Path::new("/tmp"), "model", MAX_MODEL_BYTES).unwrap_err();
        assert!(error.starts_with("Model /tmp is not a regular file"), "{error}");
        let error = check_regular_file(Path::new("/nonexistent/x"), "model", MAX_MODEL_BYTES).unwrap_err();
        assert!(error.contains("/nonexistent/x"), "{error}");
    }

    #[test]
    fn files_over_the_bound_are_refused_before_reading() {
        let path = std::env::temp_dir().join(format!("files-bound-{}", std::process::id()));
        std::fs::write(&path, vec![b'a'; 100]).unwrap();
        assert_eq!(check_regular_file(&path, "labels file", 100), Ok(100));
        let error = check_regular_file(&path, "labels file", 99).unwrap_err();
        assert!(
            error.contains("100 bytes") && error.contains("99 bytes"),
            "{error}"
        );
        assert_eq!(read_bounded(&path, "labels file", 100).map(|b| b.len()), Ok(100));
        assert!(
            read_bounded(&path, "labels file", 50)
                .unwrap_err()
                .contains("grew past")
        );
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn other_formats_are_named() {
        assert!(
            not_onnx(b"\x1c\x00\x00\x00TFL3\x00\x00")
                .unwrap()
                .contains("TensorFlow Lite")
        );
        assert!(not_onnx(b"PK\x03\x04rest").unwrap().contains("PyTorch"));
        assert!(not_onnx(&[0u8; 16]).unwrap().contains("first byte 0x00"));
        assert!(not_onnx(b"").unwrap().contains("empty"));
        // ir_version = 8, as every ONNX exporter writes first.
        assert_eq!(not_onnx(&[0x08, 0x08, 0x12, 0x07]), None);
    }
}
