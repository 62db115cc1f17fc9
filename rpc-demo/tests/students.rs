//! The student records (the course's SQLite lab) through the RPC service,
//! over a real SQLite file in a temporary folder: the course's four
//! questions, concurrent writers, a restart, and bad input refused with
//! the database unchanged. Then the `rpc-demo students` client against
//! `rpc-demo serve`.
//!
//! The in-process servers open their file with `synchronous = NORMAL`
//! (`Durability::Normal`): thousands of commits, none fsynced.

use std::path::Path;
use std::time::Duration;

use rpc_core::RpcError;
use rpc_demo::services::students::{
    Changes, Durability, Filter, OpenError, Records, SEED, Student, StudentsClient, StudentsError,
    StudentsServer,
};
use sha2::{Digest, Sha256};

mod common;

use common::{Output, run, serve};

/// Every call of these tests is answered well within this.
const CALL: Duration = Duration::from_secs(30);

/// A server of `records` on a free port, and a client connected to it.
async fn served(records: Records) -> (rpc_core::ServerHandle, StudentsClient) {
    let server = rpc_core::Server::builder()
        .service(StudentsServer::new(records))
        .bind("127.0.0.1:0")
        .await
        .expect("bind");
    let client = StudentsClient::new(
        rpc_core::Client::builder()
            .timeout(CALL)
            .connect(server.local_addr())
            .await
            .expect("connect"),
    );
    (server, client)
}

fn open(path: &Path) -> Records {
    Records::open(path, Durability::Normal).expect("open the database")
}

/// A SHA-256 of every row of the file, in enrolment order, read with a
/// connection of its own (what is on the disk, not what a server says).
fn checksum(path: &Path) -> String {
    let conn = rusqlite::Connection::open(path).expect("open for the checksum");
    let mut statement = conn
        .prepare(
            "SELECT enrolment, name, age, year_of_entry, situation FROM students ORDER BY enrolment",
        )
        .expect("prepare");
    let mut hash = Sha256::new();
    let mut rows = statement.query([]).expect("query");
    while let Some(row) = rows.next().expect("row") {
        let fields = (
            row.get::<_, i64>(0).expect("enrolment"),
            row.get::<_, String>(1).expect("name"),
            row.get::<_, i64>(2).expect("age"),
            row.get::<_, i64>(3).expect("year"),
            row.get::<_, String>(4).expect("situation"),
        );
        hash.update(format!("{fields:?}\n"));
    }
    format!("{:x}", hash.finalize())
}

fn count(path: &Path) -> i64 {
    rusqlite::Connection::open(path)
        .expect("open")
        .query_row("SELECT count(*) FROM students", [], |row| row.get(0))
        .expect("count")
}

fn named(name: &str) -> Filter {
    Filter {
        name: Some(name.to_owned()),
        ..Filter::default()
    }
}

fn summary(students: &[Student]) -> Vec<(i64, &str)> {
    students
        .iter()
        .map(|s| (s.enrolment, s.name.as_str()))
        .collect()
}

/// Every student, page after page.
async fn everyone(client: &StudentsClient) -> Vec<Student> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = client.list(after, Some(1000)).await.expect("list");
        all.extend(page.students);
        match page.next {
            Some(next) => after = Some(next),
            None => return all,
        }
    }
}

fn student(enrolment: i64, name: &str, age: i64, year: i64, situation: &str) -> Student {
    Student {
        enrolment,
        name: name.to_owned(),
        age,
        year_of_entry: year,
        situation: situation.to_owned(),
    }
}

