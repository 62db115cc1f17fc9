//! REST on the same port (PROTOCOL.md, "REST"): `GET /api/{method}/{arg}...`
//! and `GET /api/{method}?name=value` for read-only methods, `POST
//! /api/{method}` for any; the result as the body, errors as `{"error": ...}`
//! with a status for their code.

use super::*;

impl Post {
    /// A REST call: `GET /api/{method}/{arg}...` or `GET /api/{method}?name=value`
    /// for a read-only method, `POST /api/{method}` with a JSON array or
    /// object for any. Answered with the result as the body, or
    /// `{"error": {...}}` with the status of its code (PROTOCOL.md, "REST").
    pub(super) async fn rest(self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        if let Some(refused) = self.foreign(request.headers()) {
            return refused;
        }
        if let Some(auth) = &self.token {
            if !bearer(request.headers().get(header::AUTHORIZATION))
                .is_some_and(|t| auth.matches(t))
            {
                let mut response = rest_error(
                    StatusCode::UNAUTHORIZED,
                    &ErrorObject::new(
                        code::UNAUTHORIZED,
                        "unauthorized: this server requires `Authorization: Bearer <token>`",
                    ),
                );
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return response;
            }
        }
        let path = request.uri().path().trim_start_matches("/api/").to_owned();
        let mut segments = path.split('/').filter(|s| !s.is_empty()).map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(std::borrow::Cow::into_owned)
        });
        let method = match segments.next() {
            Some(Ok(method)) => method,
            _ => {
                return rest_error(
                    StatusCode::NOT_FOUND,
                    &ErrorObject::new(code::METHOD_NOT_FOUND, "name the method: `/api/{method}`"),
                );
            }
        };
        let Some(info) = self.endpoint.router.info(&method).copied() else {
            return rest_error(
                StatusCode::NOT_FOUND,
                &crate::service::method_not_found(&method),
            );
        };
        if info.streaming {
            return rest_error(
                StatusCode::BAD_REQUEST,
                &ErrorObject::new(
                    code::INVALID_REQUEST,
                    format!(
                        "`{method}` is a streaming method: REST has no channel for its items; call it over WebSocket (ws://HOST:PORT/ws) or framed TCP"
                    ),
                ),
            );
        }
        let params = if request.method() == Method::GET {
            if !info.read_only {
                let mut response = rest_error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    &ErrorObject::new(
                        code::INVALID_REQUEST,
                        format!(
                            "`{method}` may change state, so it has no GET route: call it with `POST /api/{method}`"
                        ),
                    ),
                );
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("POST"));
                return response;
            }
            let positional: Result<Vec<String>, _> = segments.collect();
            let Ok(positional) = positional else {
                return rest_error(
                    StatusCode::BAD_REQUEST,
                    &ErrorObject::new(
                        code::INVALID_PARAMS,
                        "a path argument is not valid UTF-8 once percent-decoded",
                    ),
                );
            };
            match rest_params(&info, positional, request.uri().query()) {
                Ok(params) => params,
                Err(error) => return rest_error(StatusCode::BAD_REQUEST, &error),
            }
        } else if request.method() == Method::POST {
            if !json_content_type(request.headers().get(header::CONTENT_TYPE)) {
                return rest_error(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    &ErrorObject::new(
                        code::INVALID_REQUEST,
                        "send the body as `Content-Type: application/json` (UTF-8)",
                    ),
                );
            }
            if announced_length(request.headers()).is_some_and(|len| len > self.max_body as u64) {
                return closing(rest_error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &ErrorObject::new(
                        code::FRAME_TOO_LARGE,
                        format!(
                            "the request body exceeds the maximum of {} bytes",
                            self.max_body
                        ),
                    ),
                ));
            }
            let collected = Limited::new(request.into_body(), self.max_body)
                .collect()
                .await
                .map(|body| body.to_bytes());
            match collected {
                Ok(body) if body_is_params(&body) => {
                    serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_default()
                }
                Ok(_) => {
                    return rest_error(
                        StatusCode::BAD_REQUEST,
                        &ErrorObject::new(
                            code::INVALID_PARAMS,
                            "the body must be a JSON array (by position) or object (by name)",
                        ),
                    );
                }
                Err(_) => {
                    return closing(rest_error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        &ErrorObject::new(
                            code::FRAME_TOO_LARGE,
                            format!(
                                "the request body exceeds the maximum of {} bytes",
                                self.max_body
                            ),
                        ),
                    ));
                }
            }
        } else {
            let mut response = rest_error(
                StatusCode::METHOD_NOT_ALLOWED,
                &ErrorObject::new(
                    code::INVALID_REQUEST,
                    "REST routes take GET (read-only methods) and POST",
                ),
            );
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
            return response;
        };
        let call =
            serde_json::json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 0});
        let body = Bytes::from(call.to_string());
        let authenticated = self.token.is_some();
        let answer = match self.exchange(body, authenticated).await {
            Ok(Some(answer)) => answer,
            Ok(None) => {
                return rest_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &ErrorObject::internal("no answer"),
                );
            }
            Err(gone) => return gone,
        };
        #[derive(serde::Deserialize)]
        struct Answer<'a> {
            #[serde(borrow)]
            result: Option<&'a serde_json::value::RawValue>,
            error: Option<ErrorObject>,
        }
        match serde_json::from_slice::<Answer<'_>>(&answer) {
            Ok(Answer {
                result: Some(result),
                ..
            }) => json_response(
                StatusCode::OK,
                Bytes::copy_from_slice(result.get().as_bytes()),
            ),
            Ok(Answer {
                error: Some(error), ..
            }) => {
                let status = rest_status(error.code);
                let mut response = rest_error(status, &error);
                if status == StatusCode::SERVICE_UNAVAILABLE {
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                }
                response
            }
            _ => rest_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &ErrorObject::internal("an answer without result or error"),
            ),
        }
    }
}

