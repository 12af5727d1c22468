//! What operators and their tools see: the HTML dashboard (`pages`, one file per page, rendered
//! with maud), the JSON API (`api`, described by `openapi.json`; every error answered as JSON
//! by `json_errors`), both built on the typed values of `data`,
//! Prometheus metrics (`prometheus`), `/healthz` and `/readyz` (`health`), and who may use them
//! (`auth`, with login throttling in `throttle`).

pub mod api;
pub mod auth;
pub mod data;
pub mod health;
pub mod json_errors;
pub mod pages;
pub mod prometheus;
pub mod throttle;

#[cfg(test)]
mod tests {
    /// Every `/api/v1` route the code serves is in the OpenAPI document, and nothing else is.
    #[test]
    fn the_openapi_document_lists_exactly_the_api_routes() {
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("openapi.json")).expect("valid JSON");
        let mut documented: Vec<String> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, ops)| {
                ops.as_object()
                    .unwrap()
                    .keys()
                    .map(move |method| format!("{} {path}", method.to_uppercase()))
            })
            .collect();
        documented.sort();
        let mut served = Vec::new();
        for source in [include_str!("api.rs"), include_str!("../app.rs")] {
            let mut rest = source;
            while let Some(at) = rest.find(".route(") {
                rest = &rest[at + 7..];
                let close = [rest.find("))"), rest.find(".route(")]
                    .into_iter()
                    .flatten()
                    .min()
                    .unwrap_or(rest.len());
                let call: String = rest[..close].split_whitespace().collect();
                let path = call.split('"').nth(1).unwrap_or_default().to_owned();
                if path.starts_with("/api/v1/") && path != "/api/v1/openapi.json" {
                    for method in ["get", "post"] {
                        if call.contains(&format!("{method}(")) {
                            served.push(format!("{} {path}", method.to_uppercase()));
                        }
                    }
                }
            }
        }
        served.sort();
        assert_eq!(documented, served);
    }
}
