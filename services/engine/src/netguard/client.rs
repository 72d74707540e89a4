//! The guarded HTTP client: its resolver drops refused addresses, its redirect policy
//! checks every hop, and it never goes through a proxy (which would leave only the
//! proxy's address checked).

use std::sync::Arc;
use std::time::Duration;

use super::NetPolicy;

impl NetPolicy {
    /// An HTTP client that can only reach allowed addresses: DNS answers are filtered,
    /// every redirect hop is checked again, and `HTTP(S)_PROXY` variables are ignored.
    /// IP-literal hosts never pass through DNS: check a first URL with
    /// [`check_url`](Self::check_url) before sending. Its errors carry a
    /// [`Refusal`](super::Refusal) when the guard refused (see
    /// [`Refusal::find`](super::Refusal::find)).
    pub fn http_client(
        &self,
        connect_timeout: Duration,
        max_redirects: usize,
    ) -> Result<reqwest::Client, foodseg_http::Error> {
        let resolver = Arc::new(GuardedResolver {
            policy: self.clone(),
        });
        let policy = self.clone();
        let redirect = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > max_redirects {
                return attempt.error(format!("more than {max_redirects} redirects"));
            }
            if let Err(refusal) = policy.check_url_literal(attempt.url()) {
                return attempt.error(refusal);
            }
            attempt.follow()
        });
        Ok(foodseg_http::client_builder()?
            .dns_resolver(resolver)
            .redirect(redirect)
            .connect_timeout(connect_timeout)
            .no_proxy()
            .build()?)
    }
}

/// DNS resolution that drops refused addresses and fails with a
/// [`Refusal`](super::Refusal) when none is left.
struct GuardedResolver {
    policy: NetPolicy,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let allowed = policy.resolve(name.as_str(), 0).await?;
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netguard::Refusal;

    const CHILD_TEST: &str = "netguard::client::tests::guarded_client_under_proxy_variables";

    /// A name that resolves to loopback only is refused by the resolver, and the refusal
    /// is typed in the request error's causes.
    #[tokio::test]
    async fn resolver_refusals_are_typed() {
        let client = NetPolicy::default()
            .http_client(Duration::from_secs(5), 0)
            .unwrap();
        let error = client
            .get("http://localhost:9/image.jpg")
            .send()
            .await
            .unwrap_err();
        match Refusal::find(&error) {
            Some(Refusal::Resolves { host, blocked }) => {
                assert_eq!(host, "localhost");
                assert!(blocked.0.is_loopback(), "{blocked}");
            }
            other => panic!("expected a refusal, got {other:?} in {error:?}"),
        }
    }

    /// Proxy variables are read when a client is built, from the process environment:
    /// this runs [`guarded_client_under_proxy_variables`] in a child process that has
    /// them set, pointing at a listener here, so no other test sees them.
    #[test]
    fn guarded_clients_ignore_proxy_variables() {
        let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        proxy.set_nonblocking(true).unwrap();
        let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
        let mut child = std::process::Command::new(std::env::current_exe().unwrap());
        child.args([CHILD_TEST, "--exact", "--ignored"]);
        for var in PROXY_VARIABLES {
            child.env(var, &proxy_url);
        }
        let output = child
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("1 passed"),
            "child run failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            proxy.accept().map_err(|e| e.kind()).err(),
            Some(std::io::ErrorKind::WouldBlock),
            "the proxy was contacted"
        );
    }

    const PROXY_VARIABLES: [&str; 5] = [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
    ];

    /// With every proxy variable set, a guarded client still resolves the target itself,
    /// and refuses it.
    #[tokio::test]
    #[ignore = "run by guarded_clients_ignore_proxy_variables, with proxy variables set"]
    async fn guarded_client_under_proxy_variables() {
        for var in PROXY_VARIABLES {
            assert!(std::env::var_os(var).is_some(), "{var} is not set");
        }
        let client = NetPolicy::default()
            .http_client(Duration::from_secs(3), 0)
            .unwrap();
        for url in ["http://localhost:9/a.jpg", "https://localhost:9/a.jpg"] {
            let error = client
                .get(url)
                .timeout(Duration::from_secs(3))
                .send()
                .await
                .unwrap_err();
            assert!(
                matches!(Refusal::find(&error), Some(Refusal::Resolves { .. })),
                "{url}: {error:?}"
            );
        }
    }
}
