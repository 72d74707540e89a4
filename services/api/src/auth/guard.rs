//! The hoops that guard routes, and the [`Caller`] they leave in the depot for the
//! handlers (event actors) and the abuse limits (one budget per key or per address).

use std::net::IpAddr;

use foodseg_engine::Scope;
use salvo::http::header::AUTHORIZATION;
use salvo::prelude::*;

use super::client::client_ip;
use super::keys::AuthKey;
use crate::error::ApiError;
use crate::request::with_deadline;
use crate::state::AppState;

/// Who made the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A live API key.
    Key(AuthKey),
    /// No key; the client's address (when the connection has one).
    Anonymous(Option<IpAddr>),
}

impl Caller {
    /// Who a job event names for an action of this caller.
    pub fn actor(&self) -> String {
        match self {
            Caller::Key(key) => format!("key:{}", key.name),
            Caller::Anonymous(Some(ip)) => format!("address:{ip}"),
            Caller::Anonymous(None) => "anonymous".into(),
        }
    }
}

/// The caller a guard hoop recorded for this request.
pub fn caller(depot: &Depot) -> Option<&Caller> {
    depot.get_typed::<Caller>().ok()
}

/// Checks the request's API key: routes under it need a live key with one of `scopes` —
/// always, or only when `FOODSEG_REQUIRE_KEYS=true` (the default; `/v2/uploads`). A key
/// presented where none is required is still checked: a wrong key is refused, never
/// ignored. Refused keys count against the client's address; once it has had its budget
/// (`FOODSEG_LIMIT_UNAUTHORIZED`) it gets 429 without its token being looked up.
#[derive(Debug, Clone, Copy)]
pub struct RequireScope {
    scopes: &'static [Scope],
    always: bool,
}

impl RequireScope {
    /// Operator routes: a key with scope `operator`, always.
    pub fn operator() -> Self {
        RequireScope {
            scopes: &[Scope::Operator],
            always: true,
        }
    }

    /// Reading jobs (`GET /v2/jobs`): a key, always, whatever `FOODSEG_REQUIRE_KEYS`
    /// says — `submit` to read its own jobs, `operator` to read every job.
    pub fn reader() -> Self {
        RequireScope {
            scopes: &[Scope::Submit, Scope::Operator],
            always: true,
        }
    }

    /// Submitting on `/v2`: a key with scope `submit` when keys are required.
    pub fn submit_when_required() -> Self {
        RequireScope {
            scopes: &[Scope::Submit],
            always: false,
        }
    }

    async fn check(&self, req: &Request, state: &AppState) -> Result<Caller, ApiError> {
        let required = self.always || state.access.require_keys;
        let ip = client_ip(req, &state.access);
        let Some(header) = req.headers().get(AUTHORIZATION) else {
            if required {
                return Err(ApiError::Unauthorized {
                    reason: "this route needs an API key: send Authorization: Bearer <token>",
                    token_given: false,
                });
            }
            return Ok(Caller::Anonymous(ip));
        };
        state.limits.check_refused_keys(ip)?;
        let refused = |reason| {
            state.limits.refused_key(ip);
            ApiError::Unauthorized {
                reason,
                token_given: true,
            }
        };
        let Some(token) = header
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
        else {
            return Err(refused("the Authorization header must be: Bearer <token>"));
        };
        let Some(key) = with_deadline(state.keys.authenticate(token)).await? else {
            return Err(refused("unknown or revoked API key"));
        };
        if required && !self.scopes.iter().any(|scope| key.has_scope(*scope)) {
            let wanted: Vec<&str> = self.scopes.iter().map(|s| s.as_str()).collect();
            return Err(ApiError::Forbidden(format!(
                "API key {:?} lacks scope {}",
                key.name,
                wanted.join(" or ")
            )));
        }
        Ok(Caller::Key(key))
    }
}

#[async_trait]
impl Handler for RequireScope {
    async fn handle(
        &self,
        req: &mut Request,
        depot: &mut Depot,
        res: &mut Response,
        ctrl: &mut FlowCtrl,
    ) {
        let Some(state) = crate::request::state(depot).cloned() else {
            return;
        };
        match self.check(req, &state).await {
            Ok(caller) => {
                depot.insert_typed(caller);
            }
            Err(e) => {
                e.write(req, depot, res).await;
                ctrl.skip_rest();
            }
        }
    }
}

/// The MFR v1 routes: open (MFR sends no credentials), but only to the client addresses
/// of `FOODSEG_V1_ALLOW_CIDRS` when it is set.
#[derive(Debug, Clone, Copy)]
pub struct V1Access;

#[async_trait]
impl Handler for V1Access {
    async fn handle(
        &self,
        req: &mut Request,
        depot: &mut Depot,
        res: &mut Response,
        ctrl: &mut FlowCtrl,
    ) {
        let Some(state) = crate::request::state(depot).cloned() else {
            return;
        };
        let ip = client_ip(req, &state.access);
        let allowed = state.access.v1_allow.is_empty()
            || ip.is_some_and(|ip| state.access.v1_allow.iter().any(|net| net.contains(&ip)));
        if allowed {
            depot.insert_typed(Caller::Anonymous(ip));
            return;
        }
        let shown = ip.map_or_else(|| "unknown".to_string(), |ip| ip.to_string());
        ApiError::Forbidden(format!("client address {shown} may not use this route"))
            .write(req, depot, res)
            .await;
        ctrl.skip_rest();
    }
}
