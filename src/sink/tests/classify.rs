//! (status code, `Status` body) → result, as openshift-apiserver answers (SPEC §6).

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue, header};
use serde_json::{Value, json};

use crate::sink::kube::parse_retry_after;
use crate::sink::{ClusterOp, SinkError, classify_response};

fn failure(code: u16, reason: &str, message: &str, details: Value) -> Vec<u8> {
    let mut status = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code,
    });
    if !details.is_null() {
        status["details"] = details;
    }
    serde_json::to_vec(&status).unwrap()
}

fn mapping(code: u16, retry_after: Option<Duration>, body: &[u8]) -> Result<(), SinkError> {
    classify_response(
        ClusterOp::CreateMapping,
        code,
        retry_after,
        body,
        "team",
        "app",
    )
}

#[test]
fn created_mapping_answered_with_a_success_status_is_success() {
    let body =
        br#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","code":201}"#;
    assert!(mapping(201, None, body).is_ok());
}

#[test]
fn not_found_for_imagestreammappings_means_the_stream_is_missing() {
    let body = failure(
        404,
        "NotFound",
        "imagestreammappings.image.openshift.io \"app\" not found",
        json!({"name": "app", "group": "image.openshift.io", "kind": "imagestreammappings"}),
    );
    match mapping(404, None, &body) {
        Err(SinkError::StreamNotFound { namespace, stream }) => {
            assert_eq!((namespace.as_str(), stream.as_str()), ("team", "app"));
        }
        other => panic!("expected StreamNotFound, got {other:?}"),
    }
}

