//! `mailman-milter export`: a lists file written from a running Mailman's
//! REST API, holding what the milter decides by, as Mailman stores it (so
//! the file backend gives the REST backend's verdicts): each list's
//! settings, members, own moderation actions, bans (the site's included),
//! header rules, and the users with more than one address.
//!
//! Mailman's alias domains are not lists-file data; they are written as
//! comments to copy into the configuration's `alias_domains`.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::Value;

use crate::rest::{RestConfig, RestError, check_url};

/// One `[[list]]` of the lists file.
#[derive(Debug, Serialize)]
struct List {
    address: String,
    nonmember_action: String,
    default_member_action: String,
    emergency: bool,
    moderator_password: bool,
    members: Vec<String>,
    accept_nonmembers: Vec<String>,
    hold_nonmembers: Vec<String>,
    reject_nonmembers: Vec<String>,
    discard_nonmembers: Vec<String>,
    banned: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    header_matches: Vec<HeaderMatch>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    moderation: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
struct HeaderMatch {
    header: String,
    pattern: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<String>,
}

#[derive(Debug, Serialize)]
struct User {
    addresses: Vec<String>,
}

#[derive(Debug, Serialize)]
struct File {
    list: Vec<List>,
    user: Vec<User>,
}

/// Why the export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The API did not answer as Mailman does.
    #[error(transparent)]
    Rest(#[from] RestError),
    /// The data cannot be written as TOML.
    #[error("writing the lists file: {0}")]
    Toml(#[from] toml::ser::Error),
}

/// The lists file for the API `config` reaches, as TOML text.
pub async fn export(config: &RestConfig) -> Result<String, ExportError> {
    let base = check_url(&config.url)?;
    let api = crate::rest::Reader::new(base, config)?;
    let garbage = |url: &str, message: &str| RestError::Garbage {
        url: url.to_owned(),
        message: message.to_owned(),
    };
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let emails = |entries: &[Value]| -> Vec<String> {
        entries.iter().filter_map(|e| text(e, "email")).collect()
    };
    let site_bans = emails(&api.collection("/bans").await?);
    let mut aliases = Vec::new();
    for d in api.collection("/domains").await? {
        if let (Some(host), Some(alias)) = (text(&d, "mail_host"), text(&d, "alias_domain"))
            && !alias.is_empty()
        {
            aliases.push((alias.to_lowercase(), host.to_lowercase()));
        }
    }
    let mut lists = Vec::new();
    for entry in api.collection("/lists").await? {
        let (Some(address), Some(list_id)) =
            (text(&entry, "fqdn_listname"), text(&entry, "list_id"))
        else {
            return Err(garbage(
                &format!("{}/lists", api.base()),
                "a list without fqdn_listname or list_id",
            )
            .into());
        };
        let id = crate::rest::encode(&list_id);
        let config = api.get(&format!("/lists/{id}/config")).await?;
        let strings = |k: &str| -> Vec<String> {
            config
                .get(k)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut moderation = BTreeMap::new();
        let members = api
            .collection(&format!("/lists/{id}/roster/member"))
            .await?;
        let nonmembers = api
            .collection(&format!("/lists/{id}/roster/nonmember"))
            .await?;
        for m in members.iter().chain(&nonmembers) {
            if let (Some(email), Some(action)) = (text(m, "email"), text(m, "moderation_action")) {
                moderation.insert(email.to_lowercase(), action);
            }
        }
        let mut banned = emails(&api.collection(&format!("/lists/{id}/bans")).await?);
        banned.extend(site_bans.iter().cloned());
        let header_matches = api
            .collection(&format!("/lists/{id}/header-matches"))
            .await?
            .iter()
            .map(|h| HeaderMatch {
                header: text(h, "header").unwrap_or_default(),
                pattern: text(h, "pattern").unwrap_or_default(),
                action: text(h, "action"),
            })
            .collect();
        lists.push(List {
            address: address.to_lowercase(),
            nonmember_action: text(&config, "default_nonmember_action").ok_or_else(|| {
                garbage(
                    &format!("{}/lists/{id}/config", api.base()),
                    "no default_nonmember_action",
                )
            })?,
            default_member_action: text(&config, "default_member_action")
                .unwrap_or_else(|| "defer".into()),
            emergency: config
                .get("emergency")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            moderator_password: !config.get("moderator_password").is_none_or(Value::is_null),
            members: emails(&members).iter().map(|e| e.to_lowercase()).collect(),
            accept_nonmembers: strings("accept_these_nonmembers"),
            hold_nonmembers: strings("hold_these_nonmembers"),
            reject_nonmembers: strings("reject_these_nonmembers"),
            discard_nonmembers: strings("discard_these_nonmembers"),
            banned,
            header_matches,
            moderation,
        });
    }
    // Users with several addresses, from `/addresses` (each names its user).
    let mut by_user: HashMap<String, Vec<String>> = HashMap::new();
    for a in api.collection("/addresses").await? {
        if let (Some(email), Some(user)) = (text(&a, "email"), text(&a, "user")) {
            by_user.entry(user).or_default().push(email.to_lowercase());
        }
    }
    let mut users: Vec<User> = by_user
        .into_values()
        .filter(|a| a.len() > 1)
        .map(|mut addresses| {
            addresses.sort();
            addresses.dedup();
            User { addresses }
        })
        .collect();
    users.sort_by(|a, b| a.addresses.cmp(&b.addresses));
    lists.sort_by(|a, b| a.address.cmp(&b.address));
    let mut out = format!(
        "# Written by `mailman-milter export` from {}.\n",
        api.base()
    );
    if !aliases.is_empty() {
        out.push_str("# Mailman's alias domains; for the configuration's [alias_domains]:\n");
        for (alias, host) in &aliases {
            out.push_str(&format!("#   {alias:?} = {host:?}\n"));
        }
    }
    out.push('\n');
    out.push_str(&toml::to_string(&File {
        list: lists,
        user: users,
    })?);
    Ok(out)
}
