//! `GET /api/v1/openapi.json` (issue 3, item 10): an OpenAPI 3 document that describes every
//! route the service answers, no more and no fewer.
//!
//! The routes the service answers are read from where actix gets them: the `.service(…)` calls
//! of `configure` in `src/routes/mod.rs` (with the `web::scope` prefix each sits under), and the
//! `#[get("…")]`-style attribute on each handler. So a route added there without its
//! `#[utoipa::path]` and its line in `ApiDoc` fails here, and so does a documented operation that
//! nothing answers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use reqwest::Method;
use serde_json::Value;

use crate::helpers::{Backend, TestApp, spawn_app};

/// An operation: `("POST", "/api/v1/cases/{case_ref}/grants")`.
type Operation = (String, String);

const OPENAPI_PATH: &str = "/api/v1/openapi.json";
const HTTP_METHODS: [&str; 7] = ["get", "post", "put", "patch", "delete", "head", "options"];

async fn fetch_document(app: &TestApp) -> Value {
    let response = app.get(OPENAPI_PATH).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    response.json().await.expect("the document is JSON")
}

fn documented_operations(document: &Value) -> BTreeSet<Operation> {
    let paths = document["paths"]
        .as_object()
        .expect("the document has paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            HTTP_METHODS
                .iter()
                .filter(|method| item.get(**method).is_some())
                .map(|method| (method.to_uppercase(), path.clone()))
        })
        .collect()
}

/// Every route `configure` mounts, read from the source the way actix reads it.
fn served_operations() -> BTreeSet<Operation> {
    let routes = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/routes");
    let mod_rs = std::fs::read_to_string(routes.join("mod.rs")).unwrap();
    let configure = function_body(&mod_rs, "pub fn configure(");
    for unsupported in [".route(", "web::resource(", ".configure(", "web::get()"] {
        assert!(
            !configure.contains(unsupported),
            "`configure` uses `{unsupported}`, which this test cannot read: mount handlers with \
             `.service(module::handler)` and an actix method attribute, or teach this test"
        );
    }
    mounted_handlers(configure)
        .into_iter()
        .map(|(prefix, module, handler)| {
            let source = std::fs::read_to_string(routes.join(format!("{module}.rs"))).unwrap();
            let (method, path) = route_attribute(&source, &handler)
                .unwrap_or_else(|| panic!("no actix route attribute on {module}::{handler}"));
            (method, format!("{prefix}{path}"))
        })
        .collect()
}

/// The text from `signature` to the end of that function (its braces balanced).
fn function_body<'a>(source: &'a str, signature: &str) -> &'a str {
    let start = source.find(signature).expect("the function exists");
    let open = start + source[start..].find('{').unwrap();
    let mut depth = 0;
    for (offset, character) in source[open..].char_indices() {
        match character {
            '{' => depth += 1,
            '}' if depth == 1 => return &source[open..open + offset],
            '}' => depth -= 1,
            _ => {}
        }
    }
    panic!("unbalanced braces after {signature}")
}

/// `(scope prefix, module, handler)` for each `.service(module::handler)`. A `web::scope("p")`
/// applies its prefix to the services chained on it, at the same parenthesis depth.
fn mounted_handlers(configure: &str) -> Vec<(String, String, String)> {
    let mut mounted = Vec::new();
    let mut scopes: Vec<(usize, String)> = Vec::new();
    let mut depth = 0;
    for (index, character) in configure.char_indices() {
        let rest = &configure[index..];
        match character {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                scopes.retain(|(level, _)| *level <= depth);
            }
            _ => {}
        }
        let prefix = scopes.last().map_or("", |(_, prefix)| prefix.as_str());
        if let Some(literal) = rest.strip_prefix("web::scope(\"") {
            let scope = &literal[..literal.find('"').unwrap()];
            scopes.push((depth, format!("{prefix}{scope}")));
        } else if let Some(argument) = rest.strip_prefix(".service(") {
            let argument = argument[..argument.find([')', '(']).unwrap()].trim();
            if let Some((module, handler)) = argument.split_once("::")
                && !argument.starts_with("web::")
            {
                mounted.push((prefix.to_owned(), module.to_owned(), handler.to_owned()));
            }
        }
    }
    mounted
}

