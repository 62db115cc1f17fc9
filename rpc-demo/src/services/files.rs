//! The course's file transfer (its FTP exercise: log in, fetch a file, edit
//! it, send it back over the old one), made safe: nothing lost, nothing
//! half-written, every bad input refused with a [`FilesError`].
//!
//! - **Login.** [`Files::login`] checks a user's password against the
//!   users file ([`users`]: salted Argon2id hashes, written by `rpc-demo
//!   users add`) and returns a [`Session`] token with an expiry. Every other
//!   method takes that token as its first parameter, `session`. Five wrong
//!   passwords in a row for one user, or from one peer address, lock that
//!   user or peer out for a cool-down ([`users::Logins`]).
//! - **Paths.** Every name is relative to the served folder: `..`, absolute
//!   paths, NUL bytes, the server's temporary names and symbolic links
//!   leading out are refused before anything is touched ([`paths`]).
//! - **Downloads** are streams of [`Chunk`]s from any offset, ending with
//!   the whole file's SHA-256.
//! - **Uploads** are `begin`, `put`… and `commit` ([`upload`]): into a
//!   temporary file in the target's folder, renamed into place only once
//!   complete, its digest checked and fsynced, and the folder fsynced
//!   after. An interrupted upload is resumed by calling `begin` again, or
//!   abandoned and cleaned up after a timeout.
//!
//! The session token travels as a parameter, so it never appears in a URL:
//! no method is `read_only` (which would give it a `GET` route). Neither
//! this service nor the library logs parameters.

pub mod paths;
pub mod transfer;
pub mod upload;
pub mod users;

use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use rpc_core::Stream;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use paths::Root;
pub use upload::Uploads;
pub use users::{Logins, UserFileError, Users};

/// The largest chunk `put` takes, decoded: 1 MiB.
pub const MAX_CHUNK: usize = 1024 * 1024;
/// The size of the chunks `download` sends, decoded: 256 KiB.
pub const DOWNLOAD_CHUNK: usize = 256 * 1024;
/// Wrong passwords in a row, for one user or from one peer, before further
/// attempts are refused for the cool-down.
pub const MAX_FAILURES: u32 = 5;
/// The default largest file: 4 GiB.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 4 << 30;
/// The default space kept free on the disk after an upload: 64 MiB.
pub const DEFAULT_MIN_FREE_SPACE: u64 = 64 << 20;
/// The default life of a session: one hour.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(3600);
/// The default cool-down after [`MAX_FAILURES`] wrong passwords: one minute.
pub const DEFAULT_LOCKOUT: Duration = Duration::from_secs(60);
/// The default time after which an upload nobody touches is abandoned and
/// its temporary file removed: 10 minutes.
pub const DEFAULT_ABANDON_AFTER: Duration = Duration::from_secs(600);

/// What a successful login returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Session {
    /// The token to pass as `session` to every other method: 64 hex
    /// digits. Keep it secret: it is as good as the password until it
    /// expires.
    pub token: String,
    /// Who logged in.
    pub user: String,
    /// Milliseconds until the token expires (from when the server
    /// answered; relative, so the clocks need not agree).
    pub expires_in_ms: u64,
}

/// What a folder entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A regular file.
    File,
    /// A folder.
    Dir,
}

impl Kind {
    /// The other kind: a folder for a file, a file for a folder.
    pub fn other(self) -> Self {
        match self {
            Self::File => Self::Dir,
            Self::Dir => Self::File,
        }
    }
}

/// `file` or `folder`, for people.
impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::File => "file",
            Self::Dir => "folder",
        })
    }
}

/// What [`FilesError::Changed`] says of the file now: its digest, or that
/// it is gone.
fn now_as_words(current: Option<&str>) -> String {
    match current {
        Some(digest) => format!("its SHA-256 is now {digest}"),
        None => "it no longer exists".to_owned(),
    }
}

