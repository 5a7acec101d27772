//! The seed protocol's chat socket, `GET /ws/chat/<id>/`: one socket per
//! chat, its whole history replayed on connect, `{"body"}` frames in.

pub mod session;
