//! Every path a client names stays inside the served folder.
//!
//! A name is checked twice before anything is touched: by its text (no NUL,
//! not absolute, no `..`, not one of the server's temporary names, not too
//! long), then on the disk: every part of it that exists and is a symbolic
//! link must lead to a place inside the folder. A link planted inside the
//! folder that points out (`ln -s /etc inside`) is refused, however it is
//! reached.
//!
//! What this does not cover: someone with a shell on the server swapping a
//! folder for a link between the check and the use. The served folder is
//! the server's own; only clients' names are untrusted.

use std::path::{Path, PathBuf};

use super::{FilesError, upload};

/// The longest path accepted, in bytes.
pub const MAX_PATH: usize = 1024;
/// The longest component of a path, in bytes (most file systems' limit).
pub const MAX_COMPONENT: usize = 255;

/// The served folder.
#[derive(Debug)]
pub struct Root {
    /// Canonical: no links, absolute.
    dir: PathBuf,
}

impl Root {
    /// Serves `dir`, which must be an existing folder.
    ///
    /// # Errors
    /// `dir` does not exist, or is not a folder.
    pub fn new(dir: &Path) -> std::io::Result<Self> {
        let dir = std::fs::canonicalize(dir)?;
        if !dir.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                format!("{} is not a folder", dir.display()),
            ));
        }
        Ok(Self { dir })
    }

    /// The folder, canonical.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The place of file `name`, which must not be the folder itself.
    ///
    /// # Errors
    /// [`FilesError::BadPath`] saying why; nothing is touched.
    pub fn resolve(&self, name: &str) -> Result<PathBuf, FilesError> {
        let parts = check(name)?;
        if parts.is_empty() {
            return Err(bad(
                name,
                "the served folder itself is not a file; name a file in it",
            ));
        }
        self.follow(name, &parts)
    }

    /// The place of folder `dir`; `""` and `"."` are the served folder.
    ///
    /// # Errors
    /// [`FilesError::BadPath`] saying why.
    pub fn resolve_dir(&self, dir: &str) -> Result<PathBuf, FilesError> {
        let parts = check(dir)?;
        self.follow(dir, &parts)
    }

    /// `name` as the server writes it back: components joined by `/`,
    /// without `.` or empty ones. Only meaningful for a name that passed
    /// [`resolve`](Self::resolve).
    pub fn clean(name: &str) -> String {
        name.split('/')
            .filter(|part| !part.is_empty() && *part != ".")
            .collect::<Vec<_>>()
            .join("/")
    }

    /// Whether `path` (which exists) leads to a place inside the folder.
    pub fn stays_inside(&self, path: &Path) -> bool {
        std::fs::canonicalize(path).is_ok_and(|real| real.starts_with(&self.dir))
    }

    /// Joins `parts` to the folder, checking every existing prefix that is
    /// a symbolic link.
    fn follow(&self, name: &str, parts: &[&str]) -> Result<PathBuf, FilesError> {
        let mut path = self.dir.clone();
        for part in parts {
            path.push(part);
            match std::fs::symlink_metadata(&path) {
                Ok(meta) if meta.file_type().is_symlink() => match std::fs::canonicalize(&path) {
                    Ok(real) if real.starts_with(&self.dir) => {}
                    Ok(_) => {
                        return Err(bad(
                            name,
                            "a symbolic link in it leads out of the served folder",
                        ));
                    }
                    Err(_) => {
                        return Err(bad(name, "a symbolic link in it leads nowhere"));
                    }
                },
                Ok(_) => {}
                // The rest does not exist yet: nothing to follow.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
                    return Err(bad(name, "a part of it before the last is a file"));
                }
                Err(e) => return Err(FilesError::io("checking the path", &e)),
            }
        }
        // The parts not checked above do not exist, so cannot be links.
        let mut path = self.dir.clone();
        path.extend(parts);
        Ok(path)
    }
}

/// The text checks: the parts of `name`, without `.` and empty ones.
fn check(name: &str) -> Result<Vec<&str>, FilesError> {
    if name.contains('\0') {
        return Err(bad(name, "it contains a NUL byte"));
    }
    if name.len() > MAX_PATH {
        return Err(bad(name, "it is longer than 1024 bytes"));
    }
    if name.starts_with('/') || name.starts_with('\\') || Path::new(name).is_absolute() {
        return Err(bad(
            name,
            "it is absolute; name files relative to the served folder",
        ));
    }
    if name.contains('\\') {
        return Err(bad(name, "use `/` between folders, not `\\`"));
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(bad(name, "`..` would leave the served folder")),
            _ if part.len() > MAX_COMPONENT => {
                return Err(bad(name, "a part of it is longer than 255 bytes"));
            }
            _ if upload::is_temporary(part) => {
                return Err(bad(
                    name,
                    "names starting with `.upload-` are the server's temporary files",
                ));
            }
            _ if part.chars().any(char::is_control) => {
                return Err(bad(name, "it contains control characters"));
            }
            _ => parts.push(part),
        }
    }
    Ok(parts)
}

fn bad(name: &str, reason: &str) -> FilesError {
    FilesError::BadPath {
        name: name.replace('\0', "\\0"),
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_by_their_text() {
        for (name, why) in [
            ("../etc/passwd", "`..`"),
            ("a/../../b", "`..`"),
            ("/etc/passwd", "absolute"),
            ("\\windows", "absolute"),
            ("a\0b", "NUL"),
            ("a\\b", "`/`"),
            (".upload-123", "temporary"),
            ("a\nb", "control"),
        ] {
            match check(name) {
                Err(FilesError::BadPath { reason, .. }) => {
                    assert!(reason.contains(why), "{name:?}: {reason}")
                }
                other => panic!("{name:?} was not refused: {other:?}"),
            }
        }
        assert_eq!(check("a/./b//c.txt").unwrap(), ["a", "b", "c.txt"]);
        assert_eq!(check("").unwrap(), Vec::<&str>::new());
        assert_eq!(Root::clean("./a//b/"), "a/b");
        assert!(check(&"x".repeat(300)).is_err());
    }
}
