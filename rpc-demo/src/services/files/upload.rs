//! Uploads: `begin`, `put`… `commit`, into a temporary file that replaces
//! the target only when whole.
//!
//! - `begin` checks the path, `if_match`, the size limit and the disk
//!   space (counting what the uploads in progress will still need), then
//!   creates an empty temporary file `.upload-ID` in the target's folder:
//!   on the same file system, so the final rename is atomic. No byte is
//!   written before every check has passed.
//! - `put` writes one chunk at the offset where the data so far ends, and
//!   feeds the upload's running SHA-256. It runs whole on a blocking thread
//!   holding the upload's lock, so a call cancelled by its caller still
//!   leaves the file and the digest in step.
//! - `commit` checks the size and the digest, fsyncs the file, checks
//!   `if_match` again, renames the file over the target and fsyncs the
//!   folder: after a crash, the target is the old file or the new one,
//!   never a mix. Commits (and renames) of one store take turns, so two
//!   uploaders of one name each replace the whole file: the last to commit
//!   wins.
//! - An upload nobody touches for the abandon timeout is dropped with its
//!   temporary file ([`Uploads::sweep`]); a restart drops them all
//!   ([`remove_leftovers`]).

use std::collections::HashMap;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::{
    Begun, DigestCache, FilesError, Kind, Limits, MAX_CHUNK, Root, blocking, hex, parse_digest,
};

/// The prefix of the server's temporary files; names with it are refused
/// to clients and hidden from listings.
pub const TEMPORARY_PREFIX: &str = ".upload-";

/// Uploads one user may have in progress at once (each holds an open
/// file); `begin` refuses more with [`FilesError::TooManyUploads`].
pub const MAX_UPLOADS_PER_USER: usize = 16;

/// Whether `file_name` is one of the server's temporary files.
pub fn is_temporary(file_name: &str) -> bool {
    file_name.starts_with(TEMPORARY_PREFIX)
}