/// The method and path of the actix attribute (`#[post("/cases/{case_ref}/grants")]`) that sits
/// above `pub async fn handler(`, among that handler's attributes.
fn route_attribute(source: &str, handler: &str) -> Option<(String, String)> {
    let function = source.find(&format!("pub async fn {handler}("))?;
    let attributes = &source[..function];
    let item_start = attributes.rfind("\n}").map_or(0, |end| end + 2);
    attributes[item_start..].lines().rev().find_map(|line| {
        let line = line.trim();
        ["get", "post", "put", "patch", "delete", "head"]
            .iter()
            .find_map(|method| {
                let path = line.strip_prefix(&format!("#[{method}(\""))?;
                let path = path.strip_suffix("\")]")?;
                Some((method.to_uppercase(), path.to_owned()))
            })
    })
}

/// Every `"$ref"` in the document, wherever it sits.
fn references(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref") {
                found.push(reference.clone());
            }
            map.values().for_each(|inner| references(inner, found));
        }
        Value::Array(items) => items.iter().for_each(|inner| references(inner, found)),
        _ => {}
    }
}

/// The path with a placeholder for each parameter.
fn concrete_path(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "AAAA-AAAA-AAAA"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Sends the operation with a placeholder for each path parameter, no body and no session.
async fn call(app: &TestApp, (method, path): &Operation) -> (u16, Value) {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let response = app.request(method, &concrete_path(path)).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn the_document_is_openapi_3_json(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };

    let document = fetch_document(&app).await;

    let version = document["openapi"].as_str().expect("an `openapi` version");
    assert!(version.starts_with("3."), "{version}");
    assert_eq!(document["info"]["title"], "incident-vault");
    assert!(document["components"]["schemas"]["ApiError"].is_object());
}

async fn every_route_the_service_serves_is_documented_and_nothing_else(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let served = served_operations();

    let documented = documented_operations(&fetch_document(&app).await);

    assert!(served.len() >= 24, "the source reading found too little");
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let not_served: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty() && not_served.is_empty(),
        "served but not in /api/v1/openapi.json (add `#[utoipa::path]` and a line in \
         `routes::openapi::ApiDoc`): {undocumented:?}; documented but not mounted: {not_served:?}"
    );
}

async fn every_documented_operation_is_answered_by_a_route(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let documented = documented_operations(&fetch_document(&app).await);

    let mut unanswered = Vec::new();
    for operation in &documented {
        let (status, body) = call(&app, operation).await;
        if status == 404 && body["error"] == "not_found" {
            unanswered.push(operation.clone());
        }
    }

    assert!(
        unanswered.is_empty(),
        "documented, but only the default 404 answers: {unanswered:?}"
    );
}

/// Every documented address asked with a method it does not take answers 405, and its `Allow`
/// is exactly the documented methods, plus HEAD where (and only where) HEAD is answered.
async fn every_other_method_on_a_documented_address_is_a_405_with_its_allow(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let documented = documented_operations(&fetch_document(&app).await);
    let mut by_path: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (method, path) in documented {
        by_path.entry(path).or_default().insert(method);
    }

    let mut checked = 0;
    for (path, methods) in &by_path {
        let concrete = concrete_path(path);
        let head = app.request(Method::HEAD, &concrete).await;
        let head_answered = head.status() != 405;
        for other in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            if methods.contains(other) {
                continue;
            }
            let method = Method::from_bytes(other.as_bytes()).unwrap();
            let response = app.request(method, &concrete).await;
            assert_eq!(response.status(), 405, "{other} {path}");
            let allow: BTreeSet<String> = response.headers()["allow"]
                .to_str()
                .unwrap()
                .split(", ")
                .map(str::to_owned)
                .collect();
            let mut expected = methods.clone();
            if head_answered {
                expected.insert("HEAD".to_owned());
            }
            assert_eq!(allow, expected, "{other} {path}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"], "method_not_allowed", "{other} {path}");
            checked += 1;
        }
    }
    assert!(checked >= 50, "only {checked} wrong methods were tried");
}

