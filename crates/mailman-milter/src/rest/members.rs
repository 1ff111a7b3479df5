//! Membership lookups: what Mailman knows about one sender on one list
//! (member record, non-member record, a member through another address of
//! the same user).

use serde_json::Value;

use super::RestError;
use super::client::{Api, enc};
use super::model::{moderation_action, record_of};
use crate::list::ModerationAction;

/// Other addresses of a sender's user looked up at most.
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
    /// then a lookup of each (at most [`MAX_LINKED`]). An address that
    /// cannot go into a path as is (`/`, `?`, `#`, `%`) or any with `*` is
    /// not followed.
    async fn linked_member(
        &self,
        list_id: &str,
        sender: &str,
    ) -> Result<Option<MemberInfo>, RestError> {
        if !lookup_safe(sender) || sender.contains(['/', '?', '#', '%']) {
            return Ok(None);
        }
        let address = match self.get(&format!("/addresses/{}", enc(sender))).await {
            Ok(a) => a,
            Err(RestError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(user) = address.get("user").and_then(Value::as_str) else {
            return Ok(None);
        };
        let Some(user_id) = user
            .trim_end_matches('/')
            .rsplit_once("/users/")
            .map(|(_, id)| id)
            .filter(|id| {
                !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            })
        else {
            return Err(RestError::Garbage {
                url: format!("{}/addresses/{}", self.base, enc(sender)),
                message: format!("user link {user:?} is not /users/ID"),
            });
        };
        let linked = match self
            .collection(&format!("/users/{user_id}/addresses"))
            .await
        {
            Ok(l) => l,
            // The user was deleted since.
            Err(RestError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let others = linked
            .iter()
            .filter_map(|a| a.get("email").and_then(Value::as_str))
            .map(str::to_lowercase)
            .filter(|e| e != sender && lookup_safe(e))
            .take(MAX_LINKED);
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
}
