//! Membership lookups: what Mailman knows about one sender on one list
//! (member record, non-member record, a member through another address of
//! the same user).

use serde_json::Value;

use super::RestError;
use super::client::{Api, enc};
use super::model::{moderation_action, record_of};
use crate::list::ModerationAction;

/// Other addresses of a sender's user looked up one by one at most; a user
/// with more is checked against the list's member roster.
const MAX_LINKED: usize = 20;

/// True if `address` can be sent to Mailman's member lookups as is: it
/// holds no `*`, which Mailman turns into a `LIKE` wildcard search.
pub fn lookup_safe(address: &str) -> bool {
    !address.contains('*')
}

/// What Mailman knows about one address on one list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct MemberInfo {
    /// Subscribed with role `member`.
    pub(super) member: bool,
    /// Its own `moderation_action` (as member, or else as non-member).
    pub(super) moderation: Option<ModerationAction>,
}

impl Api {
    /// Asks Mailman about `sender` on `list_id`: a `member` record (with
    /// its own moderation action) or else a `nonmember` record's moderation
    /// action. Owners and moderators are not members (Mailman 3 moderates
    /// their posts as non-member posts).
    pub(super) async fn lookup_member(
        &self,
        list_id: &str,
        sender: &str,
    ) -> Result<MemberInfo, RestError> {
        let entries = if lookup_safe(sender) {
            let path = format!(
                "/members/find?list_id={}&subscriber={}",
                enc(list_id),
                enc(sender)
            );
            self.collection(&path).await?
        } else {
            // A lookup would be a wildcard search: read the rosters.
            tracing::debug!(sender, list_id, "wildcard in sender; reading the rosters");
            let mut all = self
                .collection(&format!("/lists/{}/roster/member", enc(list_id)))
                .await?;
            if !all.iter().any(|e| record_of(e, sender) == Some("member")) {
                all.extend(
                    self.collection(&format!("/lists/{}/roster/nonmember", enc(list_id)))
                        .await?,
                );
            }
            all
        };
        if let Some(e) = entries
            .iter()
            .find(|e| record_of(e, sender) == Some("member"))
        {
            return Ok(MemberInfo {
                member: true,
                moderation: self.own_action(e, list_id, sender)?,
            });
        }
        // Mailman 3 also finds the member through the other addresses of
        // the user the sender's address belongs to.
        if let Some(info) = self.linked_member(list_id, sender).await? {
            return Ok(info);
        }
        let nonmember = entries
            .iter()
            .find(|e| record_of(e, sender) == Some("nonmember"));
        Ok(MemberInfo {
            member: false,
            moderation: match nonmember {
                Some(e) => self.own_action(e, list_id, sender)?,
                None => None,
            },
        })
    }

    /// A member resource's own `moderation_action`.
    fn own_action(
        &self,
        entry: &Value,
        list_id: &str,
        sender: &str,
    ) -> Result<Option<ModerationAction>, RestError> {
        match entry.get("moderation_action") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(a)) => Ok(moderation_action(a, list_id, sender)),
            Some(_) => Err(RestError::Garbage {
                url: format!("{}/members/find", self.base),
                message: "moderation_action is not a string".into(),
            }),
        }
    }

    /// The membership of another address of the user `sender` belongs to
    /// (`_find_sender_member` in Mailman 3's `rules/moderation.py`), if
    /// any: `GET /addresses/{sender}`, its `user`, that user's addresses,
    /// then a lookup of each (or, for more than [`MAX_LINKED`] or one with
    /// `*`, a read of the list's member roster: Mailman looks at every
    /// address of the user, and `*` cannot be sent as a lookup). A sender that cannot
    /// be a path segment (`/`: the server decodes `%2F` before it splits
    /// the path) or holds `*` is found with `GET /users/find?q=…` instead,
    /// keeping the user that has exactly that address.
    async fn linked_member(
        &self,
        list_id: &str,
        sender: &str,
    ) -> Result<Option<MemberInfo>, RestError> {
        let linked = if lookup_safe(sender) && !sender.contains('/') {
            let address = match self.get(&format!("/addresses/{}", enc(sender))).await {
                Ok(a) => a,
                Err(RestError::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(e),
            };
            let Some(user) = address.get("user").and_then(Value::as_str) else {
                return Ok(None);
            };
            let user_id = self.user_id(user, sender)?;
            match self
                .collection(&format!("/users/{user_id}/addresses"))
                .await
            {
                Ok(l) => l,
                // The user was deleted since.
                Err(RestError::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(e),
            }
        } else {
            match self.user_by_search(sender).await? {
                Some(l) => l,
                None => return Ok(None),
            }
        };
        let others: Vec<String> = linked
            .iter()
            .filter_map(|a| a.get("email").and_then(Value::as_str))
            .map(str::to_lowercase)
            .filter(|e| e != sender)
            .collect();
        // Mailman looks at every address of the user. One that cannot be
        // looked up (`*`), or more than MAX_LINKED of them: one read of the
        // list's member roster answers for all.
        if others.len() > MAX_LINKED || !others.iter().all(|e| lookup_safe(e)) {
            let roster = self
                .collection(&format!("/lists/{}/roster/member", enc(list_id)))
                .await?;
            for other in &others {
                if let Some(e) = roster
                    .iter()
                    .find(|e| record_of(e, other) == Some("member"))
                {
                    tracing::debug!(sender, member = %other, list_id, "member through a linked address (roster)");
                    return Ok(Some(MemberInfo {
                        member: true,
                        moderation: self.own_action(e, list_id, other)?,
                    }));
                }
            }
            return Ok(None);
        }
        for other in others {
            let path = format!(
                "/members/find?list_id={}&subscriber={}&role=member",
                enc(list_id),
                enc(&other)
            );
            let found = self.collection(&path).await?;
            if let Some(e) = found
                .iter()
                .find(|e| record_of(e, &other) == Some("member"))
            {
                tracing::debug!(sender, member = %other, list_id, "member through a linked address");
                return Ok(Some(MemberInfo {
                    member: true,
                    moderation: self.own_action(e, list_id, &other)?,
                }));
            }
        }
        Ok(None)
    }

    /// The id in a user link (`…/users/ID`).
    fn user_id<'a>(&self, link: &'a str, sender: &str) -> Result<&'a str, RestError> {
        link.trim_end_matches('/')
            .rsplit_once("/users/")
            .map(|(_, id)| id)
            .filter(|id| {
                !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            })
            .ok_or_else(|| RestError::Garbage {
                url: format!("{}/addresses/{}", self.base, enc(sender)),
                message: format!("user link {link:?} is not /users/ID"),
            })
    }

    /// The addresses of the user that has `sender` among its addresses,
    /// found by Mailman's user search (a case-insensitive substring match
    /// on addresses and names; the users it finds are checked for the exact
    /// address, at most [`MAX_LINKED`] of them).
    async fn user_by_search(&self, sender: &str) -> Result<Option<Vec<Value>>, RestError> {
        let users = self
            .collection(&format!("/users/find?q={}", enc(sender)))
            .await?;
        for user in users.iter().take(MAX_LINKED) {
            let Some(link) = user.get("self_link").and_then(Value::as_str) else {
                continue;
            };
            let user_id = self.user_id(link, sender)?;
            let addresses = match self
                .collection(&format!("/users/{user_id}/addresses"))
                .await
            {
                Ok(l) => l,
                Err(RestError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            if addresses.iter().any(|a| {
                a.get("email")
                    .and_then(Value::as_str)
                    .is_some_and(|e| e.to_lowercase() == sender)
            }) {
                return Ok(Some(addresses));
            }
        }
        Ok(None)
    }
}
