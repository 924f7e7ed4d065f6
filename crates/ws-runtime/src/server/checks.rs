//! What every request is checked for before the pipeline, and the plain
//! answers (health check, 426, 404, 431).

use http::StatusCode;

use super::Shared;
use crate::handshake::{self, Answer, Kind};
use crate::pipeline::HandshakeRequest;

/// What every request is checked for before the pipeline: the head's size,
/// and that it is a well-formed upgrade (else the plain answers: health
/// check, 426 on a route, 404).
pub(super) fn check_request(shared: &Shared, req: &HandshakeRequest) -> Result<(), Answer> {
    if handshake::head_size(req) > shared.config.max_request_size {
        return Err(Answer::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "request head exceeds {} KiB (max_request_size_in_kb)",
                shared.config.max_request_size / 1024
            ),
        ));
    }
    match handshake::classify(req)? {
        Kind::Upgrade { .. } => Ok(()),
        Kind::Plain => {
            let path = req.uri().path();
            if !shared.config.health_path.is_empty() && path == shared.config.health_path {
                return Err(Answer::new(StatusCode::OK, "ok"));
            }
            Err(if shared.routes.at(path).is_some() {
                Answer::new(
                    StatusCode::UPGRADE_REQUIRED,
                    "this path speaks WebSocket only",
                )
                .header(http::header::UPGRADE, "websocket")
                .header(http::header::SEC_WEBSOCKET_VERSION, "13")
            } else {
                Answer::new(StatusCode::NOT_FOUND, format!("no route for `{path}`"))
            })
        }
    }
}
