//! The glue between the Lambda runtime and the handlers: event in, handler, response out. Each
//! function's `main` is one call to [`run`], Spillway's own and those of a crate of your own alike.

use std::time::Duration;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use lambda_runtime::LambdaEvent;

use crate::api::{self, ApiError, ApiResponse};
use crate::app::App;
use crate::config::{ApiAuth, Function};
use crate::domain::{Owner, Timestamp};
use crate::processor::Processors;

/// What [`run`] returns when the function cannot start or the runtime fails: a function's `main`
/// returns it too, and Lambda reports it as the function's init error.
pub use lambda_runtime::Error;

/// Runs `function` in Lambda until the runtime stops it: installs the log subscriber, builds the
/// [`App`] the function runs on from its environment ([`App::for_function`]) and serves the
/// runtime's invocations with [`intake`], [`status`] or [`consumer`].
///
/// `kinds` are added to the kinds the stack deploys (`webhook`, and `echo` and `sleep` when
/// `SPILLWAY_DEMO_KINDS` is on): Spillway's own functions pass [`Processors::new`], a crate of
/// your own its processors, to both its intake (which refuses a kind it does not know) and its
/// consumer. A custom kind named like a kind Spillway ships is refused: the function stops at
/// start with an error that names it, before it serves anything.
///
/// ```no_run
/// # use spillway_core::config::Function;
/// # use spillway_core::{kinds, lambda, processor::Processors};
/// # async fn start() -> Result<(), lambda::Error> {
/// lambda::run(Function::Consumer, Processors::new().with("shout", kinds::Echo)).await
/// # }
/// ```
pub async fn run(function: Function, kinds: Processors) -> Result<(), Error> {
    crate::logging::init();
    let app = App::for_function(function, kinds).await?;
    let app = &app;
    match function {
        Function::Intake => {
            lambda_http::run(lambda_http::service_fn(move |request| intake(app, request))).await
        }
        Function::Status => {
            lambda_http::run(lambda_http::service_fn(move |request| status(app, request))).await
        }
        Function::Consumer => {
            lambda_runtime::run(lambda_runtime::service_fn(move |event| {
                consumer(app, event)
            }))
            .await
        }
    }
}

/// The intake function: `POST /jobs` and `POST /jobs/batch`.
pub async fn intake(app: &App, request: Request) -> Result<Response<Body>, lambda_http::Error> {
    let Some(owner) = owner(&request, app.settings.api_auth) else {
        return Ok(unauthenticated(app));
    };
    let (headers, body) = (request.headers(), request.body());
    let response = if route(&request) == "POST /jobs/batch" {
        api::submit_batch(app, owner, headers, body).await
    } else {
        api::submit_job(app, owner, headers, body).await
    };
    Ok(into_lambda(response))
}

/// The status function: `GET /jobs/{id}`, `DELETE /jobs/{id}` and `GET /webhook-secret`.
pub async fn status(app: &App, request: Request) -> Result<Response<Body>, lambda_http::Error> {
    let Some(owner) = owner(&request, app.settings.api_auth) else {
        return Ok(unauthenticated(app));
    };
    if route(&request) == "GET /webhook-secret" {
        return Ok(into_lambda(api::webhook_secret(app, &owner).await));
    }
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

/// The route API Gateway matched (`GET /jobs/{id}`), or the method and path when it says none.
fn route(request: &Request) -> String {
    match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) if context.route_key.is_some() => {
            context.route_key.clone().unwrap_or_default()
        }
        _ => format!("{} {}", request.method(), request.uri().path()),
    }
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

/// The caller as API Gateway's authorizer established it, under the API's authorization `auth`:
/// an IAM principal, a JWT's issuer and subject, or, without authorization, the one anonymous
/// owner. `None` when the authorization the API declares left no identity on the request.
pub fn owner(request: &Request, auth: ApiAuth) -> Option<Owner> {
    if auth == ApiAuth::None {
        return Some(Owner::anonymous());
    }
    let Some(RequestContext::ApiGatewayV2(context)) = request.request_context_ref() else {
        return None;
    };
    let authorizer = context.authorizer.as_ref()?;
    match auth {
        ApiAuth::AwsIam => authorizer
            .iam
            .as_ref()
            .and_then(|iam| iam.user_arn.as_deref())
            .filter(|arn| !arn.is_empty())
            .map(Owner::iam),
        ApiAuth::Jwt => {
            let claims = &authorizer.jwt.as_ref()?.claims;
            let claim = |name| claims.get(name).filter(|value| !value.is_empty());
            Some(Owner::jwt(claim("iss")?, claim("sub")?))
        }
        ApiAuth::None => Some(Owner::anonymous()),
    }
}

