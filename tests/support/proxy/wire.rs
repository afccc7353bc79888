//! What the proxy writes on the wire when a rule answers instead of the registry (distribution-style
//! error documents, an oversized chunked "manifest") and the socket wrapper that turns a `Reset` fault
//! into a real TCP RST. Nothing here forwards to the registry or decides which rule applies.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::stream;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::Response;
use hyper::body::Frame;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Content type of the oversized "manifest".
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const ERROR_CONTENT_TYPE: &str = "application/json; charset=utf-8";
const API_VERSION_HEADER: &str = "Docker-Distribution-Api-Version";
const API_VERSION: &str = "registry/2.0";
/// Chunk size of the oversized body (each chunk is one HTTP/1.1 chunk).
const OVERSIZE_CHUNK: usize = 64 * 1024;

pub(super) type Body = BoxBody<Bytes, io::Error>;

pub(super) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

/// The distribution error code a registry would use for `code` on `path`.
fn error_code(code: u16, path: &str) -> (&'static str, &'static str) {
    match code {
        401 => ("UNAUTHORIZED", "authentication required"),
        403 => ("DENIED", "requested access to the resource is denied"),
        404 if path.contains("/manifests/") => ("MANIFEST_UNKNOWN", "manifest unknown"),
        404 if path.contains("/blobs/") => ("BLOB_UNKNOWN", "blob unknown to registry"),
        404 => ("NAME_UNKNOWN", "repository name not known to registry"),
        429 => ("TOOMANYREQUESTS", "too many requests"),
        502..=504 => ("UNAVAILABLE", "service unavailable"),
        _ => ("UNKNOWN", "unknown error"),
    }
}

pub(super) fn error_response(code: u16, retry_after: Option<u32>, path: &str) -> Response<Body> {
    let (error, message) = error_code(code, path);
    error_response_with(code, retry_after, error, message)
}

pub(super) fn error_response_with(
    code: u16,
    retry_after: Option<u32>,
    error: &str,
    message: &str,
) -> Response<Body> {
    let body = serde_json::json!({"errors": [{"code": error, "message": message, "detail": null}]});
    let mut builder = Response::builder()
        .status(code)
        .header(hyper::header::CONTENT_TYPE, ERROR_CONTENT_TYPE)
        .header(API_VERSION_HEADER, API_VERSION);
    if let Some(secs) = retry_after {
        builder = builder.header(hyper::header::RETRY_AFTER, secs.to_string());
    }
    if code == 401 {
        builder = builder.header(
            hyper::header::WWW_AUTHENTICATE,
            "Basic realm=\"fault-proxy\"",
        );
    }
    builder
        .body(full(serde_json::to_vec(&body).unwrap_or_default()))
        .expect("error response")
}

/// 200 with a manifest content type and `size` bytes of JSON-looking body, streamed without a length.
pub(super) fn oversize_response(size: usize) -> Response<Body> {
    let head = format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"{OCI_MANIFEST}\",\"annotations\":{{\"padding\":\""
    );
    let tail = "\"}}";
    let mut bytes = head.into_bytes();
    bytes.resize(size.saturating_sub(tail.len()).max(bytes.len()), b'a');
    bytes.extend_from_slice(tail.as_bytes());
    bytes.truncate(size);
    let chunks: Vec<Result<Frame<Bytes>, io::Error>> = bytes
        .chunks(OVERSIZE_CHUNK)
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    // StreamBody has no size hint, so hyper sends it with `Transfer-Encoding: chunked`.
    let body = BodyExt::boxed(StreamBody::new(stream::iter(chunks)));
    Response::builder()
        .status(200)
        .header(hyper::header::CONTENT_TYPE, OCI_MANIFEST)
        .header(API_VERSION_HEADER, API_VERSION)
        .body(body)
        .expect("oversize response")
}

/// The accepted socket; when a `Reset` fault fired it is closed with `SO_LINGER` 0, i.e. a TCP RST.
pub(super) struct Conn {
    pub(super) stream: TcpStream,
    pub(super) reset: Arc<AtomicBool>,
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.reset.load(Ordering::SeqCst) {
            // No FIN: the RST on drop is the only thing the client gets.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_shutdown(cx)
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if self.reset.load(Ordering::SeqCst) {
            let _ = self.stream.set_zero_linger();
        }
    }
}
