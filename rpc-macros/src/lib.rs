//! The `#[service]` attribute. Use it through `rpc_core::service`; the
//! documentation of what it generates lives there.
//!
//! The crate is split the way the expansion runs: `attr` reads the helper
//! attributes, `ast` builds a typed model of the trait that keeps the
//! user's tokens (and so their spans), `valid` checks what the runtime
//! cannot support, and `expand` writes the trait, client and server.
//! Every stage collects all the errors it finds (`ctxt::Errors`) so the
//! user sees each mistake once, at its own span.

mod ast;
mod attr;
mod ctxt;
mod expand;
mod valid;

use proc_macro::TokenStream;

/// Turns a trait into an RPC interface: see `rpc_core` for what it generates.
#[proc_macro_attribute]
pub fn service(args: TokenStream, input: TokenStream) -> TokenStream {
    expand::service(args.into(), input.into()).into()
}
