//! `#[service(namespace = "...")]` prefixes every wire name, renamed ones too.

use rpc_core::Service;

#[rpc_core::service(namespace = "calc")]
pub trait Calc {
    async fn add(&self, a: f64, b: f64) -> f64;
    #[rpc(name = "subtract")]
    async fn sub(&self, a: f64, b: f64) -> f64;
}

#[rpc_core::service(namespace = "admin.v2")]
pub trait Admin {
    async fn stop(&self);
}

struct Impl;

impl Calc for Impl {
    async fn add(&self, a: f64, b: f64) -> f64 {
        a + b
    }
    async fn sub(&self, a: f64, b: f64) -> f64 {
        a - b
    }
}

impl Admin for Impl {
    async fn stop(&self) {}
}

async fn _calls(calc: CalcClient, admin: AdminClient) {
    let _: Result<f64, rpc_core::RpcError> = calc.add(1.0, 2.0).await;
    let _: Result<f64, rpc_core::RpcError> = calc.sub(1.0, 2.0).await;
    let _: Result<(), rpc_core::RpcError> = admin.stop().await;
}

fn main() {
    let calc = CalcServer::new(Impl);
    let names: Vec<_> = calc.methods().iter().map(|m| m.name).collect();
    assert_eq!(names, ["calc.add", "calc.subtract"]);
    let admin = AdminServer::new(Impl);
    let names: Vec<_> = admin.methods().iter().map(|m| m.name).collect();
    assert_eq!(names, ["admin.v2.stop"]);
    let _ = rpc_core::Server::builder().service(calc).service(admin);
}