/// One entry of a folder, or a file just written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Entry {
    /// The path from the served folder, with `/` between components.
    pub name: String,
    /// File or folder.
    pub kind: Kind,
    /// Size in bytes (0 for a folder).
    pub size: u64,
    /// Last modification, in milliseconds since the Unix epoch (the
    /// server's clock).
    pub modified_ms: u64,
    /// The file's SHA-256, 64 lower-case hex digits; `None` for a folder.
    pub sha256: Option<String>,
}

/// What `begin` answers: where to send the chunks, and from which offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Begun {
    /// The upload's id, for `put`, `commit` and `abort`.
    pub upload_id: String,
    /// The bytes already received: 0 for a new upload, more when `begin`
    /// resumes an interrupted one. The next `put` starts here.
    pub offset: u64,
}

/// One item of a download stream. On the wire, an object with a `kind`:
/// `{"kind":"data","offset":0,"size":5,"data":"aGVsbG8="}`, …,
/// `{"kind":"end","size":5,"sha256":"2cf2…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Chunk {
    /// Bytes of the file.
    Data {
        /// Where these bytes start in the file.
        offset: u64,
        /// The whole file's size, for a progress bar.
        size: u64,
        /// The bytes, base64 (standard alphabet, padded), at most 256 KiB
        /// decoded.
        data: String,
    },
    /// The last item: the whole file's size and SHA-256 (not only of the
    /// part sent), to check a resumed download against.
    End {
        /// The file's size in bytes.
        size: u64,
        /// Its SHA-256, 64 lower-case hex digits.
        sha256: String,
    },
}

