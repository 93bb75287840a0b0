//! `type = "tcp"`: the backend accepts a connection.
use super::{connect_failed, Failed};
use crate::tunnel_check::Target;

pub(super) async fn attempt(target: &Target) -> Result<String, Failed> {
    target.connect().await.map_err(|e| connect_failed(target, e))?;
    Ok("connected".into())
}
