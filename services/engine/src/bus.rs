//! NATS JetStream adapter: the doorbell. Messages carry ids and trace context; losing or
//! duplicating one may delay a job but never loses or double-runs it (Postgres decides).

use std::time::Duration;

use async_nats::jetstream::{self, consumer, message::PublishMessage, stream};
use async_nats::{HeaderMap, connection::State};
use bytes::Bytes;

use crate::chain::error_chain;
use crate::domain::Priority;
use crate::subjects::Subjects;

/// Where NATS is unless `NATS_URL` says otherwise: a local server.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// How long JetStream remembers a `Nats-Msg-Id` to drop duplicate publishes.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// How long finished-job events stay in their stream.
pub const EVENTS_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// Most copies of a stream a JetStream cluster keeps.
pub const MAX_REPLICAS: usize = 5;

/// Failures talking to NATS.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("no NATS server address in {url:?}")]
    NoServer { url: String },
    #[error("cannot connect to NATS at {url}")]
    Connect {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error("cannot set up JetStream stream {stream}")]
    Stream {
        stream: String,
        #[source]
        source: async_nats::Error,
    },
    #[error("cannot set up JetStream consumer {consumer}")]
    Consumer {
        consumer: String,
        #[source]
        source: async_nats::Error,
    },
    #[error("JetStream did not answer about stream {stream}")]
    Unanswered {
        stream: String,
        #[source]
        source: async_nats::Error,
    },
    #[error("publish to {subject} failed")]
    Publish {
        subject: String,
        #[source]
        source: async_nats::Error,
    },
}

/// Where JetStream stored a published message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The message's sequence in its stream (the original's, for a duplicate).
    pub sequence: u64,
    /// The stream had already seen the `Nats-Msg-Id` and dropped this copy.
    pub duplicate: bool,
}

/// Handle to NATS and JetStream. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Bus {
    client: async_nats::Client,
    js: jetstream::Context,
    subjects: Subjects,
    replicas: usize,
}

impl Bus {
    /// Connects to NATS. `url` is one server or a comma-separated list of servers of one
    /// cluster (`nats://a:4222,nats://b:4222`); the client picks one and moves to another
    /// when it is lost (the servers also tell the client about the rest of their
    /// cluster). The first connection is retried in the background, so a service can
    /// start while NATS is down; publishes fail (and are retried by the caller) until it
    /// is back. Streams are created with one replica unless [`Bus::with_replicas`] says
    /// otherwise.
    pub async fn connect(url: &str, subjects: Subjects) -> Result<Self, BusError> {
        let servers: Vec<&str> = url
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        let shown = || {
            servers
                .iter()
                .map(|s| foodseg_http::redact::url(s))
                .collect::<Vec<_>>()
                .join(",")
        };
        if servers.is_empty() {
            return Err(BusError::NoServer {
                url: url.to_string(),
            });
        }
        let client = async_nats::ConnectOptions::new()
            .name("foodseg")
            .retry_on_initial_connect()
            .connect(servers.clone())
            .await
            .map_err(|source| BusError::Connect {
                url: shown(),
                source,
            })?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(Duration::from_secs(5));
        Ok(Bus {
            client,
            js,
            subjects,
            replicas: 1,
        })
    }