/// Why a Files call is refused. Nothing was changed on the server when a
/// call fails, except where a variant says so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, thiserror::Error)]
pub enum FilesError {
    /// The user is unknown or the password is wrong (which one is not
    /// said).
    #[error("wrong user or password")]
    BadCredentials,
    /// Too many wrong passwords in a row for this user or from this
    /// address: no attempt is checked until the cool-down passes.
    #[error(
        "too many wrong passwords: login is refused for {retry_after_secs} s; wait, then try again"
    )]
    LockedOut {
        /// Seconds until attempts are checked again.
        retry_after_secs: u64,
    },
    /// The call carried no session token.
    #[error("no session token: call files.login and pass its token as `session`")]
    NoSession,
    /// The token is not one this server gave, or it logged out.
    #[error("unknown session token: log in again (files.login)")]
    UnknownSession,
    /// The token has expired.
    #[error("the session has expired: log in again (files.login)")]
    SessionExpired,
    /// The path is not allowed; nothing was touched.
    #[error("refused path {name:?}: {reason}")]
    BadPath {
        /// The path as given (NUL bytes shown as `\0`).
        name: String,
        /// Why.
        reason: String,
    },
    /// Nothing exists at this path.
    #[error("{name:?} does not exist")]
    NotFound {
        /// The path as given.
        name: String,
    },
    /// A file was expected and this is a folder, or the reverse.
    #[error("{name:?} is a {is}, not a {}", is.other())]
    WrongKind {
        /// The path as given.
        name: String,
        /// What it is.
        is: Kind,
    },
    /// `rename` would replace an existing entry.
    #[error("{name:?} already exists; delete it first or choose another name")]
    AlreadyExists {
        /// The path as given.
        name: String,
    },
    /// The declared size is over the server's limit.
    #[error("{size} bytes is over the server's limit of {max} bytes per file")]
    TooLarge {
        /// The declared size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The disk lacks room for the file (plus what the server keeps free,
    /// and what uploads in progress will need).
    #[error("not enough disk space: {needed} bytes needed, {available} available")]
    NoSpace {
        /// Bytes needed.
        needed: u64,
        /// Bytes available for it.
        available: u64,
    },
    /// `if_match` was given and the file's current digest differs (or the
    /// file no longer exists): it changed since you read it.
    #[error(
        "the file changed since you read it ({}); download it again and redo your edit",
        now_as_words(current.as_deref())
    )]
    Changed {
        /// The file's digest now, or `None` if it no longer exists.
        current: Option<String>,
    },
    /// This user already has the most uploads in progress; commit or
    /// abort one (or wait for abandoned ones to be cleaned up).
    #[error("too many uploads in progress (at most {max} per user); commit or abort one first")]
    TooManyUploads {
        /// The limit.
        max: u64,
    },
    /// A digest is not 64 hex digits.
    #[error("a SHA-256 must be 64 hex digits")]
    BadDigest,
    /// No upload has this id: never begun, committed, aborted, or abandoned
    /// and cleaned up.
    #[error("unknown upload: call files.begin again")]
    UnknownUpload,
    /// The chunk does not start where the data received so far ends.
    #[error("wrong offset {got}: the upload expects offset {expected}")]
    WrongOffset {
        /// The offset the chunk claimed.
        got: u64,
        /// Where the next chunk must start.
        expected: u64,
    },
    /// The chunk is over 1 MiB decoded.
    #[error("a chunk must be at most {max} bytes decoded; split it")]
    ChunkTooLarge {
        /// The limit in bytes.
        max: u64,
    },
    /// The chunk's data is not valid base64.
    #[error("the chunk's data is not valid base64")]
    BadData,
    /// The chunk's CRC-32 does not match its data: it was damaged; send it
    /// again.
    #[error(
        "the chunk is damaged (CRC-32 {expected:08x} given, {actual:08x} computed); send it again"
    )]
    Damaged {
        /// The CRC-32 sent.
        expected: u32,
        /// The CRC-32 of the data that arrived.
        actual: u32,
    },
    /// The chunk would take the file past its declared size.
    #[error("the chunk goes past the declared size of {size} bytes")]
    PastSize {
        /// The declared size.
        size: u64,
    },
    /// `commit` before every byte arrived.
    #[error("the upload is incomplete: {received} of {size} bytes received")]
    Incomplete {
        /// Bytes received.
        received: u64,
        /// Bytes declared.
        size: u64,
    },
    /// The bytes received do not have the declared SHA-256. The upload is
    /// discarded (its temporary file removed); the old file is untouched.
    #[error(
        "the data's SHA-256 is {actual}, not the declared {expected}; the upload was discarded"
    )]
    DigestMismatch {
        /// The declared digest.
        expected: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// `download` from past the file's end.
    #[error("offset {offset} is past the end of the file ({size} bytes)")]
    OffsetPastEnd {
        /// The offset asked for.
        offset: u64,
        /// The file's size.
        size: u64,
    },
    /// The server's file system failed; the message says how. Nothing was
    /// renamed into place.
    #[error("the server could not complete the operation: {0}")]
    Io(String),
}

impl FilesError {
    /// A server-side I/O failure, without the server's absolute paths.
    pub(crate) fn io(what: &str, e: &std::io::Error) -> Self {
        Self::Io(format!("{what}: {}", e.kind()))
    }
}

