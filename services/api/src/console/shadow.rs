//! The console's Shadow page (`/console/shadow`): the (model, candidate) pairs with shadow
//! runs (workers with `FOODSEG_SHADOW`), and one pair compared — by default the pair that
//! ran last — per class (items of each, matched items, agreement), with the time
//! percentiles of each model and the versions seen, over a window (`since`, default 24
//! hours back). The same numbers as `GET /shadow`.

use askama::Template;
use chrono::{DateTime, SecondsFormat, Utc};
use foodseg_engine::store::{ShadowComparison, ShadowPair};
use foodseg_models::short_version;
use salvo::prelude::*;

use super::page::{ConsoleError, render};
use super::pages::chrome;
use super::views::{Chrome, seconds, when};
use crate::request::{ready_state, with_deadline};
use crate::routes::shadow::{AGREEMENT_MEASURE, parse_since};

/// A pair with shadow runs, formatted, with the link that compares it.
pub struct PairLine {
    pub model: String,
    pub candidate: String,
    pub jobs: i64,
    pub last: String,
    pub href: String,
    /// The pair the page compares.
    pub current: bool,
}

/// One class of the comparison, formatted.
pub struct ClassLine {
    pub class: String,
    pub model_items: i64,
    pub candidate_items: i64,
    pub matched: i64,
    /// `0.93`, or `–` without items.
    pub agreement: String,
    /// Below 0.9: shown as a warning.
    pub low: bool,
}

/// A pair of versions seen, formatted.
pub struct VersionLine {
    pub model_version: String,
    pub candidate_version: String,
    pub jobs: i64,
    pub first: String,
    pub last: String,
}

/// The compared pair, formatted.
pub struct ComparisonView {
    pub model: String,
    pub candidate: String,
    pub jobs: i64,
    pub classes: Vec<ClassLine>,
    pub overall: ClassLine,
    pub model_p50: String,
    pub model_p95: String,
    pub candidate_p50: String,
    pub candidate_p95: String,
    pub versions: Vec<VersionLine>,
}

#[derive(Template)]
#[template(path = "console/shadow.html")]
pub struct ShadowPage {
    pub chrome: Chrome,
    pub generated: String,
    /// The window's start, as the form shows it (RFC 3339) and as people read it.
    pub since: String,
    pub since_shown: String,
    pub measure: &'static str,
    pub pairs: Vec<PairLine>,
    pub comparison: Option<ComparisonView>,
}

/// Agreement below this is flagged on the page.
const LOW_AGREEMENT: f64 = 0.9;

fn agreement(a: Option<f64>) -> (String, bool) {
    match a {
        Some(a) => (format!("{a:.2}"), a < LOW_AGREEMENT),
        None => ("–".into(), false),
    }
}

fn maybe_seconds(s: Option<f64>) -> String {
    s.map_or_else(|| "–".into(), seconds)
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `/console/shadow?model=…&candidate=…&since=…`
fn href(model: &str, candidate: &str, since: Option<&str>) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query.append_pair("model", model);
    query.append_pair("candidate", candidate);
    if let Some(since) = since {
        query.append_pair("since", since);
    }
    format!("/console/shadow?{}", query.finish())
}

impl From<ShadowComparison> for ComparisonView {
    fn from(c: ShadowComparison) -> Self {
        let line = |class: String, counts: &foodseg_engine::store::Agreement| {
            let (agreement, low) = agreement(counts.agreement);
            ClassLine {
                class,
                model_items: counts.model_items,
                candidate_items: counts.candidate_items,
                matched: counts.matched,
                agreement,
                low,
            }
        };
        ComparisonView {
            classes: c
                .classes
                .iter()
                .map(|row| line(row.class.clone(), &row.counts))
                .collect(),
            overall: line("all classes".into(), &c.overall),
            model_p50: maybe_seconds(c.model_seconds.p50),
            model_p95: maybe_seconds(c.model_seconds.p95),
            candidate_p50: maybe_seconds(c.candidate_seconds.p50),
            candidate_p95: maybe_seconds(c.candidate_seconds.p95),
            versions: c
                .versions
                .iter()
                .map(|v| VersionLine {
                    model_version: short_version(&v.model_version).to_string(),
                    candidate_version: short_version(&v.candidate_version).to_string(),
                    jobs: v.jobs,
                    first: when(v.first_at),
                    last: when(v.last_at),
                })
                .collect(),
            model: c.model,
            candidate: c.candidate,
            jobs: c.jobs,
        }
    }
}

