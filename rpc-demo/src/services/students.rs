//! The course's student records (the SQLite lab): name, enrolment number,
//! age, year of entry and situation, in a real SQLite file.
//!
//! # The data
//!
//! One table, `students`, keyed by the enrolment number (names repeat: the
//! course has two Pedros). A new database is seeded with the course's rows:
//! the first example's Pedro, then the exercise's João, Pedro, Maísa and
//! Patrick ([`SEED`]). The situation is one of the course's four words
//! ([`SITUATIONS`]).
//!
//! # Safety of the data
//!
//! - The database is in WAL mode, so readers never wait for the writer, with
//!   a busy timeout ([`BUSY_TIMEOUT`]) so that a writer in another process
//!   (a second `rpc-demo serve` on the same file) is waited for, not failed.
//! - Every write is one transaction begun with `BEGIN IMMEDIATE`: it takes
//!   the write lock before its first read, so a transaction that reads and
//!   then writes never fails with `SQLITE_BUSY` half-way. A write that is
//!   refused (bad input, unknown student, duplicate number) rolls back and
//!   changes nothing.
//! - The schema is versioned with SQLite's `user_version`: each migration
//!   in `MIGRATIONS` runs once, in the same transaction as the version bump;
//!   a file from a newer program is refused, not altered.
//! - Input is checked before the transaction, and the table's `CHECK`
//!   constraints check it again, so no other program can store a row the
//!   service would not.
//!
//! # SQLite and the async runtime
//!
//! SQLite calls block. Each call runs on tokio's blocking pool
//! (`spawn_blocking`), never on a runtime worker. This process writes
//! through one connection, taken in turn with an async mutex: SQLite allows
//! one writer at a time anyway, and waiting on a mutex wakes the next
//! writer at once, where SQLite's busy handler would sleep and poll. Reads
//! use a pool of [`READERS`] connections of their own, which in WAL mode
//! read a consistent snapshot while a write goes on. A call whose caller
//! gives up (a deadline, a dropped connection) still finishes its
//! transaction: it is committed whole or not at all.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The situations the course's table uses: enrolled, graduated, enrolment
/// suspended, dropped out. Anything else is refused.
pub const SITUATIONS: [&str; 4] = ["Cursando", "Formado", "Trancamento", "Desistiu"];

/// The rows a new database starts with: the course's first example (Pedro,
/// 2213482), then its exercise's table.
pub const SEED: [(&str, i64, i64, i64, &str); 5] = [
    ("Pedro", 2_213_482, 19, 2022, "Cursando"),
    ("João", 10_114_385, 28, 2022, "Formado"),
    ("Pedro", 13_100_001, 25, 2020, "Trancamento"),
    ("Maísa", 11_280_821, 26, 2023, "Cursando"),
    ("Patrick", 14_204_123, 24, 2022, "Desistiu"),
];

/// The longest name, in characters.
pub const MAX_NAME: usize = 100;
/// The oldest age accepted, in years.
pub const MAX_AGE: i64 = 150;
/// The years of entry accepted.
pub const YEARS: std::ops::RangeInclusive<i64> = 1900..=2100;
/// Students per page when the caller does not say.
pub const DEFAULT_PAGE: u32 = 100;
/// The most students one page holds.
pub const MAX_PAGE: u32 = 1000;
/// How long a write waits for another process's write lock before failing
/// with [`StudentsError::Storage`] ("database is locked").
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Read connections per database.
pub const READERS: usize = 4;

/// The migrations, in order: migration `i` takes the schema from version
/// `i` to `i + 1` (`PRAGMA user_version`). Append, never edit.
const MIGRATIONS: &[&str] = &["CREATE TABLE students (
        enrolment     INTEGER PRIMARY KEY CHECK (enrolment > 0),
        name          TEXT    NOT NULL CHECK (length(trim(name)) > 0),
        age           INTEGER NOT NULL CHECK (age BETWEEN 0 AND 150),
        year_of_entry INTEGER NOT NULL CHECK (year_of_entry BETWEEN 1900 AND 2100),
        situation     TEXT    NOT NULL
                      CHECK (situation IN ('Cursando', 'Formado', 'Trancamento', 'Desistiu'))
    ) STRICT;
    CREATE INDEX students_by_name ON students (name COLLATE NOCASE);"];

