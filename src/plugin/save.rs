//! Where a download is written, and how: safely in any directory. The file name a backend
//! chooses (the Secret's `fileName`, a URL's last segment) is untrusted, so only a plain name
//! is used; no existing file is replaced without `--force`; the bytes go to a `.part` file
//! created exclusively (never through a symlink planted at its path) and renamed into place
//! at the end, so an interrupted download never leaves a file that looks complete.
//!
//! Plain blocking writes: a command-line tool has nothing else to do meanwhile (and tokio is
//! built without its fs feature).

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use super::PluginError;
use super::terminal::{escape, is_unsafe};

/// Longest file name most file systems take, in bytes.
const MAX_NAME_BYTES: usize = 255;
/// Longest extension kept from a refused name (`csv`, `json`, `zip`, `gz`).
const MAX_EXTENSION: usize = 10;

/// Where the report goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Stdout,
    File(PathBuf),
}

impl Target {
    /// The path as a person reads it (escaped: part of it may be a backend's name).
    pub fn shown(&self) -> String {
        match self {
            Target::Stdout => "standard output".into(),
            Target::File(p) => escape(&p.to_string_lossy()).into_owned(),
        }
    }
}

/// The target and, when the backend's name was refused, why (for stderr).
#[derive(Debug, PartialEq, Eq)]
pub struct Chosen {
    pub target: Target,
    pub note: Option<String>,
}

/// Whether `name` is a plain file name: not empty, at most 255 bytes, no path separator, no
/// leading dot (no `.bashrc`, no `..`), and no control or bidirectional character.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && !name.starts_with('.')
        && !name.chars().any(|c| c == '/' || c == '\\' || is_unsafe(c))
}

/// The target of a download: `-o` as given ("-": standard output; an existing directory: the
/// report's file inside it), else the backend's file name when it is plain, else the
/// ReportFile's name `report` (with the refused name's extension when that is alphanumeric).
pub fn choose(output: Option<&str>, file_name: Option<&str>, report: &str) -> Chosen {
    let dir = match output {
        Some("-") => {
            return Chosen {
                target: Target::Stdout,
                note: None,
            };
        }
        Some(o) if Path::new(o).is_dir() => Some(PathBuf::from(o)),
        Some(o) => {
            return Chosen {
                target: Target::File(PathBuf::from(o)),
                note: None,
            };
        }
        None => None,
    };
    let (name, note) = match file_name.filter(|f| !f.is_empty()) {
        Some(f) if is_plain_name(f) => (f.to_string(), None),
        Some(f) => {
            let name = match extension(f) {
                Some(ext) => format!("{report}.{ext}"),
                None => report.to_string(),
            };
            let note = format!(
                "The backend's file name \"{}\" is not a plain file name; saving as {name} instead.",
                escape(f)
            );
            (name, Some(note))
        }
        None => (report.to_string(), None),
    };
    let path = match dir {
        Some(d) => d.join(name),
        None => PathBuf::from(name),
    };
    Chosen {
        target: Target::File(path),
        note,
    }
}

/// The extension of a refused name, when it is short and alphanumeric.
fn extension(name: &str) -> Option<&str> {
    let (stem, ext) = name.rsplit_once('.')?;
    let plain = !stem.is_empty()
        && (1..=MAX_EXTENSION).contains(&ext.len())
        && ext.bytes().all(|b| b.is_ascii_alphanumeric());
    plain.then_some(ext)
}

/// Refuses an existing `path` (a dangling symlink counts) unless `force`; checked before
/// anything is fetched, and again when the file is put in place.
pub fn check_free(target: &Target, force: bool) -> Result<(), PluginError> {
    match target {
        Target::File(path) if !force && exists(path) => {
            Err(PluginError::Exists(escape(&path.to_string_lossy()).into_owned()))
        }
        _ => Ok(()),
    }
}

fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

fn part_path(target: &Path) -> PathBuf {
    let mut part = target.as_os_str().to_owned();
    part.push(".part");
    PathBuf::from(part)
}

/// The open destination of a download.
pub struct Sink {
    out: std::io::BufWriter<Box<dyn Write + Send>>,
    file: Option<PartFile>,
}

struct PartFile {
    target: PathBuf,
    part: PathBuf,
    force: bool,
}

