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
}

impl Layout {
    pub fn anonymous(title: &str) -> Self {
        Self {
            title: title.to_owned(),
            signed_in_as: None,
            csrf: String::new(),
        }
    }

    pub fn signed_in(title: &str, username: &str, csrf: &str) -> Self {
        Self {
            title: title.to_owned(),
            signed_in_as: Some(username.to_owned()),
            csrf: csrf.to_owned(),
        }
    }
}

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub layout: Layout,
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
    pub device: String,
    pub ip: String,
    pub started: String,
    pub last_active: String,
    pub current: bool,
}

impl SessionView {
    pub fn new(row: &SessionRow, current_id: &str) -> Self {
        Self {
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
    pub consents: Vec<ConsentView>,
    pub message: Option<String>,
    pub password_error: Option<String>,
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
