//! The one error type of the request path and its metrics reason. It knows no web
//! framework: `api::http` and `api::grpc` map each variant to a status code.

/// Everything that can go wrong while serving one request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("model '{0}' is not in the repository")]
    ModelNotFound(String),
    #[error("model '{model}' has no version '{version}' (available: {available})")]
    VersionNotFound {
        model: String,
        version: String,
        available: String,
    },
    /// Malformed body, wrong names, dtypes or shapes; the message says what was expected.
    #[error("{0}")]
    InvalidInput(String),
    /// Request body or row count over the configured limit.
    #[error("{0}")]
    TooLarge(String),
    /// A request body in an encoding the server does not inflate (`Content-Encoding`).
    #[error("{0}")]
    UnsupportedEncoding(String),
    /// The client stopped sending its request body for longer than the body read timeout.
    #[error("{0}")]
    BodyTimeout(String),
    /// The model's queue is full; the client should back off and retry.
    #[error("model '{model}' version {version} is overloaded: queue full ({max_queue_size} requests waiting), retry later")]
    Overloaded {
        model: String,
        version: String,
        max_queue_size: usize,
    },
    /// The request's deadline passed before it could run.
    #[error("request to model '{model}' timed out after {waited_ms} ms in the queue (deadline {timeout_ms} ms)")]
    Timeout {
        model: String,
        waited_ms: u64,
        timeout_ms: u64,
    },
    /// Shutting down, or the model is not ready.
    #[error("{0}")]
    Unavailable(String),
    /// A control endpoint called without the right admin token.
    #[error("{0}")]
    Unauthorized(String),
    /// A control operation the server's configuration does not allow (e.g. load in mode none).
    #[error("{0}")]
    NotAllowed(String),
    /// A model output holds NaN or infinity and the client asked for it as JSON.
    #[error("{0}")]
    NonFiniteOutput(String),
    /// A failure on our side (worker gone, a split that failed). Details are logged.
    #[error("internal error: {0}")]
    Internal(String),
    /// The model's run failed (ONNX Runtime's error, or its worker panicked). The worker
    /// logged it once for its whole batch, with every request's id.
    #[error("internal error: {0}")]
    RunFailed(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Longest error message a client gets: messages that echo shapes or values a client sent
/// are cut to this, so a hostile body never gets an answer larger than a few hundred bytes.
pub const MAX_CLIENT_MESSAGE_BYTES: usize = 512;

/// `message` cut to [`MAX_CLIENT_MESSAGE_BYTES`] on a character boundary, saying how much
/// was cut.
pub fn capped(mut message: String) -> String {
    if message.len() <= MAX_CLIENT_MESSAGE_BYTES {
        return message;
    }
    let total = message.len();
    let mut cut = MAX_CLIENT_MESSAGE_BYTES;
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    message.truncate(cut);
    message.push_str(&format!("... ({} more bytes not shown)", total - cut));
    message
}

impl Error {
    /// The message a client gets: [`Display`](std::fmt::Display), [`capped`].
    pub fn client_message(&self) -> String {
        capped(self.to_string())
    }

    /// The server itself failed (ONNX Runtime error, worker gone, unencodable output), as
    /// opposed to a bad request, load or lifecycle: HTTP 500 / gRPC INTERNAL, the one kind
    /// each transport logs per request at ERROR. Overload and timeouts are counted in the
    /// metrics instead, so an overloaded server does not also flood its log.
    pub fn is_server_fault(&self) -> bool {
        matches!(
            self,
            Error::Internal(_) | Error::RunFailed(_) | Error::NonFiniteOutput(_)
        )
    }

    /// A server fault the transport logs at ERROR for its request: every one but a failed
    /// run, which the worker that ran the batch logged already (one line per failed
    /// inference, not one per layer it passes through).
    pub fn is_logged_per_request(&self) -> bool {
        self.is_server_fault() && !matches!(self, Error::RunFailed(_))
    }

    /// Low-cardinality reason label for metrics; also what transports map to status codes.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::ModelNotFound(_) | Error::VersionNotFound { .. } => "not_found",
            Error::InvalidInput(_)
            | Error::TooLarge(_)
            | Error::UnsupportedEncoding(_)
            | Error::Unauthorized(_)
            | Error::NotAllowed(_) => "invalid",
            Error::Overloaded { .. } => "overloaded",
            Error::Timeout { .. } | Error::BodyTimeout(_) => "timeout",
            Error::Unavailable(_) => "unavailable",
            Error::Internal(_) | Error::RunFailed(_) | Error::NonFiniteOutput(_) => "internal",
        }
    }
}
