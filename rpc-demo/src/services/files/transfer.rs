//! The client's side of whole-file transfers: an upload that resumes where
//! the server's data ends, and a download into a partial file that resumes
//! from its length. `rpc-demo files put` and `get` are these with progress
//! bars.
//!
//! Both retry after a broken connection, up to `retries` times: the client
//! reconnects on the next call, `begin` (or the partial file's length)
//! says where to go on from, and nothing already sent is sent again.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use futures_util::StreamExt;
use rpc_core::{CallOptions, RpcError};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::{Chunk, Entry, FilesClient, FilesError, MAX_CHUNK, hex, sha256_of};

/// The window of a download stream: 8 MiB of chunks in flight, so a
/// download is not held to one chunk per round trip.
pub const DOWNLOAD_WINDOW: u64 = 8 << 20;

/// Why a transfer failed.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The server refused a call: the error says why.
    #[error("{0}")]
    Refused(FilesError),
    /// The call failed for another reason (the connection, a timeout), and
    /// the retries ran out. Run the command again to resume.
    #[error("{0}")]
    Rpc(RpcError),
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Local {
        /// The local file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The downloaded bytes do not have the SHA-256 the server announced,
    /// even after starting over: the file keeps changing on the server.
    #[error(
        "the downloaded file's SHA-256 is {actual}, the server's is {expected}; the file may be changing on the server, try again"
    )]
    Corrupt {
        /// The server's digest.
        expected: String,
        /// The digest of what was written.
        actual: String,
    },
    /// The server's stream broke the protocol (a chunk out of place, data
    /// that is not base64).
    #[error("the server's download stream is malformed: {0}")]
    Protocol(String),
}

impl From<RpcError<FilesError>> for TransferError {
    fn from(e: RpcError<FilesError>) -> Self {
        match e.into_application() {
            Ok(e) => Self::Refused(e),
            Err(e) => Self::Rpc(e),
        }
    }
}

impl TransferError {
    /// Whether trying again on a new connection may succeed: the
    /// connection broke or timed out.
    fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Rpc(RpcError::Closed(_) | RpcError::Timeout(_) | RpcError::Connect { .. })
        )
    }
}

/// What an upload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    /// The stored file, as the server lists it.
    pub entry: Entry,
    /// The offset the first `begin` answered: more than 0 when an earlier,
    /// interrupted upload was resumed.
    pub resumed_from: u64,
    /// How many times the connection broke and the upload went on.
    pub retries: u32,
}

/// Uploads local file `local` as `name`, resuming an interrupted upload of
/// the same content. With `if_match`, the server refuses it unless its
/// file still has that SHA-256. `progress` gets the bytes the server has,
/// after each chunk. [`upload_reporting`] also reports the hashing.
///
/// # Errors
/// As [`upload_reporting`].
pub async fn upload(
    files: &FilesClient,
    session: &str,
    local: &Path,
    name: &str,
    if_match: Option<&str>,
    retries: u32,
    progress: &(dyn Fn(u64) + Send + Sync),
) -> Result<Uploaded, TransferError> {
    upload_reporting(
        files,
        session,
        local,
        name,
        if_match,
        retries,
        &|_, _| {},
        progress,
    )
    .await
}

/// [`upload`], first asking the server whether it would take a file of
/// this size (`files.check_upload`: the size limit, the path, the disk
/// space), so a refusal comes before the file is hashed; then hashing it,
/// with `hashing` getting the bytes hashed so far and the file's size
/// (for a progress bar: a big file takes a while).
///
/// # Errors
/// [`TransferError::Local`] if `local` cannot be read,
/// [`TransferError::Refused`] for the server's refusals (by
/// `check_upload` before any hashing, or later),
/// [`TransferError::Rpc`] once `retries` reconnections have failed.
#[allow(clippy::too_many_arguments)]
pub async fn upload_reporting(
    files: &FilesClient,
    session: &str,
    local: &Path,
    name: &str,
    if_match: Option<&str>,
    retries: u32,
    hashing: &(dyn Fn(u64, u64) + Send + Sync),
    progress: &(dyn Fn(u64) + Send + Sync),
) -> Result<Uploaded, TransferError> {
    let local_error = |source| TransferError::Local {
        path: local.to_owned(),
        source,
    };
    let size = tokio::fs::metadata(local).await.map_err(local_error)?.len();
    match files
        .check_upload(session.to_owned(), name.to_owned(), size)
        .await
    {
        Ok(()) => {}
        // A server from before `check_upload`: `begin` checks the same.
        Err(RpcError::Server(e)) if e.code == rpc_core::code::METHOD_NOT_FOUND => {}
        Err(e) => return Err(e.into()),
    }
    let digest = hash_reporting(local, size, hashing)
        .await
        .map_err(local_error)?;
    let digest = hex(&digest);
    let mut file = tokio::fs::File::open(local).await.map_err(local_error)?;
    let mut failures = 0;
    let mut resumed_from = None;
    loop {
        match send(
            files, session, &mut file, name, size, &digest, if_match, progress,
        )
        .await
        {
            Ok((entry, from)) => {
                return Ok(Uploaded {
                    entry,
                    resumed_from: resumed_from.unwrap_or(from),
                    retries: failures,
                });
            }
            Err((e, from)) => {
                resumed_from = resumed_from.or(from);
                if !e.is_transient() || failures >= retries {
                    return Err(e);
                }
                failures += 1;
                tracing::info!(error = %e, "upload interrupted; resuming");
            }
        }
    }
}

