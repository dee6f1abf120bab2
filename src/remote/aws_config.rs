//! Where an S3 remote's credentials, region and endpoint come from, in the order the AWS
//! tools use: the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL_S3`,
//! `AWS_ENDPOINT_URL`), then the profile `AWS_PROFILE` (or `default`) of
//! `~/.aws/credentials` and `~/.aws/config` (or `AWS_SHARED_CREDENTIALS_FILE`,
//! `AWS_CONFIG_FILE`). The two files are a few lines of `[section]` and `key = value`; a
//! small reader here spares the build an INI crate and its nine dependencies.

use std::collections::BTreeMap;
use std::path::PathBuf;

use difflow_core::files::{read_text_if_present, Purpose};

/// An access key; `token` for temporary (STS) credentials.
pub struct Keys {
    pub id: String,
    pub secret: String,
    pub token: Option<String>,
}

/// What the environment and the profile say.
pub struct AwsConfig {
    /// `Err`: why there are none, for the first request to report.
    pub keys: Result<Keys, String>,
    pub region: Option<String>,
    pub endpoint: Option<String>,
}

type Section = BTreeMap<String, String>;

/// Read the environment and the profile's files (only what they lack is looked up there).
pub fn load() -> Result<AwsConfig, String> {
    resolve(&|name| std::env::var(name).ok())
}

/// [`load`] with the environment given by `env`; an empty variable counts as unset.
fn resolve(env: &dyn Fn(&str) -> Option<String>) -> Result<AwsConfig, String> {
    let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let profile_name = var("AWS_PROFILE").unwrap_or_else(|| "default".to_string());
    let home = var("HOME").map(PathBuf::from);
    let path_of = |override_var: &str, file: &str| {
        var(override_var).map(PathBuf::from).or_else(|| home.as_ref().map(|h| h.join(".aws").join(file)))
    };
    let credentials_file = path_of("AWS_SHARED_CREDENTIALS_FILE", "credentials");
    let config_file = path_of("AWS_CONFIG_FILE", "config");
    // In `config` a profile other than the default is `[profile NAME]`.
    let config_section =
        if profile_name == "default" { "default".to_string() } else { format!("profile {profile_name}") };
    let from_credentials = section_of(credentials_file.as_ref(), &profile_name)?;
    let from_config = section_of(config_file.as_ref(), &config_section)?;
    let lookup = |key: &str| {
        from_credentials
            .as_ref()
            .and_then(|s| s.get(key))
            .or_else(|| from_config.as_ref().and_then(|s| s.get(key)))
            .cloned()
    };

    let keys = match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
        (Some(id), Some(secret)) => Ok(Keys { id, secret, token: var("AWS_SESSION_TOKEN") }),
        _ => match (lookup("aws_access_key_id"), lookup("aws_secret_access_key")) {
            (Some(id), Some(secret)) => Ok(Keys { id, secret, token: lookup("aws_session_token") }),
            _ => {
                Err(missing_keys(&profile_name, from_credentials.is_some() || from_config.is_some(), &credentials_file))
            }
        },
    };
    Ok(AwsConfig {
        keys,
        region: var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")).or_else(|| lookup("region")),
        endpoint: var("AWS_ENDPOINT_URL_S3").or_else(|| var("AWS_ENDPOINT_URL")).or_else(|| lookup("endpoint_url")),
    })
}

fn missing_keys(profile: &str, profile_found: bool, credentials_file: &Option<PathBuf>) -> String {
    let file = credentials_file.as_ref().map_or("~/.aws/credentials".to_string(), |p| p.display().to_string());
    let what = if profile_found {
        format!("the profile `{profile}` in {file} has no aws_access_key_id and aws_secret_access_key")
    } else {
        format!("there is no profile `{profile}` in {file}")
    };
    format!(
        "no S3 credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set and {what} \
         (AWS_PROFILE picks another profile)"
    )
}

/// The keys of `[name]` in the file at `path`; `None` when the file or the section is absent.
fn section_of(path: Option<&PathBuf>, name: &str) -> Result<Option<Section>, String> {
    let Some(path) = path else { return Ok(None) };
    let text =
        read_text_if_present(path, Purpose::Settings).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(text.and_then(|t| parse(&t).remove(name)))
}

