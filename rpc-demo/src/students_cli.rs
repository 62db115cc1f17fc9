//! `rpc-demo students`: the course's student records from the command
//! line (list, add, find, rename, remove), and the database `serve` opens.
//!
//! Names repeat (the course has two Pedros), so `rename OLD NEW` looks the
//! name up first: one student is renamed at once; several are listed and
//! the user types the enrolment number of the one meant (`--enrolment`
//! skips the question).

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use rpc_core::RpcError;
use rpc_demo::services::students::{
    Durability, Filter, MAX_PAGE, Page, Records, Student, StudentsClient, StudentsError,
    StudentsServer,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::{ClientArgs, DemoError};

/// The longest answer read from the keyboard, in bytes.
const MAX_ANSWER: u64 = 256;

/// `rpc-demo students ACTION [OPTIONS]`: the client's options
/// (`--server`, `--timeout`, `--token`, TLS) go before or after the action
/// alike.
#[derive(Debug, Args)]
pub(crate) struct StudentsArgs {
    #[command(subcommand)]
    action: Action,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Every student, in enrolment-number order.
    List,
    /// Adds a student: NAME ENROLMENT AGE YEAR SITUATION, as the course's
    /// table (`add João 10114385 28 2022 Formado`).
    #[command(allow_negative_numbers = true)]
    Add {
        /// The name.
        name: String,
        /// The enrolment number (matrícula), unique.
        enrolment: i64,
        /// Age in years.
        age: i64,
        /// Year of entry (ingresso).
        year: i64,
        /// Cursando, Formado, Trancamento or Desistiu.
        situation: String,
    },
    /// The students matching every filter given.
    #[command(allow_negative_numbers = true)]
    Find {
        /// In this situation (`Trancamento`: who suspended their enrolment).
        #[arg(long)]
        situation: Option<String>,
        /// Entered after this year, not in it (`2012`: from 2013 on).
        #[arg(long, value_name = "YEAR", conflicts_with = "since")]
        entered_after: Option<i64>,
        /// Entered in this year or later (`2012`: from 2012 on).
        #[arg(long, value_name = "YEAR")]
        since: Option<i64>,
        /// With this name (the whole name; A to Z in any case).
        #[arg(long)]
        name: Option<String>,
        /// At least this old.
        #[arg(long, value_name = "YEARS")]
        min_age: Option<i64>,
        /// At most this old.
        #[arg(long, value_name = "YEARS")]
        max_age: Option<i64>,
    },
    /// Renames a student: `rename OLD NEW` (asks which if several are
    /// named OLD) or `rename --enrolment N NEW`.
    Rename {
        /// OLD NEW, or only NEW with --enrolment.
        #[arg(num_args = 1..=2, required = true, value_name = "NAME")]
        names: Vec<String>,
        /// The enrolment number of the student to rename.
        #[arg(long, value_name = "N")]
        enrolment: Option<i64>,
    },
    /// Removes the student with this enrolment number.
    Remove {
        /// The enrolment number.
        enrolment: i64,
    },
}

/// Runs one `students` command against the server of `args`.
pub(crate) async fn run(args: StudentsArgs) -> Result<(), DemoError> {
    let client = StudentsClient::new(crate::connect_to(&args.client, "Students").await?);
    match args.action {
        Action::List => {
            let students = all(&client, Filter::default()).await?;
            if students.is_empty() {
                say!("there are no students; add one with `rpc-demo students add`");
                return Ok(());
            }
            print(&students)
        }
        Action::Add {
            name,
            enrolment,
            age,
            year,
            situation,
        } => {
            let added = client
                .add(Student {
                    enrolment,
                    name,
                    age,
                    year_of_entry: year,
                    situation,
                })
                .await
                .map_err(refused)?;
            say!("added:");
            print(&[added])
        }
        Action::Find {
            situation,
            entered_after,
            since,
            name,
            min_age,
            max_age,
        } => {
            let min_year = match entered_after {
                Some(year) => Some(year.checked_add(1).ok_or_else(|| {
                    DemoError::Usage(format!("--entered-after {year} is not a year"))
                })?),
                None => since,
            };
            let filter = Filter {
                situation,
                min_year,
                name,
                min_age,
                max_age,
            };
            let found = all(&client, filter).await?;
            if found.is_empty() {
                say!("no student matches");
                return Ok(());
            }
            print(&found)
        }
        Action::Rename { names, enrolment } => rename(&client, names, enrolment).await,
        Action::Remove { enrolment } => {
            let removed = client.remove(enrolment).await.map_err(refused)?;
            say!("removed:");
            print(&[removed])
        }
    }
}

/// A refusal or failure of the service, as one line.
fn refused(e: RpcError<StudentsError>) -> DemoError {
    match e {
        // The service's own words (its `Display`), not the variant.
        RpcError::Application(e) => DemoError::Other(e.to_string()),
        e => DemoError::Other(e.to_string()),
    }
}

/// Every student `filter` keeps, page after page.
async fn all(client: &StudentsClient, filter: Filter) -> Result<Vec<Student>, DemoError> {
    let mut students = Vec::new();
    let mut after = None;
    loop {
        let Page {
            students: page,
            next,
        } = client
            .find(filter.clone(), after, Some(MAX_PAGE))
            .await
            .map_err(refused)?;
        students.extend(page);
        match next {
            Some(next) => after = Some(next),
            None => return Ok(students),
        }
    }
}

/// A header and one line per student.
fn print(students: &[Student]) -> Result<(), DemoError> {
    let width = students
        .iter()
        .map(|s| s.name.chars().count())
        .max()
        .unwrap_or(0)
        .max(4);
    say!(
        "{:<10} {:<width$} {:>3} {:>7} situation",
        "enrolment",
        "name",
        "age",
        "entered"
    );
    for s in students {
        say!(
            "{:<10} {:<width$} {:>3} {:>7} {}",
            s.enrolment,
            s.name,
            s.age,
            s.year_of_entry,
            s.situation
        );
    }
    Ok(())
}

async fn rename(
    client: &StudentsClient,
    names: Vec<String>,
    enrolment: Option<i64>,
) -> Result<(), DemoError> {
    let (target, new_name) = match (enrolment, names.as_slice()) {
        (Some(enrolment), [new_name]) => (enrolment, new_name.clone()),
        (None, [old, new_name]) => (which(client, old).await?, new_name.clone()),
        (Some(_), _) => {
            return Err(DemoError::Usage(
                "with --enrolment, give only the new name: rename --enrolment N NEW".to_owned(),
            ));
        }
        (None, _) => {
            return Err(DemoError::Usage(
                "give the old and the new name (rename OLD NEW), or --enrolment N NEW".to_owned(),
            ));
        }
    };
    let before = client.get(target).await.map_err(refused)?;
    let after = client.rename(target, new_name).await.map_err(refused)?;
    say!(
        "renamed {}: {} -> {}",
        after.enrolment,
        before.name,
        after.name
    );
    Ok(())
}

/// The enrolment number of the student named `name`: the only one, or the
/// one the user picks from the list.
async fn which(client: &StudentsClient, name: &str) -> Result<i64, DemoError> {
    let candidates = all(
        client,
        Filter {
            name: Some(name.to_owned()),
            ..Filter::default()
        },
    )
    .await?;
    match candidates.as_slice() {
        [] => Err(DemoError::Other(format!(
            "no student is named {name:?}: `rpc-demo students list` shows who there is"
        ))),
        [only] => Ok(only.enrolment),
        several => {
            say!("{} students are named {name:?}; which one?", several.len());
            print(several)?;
            let answer = ask("enrolment number of the one to rename (Enter for none): ").await?;
            let numbers: Vec<String> = several.iter().map(|s| s.enrolment.to_string()).collect();
            let listed = numbers.join(", ");
            match answer.as_deref() {
                None | Some("") => Err(DemoError::Other(format!(
                    "nothing renamed: {} students are named {name:?} ({listed}); pick one, or pass --enrolment N",
                    several.len()
                ))),
                Some(text) => match several.iter().find(|s| s.enrolment.to_string() == text) {
                    Some(chosen) => Ok(chosen.enrolment),
                    None => Err(DemoError::Other(format!(
                        "nothing renamed: {text:?} is not one of {listed}"
                    ))),
                },
            }
        }
    }
}

/// Prints `prompt` and reads one line (at most [`MAX_ANSWER`] bytes),
/// trimmed; `None` at end of input.
async fn ask(prompt: &str) -> Result<Option<String>, DemoError> {
    let mut out = tokio::io::stdout();
    out.write_all(prompt.as_bytes())
        .await
        .map_err(crate::output_error)?;
    out.flush().await.map_err(crate::output_error)?;
    let mut line = String::new();
    let read = BufReader::new(tokio::io::stdin().take(MAX_ANSWER))
        .read_line(&mut line)
        .await?;
    // Typed at a terminal, the answer ended the line; piped, it did not.
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        say!("");
    }
    Ok((read > 0).then(|| line.trim().to_owned()))
}

