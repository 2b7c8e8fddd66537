//! The claims of app tokens.

use serde::{Deserialize, Serialize};

/// Claims of a token this server mints (RFC 7519 names, plus the app and its generation).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The app id.
    pub sub: String,
    /// The app id (tenant routing).
    pub tenant_id: String,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
    pub jti: String,
    /// The app's token generation when minted; revoking raises the app's generation.
    #[serde(default)]
    pub gen: u64,
}
