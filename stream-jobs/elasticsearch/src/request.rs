//! Every request the sink sends, as a value: method, path, query and body. The service sends them
//! through the official client's transport ([`crate::EsSink`]); the tests check each against
//! Elastic's OpenAPI document of the REST API, so the two cannot drift apart.

use serde_json::Value;

use crate::config::EsConfig;

/// An HTTP method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// PUT
    Put,
    /// POST
    Post,
    /// DELETE
    Delete,
}

impl Method {
    /// The method's name, upper case.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Put => "PUT",
            Method::Post => "POST",
            Method::Delete => "DELETE",
        }
    }
}

/// A request body.
#[derive(Debug, Clone, PartialEq)]
pub enum EsBody {
    /// `application/json`.
    Json(Value),
    /// `application/x-ndjson` (`_bulk`).
    Ndjson(Vec<u8>),
}

/// One request to the cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct EsRequest {
    /// The method.
    pub method: Method,
    /// The path, starting with `/`.
    pub path: String,
    /// Query parameters.
    pub query: Vec<(String, String)>,
    /// The body.
    pub body: Option<EsBody>,
    /// Whether the request is in Elastic's OpenAPI document (the lifecycle API is not: the
    /// document describes serverless, which has no ILM).
    pub in_spec: bool,
}

/// `PUT /_index_template/<name>` with `body` ([`crate::template::index_template`]).
pub fn put_index_template(config: &EsConfig, body: Value) -> EsRequest {
    EsRequest {
        method: Method::Put,
        path: format!("/_index_template/{}", config.template_name()),
        query: Vec::new(),
        body: Some(EsBody::Json(body)),
        in_spec: true,
    }
}

/// `PUT /_ilm/policy/<name>` ([`crate::template::lifecycle_policy`]).
pub fn put_lifecycle(config: &EsConfig) -> EsRequest {
    EsRequest {
        method: Method::Put,
        path: format!("/_ilm/policy/{}", config.template_name()),
        query: Vec::new(),
        body: Some(EsBody::Json(crate::template::lifecycle_policy(config))),
        in_spec: false,
    }
}

/// `POST /_bulk` with an NDJSON body ([`crate::bulk::bulk_body`]).
pub fn bulk(body: Vec<u8>) -> EsRequest {
    EsRequest {
        method: Method::Post,
        path: "/_bulk".to_string(),
        query: Vec::new(),
        body: Some(EsBody::Ndjson(body)),
        in_spec: true,
    }
}
