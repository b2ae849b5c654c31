//! Pure decisions, no IO, no async: the plan (with dependsOn,
//! suspensions, windows), sync windows, health. Knows nothing of Docker,
//! sled or the clock (time is an argument); imports only `model` and
//! `input`.

pub mod backoff;
pub mod health;
pub mod phase;
pub mod plan;
pub mod standing;
pub mod window;
