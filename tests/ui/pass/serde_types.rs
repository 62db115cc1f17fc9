//! User types with serde derives as arguments and results: structs, enums,
//! generic types at concrete parameters, tuples, maps, boxes.

use std::collections::HashMap;

use rpc_core::RpcError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub id: u64,
    pub name: String,
    pub tags: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Filter {
    All,
    ByName { name: String },
    ById(u64),
}

#[derive(Debug, Serialize, Deserialize)]
pub enum StoreError {
    NotFound(u64),
    Conflict { existing: User },
}

#[rpc_core::service]
pub trait Store {
    async fn put(&self, user: User) -> Result<(), StoreError>;
    async fn list(&self, filter: Filter, page_size: u16) -> Page<User>;
    async fn pair(&self, pair: (u8, String)) -> (String, u8);
    async fn index(&self, by_name: HashMap<String, User>) -> Box<[u64]>;
    async fn nested(&self, deep: Vec<Option<Page<(u8, User)>>>) -> [u8; 4];
}

struct Impl;

impl Store for Impl {
    async fn put(&self, user: User) -> Result<(), StoreError> {
        Err(StoreError::Conflict { existing: user })
    }
    async fn list(&self, _filter: Filter, _page_size: u16) -> Page<User> {
        Page {
            items: Vec::new(),
            next: None,
        }
    }
    async fn pair(&self, (a, b): (u8, String)) -> (String, u8) {
        (b, a)
    }
    async fn index(&self, by_name: HashMap<String, User>) -> Box<[u64]> {
        by_name.values().map(|u| u.id).collect()
    }
    async fn nested(&self, _deep: Vec<Option<Page<(u8, User)>>>) -> [u8; 4] {
        [0; 4]
    }
}

async fn _calls(client: StoreClient, user: User) {
    let _: Result<(), RpcError<StoreError>> = client.put(user).await;
    let _: Result<Page<User>, RpcError> = client.list(Filter::ById(1), 10).await;
    let _: Result<(String, u8), RpcError> = client.pair((1, "a".into())).await;
}

fn main() {
    let _ = rpc_core::Server::builder().service(StoreServer::new(Impl));
}
