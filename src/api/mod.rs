//! The HTTP/JSON API every node serves, and the client that talks to it.
//!
//! - `server`: routes, auth, limits; `handlers`, `logs`, `services`,
//!   `rollouts`, `maintenance`, `secrets`: endpoints;
//! - `render`: Kubernetes-shaped JSON (apply planning is `state::apply`);
//! - `error`: `kind: Status` errors; `client`: HTTP client with failover.

pub mod client;
pub mod error;
pub mod handlers;
pub mod logs;
pub mod maintenance;
pub mod render;
pub mod rollouts;
pub mod secrets;
pub mod server;
pub mod services;
