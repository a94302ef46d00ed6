//! Models served by an inference server over KServe v2 gRPC (Triton Inference Server, OpenVINO
//! Model Server, KServe). A shared instance's lanes are requests in flight on one gRPC channel
//! per server, which every model on that server in the process shares (HTTP/2 carries many
//! requests at once); the server's own batching groups what arrives together.

mod address;
mod proto;
mod tensors;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ndarray::{ArrayD, CowArray};
use once_cell::sync::Lazy;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

pub use address::ServerUrl;
use proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use proto::{ModelInferRequest, ModelMetadataRequest};
use tensors::Layout;

use super::queue::{Frames, LaneError, Lanes, SharedSession, StopSwitch, split_outputs, switch_of};
use super::{EngineError, ModelOptions};
use crate::lock;

/// How long a request may take when nothing else is set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests in flight per shared instance when `session-lanes` is not set: enough for the
/// round trip not to bound the rate of a few cameras sharing the server.
pub const DEFAULT_IN_FLIGHT: usize = 8;

/// A model on an inference server.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServedModel {
    pub server: ServerUrl,
    pub name: String,
    /// Empty: the server's choice.
    pub version: String,
}

impl fmt::Display for ServedModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`", self.name)?;
        if !self.version.is_empty() {
            write!(f, " version {}", self.version)?;
        }
        write!(f, " on {}", self.server)
    }
}

/// A value never written to logs.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "(unset)" } else { "(set)" })
    }
}

/// How to reach a server, beyond its address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ServerOptions {
    /// Sent as `authorization: Bearer <token>` with every request (empty: none).
    pub token: Secret,
    /// More request headers (gRPC metadata), e.g. an API gateway's key.
    pub headers: Vec<(String, String)>,
    /// PEM certificates to trust for `grpcs://`, besides the system's.
    pub ca_file: Option<PathBuf>,
    /// How long one request may take (zero: [`DEFAULT_TIMEOUT`]).
    pub timeout: Duration,
}

impl ServerOptions {
    fn timeout(&self) -> Duration {
        if self.timeout.is_zero() {
            DEFAULT_TIMEOUT
        } else {
            self.timeout
        }
    }

    /// Checks what can be checked without the server: header names and values, the CA file.
    pub fn validate(&self) -> Result<(), String> {
        for (name, value) in &self.headers {
            tonic::metadata::MetadataKey::<tonic::metadata::Ascii>::from_bytes(name.as_bytes())
                .map_err(|_| format!("\"{name}\" is not a valid request header name"))?;
            tonic::metadata::MetadataValue::try_from(value.as_str())
                .map_err(|_| format!("the value of header \"{name}\" is not valid in a request header"))?;
        }
        tonic::metadata::MetadataValue::try_from(format!("Bearer {}", self.token.0))
            .map_err(|_| "the token has characters a request header cannot carry".to_string())?;
        if let Some(path) = &self.ca_file {
            crate::files::read_regular_file(path, "CA certificate", 1 << 20)?;
        }
        Ok(())
    }
}

/// The tokio runtime the gRPC client runs on: two threads for the whole process, however many
/// elements and servers.
static RUNTIME: Lazy<Result<tokio::runtime::Runtime, String>> = Lazy::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("asyncdetect-grpc")
        .enable_all()
        .build()
        .map_err(|e| format!("could not start the gRPC client's threads: {e}"))
});

fn runtime() -> Result<&'static tokio::runtime::Runtime, EngineError> {
    RUNTIME.as_ref().map_err(|e| EngineError::Runtime(e.clone()))
}

/// A server and the extra authority trusted for it.
type ChannelKey = (ServerUrl, Option<PathBuf>);

/// One channel (HTTP/2 connection, reconnected as needed) per server and trust settings.
static CHANNELS: Lazy<Mutex<HashMap<ChannelKey, Channel>>> = Lazy::new(Mutex::default);

