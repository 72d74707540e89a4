//! `GET /shadow`: a model compared with a candidate over the shadow runs since a time
//! (workers with `FOODSEG_SHADOW=CANDIDATE:SHARE` run a share of their jobs on the
//! candidate too, after the real result is written, and keep its answer beside the job).

use chrono::{DateTime, Utc};
use foodseg_engine::document::format_time;
use foodseg_engine::store::{Agreement, ShadowComparison};
use foodseg_models::Registry;
use salvo::http::StatusCode;
use salvo::oapi::extract::QueryParam;
use salvo::oapi::{self, Components, EndpointOutRegister, Operation, ToSchema};
use salvo::prelude::*;
use serde::Serialize;

use crate::error::{ApiError, ErrorBody, ErrorDetail};
use crate::paging::parse_time;
use crate::request::{ready_state, with_deadline};

/// The window `GET /shadow` looks back over unless `since` says otherwise.
pub const DEFAULT_WINDOW: chrono::Duration = chrono::Duration::hours(24);

/// How `agreement` is measured, as answers name it.
pub const AGREEMENT_MEASURE: &str = "f1: 2 * matched / (model_items + candidate_items)";

pub fn router() -> Router {
    Router::with_path("shadow").get(comparison)
}

/// A model and a candidate compared over their shadow runs.
#[derive(Debug, Serialize, ToSchema)]
pub struct ShadowReport {
    /// The registry name of the model that served the jobs.
    pub model: String,
    /// The registry name of the candidate run beside it.
    pub candidate: String,
    /// The window's start (RFC 3339): shadow runs at or after it are counted.
    pub since: String,
    /// Jobs run on both.
    pub jobs: i64,
    /// How `agreement` is measured: `f1`, 2 · matched / (model items + candidate items),
    /// the F1 score of the candidate's items against the model's. Two items match when
    /// they have the same category and their masks overlap with an IoU of at least 0.5
    /// (greedy by score, one-to-one).
    pub agreement_measure: &'static str,
    /// Every category either model found, most items first.
    pub classes: Vec<ShadowClass>,
    /// All categories together.
    pub overall: ShadowCounts,
    /// Seconds the model took per image (decode to items).
    pub model_seconds: ShadowTimes,
    /// Seconds the candidate took per image (decode to items).
    pub candidate_seconds: ShadowTimes,
    /// The versions (SHA-256 of the ONNX files) seen in the window, most recent first.
    pub versions: Vec<ShadowVersions>,
}

/// One category of a comparison.
#[derive(Debug, Serialize, ToSchema)]
pub struct ShadowClass {
    /// The category name, e.g. `orange`.
    pub class: String,
    pub model_items: i64,
    pub candidate_items: i64,
    /// Items both found (one model item and one candidate item each).
    pub matched: i64,
    /// `agreement_measure` of this category, from 0 to 1.
    pub agreement: Option<f64>,
}

/// Item counts of all categories together.
#[derive(Debug, Serialize, ToSchema)]
pub struct ShadowCounts {
    pub model_items: i64,
    pub candidate_items: i64,
    pub matched: i64,
    /// `agreement_measure` over every item; null without items.
    pub agreement: Option<f64>,
}

/// Percentiles of seconds per image; null without jobs.
#[derive(Debug, Serialize, ToSchema)]
pub struct ShadowTimes {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
}

/// A pair of versions seen, with its jobs.
#[derive(Debug, Serialize, ToSchema)]
pub struct ShadowVersions {
    pub model_version: String,
    pub candidate_version: String,
    pub jobs: i64,
    /// The first and the latest of its shadow runs in the window (RFC 3339).
    pub first_at: String,
    pub last_at: String,
}

fn counts(a: Agreement) -> ShadowCounts {
    ShadowCounts {
        model_items: a.model_items,
        candidate_items: a.candidate_items,
        matched: a.matched,
        agreement: a.agreement,
    }
}

impl From<ShadowComparison> for ShadowReport {
    fn from(c: ShadowComparison) -> Self {
        ShadowReport {
            model: c.model,
            candidate: c.candidate,
            since: format_time(c.since),
            jobs: c.jobs,
            agreement_measure: AGREEMENT_MEASURE,
            classes: c
                .classes
                .into_iter()
                .map(|row| {
                    let n = counts(row.counts);
                    ShadowClass {
                        class: row.class,
                        model_items: n.model_items,
                        candidate_items: n.candidate_items,
                        matched: n.matched,
                        agreement: n.agreement,
                    }
                })
                .collect(),
            overall: counts(c.overall),
            model_seconds: ShadowTimes {
                p50: c.model_seconds.p50,
                p95: c.model_seconds.p95,
            },
            candidate_seconds: ShadowTimes {
                p50: c.candidate_seconds.p50,
                p95: c.candidate_seconds.p95,
            },
            versions: c
                .versions
                .into_iter()
                .map(|v| ShadowVersions {
                    model_version: v.model_version,
                    candidate_version: v.candidate_version,
                    jobs: v.jobs,
                    first_at: format_time(v.first_at),
                    last_at: format_time(v.last_at),
                })
                .collect(),
        }
    }
}

