//! The OpenAPI 3.1 document of the HTTP API (`GET /openapi.json`). Each operation comes from the
//! `#[utoipa::path]` of its handler, registered together with its route in `http::api`, so
//! the document cannot list an endpoint the router does not serve, nor miss one it does. What no
//! handler's types say is written here once: the document's header, the security schemes, the
//! error bodies, the OAuth forms (read parameter by parameter, not into a type) and the JWKS.

use std::sync::Arc;

use axum::Extension;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::schema::{
    ArrayBuilder, ComponentsBuilder, ObjectBuilder, OneOfBuilder, Schema, Type,
};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{
    Components, InfoBuilder, LicenseBuilder, OpenApi, OpenApiBuilder, Ref, RefOr,
};
use utoipa::{PartialSchema, ToSchema};

use super::error::ErrorAnswer;
use super::oauth::{self, OAuthErrorAnswer};
use crate::access::answer::{DeniedAnswer, Introspection};
use crate::identity::ASSERTION_TYPE;
use crate::token::AccessClaims;

/// The serialized document, shared by every request for it.
#[derive(Debug, Clone)]
pub struct Document(pub Arc<str>);

/// `GET /openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "This document (OpenAPI 3.1).", body = Object)),
)]
pub async fn document(Extension(Document(json)): Extension<Document>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        json.to_string(),
    )
        .into_response()
}

/// The document before the operations are added: what the handlers cannot say.
pub fn base() -> OpenApi {
    let info = InfoBuilder::new()
        .title("jitgate")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "Just-in-time access tokens decided by Cedar policies. Errors of the `/v1` API are \
             `Error` bodies; the `/oauth2` endpoints answer RFC 6749 §5.2 `OAuthError` bodies.",
        ))
        .license(Some(
            LicenseBuilder::new()
                .name("Apache-2.0")
                .identifier(Some("Apache-2.0"))
                .build(),
        ))
        .build();
    let tags = [
        (
            "access",
            "Asking for access: the decision, and the token when allowed.",
        ),
        (
            "approvals",
            "Escalated requests: approvers answer, requesters mint.",
        ),
        (
            "oauth",
            "The OAuth 2.0 surface: token, introspection, revocation.",
        ),
        (
            "tokens",
            "Revocation and introspection for authenticated callers.",
        ),
        ("audit", "The audit trail and its signed head."),
        (
            "keys",
            "What verifiers read: the JWKS and the server metadata.",
        ),
        (
            "operations",
            "Policies, replicas, health, metrics and this document.",
        ),
    ]
    .map(|(name, description)| {
        TagBuilder::new()
            .name(name)
            .description(Some(description))
            .build()
    });
    OpenApiBuilder::new()
        .info(info)
        .tags(Some(tags))
        .components(Some(components()))
        .build()
}

fn components() -> Components {
    let mut schemas = Vec::new();
    with_nested::<ErrorAnswer>(&mut schemas);
    with_nested::<OAuthErrorAnswer>(&mut schemas);
    with_nested::<DeniedAnswer>(&mut schemas);
    let refusal = OneOfBuilder::new()
        .item(Ref::from_schema_name(DeniedAnswer::name()))
        .item(Ref::from_schema_name(ErrorAnswer::name()))
        .description(Some(
            "A 403: denied by the policies (`DeniedAnswer`, with the reasons), or the caller may \
             not do this (`Error`: `forbidden`, `revoked`).",
        ));
    let mut components = ComponentsBuilder::new()
        .schemas_from_iter(schemas)
        .schema("Refusal", refusal)
        .schema("JwkSet", jwk_set())
        .schema("TokenRequest", token_request())
        .schema("ClientTokenParameter", client_token_parameter())
        .build();
    components.add_security_schemes_from_iter([
        (
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An identity token from a trusted issuer, or a service API key (`jg_…`).",
                    ))
                    .build(),
            ),
        ),
        (
            "client_secret_basic",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "An OAuth client: the API key's name and the key (RFC 6749 §2.3.1).",
                    ))
                    .build(),
            ),
        ),
    ]);
    components
}

