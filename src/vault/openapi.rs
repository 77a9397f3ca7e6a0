//! The OpenAPI 3.1 document of the vault API, generated from the types the server reads and answers (`wire.rs`)
//! and the error codes it answers (`api.rs` [`ERROR_CODES`], [`Missing::ALL`]), so it cannot drift. Served at
//! `GET /v1/openapi.json`; committed as `docs/openapi.json` (a test compares the two).

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{json, Map, Value};

use super::api::{ErrorCode, ERROR_CODES, MAX_SUBJECT};
use super::engine::Missing;
use super::wire::{
    ErrorBody, Items, RevealAnswer, RevealRequest, SignedReceipt, Status, SubjectExport, TokenAnswer, TokenizeRequest,
    UnsealAnswer, UnsealRequest,
};

/// Where schemas are referenced from: the document's `components.schemas`.
const SCHEMAS: &str = "/components/schemas";

/// Request bodies (as the server reads them) and answers (as it writes them), each with its own generator.
struct Schemas {
    requests: SchemaGenerator,
    answers: SchemaGenerator,
}

impl Schemas {
    fn new() -> Schemas {
        let settings = SchemaSettings::draft2020_12().with(|s| s.definitions_path = SCHEMAS.into());
        Schemas {
            requests: settings.clone().for_deserialize().into_generator(),
            answers: settings.for_serialize().into_generator(),
        }
    }

    fn request<T: JsonSchema>(&mut self) -> Value {
        self.requests.subschema_for::<T>().to_value()
    }

    fn answer<T: JsonSchema>(&mut self) -> Value {
        self.answers.subschema_for::<T>().to_value()
    }

    /// Every named schema, requests' and answers'. A name both use is described by the answers' generator.
    fn into_components(mut self) -> Map<String, Value> {
        let mut all = self.requests.take_definitions(true);
        all.extend(self.answers.take_definitions(true));
        all.sort_keys();
        all
    }
}

/// The document (see the module docs).
pub fn document() -> Value {
    let mut schemas = Schemas::new();
    let error = schemas.answer::<ErrorBody>();
    let post = |id: &str, summary: &str, request: Value, answer: Value, ok: &str| {
        json!({
            "operationId": id,
            "summary": summary,
            "requestBody": { "required": true, "content": { "application/json": { "schema": request } } },
            "responses": responses(ok, answer, &error, true),
        })
    };
    let tokenize = post(
        "tokenize",
        "Tokenise a batch of values",
        schemas.request::<TokenizeRequest<'_>>(),
        schemas.answer::<Items<TokenAnswer>>(),
        "One token per item, in order; a `pan` item's also carries its brand and last four digits.",
    );
    let item_codes = Missing::ALL.iter().map(|m| format!("`{}`", m.code())).collect::<Vec<_>>().join(", ");
    let reveal_req = schemas.request::<RevealRequest<'_>>();
    let reveal_ans = schemas.answer::<Items<RevealAnswer>>();
    let detokenize = post(
        "detokenize",
        "Reveal the values of a batch of tokens (audited)",
        reveal_req.clone(),
        reveal_ans.clone(),
        &format!("One item per token, in order: its `value`, or an `error` whose `code` is one of {item_codes}."),
    );
    let mask = post(
        "mask",
        "Reveal the masked values of a batch of tokens (audited)",
        reveal_req,
        reveal_ans,
        &format!(
            "One item per token, in order: its `masked` value, or an `error` whose `code` is one of {item_codes}."
        ),
    );
    let subject_id = json!({
        "name": "id",
        "in": "path",
        "required": true,
        "description": format!("The data subject's id, percent-encoded (1 to {MAX_SUBJECT} bytes of UTF-8)."),
        "schema": { "type": "string", "minLength": 1, "maxLength": MAX_SUBJECT },
    });
    let export = schemas.answer::<SubjectExport>();
    let receipt = schemas.answer::<SignedReceipt>();
    let status = schemas.answer::<Status>();
    let mut unseal = post(
        "unseal",
        "Give one custodian's share to a sealed vault (key provider `shares`; the share is the credential)",
        schemas.request::<UnsealRequest>(),
        schemas.answer::<UnsealAnswer>(),
        "The share was taken: `sealed` until `need` distinct valid shares have been given.",
    );
    unseal["security"] = json!([]);
    let paths = json!({
        "/v1/tokenize": { "post": tokenize },
        "/v1/detokenize": { "post": detokenize },
        "/v1/mask": { "post": mask },
        "/v1/unseal": { "post": unseal },
        "/v1/subjects/{id}": {
            "parameters": [subject_id],
            "get": {
                "operationId": "exportSubject",
                "summary": "Export everything held for a data subject (GDPR Art. 15; audited)",
                "responses": responses("The subject's tokens the caller may export, and their reveals.", export, &error, false),
            },
            "delete": {
                "operationId": "eraseSubject",
                "summary": "Erase a data subject (GDPR Art. 17; audited)",
                "responses": responses("The signed erasure receipt.", receipt, &error, false),
            },
        },
        "/v1/ready": {
            "get": {
                "operationId": "ready",
                "summary": "Whether the vault can serve (not audited)",
                "responses": responses("The vault store answers: `{\"status\":\"ready\"}`.", status, &error, false),
            },
        },
        "/v1/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document (not audited)",
                "responses": responses("The OpenAPI 3.1 document of the vault API.", json!({ "type": "object" }), &error, false),
            },
        },
    });
    let mut components = Map::new();
    components.insert("schemas".into(), Value::Object(schemas.into_components()));
    components.insert(
        "securitySchemes".into(),
        json!({
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "A caller's API key: `Authorization: Bearer <key>` (one Authorization header).",
            },
            "mutualTLS": {
                "type": "mutualTLS",
                "description": "A client certificate whose subject alternative name is a caller's identity.",
            },
        }),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "veil vault API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Tokenise, detokenise and mask values in batches; export and erase data subjects. Every \
                            call is authenticated; every error answers `{\"error\":{\"code\",\"message\"}}` with a \
                            fixed `code`, and the refused item's `class` and `index` where it is about one item.",
            "license": { "name": "Apache-2.0", "identifier": "Apache-2.0" },
        },
        "security": [{ "bearer": [] }, { "mutualTLS": [] }],
        "paths": paths,
        "components": components,
    })
}

/// `200` with `ok` and its schema, then every error answer that can come of a call with (`body`) or without a
/// request body, by status.
fn responses(ok: &str, answer: Value, error: &Value, body: bool) -> Value {
    let mut out = Map::new();
    out.insert("200".into(), json!({ "description": ok, "content": { "application/json": { "schema": answer } } }));
    let codes: Vec<&ErrorCode> = ERROR_CODES.iter().filter(|e| body || !e.body).collect();
    for status in codes.iter().map(|e| e.status) {
        let key = status.to_string();
        if out.contains_key(&key) {
            continue;
        }
        let of_status: Vec<&str> = codes.iter().filter(|e| e.status == status).map(|e| e.code).collect();
        let listed = of_status.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ");
        let schema = json!({
            "allOf": [error, { "properties": { "error": { "properties": { "code": { "enum": of_status } } } } }],
        });
        let mut response = json!({
            "description": format!("`error.code`: {listed}."),
            "content": { "application/json": { "schema": schema } },
        });
        if status == 429 {
            response["headers"] = json!({
                "Retry-After": {
                    "description": "Seconds until the budget of new values allows the batch.",
                    "schema": { "type": "integer", "minimum": 1 },
                },
            });
        }
        out.insert(key, response);
    }
    Value::Object(out)
}
