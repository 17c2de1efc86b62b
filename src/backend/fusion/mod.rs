//! FUSION: Netaxis Fusion reporting (seed 003).
//!
//! Reports are synchronous: the answer is the file itself, so `submit` returns a READY report
//! with the file inline. License downloads (`POST …/downloads/report`) come as base64 with
//! their file name; phone and product usage SDRs come as JSON arrays, which are written as the
//! JSON the API gave or as CSV (columns in order of first appearance). All of these calls only
//! read, so they are retried like reads, `find` has nothing to find (submitting again is
//! harmless) and `get` asks again. The data is a snapshot: Fusion takes no date range, so a
//! FUSION report has no window (ONETIME dates are optional and only name the report; a
//! PERIODIC generator takes one snapshot per run and never backfills) and its Secret says when
//! the snapshot was taken (`snapshotTime`).
//!
//! A file must fit into a Secret (1,000,000 bytes) unless the report goes to a ReportStore:
//! then a larger one is left unread at submit (READY, [`Download::Streamed`]) and the copy
//! asks again and streams it ([`stream`]), so no file is ever held whole.
//!
//! Login gives an access and a refresh token; a 401 renews the access token with the refresh
//! token, and a refused refresh logs in again. A login that answers with a `2fa_payload` makes
//! the backend not Ready (TwoFactorRequired).

mod csv;
mod stream;

use base64::Engine as _;
use chrono::Utc;
use reqwest::header::AUTHORIZATION;
use serde::Deserialize;
use serde_json::json;
use std::collections::HashSet;

use super::auth::{BearerAuth, Credentials, Secret, TokenSource, Tokens, token_refused};
use super::body::{MAX_INLINE_BASE64_ANSWER_BYTES, MAX_INLINE_BYTES};
use super::capabilities::{Refusal, Setting};
use super::http::{Body, Call, HttpClient, NoAuth, secret_header};
use super::{
    BackendError, Capabilities, DefaultLimits, Download, FileStream, ListQuery, RemoteReport, ReportRequest,
    ReportState, ReportingBackend, known_download, seg,
};
use crate::api::{
    BackendType, EventType, FusionDataset, FusionLevel, FusionScope, Period, ReportBackendSpec, ReportFormat,
    ReportParameters,
};
use csv::{PHONE_USAGE_COLUMNS, PRODUCT_USAGE_COLUMNS, to_csv};
use stream::Shape;

pub(super) const CAPABILITIES: Capabilities = Capabilities {
    formats: &[ReportFormat::Json, ReportFormat::Csv],
    event_types: &[EventType::Onetime, EventType::Periodic],
    periods: &[Period::P1D, Period::P1W, Period::P1M],
    platform_scheduled: false,
    polls_by_organization: false,
    file_in_answer: true,
    limits: DefaultLimits::NONE,
};

/// What a FUSION generator cannot ask for (see [`super::capabilities::unsupported_setting`]).
pub(super) const REFUSED: &[Refusal] = &super::capabilities::requested_by_operator(
    &[
        Setting::CustomizationName,
        Setting::Template,
        Setting::DateParameter,
        Setting::Values,
        Setting::ReportType,
        Setting::Filters,
        Setting::Organizations,
    ],
    "a Fusion report request has no such parameter (it belongs to another backend type); remove it",
    "Fusion cannot e-mail a report (only RDE can); remove notifyByEmail",
);

pub struct FusionBackend {
    http: HttpClient,
    auth: BearerAuth<FusionLogin>,
    draas_instance: String,
}

/// Login with username and password, refresh with the refresh token.
struct FusionLogin {
    login: Option<(Secret, Secret)>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    data: Option<TokenData>,
    #[serde(default, rename = "2fa_payload")]
    two_factor: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct TokenData {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default, rename = "2fa_payload")]
    two_factor: Option<serde_json::Value>,
}

impl TokenAnswer {
    fn into_tokens(self, previous_refresh: Option<&Secret>) -> Result<Tokens, BackendError> {
        let data = self.data.unwrap_or(TokenData {
            access_token: None,
            refresh_token: None,
            two_factor: None,
        });
        if self.two_factor.or(data.two_factor).is_some_and(|p| !p.is_null()) {
            return Err(BackendError::TwoFactorRequired);
        }
        let access = data
            .access_token
            .ok_or_else(|| BackendError::protocol("the login answer has no access_token"))?;
        let refresh = data
            .refresh_token
            .map(Secret::new)
            .or_else(|| previous_refresh.cloned());
        // Fusion does not say how long its tokens last: they are renewed when refused.
        Ok(Tokens::expiring(Secret::new(access), None, refresh))
    }
}

