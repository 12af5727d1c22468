//! What operators and their tools see: the HTML dashboard (`pages`, one file per page, rendered
//! with maud), the JSON API (`api`, its OpenAPI document generated from the handlers by `openapi`;
//! every error answered as JSON by `json_errors`), both built on the typed values of `data`,
//! Prometheus metrics (`prometheus`), `/healthz` and `/readyz` (`health`), and who may use them
//! (`auth`, with login throttling in `throttle`).

pub mod api;
mod api_reconcile;
pub mod auth;
pub mod data;
pub mod health;
pub mod json_errors;
pub mod openapi;
pub mod pages;
pub mod prometheus;
pub mod throttle;
