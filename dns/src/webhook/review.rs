//! AdmissionReview in, AdmissionReview out: decoding requests and encoding answers, kept pure.
//! Every answer allows the pod; only a body that names no request uid is refused (HTTP 400).

use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::{DynamicObject, Status};

use super::Error;
use super::patch::{Decision, SkipReason};

/// A decoded request body.
#[derive(Debug)]
pub enum Incoming {
    /// A review the webhook can decide on.
    Request(Box<AdmissionRequest<DynamicObject>>),
    /// A review whose request does not decode but whose uid could be read: it is answered
    /// allowed and unchanged, so a quirk in one request never blocks a pod.
    Unreadable {
        /// The uid the answer must carry.
        uid: String,
        /// Why the request did not decode.
        error: Error,
    },
}

/// What a decoded request asks about.
#[derive(Debug)]
pub enum Subject {
    /// A pod being created in `namespace`.
    Pod {
        /// The pod as submitted (after the API server's defaulting).
        pod: Box<Pod>,
        /// Its namespace, from the request or else the pod's metadata.
        namespace: String,
    },
    /// Something the webhook leaves alone without looking further.
    Skip(SkipReason),
}

/// Decodes a request body. `Err` means not even a uid could be read: answer 400 with the message.
pub fn parse(body: &[u8]) -> Result<Incoming, Error> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| Error::MalformedReview(format!("body is not JSON: {e}")))?;
    let review_error = match serde_json::from_value::<AdmissionReview<DynamicObject>>(value.clone())
    {
        Ok(review) => match review.try_into() {
            Ok(request) => return Ok(Incoming::Request(Box::new(request))),
            Err(_) => "review has no request".to_owned(),
        },
        Err(e) => e.to_string(),
    };
    match value.pointer("/request/uid").and_then(|u| u.as_str()) {
        Some(uid) if !uid.is_empty() => Ok(Incoming::Unreadable {
            uid: uid.to_owned(),
            error: Error::MalformedReview(review_error),
        }),
        _ => Err(Error::MalformedReview(review_error)),
    }
}

/// Picks out the pod of a CREATE request; anything else is skipped.
pub fn subject(request: &AdmissionRequest<DynamicObject>) -> Result<Subject, Error> {
    if !request.kind.group.is_empty()
        || request.kind.kind != "Pod"
        || request.sub_resource.is_some()
    {
        return Ok(Subject::Skip(SkipReason::NotPod));
    }
    // A pod's dnsPolicy and dnsConfig are immutable: a patch on UPDATE would be rejected.
    if request.operation != Operation::Create {
        return Ok(Subject::Skip(SkipReason::NotCreate));
    }
    let object = request
        .object
        .as_ref()
        .ok_or_else(|| Error::MalformedReview("CREATE request has no object".to_owned()))?;
    let pod: Pod = serde_json::to_value(object)
        .and_then(serde_json::from_value)
        .map_err(Error::DecodePod)?;
    // Pods created through a controller may have no metadata.namespace yet; the request has it.
    let namespace = request
        .namespace
        .clone()
        .or_else(|| pod.metadata.namespace.clone())
        .filter(|ns| !ns.is_empty())
        .ok_or(Error::NoNamespace)?;
    Ok(Subject::Pod {
        pod: Box::new(pod),
        namespace,
    })
}

/// The answer to `request`: allowed, with the decision's patch if there is one.
pub fn respond(
    request: &AdmissionRequest<DynamicObject>,
    decision: &Decision,
) -> Result<AdmissionReview<DynamicObject>, Error> {
    let response = AdmissionResponse::from(request);
    let response = match decision.patch() {
        Some(patch) => response
            .with_patch(patch.clone())
            .map_err(Error::EncodePatch)?,
        None => response,
    };
    Ok(response.into_review())
}

/// The answer that admits the pod of `request` unchanged.
pub fn allow(request: &AdmissionRequest<DynamicObject>) -> AdmissionReview<DynamicObject> {
    AdmissionResponse::from(request).into_review()
}

/// The answer that admits an unreadable request, known only by its uid, unchanged.
pub fn allow_uid(uid: &str) -> AdmissionReview<DynamicObject> {
    // `invalid` is the only constructor that needs no decoded request; it sets kind and
    // apiVersion (admission.k8s.io/v1). Everything that makes it a refusal is undone here.
    let mut response = AdmissionResponse::invalid("");
    response.allowed = true;
    response.uid = uid.to_owned();
    response.result = Status::default();
    response.into_review()
}