#[tokio::test]
async fn a_new_database_holds_the_course_rows() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, client) = served(open(&dir.path().join("aula.db"))).await;
    let all = everyone(&client).await;
    let mut seeded: Vec<Student> = SEED
        .iter()
        .map(|&(name, enrolment, age, year, situation)| {
            student(enrolment, name, age, year, situation)
        })
        .collect();
    seeded.sort_by_key(|s| s.enrolment);
    assert_eq!(all, seeded);
    assert_eq!(
        client.get(14_204_123).await.expect("get"),
        student(14_204_123, "Patrick", 24, 2022, "Desistiu")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn the_four_questions_of_the_course_have_their_answers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, client) = served(open(&dir.path().join("aula.db"))).await;

    // 1. Who suspended their enrolment (trancou o curso)?
    let suspended = client
        .find(
            Filter {
                situation: Some("Trancamento".to_owned()),
                ..Filter::default()
            },
            None,
            None,
        )
        .await
        .expect("find");
    assert_eq!(summary(&suspended.students), [(13_100_001, "Pedro")]);

    // 2. Who entered after 2012?
    let after_2012 = client
        .find(
            Filter {
                min_year: Some(2013),
                ..Filter::default()
            },
            None,
            None,
        )
        .await
        .expect("find");
    assert_eq!(
        summary(&after_2012.students),
        [
            (2_213_482, "Pedro"),
            (10_114_385, "João"),
            (11_280_821, "Maísa"),
            (13_100_001, "Pedro"),
            (14_204_123, "Patrick"),
        ]
    );
    // The filter does filter: nobody entered in 2023 or later but Maísa.
    let after_2022 = client
        .find(
            Filter {
                min_year: Some(2023),
                ..Filter::default()
            },
            None,
            None,
        )
        .await
        .expect("find");
    assert_eq!(summary(&after_2022.students), [(11_280_821, "Maísa")]);

    // 3. How old is Patrick?
    let patrick = client
        .find(named("patrick"), None, None)
        .await
        .expect("find");
    assert_eq!(patrick.students.len(), 1);
    assert_eq!(patrick.students[0].age, 24);

    // 4. Rename Pedro to Carlos: two Pedros, so the name alone is not
    // enough; the enrolment number says which.
    let pedros = client.find(named("Pedro"), None, None).await.expect("find");
    assert_eq!(
        summary(&pedros.students),
        [(2_213_482, "Pedro"), (13_100_001, "Pedro")]
    );
    let carlos = client
        .rename(13_100_001, "Carlos".to_owned())
        .await
        .expect("rename");
    assert_eq!(
        carlos,
        student(13_100_001, "Carlos", 25, 2020, "Trancamento")
    );
    assert_eq!(client.get(2_213_482).await.expect("get").name, "Pedro");
    let now = client
        .find(named("Carlos"), None, None)
        .await
        .expect("find");
    assert_eq!(summary(&now.students), [(13_100_001, "Carlos")]);
    server.shutdown().await;
}

#[tokio::test]
async fn find_filters_by_age_range_and_pages() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, client) = served(open(&dir.path().join("aula.db"))).await;
    let ages = client
        .find(
            Filter {
                min_age: Some(24),
                max_age: Some(25),
                ..Filter::default()
            },
            None,
            None,
        )
        .await
        .expect("find");
    assert_eq!(
        summary(&ages.students),
        [(13_100_001, "Pedro"), (14_204_123, "Patrick")]
    );
    let first = client.list(None, Some(2)).await.expect("list");
    assert_eq!(
        summary(&first.students),
        [(2_213_482, "Pedro"), (10_114_385, "João")]
    );
    assert_eq!(first.next, Some(10_114_385));
    let second = client.list(first.next, Some(2)).await.expect("list");
    assert_eq!(
        summary(&second.students),
        [(11_280_821, "Maísa"), (13_100_001, "Pedro")]
    );
    let last = client.list(second.next, Some(2)).await.expect("list");
    assert_eq!(summary(&last.students), [(14_204_123, "Patrick")]);
    assert_eq!(last.next, None);
    assert!(matches!(
        client
            .find(
                Filter {
                    min_age: Some(30),
                    max_age: Some(20),
                    ..Filter::default()
                },
                None,
                None
            )
            .await,
        Err(RpcError::Application(StudentsError::InvalidQuery { .. }))
    ));
    for limit in [0, 1001] {
        assert!(matches!(
            client.list(None, Some(limit)).await,
            Err(RpcError::Application(StudentsError::InvalidQuery { .. }))
        ));
    }
    server.shutdown().await;
}

