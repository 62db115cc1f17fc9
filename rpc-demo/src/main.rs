//! `rpc-demo`: the course's systems on this library.
//!
//! With no arguments it runs the tour (a server and its clients in one
//! process). `serve` runs every demo service on one port; `calc`, `hello`
//! and `echo` are the interactive clients of the course's labs.

/// `println!` that reports a closed standard output as an error instead of
/// panicking (as `rpc-demo | head` would otherwise do).
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::say_line(::std::format_args!($($arg)*))?
    };
}

mod chat;
mod discovery;
mod files_cli;
mod interactive;
mod students_cli;
mod tools;
mod tour;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Where the clients look for the server, and where `serve` listens, by default.
const DEFAULT_ADDR: &str = "127.0.0.1:7070";

#[derive(Debug, Parser)]
#[command(name = "rpc-demo", version, about = "Demos of the rpc library: a calculator, a greeter, an echo service, a chat and a live feed", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve Calculator, Greeter, Echo, Chat, Live and Students (and Files,
    /// with --files-root and --users) on one port until Ctrl-C.
    Serve(ServeArgs),
    /// Interactive calculator: operation, two numbers, result; `fim` to leave.
    Calc(ClientArgs),
    /// Asks your name and prints the server's greeting.
    Hello(ClientArgs),
    /// Sends each line you type and prints the echo; `fim` to leave.
    Echo(ClientArgs),
    /// Lists the methods of any server of this protocol (from `rpc.discover`).
    List(ListArgs),
    /// Calls one method of any server of this protocol and prints the result as JSON.
    Call(CallArgs),
    /// Chats in a room: prints what others say while you type; `fim` to leave.
    Chat(ChatArgs),
    /// Publishes one line to the live page (`/live`) of a running server.
    LiveSend(LiveSendArgs),
    /// Runs a binder: servers register there (`serve --binder`), clients
    /// find them there (`calc --binder`, `call NAME`).
    Binder(BinderArgs),
    /// Prints what a binder has registered: every service, or NAME's instances.
    Lookup(LookupArgs),
    /// Probes a server's `GET /health`: exit status 0 when it serves, 1 otherwise.
    Health(HealthArgs),
    /// The course's student records on a running server: list, add, find,
    /// rename, remove.
    Students(students_cli::StudentsArgs),
    /// The Files service's client: login, ls, get, put, rm.
    Files(files_cli::FilesArgs),
    /// The Files service's users file: `users add NAME`.
    Users(files_cli::UsersArgs),
}

#[derive(Debug, Args)]
struct BinderArgs {
    /// Address to listen on.
    #[arg(long, default_value = discovery::DEFAULT_BINDER)]
    listen: String,
}

#[derive(Debug, Args)]
struct LookupArgs {
    /// A service name (`Calculator`); all of them if left out (binder only).
    name: Option<String>,
    /// The binder's address.
    #[arg(long, default_value = discovery::DEFAULT_BINDER)]
    binder: String,
    /// Look in etcd at this URL (`http://127.0.0.1:2379`) instead.
    #[arg(long, value_name = "URL", requires = "name")]
    etcd: Option<String>,
}

#[derive(Debug, Args)]
struct HealthArgs {
    /// The server: `HOST:PORT` or `http://HOST:PORT`.
    target: String,
    /// Seconds to wait for the answer.
    #[arg(long, value_name = "SECS", default_value_t = 5.0, value_parser = seconds)]
    timeout: f64,
}

#[derive(Debug, Args)]
struct ChatArgs {
    /// Your name in the room.
    #[arg(long)]
    nick: String,
    /// The room to join.
    #[arg(long, default_value = "geral")]
    room: String,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Args)]
struct LiveSendArgs {
    /// The line to publish.
    text: String,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Args)]
struct ListArgs {
    /// The server: `HOST:PORT`, `tcp://HOST:PORT`, `ws://HOST:PORT/ws`,
    /// `http://HOST:PORT/rpc` (`tls://`, `wss://` and `https://` with
    /// --tls-ca).
    target: String,
    #[command(flatten)]
    options: ConnectOptions,
}