fn channel(server: &ServerUrl, options: &ServerOptions) -> Result<Channel, EngineError> {
    let key = (server.clone(), options.ca_file.clone());
    if let Some(channel) = lock(&CHANNELS).get(&key) {
        return Ok(channel.clone());
    }
    let bad = |e: String| EngineError::Model(format!("inference server {server}: {e}"));
    let mut endpoint = Endpoint::from_shared(server.uri())
        .map_err(|e| bad(e.to_string()))?
        .connect_timeout(options.timeout())
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    if server.tls {
        let mut tls = ClientTlsConfig::new()
            .with_native_roots()
            .domain_name(server.tls_name());
        if let Some(path) = &options.ca_file {
            let pem = crate::files::read_regular_file(path, "CA certificate", 1 << 20).map_err(bad)?;
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        endpoint = endpoint.tls_config(tls).map_err(|e| bad(e.to_string()))?;
    }
    let channel = {
        let _context = runtime()?.enter();
        endpoint.connect_lazy()
    };
    lock(&CHANNELS).insert(key, channel.clone());
    Ok(channel)
}

/// What a failed call means: the server is away or not serving the model (worth trying again),
/// with the reason as users should read it.
fn unavailable(server: &ServerUrl, status: &tonic::Status) -> EngineError {
    EngineError::Unavailable(describe_status(server, status))
}

fn describe_status(server: &ServerUrl, status: &tonic::Status) -> String {
    use tonic::Code;
    let what = match status.code() {
        Code::Unavailable => "is unreachable",
        // The client's own deadline ends a call as cancelled.
        Code::DeadlineExceeded | Code::Cancelled => "did not answer in time",
        Code::NotFound => "does not serve the model",
        Code::Unauthenticated => "refused the credentials",
        Code::PermissionDenied => "refused access",
        Code::Unimplemented => "does not speak KServe v2 gRPC",
        _ => "failed the request",
    };
    let detail = status.message();
    // A transport error's message is in its source chain.
    let mut source = std::error::Error::source(status);
    let mut causes = Vec::new();
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    let detail = match (detail.is_empty(), causes.last()) {
        (_, Some(root)) if !detail.contains(root.as_str()) => format!("{detail} ({root})"),
        _ => detail.to_string(),
    };
    format!("inference server {server} {what}: {detail}")
}

/// Adds the credentials and headers to a request, with its deadline.
fn prepare<T>(message: T, options: &ServerOptions) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(options.timeout());
    let metadata = request.metadata_mut();
    if !options.token.0.is_empty()
        && let Ok(value) = format!("Bearer {}", options.token.0).parse()
    {
        metadata.insert("authorization", value);
    }
    for (name, value) in &options.headers {
        if let (Ok(name), Ok(value)) = (
            tonic::metadata::MetadataKey::<tonic::metadata::Ascii>::from_bytes(name.as_bytes()),
            value.parse(),
        ) {
            metadata.insert(name, value);
        }
    }
    request
}