/// The SHA-256 of file `path` (of `size` bytes), hashed on a blocking
/// thread; `hashing` gets the bytes hashed so far, and `size`.
async fn hash_reporting(
    path: &Path,
    size: u64,
    hashing: &(dyn Fn(u64, u64) + Send + Sync),
) -> std::io::Result<[u8; 32]> {
    let (done, mut seen) = tokio::sync::watch::channel(0u64);
    let path = path.to_owned();
    let task = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut file = std::fs::File::open(&path)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0; 1 << 20];
        let mut at = 0u64;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            at += n as u64;
            done.send_replace(at);
        }
        Ok::<_, std::io::Error>(<[u8; 32]>::from(hasher.finalize()))
    });
    hashing(0, size);
    // Ends when the task drops its sender: done or failed.
    while seen.changed().await.is_ok() {
        hashing(*seen.borrow_and_update(), size);
    }
    task.await.unwrap_or_else(|e| Err(std::io::Error::other(e)))
}

/// One attempt at an upload: `begin`, the chunks from its offset,
/// `commit`. On failure, the error and the offset `begin` answered, if it
/// did.
#[allow(clippy::too_many_arguments)]
async fn send(
    files: &FilesClient,
    session: &str,
    file: &mut tokio::fs::File,
    name: &str,
    size: u64,
    digest: &str,
    if_match: Option<&str>,
    progress: &(dyn Fn(u64) + Send + Sync),
) -> Result<(Entry, u64), (TransferError, Option<u64>)> {
    let begun = files
        .begin(
            session.to_owned(),
            name.to_owned(),
            size,
            digest.to_owned(),
            if_match.map(str::to_owned),
        )
        .await
        .map_err(|e| (e.into(), None))?;
    let from = begun.offset;
    let fail = |e: TransferError| (e, Some(from));
    let local = |source| TransferError::Local {
        path: PathBuf::from(name),
        source,
    };
    let mut offset = begun.offset;
    progress(offset);
    let mut buf = vec![0; MAX_CHUNK];
    while offset < size {
        file.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(|e| fail(local(e)))?;
        let want = MAX_CHUNK.min((size - offset) as usize);
        file.read_exact(&mut buf[..want])
            .await
            .map_err(|e| fail(local(e)))?;
        let chunk = &buf[..want];
        let data = base64::engine::general_purpose::STANDARD.encode(chunk);
        let crc = crc32fast::hash(chunk);
        match files
            .put(
                session.to_owned(),
                begun.upload_id.clone(),
                offset,
                data,
                crc,
            )
            .await
        {
            Ok(end) => offset = end,
            // Another call of ours got there first (a retried call, or a
            // second uploader of the same content): go on from the end.
            Err(RpcError::Application(FilesError::WrongOffset { expected, .. })) => {
                offset = expected;
            }
            Err(e) => return Err(fail(e.into())),
        }
        progress(offset);
    }
    let entry = files
        .commit(session.to_owned(), begun.upload_id.clone())
        .await
        .map_err(|e| fail(e.into()))?;
    Ok((entry, from))
}

/// What a download did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    /// The file's size.
    pub size: u64,
    /// Its SHA-256, checked.
    pub sha256: String,
    /// The length of the partial file it started from (0 for a fresh
    /// download, or one that started over).
    pub resumed_from: u64,
    /// Whether the partial file was thrown away and the download started
    /// over from byte 0: the file changed on the server since the partial
    /// file was written (it got shorter, or its digest no longer matched).
    pub started_over: bool,
    /// How many times the connection broke and the download went on.
    pub retries: u32,
}

/// The partial file of a download to `to`: `to` with `.part` added.
pub fn partial_path(to: &Path) -> PathBuf {
    let mut name = to.as_os_str().to_owned();
    name.push(".part");
    PathBuf::from(name)
}