#[test]
fn not_found_for_namespaces_means_the_namespace_is_missing_and_is_not_retryable() {
    let body = failure(
        404,
        "NotFound",
        "namespaces \"team\" not found",
        json!({"name": "team", "kind": "namespaces"}),
    );
    let err = mapping(404, None, &body).unwrap_err();
    assert!(
        matches!(&err, SinkError::NamespaceNotFound { namespace } if namespace == "team"),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert_eq!(err.metric_label(), "namespace_not_found");
}

#[test]
fn not_found_without_details_is_not_taken_for_a_missing_stream() {
    let err = mapping(404, None, b"404 page not found").unwrap_err();
    assert!(
        matches!(&err, SinkError::UnexpectedResponse { code: 404, message } if message == "404 page not found"),
        "{err:?}"
    );
}

#[test]
fn any_not_found_on_a_stream_read_means_the_stream_is_missing() {
    let body = failure(
        404,
        "NotFound",
        "imagestreams \"app\" not found",
        json!({"kind": "imagestreams"}),
    );
    let got = classify_response(ClusterOp::GetStream, 404, None, &body, "team", "app");
    assert!(
        matches!(got, Err(SinkError::StreamNotFound { .. })),
        "{got:?}"
    );
}

#[test]
fn conflict_on_a_mapping_is_a_retryable_conflict_with_the_server_message() {
    let body = failure(
        409,
        "Conflict",
        "the tag changed",
        json!({"kind": "imagestreams"}),
    );
    let err = mapping(409, None, &body).unwrap_err();
    assert!(
        matches!(&err, SinkError::Conflict { message } if message == "the tag changed"),
        "{err:?}"
    );
    assert!(err.is_retryable());
}

#[test]
fn already_exists_on_an_image_or_stream_create_is_success() {
    let body = failure(
        409,
        "AlreadyExists",
        "already exists",
        json!({"kind": "images"}),
    );
    assert!(classify_response(ClusterOp::CreateImage, 409, None, &body, "", "sha256:ab").is_ok());
    assert!(classify_response(ClusterOp::CreateStream, 409, None, &body, "team", "app").is_ok());
}

#[test]
fn a_real_conflict_on_an_image_create_is_not_success() {
    let body = failure(409, "Conflict", "try again", Value::Null);
    let got = classify_response(ClusterOp::CreateImage, 409, None, &body, "", "sha256:ab");
    assert!(matches!(got, Err(SinkError::Conflict { .. })), "{got:?}");
}

#[test]
fn invalid_keeps_every_cause_with_its_field_and_is_not_retryable() {
    let body = failure(
        422,
        "Invalid",
        "ImageStreamMapping.image.openshift.io \"app\" is invalid",
        json!({"name": "app", "kind": "ImageStreamMapping", "causes": [
            {"reason": "FieldValueRequired", "message": "Required value", "field": "image.dockerImageReference"},
            {"reason": "FieldValueInvalid", "message": "must be empty", "field": "image.dockerImageLayers"},
        ]}),
    );
    let err = mapping(422, None, &body).unwrap_err();
    match &err {
        SinkError::Invalid { message, causes } => {
            assert!(message.contains("is invalid"), "{message}");
            assert_eq!(
                causes,
                &[
                    "image.dockerImageReference: Required value".to_string(),
                    "image.dockerImageLayers: must be empty".to_string(),
                ]
            );
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert!(!err.is_retryable());
    assert!(
        err.to_string()
            .contains("image.dockerImageLayers: must be empty")
    );
}

#[test]
fn unauthorized_and_forbidden_carry_the_server_message_and_are_not_retried() {
    let body = failure(401, "Unauthorized", "Unauthorized", Value::Null);
    let err = mapping(401, None, &body).unwrap_err();
    assert!(
        matches!(&err, SinkError::Unauthorized { message } if message == "Unauthorized"),
        "{err:?}"
    );
    assert!(!err.is_retryable());

    let msg = "imagestreammappings.image.openshift.io is forbidden: User \"system:serviceaccount:x:y\" cannot create";
    let body = failure(
        403,
        "Forbidden",
        msg,
        json!({"group": "image.openshift.io", "kind": "imagestreammappings"}),
    );
    let err = mapping(403, None, &body).unwrap_err();
    assert!(
        matches!(&err, SinkError::Forbidden { message } if message == msg),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert_eq!(err.metric_label(), "forbidden");
}

#[test]
fn too_many_requests_is_retryable_and_keeps_retry_after() {
    let mut headers = HeaderMap::new();
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("7"));
    let retry_after = parse_retry_after(&headers, SystemTime::now());
    let body = failure(
        429,
        "TooManyRequests",
        "slow down",
        json!({"retryAfterSeconds": 3}),
    );
    let err = mapping(429, retry_after, &body).unwrap_err();
    assert!(
        matches!(&err, SinkError::Unavailable { code: 429, .. }),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
}

#[test]
fn retry_after_seconds_in_the_status_is_used_when_the_header_is_missing() {
    let body = failure(
        429,
        "TooManyRequests",
        "slow down",
        json!({"retryAfterSeconds": 3}),
    );
    let err = mapping(429, None, &body).unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(3)));
}

#[test]
fn service_unavailable_without_a_status_body_is_retryable() {
    let err = mapping(503, None, b"").unwrap_err();
    match &err {
        SinkError::Unavailable {
            code,
            retry_after,
            message,
        } => {
            assert_eq!((*code, *retry_after), (503, None));
            assert_eq!(message, "Service Unavailable");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(err.is_retryable());
    assert_eq!(err.metric_label(), "unavailable");
}

#[test]
fn an_unexpected_code_is_neither_success_nor_retryable() {
    let err = mapping(302, None, b"").unwrap_err();
    assert!(
        matches!(err, SinkError::UnexpectedResponse { code: 302, .. }),
        "{err:?}"
    );
    assert!(!err.is_retryable());
}

#[test]
fn retry_after_accepts_an_http_date() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let at = httpdate::fmt_http_date(now + Duration::from_secs(120));
    let mut headers = HeaderMap::new();
    headers.insert(header::RETRY_AFTER, HeaderValue::from_str(&at).unwrap());
    assert_eq!(
        parse_retry_after(&headers, now),
        Some(Duration::from_secs(120))
    );
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("soon"));
    assert_eq!(parse_retry_after(&headers, now), None);
}
