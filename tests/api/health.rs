//! Liveness, readiness, unknown routes and the headers on every response.

use reqwest::Method;
use serde_json::Value;

use crate::helpers::{Backend, LOGS, TestDatabase, request_id, spawn_app, spawn_app_with};

async fn healthz_answers_ok(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };

    let response = app.get("/healthz").await;

    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-request-id"));
}

async fn readyz_reports_the_database_that_answers(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };

    let response = app.get("/readyz").await;

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let expected = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    assert_eq!(body["database"], expected);
}

async fn readyz_is_503_when_the_database_cannot_be_reached(backend: Backend) {
    let Some(mut app) = spawn_app(backend).await else {
        return;
    };
    app.store.close().await;

    let response = app.get("/readyz").await;

    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let refused = request_id(&response);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "database_unavailable");
    assert_eq!(
        app.get("/healthz").await.status(),
        200,
        "liveness does not depend on the database"
    );
    // A 503 is the service refusing for now, not failing: logged as a warning, so that a flood
    // of them does not bury the error log. Read once the server has stopped, from this request's
    // own lines.
    app.hang_up_and_stop().await;
    let lines = LOGS.lines_of_requests(std::slice::from_ref(&refused));
    assert!(
        lines
            .iter()
            .any(|line| line.contains("request refused for now")
                && line.contains("database_unavailable")
                && line.contains("\"level\":\"WARN\"")),
        "no warning for the 503: {lines:?}"
    );
}

/// Reachable is not enough: a database that lost this service's instance (swapped for an empty
/// one behind its back) is not ready.
async fn readyz_is_503_when_the_database_is_not_this_services(backend: Backend) {
    let Some(mut app) = spawn_app(backend).await else {
        return;
    };
    assert_eq!(app.get("/readyz").await.status(), 200);

    app.execute("DELETE FROM instance").await;
    let response = app.get("/readyz").await;

    assert_eq!(response.status(), 503);
    let refused = request_id(&response);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "database_unavailable");
    // The log says it as it is, a swapped or emptied database rather than a network fault; the
    // anonymous answer does not.
    assert!(!body["message"].as_str().unwrap().contains("instance"));
    app.hang_up_and_stop().await;
    let lines = LOGS.lines_of_requests(std::slice::from_ref(&refused));
    assert!(
        lines
            .iter()
            .any(|line| line.contains("holds no instance of this service")),
        "{lines:?}"
    );
}

async fn an_unknown_route_is_a_json_404_with_security_headers(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };

    let response = app.get("/api/v1/nothing-here").await;

    assert_eq!(response.status(), 404);
    let headers = response.headers().clone();
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["strict-transport-security"], "max-age=31536000");
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "not_found");
}

/// A route asked with a method it does not take says which it takes (RFC 9110): a client
/// developer who sent GET instead of POST learns that, not that nothing is there.
async fn a_known_route_with_another_method_is_a_405_naming_the_methods(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    for (method, path, allow) in [
        (Method::GET, "/api/v1/reports", "POST"),
        (Method::PUT, "/api/v1/intake", "GET, HEAD"),
        (Method::POST, "/healthz", "GET, HEAD"),
        (Method::DELETE, "/api/v1/cases/K7QM-3XTA-9PWD", "GET"),
        (Method::PATCH, "/api/v1/admin/desks", "GET, POST"),
        // Percent-encoded unreserved characters are the route, as the router decodes them.
        (Method::PUT, "/api/v1/%72eports", "POST"),
        (Method::POST, "/api/v1/%69ntake", "GET, HEAD"),
    ] {
        let response = app.request(method.clone(), path).await;

        assert_eq!(response.status(), 405, "{method} {path}");
        assert_eq!(response.headers()["allow"], allow, "{method} {path}");
        assert_eq!(response.headers()["cache-control"], "no-store");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "method_not_allowed", "{method} {path}");
        assert!(body["message"].as_str().unwrap().contains(allow), "{body}");
    }
    // Where no route is, whatever the method, nothing is there; a parameter matches one
    // non-empty segment, as the router's does.
    for (method, path) in [
        (Method::GET, "/api/v1/report"),
        (Method::POST, "/healthz/"),
        (Method::DELETE, "/api/v1/cases/"),
        (Method::GET, "/api/v1/cases/K7QM-3XTA-9PWD/extra"),
    ] {
        let response = app.request(method.clone(), path).await;
        assert_eq!(response.status(), 404, "{method} {path}");
        assert!(response.headers().get("allow").is_none(), "{method} {path}");
    }
}

/// HEAD is answered as GET without a body on the open routes: a load balancer that probes with
/// HEAD sees the service up.
async fn head_is_answered_wherever_get_is(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    for path in [
        "/healthz",
        "/readyz",
        "/api/v1/intake",
        "/api/v1/openapi.json",
    ] {
        let response = app
            .client
            .head(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();

        assert_eq!(response.status(), 200, "{path}");
        assert!(response.headers().contains_key("x-request-id"), "{path}");
    }
    // Not behind a session: a HEAD there must not run the handler (a case read is decrypted
    // and audited).
    let response = app
        .client
        .head(format!("{}/api/v1/cases", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET");
    // On the wire (a client library would not read a body after HEAD anyway): the head ends the
    // answer, with the length GET's body would have.
    let answer = app
        .raw_exchange(b"HEAD /healthz HTTP/1.1\r\nHost: vault\r\nConnection: close\r\n\r\n")
        .await;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(body.is_empty(), "{answer}");
}

crate::on_both_backends!(
    a_known_route_with_another_method_is_a_405_naming_the_methods,
    head_is_answered_wherever_get_is,
    healthz_answers_ok,
    readyz_reports_the_database_that_answers,
    readyz_is_503_when_the_database_cannot_be_reached,
    readyz_is_503_when_the_database_is_not_this_services,
    an_unknown_route_is_a_json_404_with_security_headers,
);

/// PostgreSQL only (SQLite has no statement time-out; its waits end at the lock timeout): a
/// query that runs past `database.statement_timeout_seconds`, here one kept waiting for a lock
/// with the lock timeout set far away, is cancelled by the server, so that `/readyz` answers a
/// load balancer's probe with 503 instead of hanging, and the log says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_query_past_the_statement_timeout_is_cancelled_with_503() {
    use sqlx::{Connection, Executor};
    let Some(app) = spawn_app_with(Backend::Postgres, |settings| {
        settings.database.lock_timeout_seconds = 600;
        settings.database.statement_timeout_seconds = 1;
    })
    .await
    else {
        return;
    };
    let TestDatabase::Postgres { url, .. } = &app.database else {
        unreachable!("a PostgreSQL database was asked for");
    };
    let mut holder = sqlx::PgConnection::connect(url).await.unwrap();
    holder.execute("BEGIN").await.unwrap();
    holder
        .execute("LOCK TABLE instance IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();

    let response = app.get("/readyz").await;
    holder.execute("ROLLBACK").await.unwrap();

    assert_eq!(response.status(), 503);
    let id = request_id(&response);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "database_unavailable");
    assert_eq!(app.get("/readyz").await.status(), 200);
    let lines = LOGS.lines_of_requests(std::slice::from_ref(&id));
    assert!(
        lines.iter().any(|line| line.contains("statement timeout")),
        "the log does not name the statement timeout: {lines:?}"
    );
}
