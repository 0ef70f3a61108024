//! The HTTP/JSON API every node serves, and the client that talks to it.
//!
//! - `server`: routes, auth, limits; `handlers`, `logs`, `services`: endpoints;
//! - `apply`: pure apply/delete planning; `render`: Kubernetes-shaped JSON;
//! - `error`: `kind: Status` errors; `client`: HTTP client with failover.

pub mod apply;
pub mod client;
pub mod error;
pub mod handlers;
pub mod logs;
pub mod render;
pub mod server;
pub mod services;