#[derive(Debug, Args)]
struct CallArgs {
    /// The server: `HOST:PORT`, `tcp://HOST:PORT`, `ws://HOST:PORT/ws`,
    /// `http://HOST:PORT/rpc` (`tls://`, `wss://` and `https://` with
    /// --tls-ca).
    target: String,
    /// The method's wire name.
    method: String,
    /// The arguments, by position: each is read as JSON (`3`, `true`,
    /// `"123"`, `[1,2]`), and a bare word as a string.
    args: Vec<String>,
    /// All the params at once, as JSON (an array, or an object by name),
    /// instead of ARGS.
    #[arg(long, value_name = "JSON", conflicts_with = "args")]
    params: Option<String>,
    #[command(flatten)]
    options: ConnectOptions,
}

/// How `list` and `call` connect.
#[derive(Debug, Args)]
struct ConnectOptions {
    /// The binder that knows a target given as a service name (`call
    /// Calculator add 2 3`).
    #[arg(long, value_name = "ADDR", default_value = discovery::DEFAULT_BINDER)]
    binder: String,
    /// Or etcd at this URL, for a target given as a service name.
    #[arg(long, value_name = "URL")]
    etcd: Option<String>,
    /// Seconds to wait for the answer.
    #[arg(long, value_name = "SECS", default_value_t = rpc_core::DEFAULT_TIMEOUT.as_secs_f64(), value_parser = seconds)]
    timeout: f64,
    /// Token to present if the server requires one.
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
    /// Speak TLS, trusting the CA certificate(s) in this PEM file.
    #[arg(long, value_name = "PEM")]
    tls_ca: Option<PathBuf>,
    /// Name the server's certificate must carry (default: the host of the target).
    #[arg(long, value_name = "NAME", requires = "tls_ca")]
    tls_name: Option<String>,
}

impl ConnectOptions {
    /// The client options for `target` (`HOST:PORT` or a URL).
    fn client_args(self, target: &str) -> Result<ClientArgs, DemoError> {
        if !target.contains(':') {
            // A service name: found through the binder.
            let (binder, etcd) = match self.etcd {
                Some(etcd) => (None, Some(etcd)),
                None => (Some(self.binder), None),
            };
            return Ok(ClientArgs {
                server: Some(target.to_owned()),
                binder,
                etcd,
                timeout: self.timeout,
                token: self.token,
                tls_ca: self.tls_ca,
                tls_name: self.tls_name,
            });
        }
        let (scheme, address) = target.split_once("://").unwrap_or(("tcp", target));
        let server = match scheme {
            "tcp" => address.trim_end_matches('/').to_owned(),
            "tls" | "wss" | "https" if self.tls_ca.is_none() => {
                return Err(DemoError::Usage(format!(
                    "a {scheme}:// target needs --tls-ca with the CA that signed the server's certificate"
                )));
            }
            "tls" => address.trim_end_matches('/').to_owned(),
            "ws" | "wss" | "http" | "https" => target.to_owned(),
            other => {
                return Err(DemoError::Usage(format!(
                    "`{other}://` targets are not supported by this command yet; give HOST:PORT, tcp://, tls://, ws://, wss://, http:// or https:// (the same port answers them all)"
                )));
            }
        };
        Ok(ClientArgs {
            server: Some(server),
            binder: None,
            etcd: None,
            timeout: self.timeout,
            token: self.token,
            tls_ca: self.tls_ca,
            tls_name: self.tls_name,
        })
    }
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = DEFAULT_ADDR)]
    listen: String,
    /// Most connections served at once; more get an error and are closed.
    #[arg(long, value_name = "N", default_value_t = rpc_core::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// Most calls running at once per connection; more get "server busy".
    #[arg(long, value_name = "N", default_value_t = rpc_core::DEFAULT_MAX_IN_FLIGHT)]
    max_in_flight: usize,
    /// Largest frame accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = rpc_core::frame::DEFAULT_MAX_FRAME)]
    max_frame: usize,
    /// Seconds a started frame (or TLS handshake) may take to arrive.
    #[arg(long, value_name = "SECS", default_value_t = rpc_core::DEFAULT_FRAME_TIMEOUT.as_secs_f64(), value_parser = seconds)]
    frame_timeout: f64,
    /// Require clients to present this token (`rpc.auth`) before any call.
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
    /// Register every service with the binder at this address (`rpc-demo
    /// binder`), and keep the registrations alive.
    #[arg(long, value_name = "ADDR")]
    binder: Option<String>,
    /// Register every service in etcd at this URL (`http://127.0.0.1:2379`).
    #[arg(long, value_name = "URL")]
    etcd: Option<String>,
    /// The address clients reach this server at, as registered (default:
    /// the listening address; needed when listening on 0.0.0.0).
    #[arg(long, value_name = "ADDR")]
    advertise: Option<String>,
    /// Serve TLS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The SQLite file of the student records, made and seeded if missing
    /// (default: rpc-demo/students.db in the user's data folder,
    /// ~/.local/share on Linux).
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,
    #[command(flatten)]
    files: files_cli::ServeFiles,
}

