//! Conversions between ws-core's wire types and tungstenite's. Both are backed
//! by `Bytes`, so payloads are never copied.

use tokio_tungstenite::tungstenite::protocol::CloseFrame as TCloseFrame;
use tokio_tungstenite::tungstenite::{Message as TMessage, Utf8Bytes as TUtf8Bytes};
use ws_core::{CloseCode, CloseFrame, Message, Utf8Bytes};

/// The most bytes a close reason may take on the wire (125 − 2 for the code).
const MAX_REASON: usize = 123;

pub(crate) fn to_wire(msg: Message) -> TMessage {
    match msg {
        Message::Text(t) => match TUtf8Bytes::try_from(t.into_bytes()) {
            Ok(t) => TMessage::Text(t),
            // ws-core's text is valid UTF-8 by construction.
            Err(_) => TMessage::Binary(bytes::Bytes::new()),
        },
        Message::Binary(b) => TMessage::Binary(b),
    }
}

/// A data message from the wire; `None` for control frames.
pub(crate) fn from_wire(msg: TMessage) -> Option<Message> {
    match msg {
        TMessage::Text(t) => Utf8Bytes::try_from(bytes::Bytes::from(t))
            .ok()
            .map(Message::Text),
        TMessage::Binary(b) => Some(Message::Binary(b)),
        _ => None,
    }
}

/// Cuts `reason` to what fits in a close frame, at a character boundary.
fn fit_reason(reason: &str) -> &str {
    if reason.len() <= MAX_REASON {
        return reason;
    }
    let mut end = MAX_REASON;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

pub(crate) fn close_to_wire(frame: &CloseFrame) -> TCloseFrame {
    let code = if frame.code.is_sendable() {
        frame.code
    } else {
        CloseCode::NORMAL
    };
    TCloseFrame {
        code: code.0.into(),
        reason: TUtf8Bytes::from(fit_reason(&frame.reason)),
    }
}

pub(crate) fn close_from_wire(frame: TCloseFrame) -> CloseFrame {
    CloseFrame::new(
        CloseCode(u16::from(frame.code)),
        Utf8Bytes::try_from(bytes::Bytes::from(frame.reason)).unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_cut_at_char_boundaries() {
        let long = "é".repeat(100);
        let cut = fit_reason(&long);
        assert!(cut.len() <= MAX_REASON);
        assert_eq!(cut.len(), 122);
        assert_eq!(fit_reason("short"), "short");
    }

    #[test]
    fn payload_is_not_copied() {
        let b = bytes::Bytes::from(vec![1u8; 4096]);
        let p = b.as_ptr();
        match to_wire(Message::Binary(b)) {
            TMessage::Binary(w) => assert_eq!(w.as_ptr(), p),
            other => panic!("unexpected {other:?}"),
        }
        let t = Message::text("x".repeat(1000));
        let TMessage::Text(w) = to_wire(t) else {
            panic!("text expected")
        };
        let back = from_wire(TMessage::Text(w.clone())).unwrap();
        assert_eq!(back.into_payload().as_ptr(), w.as_bytes().as_ptr());
    }

    #[test]
    fn unsendable_codes_become_normal() {
        let f = close_to_wire(&CloseFrame::new(CloseCode::ABNORMAL, "x"));
        assert_eq!(u16::from(f.code), 1000);
    }
}