/// A file server with login.
#[rpc_core::service(namespace = "files")]
pub trait Files {
    /// Checks `password` for `user` and opens a session. Refused with
    /// `LockedOut` after 5 wrong passwords in a row for the user or from
    /// the caller's address, until the cool-down passes.
    async fn login(&self, user: String, password: String) -> Result<Session, FilesError>;
    /// Ends the session: its token stops working at once.
    async fn logout(&self, session: String) -> Result<(), FilesError>;
    /// The entries of folder `dir` (`""` or `"."` for the served folder),
    /// sorted by name, with each file's size, time and SHA-256.
    async fn list(&self, session: String, dir: String) -> Result<Vec<Entry>, FilesError>;
    /// File `name` from byte `offset` on (0 for all of it), as `data`
    /// chunks, then one `end` with the whole file's size and SHA-256.
    async fn download(
        &self,
        session: String,
        name: String,
        offset: u64,
    ) -> Result<Stream<Chunk, FilesError>, FilesError>;
    /// Starts, or resumes, an upload of `size` bytes whose SHA-256 is
    /// `sha256`, to be stored as `name`. With `if_match` (a SHA-256), the
    /// upload is refused unless the file now at `name` has that digest,
    /// and checked again at `commit`. The size limit and the disk space
    /// are checked here, before any byte is written. Calling it again with
    /// the same name, size and digest returns the same upload and the
    /// offset to continue from.
    async fn begin(
        &self,
        session: String,
        name: String,
        size: u64,
        sha256: String,
        if_match: Option<String>,
    ) -> Result<Begun, FilesError>;
    /// Checks, before the client hashes its file, whether `begin` would
    /// take an upload of `size` bytes to `name`: the path, the size limit
    /// and the disk space (skipped when this user's upload of that size to
    /// that name is in progress: it holds its room). `null` if so; the
    /// error `begin` would give otherwise. Nothing is reserved: `begin`
    /// checks again.
    async fn check_upload(
        &self,
        session: String,
        name: String,
        size: u64,
    ) -> Result<(), FilesError>;
    /// Writes `data` (base64, at most 1 MiB decoded, whose CRC-32 is
    /// `crc32`) at `offset`, which must be where the upload's data ends;
    /// returns the new end.
    async fn put(
        &self,
        session: String,
        upload_id: String,
        offset: u64,
        data: String,
        crc32: u32,
    ) -> Result<u64, FilesError>;
    /// Checks the upload's size and SHA-256, fsyncs it, renames it over
    /// `name` and fsyncs the folder; returns the new entry.
    async fn commit(&self, session: String, upload_id: String) -> Result<Entry, FilesError>;
    /// Abandons an upload now and removes its temporary file.
    async fn abort(&self, session: String, upload_id: String) -> Result<(), FilesError>;
    /// Deletes file `name` (not a folder).
    async fn delete(&self, session: String, name: String) -> Result<(), FilesError>;
    /// Renames `from` to `to`, refusing to replace an existing entry.
    async fn rename(&self, session: String, from: String, to: String) -> Result<(), FilesError>;
}

/// The limits and timeouts of a [`FileStore`]; `Default` gives the
/// `DEFAULT_*` constants of this module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest file `begin` accepts, in bytes.
    pub max_file_size: u64,
    /// Bytes that must stay free on the disk once an upload is stored.
    pub min_free_space: u64,
    /// How long a session lasts after login.
    pub session_ttl: Duration,
    /// How long logins stay refused after [`MAX_FAILURES`] wrong passwords.
    pub lockout: Duration,
    /// How long an upload may go untouched before it is abandoned.
    pub abandon_after: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            min_free_space: DEFAULT_MIN_FREE_SPACE,
            session_ttl: DEFAULT_SESSION_TTL,
            lockout: DEFAULT_LOCKOUT,
            abandon_after: DEFAULT_ABANDON_AFTER,
        }
    }
}

/// The Files service over one folder. Clones share everything.
#[derive(Debug, Clone)]
pub struct FileStore {
    root: Arc<Root>,
    logins: Arc<Logins>,
    uploads: Arc<Uploads>,
    digests: Arc<DigestCache>,
}

impl FileStore {
    /// Serves folder `root` (which must exist) to the users of `users`.
    /// Removes the temporary files of uploads a previous run left behind
    /// (a restart abandons them).
    ///
    /// # Errors
    /// [`std::io::Error`] if `root` is not a folder that can be read.
    pub fn open(root: &Path, users: Users, limits: Limits) -> std::io::Result<Self> {
        let root = Arc::new(Root::new(root)?);
        upload::remove_leftovers(root.dir());
        let digests = Arc::new(DigestCache::default());
        Ok(Self {
            uploads: Arc::new(Uploads::new(root.clone(), digests.clone(), limits)),
            logins: Arc::new(Logins::new(users, limits.session_ttl, limits.lockout)),
            digests,
            root,
        })
    }