/// The sections of an AWS shared config file: `[name]` headers, `key = value` lines,
/// `#` and `;` comment lines. Keys are compared in lowercase, as the AWS tools do.
fn parse(text: &str) -> BTreeMap<String, Section> {
    let mut sections: BTreeMap<String, Section> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
            sections.entry(name.clone()).or_default();
            current = Some(name);
        } else if let (Some(section), Some((key, value))) = (&current, line.split_once('=')) {
            let entry = sections.entry(section.clone()).or_default();
            entry.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    sections
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::{parse, resolve, AwsConfig};

    /// [`resolve`] with these variables and a HOME whose `.aws` holds `credentials` and
    /// `config` (when not empty).
    fn resolved(vars: &[(&str, &str)], credentials: &str, config: &str) -> AwsConfig {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(home.path().join(".aws")).unwrap();
        for (name, text) in [("credentials", credentials), ("config", config)] {
            if !text.is_empty() {
                std::fs::write(home.path().join(".aws").join(name), text).unwrap();
            }
        }
        let mut env: BTreeMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        env.insert("HOME".into(), home.path().display().to_string());
        resolve(&|name| env.get(name).cloned()).unwrap()
    }

    const FILES: (&str, &str) = (
        "[default]\naws_access_key_id = DEFAULT\naws_secret_access_key = d\n[lab]\naws_access_key_id = LAB\naws_secret_access_key = l\naws_session_token = t\n",
        "[default]\nregion = us-west-2\n[profile lab]\nregion = eu-west-1\nendpoint_url = http://127.0.0.1:9000\n",
    );

    #[test]
    fn the_environment_comes_before_the_profile() {
        let vars = [("AWS_ACCESS_KEY_ID", "ENV"), ("AWS_SECRET_ACCESS_KEY", "e"), ("AWS_DEFAULT_REGION", "ap-south-1")];
        let c = resolved(&vars, FILES.0, FILES.1);
        let keys = c.keys.unwrap();
        assert_eq!((keys.id.as_str(), keys.secret.as_str(), keys.token), ("ENV", "e", None));
        assert_eq!(c.region.as_deref(), Some("ap-south-1"));
        // AWS_REGION before AWS_DEFAULT_REGION; AWS_ENDPOINT_URL_S3 before AWS_ENDPOINT_URL.
        let vars = [
            ("AWS_REGION", "eu-north-1"),
            ("AWS_DEFAULT_REGION", "ap-south-1"),
            ("AWS_ENDPOINT_URL", "http://a"),
            ("AWS_ENDPOINT_URL_S3", "http://b"),
        ];
        let c = resolved(&vars, FILES.0, FILES.1);
        assert_eq!((c.region.as_deref(), c.endpoint.as_deref()), (Some("eu-north-1"), Some("http://b")));
    }

    #[test]
    fn a_named_profile_reads_both_files_and_empty_variables_count_as_unset() {
        let vars = [("AWS_PROFILE", "lab"), ("AWS_ACCESS_KEY_ID", ""), ("AWS_REGION", " ")];
        let c = resolved(&vars, FILES.0, FILES.1);
        let keys = c.keys.unwrap();
        assert_eq!((keys.id.as_str(), keys.token.as_deref()), ("LAB", Some("t")));
        assert_eq!(c.region.as_deref(), Some("eu-west-1"));
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        let c = resolved(&[], FILES.0, FILES.1);
        assert_eq!((c.keys.unwrap().id.as_str(), c.region.as_deref()), ("DEFAULT", Some("us-west-2")));
    }

    #[test]
    fn missing_credentials_name_the_profile_and_the_file() {
        let Err(why) = resolved(&[("AWS_PROFILE", "gone")], FILES.0, "").keys else { panic!("keys found") };
        assert!(why.contains("no profile `gone` in ") && why.contains(".aws/credentials"), "{why}");
        let Err(why) = resolved(&[], "[default]\nregion = x\n", "").keys else { panic!("keys found") };
        assert!(why.contains("the profile `default` in ") && why.contains("has no aws_access_key_id"), "{why}");
    }

    #[test]
    fn sections_keys_and_comments_of_a_shared_config_file() {
        let text = "# keys\n[default]\naws_access_key_id = AKIA1\nAWS_Secret_Access_Key=s1\n\n\
                    ; another\n[profile  lab]\nregion = eu-west-1\nendpoint_url = http://127.0.0.1:9000\n";
        let sections = parse(text);
        assert_eq!(sections["default"]["aws_access_key_id"], "AKIA1");
        assert_eq!(sections["default"]["aws_secret_access_key"], "s1");
        assert_eq!(sections["profile lab"]["region"], "eu-west-1");
        assert_eq!(sections["profile lab"]["endpoint_url"], "http://127.0.0.1:9000");
        assert_eq!(sections.len(), 2);
    }
}
