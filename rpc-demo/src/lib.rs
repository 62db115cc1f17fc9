//! The demo services of the course, as `#[rpc_core::service]` traits with
//! their implementations. The `rpc-demo` binary serves and calls them; the
//! integration tests use them too.

pub mod services;