    /// The logins: sessions and the wrong-password counts.
    pub fn logins(&self) -> &Logins {
        &self.logins
    }

    /// The uploads in progress.
    pub fn uploads(&self) -> &Uploads {
        &self.uploads
    }

    /// Logs `user` in from `peer` (the caller's address; `None` when
    /// unknown, which only the per-user count then limits).
    ///
    /// # Errors
    /// [`FilesError::LockedOut`], [`FilesError::BadCredentials`].
    pub async fn login_from(
        &self,
        peer: Option<IpAddr>,
        user: &str,
        password: String,
    ) -> Result<Session, FilesError> {
        self.logins.login(peer, user, password).await
    }

    /// Drops expired sessions and abandoned uploads (removing their
    /// temporary files); returns how many uploads were abandoned.
    /// [`spawn_sweeper`](Self::spawn_sweeper) calls it periodically.
    pub fn sweep(&self) -> usize {
        self.logins.sweep();
        self.uploads.sweep()
    }

    /// Runs [`sweep`](Self::sweep) every quarter of the abandon timeout
    /// (at least every second) until the store is dropped everywhere else.
    pub fn spawn_sweeper(&self) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.uploads);
        let logins = Arc::downgrade(&self.logins);
        let every = (self.uploads.limits().abandon_after / 4).max(Duration::from_secs(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let (Some(uploads), Some(logins)) = (weak.upgrade(), logins.upgrade()) else {
                    return;
                };
                logins.sweep();
                let abandoned = uploads.sweep();
                if abandoned > 0 {
                    tracing::info!(abandoned, "removed abandoned uploads");
                }
            }
        })
    }

    /// The entry for `path` (named `name`), with its digest for a file.
    async fn entry(&self, name: String, path: PathBuf) -> Result<Entry, FilesError> {
        let digests = self.digests.clone();
        blocking(move || {
            let meta = std::fs::metadata(&path).map_err(|e| not_found(&name, &e))?;
            entry_of(&digests, name, &path, &meta)
        })
        .await
    }
}

/// The caller's address, from the transport.
fn peer_ip() -> Option<IpAddr> {
    rpc_core::context::peer().and_then(|info| info.peer.map(|addr| addr.ip()))
}

impl Files for FileStore {
    async fn login(&self, user: String, password: String) -> Result<Session, FilesError> {
        self.login_from(peer_ip(), &user, password).await
    }

    async fn logout(&self, session: String) -> Result<(), FilesError> {
        self.logins.logout(&session)
    }

    async fn list(&self, session: String, dir: String) -> Result<Vec<Entry>, FilesError> {
        self.logins.user(&session)?;
        let path = self.root.resolve_dir(&dir)?;
        let prefix = Root::clean(&dir);
        let root = self.root.clone();
        let digests = self.digests.clone();
        blocking(move || {
            let meta = std::fs::metadata(&path).map_err(|e| not_found(&dir, &e))?;
            if !meta.is_dir() {
                return Err(FilesError::WrongKind {
                    name: dir,
                    is: Kind::File,
                });
            }
            let mut entries = Vec::new();
            let read = std::fs::read_dir(&path).map_err(|e| FilesError::io("reading", &e))?;
            for item in read {
                let item = item.map_err(|e| FilesError::io("reading", &e))?;
                let Some(file_name) = item.file_name().to_str().map(str::to_owned) else {
                    continue; // not UTF-8: no name a client could send back
                };
                if upload::is_temporary(&file_name) {
                    continue;
                }
                let full = item.path();
                // A symbolic link is shown as what it leads to, if that
                // stays inside the served folder; otherwise not at all.
                if !root.stays_inside(&full) {
                    continue;
                }
                let Ok(meta) = std::fs::metadata(&full) else {
                    continue;
                };
                let name = if prefix.is_empty() {
                    file_name
                } else {
                    format!("{prefix}/{file_name}")
                };
                entries.push(entry_of(&digests, name, &full, &meta)?);
            }
            entries.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(entries)
        })
        .await
    }

