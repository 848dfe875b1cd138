//! What an OTLP receiver's answer means for the body, per the OTLP spec
//! ("Failures" and "Throttling" in opentelemetry-proto `docs/specification.md`):
//! HTTP retries only 429, 502, 503 and 504; gRPC retries a fixed set of codes,
//! and RESOURCE_EXHAUSTED only when the server says when (RetryInfo).

use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceResponse,
};
use prost::Message as _;
use tonic::Code;

use crate::sinks::SendError;

/// `google.rpc.Status`: the body of an OTLP/HTTP error and gRPC's `grpc-status-details-bin`.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<ProtoAny>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, prost::Message)]
struct ProtoAny {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, prost::Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, prost::Message)]
struct ProtoDuration {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

const RETRY_INFO_TYPE: &str = "type.googleapis.com/google.rpc.RetryInfo";
const MAX_REASON: usize = 512;

pub use crate::sinks::http::retry_after;

/// A receiver's error body made readable: the `google.rpc.Status` message the
/// spec asks for, else the text itself, cut short.
fn body_text(body: &[u8]) -> String {
    if let Ok(status) = RpcStatus::decode(body)
        && !status.message.is_empty()
    {
        return status.message;
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(MAX_REASON) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// One OTLP/HTTP answer: 2xx is delivered (possibly with refused points),
/// 429/502/503/504 are retried, every other status is final.
pub fn classify_http(
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
) -> Result<Option<ExportMetricsPartialSuccess>, SendError> {
    match status {
        // A receiver may answer JSON or nothing; only a protobuf answer can report refusals.
        200..=299 => Ok(ExportMetricsServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)),
        429 | 502 | 503 | 504 => Err(SendError::Retry {
            reason: format!("HTTP {status}: {}", body_text(body)),
            after: retry_after,
        }),
        _ => Err(SendError::Reject {
            reason: format!("HTTP {status}: {}", body_text(body)),
        }),
    }
}

/// The server's RetryInfo delay, from a gRPC status's details.
fn retry_delay(details: &[u8]) -> Option<Duration> {
    let status = RpcStatus::decode(details).ok()?;
    let info = status
        .details
        .iter()
        .find(|d| d.type_url == RETRY_INFO_TYPE)?;
    let delay = RetryInfo::decode(info.value.as_slice()).ok()?.retry_delay?;
    let secs = u64::try_from(delay.seconds).unwrap_or(0);
    let nanos = u32::try_from(delay.nanos).unwrap_or(0).min(999_999_999);
    Some(Duration::new(secs, nanos))
}

/// One failed gRPC export: the spec's retryable codes are retried, the rest are
/// final. `from_transport` marks a status tonic made up for a connection or TLS
/// failure (often `Unknown`): a network error, so retried whatever its code.
pub fn classify_grpc(code: Code, message: &str, details: &[u8], from_transport: bool) -> SendError {
    let reason = format!("gRPC {code:?}: {message}");
    let after = retry_delay(details);
    if from_transport {
        return SendError::Retry { reason, after };
    }
    match code {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => SendError::Retry { reason, after },
        Code::ResourceExhausted if after.is_some() => SendError::Retry { reason, after },
        _ => SendError::Reject { reason },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry_info(secs: i64) -> Vec<u8> {
        let info = RetryInfo {
            retry_delay: Some(ProtoDuration {
                seconds: secs,
                nanos: 0,
            }),
        };
        RpcStatus {
            code: Code::ResourceExhausted as i32,
            message: "slow down".into(),
            details: vec![ProtoAny {
                type_url: RETRY_INFO_TYPE.into(),
                value: info.encode_to_vec(),
            }],
        }
        .encode_to_vec()
    }

    #[test]
    fn http_statuses_follow_the_otlp_table() {
        let retried = [429, 502, 503, 504];
        let final_ = [400, 401, 403, 404, 405, 413, 415, 500, 501, 505];
        for s in retried {
            assert!(
                matches!(classify_http(s, None, b""), Err(SendError::Retry { .. })),
                "{s}"
            );
        }
        for s in final_ {
            assert!(
                matches!(classify_http(s, None, b""), Err(SendError::Reject { .. })),
                "{s}"
            );
        }
        for s in [200, 202, 204] {
            assert_eq!(classify_http(s, None, b""), Ok(None), "{s}");
        }
    }

    #[test]
    fn http_retry_keeps_retry_after_and_reject_keeps_body() {
        let after = Some(Duration::from_secs(7));
        assert_eq!(
            classify_http(503, after, b"busy"),
            Err(SendError::Retry {
                reason: "HTTP 503: busy".into(),
                after
            })
        );
        let status = RpcStatus {
            code: 3,
            message: "bad metric name".into(),
            details: vec![],
        };
        assert_eq!(
            classify_http(400, None, &status.encode_to_vec()),
            Err(SendError::Reject {
                reason: "HTTP 400: bad metric name".into()
            })
        );
        let long = "x".repeat(2000);
        let Err(SendError::Reject { reason }) = classify_http(400, None, long.as_bytes()) else {
            panic!()
        };
        assert!(reason.len() < 600, "{}", reason.len());
    }

    #[test]
    fn http_partial_success_is_reported() {
        let resp = ExportMetricsServiceResponse {
            partial_success: Some(ExportMetricsPartialSuccess {
                rejected_data_points: 3,
                error_message: "NaN".into(),
            }),
        };
        let got = classify_http(200, None, &resp.encode_to_vec())
            .unwrap()
            .unwrap();
        assert_eq!(
            (got.rejected_data_points, got.error_message.as_str()),
            (3, "NaN")
        );
        // rotel answers OTLP/JSON-ish text to some clients: not an error, no refusal.
        assert_eq!(
            classify_http(200, None, br#"{"partialSuccess":null}"#),
            Ok(None)
        );
    }

    #[test]
    fn grpc_codes_follow_the_otlp_table() {
        let retried = [
            Code::Cancelled,
            Code::DeadlineExceeded,
            Code::Aborted,
            Code::OutOfRange,
            Code::Unavailable,
            Code::DataLoss,
        ];
        let final_ = [
            Code::Unknown,
            Code::InvalidArgument,
            Code::NotFound,
            Code::AlreadyExists,
            Code::PermissionDenied,
            Code::Unauthenticated,
            Code::FailedPrecondition,
            Code::Unimplemented,
            Code::Internal,
            Code::ResourceExhausted,
        ];
        for c in retried {
            assert!(
                matches!(
                    classify_grpc(c, "", b"", false),
                    SendError::Retry { after: None, .. }
                ),
                "{c:?}"
            );
        }
        for c in final_ {
            assert!(
                matches!(classify_grpc(c, "", b"", false), SendError::Reject { .. }),
                "{c:?}"
            );
            let local = classify_grpc(c, "transport error", b"", true);
            assert!(
                matches!(local, SendError::Retry { .. }),
                "{c:?} raised by the transport"
            );
        }
    }

    #[test]
    fn grpc_resource_exhausted_with_retry_info_is_retried_after_the_delay() {
        assert_eq!(
            classify_grpc(Code::ResourceExhausted, "slow down", &retry_info(4), false),
            SendError::Retry {
                reason: "gRPC ResourceExhausted: slow down".into(),
                after: Some(Duration::from_secs(4)),
            }
        );
        assert!(matches!(
            classify_grpc(Code::Unavailable, "", &retry_info(2), false),
            SendError::Retry { after: Some(d), .. } if d == Duration::from_secs(2)
        ));
        assert!(matches!(
            classify_grpc(Code::ResourceExhausted, "", b"\xff\xff", false),
            SendError::Reject { .. }
        ));
    }
}
