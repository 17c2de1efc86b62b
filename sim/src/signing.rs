//! The simulator's own signatures: HMAC-SHA256 over storage URLs and bearer tokens.
//!
//! Tokens are stateless JWT-shaped strings (`header.claims.signature`, base64url): clients
//! must treat them as opaque, and the simulator can check them without keeping a table, so
//! expiry is exact and needs no clean-up.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

pub(crate) struct Signer {
    /// Keyed once; cloned for each signature.
    mac: HmacSha256,
}

/// Why a token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TokenError {
    #[error("the token is malformed or its signature is wrong")]
    Invalid,
    #[error("the token has expired")]
    Expired,
}

/// What a token says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Claims {
    /// Which API and kind of token (`cmp`, `fusion-access`, …): a token of one kind is
    /// never accepted as another.
    pub aud: String,
    /// Who it was issued to (subscription key, user, client id).
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
    /// Makes every token distinct.
    pub jti: String,
}

impl Signer {
    /// HMAC takes keys of any length, so this fails only on a broken hmac crate.
    pub fn new(key: &[u8]) -> Result<Self, hmac::digest::InvalidLength> {
        Ok(Signer {
            mac: HmacSha256::new_from_slice(key)?,
        })
    }

    fn mac(&self) -> HmacSha256 {
        self.mac.clone()
    }

    /// The signature of `data`, base64url.
    pub fn sign(&self, data: &[u8]) -> String {
        let mut mac = self.mac();
        mac.update(data);
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// Checks `signature` (base64url) over `data` in constant time.
    pub fn verify(&self, data: &[u8], signature: &str) -> bool {
        let Ok(raw) = URL_SAFE_NO_PAD.decode(signature.trim_end_matches('=')) else {
            return false;
        };
        let mut mac = self.mac();
        mac.update(data);
        mac.verify_slice(&raw).is_ok()
    }

    /// A new token of kind `aud` for `sub`, valid for `lifetime_secs` from `now`.
    pub fn mint(&self, aud: &str, sub: &str, lifetime_secs: u64, now: DateTime<Utc>) -> String {
        let claims = Claims {
            aud: aud.to_string(),
            sub: sub.to_string(),
            iat: now.timestamp(),
            // Rounded up to whole seconds, so a token works for at least its lifetime.
            exp: now
                .timestamp()
                .saturating_add(i64::try_from(lifetime_secs).unwrap_or(i64::MAX / 2))
                .saturating_add(i64::from(now.timestamp_subsec_nanos() > 0)),
            jti: uuid::Uuid::new_v4().simple().to_string(),
        };
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        // Serializing a struct of strings and integers cannot fail.
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap_or_default());
        let signed = format!("{header}.{body}");
        let signature = self.sign(signed.as_bytes());
        format!("{signed}.{signature}")
    }

    /// The claims of a token of kind `aud` that is signed by us and not expired at `now`.
    pub fn check(&self, aud: &str, token: &str, now: DateTime<Utc>) -> Result<Claims, TokenError> {
        let (signed, signature) = token.rsplit_once('.').ok_or(TokenError::Invalid)?;
        if !self.verify(signed.as_bytes(), signature) {
            return Err(TokenError::Invalid);
        }
        let body = signed
            .split_once('.')
            .map(|(_, b)| b)
            .ok_or(TokenError::Invalid)?;
        let raw = URL_SAFE_NO_PAD.decode(body).map_err(|_| TokenError::Invalid)?;
        let claims: Claims = serde_json::from_slice(&raw).map_err(|_| TokenError::Invalid)?;
        if claims.aud != aud {
            return Err(TokenError::Invalid);
        }
        if now.timestamp() >= claims.exp {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_check_kind_signature_and_expiry() {
        let signer = Signer::new(b"k").expect("key");
        let now = DateTime::from_timestamp(1_000, 0).expect("time");
        let token = signer.mint("cmp", "sub", 10, now);
        assert_eq!(token.split('.').count(), 3, "JWT-shaped: {token}");
        assert_eq!(
            signer.check("cmp", &token, now).map(|c| c.sub),
            Ok("sub".to_string())
        );
        assert_eq!(
            signer.check("fusion-access", &token, now),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            signer.check("cmp", &token, now + chrono::Duration::seconds(10)),
            Err(TokenError::Expired)
        );
        // A lifetime is rounded up to whole seconds, never down.
        let late = DateTime::from_timestamp(1_000, 900_000_000).expect("time");
        let short = signer.mint("cmp", "sub", 1, late);
        assert!(
            signer
                .check("cmp", &short, late + chrono::Duration::milliseconds(999))
                .is_ok()
        );
        let tampered = format!("{}x", token);
        assert_eq!(signer.check("cmp", &tampered, now), Err(TokenError::Invalid));
        assert_eq!(
            Signer::new(b"other").expect("key").check("cmp", &token, now),
            Err(TokenError::Invalid)
        );
    }
}