/// The uploads in progress of one store.
#[derive(Debug)]
pub struct Uploads {
    root: Arc<Root>,
    digests: Arc<DigestCache>,
    limits: Limits,
    table: Mutex<HashMap<String, Arc<Upload>>>,
    /// Commits and renames take turns.
    commits: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct Upload {
    id: String,
    user: String,
    /// The target, as the server writes it back.
    name: String,
    target: PathBuf,
    temp: PathBuf,
    size: u64,
    sha256: [u8; 32],
    if_match: Option<[u8; 32]>,
    /// The last `begin` or `put`.
    touched: Mutex<Instant>,
    /// A copy of `Data::written`, read without the lock (space accounting).
    written: AtomicU64,
    data: Arc<Mutex<Data>>,
}

#[derive(Debug)]
struct Data {
    /// Open for writing; reopened if a cancelled call lost it.
    file: Option<std::fs::File>,
    written: u64,
    hasher: Sha256,
    /// Committed, aborted or abandoned: no call may use it any more.
    gone: bool,
}

impl Upload {
    fn touch(&self) {
        *self.touched.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    fn touched(&self) -> Instant {
        *self.touched.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes this upload will still write.
    fn outstanding(&self) -> u64 {
        self.size
            .saturating_sub(self.written.load(Ordering::Relaxed))
    }
}

/// The base64 length of [`MAX_CHUNK`] bytes: longer data is refused before
/// it is decoded.
const MAX_ENCODED: usize = MAX_CHUNK.div_ceil(3) * 4;

impl Uploads {
    pub(crate) fn new(root: Arc<Root>, digests: Arc<DigestCache>, limits: Limits) -> Self {
        Self {
            root,
            digests,
            limits,
            table: Mutex::default(),
            commits: tokio::sync::Mutex::new(()),
        }
    }

    /// The store's limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// How many uploads are in progress.
    pub fn len(&self) -> usize {
        self.table().len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Upload>>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Holds off other commits and renames.
    pub(crate) async fn commit_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.commits.lock().await
    }

    fn get(&self, user: &str, id: &str) -> Result<Arc<Upload>, FilesError> {
        match self.table().get(id) {
            Some(upload) if upload.user == user => Ok(upload.clone()),
            _ => Err(FilesError::UnknownUpload),
        }
    }

    /// Whether `begin` would accept an upload of `size` bytes to `name`,
    /// checked without a digest, so before the client hashes its file
    /// (`files.check_upload`): the path, the kind of what is there, the
    /// size limit and, unless an upload of this size to this name by
    /// `user` is in progress (it already holds its room), the disk space.
    ///
    /// # Errors
    /// [`FilesError::BadPath`], [`FilesError::WrongKind`],
    /// [`FilesError::TooLarge`], [`FilesError::NoSpace`],
    /// [`FilesError::Io`].
    pub async fn check(&self, user: &str, name: &str, size: u64) -> Result<(), FilesError> {
        let target = self.root.resolve(name)?;
        if size > self.limits.max_file_size {
            return Err(FilesError::TooLarge {
                size,
                max: self.limits.max_file_size,
            });
        }
        {
            let target = target.clone();
            let name = super::Root::clean(name);
            blocking(move || match std::fs::metadata(&target) {
                Ok(meta) if meta.is_dir() => Err(FilesError::WrongKind {
                    name,
                    is: Kind::Dir,
                }),
                _ => Ok(()),
            })
            .await?;
        }
        let (resuming, reserved) = {
            let table = self.table();
            (
                table
                    .values()
                    .any(|u| u.user == user && u.target == target && u.size == size),
                table.values().map(|u| u.outstanding()).sum::<u64>(),
            )
        };
        if resuming {
            return Ok(());
        }
        let dir = target.parent().unwrap_or(self.root.dir()).to_owned();
        self.check_space(&dir, size, reserved).await
    }

    /// Refuses with [`FilesError::NoSpace`] unless the disk of `dir` (or
    /// of its nearest existing ancestor) has room for `size` bytes plus
    /// the space kept free, after the `reserved` bytes uploads in
    /// progress will still write.
    async fn check_space(&self, dir: &Path, size: u64, reserved: u64) -> Result<(), FilesError> {
        let needed = size.saturating_add(self.limits.min_free_space);
        let available = {
            let dir = dir.to_owned();
            let root = self.root.dir().to_owned();
            blocking(move || {
                // The nearest folder that exists: the target's folders
                // are made after the check.
                let existing = dir.ancestors().find(|d| d.is_dir()).unwrap_or(&root);
                fs4::available_space(existing)
                    .map_err(|e| FilesError::io("checking the free space", &e))
            })
            .await?
        }
        .saturating_sub(reserved);
        if available < needed {
            return Err(FilesError::NoSpace { needed, available });
        }
        Ok(())
    }

    /// Starts or resumes an upload (`files.begin`).
    ///
    /// # Errors
    /// [`FilesError::BadDigest`], [`FilesError::BadPath`],
    /// [`FilesError::WrongKind`], [`FilesError::TooLarge`],
    /// [`FilesError::Changed`], [`FilesError::TooManyUploads`],
    /// [`FilesError::NoSpace`], [`FilesError::Io`].
    pub async fn begin(
        &self,
        user: &str,
        name: &str,
        size: u64,
        sha256: &str,
        if_match: Option<&str>,
    ) -> Result<Begun, FilesError> {
        let sha256 = parse_digest(sha256)?;
        let if_match = if_match.map(parse_digest).transpose()?;
        let target = self.root.resolve(name)?;
        if size > self.limits.max_file_size {
            return Err(FilesError::TooLarge {
                size,
                max: self.limits.max_file_size,
            });
        }
        let current = current_digest(&self.digests, name, &target).await?;
        if let Some(wanted) = if_match {
            if current != Some(wanted) {
                return Err(FilesError::Changed {
                    current: current.map(|d| hex(&d)),
                });
            }
        }
        let resumable = self
            .table()
            .values()
            .find(|u| u.user == user && u.target == target && u.size == size && u.sha256 == sha256)
            .cloned();
        if let Some(upload) = resumable {
            let data = upload.data.clone();
            let offset = blocking(move || {
                let data = data.lock().unwrap_or_else(|e| e.into_inner());
                Ok((!data.gone).then_some(data.written))
            })
            .await?;
            if let Some(offset) = offset {
                upload.touch();
                tracing::debug!(name, offset, "upload resumed");
                return Ok(Begun {
                    upload_id: upload.id.clone(),
                    offset,
                });
            }
        }
        let (reserved, mine) = {
            let table = self.table();
            let reserved: u64 = table.values().map(|u| u.outstanding()).sum();
            (reserved, table.values().filter(|u| u.user == user).count())
        };
        if mine >= MAX_UPLOADS_PER_USER {
            return Err(FilesError::TooManyUploads {
                max: MAX_UPLOADS_PER_USER as u64,
            });
        }
        let dir = target.parent().unwrap_or(self.root.dir()).to_owned();
        self.check_space(&dir, size, reserved).await?;
        let mut random = [0u8; 16];
        getrandom::fill(&mut random)
            .map_err(|e| FilesError::Io(format!("no random numbers for an id: {e}")))?;
        let id = hex(&random);
        let temp = dir.join(format!("{TEMPORARY_PREFIX}{id}"));
        let file = {
            let temp = temp.clone();
            blocking(move || {
                std::fs::create_dir_all(&dir)
                    .map_err(|e| FilesError::io("making the folder", &e))?;
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&temp)
                    .map_err(|e| FilesError::io("creating the temporary file", &e))
            })
            .await?
        };
        let upload = Arc::new(Upload {
            id: id.clone(),
            user: user.to_owned(),
            name: Root::clean(name),
            target,
            temp,
            size,
            sha256,
            if_match,
            touched: Mutex::new(Instant::now()),
            written: AtomicU64::new(0),
            data: Arc::new(Mutex::new(Data {
                file: Some(file),
                written: 0,
                hasher: Sha256::new(),
                gone: false,
            })),
        });
        self.table().insert(id.clone(), upload);
        tracing::debug!(name, size, "upload begun");
        Ok(Begun {
            upload_id: id,
            offset: 0,
        })
    }

    /// Writes one chunk (`files.put`); returns the new end.
    ///
    /// # Errors
    /// [`FilesError::ChunkTooLarge`], [`FilesError::BadData`],
    /// [`FilesError::Damaged`], [`FilesError::UnknownUpload`],
    /// [`FilesError::WrongOffset`], [`FilesError::PastSize`],
    /// [`FilesError::Io`].
    pub async fn put(
        &self,
        user: &str,
        id: &str,
        offset: u64,
        data: &str,
        crc32: u32,
    ) -> Result<u64, FilesError> {
        let too_large = FilesError::ChunkTooLarge {
            max: MAX_CHUNK as u64,
        };
        if data.len() > MAX_ENCODED {
            return Err(too_large);
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|_| FilesError::BadData)?;
        if bytes.len() > MAX_CHUNK {
            return Err(too_large);
        }
        let actual = crc32fast::hash(&bytes);
        if actual != crc32 {
            return Err(FilesError::Damaged {
                expected: crc32,
                actual,
            });
        }
        let upload = self.get(user, id)?;
        upload.touch();
        let work = upload.clone();
        let end = blocking(move || {
            let mut data = work.data.lock().unwrap_or_else(|e| e.into_inner());
            if data.gone {
                return Err(FilesError::UnknownUpload);
            }
            if offset != data.written {
                return Err(FilesError::WrongOffset {
                    got: offset,
                    expected: data.written,
                });
            }
            let end = data.written + bytes.len() as u64;
            if end > work.size {
                return Err(FilesError::PastSize { size: work.size });
            }
            let written = data.written;
            let file = match &mut data.file {
                Some(file) => file,
                slot => slot.insert(
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open(&work.temp)
                        .map_err(|e| FilesError::io("reopening the temporary file", &e))?,
                ),
            };
            // From where the data ends, whatever a failed write left after.
            file.seek(SeekFrom::Start(written))
                .and_then(|_| file.write_all(&bytes))
                .map_err(|e| FilesError::io("writing", &e))?;
            data.hasher.update(&bytes);
            data.written = end;
            work.written.store(end, Ordering::Relaxed);
            Ok(end)
        })
        .await?;
        upload.touch();
        Ok(end)
    }

    /// Checks and stores a whole upload (`files.commit`); its name and
    /// place.
    ///
    /// # Errors
    /// [`FilesError::UnknownUpload`], [`FilesError::Incomplete`],
    /// [`FilesError::DigestMismatch`] and [`FilesError::Changed`] (both
    /// discard the upload), [`FilesError::WrongKind`], [`FilesError::Io`].
    pub async fn commit(&self, user: &str, id: &str) -> Result<(String, PathBuf), FilesError> {
        let upload = self.get(user, id)?;
        let _turn = self.commits.lock().await;
        let work = upload.clone();
        let digests = self.digests.clone();
        let outcome = blocking(move || {
            let mut data = work.data.lock().unwrap_or_else(|e| e.into_inner());
            if data.gone {
                return Err(FilesError::UnknownUpload);
            }
            if data.written < work.size {
                return Err(FilesError::Incomplete {
                    received: data.written,
                    size: work.size,
                });
            }
            let digest: [u8; 32] = data.hasher.clone().finalize().into();
            let discard = |data: &mut Data| {
                data.gone = true;
                data.file = None;
                let _ = std::fs::remove_file(&work.temp);
            };
            if digest != work.sha256 {
                discard(&mut data);
                return Err(FilesError::DigestMismatch {
                    expected: hex(&work.sha256),
                    actual: hex(&digest),
                });
            }
            let file = match data.file.take() {
                Some(file) => file,
                None => std::fs::OpenOptions::new()
                    .write(true)
                    .open(&work.temp)
                    .map_err(|e| FilesError::io("reopening the temporary file", &e))?,
            };
            file.set_len(work.size)
                .and_then(|()| file.sync_all())
                .map_err(|e| FilesError::io("syncing the file", &e))?;
            drop(file);
            if let Some(wanted) = work.if_match {
                let now = match std::fs::metadata(&work.target) {
                    Ok(meta) => Some(
                        digests
                            .digest(&work.target, &meta)
                            .map_err(|e| FilesError::io("hashing", &e))?,
                    ),
                    Err(_) => None,
                };
                if now != Some(wanted) {
                    discard(&mut data);
                    return Err(FilesError::Changed {
                        current: now.map(|d| hex(&d)),
                    });
                }
            }
            if std::fs::symlink_metadata(&work.target).is_ok_and(|m| m.is_dir()) {
                return Err(FilesError::WrongKind {
                    name: work.name.clone(),
                    is: Kind::Dir,
                });
            }
            std::fs::rename(&work.temp, &work.target)
                .map_err(|e| FilesError::io("renaming into place", &e))?;
            data.gone = true;
            sync_parent(&work.target).map_err(|e| FilesError::io("syncing the folder", &e))?;
            if let Ok(meta) = std::fs::metadata(&work.target) {
                digests.record(&work.target, &meta, digest);
            }
            Ok(())
        })
        .await;
        if matches!(
            outcome,
            Ok(()) | Err(FilesError::DigestMismatch { .. } | FilesError::Changed { .. })
        ) {
            self.table().remove(id);
        }
        outcome?;
        tracing::debug!(name = %upload.name, size = upload.size, "upload committed");
        Ok((upload.name.clone(), upload.target.clone()))
    }

    /// Drops an upload and its temporary file (`files.abort`).
    ///
    /// # Errors
    /// [`FilesError::UnknownUpload`].
    pub async fn abort(&self, user: &str, id: &str) -> Result<(), FilesError> {
        let upload = self.get(user, id)?;
        self.table().remove(id);
        blocking(move || {
            discard(&upload);
            Ok(())
        })
        .await
    }

    /// Drops the uploads untouched for the abandon timeout, and their
    /// temporary files; returns how many. An upload with a `put` or
    /// `commit` running is never dropped.
    pub fn sweep(&self) -> usize {
        let now = Instant::now();
        let stale: Vec<Arc<Upload>> = {
            let mut table = self.table();
            let stale: Vec<String> = table
                .values()
                .filter(|u| u.touched() + self.limits.abandon_after <= now)
                .filter(|u| u.data.try_lock().is_ok())
                .map(|u| u.id.clone())
                .collect();
            stale.iter().filter_map(|id| table.remove(id)).collect()
        };
        for upload in &stale {
            discard(upload);
            tracing::debug!(name = %upload.name, "upload abandoned");
        }
        stale.len()
    }
}

/// Marks `upload` gone and removes its temporary file.
fn discard(upload: &Upload) {
    let mut data = upload.data.lock().unwrap_or_else(|e| e.into_inner());
    data.gone = true;
    data.file = None;
    let _ = std::fs::remove_file(&upload.temp);
}

/// The digest of the file at `target` now, `None` if there is none.
async fn current_digest(
    digests: &Arc<DigestCache>,
    name: &str,
    target: &Path,
) -> Result<Option<[u8; 32]>, FilesError> {
    let digests = digests.clone();
    let target = target.to_owned();
    let name = super::Root::clean(name);
    blocking(move || match std::fs::metadata(&target) {
        Ok(meta) if meta.is_dir() => Err(FilesError::WrongKind {
            name,
            is: Kind::Dir,
        }),
        Ok(meta) => digests
            .digest(&target, &meta)
            .map(Some)
            .map_err(|e| FilesError::io("hashing", &e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(FilesError::io("reading", &e)),
    })
    .await
}

/// Fsyncs folder `dir`, so that a rename or removal in it survives a crash.
/// (A no-op where folders cannot be opened, as on Windows.)
///
/// # Errors
/// The open's or the sync's.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Fsyncs the folder holding `path`.
///
/// # Errors
/// As [`sync_dir`].
pub fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) => sync_dir(dir),
        None => Ok(()),
    }
}

/// Removes every temporary file under `root` (a previous run's uploads,
/// which a restart abandons). Does not follow symbolic links.
pub fn remove_leftovers(root: &Path) {
    fn walk(dir: &Path, depth: usize, removed: &mut usize) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() && depth < 64 {
                walk(&entry.path(), depth + 1, removed);
            } else if kind.is_file()
                && entry.file_name().to_str().is_some_and(is_temporary)
                && std::fs::remove_file(entry.path()).is_ok()
            {
                *removed += 1;
            }
        }
    }
    let mut removed = 0;
    walk(root, 0, &mut removed);
    if removed > 0 {
        tracing::info!(
            removed,
            "removed the temporary files of a previous run's uploads"
        );
    }
}