/// A model compared with a candidate over their shadow runs.
///
/// `model`: the model that served the jobs, `candidate`: the model run beside it
/// (`FOODSEG_SHADOW` of the workers); each a registry name or alias. `since`: RFC 3339,
/// default 24 hours ago. Answers the jobs run on both; per category, the items each found,
/// the items both found (same category, mask IoU ≥ 0.5) and their agreement (F1:
/// 2 · matched / (model items + candidate items)); the 50th and 95th percentiles of
/// seconds per image of each; and the versions seen. Needs an API key with scope
/// `operator`.
#[endpoint(tags("operator"), security(("bearer" = [])))]
async fn comparison(
    model: QueryParam<String, true>,
    candidate: QueryParam<String, true>,
    since: QueryParam<String, false>,
    depot: &mut Depot,
) -> Result<Json<ShadowReport>, ShadowError> {
    let since = parse_since(since.into_inner().as_deref())?;
    let state = ready_state(depot)?;
    let registry = state.registry.current();
    let model = resolve(&registry, "model", &model.into_inner())?;
    let candidate = resolve(&registry, "candidate", &candidate.into_inner())?;
    let compared = with_deadline(state.store.shadow_comparison(&model, &candidate, since)).await?;
    Ok(Json(ShadowReport::from(compared)))
}

/// `since`, or [`DEFAULT_WINDOW`] ago.
pub fn parse_since(raw: Option<&str>) -> Result<DateTime<Utc>, ApiError> {
    match raw.map(str::trim).filter(|s| !s.is_empty()) {
        Some(raw) => parse_time("since", raw),
        None => Ok(Utc::now() - DEFAULT_WINDOW),
    }
}

/// The registry name of the model `raw` names (a name or an alias).
pub fn resolve(registry: &Registry, param: &'static str, raw: &str) -> Result<String, ShadowError> {
    registry
        .get(raw)
        .map(|m| m.name().to_string())
        .ok_or_else(|| ShadowError::UnknownModel {
            param,
            requested: raw.to_string(),
            known: registry.known_ids(),
        })
}

/// Why `GET /shadow` failed: an [`ApiError`], or a model parameter the registry does not
/// know (422 `unknown_model`, naming the parameter, with every known id).
#[derive(Debug)]
pub enum ShadowError {
    Api(ApiError),
    UnknownModel {
        param: &'static str,
        requested: String,
        known: Vec<String>,
    },
}

impl From<ApiError> for ShadowError {
    fn from(e: ApiError) -> Self {
        ShadowError::Api(e)
    }
}

impl ShadowError {
    /// The status and JSON body of an unknown model.
    pub fn unknown_body(
        param: &'static str,
        requested: &str,
        known: Vec<String>,
    ) -> (StatusCode, ErrorBody) {
        let message = format!(
            "query parameter {param}: unknown model {requested:?}; known ids: {}",
            known.join(", ")
        );
        let body = ErrorBody {
            error: ErrorDetail {
                code: "unknown_model".into(),
                message,
                field: Some(param.into()),
                known_ids: Some(known),
                items: None,
            },
        };
        (StatusCode::UNPROCESSABLE_ENTITY, body)
    }
}

#[async_trait]
impl Writer for ShadowError {
    async fn write(self, req: &mut Request, depot: &mut Depot, res: &mut Response) {
        match self {
            ShadowError::Api(e) => e.write(req, depot, res).await,
            ShadowError::UnknownModel {
                param,
                requested,
                known,
            } => {
                let (status, body) = ShadowError::unknown_body(param, &requested, known);
                tracing::debug!(code = "unknown_model", param, "request rejected");
                res.status_code(status);
                res.render(Json(body));
            }
        }
    }
}

impl EndpointOutRegister for ShadowError {
    fn register(components: &mut Components, operation: &mut Operation) {
        crate::error::register_key_answers(components, operation);
        let schema = ErrorBody::to_schema(components);
        for (status, brief) in [
            (
                "400",
                "A query parameter is missing, or since is not an RFC 3339 time",
            ),
            (
                "422",
                "model or candidate is not a model name or alias of the registry (known_ids lists them)",
            ),
            (
                "429",
                "Too many refused API keys from this client address; retry after Retry-After seconds",
            ),
            ("503", "Database unavailable"),
        ] {
            operation.responses.insert(
                status,
                oapi::Response::new(brief)
                    .add_content("application/json", oapi::Content::new(schema.clone())),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_defaults_to_a_day_back() {
        let before = Utc::now() - DEFAULT_WINDOW;
        let since = parse_since(None).unwrap();
        assert!(since >= before && since <= Utc::now() - DEFAULT_WINDOW);
        assert_eq!(
            parse_since(Some(" ")).unwrap().date_naive(),
            since.date_naive()
        );
        assert_eq!(
            parse_since(Some("2026-01-31T00:00:00Z")).unwrap(),
            "2026-01-31T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        let e = parse_since(Some("yesterday")).unwrap_err();
        assert_eq!(e.code(), "invalid_parameter");
    }

    #[test]
    fn an_unknown_model_names_its_parameter_and_the_known_ids() {
        let (status, body) =
            ShadowError::unknown_body("candidate", "nope", vec!["a".into(), "b".into()]);
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body.error.code, "unknown_model");
        assert_eq!(body.error.field.as_deref(), Some("candidate"));
        assert!(
            body.error.message.contains("\"nope\""),
            "{}",
            body.error.message
        );
        assert_eq!(body.error.known_ids, Some(vec!["a".into(), "b".into()]));
    }
}