/// Where `serve` keeps the records without `--db`: `rpc-demo/students.db`
/// in the user's data folder (`$XDG_DATA_HOME`, or `~/.local/share` on
/// Linux); `None` when the system has no such folder.
pub(crate) fn default_db() -> Option<PathBuf> {
    dirs::data_dir().map(|dir| dir.join("rpc-demo").join("students.db"))
}

/// Adds the Students service to `builder`, over the database at `db`, or
/// at [`default_db`] without one.
///
/// A database given with `--db` must open, or `serve` stops with the
/// reason. The default one is a convenience: when it cannot be made (no
/// home folder, a read-only container) the server warns and serves the
/// other services without Students.
pub(crate) async fn serve(
    builder: rpc_core::ServerBuilder,
    db: Option<PathBuf>,
) -> Result<rpc_core::ServerBuilder, DemoError> {
    let (path, explicit) = match db {
        Some(path) => (path, true),
        None => match default_db() {
            Some(path) => (path, false),
            None => {
                tracing::warn!(
                    "not serving Students: this system has no data folder for its database; pass --db PATH"
                );
                return Ok(builder);
            }
        },
    };
    let opened = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || open(&path, explicit))
            .await
            .map_err(|e| DemoError::Other(format!("opening the student database failed: {e}")))?
    };
    match opened {
        Ok(records) => {
            tracing::info!(db = %path.display(), "serving Students");
            Ok(builder.service(StudentsServer::new(records)))
        }
        Err(e) if explicit => Err(DemoError::Other(e)),
        Err(e) => {
            tracing::warn!("not serving Students: {e}; pass --db PATH");
            Ok(builder)
        }
    }
}

/// Opens the database at `path`, making its folder first if it is the
/// default one.
fn open(path: &Path, explicit: bool) -> Result<Records, String> {
    if !explicit {
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder)
                .map_err(|e| format!("could not make {}: {e}", folder.display()))?;
        }
    }
    Records::open(path, Durability::Full).map_err(|e| e.to_string())
}