/// The params of a `GET` REST call: path segments by position, or the
/// query by name; each argument is text for a text parameter, JSON for any
/// other (`/api/hello/123` is the name `"123"`, `/api/add/4/5` two numbers).
fn rest_params(
    info: &crate::service::MethodInfo,
    positional: Vec<String>,
    query: Option<&str>,
) -> Result<serde_json::Value, ErrorObject> {
    let convert = |index: Option<usize>,
                   name: &str,
                   text: String|
     -> Result<serde_json::Value, ErrorObject> {
        let is_text = index
            .and_then(|i| info.text_params.get(i))
            .copied()
            .unwrap_or(false);
        if is_text {
            return Ok(serde_json::Value::String(text));
        }
        serde_json::from_str(&text).map_err(|_| {
            ErrorObject::new(
                code::INVALID_PARAMS,
                format!(
                    "parameter `{name}` is not a JSON value: `{}` (quote a string, or check the number)",
                    crate::message::quote(&text)
                ),
            )
        })
    };
    if !positional.is_empty() {
        let values = positional
            .into_iter()
            .enumerate()
            .map(|(i, text)| convert(Some(i), info.params.get(i).copied().unwrap_or("?"), text))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(serde_json::Value::Array(values));
    }
    let mut named = serde_json::Map::new();
    for (name, text) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let index = info.params.iter().position(|p| *p == name);
        let value = convert(index, &name, text.into_owned())?;
        named.insert(name.into_owned(), value);
    }
    Ok(serde_json::Value::Object(named))
}

/// Whether a REST body is a JSON array or object.
fn body_is_params(body: &[u8]) -> bool {
    matches!(
        serde_json::from_slice::<serde_json::Value>(body),
        Ok(serde_json::Value::Array(_) | serde_json::Value::Object(_))
    )
}

/// The HTTP status of a JSON-RPC error code on a REST route.
fn rest_status(code: i64) -> StatusCode {
    match code {
        code::INVALID_PARAMS | code::INVALID_REQUEST | code::PARSE_ERROR => StatusCode::BAD_REQUEST,
        code::UNAUTHORIZED => StatusCode::UNAUTHORIZED,
        code::METHOD_NOT_FOUND => StatusCode::NOT_FOUND,
        code::FRAME_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
        code::APPLICATION_ERROR => StatusCode::UNPROCESSABLE_ENTITY,
        code::SERVER_BUSY | code::SHUTTING_DOWN => StatusCode::SERVICE_UNAVAILABLE,
        code::DEADLINE_EXCEEDED => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A REST error: `{"error": {"code", "message", "data"}}` with `status`.
fn rest_error(status: StatusCode, error: &ErrorObject) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "error": error });
    json_response(status, Bytes::from(body.to_string()))
}
