//! `/openapi.json`, generated from the endpoints, and Swagger UI at `/docs` (its assets are
//! embedded in the binary; nothing is fetched from the internet).

use salvo::oapi::security::{Http, HttpAuthScheme, SecurityScheme};
use salvo::oapi::swagger_ui::SwaggerUi;
use salvo::oapi::{Info, OpenApi};
use salvo::prelude::*;

/// Adds the OpenAPI document and the interactive docs to `router`.
pub fn with_docs(router: Router) -> Router {
    let doc = OpenApi::with_info(
        Info::new("foodseg api", env!("CARGO_PKG_VERSION")).description(
            "Food-image segmentation. MFR v1 contract: POST /enqueue, GET /status/{job_id}.",
        ),
    )
    .add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            Http::new(HttpAuthScheme::Bearer)
                .description("An API key (`foodseg-api keys create`), as `Authorization: Bearer <token>`. Operator routes need scope `operator`; `/v2` needs scope `submit` when the server requires keys."),
        ),
    )
    .merge_router(&router);
    router
        .push(doc.into_router("/openapi.json"))
        .push(SwaggerUi::new("/openapi.json").into_router("/docs"))
}