/// One student, as stored and as sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Student {
    /// The enrolment number ("matrícula"): positive, unique, the key.
    pub enrolment: i64,
    /// The name: 1 to 100 characters, no control characters; stored
    /// trimmed. Not unique.
    pub name: String,
    /// Age in years, 0 to 150.
    pub age: i64,
    /// Year of entry ("ingresso"), 1900 to 2100.
    pub year_of_entry: i64,
    /// One of [`SITUATIONS`].
    pub situation: String,
}

/// What `find` keeps: every field given must match; an empty filter keeps
/// everyone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Filter {
    /// Only students in this situation (one of [`SITUATIONS`]).
    pub situation: Option<String>,
    /// Only students who entered in this year or later ("after 2012" is
    /// `2013`).
    pub min_year: Option<i64>,
    /// Only students with this name: the whole name, letters A to Z in any
    /// case, surrounding spaces ignored.
    pub name: Option<String>,
    /// Only students at least this old, in years.
    pub min_age: Option<i64>,
    /// Only students at most this old, in years.
    pub max_age: Option<i64>,
}

/// What `update` changes: the fields given, each checked as in `add`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Changes {
    /// A new name.
    pub name: Option<String>,
    /// A new age, in years.
    pub age: Option<i64>,
    /// A new year of entry.
    pub year_of_entry: Option<i64>,
    /// A new situation.
    pub situation: Option<String>,
}

/// One page of students, in enrolment-number order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Page {
    /// The students of this page.
    pub students: Vec<Student>,
    /// Pass this as `after` for the next page; `null` on the last page.
    pub next: Option<i64>,
}

/// Why a call on the student records is refused. Every refusal leaves the
/// database as it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, thiserror::Error)]
pub enum StudentsError {
    /// The name is empty or only spaces.
    #[error("the name is empty: give the student's name")]
    EmptyName,
    /// The name is too long or holds control characters.
    #[error("the name is not valid: {reason}")]
    InvalidName {
        /// What is wrong with it.
        reason: String,
    },
    /// The age is negative or over 150.
    #[error("age {age} is not valid: give a whole number of years from 0 to 150")]
    InvalidAge {
        /// The age given.
        age: i64,
    },
    /// The year of entry is before 1900 or after 2100.
    #[error("year of entry {year} is not valid: give a year from 1900 to 2100")]
    InvalidYear {
        /// The year given.
        year: i64,
    },
    /// The enrolment number is zero or negative.
    #[error("enrolment number {enrolment} is not valid: it must be a positive whole number")]
    InvalidEnrolment {
        /// The number given.
        enrolment: i64,
    },
    /// The situation is not one of the course's.
    #[error("situation {situation:?} is not one of {}", allowed.join(", "))]
    UnknownSituation {
        /// The situation given.
        situation: String,
        /// The situations accepted ([`SITUATIONS`]).
        allowed: Vec<String>,
    },
    /// No student has this enrolment number.
    #[error("no student has enrolment number {enrolment}: list the students to see theirs")]
    UnknownStudent {
        /// The number given.
        enrolment: i64,
    },
    /// A student already has this enrolment number.
    #[error(
        "enrolment number {enrolment} is already {name}'s: each student needs a number of their own"
    )]
    DuplicateEnrolment {
        /// The number given.
        enrolment: i64,
        /// Who has it.
        name: String,
    },
    /// A page size of 0 or over [`MAX_PAGE`], or an age range whose minimum
    /// is above its maximum.
    #[error("{reason}")]
    InvalidQuery {
        /// What is wrong.
        reason: String,
    },
    /// The database failed (a disk error, another process holding the
    /// write lock past the busy timeout). Nothing was changed; the server's
    /// log has the detail.
    #[error(
        "the student database failed: {message}; try again, and tell the operator if it goes on"
    )]
    Storage {
        /// SQLite's description.
        message: String,
    },
}

