//! The HTTP API, the only crate that speaks HTTP. Empty until the gateway
//! issue: meanwhile the service is operated through the `shareledger` binary.