#[async_trait::async_trait]
impl TokenSource for FusionLogin {
    async fn fetch(&self, http: &HttpClient, previous: Option<&Tokens>) -> Result<Tokens, BackendError> {
        if let Some(refresh) = previous.and_then(|p| p.refresh.as_ref()) {
            let call = Call::get(http.url("/api/v01/auth/access_token"), "refresh").header(
                AUTHORIZATION,
                secret_header(&format!("Bearer {}", refresh.expose()))?,
            );
            match http.send(&call, &NoAuth).await.map_err(token_refused) {
                Ok(answer) => {
                    return answer
                        .json::<TokenAnswer>("token refresh")?
                        .into_tokens(Some(refresh));
                }
                // A refused refresh token means: log in again, if we can.
                Err(BackendError::Unauthorized { message }) if self.login.is_none() => {
                    return Err(BackendError::Unauthorized { message });
                }
                Err(BackendError::Unauthorized { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let Some((username, password)) = &self.login else {
            return Err(BackendError::Unauthorized {
                message: "no refresh token and no password to log in with".into(),
            });
        };
        let body = json!({"username": username.expose(), "password": password.expose()});
        let call = Call::post_idempotent(http.url("/api/v01/auth/login"), "login", Body::Json(body));
        http.send(&call, &NoAuth)
            .await
            .map_err(token_refused)?
            .json::<TokenAnswer>("login")?
            .into_tokens(None)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LicenseFile {
    file_body: String,
    file_name: String,
}

/// Whose report it is, or (unset) how [`missing_parameter`](super::missing_parameter) names it.
pub(super) fn scope(params: &ReportParameters) -> Result<&FusionScope, &'static str> {
    params.scope.as_ref().ok_or("parameters.scope (level and uuid)")
}

impl FusionBackend {
    pub(crate) fn new(
        http: HttpClient,
        spec: &ReportBackendSpec,
        creds: &Credentials<'_>,
    ) -> Result<Self, BackendError> {
        let login = match creds.optional("username")? {
            Some(user) => Some((user, creds.required("password")?)),
            None => None,
        };
        let initial = match creds.optional("accessToken")? {
            Some(access) => Some(Tokens::expiring(
                access,
                None,
                Some(creds.required("refreshToken")?),
            )),
            None if login.is_none() => {
                return Err(BackendError::CredentialsMissing {
                    key: "username".into(),
                });
            }
            None => None,
        };
        let draas_instance = spec
            .fusion
            .as_ref()
            .and_then(|f| f.draas_instance.clone())
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| "draas_v1".into());
        Ok(FusionBackend {
            http,
            auth: BearerAuth::new(FusionLogin { login }, initial, Vec::new()),
            draas_instance,
        })
    }

    /// The request for `req`'s file, the file's name, and how the answer becomes the file.
    fn ask(&self, req: &ReportRequest) -> Result<Ask, BackendError> {
        CAPABILITIES.check(BackendType::Fusion, req)?;
        let scope = scope(&req.parameters)
            .map_err(|_| BackendError::unsupported("a FUSION report without parameters.scope"))?;
        let root = format!("/api/v01/draas/{}", seg(&self.draas_instance)?);
        let format = req.format.lower();
        match req.parameters.dataset.unwrap_or(FusionDataset::Licenses) {
            FusionDataset::Licenses => {
                let uuid = seg(&scope.uuid)?;
                let (owner, named) = match (scope.level, scope.subscription_id) {
                    (FusionLevel::Group, _) => (format!("groups/{uuid}"), format!("group_{uuid}")),
                    (FusionLevel::Distributor, _) => {
                        (format!("distributors/{uuid}"), format!("distributor_{uuid}"))
                    }
                    (FusionLevel::Reseller, _) => (format!("resellers/{uuid}"), format!("reseller_{uuid}")),
                    (FusionLevel::Tenant, _) => (format!("tenants/{uuid}"), format!("tenant_{uuid}")),
                    (FusionLevel::Subscription, Some(id)) => (
                        format!("tenants/{uuid}/subscriptions/{id}"),
                        format!("tenant_{uuid}_subscription_{id}"),
                    ),
                    (FusionLevel::Subscription, None) => {
                        return Err(BackendError::unsupported(
                            "scope level subscription without subscriptionId",
                        ));
                    }
                };
                let url = self.http.url(&format!("{root}/{owner}/downloads/report"));
                let call = Call::post_idempotent(url, "license", Body::Json(json!({"format": format})));
                // The seed's naming, for a file too large to read its fileName from.
                let file_name = format!("licenses_{named}_{}.{format}", Utc::now().format("%Y%m%d"));
                Ok(Ask {
                    call,
                    file_name,
                    shape: Shape::License,
                })
            }
            dataset => {
                if scope.level != FusionLevel::Group {
                    return Err(BackendError::unsupported(
                        "usage SDRs exist for groups only (scope.level group)",
                    ));
                }
                let (path, field, columns) = match dataset {
                    FusionDataset::PhoneUsage => ("phone_usage", "phoneUsages", PHONE_USAGE_COLUMNS),
                    _ => ("product_usage", "productUsages", PRODUCT_USAGE_COLUMNS),
                };
                let url = self
                    .http
                    .url(&format!("{root}/groups/{}/sdrs/{path}", seg(&scope.uuid)?));
                let stamp = Utc::now().format("%Y%m%d%H%M%S");
                let file_name = format!("{path}_group_{}_{stamp}.{format}", scope.uuid);
                let shape = match req.format {
                    ReportFormat::Csv => Shape::Csv { field, columns },
                    _ => Shape::Raw,
                };
                Ok(Ask {
                    call: Call::get(url, "sdr"),
                    file_name,
                    shape,
                })
            }
        }
    }

    /// Asks for the report and returns it READY with its file, or (`req.stored`) with none
    /// when the file is too large for a Secret: the copy into the store streams it.
    async fn generate(&self, req: &ReportRequest) -> Result<RemoteReport, BackendError> {
        let ask = self.ask(req)?;
        let limit = if let Shape::License = ask.shape {
            MAX_INLINE_BASE64_ANSWER_BYTES
        } else {
            MAX_INLINE_BYTES
        };
        let too_large = || BackendError::TooLarge {
            what: format!("the file {}", ask.file_name),
            limit: MAX_INLINE_BYTES,
        };
        let content = match self.http.send(&ask.call.clone().limit(limit), &self.auth).await {
            Err(BackendError::TooLarge { .. }) if req.stored => None,
            Err(e) => return Err(e),
            Ok(response) => match ask.shape {
                Shape::License => {
                    let file: LicenseFile = response.json("license file")?;
                    let content = base64::engine::general_purpose::STANDARD
                        .decode(file.file_body.trim())
                        .map_err(|_| BackendError::protocol("fileBody is not base64"))?;
                    match content.len() > MAX_INLINE_BYTES {
                        true if req.stored => None,
                        true => return Err(too_large()),
                        false => Some((file.file_name, content)),
                    }
                }
                Shape::Csv { field, columns } => {
                    let doc: serde_json::Value = response.json("usage SDRs")?;
                    let rows = doc
                        .get(field)
                        .and_then(|v| v.as_array())
                        .ok_or_else(|| BackendError::protocol(format!("the answer has no {field} array")))?;
                    Some((ask.file_name.clone(), to_csv(rows, columns).into_bytes()))
                }
                Shape::Raw => Some((ask.file_name.clone(), response.body)),
            },
        };
        let (file_name, download) = match content {
            Some((file_name, content)) => (file_name.clone(), Download::Inline { file_name, content }),
            None => (
                ask.file_name.clone(),
                Download::Streamed {
                    file_name: ask.file_name,
                },
            ),
        };
        Ok(RemoteReport {
            name: Some(req.name.clone()),
            event_type: Some(req.event_type),
            start_date: req.parameters.start_date,
            end_date: req.parameters.end_date,
            generate_date: Some(Utc::now()),
            file_name: Some(file_name.clone()),
            download: Some(download),
            ..RemoteReport::new(file_name, ReportState::Ready)
        })
    }
}

/// One Fusion request for a report's file.
struct Ask {
    call: Call,
    /// The file's name (a license export's own name is in its answer).
    file_name: String,
    shape: Shape,
}

#[async_trait::async_trait]
impl ReportingBackend for FusionBackend {
    fn backend_type(&self) -> BackendType {
        BackendType::Fusion
    }

    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    /// A login (or refresh) that works; a cached token counts.
    async fn probe(&self) -> Result<(), BackendError> {
        self.auth.token(&self.http).await.map(drop)
    }

    async fn submit(&self, req: &ReportRequest) -> Result<RemoteReport, BackendError> {
        self.generate(req).await
    }

    /// A request that may or may not have reached Fusion left nothing behind: submit again.
    async fn find(
        &self,
        _req: &ReportRequest,
        _taken: &HashSet<String>,
    ) -> Result<Option<RemoteReport>, BackendError> {
        Ok(None)
    }

    async fn get(&self, _id: &str, req: &ReportRequest) -> Result<RemoteReport, BackendError> {
        self.generate(req).await
    }

    async fn download(&self, report: &RemoteReport, req: &ReportRequest) -> Result<Download, BackendError> {
        known_download(self, report, req).await
    }

    /// Asks again and streams the answer's file, whatever its size.
    async fn stream(&self, req: &ReportRequest) -> Result<FileStream, BackendError> {
        let ask = self.ask(req)?;
        let mut answer = self.http.send(&ask.call.streamed(), &self.auth).await?;
        let body = answer
            .stream
            .take()
            .ok_or_else(|| BackendError::protocol("the answer has no body"))?;
        Ok(stream::file(body, ask.shape))
    }

    async fn list(&self, _query: &ListQuery) -> Result<Vec<RemoteReport>, BackendError> {
        Err(BackendError::unsupported("FUSION keeps no reports to list"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_factor_answers() {
        let a: TokenAnswer = serde_json::from_value(json!({"2fa_payload": "abc"})).expect("answer");
        assert!(matches!(
            a.into_tokens(None),
            Err(BackendError::TwoFactorRequired)
        ));
        let a: TokenAnswer =
            serde_json::from_value(json!({"data": {"access_token": "a", "refresh_token": "r"}}))
                .expect("answer");
        let t = a.into_tokens(None).expect("tokens");
        assert_eq!(t.refresh.map(|r| r.expose().to_string()), Some("r".into()));
    }
}
