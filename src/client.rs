//! A small blocking HTTP client for the command line: read the ledger, find an
//! account's next seq, post a signed envelope.
//!
//! It signs nothing itself and keeps no state: the CLI builds and signs the body with
//! `core::protocol`, and this module only carries bytes to the service and back.

use std::time::Duration;

use serde_json::Value;

use crate::core::protocol::Envelope;

/// How long one request to the service may take, connection included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("could not reach the covoit service at {server}: {detail}")]
    Unreachable { server: String, detail: String },
    #[error("the service answered {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("the service's reply is not what covoit serves: {0}")]
    UnexpectedReply(String),
}

/// A status and body as the service sent them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

pub struct Client {
    server: String,
    agent: ureq::Agent,
}

impl Client {
    /// `server` is the base URL, such as `http://127.0.0.1:8080`.
    pub fn new(server: &str) -> Client {
        let config =
            ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(REQUEST_TIMEOUT)).build();
        Client { server: server.trim_end_matches('/').to_owned(), agent: ureq::Agent::new_with_config(config) }
    }

    /// GET a path; any status comes back as a [`Reply`].
    pub fn get(&self, path: &str) -> Result<Reply, ClientError> {
        let response =
            self.agent.get(&format!("{}{path}", self.server)).call().map_err(|error| self.unreachable(error))?;
        self.reply(response)
    }

    /// POST an envelope to `/v1/commands`; any status comes back as a [`Reply`].
    pub fn post_envelope(&self, envelope: &Envelope) -> Result<Reply, ClientError> {
        let body = serde_json::to_vec(envelope).expect("an envelope serialises");
        let response = self
            .agent
            .post(&format!("{}/v1/commands", self.server))
            .header("content-type", "application/json")
            .send(&body[..])
            .map_err(|error| self.unreachable(error))?;
        self.reply(response)
    }

    /// The ledger's id, from `GET /v1/ledger`.
    pub fn ledger_id(&self) -> Result<String, ClientError> {
        let ledger = self.get_json("/v1/ledger")?;
        ledger["ledger"].as_str().map(str::to_owned).ok_or_else(|| ClientError::UnexpectedReply("no ledger id".into()))
    }

    /// The account's next sequence number, from `GET /v1/accounts/{id}`.
    pub fn next_seq(&self, account: &str) -> Result<u64, ClientError> {
        let account = self.get_json(&format!("/v1/accounts/{account}"))?;
        account["next_seq"]
            .as_str()
            .and_then(|seq| seq.parse().ok())
            .ok_or_else(|| ClientError::UnexpectedReply("no next_seq".into()))
    }

    /// GET a path that must answer 200 with JSON.
    pub fn get_json(&self, path: &str) -> Result<Value, ClientError> {
        let reply = self.get(path)?;
        if reply.status != 200 {
            return Err(ClientError::Refused { status: reply.status, body: reply.body });
        }
        serde_json::from_str(&reply.body).map_err(|error| ClientError::UnexpectedReply(error.to_string()))
    }

    fn reply(&self, mut response: ureq::http::Response<ureq::Body>) -> Result<Reply, ClientError> {
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().map_err(|error| self.unreachable(error))?;
        Ok(Reply { status, body })
    }

    fn unreachable(&self, error: ureq::Error) -> ClientError {
        ClientError::Unreachable { server: self.server.clone(), detail: error.to_string() }
    }
}
