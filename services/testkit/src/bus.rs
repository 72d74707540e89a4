//! Per-test JetStream streams.

use foodseg_engine::{Bus, Subjects};

/// `NATS_URL`, or the local default.
pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// Subjects and stream names no other test uses.
pub fn unique_subjects() -> Subjects {
    Subjects::with_prefix(&format!("t{}", uuid::Uuid::new_v4().simple()))
}

/// A bus on unique subjects with its streams created. Call [`TestBus::cleanup`] at the
/// end of the test to delete the streams.
#[derive(Debug, Clone)]
pub struct TestBus {
    pub bus: Bus,
    pub subjects: Subjects,
    pub url: String,
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
        Ok(TestBus { bus, subjects, url })
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

    /// Deletes this test's streams.
    pub async fn cleanup(self) {
        for name in [&self.subjects.jobs_stream, &self.subjects.events_stream] {
            let _ = self.bus.jetstream().delete_stream(name).await;
        }
    }
}
