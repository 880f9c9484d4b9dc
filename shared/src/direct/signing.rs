//! SigV4 for the JSON protocol's `POST /`, with the signing key kept for its day.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderValue;
use ring::{digest, hmac};

use super::CONTENT_TYPE_JSON;

/// Static credentials, as the environment gives them.
pub(super) struct Credentials {
    pub(super) access_key_id: String,
    pub(super) secret: String,
    pub(super) session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret", &"** redacted **")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "** redacted **"),
            )
            .finish()
    }
}

/// Signs one service's requests in one region.
#[derive(Debug)]
pub(super) struct Signer {
    credentials: Arc<Credentials>,
    region: String,
    service: &'static str,
    /// The signing key of one day (days since the epoch): derived from the secret, the date, the
    /// region and the service, so it changes only at midnight UTC.
    key: Mutex<Option<(u64, hmac::Key)>>,
    #[cfg(test)]
    pub(super) derived: std::sync::atomic::AtomicU32,
}

/// The headers a signed request carries.
pub(super) struct Signed {
    pub(super) date: HeaderValue,
    pub(super) authorization: HeaderValue,
    pub(super) security_token: Option<HeaderValue>,
}

impl Signer {
    pub(super) fn new(credentials: Arc<Credentials>, region: &str, service: &'static str) -> Self {
        Self {
            credentials,
            region: region.to_owned(),
            service,
            key: Mutex::new(None),
            #[cfg(test)]
            derived: std::sync::atomic::AtomicU32::new(0),
        }
    }

    /// The SigV4 headers of `POST /` to `host` with `x-amz-target: target` and `body`, at `now`:
    /// the signed headers are `content-type`, `host`, `x-amz-date`, `x-amz-security-token` (with
    /// a session token) and `x-amz-target`.
    pub(super) fn sign(
        &self,
        now: SystemTime,
        host: &HeaderValue,
        target: &HeaderValue,
        body: &[u8],
    ) -> Signed {
        let seconds = now
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_secs())
            .unwrap_or(0);
        let day = seconds / 86_400;
        let stamp = amz_date(seconds);
        let date = &stamp[..8];
        let token = self.credentials.session_token.as_deref();
        let signed_headers = if token.is_some() {
            "content-type;host;x-amz-date;x-amz-security-token;x-amz-target"
        } else {
            "content-type;host;x-amz-date;x-amz-target"
        };

        let mut canonical = String::with_capacity(384);
        canonical.push_str("POST\n/\n\ncontent-type:");
        canonical.push_str(CONTENT_TYPE_JSON);
        canonical.push_str("\nhost:");
        canonical.push_str(&String::from_utf8_lossy(host.as_bytes()));
        canonical.push_str("\nx-amz-date:");
        canonical.push_str(&stamp);
        if let Some(token) = token {
            canonical.push_str("\nx-amz-security-token:");
            canonical.push_str(token.trim());
        }
        canonical.push_str("\nx-amz-target:");
        canonical.push_str(&String::from_utf8_lossy(target.as_bytes()));
        canonical.push_str("\n\n");
        canonical.push_str(signed_headers);
        canonical.push('\n');
        canonical.push_str(&hex::encode(digest::digest(&digest::SHA256, body)));

        let scope = format!("{date}/{}/{}/aws4_request", self.region, self.service);
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{}",
            hex::encode(digest::digest(&digest::SHA256, canonical.as_bytes()))
        );
        let signature = hmac::sign(&self.key_for(day, date), string_to_sign.as_bytes());
        let mut authorization = format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature=",
            self.credentials.access_key_id
        );
        for byte in signature.as_ref() {
            let _ = write!(authorization, "{byte:02x}");
        }
        Signed {
            date: HeaderValue::from_str(&stamp).unwrap_or(HeaderValue::from_static("")),
            authorization: HeaderValue::from_str(&authorization)
                .unwrap_or(HeaderValue::from_static("")),
            security_token: token.and_then(|token| HeaderValue::from_str(token.trim()).ok()),
        }
    }

    /// The signing key of `day` (`date` is its `YYYYMMDD`), derived at the first request of the
    /// day.
    fn key_for(&self, day: u64, date: &str) -> hmac::Key {
        let mut cached = self
            .key
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((cached_day, key)) = cached.as_ref()
            && *cached_day == day
        {
            return key.clone();
        }
        #[cfg(test)]
        self.derived
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let step = |key: &[u8], data: &str| {
            hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
        };
        let secret = format!("AWS4{}", self.credentials.secret);
        let k_date = step(secret.as_bytes(), date);
        let k_region = step(k_date.as_ref(), &self.region);
        let k_service = step(k_region.as_ref(), self.service);
        let k_signing = step(k_service.as_ref(), "aws4_request");
        let key = hmac::Key::new(hmac::HMAC_SHA256, k_signing.as_ref());
        *cached = Some((day, key.clone()));
        key
    }
}

/// `YYYYMMDDTHHMMSSZ` for `seconds` since the epoch (UTC).
pub(super) fn amz_date(seconds: u64) -> String {
    let days = seconds / 86_400;
    let of_day = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

/// The proleptic Gregorian date of `days` since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}
