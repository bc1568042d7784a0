//! Where the CLI finds the API and its token: flags and environment first (CI and
//! scripts), then the credentials `smsctl login` stored in the user's config dir.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::CliError;

/// The API `make up` serves.
pub const DEFAULT_URL: &str = "http://localhost:3570";

/// What `smsctl login` keeps. The token is a bearer credential: the file is the user's
/// alone (0600, in a 0700 dir) and the token is never printed.
#[derive(Serialize, Deserialize)]
pub struct Credentials {
    pub url: String,
    pub token: String,
}

/// `$XDG_CONFIG_HOME/smsctl/credentials.json` (or `~/.config/…`, the platform's config
/// dir elsewhere).
pub fn credentials_path() -> Result<PathBuf, CliError> {
    let dir = dirs::config_dir().ok_or_else(|| {
        CliError::Usage(
            "no config directory (neither XDG_CONFIG_HOME nor HOME is set); use --url and --token"
                .into(),
        )
    })?;
    Ok(dir.join("smsctl").join("credentials.json"))
}

/// The stored credentials, or `None` when nobody logged in.
pub fn load(path: &Path) -> Result<Option<Credentials>, CliError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CliError::File {
                path: path.to_owned(),
                source,
            })
        }
    };
    // The serde error is about the shape, never the content: no token in the message.
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| CliError::Credentials {
            path: path.to_owned(),
            reason: format!(
                "not a credentials file (line {}, column {})",
                e.line(),
                e.column()
            ),
        })
}

/// Writes the credentials so that no other user can read them at any moment: a new file
/// created with mode 0600 (not chmod-ed after), then renamed over the old one.
pub fn save(path: &Path, credentials: &Credentials) -> Result<(), CliError> {
    let file_error = |path: &Path| {
        let path = path.to_owned();
        move |source| CliError::File { path, source }
    };
    let dir = path.parent().expect("the credentials path has a directory");
    create_private_dir(dir).map_err(file_error(dir))?;
    let temp = path.with_extension("json.tmp");
    // A leftover from a crashed login would make `create_new` fail.
    let _ = fs::remove_file(&temp);
    let mut file = private_file(&temp).map_err(file_error(&temp))?;
    let json = serde_json::to_vec_pretty(credentials).expect("credentials serialize");
    file.write_all(&json)
        .and_then(|()| file.sync_all())
        .map_err(file_error(&temp))?;
    fs::rename(&temp, path).map_err(file_error(path))
}

/// Removes the stored credentials; `false` when there were none.
pub fn remove(path: &Path) -> Result<bool, CliError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(CliError::File {
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)
}

#[cfg(unix)]
fn private_file(path: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn private_file(path: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

/// The API to call and the token to call it with, after flags, environment and the
/// stored login are weighed.
pub struct Target {
    pub url: String,
    pub token: Option<String>,
}

/// `--url`/`SMSCTL_URL` and `--token`/`SMSCTL_TOKEN` win over the stored login. A stored
/// token is only sent to the URL it was issued by: `--url` elsewhere must not leak it.
pub fn resolve(url: Option<&str>, token: Option<&str>) -> Result<Target, CliError> {
    let stored = load(&credentials_path()?)?;
    let url = match (url, &stored) {
        (Some(url), _) => normalize_url(url)?,
        (None, Some(stored)) => stored.url.clone(),
        (None, None) => DEFAULT_URL.to_owned(),
    };
    let token = match (token, stored) {
        (Some(token), _) => Some(token.to_owned()),
        (None, Some(stored)) if stored.url == url => Some(stored.token),
        _ => None,
    };
    Ok(Target { url, token })
}

/// The base URL without a trailing slash, checked to be http(s).
pub fn normalize_url(raw: &str) -> Result<String, CliError> {
    let parsed =
        url::Url::parse(raw.trim()).map_err(|e| CliError::Usage(format!("--url {raw:?}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(CliError::Usage(format!(
            "--url {raw:?}: must start with http:// or https://"
        )));
    }
    Ok(parsed.as_str().trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn credentials_are_private_from_the_start() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("smsctl").join("credentials.json");
        let creds = Credentials {
            url: "http://localhost:3570".into(),
            token: "secret".into(),
        };
        save(&path, &creds).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        // Saving again replaces the file and keeps it private.
        save(&path, &creds).unwrap();
        assert_eq!(mode(&path), 0o600);
        let loaded = load(&path).unwrap().unwrap();
        assert_eq!(
            (loaded.url.as_str(), loaded.token.as_str()),
            ("http://localhost:3570", "secret")
        );
        assert!(remove(&path).unwrap());
        assert!(!remove(&path).unwrap());
        assert!(load(&path).unwrap().is_none());
    }

    #[test]
    fn a_damaged_file_is_named_and_its_content_is_not_echoed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials.json");
        fs::write(&path, "{\"url\": \"x\", \"token\": \"s3cret\"").unwrap();
        let err = load(&path).err().unwrap().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn urls_are_normalized_and_checked() {
        assert_eq!(
            normalize_url("http://localhost:3570/").unwrap(),
            "http://localhost:3570"
        );
        assert_eq!(
            normalize_url("https://sms.example/api-gw/").unwrap(),
            "https://sms.example/api-gw"
        );
        assert!(normalize_url("ftp://x").is_err());
        assert!(normalize_url("localhost:3570").is_err());
    }
}
