//! `rpc-demo files login|logout|ls|get|put|rm` and `rpc-demo users add`:
//! the terminal client of the Files service, and the users file it logs in
//! against.
//!
//! - **Passwords** are asked without echo when standard input is a
//!   terminal (rpassword). Otherwise the first line of standard input is
//!   the password, for scripts: `printf 'pw\n' | rpc-demo users add ana`.
//! - **The session**: `login` keeps the token, with the server's address,
//!   in a session file readable by its owner only (`--session-file`, by
//!   default `$XDG_RUNTIME_DIR/rpc-demo-files-session.json`, else
//!   `~/.rpc-demo-files-session.json`); the other commands read it, and
//!   talk to its server unless `--server` is given (then the two must
//!   agree). The token is never printed or logged.
//! - **Progress bars** (indicatif) show the rate and the time left, on
//!   standard output when it is a terminal (the last state stays on the
//!   screen); otherwise nothing is drawn.
//! - **`get`** downloads into `PATH.part` and renames it to `PATH` once its
//!   SHA-256 is checked; an interrupted `get` resumes from the partial
//!   file. It does not replace an existing `PATH` that differs from the
//!   server's file without `--force`.
//! - **`put`** asks `files.check_upload` first, so a file over the
//!   server's limit or its free space is refused before it is hashed;
//!   then it resumes an upload the server still holds, or starts one.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rpc_core::RpcError;
use rpc_demo::services::files::transfer::{self, TransferError};
use rpc_demo::services::files::{self, FileStore, Kind, Limits, Users};
use rpc_demo::services::{FilesClient, FilesError};
use serde::{Deserialize, Serialize};

use crate::{ClientArgs, DemoError};

/// Times a transfer goes on after a broken connection.
const RETRIES: u32 = 3;

/// The Files service's options of `serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeFiles {
    /// Serve the Files service over this folder (with --users); without
    /// it, Files is not served.
    #[arg(long, value_name = "DIR", requires = "users")]
    files_root: Option<PathBuf>,
    /// The Files service's users file, written by `rpc-demo users add`.
    #[arg(long, value_name = "FILE", requires = "files_root")]
    users: Option<PathBuf>,
    /// The largest file an upload may declare, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = files::DEFAULT_MAX_FILE_SIZE)]
    files_max_size: u64,
    /// Bytes that must stay free on the disk after an upload.
    #[arg(long, value_name = "BYTES", default_value_t = files::DEFAULT_MIN_FREE_SPACE)]
    files_min_free: u64,
}

impl ServeFiles {
    /// The store to serve, if --files-root was given.
    pub(crate) fn store(&self) -> Result<Option<FileStore>, DemoError> {
        let (Some(root), Some(users)) = (&self.files_root, &self.users) else {
            return Ok(None);
        };
        let users = Users::load(users).map_err(|e| match &e {
            files::UserFileError::Io { source, .. }
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                DemoError::Usage(format!(
                    "{e}; create it with `rpc-demo users add NAME --users {}`",
                    users.display()
                ))
            }
            _ => DemoError::Usage(e.to_string()),
        })?;
        if users.is_empty() {
            tracing::warn!("the users file has no users: nobody can log in to Files");
        }
        let limits = Limits {
            max_file_size: self.files_max_size,
            min_free_space: self.files_min_free,
            ..Limits::default()
        };
        let store = FileStore::open(root, users, limits).map_err(|e| {
            DemoError::Usage(format!(
                "--files-root {}: {e}; give an existing folder",
                root.display()
            ))
        })?;
        Ok(Some(store))
    }
}

/// `rpc-demo users …`.
#[derive(Debug, Args)]
pub(crate) struct UsersArgs {
    #[command(subcommand)]
    command: UsersCommand,
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// Adds user NAME to the users file (or sets a new password), asking
    /// the password without echo; from a pipe, the first line of input.
    Add {
        /// The user name: 1 to 32 letters, digits, `.`, `_` or `-`.
        name: String,
        /// The users file (created if missing).
        #[arg(long, value_name = "FILE", default_value = "users.txt")]
        users: PathBuf,
    },
}

