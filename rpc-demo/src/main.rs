//! `rpc-demo`: the course's systems on this library.
//!
//! With no arguments it runs the tour (a server and its clients in one
//! process). `serve` runs every demo service on one port; `calc`, `hello`
//! and `echo` are the interactive clients of the course's labs.

mod interactive;
mod tour;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Where the clients look for the server, and where `serve` listens, by default.
const DEFAULT_ADDR: &str = "127.0.0.1:7070";

#[derive(Debug, Parser)]
#[command(name = "rpc-demo", version, about = "Demos of the rpc library: a calculator, a greeter and an echo service", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve Calculator, Greeter and Echo on one port until Ctrl-C.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = DEFAULT_ADDR)]
        listen: String,
    },
    /// Interactive calculator: operation, two numbers, result; `fim` to leave.
    Calc {
        /// Address of a running `rpc-demo serve`.
        #[arg(long, default_value = DEFAULT_ADDR)]
        server: String,
    },
    /// Asks your name and prints the server's greeting.
    Hello {
        /// Address of a running `rpc-demo serve`.
        #[arg(long, default_value = DEFAULT_ADDR)]
        server: String,
    },
    /// Sends each line you type and prints the echo; `fim` to leave.
    Echo {
        /// Address of a running `rpc-demo serve`.
        #[arg(long, default_value = DEFAULT_ADDR)]
        server: String,
    },
}

/// An error that ends the program: printed as one line, exit status 1.
#[derive(Debug, thiserror::Error)]
enum DemoError {
    #[error(transparent)]
    Rpc(#[from] rpc_core::RpcError),
    #[error(transparent)]
    Server(#[from] rpc_core::ServerError),
    #[error("reading the terminal failed: {0}")]
    Input(#[from] std::io::Error),
    #[error("{0}")]
    Other(String),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Some(Command::Serve { .. }) => "info",
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
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            None => tour::run().await,
            Some(Command::Serve { listen }) => serve(&listen).await,
            Some(Command::Calc { server }) => interactive::calc(&server).await,
            Some(Command::Hello { server }) => interactive::hello(&server).await,
            Some(Command::Echo { server }) => interactive::echo(&server).await,
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(listen: &str) -> Result<(), DemoError> {
    let server = rpc_demo::services::all_services().bind(listen).await?;
    println!(
        "rpc-demo serving Calculator, Greeter and Echo on {}; Ctrl-C to stop",
        server.local_addr()
    );
    stop_signal().await?;
    println!("stopping: finishing the calls in flight");
    server.shutdown().await;
    println!("stopped");
    Ok(())
}

/// Ctrl-C, or SIGTERM (what `docker stop` sends).
async fn stop_signal() -> Result<(), DemoError> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await?;
    Ok(())
}
