//! The HTTP API of a deployed stack, as API Gateway runs it for a Lambda proxy integration
//! (payload format 2.0): a request is matched against the template's routes, refused when the
//! route wants IAM authorization and the caller has none, and otherwise handed to the route's
//! function as the event API Gateway builds, with the caller's identity in the authorizer
//! context. Throttling and the signature check itself are API Gateway's, and not emulated.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::deployment::{HttpApi, Route};
use crate::lambda::LambdaFunction;

/// Who calls the API.
#[derive(Debug, Clone)]
pub enum ApiCaller {
    /// No signature, no token.
    Anonymous,
    /// A caller that presented a valid JWT with these claims.
    Jwt {
        /// `iss`.
        issuer: String,
        /// `sub`.
        subject: String,
        /// `aud`.
        audience: String,
    },
    /// A caller that signed with SigV4 as this IAM principal.
    Iam {
        /// The principal's ARN (`userArn` in the authorizer context).
        arn: String,
        /// The access key it signed with.
        access_key: String,
        /// Its account.
        account: String,
    },
}

/// What API Gateway answered.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: u16,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    pub body: String,
    /// Why the function gave no answer, when API Gateway answered 500 for it.
    pub function_error: Option<String>,
}

impl std::fmt::Display for ApiResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.body)?;
        if let Some(error) = &self.function_error {
            write!(f, "\n{error}")?;
        }
        Ok(())
    }
}

impl ApiResponse {
    /// The body, parsed.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("a JSON body ({e}): {}", self.body))
    }
}

/// An HTTP API in front of the functions that serve its routes.
#[derive(Debug)]
pub struct Gateway<'a> {
    api: HttpApi,
    account: String,
    functions: BTreeMap<String, &'a LambdaFunction>,
}