/// Runs `rpc-demo users …`.
pub(crate) fn users(args: UsersArgs) -> Result<(), DemoError> {
    match args.command {
        UsersCommand::Add { name, users } => {
            files::users::check_name(&name).map_err(|e| DemoError::Usage(e.to_string()))?;
            let password = read_password(&format!("Password for {name}: "), true)?;
            let existed = Users::add_to_file(&users, &name, &password)
                .map_err(|e| DemoError::Usage(e.to_string()))?;
            say!(
                "{} {name} in {}",
                if existed {
                    "changed the password of"
                } else {
                    "added"
                },
                users.display()
            );
            Ok(())
        }
    }
}

/// `rpc-demo files ACTION [OPTIONS]`: the options (`--server`,
/// `--session-file`, …) go before or after the action alike.
#[derive(Debug, Args)]
pub(crate) struct FilesArgs {
    #[command(subcommand)]
    command: FilesCommand,
    /// Where `login` keeps the session, and the other commands read it.
    #[arg(long, global = true, value_name = "FILE")]
    session_file: Option<PathBuf>,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Subcommand)]
enum FilesCommand {
    /// Logs in as USER (asks the password) and keeps the session.
    Login {
        /// The user name.
        user: String,
    },
    /// Ends the session on the server and forgets it here.
    Logout,
    /// Lists a folder: kind, size, time, SHA-256 and name of each entry.
    Ls {
        /// The folder (default: the served folder itself).
        #[arg(default_value = "")]
        dir: String,
    },
    /// Downloads NAME, resuming from a partial file `PATH.part`.
    Get {
        /// The file on the server.
        name: String,
        /// Where to save it: a file, or a folder to save it in under its
        /// name (default: its name, in this folder).
        #[arg(long, value_name = "PATH")]
        to: Option<PathBuf>,
        /// Replace an existing local file that differs from the server's
        /// (otherwise refused, so local edits are not lost).
        #[arg(long)]
        force: bool,
    },
    /// Uploads PATH, replacing the server's file only once all of it has
    /// arrived and checks out.
    Put {
        /// The local file.
        path: PathBuf,
        /// The name on the server (default: PATH's file name).
        #[arg(long = "as", value_name = "NAME")]
        name: Option<String>,
        /// Refuse unless the server's file still has this SHA-256 (the one
        /// `get` printed): nobody changed it since you downloaded it.
        #[arg(long, value_name = "SHA256")]
        if_match: Option<String>,
    },
    /// Deletes file NAME on the server.
    Rm {
        /// The file on the server.
        name: String,
    },
}

/// What the session file holds.
#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    server: String,
    user: String,
    token: String,
}

