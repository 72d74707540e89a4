//! Webhook delivery: what is sent (the v1 body and its Standard Webhooks signature), to
//! whom and how (the sender, which refuses private addresses), when (the retry schedule
//! and the receiver's `Retry-After`), and the loop that claims due deliveries and sends
//! them (the dispatcher, woken early by the wakers).

pub mod body;
pub mod dispatcher;
pub mod retry_after;
pub mod schedule;
pub mod sender;
pub mod signature;
pub mod wakers;
