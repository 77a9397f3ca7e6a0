//! The proxy: HTTP flows that rewrite requests on their way through veil, all run by one [`pipeline`].
//!
//! - [`ingress`]: clients → veil → the app; values tokenised on the way in;
//! - [`egress`]: the app → veil → one payment provider; tokens revealed on the way out, echoed values tokenised
//!   on the way back.
//!
//! Shared parts: [`request`] gathers a request's values and writes it back, [`body`] parses bodies by content
//! type, [`forward`] and [`pool`] reach the upstream, [`error`] maps every failure to the spec's JSON error.

pub mod body;
pub mod client;
pub mod connect;
pub mod early_count;
pub mod egress;
pub mod error;
pub mod forward;
pub mod ingress;
pub mod pipeline;
pub mod pool;
pub mod request;
pub mod reveal;
pub mod route;
pub mod scan_stream;

use bytes::Bytes;
use http::Response;
use http_body_util::combinators::BoxBody;
use http_body_util::BodyExt;

pub use forward::ClientAddr;
use forward::UpstreamBody;
pub use ingress::Proxy;

/// Body type of everything the proxy sends: upstream responses streamed, or its own small bodies.
pub type ProxyBody = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// An upstream response passed on as it streams.
fn stream(resp: Response<UpstreamBody>) -> Response<ProxyBody> {
    resp.map(|b| b.map_err(Into::into).boxed())
}