/// Runs `rpc-demo files …`.
pub(crate) async fn run(args: FilesArgs) -> Result<(), DemoError> {
    let given = args.session_file.is_some();
    let session_file = match args.session_file {
        Some(path) => path,
        None => default_session_file()?,
    };
    let session = Place {
        path: session_file,
        given,
    };
    let mut client = args.client;
    match args.command {
        FilesCommand::Login { user } => {
            let password = read_password(&format!("Password for {user}: "), false)?;
            let files = connect(&client).await?;
            let login = files.login(user, password).await.map_err(refused)?;
            let saved = Saved {
                server: client.server().to_owned(),
                user: login.user.clone(),
                token: login.token,
            };
            save_session(&session.path, &saved)?;
            say!(
                "logged in to {} as {}; the session lasts {} min",
                client.server(),
                login.user,
                login.expires_in_ms / 60_000
            );
        }
        FilesCommand::Logout => {
            let saved = load_session(&session, &mut client)?;
            let files = connect(&client).await?;
            let outcome = files.logout(saved.token).await;
            let _ = std::fs::remove_file(&session.path);
            match outcome {
                Ok(()) | Err(RpcError::Application(_)) => say!("logged out"),
                Err(e) => return Err(refused(e)),
            }
        }
        FilesCommand::Ls { dir } => {
            let saved = load_session(&session, &mut client)?;
            let files = connect(&client).await?;
            let entries = files
                .list(saved.token, dir.clone())
                .await
                .map_err(refused)?;
            if entries.is_empty() {
                let dir = match dir.as_str() {
                    "" | "." => "the served folder".to_owned(),
                    dir => format!("folder {dir}"),
                };
                say!("{dir} is empty");
            }
            for entry in entries {
                let modified = SystemTime::UNIX_EPOCH + Duration::from_millis(entry.modified_ms);
                let kind = match entry.kind {
                    Kind::File => "file",
                    Kind::Dir => "dir ",
                };
                say!(
                    "{kind} {:>12}  {}  {:<64}  {}",
                    entry.size,
                    httpdate::fmt_http_date(modified),
                    entry.sha256.as_deref().unwrap_or("-"),
                    entry.name
                );
            }
        }
        FilesCommand::Get { name, to, force } => {
            let saved = load_session(&session, &mut client)?;
            let to = local_target(&name, to)?;
            let files = connect(&client).await?;
            if !force && !may_replace(&files, &saved.token, &name, &to).await? {
                return Ok(());
            }
            let bar = Bar::new(TRANSFER);
            let shown = bar.clone();
            let progress = move |at: u64, total: u64| shown.show(at, total);
            let got = transfer::download(&files, &saved.token, &name, &to, RETRIES, &progress)
                .await
                .map_err(transfer_error);
            bar.end()?;
            let got = got?;
            if got.started_over {
                say!(
                    "{name} changed on the server since the partial download; downloaded it again from the start"
                );
            } else if got.resumed_from > 0 {
                say!("resumed from byte {}", got.resumed_from);
            }
            say!(
                "saved {name} to {} ({} bytes, sha256 {})",
                to.display(),
                got.size,
                got.sha256
            );
        }
        FilesCommand::Put {
            path,
            name,
            if_match,
        } => {
            let saved = load_session(&session, &mut client)?;
            let name = match name {
                Some(name) => name,
                None => file_name(&path)?,
            };
            let size = std::fs::metadata(&path)
                .map_err(|e| DemoError::Usage(format!("{}: {e}", path.display())))?
                .len();
            let files = connect(&client).await?;
            // A big file takes a while to hash: a bar shows it, then the
            // upload's bar takes its place.
            let hashing_bar = Bar::new(if size >= HASHING_BAR_FROM {
                HASHING
            } else {
                ""
            });
            let hashed = hashing_bar.clone();
            let hashing = move |at: u64, total: u64| hashed.show(at, total);
            let bar = Bar::new(TRANSFER);
            let shown = bar.clone();
            let hashed = hashing_bar.clone();
            let progress = move |at: u64| {
                // Errors writing to the terminal show up at the next `say!`.
                let _ = hashed.end();
                shown.show(at, size);
            };
            let sent = transfer::upload_reporting(
                &files,
                &saved.token,
                &path,
                &name,
                if_match.as_deref(),
                RETRIES,
                &hashing,
                &progress,
            )
            .await
            .map_err(transfer_error);
            hashing_bar.end()?;
            bar.end()?;
            let sent = sent?;
            if sent.resumed_from > 0 {
                say!("resumed from byte {}", sent.resumed_from);
            }
            say!(
                "stored {} ({} bytes, sha256 {})",
                sent.entry.name,
                sent.entry.size,
                sent.entry.sha256.as_deref().unwrap_or("-")
            );
        }
        FilesCommand::Rm { name } => {
            let saved = load_session(&session, &mut client)?;
            let files = connect(&client).await?;
            files
                .delete(saved.token, name.clone())
                .await
                .map_err(refused)?;
            say!("deleted {name}");
        }
    }
    Ok(())
}

/// Files from this size on get a progress bar while they are hashed.
const HASHING_BAR_FROM: u64 = 64 << 20;

/// The session file, and whether `--session-file` named it.
struct Place {
    path: PathBuf,
    given: bool,
}

/// Where `get NAME --to TO` saves: `TO`, or `TO/NAME's file name` when
/// `TO` is a folder, or NAME's file name here. Refuses a path whose folder
/// does not exist.
fn local_target(name: &str, to: Option<PathBuf>) -> Result<PathBuf, DemoError> {
    let base = name.rsplit('/').next().unwrap_or(name);
    let to = match to {
        Some(to) if to.is_dir() => {
            if base.is_empty() {
                return Err(DemoError::Usage(format!(
                    "{name} has no file name to save under in {}; give --to FILE",
                    to.display()
                )));
            }
            to.join(base)
        }
        Some(to) => {
            let parent = match to.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            if !parent.is_dir() {
                return Err(DemoError::Usage(format!(
                    "--to {}: folder {} does not exist; create it or give another path",
                    to.display(),
                    parent.display()
                )));
            }
            to
        }
        None => PathBuf::from(base),
    };
    if to.is_dir() {
        return Err(DemoError::Usage(format!(
            "{} is a folder; give --to FILE",
            to.display()
        )));
    }
    Ok(to)
}