/// Downloads `name` to local file `to`, through the partial file
/// [`partial_path`]`(to)`: if one is there, from its length on. The whole
/// file's SHA-256 is checked before the partial file is renamed to `to`; a
/// mismatch (the file changed on the server in between) starts over once.
/// `progress` gets the bytes the local file has, and the file's size.
///
/// # Errors
/// [`TransferError::Refused`] for the server's refusals (nothing written),
/// [`TransferError::Rpc`] once `retries` reconnections have failed (the
/// partial file stays, to resume from), [`TransferError::Local`],
/// [`TransferError::Corrupt`], [`TransferError::Protocol`].
pub async fn download(
    files: &FilesClient,
    session: &str,
    name: &str,
    to: &Path,
    retries: u32,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<Downloaded, TransferError> {
    let part = partial_path(to);
    let mut failures = 0;
    let mut started_over = false;
    let mut resumed_from = None;
    loop {
        let have = match tokio::fs::metadata(&part).await {
            Ok(meta) => meta.len(),
            Err(_) => 0,
        };
        resumed_from.get_or_insert(have);
        let outcome = receive(files, session, name, &part, have, progress).await;
        let restart = match outcome {
            Ok((size, sha256)) => {
                let actual = {
                    let hashed = part.clone();
                    tokio::task::spawn_blocking(move || sha256_of(&hashed))
                        .await
                        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
                        .map_err(|source| TransferError::Local {
                            path: part.clone(),
                            source,
                        })?
                };
                if hex(&actual) == sha256 {
                    tokio::fs::rename(&part, to)
                        .await
                        .map_err(|source| TransferError::Local {
                            path: to.to_owned(),
                            source,
                        })?;
                    return Ok(Downloaded {
                        size,
                        sha256,
                        resumed_from: resumed_from.unwrap_or(0),
                        started_over,
                        retries: failures,
                    });
                }
                if started_over {
                    return Err(TransferError::Corrupt {
                        expected: sha256,
                        actual: hex(&actual),
                    });
                }
                true
            }
            // The partial file is longer than the server's: it changed.
            Err(TransferError::Refused(FilesError::OffsetPastEnd { .. })) if !started_over => true,
            Err(e) if e.is_transient() && failures < retries => {
                failures += 1;
                tracing::info!(error = %e, "download interrupted; resuming");
                false
            }
            Err(e) => return Err(e),
        };
        if restart {
            started_over = true;
            resumed_from = Some(0);
            let _ = tokio::fs::remove_file(&part).await;
        }
    }
}

/// One attempt: the stream from `have` on, appended to `part`. The size
/// and SHA-256 the server announced at the end.
async fn receive(
    files: &FilesClient,
    session: &str,
    name: &str,
    part: &Path,
    have: u64,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<(u64, String), TransferError> {
    let local = |source| TransferError::Local {
        path: part.to_owned(),
        source,
    };
    let mut stream = files
        .inner()
        .open_stream::<_, Chunk, FilesError, FilesError>(
            "files.download",
            &(session, name, have),
            CallOptions::new().window(DOWNLOAD_WINDOW),
        )
        .await?;
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(part)
        .await
        .map_err(local)?;
    let mut at = have;
    let mut total = 0;
    let outcome = async {
        while let Some(item) = stream.next().await {
            match item? {
                Chunk::Data { offset, size, data } => {
                    total = size;
                    if offset != at {
                        return Err(TransferError::Protocol(format!(
                            "a chunk at offset {offset}, expected {at}"
                        )));
                    }
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(&data)
                        .map_err(|e| {
                            TransferError::Protocol(format!("a chunk is not base64: {e}"))
                        })?;
                    file.write_all(&bytes).await.map_err(local)?;
                    at += bytes.len() as u64;
                    progress(at, total);
                }
                Chunk::End { size, sha256 } => {
                    if at != size {
                        return Err(TransferError::Protocol(format!(
                            "the stream ended at {at} bytes, the file has {size}"
                        )));
                    }
                    return Ok((size, sha256));
                }
            }
        }
        Err(TransferError::Rpc(RpcError::Closed(
            rpc_core::CloseReason::PeerClosed { last_error: None },
        )))
    }
    .await;
    // Whatever happened, what was written is on the disk before the
    // partial file is read again (tokio's file writes in the background).
    file.flush().await.map_err(local)?;
    file.sync_all().await.map_err(local)?;
    outcome
}

/// The SHA-256 of `bytes`, in hex: for a client that holds the data.
pub fn digest_of(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}