/// 8 writers on 8 connections, 1,000 rows each, at once. Two servers share
/// the file, as two processes would, so that writers contend for SQLite's
/// write lock (busy timeout, `BEGIN IMMEDIATE`) as well as for each
/// server's write connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_concurrent_writers_lose_no_row() {
    const WRITERS: i64 = 8;
    const ROWS: i64 = 1000;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("aula.db");
    let (first, _) = served(open(&path)).await;
    let (second, _) = served(open(&path)).await;
    let addrs = [first.local_addr(), second.local_addr()];
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let addr = addrs[writer as usize % 2];
        writers.push(tokio::spawn(async move {
            let client = StudentsClient::new(
                rpc_core::Client::builder()
                    .timeout(CALL)
                    .connect(addr)
                    .await
                    .expect("connect"),
            );
            for row in 0..ROWS {
                let enrolment = 100_000_000 + writer * ROWS + row;
                client
                    .add(student(
                        enrolment,
                        &format!("Aluno {writer}-{row}"),
                        18 + row % 40,
                        2000 + row % 25,
                        "Cursando",
                    ))
                    .await
                    .unwrap_or_else(|e| panic!("add {enrolment}: {e}"));
            }
        }));
    }
    for writer in writers {
        writer.await.expect("a writer");
    }
    let (reader, client) = served(open(&path)).await;
    let all = everyone(&client).await;
    assert_eq!(all.len() as i64, SEED.len() as i64 + WRITERS * ROWS);
    let added: Vec<i64> = all
        .iter()
        .map(|s| s.enrolment)
        .filter(|&n| n >= 100_000_000)
        .collect();
    let expected: Vec<i64> = (100_000_000..100_000_000 + WRITERS * ROWS).collect();
    assert_eq!(added, expected, "every row, once");
    assert_eq!(count(&path), SEED.len() as i64 + WRITERS * ROWS);
    for server in [first, second, reader] {
        server.shutdown().await;
    }
}

#[tokio::test]
async fn a_restart_keeps_the_data() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("aula.db");
    {
        let (server, client) = served(open(&path)).await;
        client
            .add(student(20_000_001, "Ana", 21, 2024, "Cursando"))
            .await
            .expect("add");
        client
            .rename(13_100_001, "Carlos".to_owned())
            .await
            .expect("rename");
        client.remove(14_204_123).await.expect("remove");
        client
            .update(
                10_114_385,
                Changes {
                    age: Some(29),
                    ..Changes::default()
                },
            )
            .await
            .expect("update");
        server.shutdown().await;
    }
    let before = checksum(&path);
    {
        // WAL is a property of the file, and the schema's version is kept.
        let raw = rusqlite::Connection::open(&path).expect("open");
        let mode: String = raw
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .expect("journal mode");
        assert_eq!(mode, "wal");
        let version: i64 = raw
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .expect("user_version");
        assert_eq!(version, 1);
    }
    let (server, client) = served(open(&path)).await;
    assert_eq!(checksum(&path), before, "opening again changes nothing");
    let all = everyone(&client).await;
    assert_eq!(
        summary(&all),
        [
            (2_213_482, "Pedro"),
            (10_114_385, "João"),
            (11_280_821, "Maísa"),
            (13_100_001, "Carlos"),
            (20_000_001, "Ana"),
        ],
        "the changes are kept and the seed is not added again"
    );
    assert_eq!(client.get(10_114_385).await.expect("get").age, 29);
    server.shutdown().await;
}

/// What was tried, what came back, what should have.
type Refusal = (
    &'static str,
    Result<Student, RpcError<StudentsError>>,
    StudentsError,
);

