//! Console sessions: the key is pasted once on the login page; the console then keeps an
//! HttpOnly, SameSite=Strict, Secure cookie (`FOODSEG_CONSOLE_INSECURE_COOKIE=true` drops
//! `Secure`, for plain-HTTP local use) holding a random session token whose SHA-256 is
//! stored with the key that logged in and a CSRF token. The login form is accepted only
//! from the console's own origin (`Sec-Fetch-Site`, else `Origin`), so another site
//! cannot log a browser in under its own key. Every page needs a live session of a key
//! with scope `operator`; every form sends the CSRF token back.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use foodseg_engine::Scope;
use salvo::http::cookie::{Cookie, SameSite};
use salvo::prelude::*;
use subtle::ConstantTimeEq;

use super::page::{ConsoleError, render};
use super::views::LoginPage;
use crate::auth::hash_token;
use crate::request::{ready_state, with_deadline};

/// The session cookie.
pub const COOKIE: &str = "foodseg_console";
/// How long a session lasts after login.
const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);

/// The logged-in operator of a console request.
#[derive(Debug, Clone)]
pub struct Session {
    /// The name of the key that logged in (event actors: `console:<name>`).
    pub key_name: String,
    pub csrf_token: String,
    token_hash: [u8; 32],
}

impl Session {
    /// Who a job event names for an action taken in the console.
    pub fn actor(&self) -> String {
        format!("console:{}", self.key_name)
    }

    /// Refuses a form whose CSRF token is missing or not this session's.
    pub fn check_csrf(&self, sent: Option<&str>) -> Result<(), ConsoleError> {
        let ok: bool = sent
            .map(|s| s.as_bytes().ct_eq(self.csrf_token.as_bytes()).into())
            .unwrap_or(false);
        if ok { Ok(()) } else { Err(ConsoleError::Csrf) }
    }
}

/// The session a [`RequireSession`] hoop found.
pub fn session(depot: &Depot) -> Result<&Session, ConsoleError> {
    depot
        .get_typed::<Session>()
        .map_err(|_| ConsoleError::NotLoggedIn)
}

fn random_token() -> String {
    let secret: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(secret)
}

/// The login page.
#[handler]
pub async fn login_page(res: &mut Response) {
    render(res, StatusCode::OK, &LoginPage { error: None });
}

/// Checks the pasted key and opens a session: a key that is unknown, revoked or lacks
/// scope `operator` gets the login page again with the reason.
#[handler]
pub async fn login(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    let refuse = |res: &mut Response, status: StatusCode, reason: String| {
        render(
            res,
            status,
            &LoginPage {
                error: Some(reason),
            },
        )
    };
    if !same_origin(req) {
        return refuse(
            res,
            StatusCode::FORBIDDEN,
            "The login form must be sent from this console's own page.".into(),
        );
    }
    let state = match ready_state(depot) {
        Ok(state) => state,
        Err(e) => return ConsoleError::from(e).write_to(res),
    };
    let token = req
        .form::<String>("key")
        .await
        .map(|t| t.trim().to_string())
        .unwrap_or_default();
    if token.is_empty() {
        return refuse(res, StatusCode::BAD_REQUEST, "Paste an API key.".into());
    }
    let key = match with_deadline(state.keys.authenticate(&token)).await {
        Ok(Some(key)) => key,
        Ok(None) => {
            return refuse(
                res,
                StatusCode::UNAUTHORIZED,
                "Unknown or revoked API key.".into(),
            );
        }
        Err(e) => return ConsoleError::from(e).write_to(res),
    };
    if !key.has_scope(Scope::Operator) {
        return refuse(
            res,
            StatusCode::FORBIDDEN,
            format!(
                "API key {:?} lacks scope operator; the console needs an operator key.",
                key.name
            ),
        );
    }
    let session_token = random_token();
    let opened = with_deadline(state.store.open_console_session(
        &hash_token(&session_token),
        key.id,
        &random_token(),
        SESSION_TTL,
    ))
    .await;
    if let Err(e) = opened {
        return ConsoleError::from(e).write_to(res);
    }
    tracing::info!(key = %key.name, "console login");
    let cookie = Cookie::build((COOKIE, session_token))
        .path("/console")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(!state.access.console_insecure_cookie)
        .max_age(salvo::http::cookie::time::Duration::seconds(
            SESSION_TTL.as_secs() as i64,
        ))
        .build();
    res.add_cookie(cookie);
    res.render(Redirect::other("/console"));
}

/// Whether a form was sent from a page of this console: the browser's `Sec-Fetch-Site`
/// says `same-origin`, or (browsers without it) `Origin` names the host the request was
/// sent to. A request with neither is refused: every browser sends one with a form.
fn same_origin(req: &Request) -> bool {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = header("sec-fetch-site") {
        return site.trim().eq_ignore_ascii_case("same-origin");
    }
    let (Some(origin), Some(host)) = (header("origin"), header("host")) else {
        return false;
    };
    let Ok(origin) = url::Url::parse(origin.trim()) else {
        return false;
    };
    let Ok(target) = url::Url::parse(&format!("{}://{}", origin.scheme(), host.trim())) else {
        return false;
    };
    origin.host_str().is_some()
        && origin.host_str() == target.host_str()
        && origin.port_or_known_default() == target.port_or_known_default()
}

/// Ends the session (a form with the CSRF token) and goes back to the login page.
#[handler]
pub async fn logout(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    let result = async {
        let session = session(depot)?.clone();
        session.check_csrf(req.form::<String>("csrf").await.as_deref())?;
        let state = ready_state(depot)?;
        with_deadline(state.store.close_console_session(&session.token_hash)).await?;
        Ok::<_, ConsoleError>(())
    }
    .await;
    match result {
        Ok(()) => {
            res.add_cookie(expired_cookie());
            res.render(Redirect::other("/console/login"));
        }
        Err(e) => e.write_to(res),
    }
}

fn expired_cookie() -> Cookie<'static> {
    Cookie::build((COOKIE, ""))
        .path("/console")
        .http_only(true)
        .same_site(SameSite::Strict)
        .max_age(salvo::http::cookie::time::Duration::ZERO)
        .build()
}

/// Lets a request through only with a live session of an operator key. Without one, a
/// page request is sent to the login page; anything else is refused.
pub struct RequireSession;

#[async_trait]
impl Handler for RequireSession {
    async fn handle(
        &self,
        req: &mut Request,
        depot: &mut Depot,
        res: &mut Response,
        ctrl: &mut FlowCtrl,
    ) {
        match find_session(req, depot).await {
            Ok(session) => {
                depot.insert_typed(session);
            }
            Err(ConsoleError::NotLoggedIn) if req.method() == salvo::http::Method::GET => {
                res.render(Redirect::other("/console/login"));
                ctrl.skip_rest();
            }
            Err(e) => {
                e.write_to(res);
                ctrl.skip_rest();
            }
        }
    }
}

async fn find_session(req: &Request, depot: &Depot) -> Result<Session, ConsoleError> {
    let token = req
        .cookie(COOKIE)
        .map(|c| c.value().to_string())
        .filter(|t| !t.is_empty())
        .ok_or(ConsoleError::NotLoggedIn)?;
    let state = ready_state(depot)?;
    let token_hash = hash_token(&token);
    let row = with_deadline(state.store.console_session(&token_hash))
        .await?
        .ok_or(ConsoleError::NotLoggedIn)?;
    if !row.scopes.contains(&Scope::Operator) {
        return Err(ConsoleError::NotLoggedIn);
    }
    Ok(Session {
        key_name: row.key_name,
        csrf_token: row.csrf_token,
        token_hash,
    })
}
