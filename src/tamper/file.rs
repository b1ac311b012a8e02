//! A chained log in a file: one entry per line, appended under an
//! exclusive lock (`flock`, so several processes on one host may share the
//! file), written and fsync'd before the append returns (the directory
//! too when the file was created). Mode 0600.
//!
//! A last line without its newline is a write a crash interrupted: reads
//! ignore it (with a warning) and the next append cuts it off first.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::LogError;

/// How much of the end of the file a tail read or an append looks at.
const TAIL_BYTES: u64 = 256 * 1024;

/// Every complete line of the file (none when it does not exist).
pub fn read_all(path: &Path) -> std::io::Result<Vec<String>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(complete_lines(path, &bytes, false))
}

/// The last `max` complete lines.
pub fn read_tail(path: &Path, max: usize) -> std::io::Result<Vec<String>> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    let start = len.saturating_sub(TAIL_BYTES);
    f.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes)?;
    let mut lines = complete_lines(path, &bytes, start > 0);
    let skip = lines.len().saturating_sub(max);
    Ok(lines.split_off(skip))
}

/// The complete, non-blank lines of `bytes`; `partial_start`: the bytes
/// begin inside a line, which is dropped.
fn complete_lines(path: &Path, bytes: &[u8], partial_start: bool) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let mut parts: Vec<&str> = text.split('\n').collect();
    let torn = parts.pop().unwrap_or_default();
    if !torn.trim().is_empty() {
        tracing::warn!(
            file = %path.display(),
            "ignoring an incomplete last line (a write interrupted by a crash)"
        );
    }
    if partial_start && !parts.is_empty() {
        parts.remove(0);
    }
    parts
        .into_iter()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// Appends the lines `make` returns, given the file's last complete line,
/// under the file's exclusive lock; durable before it returns.
pub fn append(
    path: &Path,
    make: impl FnOnce(Option<&str>) -> Result<Vec<String>, LogError>,
) -> Result<(), LogError> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(d) = dir {
        std::fs::create_dir_all(d)?;
    }
    let created = !path.exists();
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    f.lock()?;
    let len = f.metadata()?.len();
    let start = len.saturating_sub(TAIL_BYTES);
    f.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    f.read_to_end(&mut tail)?;
    // Cut off a torn last line so the new lines start on a line of their own.
    if tail.last().is_some_and(|b| *b != b'\n') {
        let keep = match tail.iter().rposition(|b| *b == b'\n') {
            Some(i) => start + i as u64 + 1,
            None if start == 0 => 0,
            None => {
                return Err(LogError::Broken(format!(
                    "{}: the last line is longer than {TAIL_BYTES} bytes",
                    path.display()
                )));
            }
        };
        tracing::warn!(file = %path.display(), "removing an incomplete last line before appending");
        f.set_len(keep)?;
        tail.truncate((keep - start) as usize);
    }
    let last = complete_lines(path, &tail, start > 0).pop();
    let lines = make(last.as_deref())?;
    if lines.is_empty() {
        return Ok(());
    }
    let mut buf = String::new();
    for l in &lines {
        buf.push_str(l);
        buf.push('\n');
    }
    f.seek(SeekFrom::End(0))?;
    f.write_all(buf.as_bytes())?;
    f.sync_all()?;
    if created && let Some(d) = dir {
        std::fs::File::open(d)?.sync_all()?;
    }
    Ok(())
}

/// Replaces the whole file with `lines` (written beside it, fsync'd, then
/// renamed over it), keeping the old file as `{file}.{suffix}`.
pub fn replace(path: &Path, lines: &[String], suffix: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(d) = dir {
        std::fs::create_dir_all(d)?;
    }
    let fresh = sibling(path, "new");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&fresh)?;
    let mut buf = String::new();
    for l in lines {
        buf.push_str(l);
        buf.push('\n');
    }
    f.write_all(buf.as_bytes())?;
    f.sync_all()?;
    if path.exists() {
        std::fs::copy(path, sibling(path, suffix))?;
    }
    std::fs::rename(&fresh, path)?;
    if let Some(d) = dir {
        std::fs::File::open(d)?.sync_all()?;
    }
    Ok(())
}

/// `{path}.{suffix}`.
pub fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_are_lines_and_a_torn_line_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub").join("log");
        append(&p, |last| {
            assert_eq!(last, None);
            Ok(vec!["a".into(), "b".into()])
        })
        .unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"{\"tor")
            .unwrap();
        assert_eq!(read_all(&p).unwrap(), vec!["a", "b"]);
        append(&p, |last| {
            assert_eq!(last, Some("b"));
            Ok(vec!["c".into()])
        })
        .unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "a\nb\nc\n");
        assert_eq!(read_tail(&p, 2).unwrap(), vec!["b", "c"]);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let refused = append(&p, |_| Err(LogError::Broken("no".into())));
        assert!(refused.is_err());
        assert_eq!(read_all(&p).unwrap().len(), 3);

        replace(&p, &["x".into()], "old").unwrap();
        assert_eq!(read_all(&p).unwrap(), vec!["x"]);
        assert_eq!(read_all(&sibling(&p, "old")).unwrap(), vec!["a", "b", "c"]);
        assert!(read_all(&dir.path().join("missing")).unwrap().is_empty());
    }
}
