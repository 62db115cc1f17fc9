//! Aliases (several, with a namespace) and `read_only`.

#[rpc_core::service(namespace = "calc")]
pub trait Calc {
    /// Adds.
    #[rpc(read_only, alias = "soma", alias = "plus")]
    async fn add(&self, a: f64, b: f64) -> f64;
    #[rpc(alias = "store")]
    async fn save(&self, value: f64);
}

struct C;

impl Calc for C {
    async fn add(&self, a: f64, b: f64) -> f64 {
        a + b
    }
    async fn save(&self, _: f64) {}
}

fn main() {
    use rpc_core::Service;
    let server = CalcServer::new(C);
    let add = server.methods().into_iter().find(|m| m.name == "calc.add").unwrap();
    assert_eq!(add.aliases, ["calc.soma", "calc.plus"]);
    assert!(add.read_only);
    let _ = rpc_core::Server::builder().service(server);
}