/// How a client reaches its server. The options are global: `students`
/// and `files` take them before or after the action alike.
#[derive(Debug, Args)]
struct ClientArgs {
    /// Address of a running `rpc-demo serve` [default: 127.0.0.1:7070;
    /// for `files`, the server of the session].
    #[arg(long, global = true, value_name = "ADDR")]
    server: Option<String>,
    /// Find the servers through this binder instead (`rpc-demo binder`),
    /// spreading calls over every instance.
    #[arg(long, global = true, value_name = "ADDR", conflicts_with = "server")]
    binder: Option<String>,
    /// Find the servers through etcd at this URL (`http://127.0.0.1:2379`).
    #[arg(long, global = true, value_name = "URL", conflicts_with_all = ["server", "binder"])]
    etcd: Option<String>,
    /// Seconds to wait for each answer.
    #[arg(long, global = true, value_name = "SECS", default_value_t = rpc_core::DEFAULT_TIMEOUT.as_secs_f64(), value_parser = seconds)]
    timeout: f64,
    /// Token to present if the server requires one.
    #[arg(long, global = true, value_name = "TOKEN")]
    token: Option<String>,
    /// Speak TLS, trusting the CA certificate(s) in this PEM file.
    #[arg(long, global = true, value_name = "PEM")]
    tls_ca: Option<PathBuf>,
    /// Name the server's certificate must carry (default: the host of --server).
    #[arg(long, global = true, value_name = "NAME", requires = "tls_ca")]
    tls_name: Option<String>,
}

impl ClientArgs {
    /// The server's address: `--server`, or [`DEFAULT_ADDR`].
    fn server(&self) -> &str {
        self.server.as_deref().unwrap_or(DEFAULT_ADDR)
    }
}

/// Parses a positive number of seconds.
fn seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s > 0.0 && s.is_finite() && s < 1e9 => Ok(s),
        _ => Err(format!("'{text}' is not a positive number of seconds")),
    }
}