#[tokio::test]
async fn bad_input_is_refused_and_the_database_is_unchanged() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("aula.db");
    let (server, client) = served(open(&path)).await;
    let before = checksum(&path);
    let ok = student(20_000_001, "Ana", 21, 2024, "Cursando");

    let refusals: Vec<Refusal> = vec![
        (
            "a negative age",
            client
                .add(Student {
                    age: -1,
                    ..ok.clone()
                })
                .await,
            StudentsError::InvalidAge { age: -1 },
        ),
        (
            "an empty name",
            client
                .add(Student {
                    name: String::new(),
                    ..ok.clone()
                })
                .await,
            StudentsError::EmptyName,
        ),
        (
            "a name of spaces",
            client
                .add(Student {
                    name: "   ".to_owned(),
                    ..ok.clone()
                })
                .await,
            StudentsError::EmptyName,
        ),
        (
            "a duplicate enrolment number",
            client
                .add(Student {
                    enrolment: 2_213_482,
                    ..ok.clone()
                })
                .await,
            StudentsError::DuplicateEnrolment {
                enrolment: 2_213_482,
                name: "Pedro".to_owned(),
            },
        ),
        (
            "a situation outside the course's list",
            client
                .add(Student {
                    situation: "Jubilado".to_owned(),
                    ..ok.clone()
                })
                .await,
            StudentsError::UnknownSituation {
                situation: "Jubilado".to_owned(),
                allowed: ["Cursando", "Formado", "Trancamento", "Desistiu"]
                    .map(String::from)
                    .to_vec(),
            },
        ),
        (
            "a situation in the wrong case",
            client
                .update(
                    2_213_482,
                    Changes {
                        situation: Some("cursando".to_owned()),
                        ..Changes::default()
                    },
                )
                .await,
            StudentsError::UnknownSituation {
                situation: "cursando".to_owned(),
                allowed: ["Cursando", "Formado", "Trancamento", "Desistiu"]
                    .map(String::from)
                    .to_vec(),
            },
        ),
        (
            "renaming an unknown student",
            client.rename(99_999_999, "Carlos".to_owned()).await,
            StudentsError::UnknownStudent {
                enrolment: 99_999_999,
            },
        ),
        (
            "renaming to an empty name",
            client.rename(13_100_001, " ".to_owned()).await,
            StudentsError::EmptyName,
        ),
        (
            "a negative age in an update",
            client
                .update(
                    14_204_123,
                    Changes {
                        name: Some("Patrício".to_owned()),
                        age: Some(-24),
                        ..Changes::default()
                    },
                )
                .await,
            StudentsError::InvalidAge { age: -24 },
        ),
        (
            "updating an unknown student",
            client
                .update(
                    99_999_999,
                    Changes {
                        age: Some(30),
                        ..Changes::default()
                    },
                )
                .await,
            StudentsError::UnknownStudent {
                enrolment: 99_999_999,
            },
        ),
        (
            "removing an unknown student",
            client.remove(99_999_999).await,
            StudentsError::UnknownStudent {
                enrolment: 99_999_999,
            },
        ),
        (
            "a zero enrolment number",
            client
                .add(Student {
                    enrolment: 0,
                    ..ok.clone()
                })
                .await,
            StudentsError::InvalidEnrolment { enrolment: 0 },
        ),
        (
            "a year of entry out of range",
            client
                .add(Student {
                    year_of_entry: 20_224,
                    ..ok.clone()
                })
                .await,
            StudentsError::InvalidYear { year: 20_224 },
        ),
        (
            "a name of 101 characters",
            client
                .add(Student {
                    name: "á".repeat(101),
                    ..ok.clone()
                })
                .await,
            StudentsError::InvalidName {
                reason: "it has 101 characters; at most 100".to_owned(),
            },
        ),
        (
            "a line break in a name",
            client
                .add(Student {
                    name: "Ana\nDROP".to_owned(),
                    ..ok.clone()
                })
                .await,
            StudentsError::InvalidName {
                reason: "it holds control characters (a tab, a line break)".to_owned(),
            },
        ),
    ];
    for (what, outcome, expected) in refusals {
        match outcome {
            Err(RpcError::Application(e)) => assert_eq!(e, expected, "{what}"),
            other => panic!("{what}: expected {expected:?}, got {other:?}"),
        }
        assert_eq!(checksum(&path), before, "{what} changed the database");
    }
    // A query with an unknown situation is refused too, not answered empty.
    assert!(matches!(
        client
            .find(
                Filter {
                    situation: Some("Jubilado".to_owned()),
                    ..Filter::default()
                },
                None,
                None
            )
            .await,
        Err(RpcError::Application(
            StudentsError::UnknownSituation { .. }
        ))
    ));
    // And the same student, valid, is accepted: the refusals were about
    // the input, not the service.
    client.add(ok).await.expect("a valid add");
    assert_ne!(checksum(&path), before);
    server.shutdown().await;
}

