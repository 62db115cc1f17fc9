//! One file per service: the interface (the trait) and its implementation.

pub mod calculator;
pub mod echo;
pub mod greeter;

pub use calculator::{Calc, CalcError, Calculator, CalculatorClient, CalculatorServer};
pub use echo::{Echo, EchoClient, EchoServer, Echoer};
pub use greeter::{Greet, Greeter, GreeterClient, GreeterServer};

/// A server with every demo service, as `rpc-demo serve` runs it.
pub fn all_services() -> rpc_core::ServerBuilder {
    rpc_core::Server::builder()
        .service(CalculatorServer::new(Calc))
        .service(GreeterServer::new(Greet))
        .service(EchoServer::new(Echoer))
        .page("/", "text/html; charset=utf-8", CALCULATOR_PAGE)
}

/// The calculator page at `/`: two numbers, a button per operation, calls
/// over WebSocket with the server's `/rpc.js`.
pub const CALCULATOR_PAGE: &str = include_str!("../../assets/calculator.html");