impl From<rusqlite::Error> for StudentsError {
    fn from(e: rusqlite::Error) -> Self {
        tracing::error!(error = %e, "student database");
        Self::Storage {
            message: e.to_string(),
        }
    }
}

/// The course's student records.
#[rpc_core::service(namespace = "students")]
pub trait Students {
    /// Adds `student`; returns it as stored (its name trimmed). Refused if
    /// a field is not valid or the enrolment number is taken.
    async fn add(&self, student: Student) -> Result<Student, StudentsError>;
    /// The student with this enrolment number.
    #[rpc(read_only)]
    async fn get(&self, enrolment: i64) -> Result<Student, StudentsError>;
    /// Every student, a page at a time, in enrolment-number order: those
    /// numbered above `after` (from the start if absent), at most `limit`
    /// (default 100, at most 1000).
    #[rpc(read_only)]
    async fn list(&self, after: Option<i64>, limit: Option<u32>) -> Result<Page, StudentsError>;
    /// The students that `filter` keeps, paged as `list`.
    #[rpc(read_only)]
    async fn find(
        &self,
        filter: Filter,
        after: Option<i64>,
        limit: Option<u32>,
    ) -> Result<Page, StudentsError>;
    /// Gives the student numbered `enrolment` the name `name`; returns the
    /// student as changed.
    #[rpc(idempotent)]
    async fn rename(&self, enrolment: i64, name: String) -> Result<Student, StudentsError>;
    /// Changes the fields `changes` gives of the student numbered
    /// `enrolment`; returns the student as changed.
    #[rpc(idempotent)]
    async fn update(&self, enrolment: i64, changes: Changes) -> Result<Student, StudentsError>;
    /// Removes the student numbered `enrolment`; returns who it was.
    async fn remove(&self, enrolment: i64) -> Result<Student, StudentsError>;
}

/// How hard each commit holds on to the disk (SQLite's `synchronous`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous = FULL`: every commit is on the disk before it is
    /// answered; nothing is lost to a power cut. The default.
    #[default]
    Full,
    /// `synchronous = NORMAL`: the file is never corrupted, but the last
    /// commits before a power cut (not a crash of the program) may be
    /// lost. Much faster; for tests.
    Normal,
}

impl Durability {
    fn pragma(self) -> &'static str {
        match self {
            Self::Full => "FULL",
            Self::Normal => "NORMAL",
        }
    }
}

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// SQLite could not open, configure or migrate the file.
    #[error("could not open the student database {path}: {source}")]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The file's schema is newer than this program knows.
    #[error(
        "the student database {path} has schema version {found}, newer than this program's {supported}: use a newer rpc-demo, or another --db"
    )]
    NewerSchema {
        /// The file.
        path: PathBuf,
        /// Its `user_version`.
        found: i64,
        /// The newest version this program knows.
        supported: i64,
    },
    /// The file is not in WAL mode and could not be put in it.
    #[error(
        "the student database {path} cannot use WAL (journal mode {mode}): put it on a local disk"
    )]
    NoWal {
        /// The file.
        path: PathBuf,
        /// The journal mode SQLite kept.
        mode: String,
    },
}

/// The student records in one SQLite file: the implementation of
/// [`Students`]. Clones share the connections.
#[derive(Debug, Clone)]
pub struct Records {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    path: PathBuf,
    /// This process's one write connection.
    writer: Arc<tokio::sync::Mutex<Connection>>,
    /// One permit per idle read connection.
    readers: Arc<Semaphore>,
    idle: Mutex<Vec<Connection>>,
}