    /// The number of copies of each stream [`Bus::ensure_streams`] asks JetStream for
    /// (`FOODSEG_NATS_REPLICAS`; 1 to [`MAX_REPLICAS`], more than 1 needs a cluster of at
    /// least that many servers). Values out of range are clamped.
    pub fn with_replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas.clamp(1, MAX_REPLICAS);
        self
    }

    /// The number of copies of each stream.
    pub fn replicas(&self) -> usize {
        self.replicas
    }

    pub fn subjects(&self) -> &Subjects {
        &self.subjects
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// Whether the connection to NATS is up right now.
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == State::Connected
    }

    /// Creates the job and event streams if they do not exist, with
    /// [`Bus::replicas`] copies each. A stream that exists with another number of
    /// replicas is updated to this number (JetStream adds or removes copies in the
    /// background; its durable consumers follow the stream); when the cluster cannot do
    /// it (too few servers), an error is logged and the stream is used as it is. Nothing
    /// else of an existing stream's configuration is changed.
    pub async fn ensure_streams(&self) -> Result<(), BusError> {
        self.ensure_stream(stream::Config {
            name: self.subjects.jobs_stream.clone(),
            subjects: vec![self.subjects.jobs_wildcard()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            duplicate_window: DUPLICATE_WINDOW,
            num_replicas: self.replicas,
            ..Default::default()
        })
        .await?;
        self.ensure_stream(stream::Config {
            name: self.subjects.events_stream.clone(),
            subjects: vec![self.subjects.events_wildcard()],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            duplicate_window: DUPLICATE_WINDOW,
            max_age: EVENTS_MAX_AGE,
            num_replicas: self.replicas,
            ..Default::default()
        })
        .await
    }

    async fn ensure_stream(&self, config: stream::Config) -> Result<(), BusError> {
        let name = config.name.clone();
        let wanted = config.num_replicas;
        let err = |source: async_nats::Error| BusError::Stream {
            stream: name.clone(),
            source,
        };
        let stream = self
            .js
            .get_or_create_stream(config)
            .await
            .map_err(|e| err(e.into()))?;
        let current = stream.cached_info().config.clone();
        if current.num_replicas == wanted {
            return Ok(());
        }
        let from = current.num_replicas;
        let update = stream::Config {
            num_replicas: wanted,
            ..current
        };
        match self.js.update_stream(update).await {
            Ok(_) => {
                tracing::info!(
                    stream = %name, from, to = wanted,
                    "stream replicas changed to FOODSEG_NATS_REPLICAS"
                );
            }
            Err(e) => tracing::error!(
                stream = %name, replicas = from, wanted, error = %error_chain(&e),
                "cannot change the stream's replicas to FOODSEG_NATS_REPLICAS; it keeps its current replicas"
            ),
        }
        Ok(())
    }

    /// Publishes one message with a `Nats-Msg-Id` (deduplicated by the stream) and waits
    /// for JetStream's acknowledgement: where the stream stored it, and whether it was a
    /// duplicate.
    pub async fn publish(
        &self,
        subject: &str,
        msg_id: &str,
        headers: &[(String, String)],
        payload: Bytes,
    ) -> Result<Published, BusError> {
        let err = |source: async_nats::Error| BusError::Publish {
            subject: subject.to_string(),
            source,
        };
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(k.as_str(), v.as_str());
        }
        let msg = PublishMessage::build()
            .payload(payload)
            .headers(map)
            .message_id(msg_id);
        let ack = self
            .js
            .send_publish(subject.to_string(), msg)
            .await
            .map_err(|e| err(e.into()))?
            .await
            .map_err(|e| err(e.into()))?;
        Ok(Published {
            sequence: ack.sequence,
            duplicate: ack.duplicate,
        })
    }

    /// The jobs stream, to ask whether it still holds dispatch messages.
    pub async fn jobs_stream(&self) -> Result<JobsStream, BusError> {
        let name = &self.subjects.jobs_stream;
        let stream = self
            .js
            .get_stream(name)
            .await
            .map_err(|e| BusError::Unanswered {
                stream: name.clone(),
                source: e.into(),
            })?;
        Ok(JobsStream { stream })
    }

    /// The durable pull consumer workers of `model_name` share for one lane
    /// (`worker-<model>` for interactive jobs, `worker-bulk-<model>` for bulk ones).
    /// `max_ack_pending` bounds the messages handed out and not yet answered across all
    /// its workers; an existing consumer with another bound is updated to this one.
    pub async fn job_consumer(
        &self,
        model_name: &str,
        lane: Priority,
        ack_wait: Duration,
        max_ack_pending: i64,
    ) -> Result<consumer::PullConsumer, BusError> {
        let durable = Subjects::consumer(lane, model_name);
        let config = consumer::pull::Config {
            durable_name: Some(durable.clone()),
            filter_subject: self.subjects.dispatch(lane, model_name),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait,
            max_deliver: -1,
            max_ack_pending,
            ..Default::default()
        };
        let mut consumer = self
            .consumer(&self.subjects.jobs_stream, durable.clone(), config.clone())
            .await?;
        let current = consumer
            .info()
            .await
            .map(|i| i.config.max_ack_pending)
            .unwrap_or(max_ack_pending);
        if current == max_ack_pending {
            return Ok(consumer);
        }
        tracing::info!(consumer = %durable, from = current, to = max_ack_pending,
            "updating the consumer's max_ack_pending");
        let stream = self
            .js
            .get_stream(&self.subjects.jobs_stream)
            .await
            .map_err(|e| BusError::Consumer {
                consumer: durable.clone(),
                source: e.into(),
            })?;
        match stream.create_consumer(config).await {
            Ok(updated) => Ok(updated),
            Err(e) => {
                tracing::warn!(consumer = %durable, error = %e,
                    "cannot update the consumer's max_ack_pending; keeping its current one");
                Ok(consumer)
            }
        }
    }

    /// The durable pull consumer schedulers share for finished-job events.
    pub async fn event_consumer(
        &self,
        ack_wait: Duration,
    ) -> Result<consumer::PullConsumer, BusError> {
        let durable = "scheduler".to_string();
        let config = consumer::pull::Config {
            durable_name: Some(durable.clone()),
            filter_subject: self.subjects.job_event("*"),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait,
            max_deliver: -1,
            ..Default::default()
        };
        self.consumer(&self.subjects.events_stream, durable, config)
            .await
    }

    async fn consumer(
        &self,
        stream_name: &str,
        durable: String,
        config: consumer::pull::Config,
    ) -> Result<consumer::PullConsumer, BusError> {
        let err = |source: async_nats::Error| BusError::Consumer {
            consumer: durable.clone(),
            source,
        };
        let stream = self
            .js
            .get_stream(stream_name)
            .await
            .map_err(|e| err(e.into()))?;
        stream
            .get_or_create_consumer(&durable, config)
            .await
            .map_err(|e| err(e.into()))
    }
}

