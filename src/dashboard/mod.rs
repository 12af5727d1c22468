//! What operators use: the JSON API under `/api/v1` (the HTML pages come with the dashboard).

pub mod api;