impl<'a> Gateway<'a> {
    /// The API `api`, whose routes' functions are among `functions`.
    pub fn new(api: &HttpApi, account: &str, functions: &[&'a LambdaFunction]) -> Self {
        let functions = functions
            .iter()
            .map(|f| (f.logical_id.clone(), *f))
            .collect::<BTreeMap<_, _>>();
        for route in &api.routes {
            assert!(
                functions.contains_key(&route.function),
                "route {} {} goes to {}, which the test did not start",
                route.method,
                route.path,
                route.function
            );
            assert_eq!(route.payload_format_version, "2.0");
        }
        Self {
            api: api.clone(),
            account: account.to_owned(),
            functions,
        }
    }

    /// Sends `method path?query` with `headers` and `body` as `caller`.
    pub async fn request(
        &self,
        caller: &ApiCaller,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> ApiResponse {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let Some((route, path_parameters)) = self.route(method, path) else {
            return gateway_answer(404, "Not Found");
        };
        let authorizer = match (route.authorization.as_str(), caller) {
            ("NONE", _) => None,
            ("AWS_IAM", ApiCaller::Anonymous | ApiCaller::Jwt { .. }) => {
                return gateway_answer(403, "Forbidden");
            }
            ("JWT", ApiCaller::Anonymous | ApiCaller::Iam { .. }) => {
                return gateway_answer(401, "Unauthorized");
            }
            (
                "JWT",
                ApiCaller::Jwt {
                    issuer,
                    subject,
                    audience,
                },
            ) => Some(json!({"jwt": {
                "claims": {"iss": issuer, "sub": subject, "aud": audience},
                "scopes": null
            }})),
            (
                "AWS_IAM",
                ApiCaller::Iam {
                    arn,
                    access_key,
                    account,
                },
            ) => Some(json!({"iam": {
                "accessKey": access_key,
                "accountId": account,
                "callerId": arn.rsplit('/').next().unwrap_or_default(),
                "cognitoIdentity": null,
                "principalOrgId": null,
                "userArn": arn,
                "userId": arn.rsplit('/').next().unwrap_or_default()
            }})),
            (other, _) => panic!("the gateway emulation does not model {other} authorization"),
        };
        let event = self.event(
            route,
            path,
            query,
            &path_parameters,
            headers,
            body,
            authorizer,
        );
        self.invoke(route, &event).await
    }

    /// Hands `method target`, with no headers and no body, to its route's function with no caller
    /// identity at all, as a route added without authorization, or a direct invocation, would.
    pub async fn request_without_identity(&self, method: &str, target: &str) -> ApiResponse {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let (route, path_parameters) = self
            .route(method, path)
            .unwrap_or_else(|| panic!("no route for {method} {path}"));
        let event = self.event(route, path, query, &path_parameters, &[], None, None);
        self.invoke(route, &event).await
    }

    /// The route's function's answer, as HTTP; a function error is API Gateway's 500.
    async fn invoke(&self, route: &Route, event: &Value) -> ApiResponse {
        match self.functions[&route.function].invoke(event).await {
            Ok(response) => proxy_response(&response),
            Err(error) => ApiResponse {
                function_error: Some(error),
                ..gateway_answer(500, "Internal Server Error")
            },
        }
    }

    fn route(&self, method: &str, path: &str) -> Option<(&Route, Map<String, Value>)> {
        self.api.routes.iter().find_map(|route| {
            if route.method != method {
                return None;
            }
            let template: Vec<&str> = route.path.split('/').collect();
            let actual: Vec<&str> = path.split('/').collect();
            if template.len() != actual.len() {
                return None;
            }
            let mut parameters = Map::new();
            for (pattern, segment) in template.iter().zip(&actual) {
                match pattern.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                    Some(name) if !segment.is_empty() => {
                        parameters.insert(name.to_owned(), json!(segment));
                    }
                    Some(_) => return None,
                    None if pattern == segment => {}
                    None => return None,
                }
            }
            Some((route, parameters))
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn event(
        &self,
        route: &Route,
        path: &str,
        query: &str,
        path_parameters: &Map<String, Value>,
        headers: &[(&str, &str)],
        body: Option<&str>,
        authorizer: Option<Value>,
    ) -> Value {
        let route_key = format!("{} {}", route.method, route.path);
        let mut header_map = Map::new();
        header_map.insert("host".to_owned(), json!(self.domain()));
        header_map.insert("user-agent".to_owned(), json!("spillway-deployment-test"));
        for (name, value) in headers {
            header_map.insert(name.to_ascii_lowercase(), json!(value));
        }
        let mut event = json!({
            "version": "2.0",
            "routeKey": route_key,
            "rawPath": path,
            "rawQueryString": query,
            "headers": header_map,
            "requestContext": {
                "accountId": self.account,
                "apiId": self.api.id,
                "domainName": self.domain(),
                "domainPrefix": self.api.id,
                "http": {
                    "method": route.method,
                    "path": path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": "192.0.2.10",
                    "userAgent": "spillway-deployment-test"
                },
                "requestId": uuid::Uuid::now_v7().to_string(),
                "routeKey": route_key,
                "stage": "$default",
                "time": "02/Dec/2026:12:00:00 +0000",
                "timeEpoch": 1_796_212_800_000_i64
            },
            "isBase64Encoded": false
        });
        if !query.is_empty() {
            let parameters: Map<String, Value> = query
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .map(|(k, v)| (k.to_owned(), json!(v)))
                .collect();
            event["queryStringParameters"] = Value::Object(parameters);
        }
        if !path_parameters.is_empty() {
            event["pathParameters"] = Value::Object(path_parameters.clone());
        }
        if let Some(authorizer) = authorizer {
            event["requestContext"]["authorizer"] = authorizer;
        }
        if let Some(body) = body {
            event["body"] = json!(body);
        }
        event
    }

    fn domain(&self) -> String {
        format!("{}.execute-api.us-east-1.amazonaws.com", self.api.id)
    }
}

/// A payload 2.0 proxy response as API Gateway turns it into HTTP.
fn proxy_response(response: &Value) -> ApiResponse {
    let headers = response["headers"]
        .as_object()
        .map(|headers| {
            headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_ascii_lowercase(),
                        v.as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    ApiResponse {
        status: u16::try_from(response["statusCode"].as_u64().unwrap_or(200)).unwrap(),
        headers,
        body: response["body"].as_str().unwrap_or_default().to_owned(),
        function_error: None,
    }
}

/// An answer API Gateway gives itself, without calling a function.
fn gateway_answer(status: u16, message: &str) -> ApiResponse {
    ApiResponse {
        status,
        headers: BTreeMap::from([("content-type".to_owned(), "application/json".to_owned())]),
        body: json!({ "message": message }).to_string(),
        function_error: None,
    }
}