/// `GET /console/shadow`
#[handler]
pub async fn show(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    match shadow_page(req, depot).await {
        Ok(page) => render(res, StatusCode::OK, &page),
        Err(e) => e.write_to(res),
    }
}

/// A query parameter, trimmed, when given and not empty.
fn param(req: &Request, name: &str) -> Option<String> {
    req.query::<String>(name)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

async fn shadow_page(req: &Request, depot: &Depot) -> Result<ShadowPage, ConsoleError> {
    let chrome = chrome(depot)?;
    let given_since = param(req, "since");
    let since = parse_since(given_since.as_deref())?;
    let state = ready_state(depot)?;
    let pairs = with_deadline(state.store.shadow_pairs(since)).await?;
    let chosen = match (param(req, "model"), param(req, "candidate")) {
        (Some(model), Some(candidate)) => {
            let registry = state.registry.current();
            Some((
                pick(&registry, &pairs, "model", &model)?,
                pick(&registry, &pairs, "candidate", &candidate)?,
            ))
        }
        (None, None) => pairs
            .first()
            .map(|p| (p.model.clone(), p.candidate.clone())),
        _ => {
            return Err(ConsoleError::BadInput(
                "name both a model and a candidate to compare, or neither".into(),
            ));
        }
    };
    let comparison = match &chosen {
        Some((model, candidate)) => Some(ComparisonView::from(
            with_deadline(state.store.shadow_comparison(model, candidate, since)).await?,
        )),
        None => None,
    };
    let pairs = pairs
        .into_iter()
        .map(|p| PairLine {
            href: href(&p.model, &p.candidate, given_since.as_deref()),
            current: chosen
                .as_ref()
                .is_some_and(|(m, c)| *m == p.model && *c == p.candidate),
            jobs: p.jobs,
            last: when(p.last_at),
            model: p.model,
            candidate: p.candidate,
        })
        .collect();
    Ok(ShadowPage {
        chrome,
        generated: when(Utc::now()),
        since: rfc3339(since),
        since_shown: when(since),
        measure: AGREEMENT_MEASURE,
        pairs,
        comparison,
    })
}

/// The registry name of the model `raw` names, or `raw` itself when a listed pair has it
/// (a model since removed from the registry); else a 400 with the known ids.
fn pick(
    registry: &foodseg_models::Registry,
    pairs: &[ShadowPair],
    param: &str,
    raw: &str,
) -> Result<String, ConsoleError> {
    if let Some(model) = registry.get(raw) {
        return Ok(model.name().to_string());
    }
    if pairs.iter().any(|p| p.model == raw || p.candidate == raw) {
        return Ok(raw.to_string());
    }
    Err(ConsoleError::BadInput(format!(
        "{param}: unknown model {raw:?}; known ids: {}",
        registry.known_ids().join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_carry_the_pair_and_the_window() {
        assert_eq!(
            href("a b", "c&d", Some("2026-01-01T00:00:00+01:00")),
            "/console/shadow?model=a+b&candidate=c%26d&since=2026-01-01T00%3A00%3A00%2B01%3A00"
        );
        assert_eq!(href("a", "b", None), "/console/shadow?model=a&candidate=b");
    }

    #[test]
    fn agreement_is_shown_with_two_decimals_and_flagged_when_low() {
        assert_eq!(agreement(Some(1.0)), ("1.00".into(), false));
        assert_eq!(agreement(Some(0.5)), ("0.50".into(), true));
        assert_eq!(agreement(None), ("–".into(), false));
    }
}
