//! placeholder: being written (temporary stub so the crate compiles)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure { Missing, Malformed, Expired, BadSignature }
impl AuthFailure { pub fn as_str(&self) -> &'static str { "stub" } }
impl std::fmt::Display for AuthFailure { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(self.as_str()) } }
pub struct AuthConfig { pub key: Option<String>, pub secondary_key: Option<String>, pub validity_s: u64 }
impl AuthConfig { pub fn check(&self, _app: &str, _stream: &str, _ext: Option<&str>, _auth_key: Option<&str>, _now: u64) -> Result<(), AuthFailure> { Ok(()) } }
pub fn query_param<'a>(_q: &'a str, _n: &str) -> Option<&'a str> { None }
pub fn sign_url(_url: &str, _key: &str, _ts: u64, _rand: Option<&str>) -> Result<String, AuthFailure> { Err(AuthFailure::Missing) }