    async fn download(
        &self,
        session: String,
        name: String,
        offset: u64,
    ) -> Result<Stream<Chunk, FilesError>, FilesError> {
        self.logins.user(&session)?;
        let path = self.root.resolve(&name)?;
        let opened = {
            let name = name.clone();
            blocking(move || {
                let file = std::fs::File::open(&path).map_err(|e| not_found(&name, &e))?;
                let meta = file.metadata().map_err(|e| FilesError::io("reading", &e))?;
                if meta.is_dir() {
                    return Err(FilesError::WrongKind {
                        name,
                        is: Kind::Dir,
                    });
                }
                Ok((file, meta.len()))
            })
            .await?
        };
        let (file, size) = opened;
        if offset > size {
            return Err(FilesError::OffsetPastEnd { offset, size });
        }
        tracing::debug!(%name, offset, size, "download");
        Ok(download_stream(file, size, offset))
    }

    async fn begin(
        &self,
        session: String,
        name: String,
        size: u64,
        sha256: String,
        if_match: Option<String>,
    ) -> Result<Begun, FilesError> {
        let user = self.logins.user(&session)?;
        self.uploads
            .begin(&user, &name, size, &sha256, if_match.as_deref())
            .await
    }

    async fn check_upload(
        &self,
        session: String,
        name: String,
        size: u64,
    ) -> Result<(), FilesError> {
        let user = self.logins.user(&session)?;
        self.uploads.check(&user, &name, size).await
    }

    async fn put(
        &self,
        session: String,
        upload_id: String,
        offset: u64,
        data: String,
        crc32: u32,
    ) -> Result<u64, FilesError> {
        let user = self.logins.user(&session)?;
        self.uploads
            .put(&user, &upload_id, offset, &data, crc32)
            .await
    }

    async fn commit(&self, session: String, upload_id: String) -> Result<Entry, FilesError> {
        let user = self.logins.user(&session)?;
        let (name, path) = self.uploads.commit(&user, &upload_id).await?;
        self.entry(name, path).await
    }

    async fn abort(&self, session: String, upload_id: String) -> Result<(), FilesError> {
        let user = self.logins.user(&session)?;
        self.uploads.abort(&user, &upload_id).await
    }

    async fn delete(&self, session: String, name: String) -> Result<(), FilesError> {
        self.logins.user(&session)?;
        let path = self.root.resolve(&name)?;
        blocking(move || {
            let meta = std::fs::symlink_metadata(&path).map_err(|e| not_found(&name, &e))?;
            if meta.is_dir() {
                return Err(FilesError::WrongKind {
                    name,
                    is: Kind::Dir,
                });
            }
            std::fs::remove_file(&path).map_err(|e| FilesError::io("deleting", &e))?;
            upload::sync_parent(&path).map_err(|e| FilesError::io("syncing the folder", &e))
        })
        .await
    }

    async fn rename(&self, session: String, from: String, to: String) -> Result<(), FilesError> {
        self.logins.user(&session)?;
        let source = self.root.resolve(&from)?;
        let target = self.root.resolve(&to)?;
        let _commits = self.uploads.commit_lock().await;
        blocking(move || {
            std::fs::symlink_metadata(&source).map_err(|e| not_found(&from, &e))?;
            if std::fs::symlink_metadata(&target).is_ok() {
                return Err(FilesError::AlreadyExists { name: to });
            }
            let parent = target.parent().unwrap_or(&target);
            if !parent.is_dir() {
                return Err(FilesError::NotFound {
                    name: to
                        .rsplit_once('/')
                        .map_or(to.clone(), |(d, _)| d.to_owned()),
                });
            }
            std::fs::rename(&source, &target).map_err(|e| FilesError::io("renaming", &e))?;
            upload::sync_parent(&target).map_err(|e| FilesError::io("syncing the folder", &e))?;
            upload::sync_parent(&source).map_err(|e| FilesError::io("syncing the folder", &e))
        })
        .await
    }
}

