//! askama template structs, one per page. They hold display-ready strings; the
//! templates escape everything.

use askama::Template;

use crate::db::models::sessions::SessionRow;
use crate::db::models::users::UserRow;

/// Fields every page's layout needs.
pub struct Layout {
    pub title: String,
    pub signed_in_as: Option<String>,
    /// CSRF token for the sign-out button in the header (empty when signed out).
    pub csrf: String,
    /// The session-expiry warning of signed-in pages.
    pub timer: Option<TimerView>,
    /// Loads `webauthn.js` (security key and passkey buttons).
    pub webauthn: bool,
}

/// The expiry banner: rendered hidden and revealed by `session-timer.js`, or
/// rendered visible (with the end time, no countdown) when the page is already
/// inside the warning window, so it works without JavaScript.
pub struct TimerView {
    pub remaining: i64,
    pub warn: i64,
    pub extendable: bool,
    pub show_now: bool,
    /// "4:59".
    pub remaining_text: String,
    /// Where "Stay signed in" returns to without JavaScript, URL-encoded.
    pub return_to_query: String,
}

impl Layout {
    pub fn anonymous(title: &str) -> Self {
        Self {
            title: title.to_owned(),
            signed_in_as: None,
            csrf: String::new(),
            timer: None,
            webauthn: false,
        }
    }

    pub fn signed_in(title: &str, username: &str, csrf: &str) -> Self {
        Self {
            title: title.to_owned(),
            signed_in_as: Some(username.to_owned()),
            csrf: csrf.to_owned(),
            timer: None,
            webauthn: false,
        }
    }

    /// The page has security key or passkey buttons.
    /// As `with_webauthn` when security keys and passkeys are on; otherwise the
    /// page shows a note that they are turned off.
    pub fn with_webauthn_if(self, enabled: bool) -> Self {
        if enabled { self.with_webauthn() } else { self }
    }

    pub fn with_webauthn(mut self) -> Self {
        self.webauthn = true;
        self
    }

    /// Adds the expiry warning for `timer`; `return_to` is this page.
    pub fn with_timer(mut self, timer: crate::authn::session::Timer, return_to: &str) -> Self {
        self.timer = Some(TimerView {
            remaining: timer.remaining,
            warn: timer.warn,
            extendable: timer.extendable,
            show_now: timer.remaining <= timer.warn,
            remaining_text: format!("{}:{:02}", timer.remaining / 60, timer.remaining % 60),
            return_to_query: url::form_urlencoded::byte_serialize(return_to.as_bytes()).collect(),
        });
        self
    }
}

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub layout: Layout,
    /// The "Your session has expired — sign in again" variant.
    pub expired: bool,
    pub csrf: String,
    pub username: String,
    pub return_to: String,
    pub error: Option<String>,
    pub notice: Option<String>,
}

#[derive(Template)]
#[template(path = "logout.html")]
pub struct LogoutPage {
    pub layout: Layout,
    pub csrf: String,
    pub username: String,
    pub client_name: Option<String>,
    pub client_id: Option<String>,
    pub post_logout_redirect_uri: Option<String>,
    pub logout_state: Option<String>,
}

#[derive(Template)]
#[template(path = "consent.html")]
pub struct ConsentPage {
    pub layout: Layout,
    pub csrf: String,
    pub username: String,
    pub client_name: String,
    pub request_id: String,
    /// (title, description) per scope.
    pub scopes: Vec<(String, String)>,
}

/// OAuth 2.0 Form Post Response Mode: a self-submitting form to the client.
#[derive(Template)]
#[template(path = "form_post.html")]
pub struct FormPostPage {
    pub layout: Layout,
    pub action: String,
    pub fields: Vec<(String, String)>,
}

pub struct ConsentView {
    pub client_id: String,
    pub client_name: String,
    pub scope: String,
    pub since: String,
}

#[derive(Template)]
#[template(path = "signed_out.html")]
pub struct SignedOutPage {
    pub layout: Layout,
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub layout: Layout,
    pub status: u16,
    pub heading: String,
    pub message: String,
}

impl ErrorPage {
    pub fn new(status: u16, heading: &str, message: &str) -> Self {
        Self {
            layout: Layout::anonymous(heading),
            status,
            heading: heading.to_owned(),
            message: message.to_owned(),
        }
    }

    pub fn render_page(&self) -> askama::Result<String> {
        self.render()
    }
}

pub struct AccountView {
    pub id: String,
    pub username: String,
    pub name: String,
    pub email: String,
    pub email_verified: bool,
    pub password_changed: String,
}

impl From<&UserRow> for AccountView {
    fn from(user: &UserRow) -> Self {
        Self {
            id: user.id.clone(),
            username: user.username.clone(),
            name: user.name.clone().unwrap_or_else(|| "—".to_owned()),
            email: user.email.clone().unwrap_or_else(|| "—".to_owned()),
            email_verified: user.email_verified,
            password_changed: user
                .password_changed_at
                .map(format_time)
                .unwrap_or_else(|| "never".to_owned()),
        }
    }
}

