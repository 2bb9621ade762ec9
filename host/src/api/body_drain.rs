//! Reading away the part of a request body that no handler read, so that
//! the client hears the answer.
//!
//! A handler that refuses a request early (a body over the limit, a
//! missing token) answers without reading the body. The connection then
//! closes with the unread bytes in the kernel's receive buffer, and the
//! kernel answers that with a reset, which can reach the client before it
//! has read the answer and wipe it: the client sees "connection reset"
//! instead of the 413 or 401 envelope. This layer hands the handler a body
//! it shares, and after the answer is made reads away what is left (a
//! lingering close, as nginx does), up to a cap and a deadline, so the
//! connection closes clean. Past the cap it asks for the connection to be
//! closed instead of reading on.

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

/// At most this much of an unread body is read away.
const DRAIN_BYTES: u64 = 64 << 20;
/// And for at most this long.
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// The layer's function.
pub async fn drain_unread_bodies(req: Request, next: Next) -> Response {
    if req.body().is_end_stream() {
        // No body (a GET): nothing can be left unread.
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let slot = Arc::new(Mutex::new(Some(body)));
    let req = Request::from_parts(parts, Body::new(Shared(slot.clone())));
    let mut response = next.run(req).await;
    let rest = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(rest) = rest.filter(|b| !b.is_end_stream())
        && !drain(rest).await
    {
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Reads the body to its end and drops it; false if it is longer than the
/// cap, took too long or broke off.
async fn drain(mut body: Body) -> bool {
    if body.size_hint().lower() > DRAIN_BYTES {
        return false;
    }
    let read_all = async {
        let mut read = 0u64;
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            let Ok(frame) = frame else { return false };
            read += frame.data_ref().map_or(0, |d| d.len() as u64);
            if read > DRAIN_BYTES {
                return false;
            }
        }
        true
    };
    tokio::time::timeout(DRAIN_TIME, read_all).await.unwrap_or(false)
}

/// The request body, readable by the handler and afterwards by the layer.
struct Shared(Arc<Mutex<Option<Body>>>);

impl Shared {
    fn with<T>(&self, f: impl FnOnce(&mut Body) -> T, ended: T) -> T {
        match self.0.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            Some(body) => f(body),
            None => ended,
        }
    }
}

impl HttpBody for Shared {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        self.with(|body| Pin::new(body).poll_frame(cx), Poll::Ready(None))
    }

    fn is_end_stream(&self) -> bool {
        self.with(|body| body.is_end_stream(), true)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.with(|body| body.size_hint(), http_body::SizeHint::with_exact(0))
    }
}
