//! The JSON API's OpenAPI 3.1 document, generated from the handlers (`#[utoipa::path]` in
//! api.rs) and the types they answer with, so the document and the API cannot disagree: a
//! route exists only if its handler is registered through `routes!`, which also documents it.
//! What is written here is what no type says: the title, how to authenticate, the error body,
//! and the bounds of the query and path parameters.

use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToResponse, ToSchema};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "handoff operator API",
        version = "1",
        description = "Jobs, dead letters, connectors, cross-references and mappings of a running \
            handoff. Authenticate with `Authorization: Bearer <token>` (a `[dashboard] tokens` \
            entry) or the dashboard's session cookie plus `X-CSRF-Token` on POST; with no users \
            and no tokens configured the API is open. Errors are `{\"error\": {\"code\", \
            \"message\"}}`."
    ),
    servers((url = "/")),
    components(schemas(ErrorDetail), responses(Error)),
    modifiers(&Security),
    security(("bearer" = []), ("session" = []))
)]
pub struct ApiDoc;

/// Bearer tokens and the dashboard's session cookie.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(
                crate::dashboard::auth::COOKIE,
            ))),
        );
    }
}

/// An error: a stable code and a message.
#[derive(Debug, Serialize, ToSchema, ToResponse)]
#[response(description = "An error")]
pub struct Error {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable reason: bad_request, bad_filter, not_found, wrong_state, cannot_advance,
    /// method_not_allowed, unsupported_media_type, invalid_body, store_unavailable,
    /// unauthorized, forbidden, …
    pub code: String,
    pub message: String,
}

/// Parameter schemas that say more than their Rust type.
pub mod schema {
    use utoipa::openapi::schema::{AnyOfBuilder, Object, ObjectBuilder, Schema, Type};
    use utoipa::openapi::{KnownFormat, SchemaFormat};

    fn text() -> ObjectBuilder {
        ObjectBuilder::new().schema_type(Type::String)
    }

    /// A job state, or empty for any.
    pub fn state_filter() -> Object {
        let states = std::iter::once("")
            .chain(crate::queue::State::ALL.iter().map(|s| s.as_str()))
            .map(str::to_owned);
        text()
            .enum_values(Some(states))
            .description(Some(
                "ready, leased, retrying, parked, held, dead, done, skipped; empty: any state",
            ))
            .build()
    }

    /// A job id: any 64-bit unsigned number.
    pub fn job_id() -> Object {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(0usize))
            .maximum(Some(u64::MAX as usize))
            .description(Some("job id"))
            .build()
    }

    /// Any 64-bit unsigned number (a run id, a row's place).
    pub fn number() -> Object {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(0usize))
            .maximum(Some(u64::MAX as usize))
            .build()
    }

    /// A date, an RFC 3339 time, or empty for any time.
    pub fn since() -> Schema {
        let format = |known| {
            text()
                .format(Some(SchemaFormat::KnownFormat(known)))
                .build()
        };
        Schema::AnyOf(
            AnyOfBuilder::new()
                .item(format(KnownFormat::Date))
                .item(format(KnownFormat::DateTime))
                .item(text().max_length(Some(0)).build())
                .description(Some(
                    "created at or after (2026-11-23 or RFC 3339); empty: any time",
                ))
                .build(),
        )
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    fn document() -> Value {
        serde_json::to_value(crate::dashboard::api::document()).unwrap()
    }

    /// Every operation answers 200 (or 202) with a schema that says something (a named type), and
    /// documents its errors with the error body.
    #[test]
    fn every_operation_documents_what_it_answers() {
        let doc = document();
        let mut operations = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            assert!(path.starts_with("/api/v1/"), "{path}");
            for (method, operation) in item.as_object().unwrap() {
                operations += 1;
                // 200, or 202 for work that goes on in the background.
                let success = ["200", "202"]
                    .into_iter()
                    .find(|code| operation["responses"].get(*code).is_some())
                    .unwrap_or("200");
                let ok = &operation["responses"][success]["content"]["application/json"]["schema"];
                assert!(
                    ok["$ref"].is_string(),
                    "{method} {path}: {success} has no named schema: {ok}"
                );
                let errors: Vec<&String> = operation["responses"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .filter(|code| *code != success)
                    .collect();
                assert!(errors.iter().any(|c| *c == "401") && errors.iter().any(|c| *c == "403"));
                for code in errors {
                    assert_eq!(
                        operation["responses"][code]["$ref"], "#/components/responses/Error",
                        "{method} {path} {code}"
                    );
                }
            }
        }
        assert_eq!(operations, 26, "{doc}");
        let error =
            &doc["components"]["responses"]["Error"]["content"]["application/json"]["schema"];
        assert_eq!(error["required"], serde_json::json!(["error"]), "{error}");
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    }

    /// The parameters keep the bounds the handlers enforce.
    #[test]
    fn parameters_carry_their_bounds() {
        let doc = document();
        let params = doc["paths"]["/api/v1/jobs"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .clone();
        let param = |name: &str| {
            params
                .iter()
                .find(|p| p["name"] == name)
                .unwrap_or_else(|| panic!("no {name} in {params:?}"))["schema"]
                .clone()
        };
        assert_eq!(param("limit")["maximum"], 500);
        assert_eq!(param("limit")["minimum"], 1);
        assert!(
            param("state")["enum"]
                .as_array()
                .unwrap()
                .contains(&"".into())
        );
        assert_eq!(param("since")["anyOf"].as_array().unwrap().len(), 3);
        let id = &doc["paths"]["/api/v1/jobs/{id}"]["get"]["parameters"][0];
        assert_eq!((&id["name"], &id["in"]), (&"id".into(), &"path".into()));
        assert_eq!(id["required"], true);
    }
}
