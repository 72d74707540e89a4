//! Submitting images (URL, upload, or local file server fallback) and waiting for results.

use std::path::Path;
use std::time::Duration;

use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::cli::JobOptions;
use crate::client::ApiClient;
use crate::document::JobDocument;
use crate::error::CliError;
use crate::local_server::LocalServer;
use crate::picture::LocalImage;

/// What the user asked to segment.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Url(String),
    File(std::path::PathBuf),
}

impl Target {
    /// Anything with a scheme is a URL (the API judges which schemes it takes); the rest
    /// is a path.
    pub fn parse(s: &str) -> Self {
        if s.contains("://") && !Path::new(s).exists() {
            Target::Url(s.to_string())
        } else {
            Target::File(s.into())
        }
    }
}

/// Submits jobs; keeps the local file server (if one was needed) alive until dropped.
pub struct Submitter {
    client: ApiClient,
    options: JobOptions,
    uploads: OnceCell<bool>,
    server: OnceCell<LocalServer>,
}

impl Submitter {
    pub fn new(client: ApiClient, options: JobOptions) -> Self {
        Self {
            client,
            options,
            uploads: OnceCell::new(),
            server: OnceCell::new(),
        }
    }

    pub fn client(&self) -> &ApiClient {
        &self.client
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.options.timeout)
    }

    pub async fn submit(&self, target: &Target) -> Result<JobDocument, CliError> {
        match target {
            Target::Url(url) => {
                self.client
                    .enqueue(url, self.model(), self.options.webhook.as_deref())
                    .await
            }
            Target::File(path) => self.submit_file(LocalImage::read(path)?).await,
        }
    }

    fn model(&self) -> Option<&str> {
        self.options.model.as_deref()
    }

    /// Uploads the bytes when the API can take them, else serves the file locally.
    pub async fn submit_file(&self, image: LocalImage) -> Result<JobDocument, CliError> {
        let uploads = *self
            .uploads
            .get_or_try_init(|| self.client.supports_uploads())
            .await?;
        if uploads {
            let uploaded = self
                .client
                .upload(
                    image.bytes.clone(),
                    image.content_type,
                    &image.file_name(),
                    self.model(),
                    self.options.webhook.as_deref(),
                )
                .await?;
            if let Some(doc) = uploaded {
                return Ok(doc);
            }
        }
        let server = self.server.get_or_try_init(LocalServer::start).await?;
        let url = server.host(image.path.clone(), image.content_type);
        self.client
            .enqueue(url.as_str(), self.model(), self.options.webhook.as_deref())
            .await
            .map_err(|e| refine_local_refusal(e, url.as_str()))
    }

    /// Polls `/status` with backoff until the job finishes or the timeout passes.
    /// `on_update` sees every document; passing API outages are waited out.
    pub async fn wait(
        &self,
        mut doc: JobDocument,
        mut on_update: impl FnMut(&JobDocument),
    ) -> Result<JobDocument, CliError> {
        let deadline = Instant::now() + self.timeout();
        let mut backoff = Backoff::polling();
        on_update(&doc);
        while !doc.status().is_terminal() {
            let now = Instant::now();
            if now >= deadline {
                return Err(CliError::Timeout {
                    job_id: doc.job_id,
                    seconds: self.options.timeout,
                    status: doc.status,
                });
            }
            let pause = backoff.next().unwrap_or(Duration::from_secs(1));
            tokio::time::sleep(pause.min(deadline - now)).await;
            match self.client.status(&doc.job_id).await {
                Ok(next) => doc = next,
                Err(CliError::Unreachable { .. }) => continue,
                Err(CliError::Api { status, .. }) if status >= 500 => continue,
                Err(e) => return Err(e),
            }
            on_update(&doc);
        }
        Ok(doc)
    }
}

/// A 4xx about the URL itself, for a URL we serve on loopback, is almost always the
/// API's private-address block: say how to fix it.
fn refine_local_refusal(e: CliError, url: &str) -> CliError {
    match e {
        CliError::Api {
            status,
            code,
            message,
        } if (400..500).contains(&status) && mentions_url(&code, &message) => {
            CliError::LocalUrlRefused {
                url: url.to_string(),
                message: format!("{message} ({code})"),
            }
        }
        other => other,
    }
}

fn mentions_url(code: &str, message: &str) -> bool {
    let text = format!("{code} {message}").to_ascii_lowercase();
    !text.contains("model")
        && [
            "url",
            "address",
            "private",
            "loopback",
            "not allowed",
            "refused",
        ]
        .iter()
        .any(|w| text.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            Target::parse("https://x/a.jpg"),
            Target::Url("https://x/a.jpg".into())
        );
        assert_eq!(
            Target::parse("ftp://x/a.jpg"),
            Target::Url("ftp://x/a.jpg".into())
        );
        assert_eq!(
            Target::parse("photos/a.jpg"),
            Target::File("photos/a.jpg".into())
        );
    }

    #[test]
    fn loopback_refusals_get_a_hint() {
        let e = refine_local_refusal(
            CliError::Api {
                status: 422,
                code: "invalid_image_url".into(),
                message: "image_url resolves to a private address".into(),
            },
            "http://127.0.0.1:5/files/t/a.jpg",
        );
        assert!(matches!(e, CliError::LocalUrlRefused { .. }));
        assert!(e.to_string().contains("FOODSEG_URL_ALLOW_CIDRS"), "{e}");

        let e = refine_local_refusal(
            CliError::Api {
                status: 422,
                code: "unknown_model".into(),
                message: "unknown model_id 'x'".into(),
            },
            "http://127.0.0.1:5/files/t/a.jpg",
        );
        assert!(matches!(e, CliError::Api { .. }));
    }
}
