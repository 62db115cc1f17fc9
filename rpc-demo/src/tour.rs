//! The tour: a server and every client in one process, each call printed.
//! (Files runs on a server of its own, over a temporary folder.)

use std::sync::Arc;

use futures_util::StreamExt;
use rpc_core::RpcError;
use rpc_core::discovery::Registry;
use rpc_core::discovery::binder::{BinderRegistry, BinderServer, Directory};
use rpc_demo::services::{
    CalcError, CalculatorClient, ChatClient, EchoClient, GreeterClient, all_services,
};

use rpc_demo::services::students::{Durability, Filter, Student};
use rpc_demo::services::{Records, StudentsClient, StudentsError, StudentsServer};

use crate::DemoError;

pub(crate) async fn run() -> Result<(), DemoError> {
    // The student records in a SQLite file of the tour's own, removed at the end.
    let records_dir = tempfile::tempdir()
        .map_err(|e| DemoError::Other(format!("could not make a temporary folder: {e}")))?;
    let records =
        Records::open(records_dir.path().join("aula.db"), Durability::Normal).map_err(other)?;
    let server = all_services()
        .service(StudentsServer::new(records))
        .bind("127.0.0.1:0")
        .await?;
    let addr = server.local_addr();
    say!(
        "server listening on {addr} with {}\n",
        crate::in_words(&["Calculator", "Greeter", "Echo", "Chat", "Live", "Students"])
    );

    let calc = CalculatorClient::connect(addr).await?;
    // The other proxies share the calculator's connection.
    let greeter = GreeterClient::new(calc.inner().clone());
    let echo = EchoClient::new(calc.inner().clone());

    say!("Calculator");
    show("add(2, 3)", calc.add(2.0, 3.0).await.map_err(plain)?, 5.0)?;
    show("sub(10, 4)", calc.sub(10.0, 4.0).await.map_err(plain)?, 6.0)?;
    show("mul(8, 5)", calc.mul(8.0, 5.0).await.map_err(plain)?, 40.0)?;
    show("div(7, 2)", calc.div(7.0, 2.0).await.map_err(plain)?, 3.5)?;
    show(
        "pow(2, 10)",
        calc.pow(2.0, 10.0).await.map_err(plain)?,
        1024.0,
    )?;
    match calc.div(1.0, 0.0).await {
        Err(RpcError::Application(e @ CalcError::DivisionByZero)) => {
            say!("  div(1, 0)  -> typed error CalcError::{e:?} (\"{e}\"), matched by the caller");
        }
        other => {
            return Err(DemoError::Other(format!(
                "div(1, 0) should fail with DivisionByZero, got {other:?}"
            )));
        }
    }

    say!("\nGreeter");
    let greeting = greeter.hello("João".to_owned()).await?;
    say!("  hello(\"João\") = {greeting:?}");
    expect(greeting == "Olá, João!", "the greeting")?;

    say!("\nEcho");
    let text = "sockets, RPC e sistemas distribuídos";
    let back = echo.echo(text.to_owned()).await?;
    say!("  echo({text:?}) = {back:?}");
    expect(back == text, "the echo")?;

    say!("\nDeadlines and cancellation");
    let slow = echo.with_timeout(std::time::Duration::from_millis(100));
    match slow.sleep(2_000).await {
        Err(RpcError::Timeout(budget)) => say!(
            "  sleep(2000) with a {budget:?} budget -> timed out; the server was told to stop (rpc.cancel)"
        ),
        other => {
            return Err(DemoError::Other(format!(
                "sleep(2000) should time out, got {other:?}"
            )));
        }
    }
    let ms = echo.sleep(10).await?;
    say!("  sleep(10) = {ms}: the same connection goes on");

    say!("\nOne connection, 100 calls in flight at once");
    let calls = (0..100).map(|i| {
        let calc = calc.clone();
        async move { calc.mul(f64::from(i), 2.0).await }
    });
    let results = futures_join_all(calls).await;
    let all_right = results
        .iter()
        .enumerate()
        .all(|(i, r)| matches!(r, Ok(v) if *v == i as f64 * 2.0));
    expect(all_right, "the concurrent results")?;
    say!("  100 results, each matched to its call by id");

    say!("\nA stream: a chat room's events, under flow control");
    let chat = ChatClient::new(calc.inner().clone());
    let mut room = chat
        .join("tour".to_owned(), "ana".to_owned())
        .await
        .map_err(other)?;
    chat.send("tour".to_owned(), "ana".to_owned(), "olá".to_owned())
        .await
        .map_err(other)?;
    for _ in 0..2 {
        match room.next().await {
            Some(Ok(event)) => say!(
                "  chat.join event: {}",
                serde_json::to_string(&event).unwrap_or_default()
            ),
            other => {
                return Err(DemoError::Other(format!(
                    "the room's stream ended: {other:?}"
                )));
            }
        }
    }
    drop(room);

    students(StudentsClient::new(calc.inner().clone())).await?;

    drop((calc, greeter, echo, chat));
    server.shutdown().await;
    say!("\nserver stopped (Calculator, Greeter, Echo, Chat, Live and Students)");

    files().await?;

    discovery().await?;
    say!("\nevery call answered as expected");
    Ok(())
}