impl Records {
    /// Opens (creating if needed) the database at `path`, migrates it to
    /// the current schema and seeds a new one with [`SEED`].
    ///
    /// Blocks on the file: call it before serving, or from
    /// `spawn_blocking`. Errors: [`OpenError`] when the file cannot be
    /// opened or written, is not a SQLite database, or is from a newer
    /// program.
    pub fn open(path: impl AsRef<Path>, durability: Durability) -> Result<Self, OpenError> {
        let path = path.as_ref().to_path_buf();
        let sqlite = |source| OpenError::Sqlite {
            path: path.clone(),
            source,
        };
        let mut writer = Connection::open(&path).map_err(sqlite)?;
        configure(&writer, durability).map_err(sqlite)?;
        let mode: String = writer
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(sqlite)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(OpenError::NoWal { path, mode });
        }
        migrate(&mut writer, &path)?;
        let mut idle = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let reader = Connection::open(&path).map_err(sqlite)?;
            configure(&reader, durability).map_err(sqlite)?;
            reader
                .pragma_update(None, "query_only", true)
                .map_err(sqlite)?;
            idle.push(reader);
        }
        Ok(Self {
            shared: Arc::new(Shared {
                path,
                writer: Arc::new(tokio::sync::Mutex::new(writer)),
                readers: Arc::new(Semaphore::new(READERS)),
                idle: Mutex::new(idle),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Runs `work` in one `BEGIN IMMEDIATE` transaction on the write
    /// connection, on the blocking pool; commits if it returns `Ok`, rolls
    /// back otherwise.
    async fn write<T, F>(&self, work: F) -> Result<T, StudentsError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StudentsError> + Send + 'static,
    {
        let mut conn = self.shared.writer.clone().lock_owned().await;
        tokio::task::spawn_blocking(move || {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = work(&tx)?;
            tx.commit()?;
            Ok(out)
        })
        .await
        .map_err(joined)?
    }

    /// Runs `work` in one read transaction (one snapshot) on a read
    /// connection, on the blocking pool.
    async fn read<T, F>(&self, work: F) -> Result<T, StudentsError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StudentsError> + Send + 'static,
    {
        let permit = self
            .shared
            .readers
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StudentsError::Storage {
                message: "the database is closed".to_owned(),
            })?;
        let mut lease = Lease::take(self.shared.clone(), permit)?;
        tokio::task::spawn_blocking(move || {
            let tx = lease
                .conn
                .as_mut()
                .map(Connection::transaction)
                .ok_or_else(|| StudentsError::Storage {
                    message: "no read connection left".to_owned(),
                })??;
            work(&tx)
        })
        .await
        .map_err(joined)?
    }
}

/// A read connection out of the pool; back in it when dropped, even by a
/// panic.
struct Lease {
    conn: Option<Connection>,
    shared: Arc<Shared>,
    _permit: OwnedSemaphorePermit,
}

impl Lease {
    /// An idle connection. There are as many permits as connections, so
    /// with a permit there is always one; the error is for a broken
    /// invariant, not a panic.
    fn take(shared: Arc<Shared>, permit: OwnedSemaphorePermit) -> Result<Self, StudentsError> {
        let conn = shared
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        match conn {
            Some(conn) => Ok(Self {
                conn: Some(conn),
                shared,
                _permit: permit,
            }),
            None => Err(StudentsError::Storage {
                message: "no idle read connection".to_owned(),
            }),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.shared
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(conn);
        }
    }
}

fn joined(e: tokio::task::JoinError) -> StudentsError {
    tracing::error!(error = %e, "student database task");
    StudentsError::Storage {
        message: format!("the database task failed ({e})"),
    }
}

/// The settings every connection has.
fn configure(conn: &Connection, durability: Durability) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "synchronous", durability.pragma())?;
    Ok(())
}

/// Runs the migrations the file has not had, and seeds a new database, in
/// one immediate transaction (two servers starting on one new file migrate
/// it once).
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), OpenError> {
    let sqlite = |source| OpenError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite)?;
    let found: i64 = tx
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(sqlite)?;
    let supported = MIGRATIONS.len() as i64;
    if found > supported {
        return Err(OpenError::NewerSchema {
            path: path.to_path_buf(),
            found,
            supported,
        });
    }
    if found == supported {
        return Ok(());
    }
    for migration in &MIGRATIONS[found as usize..] {
        tx.execute_batch(migration).map_err(sqlite)?;
    }
    if found == 0 {
        let mut insert = tx
            .prepare(
                "INSERT INTO students (name, enrolment, age, year_of_entry, situation)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .map_err(sqlite)?;
        for (name, enrolment, age, year, situation) in SEED {
            insert
                .execute(params![name, enrolment, age, year, situation])
                .map_err(sqlite)?;
        }
    }
    tx.pragma_update(None, "user_version", supported)
        .map_err(sqlite)?;
    tx.commit().map_err(sqlite)
}

