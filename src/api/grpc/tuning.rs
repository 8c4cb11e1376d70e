//! HTTP/2 settings of the gRPC port, in one place so the connection layer applies them
//! (see `conn::Port::http2_windows`). h2's defaults (64 KiB stream and connection windows)
//! make a request of more than 64 KiB — a few hundred ranking rows — wait for a
//! WINDOW_UPDATE round trip mid-body; larger static windows remove that without the BDP
//! pings an adaptive window sends on every connection.

use crate::api::conn::Http2Windows;

/// Per-stream receive window: one large request fits without a window update.
pub const STREAM_WINDOW_BYTES: u32 = 4 << 20;
/// Per-connection receive window: a few such requests in flight on one connection.
pub const CONNECTION_WINDOW_BYTES: u32 = 16 << 20;
/// Largest HTTP/2 frame we accept: fewer frames (and wake-ups) per large message.
pub const MAX_FRAME_BYTES: u32 = 1 << 20;
/// Adaptive (BDP-probing) windows: off; on loopback and LANs the static windows above are
/// already larger than the bandwidth-delay product, and probing adds PING frames.
pub const ADAPTIVE_WINDOW: bool = false;

/// The gRPC port's settings.
pub const WINDOWS: Http2Windows = Http2Windows {
    stream_window: STREAM_WINDOW_BYTES,
    connection_window: CONNECTION_WINDOW_BYTES,
    max_frame: MAX_FRAME_BYTES,
    adaptive: ADAPTIVE_WINDOW,
};
