//! The glue between the Lambda runtime and the handlers: event in, handler, response out. Each
//! function's `main` passes one of these to the runtime.

use std::time::Duration;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use lambda_runtime::LambdaEvent;

use crate::api::{self, ApiResponse};
use crate::app::App;
use crate::domain::{Owner, Timestamp};

/// The intake function: `POST /jobs`.
pub async fn intake(app: &App, request: Request) -> Result<Response<Body>, lambda_http::Error> {
    let owner = owner(&request);
    Ok(into_lambda(
        api::submit_job(app, owner, request.headers(), request.body()).await,
    ))
}

/// The status function: `GET /jobs/{id}` and `DELETE /jobs/{id}`.
pub async fn status(app: &App, request: Request) -> Result<Response<Body>, lambda_http::Error> {
    let owner = owner(&request);
    let id = request
        .path_parameters_ref()
        .and_then(|p| p.first("id"))
        .unwrap_or_default()
        .to_owned();
    let response = if request.method() == http::Method::DELETE {
        api::cancel_job(app, &owner, &id).await
    } else {
        let wait = request
            .query_string_parameters_ref()
            .and_then(|q| q.first("wait"))
            .map(str::to_owned);
        api::get_job(app, &owner, &id, wait.as_deref()).await
    };
    Ok(into_lambda(response))
}

/// The consumer function: an SQS batch, answered with the records to retry.
pub async fn consumer(
    app: &App,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, lambda_runtime::Error> {
    let deadline = invocation_deadline(app.clock.now(), event.context.deadline);
    Ok(crate::consumer::handle_batch(app, event.payload, deadline).await)
}

/// Without a deadline of its own, an invocation gets this long (the template's default consumer
/// timeout).
const FALLBACK_INVOCATION_TIME: Duration = Duration::from_secs(30);

/// The invocation's deadline, from the runtime's `Lambda-Runtime-Deadline-Ms` (epoch
/// milliseconds). Lambda always sends a future one; some runtime emulators (cargo-lambda's among
/// them) send a fixed small number, which would leave every record no time at all, so a deadline
/// already past at the start stands for "not given".
fn invocation_deadline(now: Timestamp, deadline_ms: u64) -> Timestamp {
    let deadline = Timestamp::from_millis(deadline_ms);
    if deadline > now {
        deadline
    } else {
        now.saturating_add(FALLBACK_INVOCATION_TIME)
    }
}

/// The caller as API Gateway's authorizer established it: a JWT's `sub`, an IAM caller's ARN, or
/// a Lambda authorizer's `principalId`; requests on a route without an authorizer are anonymous.
pub fn owner(request: &Request) -> Owner {
    let Some(RequestContext::ApiGatewayV2(context)) = request.request_context_ref() else {
        return Owner::anonymous();
    };
    let Some(authorizer) = &context.authorizer else {
        return Owner::anonymous();
    };
    let identity = authorizer
        .jwt
        .as_ref()
        .and_then(|jwt| jwt.claims.get("sub").cloned())
        .or_else(|| authorizer.iam.as_ref().and_then(|iam| iam.user_arn.clone()))
        .or_else(|| {
            authorizer
                .fields
                .get("principalId")
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        });
    identity.map_or_else(Owner::anonymous, |identity| Owner::authenticated(&identity))
}

fn into_lambda(response: ApiResponse) -> Response<Body> {
    response.map(Body::Text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_with_authorizer(authorizer: serde_json::Value) -> Request {
        let event = serde_json::json!({
            "version": "2.0",
            "routeKey": "GET /jobs/{id}",
            "rawPath": "/jobs/x",
            "rawQueryString": "",
            "headers": {},
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "api-id",
                "authorizer": authorizer,
                "domainName": "id.execute-api.us-east-1.amazonaws.com",
                "http": {"method": "GET", "path": "/jobs/x", "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1", "userAgent": "test"},
                "requestId": "id",
                "routeKey": "GET /jobs/{id}",
                "stage": "$default",
                "time": "12/Mar/2020:19:03:58 +0000",
                "timeEpoch": 1_583_348_638_390_i64
            },
            "isBase64Encoded": false
        });
        lambda_http::request::from_str(&event.to_string()).unwrap()
    }

    #[test]
    fn the_owner_is_the_authorizers_identity() {
        let jwt = request_with_authorizer(
            serde_json::json!({"jwt": {"claims": {"sub": "user-42"}, "scopes": []}}),
        );
        assert_eq!(owner(&jwt), Owner::authenticated("user-42"));
        let iam = request_with_authorizer(
            serde_json::json!({"iam": {"userArn": "arn:aws:iam::123456789012:user/ci"}}),
        );
        assert_eq!(
            owner(&iam),
            Owner::authenticated("arn:aws:iam::123456789012:user/ci")
        );
        let lambda =
            request_with_authorizer(serde_json::json!({"lambda": {"principalId": "tenant-7"}}));
        assert_eq!(owner(&lambda), Owner::authenticated("tenant-7"));
    }

    #[test]
    fn a_request_without_an_identity_is_anonymous() {
        let claims_without_sub = request_with_authorizer(
            serde_json::json!({"jwt": {"claims": {"aud": "x"}, "scopes": []}}),
        );
        assert_eq!(owner(&claims_without_sub), Owner::anonymous());
        assert_eq!(owner(&Request::default()), Owner::anonymous());
    }

    #[test]
    fn a_deadline_already_past_falls_back_to_the_default_invocation_time() {
        let now = Timestamp::from_millis(1_795_000_000_000);
        let given = now.saturating_add(Duration::from_secs(12));
        assert_eq!(invocation_deadline(now, given.as_millis()), given);
        assert_eq!(
            invocation_deadline(now, 600_000),
            now.saturating_add(FALLBACK_INVOCATION_TIME)
        );
    }
}
