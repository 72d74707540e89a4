//! Who is calling and what they may do: API keys (bearer tokens with scopes, stored only
//! as hashes), the client's address (behind a trusted proxy, from `X-Forwarded-For`),
//! and the hoops that guard routes. Operator routes need a key with scope `operator`;
//! `/v2` needs scope `submit` when `FOODSEG_REQUIRE_KEYS=true`; the MFR v1 routes stay
//! open (MFR sends no credentials) but can be limited to client addresses.

mod client;
mod guard;
mod keys;
mod token;

pub use client::{AccessConfig, client_ip, is_https};
pub use guard::{Caller, RequireScope, V1Access, caller};
pub use keys::{AuthKey, KeyRing};
pub use token::{TOKEN_PREFIX, generate_token, hash_token};