/// Runs `call` on the client's runtime, giving up when `abandon` says so (polled) or after
/// `limit`.
fn block_on_abandonable<T>(
    call: impl std::future::Future<Output = T>,
    limit: Duration,
    abandon: &dyn Fn() -> bool,
) -> Result<Option<T>, EngineError> {
    runtime()?.block_on(async {
        let watch = async {
            loop {
                if abandon() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::select! {
            result = tokio::time::timeout(limit, call) => Ok(result.ok()),
            () = watch => Err(EngineError::Cancelled),
        }
    })
}

/// Reads the model's metadata from the server and builds the shared instance in front of it.
/// A server that cannot be reached, or does not serve the model, is [`EngineError::Unavailable`].
pub(super) fn connect(
    model: &ServedModel,
    options: &ModelOptions,
    abandon: &dyn Fn() -> bool,
) -> Result<SharedSession, EngineError> {
    let server = &model.server;
    let server_options = &options.server;
    let channel = channel(server, server_options)?;
    let mut client = GrpcInferenceServiceClient::new(channel.clone());
    let request = prepare(
        ModelMetadataRequest {
            name: model.name.clone(),
            version: model.version.clone(),
        },
        server_options,
    );
    let timeout = server_options.timeout();
    let metadata = block_on_abandonable(client.model_metadata(request), timeout, abandon)?
        .ok_or_else(|| {
            EngineError::Unavailable(format!(
                "inference server {server} did not answer in time ({timeout:?})"
            ))
        })?
        .map_err(|status| unavailable(server, &status))?
        .into_inner();
    let (signature, layout) = tensors::read_metadata(&metadata)
        .map_err(|e| EngineError::Unavailable(format!("model {model}: {e}")))?;
    let max_lanes = match options.lanes {
        0 => DEFAULT_IN_FLIGHT,
        lanes => lanes,
    };
    let lanes = RequestLanes {
        client,
        model: model.clone(),
        options: server_options.clone(),
        layout: Arc::new(layout),
    };
    // One frame a request: several requests in flight let the server's dynamic batcher group
    // them, and a model's largest batch is in its server-side configuration, not its metadata.
    Ok(SharedSession::new(
        signature,
        Box::new(lanes),
        max_lanes,
        1,
        false,
    ))
}

/// Requests in flight to one model: any lane can run at any time, on the shared channel.
struct RequestLanes {
    client: GrpcInferenceServiceClient<Channel>,
    model: ServedModel,
    options: ServerOptions,
    layout: Arc<Layout>,
}

/// Abandons one request.
#[derive(Default)]
struct AbandonRequest(tokio::sync::Notify);

impl StopSwitch for AbandonRequest {
    fn stop(&self) {
        // Stored when the request is not waiting yet: it is abandoned as it starts.
        self.0.notify_one();
    }
}

impl Lanes for RequestLanes {
    fn open(&self, _lane: usize) -> Result<(), String> {
        Ok(())
    }

    fn new_run(&self) -> Result<Arc<dyn StopSwitch>, String> {
        Ok(Arc::new(AbandonRequest::default()))
    }

    fn run(
        &self,
        _lane: usize,
        shape: [usize; 4],
        frames: Frames<'_>,
        stop: &Arc<dyn StopSwitch>,
    ) -> Result<Vec<Vec<ArrayD<f32>>>, LaneError> {
        let abandon = switch_of::<AbandonRequest>(stop)?;
        let (input, contents) = tensors::input_tensor(&self.layout, shape, &frames);
        let request = prepare(
            ModelInferRequest {
                model_name: self.model.name.clone(),
                model_version: self.model.version.clone(),
                inputs: vec![input],
                raw_input_contents: vec![contents],
                ..Default::default()
            },
            &self.options,
        );
        let server = &self.model.server;
        let timeout = self.options.timeout();
        let mut client = self.client.clone();
        let runtime = runtime().map_err(|e| LaneError::Failed(e.to_string()))?;
        let answer = runtime.block_on(async {
            tokio::select! {
                answer = tokio::time::timeout(timeout, client.model_infer(request)) => Some(answer),
                () = abandon.0.notified() => None,
            }
        });
        let response = match answer {
            None => return Err(LaneError::Failed("abandoned".into())),
            Some(Err(_)) => {
                return Err(LaneError::Unavailable(format!(
                    "inference server {server} did not answer in time ({timeout:?})"
                )));
            }
            Some(Ok(Err(status))) => {
                return Err(LaneError::Unavailable(describe_status(server, &status)));
            }
            Some(Ok(Ok(response))) => response.into_inner(),
        };
        let frames_sent = shape[0];
        let outputs = tensors::read_outputs(&self.layout, &response, frames_sent)
            .map_err(|e| LaneError::Unavailable(format!("model {}: {e}", self.model)))?;
        Ok(split_outputs(
            outputs.into_iter().map(CowArray::from).collect(),
            frames_sent,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> ServerUrl {
        ServerUrl::parse("grpc://127.0.0.1:8001").unwrap()
    }

    #[test]
    fn requests_carry_the_token_the_headers_and_the_deadline() {
        let options = ServerOptions {
            token: Secret("s3cret".into()),
            headers: vec![("x-api-key".into(), "abc".into())],
            timeout: Duration::from_millis(1500),
            ..Default::default()
        };
        let request = prepare((), &options);
        let metadata = request.metadata();
        assert_eq!(metadata.get("authorization").unwrap(), "Bearer s3cret");
        assert_eq!(metadata.get("x-api-key").unwrap(), "abc");
        assert_eq!(metadata.get("grpc-timeout").unwrap(), "1500000u");
        // No token, no header; the default deadline.
        let plain = prepare((), &ServerOptions::default());
        assert!(plain.metadata().get("authorization").is_none());
        assert_eq!(plain.metadata().get("grpc-timeout").unwrap(), "5000000u");
        // The token never reaches a log line.
        assert!(!format!("{options:?}").contains("s3cret"));
    }

    #[test]
    fn settings_a_request_cannot_carry_are_refused_before_any_connection() {
        let bad_name = ServerOptions {
            headers: vec![("bad header".into(), "x".into())],
            ..Default::default()
        };
        assert!(bad_name.validate().unwrap_err().contains("bad header"));
        let bad_token = ServerOptions {
            token: Secret("line\nbreak".into()),
            ..Default::default()
        };
        assert!(bad_token.validate().unwrap_err().contains("token"));
        let missing_ca = ServerOptions {
            ca_file: Some("/no/such/ca.pem".into()),
            ..Default::default()
        };
        assert!(missing_ca.validate().unwrap_err().contains("/no/such/ca.pem"));
        assert!(ServerOptions::default().validate().is_ok());
    }

    #[test]
    fn failures_are_named_as_users_read_them() {
        use tonic::{Code, Status};
        for (code, expected) in [
            (Code::Unavailable, "is unreachable"),
            (Code::DeadlineExceeded, "did not answer in time"),
            (Code::Cancelled, "did not answer in time"),
            (Code::NotFound, "does not serve the model"),
            (Code::Unauthenticated, "refused the credentials"),
            (Code::Unimplemented, "does not speak KServe v2 gRPC"),
            (Code::Internal, "failed the request"),
        ] {
            let text = describe_status(&server(), &Status::new(code, "the detail"));
            assert!(
                text.starts_with("inference server grpc://127.0.0.1:8001 ") && text.contains(expected),
                "{code:?}: {text}"
            );
            assert!(text.ends_with("the detail"), "{text}");
        }
    }
}
