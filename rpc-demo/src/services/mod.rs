//! One file per service: the interface (the trait) and its implementation.

pub mod calculator;
pub mod chat;
pub mod echo;
pub mod files;
pub mod greeter;
pub mod live;
pub mod students;

pub use calculator::{Calc, CalcError, Calculator, CalculatorClient, CalculatorServer};
pub use chat::{Chat, ChatClient, ChatError, ChatServer, Event, Rooms};
pub use echo::{Echo, EchoClient, EchoServer, Echoer};
pub use files::{FileStore, Files, FilesClient, FilesError, FilesServer};
pub use greeter::{Greet, Greeter, GreeterClient, GreeterServer};
pub use live::{Feed, Live, LiveClient, LiveError, LiveEvent, LiveServer};
pub use students::{Records, Students, StudentsClient, StudentsError, StudentsServer};

/// A server with every demo service, as `rpc-demo serve` runs it, with a
/// live feed of its own.
pub fn all_services() -> rpc_core::ServerBuilder {
    all_services_with(Feed::default())
}

/// Every demo service, with the live feed `feed` (the server's terminal
/// publishes into it).
pub fn all_services_with(feed: Feed) -> rpc_core::ServerBuilder {
    rpc_core::Server::builder()
        .service(CalculatorServer::new(Calc))
        .service(GreeterServer::new(Greet))
        .service(EchoServer::new(Echoer))
        .service(ChatServer::new(Rooms::default()))
        .service(LiveServer::new(feed))
        .page("/", "text/html; charset=utf-8", CALCULATOR_PAGE)
        .page("/chat", "text/html; charset=utf-8", CHAT_PAGE)
        .page("/live", "text/html; charset=utf-8", LIVE_PAGE)
}

/// The calculator page at `/`: two numbers, a button per operation, calls
/// over WebSocket with the server's `/rpc.js`.
pub const CALCULATOR_PAGE: &str = include_str!("../../assets/calculator.html");

/// The chat page at `/chat`: a nick and a room, the room's events as they
/// come (a `chat.join` stream with `/rpc.js`), and a field to send.
pub const CHAT_PAGE: &str = include_str!("../../assets/chat.html");

/// The live page at `/live` (the course's second WebSocket example): a list
/// that grows with each post of `live.watch`, with the server's time.
pub const LIVE_PAGE: &str = include_str!("../../assets/live.html");