/// An error that ends the program: printed as one line, exit status 1.
#[derive(Debug, thiserror::Error)]
enum DemoError {
    #[error(transparent)]
    Rpc(#[from] rpc_core::RpcError),
    #[error(transparent)]
    Server(#[from] rpc_core::ServerError),
    #[error(transparent)]
    Tls(#[from] rpc_core::tls::TlsError),
    #[error("reading the terminal failed: {0}")]
    Input(#[from] std::io::Error),
    #[error("standard output is closed")]
    OutputClosed,
    #[error("writing to the terminal failed: {0}")]
    Output(std::io::Error),
    #[error("{0}")]
    Other(String),
    #[error("{0}")]
    Usage(String),
}

/// `a`, `a and b`, `a, b and c`: a list in a sentence.
fn in_words(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// Writes one line to standard output.
fn say_line(args: std::fmt::Arguments<'_>) -> Result<(), DemoError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
        .map_err(output_error)
}

/// A failed write to standard output: a closed pipe ends the program
/// quietly, anything else is reported.
fn output_error(e: std::io::Error) -> DemoError {
    match e.kind() {
        std::io::ErrorKind::BrokenPipe => DemoError::OutputClosed,
        _ => DemoError::Output(e),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Some(Command::Serve(_)) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            {
                use std::io::Write as _;
                let _ = writeln!(
                    std::io::stderr(),
                    "error: could not start the async runtime: {e}"
                );
            }
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            None => tour::run().await,
            Some(Command::Serve(args)) => serve(args).await,
            Some(Command::Calc(args)) => {
                let discovering = args.binder.is_some() || args.etcd.is_some();
                let client = connect_to(&args, "Calculator").await?;
                interactive::calc(&where_from(&args), client, discovering).await
            }
            Some(Command::Hello(args)) => {
                interactive::hello(connect_to(&args, "Greeter").await?).await
            }
            Some(Command::Echo(args)) => {
                interactive::echo(&where_from(&args), connect_to(&args, "Echo").await?).await
            }
            Some(Command::Binder(args)) => discovery::binder(&args.listen).await,
            Some(Command::Lookup(args)) => match &args.etcd {
                Some(etcd) => {
                    let name = args.name.as_deref().unwrap_or_default();
                    discovery::lookup_in(discovery::etcd(etcd).await?, name).await
                }
                None => discovery::lookup(&args.binder, args.name.as_deref()).await,
            },
            Some(Command::Health(args)) => {
                discovery::health(&args.target, Duration::from_secs_f64(args.timeout)).await
            }
            Some(Command::List(args)) => {
                let client = args.options.client_args(&args.target)?;
                tools::list(connect(&client).await?).await
            }
            Some(Command::Chat(args)) => {
                chat::chat(
                    connect_to(&args.client, "Chat").await?,
                    &args.room,
                    &args.nick,
                )
                .await
            }
            Some(Command::LiveSend(args)) => {
                let live =
                    rpc_demo::services::LiveClient::new(connect_to(&args.client, "Live").await?);
                match live.publish(args.text).await {
                    Ok(watchers) => {
                        say!("published to {watchers} watcher(s)");
                        Ok(())
                    }
                    Err(rpc_core::RpcError::Application(e)) => Err(DemoError::Usage(e.to_string())),
                    Err(e) => Err(DemoError::Other(e.to_string())),
                }
            }
            Some(Command::Students(args)) => students_cli::run(args).await,
            Some(Command::Files(args)) => files_cli::run(args).await,
            Some(Command::Users(args)) => files_cli::users(args),
            Some(Command::Call(args)) => {
                let client = args.options.client_args(&args.target)?;
                tools::call(
                    connect(&client).await?,
                    &args.method,
                    &args.args,
                    args.params.as_deref(),
                )
                .await
            }
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        // Whoever read our output has gone (`rpc-demo | head`): nothing to say.
        Err(DemoError::OutputClosed) => ExitCode::FAILURE,
        Err(e) => {
            {
                use std::io::Write as _;
                let _ = writeln!(std::io::stderr(), "error: {e}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Where a client's server is, in words: its address, or the registry it
/// is found through.
fn where_from(args: &ClientArgs) -> String {
    match (&args.binder, &args.etcd) {
        (Some(binder), _) => format!("the servers the binder at {binder} knows"),
        (None, Some(etcd)) => format!("the servers etcd at {etcd} knows"),
        (None, None) => args.server().to_owned(),
    }
}

/// Connects as the client options say: to `--server`, or through
/// `--binder` to every instance of `service`.
async fn connect_to(args: &ClientArgs, service: &str) -> Result<rpc_core::Client, DemoError> {
    let registry = match (&args.binder, &args.etcd) {
        (Some(binder), _) => discovery::registry(binder).await?,
        (None, Some(etcd)) => discovery::etcd(etcd).await?,
        (None, None) => return Ok(client_builder(args)?.connect(args.server()).await?),
    };
    Ok(client_builder(args)?.discover(registry, service).await?)
}

/// Connects to `list` or `call`'s target: an address, or a service name
/// found through the binder.
async fn connect(args: &ClientArgs) -> Result<rpc_core::Client, DemoError> {
    connect_to(args, args.server()).await
}

/// The client options of `args`.
fn client_builder(args: &ClientArgs) -> Result<rpc_core::ClientBuilder, DemoError> {
    let mut builder = rpc_core::Client::builder().timeout(Duration::from_secs_f64(args.timeout));
    if let Some(token) = &args.token {
        builder = builder.token(token.clone());
    }
    if let Some(ca) = &args.tls_ca {
        let config = rpc_core::tls::client_config(&rpc_core::tls::read_pem(ca)?, None)?;
        let name = match &args.tls_name {
            Some(name) => name.clone(),
            None => host_of(args.server()).to_owned(),
        };
        builder = builder.tls(config, name)?;
    }
    Ok(builder)
}

/// `host` of `host:port` (without the brackets of `[::1]:7070`).
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

async fn serve(args: ServeArgs) -> Result<(), DemoError> {
    // Every connection takes a file descriptor: use all the process may
    // have (the server keeps its connection limit below it).
    #[cfg(unix)]
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
    }
    let feed = rpc_demo::services::Feed::default();
    let files = args.files.store()?;
    let metrics =
        rpc_core::metrics::install_prometheus().map_err(|e| DemoError::Other(e.to_string()))?;
    let mut builder = rpc_demo::services::all_services_with(feed.clone())
        .metrics(metrics)
        .max_connections(args.max_connections)
        .max_in_flight(args.max_in_flight)
        .max_frame_size(args.max_frame)
        .frame_timeout(Duration::from_secs_f64(args.frame_timeout));
    if let Some(token) = args.token {
        builder = builder.token(token);
    }
    builder = students_cli::serve(builder, args.db).await?;
    if let Some(store) = &files {
        builder = builder.service(rpc_demo::services::FilesServer::new(store.clone()));
        store.spawn_sweeper();
    }
    if let Some(binder) = &args.binder {
        builder = builder.register(discovery::registry(binder).await?);
    }
    if let Some(etcd) = &args.etcd {
        builder = builder.register(discovery::etcd(etcd).await?);
    }
    if let Some(advertise) = args.advertise {
        builder = builder.advertise(advertise);
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let config = rpc_core::tls::server_config(
                &rpc_core::tls::read_pem(cert)?,
                &rpc_core::tls::read_pem(key)?,
                None,
            )?;
            builder = builder.tls(config);
            true
        }
        _ => false,
    };
    let mut stop = StopSignal::listen()?;
    let server = builder.bind(args.listen.as_str()).await?;
    let mut served = vec!["Calculator", "Greeter", "Echo", "Chat", "Live", "Students"];
    if files.is_some() {
        served.push("Files");
    }
    say!(
        "rpc-demo serving {} on {}{}; Ctrl-C to stop",
        in_words(&served),
        server.local_addr(),
        if tls { " (TLS)" } else { "" }
    );
    // The course's live example: the operator types, every `/live` page
    // shows it. Only from a terminal: a server started by a script reads
    // nothing from its standard input.
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        say!("type a line and Enter to publish it to /live (live.watch)");
        std::thread::spawn(move || publish_typed_lines(&feed));
    }
    stop.recv().await?;
    say!("stopping: finishing the calls in flight");
    server.shutdown().await;
    say!("stopped");
    Ok(())
}

/// Publishes each line typed at the server's terminal to the live feed,
/// prompting as the course's server does, until end of input.
fn publish_typed_lines(feed: &rpc_demo::services::Feed) {
    use std::io::{BufRead, Write};
    let stdin = std::io::stdin();
    loop {
        print!("Mensagem: ");
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        match stdin.lock().read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => match feed.post(&line) {
                Ok(watchers) => tracing::info!(watchers, "published a line to /live"),
                Err(e) => println!("not published: {e}"),
            },
        }
    }
}

/// Ctrl-C or SIGTERM (what `docker stop` sends), listened for from the
/// moment it is made. Make it before saying that the server is up: a
/// signal sent right after that line must stop the server gracefully, not
/// kill the process (the default action of a signal nobody listens for yet,
/// which `tokio::signal::ctrl_c` only starts listening for when first
/// polled). Outside Unix, Ctrl-C only, listened for from the first wait.
pub(crate) struct StopSignal {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl StopSignal {
    /// Starts listening. Fails (an I/O error) if the signal handlers cannot
    /// be installed.
    pub(crate) fn listen() -> Result<StopSignal, DemoError> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(StopSignal {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(StopSignal {})
    }

    /// Waits for the first Ctrl-C or SIGTERM.
    pub(crate) async fn recv(&mut self) -> Result<(), DemoError> {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(not(unix))]
        tokio::signal::ctrl_c().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_is_taken_from_the_server_address() {
        assert_eq!(host_of("localhost:7070"), "localhost");
        assert_eq!(host_of("127.0.0.1:7070"), "127.0.0.1");
        assert_eq!(host_of("[::1]:7070"), "::1");
    }

    #[test]
    fn seconds_must_be_positive_numbers() {
        assert_eq!(seconds("1.5"), Ok(1.5));
        assert!(seconds("0").is_err());
        assert!(seconds("-2").is_err());
        assert!(seconds("soon").is_err());
    }
}