/// The Files service over a temporary folder: a login, an upload in
/// chunks, a listing, a download stream, two refusals.
async fn files() -> Result<(), DemoError> {
    use rpc_demo::services::files::transfer::digest_of;
    use rpc_demo::services::files::{Begun, Chunk, FilesError, Limits, Users};
    use rpc_demo::services::{FileStore, FilesClient, FilesServer};

    say!(
        "\nFiles, on a second server over a temporary folder: log in, upload in chunks, list, download as a stream"
    );
    // Removed when dropped, on every way out.
    let root = tempfile::tempdir()?;
    let mut users = Users::default();
    users.set("ana", "segredo").map_err(other)?;
    let limits = Limits {
        min_free_space: 0,
        ..Limits::default()
    };
    let store = FileStore::open(root.path(), users, limits)?;
    let server = rpc_core::Server::builder()
        .service(FilesServer::new(store))
        .bind("127.0.0.1:0")
        .await?;
    let outcome = async {
        let files = FilesClient::connect(server.local_addr()).await?;
        match files.login("ana".into(), "errada".into()).await {
            Err(RpcError::Application(e @ FilesError::BadCredentials)) => {
                say!("  files.login(\"ana\", wrong password) -> {e}");
            }
            other => {
                return Err(DemoError::Other(format!(
                    "a wrong password was let in: {other:?}"
                )));
            }
        }
        let session = files
            .login("ana".into(), "segredo".into())
            .await
            .map_err(other)?;
        say!(
            "  files.login(\"ana\", ...) -> a session token for {} min (a parameter of every call)",
            session.expires_in_ms / 60_000
        );
        let token = session.token;
        let text = "Olá, arquivos!\n".as_bytes();
        let digest = digest_of(text);
        let Begun { upload_id, offset } = files
            .begin(
                token.clone(),
                "ola.txt".into(),
                text.len() as u64,
                digest,
                None,
            )
            .await
            .map_err(other)?;
        use base64::Engine as _;
        let data = base64::engine::general_purpose::STANDARD.encode(text);
        let end = files
            .put(
                token.clone(),
                upload_id.clone(),
                offset,
                data,
                crc32fast::hash(text),
            )
            .await
            .map_err(other)?;
        let entry = files
            .commit(token.clone(), upload_id)
            .await
            .map_err(other)?;
        say!(
            "  files.begin / put ({end} bytes, CRC-32 checked) / commit -> {} stored, sha256 {}…",
            entry.name,
            &entry.sha256.unwrap_or_default()[..16]
        );
        let listed = files
            .list(token.clone(), String::new())
            .await
            .map_err(other)?;
        say!(
            "  files.list(\"\") -> {} entry: {}",
            listed.len(),
            listed[0].name
        );
        let mut stream = files
            .download(token.clone(), "ola.txt".into(), 0)
            .await
            .map_err(other)?;
        while let Some(item) = stream.next().await {
            match item.map_err(other)? {
                Chunk::Data { offset, data, .. } => {
                    say!("  files.download item: data at {offset} ({data})")
                }
                Chunk::End { size, .. } => {
                    say!("  files.download item: end, {size} bytes, sha256 to check")
                }
            }
        }
        match files.download(token, "../segredo".into(), 0).await {
            Err(RpcError::Application(e @ FilesError::BadPath { .. })) => {
                say!("  files.download(\"../segredo\") -> {e}")
            }
            other => {
                return Err(DemoError::Other(format!(
                    "a path out was let through: {other:?}"
                )));
            }
        }
        Ok(())
    }
    .await;
    server.shutdown().await;
    outcome
}

