//! tarpc 0.38 with its JSON serde transport (tokio-serde `Json` over a
//! `LengthDelimitedCodec`) on TCP.
//!
//! The fairest setup we know: TCP_NODELAY on both sides (tarpc's own
//! `serde_transport::tcp` leaves it off), the default client and channel
//! configs (1,000 requests in flight per client), and every request spawned
//! as its own task on the server, as tarpc's examples do.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use futures::StreamExt;
use tarpc::context;
use tarpc::serde_transport;
use tarpc::server::{BaseChannel, Channel};
use tarpc::tokio_serde::formats::Json;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use super::{Connection, RunningServer, listen, tcp_connect};
use crate::counting::{CountingIo, WriteCounter};

#[tarpc::service]
pub trait Bench {
    /// `a + b`.
    async fn add(a: i64, b: i64) -> i64;
    /// Returns `s` unchanged.
    async fn echo(s: String) -> String;
}

#[derive(Clone)]
struct BenchServer;

impl Bench for BenchServer {
    async fn add(self, _: context::Context, a: i64, b: i64) -> i64 {
        a.wrapping_add(b)
    }

    async fn echo(self, _: context::Context, s: String) -> String {
        s
    }
}

pub type Client = BenchClient;

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(16 << 20)
        .new_codec()
}

pub async fn start_server() -> RunningServer {
    let listener = listen().await;
    let addr = listener.local_addr().expect("local addr");
    let writes = WriteCounter::default();
    let accept = tokio::spawn({
        let writes = writes.clone();
        async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let io = CountingIo::new(stream, writes.clone());
                let transport = serde_transport::new(Framed::new(io, codec()), Json::default());
                let channel = BaseChannel::with_defaults(transport);
                tokio::spawn(
                    channel
                        .execute(BenchServer.serve())
                        .for_each(|response| async {
                            tokio::spawn(response);
                        }),
                );
            }
        }
    });
    RunningServer::new(addr, Some(writes), move || accept.abort())
}

pub async fn connect(addr: SocketAddr) -> Result<Connection, String> {
    let stream = tcp_connect(addr).await?;
    let fd = stream.as_raw_fd();
    let writes = WriteCounter::default();
    let io = CountingIo::new(stream, writes.clone());
    let transport = serde_transport::new(Framed::new(io, codec()), Json::default());
    let client = BenchClient::new(tarpc::client::Config::default(), transport).spawn();
    Ok(Connection {
        client: super::Client::Tarpc(client),
        writes: Some(writes),
        fd: Some(fd),
    })
}

pub async fn add(client: &Client, a: i64, b: i64) -> Result<i64, String> {
    client
        .add(context::current(), a, b)
        .await
        .map_err(|e| e.to_string())
}

pub async fn echo(client: &Client, s: String) -> Result<String, String> {
    client
        .echo(context::current(), s)
        .await
        .map_err(|e| e.to_string())
}
