//! Sends one webhook attempt: the v1 body with Standard Webhooks headers and
//! `traceparent`, under a per-attempt timeout, to an address the private-address block
//! allows (checked again at send time, on the resolved addresses).

use std::time::Duration;

use chrono::Utc;
use foodseg_engine::error_chain;
use foodseg_engine::netguard::NetPolicy;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use url::Url;

use crate::webhook::retry_after;
use crate::webhook::schedule::Answer;
use crate::webhook::signature::WebhookSecrets;

/// Bytes of a non-2xx answer kept in the attempt's error text.
const EXCERPT_BYTES: usize = 256;

/// One attempt to send.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    pub url: &'a str,
    pub webhook_id: &'a str,
    /// Unix seconds of this attempt (`webhook-timestamp`).
    pub timestamp: i64,
    pub body: &'a str,
    pub traceparent: Option<&'a str>,
}

/// Posts webhooks. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Sender {
    client: reqwest::Client,
    policy: NetPolicy,
    secret: Option<WebhookSecrets>,
    timeout: Duration,
    connect_timeout: Duration,
}

impl Sender {
    /// A sender whose connections only reach addresses `policy` allows. Redirects are not
    /// followed (a POST must not turn into a GET elsewhere): a 3xx is retried like an error.
    pub fn new(
        policy: NetPolicy,
        secret: Option<WebhookSecrets>,
        timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<Self, foodseg_http::Error> {
        let client = policy.http_client(connect_timeout.min(timeout), 0)?;
        Ok(Sender {
            client,
            policy,
            secret,
            timeout,
            connect_timeout,
        })
    }

    /// Sends one attempt and says how the receiver answered.
    pub async fn send(&self, out: &Outgoing<'_>) -> Answer {
        let url = match self.check(out.url).await {
            Ok(url) => url,
            Err(answer) => return answer,
        };
        let mut request = self
            .client
            .post(url)
            .timeout(self.timeout)
            .header(CONTENT_TYPE, "application/json")
            .header("webhook-id", out.webhook_id)
            .header("webhook-timestamp", out.timestamp.to_string());
        if let Some(secret) = &self.secret {
            let signature = secret.sign(out.webhook_id, out.timestamp, out.body);
            request = request.header("webhook-signature", signature);
        }
        if let Some(traceparent) = out.traceparent {
            request = request.header("traceparent", traceparent);
        }
        let response = match request.body(out.body.to_string()).send().await {
            Ok(response) => response,
            Err(e) if e.is_timeout() => {
                return Answer::Transport(format!("no answer within {:?}", self.timeout));
            }
            // Without the URL: it may carry credentials, and the error is stored and shown.
            Err(e) => return Answer::Transport(error_chain(&e.without_url())),
        };
        let code = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry_after::parse(v, Utc::now()));
        let excerpt = if response.status().is_success() {
            String::new()
        } else {
            excerpt(response).await
        };
        Answer::Status {
            code,
            retry_after,
            excerpt,
        }
    }

    /// The URL, when it may be called: http(s), and a host whose addresses the policy
    /// allows (IP literals never pass through the guarded resolver, so they are checked
    /// here; names are resolved to tell "refused" from "cannot resolve right now").
    async fn check(&self, raw: &str) -> Result<Url, Answer> {
        let url = Url::parse(raw).map_err(|e| Answer::Refused(format!("not a valid URL: {e}")))?;
        match self.policy.check_url(&url, self.connect_timeout).await {
            Ok(()) => Ok(url),
            Err(refusal) if refusal.is_permanent() => Err(Answer::Refused(refusal.to_string())),
            Err(refusal) => Err(Answer::Transport(refusal.to_string())),
        }
    }
}

/// The first bytes of a response body as text (lossy), without waiting for the rest.
async fn excerpt(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < EXCERPT_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    bytes.truncate(EXCERPT_BYTES);
    String::from_utf8_lossy(&bytes)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sender(policy: NetPolicy) -> Sender {
        Sender::new(policy, None, Duration::from_secs(1), Duration::from_secs(1)).unwrap()
    }

    fn out(url: &str) -> Outgoing<'_> {
        Outgoing {
            url,
            webhook_id: "msg_1",
            timestamp: 0,
            body: "\"{}\"",
            traceparent: None,
        }
    }

    #[tokio::test]
    async fn private_and_malformed_urls_are_refused_before_connecting() {
        let s = sender(NetPolicy::default());
        for url in [
            "http://127.0.0.1:9/hook",
            "http://[::1]:9/hook",
            "http://169.254.169.254/latest",
            "http://localhost:9/hook",
            "ftp://example.com/hook",
            "not a url",
        ] {
            assert!(
                matches!(s.send(&out(url)).await, Answer::Refused(_)),
                "{url}"
            );
        }
    }

    #[tokio::test]
    async fn allowed_but_closed_port_is_a_transport_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let s = sender(NetPolicy::parse_allow_list("127.0.0.0/8").unwrap());
        let url = format!("http://127.0.0.1:{port}/hook");
        assert!(matches!(s.send(&out(&url)).await, Answer::Transport(_)));
    }
}
