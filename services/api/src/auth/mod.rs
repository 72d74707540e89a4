//! Who is calling and what they may do: API keys (bearer tokens with scopes, stored only
//! as hashes), the client's address (behind a trusted proxy, from `X-Forwarded-For`),
//! the hoops that guard routes, and who owns the jobs a caller creates. Operator routes
//! need a key with scope `operator`; `GET /v2/jobs` a key with `submit` (its own jobs) or
//! `operator` (every job); `POST /v2/uploads` scope `submit` unless
//! `FOODSEG_REQUIRE_KEYS=false`; the MFR v1 routes stay open (MFR sends no credentials)
//! but can be limited to client addresses.

mod client;
mod guard;
mod keys;
mod owner;
mod token;

pub use client::{AccessConfig, client_ip};
pub use guard::{Caller, RequireScope, V1Access, caller};
pub use keys::{AuthKey, KeyRing};
pub use owner::V1Owner;
pub use token::{TOKEN_PREFIX, generate_token, hash_token, is_token_shaped};