#[test]
fn a_database_from_a_newer_program_is_refused_untouched() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("aula.db");
    drop(open(&path));
    rusqlite::Connection::open(&path)
        .expect("open")
        .pragma_update(None, "user_version", 99)
        .expect("set the version");
    let before = checksum(&path);
    match Records::open(&path, Durability::Normal) {
        Err(OpenError::NewerSchema {
            found: 99,
            supported: 1,
            ..
        }) => {}
        other => panic!("expected NewerSchema, got {other:?}"),
    }
    assert_eq!(checksum(&path), before);
}

#[test]
fn a_file_that_is_not_a_database_is_refused_untouched() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "not a database, just some notes\n".repeat(200)).expect("write");
    let before = std::fs::read(&path).expect("read");
    let error = Records::open(&path, Durability::Normal).expect_err("refused");
    assert!(matches!(error, OpenError::Sqlite { .. }), "{error:?}");
    assert!(error.to_string().contains("notes.txt"), "{error}");
    assert_eq!(std::fs::read(&path).expect("read"), before);
}

// ---- the `rpc-demo students` client against `rpc-demo serve` ----

fn assert_ok(out: &Output) {
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

fn students(addr: &str, args: &[&str], input: &str) -> Output {
    let mut all = vec!["students", "--server", addr];
    all.extend_from_slice(args);
    run(&all, input)
}

#[test]
fn the_cli_answers_the_four_questions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("aula.db");
    let (_server, addr) = serve(&["--db", db.to_str().expect("utf-8 path")]);

    let out = students(&addr, &["find", "--situation", "Trancamento"], "");
    assert_ok(&out);
    let rows: Vec<&str> = out.stdout.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "{}", out.stdout);
    assert!(
        rows[0].contains("13100001") && rows[0].contains("Pedro"),
        "{}",
        out.stdout
    );

    let out = students(&addr, &["find", "--entered-after", "2012"], "");
    assert_ok(&out);
    assert_eq!(out.stdout.lines().count(), 1 + 5, "{}", out.stdout);
    for name in ["Pedro", "João", "Maísa", "Patrick"] {
        assert!(out.stdout.contains(name), "{name}: {}", out.stdout);
    }

    let out = students(&addr, &["find", "--name", "Patrick"], "");
    assert_ok(&out);
    let patrick: Vec<&str> = out
        .stdout
        .lines()
        .nth(1)
        .expect("a row")
        .split_whitespace()
        .collect();
    assert_eq!(patrick, ["14204123", "Patrick", "24", "2022", "Desistiu"]);

    // Two Pedros: the client lists them and asks which; end of input
    // renames nobody.
    let out = students(&addr, &["rename", "Pedro", "Carlos"], "");
    assert!(!out.status.success(), "{}", out.stdout);
    assert!(
        out.stdout.contains("2213482") && out.stdout.contains("13100001"),
        "{}",
        out.stdout
    );
    assert!(out.stderr.contains("--enrolment"), "{}", out.stderr);
    let before = checksum(&db);
    // A number that is not one of the candidates renames nobody either.
    let out = students(&addr, &["rename", "Pedro", "Carlos"], "14204123\n");
    assert!(!out.status.success(), "{}", out.stdout);
    assert!(out.stderr.contains("not one of"), "{}", out.stderr);
    assert_eq!(checksum(&db), before);

    let out = students(&addr, &["rename", "Pedro", "Carlos"], "13100001\n");
    assert_ok(&out);
    assert!(out.stdout.contains("renamed"), "{}", out.stdout);
    let out = students(&addr, &["list"], "");
    assert_ok(&out);
    let lines: Vec<Vec<&str>> = out
        .stdout
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().take(2).collect())
        .collect();
    assert_eq!(
        lines,
        [
            ["2213482", "Pedro"],
            ["10114385", "João"],
            ["11280821", "Maísa"],
            ["13100001", "Carlos"],
            ["14204123", "Patrick"],
        ]
    );
    // By number, without asking.
    let out = students(&addr, &["rename", "--enrolment", "2213482", "Paulo"], "");
    assert_ok(&out);
    let out = students(&addr, &["find", "--name", "Paulo"], "");
    assert!(out.stdout.contains("2213482"), "{}", out.stdout);

    // No match: said in words, not an empty table.
    let out = students(&addr, &["find", "--name", "Ninguem"], "");
    assert_ok(&out);
    assert_eq!(out.stdout, "no student matches\n");

    // --entered-after excludes the year, --since includes it (Maísa
    // entered in 2023, the latest).
    let after = students(&addr, &["find", "--entered-after", "2023"], "");
    assert_ok(&after);
    assert_eq!(after.stdout, "no student matches\n");
    let since = students(&addr, &["find", "--since", "2023"], "");
    assert_ok(&since);
    assert_eq!(since.stdout.lines().count(), 1 + 1, "{}", since.stdout);
    assert!(since.stdout.contains("Maísa"), "{}", since.stdout);

    // The client's options go after the action as well as before it.
    let before = run(&["students", "--server", &addr, "list"], "");
    let after = run(&["students", "list", "--server", &addr], "");
    assert_ok(&after);
    assert_eq!(after.stdout, before.stdout);
    let timeout = run(
        &[
            "students",
            "find",
            "--since",
            "2023",
            "--timeout",
            "5",
            "--server",
            &addr,
        ],
        "",
    );
    assert_ok(&timeout);
    assert_eq!(timeout.stdout, since.stdout);
}

