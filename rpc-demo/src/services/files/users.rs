//! Users, passwords and sessions.
//!
//! **The users file** has one user a line, `NAME:HASH`, where `HASH` is the
//! password's Argon2id hash in the PHC string format, with its own random
//! salt (`$argon2id$v=19$m=19456,t=2,p=1$SALT$HASH`). Blank lines and lines
//! starting with `#` are ignored. `rpc-demo users add NAME` writes it
//! ([`Users::add_to_file`]): atomically, readable by its owner only.
//!
//! **Wrong passwords** are counted per user and per peer address. An
//! attempt counts as a failure from the moment it starts, and is forgiven,
//! with the whole count, if the password is right; so a burst of attempts
//! sent at once is limited like one sent in turn. The fifth failure in a
//! row locks the user, and the peer, out: further attempts are refused with
//! [`FilesError::LockedOut`], without checking the password, until the
//! cool-down passes. Anyone can thus lock a user out for a cool-down by
//! guessing wrong five times: the price of stopping a guesser, as on most
//! systems. An unknown user name costs the same time as a known one (a
//! hash is checked either way) and is counted against the peer only.
//!
//! **Sessions** are 256-bit random tokens, kept as their SHA-256 (a
//! memory dump does not show live tokens), valid for the session TTL.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::{FilesError, MAX_FAILURES, Session, hex};

/// The longest user name, in bytes.
pub const MAX_NAME: usize = 32;
/// The longest password, in bytes (Argon2 takes any length; this bounds the
/// work one login can ask for).
pub const MAX_PASSWORD: usize = 1024;
/// Peer addresses whose failures are remembered at once; past this, the
/// oldest that are not locked out are forgotten.
const MAX_TRACKED_PEERS: usize = 4096;
/// Password checks running at once: each Argon2 check holds 19 MiB, so a
/// flood of logins waits its turn instead of taking the server's memory.
pub const MAX_CONCURRENT_CHECKS: usize = 4;
/// Sessions open at once; past this, expired ones are dropped, then the
/// login is refused until some expire.
const MAX_SESSIONS: usize = 65_536;

/// Why the users file cannot be read or written, or a user not added.
#[derive(Debug, thiserror::Error)]
pub enum UserFileError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The users file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// A line is not `NAME:HASH` with a valid name and an Argon2 hash.
    #[error(
        "{path}, line {line}: {reason}; each line must be NAME:HASH as `rpc-demo users add` writes it"
    )]
    BadLine {
        /// The users file.
        path: PathBuf,
        /// The line's number, from 1.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A user name that is not allowed.
    #[error(
        "{0:?} is not a valid user name: use 1 to 32 letters, digits, `.`, `_` or `-`, not starting with `.` or `-`"
    )]
    BadName(String),
    /// An empty or too long password.
    #[error("a password must be 1 to 1024 bytes")]
    BadPassword,
    /// Hashing failed (it does not, with valid parameters).
    #[error("could not hash the password: {0}")]
    Hash(String),
}

/// The users and their password hashes, as read from a users file.
#[derive(Debug, Clone, Default)]
pub struct Users {
    hashes: HashMap<String, String>,
}

