//! Per-test JetStream streams, deleted when the test is done with them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use foodseg_engine::{Bus, Subjects};

/// `NATS_URL`, or the local default.
pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| foodseg_engine::bus::DEFAULT_NATS_URL.into())
}

/// Subjects and stream names no other test uses.
pub fn unique_subjects() -> Subjects {
    Subjects::with_prefix(&format!("t{}", uuid::Uuid::new_v4().simple()))
}

/// A bus on unique subjects with its streams created. The streams are deleted when the
/// last clone is dropped (a test that fails on the way leaves none behind), or at once by
/// [`TestBus::cleanup`].
#[derive(Debug, Clone)]
pub struct TestBus {
    pub bus: Bus,
    pub subjects: Subjects,
    pub url: String,
    streams: Arc<Streams>,
}

/// The test's streams: deleted on drop unless already deleted.
#[derive(Debug)]
struct Streams {
    url: String,
    names: [String; 2],
    deleted: AtomicBool,
}

impl Drop for Streams {
    fn drop(&mut self) {
        if self.deleted.load(Ordering::Acquire) {
            return;
        }
        // The test's runtime may be shutting down: delete from a runtime of our own, on a
        // thread of its own, with a bounded wait.
        let (url, names) = (self.url.clone(), self.names.clone());
        let deleting = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                let connected =
                    tokio::time::timeout(Duration::from_secs(5), async_nats::connect(url)).await;
                let Ok(Ok(client)) = connected else {
                    return;
                };
                let jetstream = async_nats::jetstream::new(client);
                for name in names {
                    let _ =
                        tokio::time::timeout(Duration::from_secs(5), jetstream.delete_stream(name))
                            .await;
                }
            });
        });
        let _ = deleting.join();
    }
}

impl TestBus {
    /// Connects to `NATS_URL` and creates this test's streams.
    pub async fn new() -> anyhow::Result<Self> {
        let url = nats_url();
        let subjects = unique_subjects();
        let bus = Bus::connect(&url, subjects.clone()).await?;
        crate::wait_until(std::time::Duration::from_secs(10), || async {
            bus.is_connected()
        })
        .await
        .map_err(|e| anyhow::anyhow!("NATS at {url} is not reachable: {e}"))?;
        bus.ensure_streams().await?;
        let streams = Arc::new(Streams {
            url: url.clone(),
            names: [subjects.jobs_stream.clone(), subjects.events_stream.clone()],
            deleted: AtomicBool::new(false),
        });
        Ok(TestBus {
            bus,
            subjects,
            url,
            streams,
        })
    }

    /// The last message stored on `subject`, if any (direct get by subject).
    pub async fn last_message(
        &self,
        subject: &str,
    ) -> anyhow::Result<Option<async_nats::jetstream::message::StreamMessage>> {
        let stream_name = if subject.starts_with(&format!("{}.events.", self.subjects.prefix)) {
            &self.subjects.events_stream
        } else {
            &self.subjects.jobs_stream
        };
        let stream = self.bus.jetstream().get_stream(stream_name).await?;
        match stream.get_last_raw_message_by_subject(subject).await {
            Ok(msg) => Ok(Some(msg)),
            Err(e)
                if matches!(
                    e.kind(),
                    async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// How many messages the jobs stream holds.
    pub async fn jobs_stream_len(&self) -> anyhow::Result<u64> {
        let mut stream = self
            .bus
            .jetstream()
            .get_stream(&self.subjects.jobs_stream)
            .await?;
        Ok(stream.info().await?.state.messages)
    }

    /// Deletes this test's streams now.
    pub async fn cleanup(self) {
        for name in &self.streams.names {
            let _ = self.bus.jetstream().delete_stream(name).await;
        }
        self.streams.deleted.store(true, Ordering::Release);
    }
}
