//! The HTTP/JSON API every node serves, and the client that talks to it.
//!
//! - `server`: routes, auth, limits; `listen`: the port (HTTPS, and
//!   plain HTTP for loopback); `discovery`: Kubernetes API discovery; `handlers`, `logs`, `services`,
//!   `rollouts`, `maintenance`, `secrets`: endpoints; `delete`: DeleteOptions and deletecollection; `patch`: PATCH (`strategic`: Kubernetes'
//!   strategic merge patch); `write_options`: fieldValidation, dryRun and
//!   Warning headers;
//! - `tables`: `kubectl get`'s server-side tables; `openapi`: the OpenAPI
//!   documents kubectl reads before it writes;
//! - `watch`: lists with selectors and watches, over `watchcache` (this
//!   node's recent versions) and `selector` (label and field selectors);
//! - `render`: Kubernetes-shaped JSON (apply planning is `state::apply`);
//! - `exec`: commands in running containers over WebSocket (`upgrade`
//!   relays them to the node that runs the pod);
//! - `protobuf`: Kubernetes' protobuf request bodies, read as JSON;
//! - `error`: `kind: Status` errors; `client`: HTTP client with failover.

pub mod addresses;
pub mod client;
pub mod dashboard;
pub mod delete;
pub mod details;
pub mod discovery;
pub mod error;
pub mod exec;
pub mod handlers;
pub mod listen;
pub mod logs;
pub mod maintenance;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod render;
pub mod rollouts;
pub mod secrets;
pub mod selector;
pub mod server;
pub mod services;
pub mod strategic;
pub mod tables;
pub mod upgrade;
pub mod watch;
pub mod watchcache;
pub mod write_options;