/// RFC 7662: `active` alone, or beside every claim of a live token. The derive would say "the
/// claims or null" of the flattened `Option`, which `{"active": false}` does not match.
impl PartialSchema for Introspection {
    fn schema() -> RefOr<Schema> {
        let mut answer = ObjectBuilder::new()
            .description(Some(
                "RFC 7662: `{\"active\": false}` alone, or the claims of a live token.",
            ))
            .property("active", ObjectBuilder::new().schema_type(Type::Boolean))
            .required("active")
            .property("token_type", string("`Bearer` or `DPoP`, for a live token"));
        if let RefOr::T(Schema::Object(claims)) = AccessClaims::schema() {
            for (name, claim) in claims.properties {
                answer = answer.property(name, claim);
            }
        }
        answer.into()
    }
}

impl ToSchema for Introspection {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        AccessClaims::schemas(schemas);
    }
}

/// `T` and every schema it refers to, for the components.
fn with_nested<T: ToSchema>(schemas: &mut Vec<(String, RefOr<Schema>)>) {
    schemas.push((T::name().into_owned(), T::schema()));
    T::schemas(schemas);
}

fn string(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
}

/// The client authentication parameters every OAuth form may carry (RFC 6749 §2.3.1,
/// RFC 7523 §2.2); the `Authorization` header is the other way.
fn with_client_parameters(form: ObjectBuilder) -> ObjectBuilder {
    form.property(
        "client_id",
        string("client_secret_post, private_key_jwt: the API key's name"),
    )
    .property("client_secret", string("client_secret_post: the API key"))
    .property(
        "client_assertion_type",
        string("private_key_jwt").enum_values(Some([ASSERTION_TYPE])),
    )
    .property(
        "client_assertion",
        string("private_key_jwt: a JWT signed with a key of the client's `jwks` (RFC 7523)"),
    )
}

/// The form of `POST /oauth2/token`.
fn token_request() -> ObjectBuilder {
    let form = ObjectBuilder::new()
        .description(Some(
            "Client credentials, token exchange (RFC 8693) or polling an escalated request \
             (OpenID CIBA). The access is asked for as `authorization_details` or `scope`.",
        ))
        .property(
            "grant_type",
            string("The grant").enum_values(Some(oauth::GRANT_TYPES)),
        )
        .required("grant_type")
        .property(
            "authorization_details",
            string(
                "RFC 9396: a JSON array with one object of type `jitgate_access` (`action`, \
                 `resource`, optional `scopes`, `duration`, `reason`, `context`)",
            ),
        )
        .property(
            "scope",
            string("Space-separated scopes, when they name one action and resource"),
        )
        .property(
            "subject_token",
            string("token exchange: the identity token"),
        )
        .property(
            "subject_token_type",
            string("token exchange").enum_values(Some(oauth::SUBJECT_TOKEN_TYPES)),
        )
        .property(
            "requested_token_type",
            string("token exchange").enum_values(Some([oauth::ACCESS_TOKEN_TYPE])),
        )
        .property(
            "auth_req_id",
            string("polling: the request id an `authorization_pending` answer named"),
        );
    with_client_parameters(form)
}

/// The form of `POST /oauth2/introspect` and `POST /oauth2/revoke`.
fn client_token_parameter() -> ObjectBuilder {
    let form = ObjectBuilder::new()
        .property("token", string("The access token"))
        .required("token")
        .property(
            "token_type_hint",
            string("Accepted and ignored: jitgate issues one kind of token"),
        );
    with_client_parameters(form)
}

/// RFC 7517 §5: the public keys, each a JWK with its `kid`.
fn jwk_set() -> ObjectBuilder {
    let key = ObjectBuilder::new()
        .property("kty", string("Key type"))
        .required("kty")
        .property("kid", string("Key id, the `kid` of the tokens it verifies"))
        .property("alg", string("Algorithm"))
        .property("use", string("`sig`"));
    ObjectBuilder::new()
        .property("keys", ArrayBuilder::new().items(key))
        .required("keys")
}