impl Users {
    /// Reads a users file.
    ///
    /// # Errors
    /// [`UserFileError::Io`] if it cannot be read, [`UserFileError::BadLine`]
    /// for a line that is not a user.
    pub fn load(path: &Path) -> Result<Self, UserFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| UserFileError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses the text of users file `path`.
    ///
    /// # Errors
    /// [`UserFileError::BadLine`] for a line that is not a user.
    pub fn parse(path: &Path, text: &str) -> Result<Self, UserFileError> {
        let mut hashes = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |reason: &str| UserFileError::BadLine {
                path: path.to_owned(),
                line: i + 1,
                reason: reason.to_owned(),
            };
            let (name, hash) = line.split_once(':').ok_or_else(|| bad("no `:`"))?;
            check_name(name).map_err(|_| bad("the name is not valid"))?;
            PasswordHash::new(hash).map_err(|_| bad("the hash is not a PHC string"))?;
            if hashes.insert(name.to_owned(), hash.to_owned()).is_some() {
                return Err(bad("the user appears twice"));
            }
        }
        Ok(Self { hashes })
    }

    /// How many users there are.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Whether `name` is a user.
    pub fn contains(&self, name: &str) -> bool {
        self.hashes.contains_key(name)
    }

    /// Sets `name`'s password (adding the user, or replacing the password).
    ///
    /// # Errors
    /// [`UserFileError::BadName`], [`UserFileError::BadPassword`].
    pub fn set(&mut self, name: &str, password: &str) -> Result<(), UserFileError> {
        check_name(name)?;
        let hash = hash_password(password)?;
        self.hashes.insert(name.to_owned(), hash);
        Ok(())
    }

    /// The file's text: one `NAME:HASH` line per user, sorted by name.
    pub fn to_text(&self) -> String {
        let mut names: Vec<&String> = self.hashes.keys().collect();
        names.sort();
        names
            .into_iter()
            .map(|name| format!("{name}:{}\n", self.hashes[name]))
            .collect()
    }

    /// Adds `name` with `password` to users file `path` (created if
    /// missing), or replaces its password; returns whether it was already
    /// there. The file is replaced atomically (a temporary file, fsynced,
    /// renamed, the folder fsynced), and readable by its owner only.
    ///
    /// # Errors
    /// The name or password is refused, or the file cannot be read or
    /// written.
    pub fn add_to_file(path: &Path, name: &str, password: &str) -> Result<bool, UserFileError> {
        let mut users = match Self::load(path) {
            Ok(users) => users,
            Err(UserFileError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Self::default()
            }
            Err(e) => return Err(e),
        };
        let existed = users.contains(name);
        users.set(name, password)?;
        write_atomically(path, users.to_text().as_bytes()).map_err(|source| UserFileError::Io {
            path: path.to_owned(),
            source,
        })?;
        Ok(existed)
    }

    /// Whether `password` is `name`'s. Takes an Argon2 hash's time even for
    /// an unknown name. Call it off the async threads.
    pub fn verify(&self, name: &str, password: &str) -> bool {
        let known = self.hashes.get(name);
        let hash = known.map_or_else(|| dummy_hash().as_str(), String::as_str);
        let matches = PasswordHash::new(hash).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        });
        matches && known.is_some()
    }
}

/// Hashes `password` with Argon2id (the crate's default cost: 19 MiB, 2
/// passes) and a random 16-byte salt, as a PHC string.
///
/// # Errors
/// [`UserFileError::BadPassword`] for an empty or too long password.
pub fn hash_password(password: &str) -> Result<String, UserFileError> {
    if password.is_empty() || password.len() > MAX_PASSWORD {
        return Err(UserFileError::BadPassword);
    }
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| UserFileError::Hash(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| UserFileError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| UserFileError::Hash(e.to_string()))
}

/// Checks a user name: 1 to 32 of `[A-Za-z0-9._-]`, not starting with `.`
/// or `-`.
///
/// # Errors
/// [`UserFileError::BadName`].
pub fn check_name(name: &str) -> Result<(), UserFileError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(UserFileError::BadName(name.to_owned()))
    }
}

/// A hash of a random password, checked for unknown users so that they
/// take as long as known ones.
fn dummy_hash() -> &'static String {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let mut random = [0u8; 16];
        let _ = getrandom::fill(&mut random);
        hash_password(&hex(&random)).unwrap_or_default()
    })
}

