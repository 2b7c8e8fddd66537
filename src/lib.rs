//! switchyard: an A2A (Agent-to-Agent protocol) server.
//!
//! Layers, outermost first: `http` (axum routers) → `rpc` (JSON-RPC dispatcher, one file per
//! method) → `engine` (task state machine, workers) → `store` (backends) and `agents`
//! (executors); `delivery` sends push notifications.

pub mod agents;
pub mod auth;
pub mod capture;
pub mod clock;
pub mod config;
pub mod cursor;
pub mod delivery;
pub mod engine;
pub mod headers;
pub mod http;
pub mod observability;
pub mod protocol;
pub mod rpc;
pub mod server;
pub mod store;
pub mod tenants;
pub mod webhooks;