/// The jobs stream, as the sweeper sees it.
#[derive(Debug)]
pub struct JobsStream {
    stream: stream::Stream,
}

impl JobsStream {
    /// How many bulk dispatch messages of each bulk-lane subject wait for a worker: those
    /// on the stream, less those the lane's consumer (`worker-bulk-<model>`) has handed to
    /// workers and not yet had answered. Without the consumer's answer, all of those on
    /// the stream count.
    pub async fn bulk_undelivered(
        &self,
        subjects: &Subjects,
    ) -> Result<std::collections::HashMap<String, u64>, BusError> {
        let mut waiting = self.bulk_waiting(subjects).await?;
        for (subject, n) in waiting.iter_mut() {
            let Some(model) = subjects.bulk_model(subject) else {
                continue;
            };
            let consumer = Subjects::consumer(Priority::Bulk, model);
            if let Ok(info) = self.stream.consumer_info(consumer).await {
                *n = n.saturating_sub(info.num_ack_pending as u64);
            }
        }
        Ok(waiting)
    }

    /// How many messages wait (not yet acknowledged) on each bulk-lane subject that has
    /// any: a work-queue stream keeps a message until a worker acknowledges it.
    pub async fn bulk_waiting(
        &self,
        subjects: &Subjects,
    ) -> Result<std::collections::HashMap<String, u64>, BusError> {
        use futures::TryStreamExt;
        let err = |source: async_nats::Error| BusError::Unanswered {
            stream: self.stream.cached_info().config.name.clone(),
            source,
        };
        let counts = self
            .stream
            .info_with_subjects(subjects.bulk_wildcard())
            .await
            .map_err(|e| err(e.into()))?;
        counts
            .map_ok(|(subject, n)| (subject, n as u64))
            .try_collect()
            .await
            .map_err(|e| err(e.into()))
    }

    /// Whether the stream still holds the message stored at `sequence`. A work-queue
    /// stream drops a message once a worker acknowledges it, so a dispatch message that is
    /// gone while its job is still queued was lost. An error means JetStream did not
    /// answer, which says nothing either way.
    pub async fn holds(&self, sequence: u64) -> Result<bool, BusError> {
        match self.stream.get_raw_message(sequence).await {
            Ok(_) => Ok(true),
            Err(e) if matches!(e.kind(), stream::RawMessageErrorKind::NoMessageFound) => Ok(false),
            Err(e) => Err(BusError::Unanswered {
                stream: self.stream.cached_info().config.name.clone(),
                source: e.into(),
            }),
        }
    }
}
