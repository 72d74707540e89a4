//! The operator console under `/console`: server-rendered pages (askama templates compiled
//! into the binary, a little plain JavaScript, no build step) for keys with scope
//! `operator`. It shows jobs per model and state, timings, the webhook backlog and the
//! live workers; lists and searches jobs; shows a job's timeline, its deliveries with
//! every attempt, its trace link and its result drawn over the photo; lets an operator
//! redeliver a webhook, retry a failed job or cancel a queued one; shows the webhook
//! endpoints, pausing and resuming them by hand; and shows the batches with their
//! progress, cancelling what is left of one; and compares a candidate model's shadow runs
//! with the model that served the jobs.

mod actions;
mod batches;
mod endpoints;
mod image;
mod page;
mod pages;
mod session;
mod shadow;
mod views;

pub use session::COOKIE;

use salvo::http::HeaderValue;
use salvo::prelude::*;

/// Every console route. Pages other than the login page and the static files need a
/// session; actions need the session's CSRF token too.
pub fn router() -> Router {
    let pages = Router::new()
        .hoop(session::RequireSession)
        .get(pages::overview)
        .push(Router::with_path("logout").post(session::logout))
        .push(
            Router::with_path("endpoints")
                .get(endpoints::list)
                .push(Router::with_path("pause").post(endpoints::pause))
                .push(Router::with_path("resume").post(endpoints::resume)),
        )
        .push(Router::with_path("shadow").get(shadow::show))
        .push(
            Router::with_path("batches")
                .get(batches::list)
                .push(Router::with_path("{batch_id}/cancel").post(batches::cancel)),
        )
        .push(
            Router::with_path("jobs").get(pages::job_list).push(
                Router::with_path("{job_id}")
                    .get(pages::show_job)
                    .push(Router::with_path("image").get(image::job_image))
                    .push(Router::with_path("redeliver").post(actions::redeliver))
                    .push(Router::with_path("retry").post(actions::retry))
                    .push(Router::with_path("cancel").post(actions::cancel)),
            ),
        );
    Router::with_path("console")
        .hoop(page::security_headers)
        .push(
            Router::with_path("login")
                .get(session::login_page)
                .post(session::login),
        )
        .push(Router::with_path("static/{file}").get(static_file))
        .push(pages)
}

/// The stylesheet and the script, compiled into the binary.
#[handler]
async fn static_file(req: &mut Request, res: &mut Response) {
    let (body, mime) = match req.param::<String>("file").as_deref() {
        Some("console.css") => (
            include_str!("../../static/console.css"),
            "text/css; charset=utf-8",
        ),
        Some("console.js") => (
            include_str!("../../static/console.js"),
            "text/javascript; charset=utf-8",
        ),
        _ => {
            res.status_code(StatusCode::NOT_FOUND);
            res.render(Text::Plain("no such file"));
            return;
        }
    };
    let headers = res.headers_mut();
    headers.insert("content-type", HeaderValue::from_static(mime));
    headers.insert(
        "cache-control",
        HeaderValue::from_static("public, max-age=300"),
    );
    res.write_body(body.as_bytes().to_vec()).ok();
}