fn unauthenticated(app: &App) -> Response<Body> {
    into_lambda(ApiError::Unauthenticated(app.settings.api_auth.as_str()).into_response())
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

    #[tokio::test]
    async fn intake_answers_the_batch_route_with_a_result_per_job() {
        let settings = crate::config::Settings {
            api_auth: ApiAuth::None,
            ..crate::testing::fast_settings()
        };
        let pipeline = crate::testing::MemoryPipeline::new(settings, crate::kinds::builtin());
        let request = |route: &str, path: &str, body: &str| {
            let event = serde_json::json!({
                "version": "2.0",
                "routeKey": route,
                "rawPath": path,
                "rawQueryString": "",
                "headers": {"content-type": "application/json"},
                "body": body,
                "requestContext": {
                    "accountId": "123456789012",
                    "apiId": "api-id",
                    "domainName": "id.execute-api.us-east-1.amazonaws.com",
                    "http": {"method": "POST", "path": path, "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1", "userAgent": "test"},
                    "requestId": "id",
                    "routeKey": route,
                    "stage": "$default",
                    "time": "12/Mar/2020:19:03:58 +0000",
                    "timeEpoch": 1_583_348_638_390_i64
                },
                "isBase64Encoded": false
            });
            lambda_http::request::from_str(&event.to_string()).unwrap()
        };
        let job = r#"{"kind":"echo","payload":1}"#;
        let batch = format!(r#"{{"jobs":[{job},{job}]}}"#);
        let response = intake(
            &pipeline.app,
            request("POST /jobs/batch", "/jobs/batch", &batch),
        )
        .await
        .unwrap();
        assert_eq!(response.status(), http::StatusCode::OK);
        let Body::Text(text) = response.body() else {
            panic!("a text body")
        };
        let answer: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(answer["results"][1]["status"], 202, "{answer}");
        let single = intake(&pipeline.app, request("POST /jobs", "/jobs", job))
            .await
            .unwrap();
        assert_eq!(single.status(), http::StatusCode::ACCEPTED);
    }

    #[test]
    fn the_owner_is_the_identity_the_apis_authorization_established() {
        let iam = request_with_authorizer(serde_json::json!({"iam": {
            "userArn": "arn:aws:sts::123456789012:assumed-role/orders/session-7"
        }}));
        assert_eq!(
            owner(&iam, ApiAuth::AwsIam),
            Some(Owner::iam("arn:aws:iam::123456789012:role/orders"))
        );
        let jwt = request_with_authorizer(serde_json::json!({"jwt": {
            "claims": {"iss": "https://idp.example", "sub": "user-42"}, "scopes": []
        }}));
        assert_eq!(
            owner(&jwt, ApiAuth::Jwt),
            Some(Owner::jwt("https://idp.example", "user-42"))
        );
        // An identity of another kind than the API declares is no identity.
        assert_eq!(owner(&jwt, ApiAuth::AwsIam), None);
        assert_eq!(owner(&iam, ApiAuth::Jwt), None);
    }

    #[test]
    fn a_request_without_an_identity_has_no_owner_unless_the_api_is_open() {
        let claims_without_sub = request_with_authorizer(
            serde_json::json!({"jwt": {"claims": {"iss": "https://idp.example"}, "scopes": []}}),
        );
        assert_eq!(owner(&claims_without_sub, ApiAuth::Jwt), None);
        assert_eq!(owner(&Request::default(), ApiAuth::AwsIam), None);
        assert_eq!(
            owner(&Request::default(), ApiAuth::None),
            Some(Owner::anonymous())
        );
        assert_eq!(
            owner(&claims_without_sub, ApiAuth::None),
            Some(Owner::anonymous()),
            "an open API names every caller alike"
        );
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