#[test]
fn the_cli_adds_removes_and_refuses_bad_input_in_one_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("aula.db");
    let (server, addr) = serve(&["--db", db.to_str().expect("utf-8 path")]);
    let out = students(
        &addr,
        &["add", "Ana", "20000001", "21", "2024", "Cursando"],
        "",
    );
    assert_ok(&out);
    let before = checksum(&db);
    for (args, message) in [
        (
            ["add", "Bia", "20000002", "-3", "2024", "Cursando"],
            "age -3 is not valid",
        ),
        (
            ["add", "", "20000002", "20", "2024", "Cursando"],
            "the name is empty",
        ),
        (
            ["add", "Bia", "20000001", "20", "2024", "Cursando"],
            "already Ana's",
        ),
        (
            ["add", "Bia", "20000002", "20", "2024", "Jubilado"],
            "situation \"Jubilado\" is not one of Cursando, Formado, Trancamento, Desistiu",
        ),
    ] {
        let out = students(&addr, &args, "");
        assert!(!out.status.success(), "{args:?}: {}", out.stdout);
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: {}", out.stderr);
        assert!(
            lines[0].starts_with("error: ") && lines[0].contains(message),
            "{args:?}: {}",
            out.stderr
        );
        assert_eq!(checksum(&db), before, "{args:?}");
    }
    let out = students(&addr, &["remove", "99999999"], "");
    assert!(!out.status.success());
    assert!(
        out.stderr
            .contains("no student has enrolment number 99999999"),
        "{}",
        out.stderr
    );
    let out = students(&addr, &["remove", "20000001"], "");
    assert_ok(&out);
    assert!(out.stdout.contains("Ana"), "{}", out.stdout);

    // A restart of the server keeps what was written.
    drop(server);
    let (_server, addr) = serve(&["--db", db.to_str().expect("utf-8 path")]);
    let out = students(&addr, &["list"], "");
    assert_ok(&out);
    assert_eq!(out.stdout.lines().count(), 1 + 5, "{}", out.stdout);
    assert!(!out.stdout.contains("Ana"), "{}", out.stdout);
}

#[test]
fn the_tour_shows_the_student_records() {
    let out = run(&[], "");
    assert_ok(&out);
    for expected in ["Students", "Trancamento", "DuplicateEnrolment"] {
        assert!(
            out.stdout.contains(expected),
            "missing {expected:?} in:\n{}",
            out.stdout
        );
    }
}
