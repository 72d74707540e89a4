//! Uploaded images: the bytes a client posted instead of an image URL, stored beside
//! their job until the worker has read them and the retention period is over.
//!
//! The job's `image_url` is a stable internal reference, `upload://<job_id>/<filename>`,
//! so the job document says where its image came from and a worker knows to read it here.

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::jobs::NewJob;
use super::row::Job;
use super::{Store, StoreError};
use crate::domain::{JobId, JobStatus};

/// Bytes of an upload hex-encoded and sent per COPY message.
const COPY_SLICE: usize = 64 * 1024;

/// A text value in COPY's text format: backslash, tab, newline and carriage return
/// escaped.
fn copy_text(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

/// Scheme of the `image_url` of a job whose image was uploaded.
pub const UPLOAD_SCHEME: &str = "upload";

/// Image bytes to store with a new job.
#[derive(Debug, Clone)]
pub struct NewUpload {
    pub id: Uuid,
    /// Sniffed from the bytes (`image/jpeg`, `image/png`, `image/webp`).
    pub content_type: String,
    /// The client's file name; the job's `image_id`.
    pub filename: String,
    pub bytes: Bytes,
    /// Hard maximum: purged at this time whatever the job's state.
    pub expires_at: DateTime<Utc>,
}

/// A row of `uploads`: a stored image.
#[derive(Debug, Clone, PartialEq)]
pub struct Upload {
    pub id: Uuid,
    pub job_id: JobId,
    pub content_type: String,
    pub filename: String,
    pub bytes: Vec<u8>,
    pub size: i64,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// The `image_url` of the job `job_id` whose image is the upload named `filename`.
pub fn upload_image_url(job_id: JobId, filename: &str) -> String {
    let mut url = format!("{UPLOAD_SCHEME}://{job_id}/");
    // Percent-encodes all but RFC 3986 unreserved characters: one path segment.
    for b in filename.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            url.push(char::from(b));
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
    url
}

/// The job id of an `upload://<job_id>/…` image URL; `None` for any other URL.
pub fn upload_job_id(image_url: &str) -> Option<JobId> {
    let rest = image_url.strip_prefix(UPLOAD_SCHEME)?.strip_prefix("://")?;
    let id = rest.split('/').next()?;
    Uuid::parse_str(id).ok().map(JobId::from)
}

/// Whether the image of a job with this `image_url` was uploaded (as opposed to fetched).
pub fn is_upload_url(image_url: &str) -> bool {
    image_url
        .strip_prefix(UPLOAD_SCHEME)
        .is_some_and(|rest| rest.starts_with("://"))
}

impl Store {
    /// Writes a new job (row, first event, dispatch message) and its uploaded image in one
    /// transaction: either both exist or neither does.
    pub async fn enqueue_upload(
        &self,
        job: &NewJob,
        upload: &NewUpload,
        actor: &str,
    ) -> Result<Job, StoreError> {
        let mut tx = self.pool.begin().await?;
        let stored = self.enqueue_upload_on(&mut tx, job, upload, actor).await?;
        tx.commit().await?;
        Ok(stored)
    }

    /// [`Store::enqueue_upload`] inside a caller's transaction (an idempotent enqueue
    /// records its key in the same transaction).
    pub(crate) async fn enqueue_upload_on(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        job: &NewJob,
        upload: &NewUpload,
        actor: &str,
    ) -> Result<Job, StoreError> {
        let stored = self.enqueue_on(&mut **tx, job, actor).await?;
        // The bytes are streamed with COPY, a slice at a time, so storing an upload never
        // holds a second copy of it in memory (a bound parameter would be copied whole
        // into the statement's buffer). COPY has no checked form; the statement is fixed.
        let mut copy = tx
            .copy_in_raw(
                r#"COPY uploads (id, job_id, content_type, filename, bytes, size, expires_at)
                 FROM STDIN"#,
            )
            .await?;
        let head = format!(
            "{}\t{}\t{}\t{}\t\\\\x",
            upload.id,
            job.id,
            copy_text(&upload.content_type),
            copy_text(&upload.filename)
        );
        copy.send(head.as_bytes()).await?;
        for slice in upload.bytes.chunks(COPY_SLICE) {
            copy.send(hex::encode(slice).into_bytes()).await?;
        }
        let tail = format!(
            "\t{}\t{}\n",
            upload.bytes.len(),
            upload.expires_at.to_rfc3339()
        );
        copy.send(tail.as_bytes()).await?;
        copy.finish().await?;
        Ok(stored)
    }

    /// The uploaded image of job `job_id`, unless it was never stored or already purged.
    pub async fn load_upload(&self, job_id: JobId) -> Result<Option<Upload>, StoreError> {
        let upload = sqlx::query_as!(
            Upload,
            r#"SELECT id, job_id AS "job_id: JobId", content_type, filename, bytes, size,
                      created_at, expires_at
               FROM uploads WHERE job_id = $1"#,
            job_id as JobId
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(upload)
    }

    /// Deletes up to `limit` uploads that are no longer needed at `now`: those whose job
    /// finished more than `retention` ago, and those past their hard maximum
    /// (`expires_at`) whatever their job's state. Returns how many were deleted.
    ///
    /// Rows another scheduler is deleting are skipped, so concurrent purges never wait
    /// on each other; a full batch means more may be left.
    pub async fn purge_expired_uploads(
        &self,
        now: DateTime<Utc>,
        retention: Duration,
        limit: i64,
    ) -> Result<u64, StoreError> {
        // Two index range scans: uploads past their maximum age (`uploads_expires`), and
        // uploads created before the cutoff — the only ones whose job can have finished
        // before it — joined to their job (`uploads_created`, then the primary key). The ids
        // go through arrays so every step probes a key whatever the plan's estimate of the
        // batch.
        let deleted = sqlx::query!(
            r#"-- periodic: uploads purge
               WITH c AS (
               (SELECT id FROM uploads WHERE expires_at <= $1 ORDER BY expires_at LIMIT $3)
               UNION
               (SELECT u.id FROM uploads u JOIN jobs j ON j.id = u.job_id
                WHERE u.created_at <= $1 - make_interval(secs => $2)
                  AND j.status = ANY($4) AND j.finished_at <= $1 - make_interval(secs => $2)
                ORDER BY u.created_at LIMIT $3)),
             x AS (
               SELECT id FROM uploads WHERE id = ANY(ARRAY(SELECT id FROM c))
               LIMIT $3 FOR UPDATE SKIP LOCKED)
             DELETE FROM uploads WHERE id = ANY(ARRAY(SELECT id FROM x))"#,
            now,
            retention.as_secs_f64(),
            limit,
            &[JobStatus::Succeeded, JobStatus::Failed] as &[JobStatus],
        )
        .execute(&self.pool)
        .await?;
        Ok(deleted.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_urls_round_trip_the_job_id() {
        let id = JobId::new();
        let url = upload_image_url(id, "dish photo #1.jpg");
        assert_eq!(url, format!("upload://{id}/dish%20photo%20%231.jpg"));
        assert!(is_upload_url(&url));
        assert_eq!(upload_job_id(&url), Some(id));
        assert_eq!(upload_job_id(&format!("upload://{id}")), Some(id));
    }

    #[test]
    fn copy_text_escapes_what_copy_would_read_as_structure() {
        assert_eq!(copy_text("dish.jpg"), "dish.jpg");
        assert_eq!(copy_text("a\\b\tc\nd\re café"), "a\\\\b\\tc\\nd\\re café");
    }

    #[test]
    fn other_urls_are_not_uploads() {
        for url in [
            "https://x.org/upload://a.jpg",
            "uploads://0193f6c2-0000-7000-8000-000000000000/a.jpg",
            "upload:/x",
            "",
        ] {
            assert!(!is_upload_url(url), "{url}");
            assert_eq!(upload_job_id(url), None, "{url}");
        }
        assert_eq!(upload_job_id("upload://not-a-uuid/a.jpg"), None);
    }
}