/// Whether `get NAME --to TO` may go on over an existing `TO`: no if it
/// differs from the server's file (a refusal saying so: local edits would
/// be lost), `Ok(false)` if it already holds the same bytes (nothing to
/// download), `Ok(true)` if there is no `TO`.
async fn may_replace(
    files: &FilesClient,
    token: &str,
    name: &str,
    to: &Path,
) -> Result<bool, DemoError> {
    if std::fs::symlink_metadata(to).is_err() {
        return Ok(true);
    }
    let refusal = || {
        DemoError::Usage(format!(
            "{} already exists and differs from the server's {name}; nothing was downloaded. Give --force to replace it, or --to another path",
            to.display()
        ))
    };
    let local = {
        let path = to.to_owned();
        tokio::task::spawn_blocking(move || files::sha256_of(&path))
            .await
            .map_err(|e| DemoError::Other(e.to_string()))?
            .map_err(|e| DemoError::Usage(format!("{}: {e}", to.display())))?
    };
    let local = files::hex(&local);
    let (dir, base) = name.rsplit_once('/').unwrap_or(("", name));
    let Ok(entries) = files.list(token.to_owned(), dir.to_owned()).await else {
        return Err(refusal());
    };
    let same = entries.iter().any(|entry| {
        entry.kind == Kind::File
            && entry.name.rsplit('/').next() == Some(base)
            && entry.sha256.as_deref() == Some(local.as_str())
    });
    if !same {
        return Err(refusal());
    }
    say!(
        "{} already holds {name} (sha256 {local}); nothing to download",
        to.display()
    );
    Ok(false)
}

async fn connect(client: &ClientArgs) -> Result<FilesClient, DemoError> {
    Ok(FilesClient::new(crate::connect_to(client, "Files").await?))
}

/// The progress bar of a transfer: the rate and the time left.
const TRANSFER: &str =
    "[{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec}, {eta} left";
/// The progress bar of hashing a file before its upload.
const HASHING: &str = "hashing [{bar:30}] {binary_bytes}/{binary_total_bytes}, {eta} left";

/// A progress bar (indicatif) drawn on standard output if it is a
/// terminal, from its first [`Bar::show`] on: one that never shows leaves
/// no trace. Clones are the same bar.
#[derive(Clone)]
struct Bar {
    bar: ProgressBar,
    /// Whether it is drawn once shown: standard output is a terminal and
    /// the template is not empty.
    drawn: bool,
}