const COLUMNS: &str = "enrolment, name, age, year_of_entry, situation";

fn student(row: &rusqlite::Row<'_>) -> rusqlite::Result<Student> {
    Ok(Student {
        enrolment: row.get(0)?,
        name: row.get(1)?,
        age: row.get(2)?,
        year_of_entry: row.get(3)?,
        situation: row.get(4)?,
    })
}

fn lookup(conn: &Connection, enrolment: i64) -> Result<Option<Student>, StudentsError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM students WHERE enrolment = ?1"
        ))?
        .query_row([enrolment], student)
        .optional()?)
}

fn existing(conn: &Connection, enrolment: i64) -> Result<Student, StudentsError> {
    lookup(conn, enrolment)?.ok_or(StudentsError::UnknownStudent { enrolment })
}

/// The name trimmed, or why it is refused.
pub fn check_name(name: &str) -> Result<String, StudentsError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(StudentsError::EmptyName);
    }
    let length = name.chars().count();
    if length > MAX_NAME {
        return Err(StudentsError::InvalidName {
            reason: format!("it has {length} characters; at most {MAX_NAME}"),
        });
    }
    if name.chars().any(char::is_control) {
        return Err(StudentsError::InvalidName {
            reason: "it holds control characters (a tab, a line break)".to_owned(),
        });
    }
    Ok(name.to_owned())
}

fn check_age(age: i64) -> Result<i64, StudentsError> {
    if (0..=MAX_AGE).contains(&age) {
        Ok(age)
    } else {
        Err(StudentsError::InvalidAge { age })
    }
}

fn check_year(year: i64) -> Result<i64, StudentsError> {
    if YEARS.contains(&year) {
        Ok(year)
    } else {
        Err(StudentsError::InvalidYear { year })
    }
}

fn check_enrolment(enrolment: i64) -> Result<i64, StudentsError> {
    if enrolment > 0 {
        Ok(enrolment)
    } else {
        Err(StudentsError::InvalidEnrolment { enrolment })
    }
}

fn check_situation(situation: &str) -> Result<String, StudentsError> {
    if SITUATIONS.contains(&situation) {
        Ok(situation.to_owned())
    } else {
        Err(StudentsError::UnknownSituation {
            situation: situation.to_owned(),
            allowed: SITUATIONS.iter().map(|s| (*s).to_owned()).collect(),
        })
    }
}

fn check_limit(limit: Option<u32>) -> Result<u32, StudentsError> {
    match limit.unwrap_or(DEFAULT_PAGE) {
        limit @ 1..=MAX_PAGE => Ok(limit),
        limit => Err(StudentsError::InvalidQuery {
            reason: format!("a page holds 1 to {MAX_PAGE} students, not {limit}"),
        }),
    }
}

/// Every field checked, the name trimmed.
fn checked(student: Student) -> Result<Student, StudentsError> {
    Ok(Student {
        enrolment: check_enrolment(student.enrolment)?,
        name: check_name(&student.name)?,
        age: check_age(student.age)?,
        year_of_entry: check_year(student.year_of_entry)?,
        situation: check_situation(&student.situation)?,
    })
}

/// Writes every field of `student` over the row with its number.
fn store(tx: &rusqlite::Transaction<'_>, student: &Student) -> Result<(), StudentsError> {
    tx.prepare_cached(
        "UPDATE students SET name = ?2, age = ?3, year_of_entry = ?4, situation = ?5
         WHERE enrolment = ?1",
    )?
    .execute(params![
        student.enrolment,
        student.name,
        student.age,
        student.year_of_entry,
        student.situation
    ])?;
    Ok(())
}