impl Sink {
    /// Creates `<target>.part` exclusively: `create_new` is `O_CREAT|O_EXCL`, which fails on
    /// any existing path and never follows a symlink there. A `.part` already there (an
    /// interrupted download, or planted) is refused, or with `force` removed first (the link
    /// itself, never what it points to).
    pub fn open(target: &Target, force: bool) -> Result<Sink, PluginError> {
        let path = match target {
            Target::Stdout => {
                let out: Box<dyn Write + Send> = Box::new(std::io::stdout());
                return Ok(Sink {
                    out: std::io::BufWriter::new(out),
                    file: None,
                });
            }
            Target::File(path) => path,
        };
        check_free(target, force)?;
        let part = part_path(path);
        if force && exists(&part) {
            std::fs::remove_file(&part).map_err(io_error(&part))?;
        }
        let file = match OpenOptions::new().write(true).create_new(true).open(&part) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                return Err(PluginError::PartExists(
                    escape(&part.to_string_lossy()).into_owned(),
                ));
            }
            Err(e) => return Err(io_error(&part)(e)),
        };
        let out: Box<dyn Write + Send> = Box::new(file);
        Ok(Sink {
            out: std::io::BufWriter::with_capacity(1 << 20, out),
            file: Some(PartFile {
                target: path.clone(),
                part,
                force,
            }),
        })
    }

    pub fn write(&mut self, chunk: &[u8]) -> Result<(), PluginError> {
        self.out.write_all(chunk).map_err(|e| match &self.file {
            Some(f) => io_error(&f.part)(e),
            None => io_error(Path::new("standard output"))(e),
        })
    }

    /// Puts the file in place. With `force`, a rename, which replaces the target atomically
    /// (a symlink there is replaced, not followed). Without it, a hard link, which fails
    /// when a file appeared at the target meanwhile; where hard links are not supported, a
    /// rename after one more look.
    pub fn finish(mut self) -> Result<(), PluginError> {
        let flushed = self.out.flush();
        let Some(f) = self.file.take() else {
            return flushed.map_err(io_error(Path::new("standard output")));
        };
        drop(self.out);
        let placed = flushed.map_err(io_error(&f.part)).and_then(|()| f.place());
        if placed.is_err() {
            let _ = std::fs::remove_file(&f.part);
        }
        placed
    }

    /// Removes the `.part` file this sink created.
    pub fn abandon(self) {
        if let Some(f) = &self.file {
            drop(self.out);
            let _ = std::fs::remove_file(&f.part);
        }
    }
}

impl PartFile {
    fn place(&self) -> Result<(), PluginError> {
        if self.force {
            return std::fs::rename(&self.part, &self.target).map_err(io_error(&self.target));
        }
        let taken = || PluginError::Exists(escape(&self.target.to_string_lossy()).into_owned());
        match std::fs::hard_link(&self.part, &self.target) {
            Ok(()) => std::fs::remove_file(&self.part).map_err(io_error(&self.part)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(taken()),
            Err(_) if exists(&self.target) => Err(taken()),
            Err(_) => std::fs::rename(&self.part, &self.target).map_err(io_error(&self.target)),
        }
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> PluginError {
    let path = escape(&path.to_string_lossy()).into_owned();
    move |source| PluginError::Io { path, source }
}

/// Writes `content` to `target` through a [`Sink`].
pub fn write_all(target: &Target, content: &[u8], force: bool) -> Result<(), PluginError> {
    let mut sink = Sink::open(target, force)?;
    match sink.write(content) {
        Ok(()) => sink.finish(),
        Err(e) => {
            sink.abandon();
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_from_the_backend_are_used() {
        let file = |p: &str| Target::File(PathBuf::from(p));
        let cases: [(Option<&str>, Option<&str>, Target, bool); 15] = [
            (Some("out.csv"), Some("r.csv"), file("out.csv"), false),
            (Some("../mine.csv"), None, file("../mine.csv"), false),
            (Some("-"), Some(".bashrc"), Target::Stdout, false),
            (None, Some("report.csv"), file("report.csv"), false),
            (
                None,
                Some("Customer 1 (2026).json"),
                file("Customer 1 (2026).json"),
                false,
            ),
            (None, Some(".bashrc"), file("rf-1"), true),
            (None, Some(".."), file("rf-1"), true),
            (None, Some("../x"), file("rf-1"), true),
            (None, Some("../../etc/passwd.csv"), file("rf-1.csv"), true),
            (None, Some("a/b"), file("rf-1"), true),
            (None, Some("C:\\tmp\\r.json"), file("rf-1.json"), true),
            (None, Some("\x1b[31mred.csv"), file("rf-1.csv"), true),
            (None, Some("ok\r.csv"), file("rf-1.csv"), true),
            (None, Some("x.\x1b[2J"), file("rf-1"), true),
            (None, None, file("rf-1"), false),
        ];
        for (output, file_name, want, noted) in cases {
            let chosen = choose(output, file_name, "rf-1");
            assert_eq!(chosen.target, want, "{output:?} {file_name:?}");
            assert_eq!(chosen.note.is_some(), noted, "{output:?} {file_name:?}");
            if let Some(note) = chosen.note {
                assert!(!note.chars().any(is_unsafe), "{note:?}");
            }
        }
        // -o naming a directory: the chosen name inside it.
        let dir = std::env::temp_dir();
        let chosen = choose(dir.to_str(), Some(".bashrc"), "rf-1");
        assert_eq!(chosen.target, Target::File(dir.join("rf-1")));
        assert!(!is_plain_name(&"a".repeat(256)));
        assert!(is_plain_name(&"a".repeat(255)));
    }
}