impl Bar {
    /// A bar drawn with indicatif `template`; `""` for one never drawn.
    fn new(template: &str) -> Self {
        let style = ProgressStyle::with_template(template)
            .map(|style| style.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        Self {
            bar: ProgressBar::hidden().with_style(style),
            drawn: !template.is_empty() && std::io::stdout().is_terminal(),
        }
    }

    /// Shows `at` of `total` (a `total` of 0: not known yet).
    fn show(&self, at: u64, total: u64) {
        if self.drawn && self.bar.is_hidden() && !self.bar.is_finished() {
            self.bar.set_draw_target(ProgressDrawTarget::stdout());
        }
        if total > 0 {
            self.bar.set_length(total);
        }
        self.bar.set_position(at);
    }

    /// Leaves the bar on the screen in its last state, and ends its line so
    /// that what is printed next starts a line of its own; nothing if it
    /// never showed, or already ended.
    fn end(&self) -> Result<(), DemoError> {
        if self.bar.is_hidden() || self.bar.is_finished() {
            return Ok(());
        }
        self.bar.finish();
        say!("");
        Ok(())
    }
}

/// The file name of `path`, as the name on the server.
fn file_name(path: &Path) -> Result<String, DemoError> {
    path.file_name()
        .and_then(|name| name.to_str())
        .map(str::to_owned)
        .ok_or_else(|| {
            DemoError::Usage(format!(
                "{} has no file name to use on the server; give one with --as NAME",
                path.display()
            ))
        })
}

/// A refused call, in words, with what to do about a lost session.
fn refused(e: RpcError<FilesError>) -> DemoError {
    match e.into_application() {
        Ok(
            e @ (FilesError::NoSession | FilesError::UnknownSession | FilesError::SessionExpired),
        ) => DemoError::Usage(format!("{e}; run `rpc-demo files login USER`")),
        Ok(e) => DemoError::Usage(e.to_string()),
        Err(RpcError::Server(e)) if e.code == rpc_core::code::METHOD_NOT_FOUND => {
            DemoError::Usage(
                "this server does not serve Files; start it with `rpc-demo serve --files-root DIR --users FILE`"
                    .to_owned(),
            )
        }
        Err(e) => DemoError::Rpc(e),
    }
}

fn transfer_error(e: TransferError) -> DemoError {
    match e {
        TransferError::Refused(e) => refused(RpcError::Application(e)),
        TransferError::Rpc(e) => DemoError::Other(format!(
            "{e}; the transfer stopped, run the same command again to resume"
        )),
        other => DemoError::Other(other.to_string()),
    }
}

/// Asks a password without echo on a terminal (twice with `confirm`);
/// reads the first line of standard input otherwise.
fn read_password(prompt: &str, confirm: bool) -> Result<String, DemoError> {
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(prompt)?;
        if confirm && rpassword::prompt_password("Again: ")? != first {
            return Err(DemoError::Usage(
                "the two passwords differ; nothing was changed".to_owned(),
            ));
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    if password.is_empty() {
        return Err(DemoError::Usage(
            "no password given (type it at the prompt, or send it as the first line of input)"
                .to_owned(),
        ));
    }
    Ok(password)
}

fn default_session_file() -> Result<PathBuf, DemoError> {
    const NAME: &str = "rpc-demo-files-session.json";
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join(NAME));
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(format!(".{NAME}"))),
        None => Err(DemoError::Usage(
            "no place for the session: set HOME or give --session-file FILE".to_owned(),
        )),
    }
}

/// Writes the session file, readable and writable by its owner only.
fn save_session(path: &Path, saved: &Saved) -> Result<(), DemoError> {
    use std::io::Write;
    let text = serde_json::to_vec(saved).map_err(|e| DemoError::Other(e.to_string()))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .and_then(|mut file| file.write_all(&text))
        .map_err(|e| DemoError::Usage(format!("saving the session to {}: {e}", path.display())))
}

/// The saved session. Without `--server`, `client` takes the session's
/// server; with it, the session must be for that server.
fn load_session(place: &Place, client: &mut ClientArgs) -> Result<Saved, DemoError> {
    let path = &place.path;
    let login = match (&client.server, place.given) {
        (Some(server), true) => format!(
            "rpc-demo files login USER --server {server} --session-file {}",
            path.display()
        ),
        (Some(server), false) => format!("rpc-demo files login USER --server {server}"),
        (None, true) => format!(
            "rpc-demo files login USER --server ADDR --session-file {}",
            path.display()
        ),
        (None, false) => "rpc-demo files login USER --server ADDR".to_owned(),
    };
    let text = std::fs::read(path).map_err(|_| {
        let elsewhere = if place.given {
            ""
        } else {
            " (or give --session-file FILE if you logged in with one)"
        };
        DemoError::Usage(format!(
            "not logged in (no session in {}); run `{login}`{elsewhere}",
            path.display()
        ))
    })?;
    let saved: Saved = serde_json::from_slice(&text).map_err(|_| {
        DemoError::Usage(format!(
            "{} is not a session file; run `{login}`",
            path.display()
        ))
    })?;
    match &client.server {
        Some(server) if *server != saved.server => {
            return Err(DemoError::Usage(format!(
                "the session in {} is for {}, not {server}; leave out --server to use it, or run `{login}`",
                path.display(),
                saved.server,
            )));
        }
        Some(_) => {}
        None => client.server = Some(saved.server.clone()),
    }
    Ok(saved)
}