/// The stream of a download: the prefix before `offset` is hashed (not
/// sent), then `data` chunks, then `end`. Reads only as the caller's
/// credit allows (the channel holds one chunk).
fn download_stream(file: std::fs::File, size: u64, offset: u64) -> Stream<Chunk, FilesError> {
    let (tx, stream) = Stream::channel();
    tokio::spawn(async move {
        // The prefix: hashed in one blocking task.
        let hashed = blocking(move || {
            let mut hasher = Sha256::new();
            let mut prefix = (&file).take(offset);
            std::io::copy(&mut prefix, &mut HashWriter(&mut hasher))
                .map_err(|e| FilesError::io("reading", &e))?;
            Ok((file, hasher))
        })
        .await;
        let (mut file, mut hasher) = match hashed {
            Ok(state) => state,
            Err(e) => {
                let _ = tx.fail(e).await;
                return;
            }
        };
        let mut at = offset;
        while at < size {
            let want = DOWNLOAD_CHUNK.min((size - at) as usize);
            let read = blocking(move || {
                let mut buf = vec![0; want];
                file.read_exact(&mut buf)
                    .map_err(|e| FilesError::io("reading (the file shrank?)", &e))?;
                hasher.update(&buf);
                let data = base64::engine::general_purpose::STANDARD.encode(&buf);
                Ok((file, hasher, data))
            })
            .await;
            let data;
            (file, hasher, data) = match read {
                Ok(state) => state,
                Err(e) => {
                    let _ = tx.fail(e).await;
                    return;
                }
            };
            if tx
                .send(Chunk::Data {
                    offset: at,
                    size,
                    data,
                })
                .await
                .is_err()
            {
                return; // the caller is gone
            }
            at += want as u64;
        }
        let _ = tx
            .send(Chunk::End {
                size,
                sha256: hex(&hasher.finalize()),
            })
            .await;
    });
    stream
}

/// An `io::Write` that feeds a SHA-256.
pub(crate) struct HashWriter<'a>(pub(crate) &'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs file-system work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, FilesError> + Send + 'static,
) -> Result<T, FilesError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(FilesError::Io(format!("a file-system task failed: {e}"))))
}

/// NotFound for a missing path, an I/O error otherwise.
pub(crate) fn not_found(name: &str, e: &std::io::Error) -> FilesError {
    match e.kind() {
        std::io::ErrorKind::NotFound => FilesError::NotFound {
            name: name.to_owned(),
        },
        _ => FilesError::io("reading", e),
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The 32 bytes of a hex SHA-256 (either case).
///
/// # Errors
/// [`FilesError::BadDigest`] unless `text` is 64 hex digits.
pub fn parse_digest(text: &str) -> Result<[u8; 32], FilesError> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return Err(FilesError::BadDigest);
    }
    let mut out = [0; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let pair = std::str::from_utf8(pair).map_err(|_| FilesError::BadDigest)?;
        out[i] = u8::from_str_radix(pair, 16).map_err(|_| FilesError::BadDigest)?;
    }
    Ok(out)
}

/// The SHA-256 of a whole file.
///
/// # Errors
/// The read's error.
pub fn sha256_of(path: &Path) -> std::io::Result<[u8; 32]> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut HashWriter(&mut hasher))?;
    Ok(hasher.finalize().into())
}

