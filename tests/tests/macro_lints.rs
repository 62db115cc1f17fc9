//! Code generated for a trait the user keeps lint-clean stays lint-clean:
//! `cargo clippy --all-targets -- -D warnings` (as CI runs it) fails this
//! file if the generated client or batch methods trip a lint the user
//! silenced on the trait method, or one only the generated code causes.

#![deny(clippy::too_many_arguments)]

mod common;

use common::TestServer;

/// Eight arguments: past clippy's default limit of seven.
#[rpc_core::service]
pub trait Wide {
    /// Sums eight numbers.
    #[allow(clippy::too_many_arguments)]
    async fn sum8(&self, a: u8, b: u8, c: u8, d: u8, e: u8, f: u8, g: u8, h: u8) -> u32;
}

struct Summer;

impl Wide for Summer {
    #[allow(clippy::too_many_arguments)]
    async fn sum8(&self, a: u8, b: u8, c: u8, d: u8, e: u8, f: u8, g: u8, h: u8) -> u32 {
        [a, b, c, d, e, f, g, h].iter().map(|&x| u32::from(x)).sum()
    }
}

#[tokio::test]
async fn a_method_with_eight_arguments_works_through_client_and_batch() {
    let fx = TestServer::start(rpc_core::Server::builder().service(WideServer::new(Summer))).await;
    let wide = WideClient::new(fx.client().await);
    assert_eq!(wide.sum8(1, 2, 3, 4, 5, 6, 7, 8).await.unwrap(), 36);
    let mut batch = wide.batch();
    let sum = batch.sum8(8, 7, 6, 5, 4, 3, 2, 1).unwrap();
    batch.await.unwrap();
    assert_eq!(sum.await.unwrap(), 36);
    drop(wide);
    fx.shutdown().await;
}