async fn the_session_schemes_are_declared_exactly_where_a_session_is_asked_for(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let document = fetch_document(&app).await;

    let mut wrong = Vec::new();
    for operation in documented_operations(&document) {
        let (status, body) = call(&app, &operation).await;
        let (method, path) = &operation;
        let declared = &document["paths"][path][method.to_lowercase()];
        let requirements: Vec<_> = declared["security"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_object)
            .collect();
        let names: BTreeSet<&str> = requirements
            .iter()
            .flat_map(|requirement| requirement.keys().map(String::as_str))
            .collect();
        let both = names == BTreeSet::from(["session_cookie", "session_token"]);
        // An empty requirement makes the session optional (logout without one is a no-op).
        let optional = requirements
            .iter()
            .any(|requirement| requirement.is_empty());
        let asks_for_a_session = status == 401 && body["error"] == "no_session";
        let consistent = if asks_for_a_session {
            both && !optional && declared["responses"]["401"].is_object()
        } else {
            names.is_empty() || (both && optional)
        };
        if !consistent {
            wrong.push((operation.clone(), status, names));
        }
    }

    assert!(
        wrong.is_empty(),
        "security declared where no session is asked for, or missing where it is: {wrong:?}"
    );
}

async fn every_reference_resolves_and_every_error_has_the_api_error_body(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };

    let document = fetch_document(&app).await;

    let mut found = Vec::new();
    references(&document, &mut found);
    let schemas = &document["components"]["schemas"];
    for reference in &found {
        let name = reference
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("an unexpected reference: {reference}"));
        assert!(schemas[name].is_object(), "{reference} does not resolve");
    }
    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(schemes["session_token"]["scheme"], "bearer");
    assert_eq!(schemes["session_cookie"]["in"], "cookie");
    assert_eq!(schemes["session_cookie"]["name"], "__Host-iv_session");
    for (method, path) in documented_operations(&document) {
        let declared = &document["paths"][&path][method.to_lowercase()];
        let responses = declared["responses"].as_object().unwrap();
        assert!(
            responses.keys().any(|status| status.starts_with('2')),
            "{method} {path} documents no success"
        );
        for (status, response) in responses
            .iter()
            .filter(|(status, _)| status.as_str() >= "400")
        {
            assert_eq!(
                response["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/ApiError",
                "{method} {path} {status}"
            );
        }
    }
}

/// A route that can fail inside the database also documents the 503 it gives while the database is
/// away, beside its own 503 (`busy`, `intake_saturated`) where it has one.
async fn every_route_that_can_fail_in_the_database_documents_database_unavailable(
    backend: Backend,
) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };

    let document = fetch_document(&app).await;

    let mut with_internal_error = 0;
    let mut busy_kept = 0;
    for (method, path) in documented_operations(&document) {
        let responses = &document["paths"][&path][method.to_lowercase()]["responses"];
        if responses["500"].is_null() {
            continue;
        }
        with_internal_error += 1;
        let unavailable = responses["503"]["description"].as_str().unwrap_or_default();
        assert!(
            unavailable.contains("`database_unavailable`") && unavailable.contains("Retry-After"),
            "{method} {path}: 503 is {unavailable:?}"
        );
        assert_eq!(
            unavailable.matches("`database_unavailable`").count(),
            1,
            "{method} {path}"
        );
        if unavailable.contains("`busy`") || unavailable.contains("`intake_saturated`") {
            busy_kept += 1;
        }
    }
    assert!(
        with_internal_error >= 15,
        "{with_internal_error} routes with a 500"
    );
    let report = &document["paths"]["/api/v1/reports"]["post"]["responses"]["503"]["description"];
    assert!(
        report.as_str().unwrap().contains("`intake_saturated`"),
        "the report route's own 503 was replaced: {report}"
    );
    assert!(busy_kept >= 5, "{busy_kept} routes kept their own 503");
}

crate::on_both_backends!(
    every_route_that_can_fail_in_the_database_documents_database_unavailable,
    the_document_is_openapi_3_json,
    every_route_the_service_serves_is_documented_and_nothing_else,
    every_documented_operation_is_answered_by_a_route,
    every_other_method_on_a_documented_address_is_a_405_with_its_allow,
    the_session_schemes_are_declared_exactly_where_a_session_is_asked_for,
    every_reference_resolves_and_every_error_has_the_api_error_body,
);
