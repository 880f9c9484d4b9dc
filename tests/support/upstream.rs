//! The AWS emulator behind a stand-in on loopback ([`crate::aws_proxy`], the CloudWatch front of
//! the `spillway queue stats` tests): what the stand-in does not answer itself, it forwards.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, StatusCode, Uri};

/// Where a stand-in forwards to, and the client it forwards with.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// The base URL, without a trailing `/`.
    url: String,
    client: reqwest::Client,
}

impl Upstream {
    /// The emulator at `url` (`http://127.0.0.1:5000`, say).
    pub fn new(url: &str) -> Self {
        Self {
            url: url.trim_end_matches('/').to_owned(),
            client: reqwest::Client::new(),
        }
    }

    /// Sends the request a stand-in received to the same path and query upstream, with its
    /// headers (but `Host` and `Content-Length`, which belong to the connection), and answers
    /// with the upstream's status, headers (but `Content-Length` and `Transfer-Encoding`) and
    /// body; 502 when the upstream did not answer.
    pub async fn forward(
        &self,
        method: Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Response {
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.url))
            .body(body);
        for (name, value) in headers {
            if name != http::header::HOST && name != http::header::CONTENT_LENGTH {
                request = request.header(name, value);
            }
        }
        let answer = match request.send().await {
            Ok(answer) => answer,
            Err(error) => {
                return (
                    StatusCode::BAD_GATEWAY,
                    format!("the emulator did not answer: {error}"),
                )
                    .into_response();
            }
        };
        let status = answer.status();
        let mut headers = answer.headers().clone();
        headers.remove(http::header::CONTENT_LENGTH);
        headers.remove(http::header::TRANSFER_ENCODING);
        let body = answer.bytes().await.unwrap_or_default();
        // A `Body`, not `Bytes`, which would add a content type the upstream did not give.
        (status, headers, Body::from(body)).into_response()
    }
}