/// A binder and two servers in this process; a client that finds them by
/// name, spreads its calls, and goes on when one leaves.
async fn discovery() -> Result<(), DemoError> {
    say!("\nDiscovery: a binder, two servers, a client that knows only the name");
    let binder = rpc_core::Server::builder()
        .service(BinderServer::new(Directory::new()))
        .bind("127.0.0.1:0")
        .await?;
    let registry: Arc<dyn Registry> =
        Arc::new(BinderRegistry::connect(&binder.local_addr().to_string()).await?);
    let mut servers = Vec::new();
    for _ in 0..2 {
        let server = all_services()
            .register(registry.clone())
            .leave_delay(std::time::Duration::ZERO)
            .bind("127.0.0.1:0")
            .await?;
        say!(
            "  server on {} registered with the binder at {}",
            server.local_addr(),
            binder.local_addr()
        );
        servers.push(server);
    }
    let mut listed = registry
        .clone()
        .watch("Calculator", rpc_core::discovery::FOLLOW_POLL)
        .await
        .map_err(other)?;
    while let Some(set) = listed.next().await {
        if set.map_err(other)?.len() == 2 {
            break;
        }
    }
    // Round robin, so that the calls visibly alternate.
    let calc = CalculatorClient::new(
        rpc_core::Client::builder()
            .balance(rpc_core::Balance::RoundRobin)
            .discover(registry.clone(), "Calculator")
            .await?,
    );
    for i in 0..4 {
        let sum = calc.add(f64::from(i), 1.0).await.map_err(plain)?;
        expect(sum == f64::from(i) + 1.0, "a discovered call")?;
    }
    say!("  4 calls through discovery, taking turns between the two servers");
    let leaving = servers.remove(0);
    leaving.shutdown().await;
    say!("  one server left (it deregistered first)");
    for i in 0..4 {
        let sum = calc.add(f64::from(i), 2.0).await.map_err(plain)?;
        expect(sum == f64::from(i) + 2.0, "a call after a server left")?;
    }
    say!("  4 more calls, all answered by the other server");
    drop(calc);
    for server in servers {
        server.shutdown().await;
    }
    binder.shutdown().await;
    Ok(())
}

/// The course's SQLite exercise: a question, a typed refusal, a rename by
/// enrolment number.
async fn students(students: StudentsClient) -> Result<(), DemoError> {
    say!("\nStudents: the course's records in SQLite");
    let suspended = students
        .find(
            Filter {
                situation: Some("Trancamento".to_owned()),
                ..Filter::default()
            },
            None,
            None,
        )
        .await
        .map_err(other)?;
    for s in &suspended.students {
        say!(
            "  find(situation = Trancamento): {} {} ({})",
            s.enrolment,
            s.name,
            s.situation
        );
    }
    expect(
        suspended.students.len() == 1,
        "who suspended their enrolment",
    )?;
    let twin = Student {
        enrolment: 2_213_482,
        name: "Pedro".to_owned(),
        age: 19,
        year_of_entry: 2022,
        situation: "Cursando".to_owned(),
    };
    match students.add(twin).await {
        Err(RpcError::Application(e @ StudentsError::DuplicateEnrolment { .. })) => {
            say!("  add(2213482 again) -> typed error DuplicateEnrolment (\"{e}\")");
        }
        other => {
            return Err(DemoError::Other(format!(
                "a duplicate enrolment number should be refused, got {other:?}"
            )));
        }
    }
    let carlos = students
        .rename(13_100_001, "Carlos".to_owned())
        .await
        .map_err(other)?;
    say!(
        "  two Pedros, so by number: rename(13100001, \"Carlos\") = {} {}",
        carlos.enrolment,
        carlos.name
    );
    expect(carlos.name == "Carlos", "the rename")
}

fn other(e: impl std::fmt::Display) -> DemoError {
    DemoError::Other(e.to_string())
}

fn show(call: &str, got: f64, want: f64) -> Result<(), DemoError> {
    say!("  {call:<11} = {got}");
    expect(got == want, call)
}

fn expect(ok: bool, what: &str) -> Result<(), DemoError> {
    if ok {
        Ok(())
    } else {
        Err(DemoError::Other(format!("{what} came back wrong")))
    }
}

fn plain(e: RpcError<CalcError>) -> DemoError {
    DemoError::Other(e.to_string())
}

async fn futures_join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        match handle.await {
            Ok(v) => out.push(v),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    out
}