/// One page of the students `filter` keeps (all of them with the default
/// filter), numbered above `after`.
fn page(
    conn: &Connection,
    filter: &Filter,
    after: Option<i64>,
    limit: u32,
) -> Result<Page, StudentsError> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM students
         WHERE enrolment > ?1
           AND (?2 IS NULL OR situation = ?2)
           AND (?3 IS NULL OR year_of_entry >= ?3)
           AND (?4 IS NULL OR name = ?4 COLLATE NOCASE)
           AND (?5 IS NULL OR age >= ?5)
           AND (?6 IS NULL OR age <= ?6)
         ORDER BY enrolment
         LIMIT ?7"
    ))?;
    // One more than asked: whether there is a next page.
    let mut students = statement
        .query_map(
            params![
                after.unwrap_or(i64::MIN),
                filter.situation,
                filter.min_year,
                filter.name.as_deref().map(str::trim),
                filter.min_age,
                filter.max_age,
                i64::from(limit) + 1,
            ],
            student,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let next = if students.len() > limit as usize {
        students.truncate(limit as usize);
        students.last().map(|s| s.enrolment)
    } else {
        None
    };
    Ok(Page { students, next })
}

impl Students for Records {
    async fn add(&self, student: Student) -> Result<Student, StudentsError> {
        let student = checked(student)?;
        self.write(move |tx| {
            if let Some(holder) = lookup(tx, student.enrolment)? {
                return Err(StudentsError::DuplicateEnrolment {
                    enrolment: student.enrolment,
                    name: holder.name,
                });
            }
            tx.prepare_cached(
                "INSERT INTO students (enrolment, name, age, year_of_entry, situation)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                student.enrolment,
                student.name,
                student.age,
                student.year_of_entry,
                student.situation
            ])?;
            Ok(student)
        })
        .await
    }

    async fn get(&self, enrolment: i64) -> Result<Student, StudentsError> {
        self.read(move |tx| existing(tx, enrolment)).await
    }

    async fn list(&self, after: Option<i64>, limit: Option<u32>) -> Result<Page, StudentsError> {
        let limit = check_limit(limit)?;
        self.read(move |tx| page(tx, &Filter::default(), after, limit))
            .await
    }

    async fn find(
        &self,
        filter: Filter,
        after: Option<i64>,
        limit: Option<u32>,
    ) -> Result<Page, StudentsError> {
        let limit = check_limit(limit)?;
        if let Some(situation) = &filter.situation {
            check_situation(situation)?;
        }
        for age in [filter.min_age, filter.max_age].into_iter().flatten() {
            check_age(age)?;
        }
        if let (Some(min), Some(max)) = (filter.min_age, filter.max_age) {
            if min > max {
                return Err(StudentsError::InvalidQuery {
                    reason: format!("the minimum age {min} is above the maximum {max}"),
                });
            }
        }
        self.read(move |tx| page(tx, &filter, after, limit)).await
    }

    async fn rename(&self, enrolment: i64, name: String) -> Result<Student, StudentsError> {
        self.update(
            enrolment,
            Changes {
                name: Some(name),
                ..Changes::default()
            },
        )
        .await
    }

    async fn update(&self, enrolment: i64, changes: Changes) -> Result<Student, StudentsError> {
        let name = changes.name.as_deref().map(check_name).transpose()?;
        let age = changes.age.map(check_age).transpose()?;
        let year = changes.year_of_entry.map(check_year).transpose()?;
        let situation = changes
            .situation
            .as_deref()
            .map(check_situation)
            .transpose()?;
        self.write(move |tx| {
            let mut student = existing(tx, enrolment)?;
            student.name = name.unwrap_or(student.name);
            student.age = age.unwrap_or(student.age);
            student.year_of_entry = year.unwrap_or(student.year_of_entry);
            student.situation = situation.unwrap_or(student.situation);
            store(tx, &student)?;
            Ok(student)
        })
        .await
    }

    async fn remove(&self, enrolment: i64) -> Result<Student, StudentsError> {
        self.write(move |tx| {
            let student = existing(tx, enrolment)?;
            tx.prepare_cached("DELETE FROM students WHERE enrolment = ?1")?
                .execute([enrolment])?;
            Ok(student)
        })
        .await
    }
}