pub struct SessionView {
    pub id: String,
    pub device: String,
    pub ip: String,
    pub started: String,
    pub last_active: String,
    pub current: bool,
}

impl SessionView {
    pub fn new(row: &SessionRow, current_id: &str) -> Self {
        Self {
            id: row.id.clone(),
            device: row
                .user_agent
                .as_deref()
                .map(describe_device)
                .unwrap_or_else(|| "Unknown device".to_owned()),
            ip: row.ip.clone().unwrap_or_else(|| "—".to_owned()),
            started: format_time(row.created_at),
            last_active: format_time(row.last_seen_at),
            current: row.id == current_id,
        }
    }
}

#[derive(Template)]
#[template(path = "account/index.html")]
pub struct AccountPage {
    pub layout: Layout,
    pub csrf: String,
    pub user: AccountView,
    pub sessions: Vec<SessionView>,
    pub sign_ins: Vec<SignInView>,
    /// Two-step verification is on, and how many recovery codes are left.
    pub mfa_enabled: bool,
    pub recovery_remaining: i64,
    /// Failed second-step attempts between the previous sign-in and now.
    pub second_step_failures: i64,
    /// Security keys and passkeys.
    pub passkeys: Vec<PasskeyView>,
    pub consents: Vec<ConsentView>,
    pub message: Option<String>,
    pub password_error: Option<String>,
}

/// One security key or passkey on the account page.
pub struct PasskeyView {
    pub id: String,
    pub name: String,
    pub kind: &'static str,
    pub created: String,
    pub last_used: String,
}

impl PasskeyView {
    pub fn new(row: &crate::db::models::webauthn::CredentialRow) -> Self {
        Self {
            id: row.id.clone(),
            name: row.name.clone(),
            kind: if row.synced {
                "Synced passkey"
            } else {
                "Security key or device passkey"
            },
            created: format_time(row.created_at),
            last_used: row.last_used_at.map(format_time).unwrap_or_else(|| "never".to_owned()),
        }
    }
}

/// One recent sign-in attempt on the account page.
pub struct SignInView {
    pub time: String,
    pub ip: String,
    pub device: String,
    pub result: &'static str,
    pub ok: bool,
}

impl SignInView {
    pub fn new(row: &crate::db::models::logins::AttemptRow) -> Self {
        let result = match row.outcome.as_str() {
            "success" => "Signed in",
            "failure" => "Wrong password",
            "delayed" => "Blocked: too many attempts",
            "locked" => "Blocked: account locked",
            _ => "Blocked: suspicious",
        };
        Self {
            time: format_time(row.at),
            ip: row.ip.clone().unwrap_or_else(|| "—".to_owned()),
            device: row
                .user_agent
                .as_deref()
                .map(describe_device)
                .unwrap_or_else(|| "Unknown device".to_owned()),
            result,
            ok: row.outcome == "success",
        }
    }
}

/// `2026-11-22 18:42 UTC`.
pub fn format_time(unix: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| unix.to_string())
}

/// A short, human description of a user agent: "Firefox on Linux".
pub fn describe_device(user_agent: &str) -> String {
    let browser = [
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("Firefox/", "Firefox"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
        ("curl/", "curl"),
    ]
    .iter()
    .find(|(marker, _)| user_agent.contains(marker))
    .map(|(_, name)| *name);
    let system = [
        ("Android", "Android"),
        ("iPhone", "iPhone"),
        ("iPad", "iPad"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("Linux", "Linux"),
    ]
    .iter()
    .find(|(marker, _)| user_agent.contains(marker))
    .map(|(_, name)| *name);
    match (browser, system) {
        (Some(b), Some(s)) => format!("{b} on {s}"),
        (Some(b), None) => b.to_owned(),
        (None, Some(s)) => s.to_owned(),
        (None, None) => user_agent.chars().take(40).collect(),
    }
}

#[derive(Template)]
#[template(path = "mfa/code.html")]
pub struct MfaCodePage {
    pub layout: Layout,
    pub csrf: String,
    pub username: String,
    pub error: Option<String>,
    /// Which second factors the person can use here.
    pub totp: bool,
    pub passkey: bool,
    /// Unused recovery codes remain (offered beside a security key).
    pub recovery: bool,
}

#[derive(Template)]
#[template(path = "mfa/passkey_new.html")]
pub struct PasskeyNewPage {
    pub layout: Layout,
    pub csrf: String,
    pub name: String,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "mfa/enrol.html")]
pub struct MfaEnrolPage {
    pub layout: Layout,
    pub csrf: String,
    pub qr_svg: String,
    pub secret: String,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "mfa/recovery.html")]
pub struct RecoveryCodesPage {
    pub layout: Layout,
    pub codes: Vec<String>,
}

/// "Are you sure?" for a sensitive change, reached again after re-authentication.
#[derive(Template)]
#[template(path = "mfa/confirm.html")]
pub struct ConfirmPage {
    pub layout: Layout,
    pub csrf: String,
    pub heading: String,
    pub message: String,
    pub action: String,
    pub button: String,
}
