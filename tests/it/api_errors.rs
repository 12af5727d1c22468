//! Every error of the JSON API is `{"error": {"code", "message"}}` with a JSON content type,
//! also those axum answers before a handler runs (issue 21: 7 of 13 probes got text or nothing).

use serde_json::Value;

use crate::support::TestApp;

async fn probe(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    json: Option<&str>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut request = app.client.request(method, app.url(path));
    if let Some(body) = json {
        request = request
            .header("content-type", "application/json")
            .body(body.to_owned());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.text().await.unwrap();
    assert!(
        content_type.starts_with("application/json"),
        "{path}: {status} {content_type:?} {text:?}"
    );
    let body: Value =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: not JSON: {text:?}"));
    assert!(
        body["error"]["code"].is_string()
            && body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
        "{path}: {body}"
    );
    (status, body, headers)
}

#[tokio::test]
async fn every_api_error_is_the_documented_json() {
    let app = TestApp::start().await;
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;

    let (status, body, _) = probe(&app, get.clone(), "/api/v1/jobs/not-a-number", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );
    assert!(
        body["error"]["message"].as_str().unwrap().contains("parse"),
        "{body}"
    );

    let (status, body, _) = probe(&app, get.clone(), "/api/v1/jobs?limit=-1", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );

    let (status, body, _) = probe(&app, get.clone(), "/api/v1/jobs/999999", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );

    let (status, body, _) = probe(&app, get.clone(), "/api/v1/no-such-thing", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );

    let (status, body, headers) = probe(&app, reqwest::Method::DELETE, "/api/v1/jobs", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (405, Some("method_not_allowed"))
    );
    assert!(headers.get("allow").is_some(), "405 keeps its Allow header");

    let (status, body, _) = probe(&app, post.clone(), "/api/v1/jobs/bulk", Some("{not json")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );

    let (status, body, _) = probe(&app, post.clone(), "/api/v1/xrefs", Some("{\"kind\": 7}")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("invalid_body"))
    );

    // Outside /api/ nothing changes: the dashboard's own 404 is not JSON.
    let page = app
        .client
        .get(app.url("/no-such-page"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 404);
    assert!(
        !page
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .starts_with("application/json")
    );
    app.stop().await;
}

/// A state or a date is one of the values the API document names; only an empty text means
/// "any". Blanks are not trimmed away into "any" (the fuzzer sent `state=%0C` and got 200).
#[tokio::test]
async fn a_named_filter_value_is_exactly_one_of_its_values() {
    let app = TestApp::start().await;
    let get = reqwest::Method::GET;
    for query in ["state=%0C", "state=%20ready", "since=%20", "since=%0C"] {
        let (status, body, _) =
            probe(&app, get.clone(), &format!("/api/v1/jobs?{query}"), None).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("bad_filter")),
            "{query}: {body}"
        );
    }
    for query in ["state=", "since=", "state=ready", "since=2026-11-23"] {
        let response = app
            .client
            .get(app.url(&format!("/api/v1/jobs?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{query}");
    }
    app.stop().await;
}