/// The entry of `path`, whose metadata is `meta`.
fn entry_of(
    digests: &DigestCache,
    name: String,
    path: &Path,
    meta: &std::fs::Metadata,
) -> Result<Entry, FilesError> {
    let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    let modified_ms = modified
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    if meta.is_dir() {
        return Ok(Entry {
            name,
            kind: Kind::Dir,
            size: 0,
            modified_ms,
            sha256: None,
        });
    }
    let digest = digests
        .digest(path, meta)
        .map_err(|e| FilesError::io("hashing", &e))?;
    Ok(Entry {
        name,
        kind: Kind::File,
        size: meta.len(),
        modified_ms,
        sha256: Some(hex(&digest)),
    })
}

/// Files' digests, kept while their size and modification time stay the
/// same, so that listing a folder twice does not read every file twice.
#[derive(Debug, Default)]
pub(crate) struct DigestCache {
    known: Mutex<std::collections::HashMap<PathBuf, Stamped>>,
}

/// A file's size and modification time when it had this digest.
type Stamped = (u64, SystemTime, [u8; 32]);

/// Digests the cache holds at most; past it, it starts over.
const DIGESTS_KEPT: usize = 10_000;

impl DigestCache {
    /// The SHA-256 of the file at `path`, whose metadata is `meta`.
    pub(crate) fn digest(
        &self,
        path: &Path,
        meta: &std::fs::Metadata,
    ) -> std::io::Result<[u8; 32]> {
        let stamp = (meta.len(), meta.modified()?);
        if let Some((len, modified, digest)) = self.lock().get(path) {
            if (*len, *modified) == stamp {
                return Ok(*digest);
            }
        }
        let digest = sha256_of(path)?;
        let mut known = self.lock();
        if known.len() >= DIGESTS_KEPT {
            known.clear();
        }
        known.insert(path.to_owned(), (stamp.0, stamp.1, digest));
        Ok(digest)
    }

    /// Records the digest of a file just written.
    pub(crate) fn record(&self, path: &Path, meta: &std::fs::Metadata, digest: [u8; 32]) {
        if let Ok(modified) = meta.modified() {
            let mut known = self.lock();
            if known.len() >= DIGESTS_KEPT {
                known.clear();
            }
            known.insert(path.to_owned(), (meta.len(), modified, digest));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<PathBuf, Stamped>> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_parse_from_hex_and_back() {
        let digest: [u8; 32] = Sha256::digest(b"abc").into();
        let text = hex(&digest);
        assert_eq!(
            text,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(parse_digest(&text), Ok(digest));
        assert_eq!(parse_digest(&text.to_uppercase()), Ok(digest));
        assert_eq!(parse_digest("abc"), Err(FilesError::BadDigest));
        assert_eq!(parse_digest(&"zz".repeat(32)), Err(FilesError::BadDigest));
        assert_eq!(parse_digest(&"é".repeat(32)), Err(FilesError::BadDigest));
    }

    #[test]
    fn refusals_read_as_words_not_rust_values() {
        let kind = FilesError::WrongKind {
            name: "sub".to_owned(),
            is: Kind::Dir,
        };
        assert_eq!(kind.to_string(), "\"sub\" is a folder, not a file");
        let kind = FilesError::WrongKind {
            name: "a.txt".to_owned(),
            is: Kind::File,
        };
        assert_eq!(kind.to_string(), "\"a.txt\" is a file, not a folder");
        let digest = "5e".repeat(32);
        let changed = FilesError::Changed {
            current: Some(digest.clone()),
        };
        assert_eq!(
            changed.to_string(),
            format!(
                "the file changed since you read it (its SHA-256 is now {digest}); download it again and redo your edit"
            )
        );
        let gone = FilesError::Changed { current: None }.to_string();
        assert!(gone.contains("(it no longer exists)"), "{gone}");
        for text in [kind.to_string(), changed.to_string(), gone] {
            assert!(!text.contains("Some(") && !text.contains("None"), "{text}");
        }
    }
}