/// Writes `bytes` to `path` so that a crash leaves the old file or the new
/// one, never a mix: a temporary file beside it (mode 0600), fsynced,
/// renamed over it, the folder fsynced.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let file_name = path.file_name().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path names no file")
    })?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(file_name);
    temp_name.push(".tmp");
    let temp = dir.join(temp_name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let result = (|| {
        let mut file = options.open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)?;
        super::upload::sync_dir(dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Wrong passwords in a row for one user or one peer.
#[derive(Debug, Default, Clone, Copy)]
struct Strikes {
    count: u32,
    /// Set at the fifth strike: attempts are refused until then.
    until: Option<Instant>,
}

impl Strikes {
    /// The time left locked out, if any; a cool-down that has passed
    /// starts the count afresh.
    fn locked(&mut self, now: Instant) -> Option<Duration> {
        match self.until {
            Some(until) if until > now => Some(until - now),
            Some(_) => {
                *self = Self::default();
                None
            }
            None => None,
        }
    }

    fn strike(&mut self, now: Instant, lockout: Duration) {
        self.count += 1;
        if self.count >= MAX_FAILURES {
            self.until = Some(now + lockout);
        }
    }
}

#[derive(Debug, Default)]
struct State {
    /// By the SHA-256 of the token: the user and when it expires.
    sessions: HashMap<[u8; 32], (String, Instant)>,
    users: HashMap<String, Strikes>,
    peers: HashMap<IpAddr, Strikes>,
}

/// The logins of a Files service: users, sessions, wrong-password counts.
#[derive(Debug)]
pub struct Logins {
    users: std::sync::Arc<Users>,
    ttl: Duration,
    lockout: Duration,
    state: Mutex<State>,
    checks: tokio::sync::Semaphore,
}

impl Logins {
    /// Logins for `users`, with sessions lasting `ttl` and a `lockout`
    /// cool-down after [`MAX_FAILURES`] wrong passwords.
    pub fn new(users: Users, ttl: Duration, lockout: Duration) -> Self {
        Self {
            users: std::sync::Arc::new(users),
            ttl,
            lockout,
            state: Mutex::default(),
            checks: tokio::sync::Semaphore::new(MAX_CONCURRENT_CHECKS),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks `user`'s `password`, from `peer`, and opens a session.
    ///
    /// # Errors
    /// [`FilesError::LockedOut`] while the user or the peer is locked out
    /// (the password is not checked), [`FilesError::BadCredentials`].
    pub async fn login(
        &self,
        peer: Option<IpAddr>,
        user: &str,
        password: String,
    ) -> Result<Session, FilesError> {
        let known = self.users.contains(user);
        {
            let now = Instant::now();
            let mut state = self.state();
            let mut wait = None;
            if known {
                wait = wait.max(state.users.entry(user.to_owned()).or_default().locked(now));
            }
            if let Some(peer) = peer {
                if let Some(strikes) = state.peers.get_mut(&peer) {
                    wait = wait.max(strikes.locked(now));
                }
            }
            if let Some(wait) = wait {
                tracing::warn!(user, peer = %PeerShown(peer), "login refused: locked out");
                return Err(FilesError::LockedOut {
                    retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
                });
            }
            // Counted now, forgiven below if the password is right.
            if known {
                state
                    .users
                    .entry(user.to_owned())
                    .or_default()
                    .strike(now, self.lockout);
            }
            if let Some(peer) = peer {
                if !state.peers.contains_key(&peer) && state.peers.len() >= MAX_TRACKED_PEERS {
                    state.peers.retain(|_, s| s.until.is_some_and(|u| u > now));
                }
                if state.peers.len() < MAX_TRACKED_PEERS {
                    state
                        .peers
                        .entry(peer)
                        .or_default()
                        .strike(now, self.lockout);
                }
            }
        }
        let users = self.users.clone();
        let name = user.to_owned();
        let right = password.len() <= MAX_PASSWORD && {
            // Never closed, so the permit always comes.
            let _turn = self.checks.acquire().await;
            tokio::task::spawn_blocking(move || users.verify(&name, &password))
                .await
                .unwrap_or(false)
        };
        let now = Instant::now();
        let mut state = self.state();
        if !right {
            tracing::warn!(user, peer = %PeerShown(peer), "login failed: wrong user or password");
            return Err(FilesError::BadCredentials);
        }
        state.users.remove(user);
        if let Some(peer) = peer {
            state.peers.remove(&peer);
        }
        if state.sessions.len() >= MAX_SESSIONS {
            state.sessions.retain(|_, (_, expires)| *expires > now);
            if state.sessions.len() >= MAX_SESSIONS {
                return Err(FilesError::Io(
                    "too many open sessions; try again when some expire".to_owned(),
                ));
            }
        }
        let mut random = [0u8; 32];
        getrandom::fill(&mut random)
            .map_err(|e| FilesError::Io(format!("no random numbers for a token: {e}")))?;
        let token = hex(&random);
        state
            .sessions
            .insert(token_key(&token), (user.to_owned(), now + self.ttl));
        tracing::info!(user, peer = %PeerShown(peer), "logged in");
        Ok(Session {
            token,
            user: user.to_owned(),
            expires_in_ms: self.ttl.as_millis().try_into().unwrap_or(u64::MAX),
        })
    }

    /// The user of session `token`.
    ///
    /// # Errors
    /// [`FilesError::NoSession`] for an empty token,
    /// [`FilesError::UnknownSession`], [`FilesError::SessionExpired`].
    pub fn user(&self, token: &str) -> Result<String, FilesError> {
        if token.is_empty() {
            return Err(FilesError::NoSession);
        }
        let state = self.state();
        match state.sessions.get(&token_key(token)) {
            None => Err(FilesError::UnknownSession),
            Some((_, expires)) if *expires <= Instant::now() => Err(FilesError::SessionExpired),
            Some((user, _)) => Ok(user.clone()),
        }
    }

    /// Ends session `token`.
    ///
    /// # Errors
    /// As [`user`](Self::user).
    pub fn logout(&self, token: &str) -> Result<(), FilesError> {
        self.user(token)?;
        self.state().sessions.remove(&token_key(token));
        Ok(())
    }

    /// Drops expired sessions, and counts whose cool-down has passed.
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut state = self.state();
        state.sessions.retain(|_, (_, expires)| *expires > now);
        state.users.retain(|_, s| s.until.is_none_or(|u| u > now));
        state.peers.retain(|_, s| s.until.is_none_or(|u| u > now));
    }

    /// Open sessions, expired ones not yet swept included.
    pub fn sessions(&self) -> usize {
        self.state().sessions.len()
    }
}

fn token_key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A caller's address in the log: the address, or `unknown` (a caller
/// over an in-process connection has none).
struct PeerShown(Option<IpAddr>);

impl std::fmt::Display for PeerShown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(ip) => ip.fmt(f),
            None => f.write_str("unknown"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_file_round_trips_and_checks_passwords() {
        let mut users = Users::default();
        users.set("ana", "segredo").unwrap();
        let text = users.to_text();
        assert!(text.starts_with("ana:$argon2id$"), "{text}");
        assert!(!text.contains("segredo"));
        let read = Users::parse(Path::new("users"), &format!("# comment\n\n{text}")).unwrap();
        assert!(read.verify("ana", "segredo"));
        assert!(!read.verify("ana", "Segredo"));
        assert!(!read.verify("bia", "segredo"));
    }

    #[test]
    fn bad_lines_and_names_are_refused() {
        for text in [
            "ana",
            "ana:notahash",
            "../x:$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA",
        ] {
            assert!(
                matches!(
                    Users::parse(Path::new("users"), text),
                    Err(UserFileError::BadLine { line: 1, .. })
                ),
                "{text}"
            );
        }
        for name in ["", ".hidden", "-x", "a b", "a:b", &"x".repeat(33)] {
            assert!(check_name(name).is_err(), "{name:?}");
        }
        assert!(check_name("maria.silva_2").is_ok());
        assert!(matches!(hash_password(""), Err(UserFileError::BadPassword)));
    }
}
